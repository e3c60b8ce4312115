//! Guest-measured costs per tier, side by side in criterion's report: each group is one
//! measurement, with one function per tier of the tier table (`legacy`, `reuse`, ...) and
//! workload.
//!
//! - `nmi_round_trip/<workload>`: the guest NMI handler, entry to `iretq`;
//! - `evtsel_reprogram_exit`: one `WRMSR` to `IA32_PERFEVTSEL0` that re-enables the counter
//!   with its old event (legacy creates, reuse resumes);
//! - `global_ctrl_toggle_exit`: `GLOBAL_CTRL` off and on (two exits) with counting counters.
//!
//! Each uses `iter_custom`: the guest runs `iters` samples and the bench reports the sum of
//! the guest's own `rdtsc` measurements, not the wall time of the run (which includes
//! machine set-up and the ring-3 time between samples).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use guests::workloads::{Workload, WorkloadConfig};
use vmm::perf::{select, BackendChoice};
use vpmu_workbook::run::{caps, run_tier};
use vpmu_workbook::{Tier, TIERS};

/// Samples one guest run stores at most (the latency area holds 32767).
const CHUNK: u64 = 20_000;

fn guest_total(w: Workload, tier: &Tier, iters: u64) -> Duration {
    let backend = select(BackendChoice::Auto)
        .unwrap_or_else(|e| panic!("{e}"))
        .backend;
    let mut left = iters;
    let mut total_ns = 0.0;
    while left > 0 {
        let n = left.min(CHUNK);
        let cfg = WorkloadConfig {
            samples: n,
            ..WorkloadConfig::default()
        };
        let program = w.program(&cfg, &caps());
        let (_, lat, _) = run_tier(tier, &program, &backend, Duration::from_secs(120), 0)
            .unwrap_or_else(|e| panic!("{e}"));
        // A sampling guest may take one NMI more than asked; count exactly `n`.
        total_ns += lat.iter().take(n as usize).sum::<f64>();
        left -= n;
    }
    Duration::from_nanos(total_ns as u64)
}

fn bench(c: &mut Criterion, group: &str, workloads: &[Workload]) {
    let mut g = c.benchmark_group(group);
    // Flat sampling: every sample runs the same number of guest samples, so a sample's wall
    // time (set-up plus the ring-3 time between NMIs) stays predictable on 2 cores.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &w in workloads {
        for tier in TIERS {
            g.bench_with_input(BenchmarkId::new(tier.name, w.name()), &w, |b, &w| {
                b.iter_custom(|iters| guest_total(w, tier, iters))
            });
        }
    }
    g.finish();
}

fn guest_exits(c: &mut Criterion) {
    bench(
        c,
        "nmi_round_trip",
        &[
            Workload::GpMultiplex,
            Workload::GpSampling,
            Workload::FixedSampling,
        ],
    );
    bench(c, "evtsel_reprogram_exit", &[Workload::EvtselToggle]);
    bench(c, "global_ctrl_toggle_exit", &[Workload::CountingToggle]);
}

criterion_group!(benches, guest_exits);
criterion_main!(benches);
