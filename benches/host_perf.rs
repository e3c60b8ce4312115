//! The bare host perf costs behind the two tiers, on the software backend: what legacy does
//! per reprogram (create + release) against what reuse does (pause + period + enable).
//!
//! Group `reprogram` measures the same through each tier's own vPMU, for every row of the
//! tier table: a counting counter switched off and on in `GLOBAL_CTRL` (two reprograms with
//! an unchanged config), each write followed by the service a machine does before entry.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use vmm::msr::{IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL};
use vmm::perf::{Backend, EventAttr, EventKind, HostPerf, PERF_COUNT_HW_CPU_CYCLES};
use vmm::VirtualPmu;
use vpmu_workbook::run::caps;
use vpmu_workbook::TIERS;

fn attr() -> EventAttr {
    // A sampling event, as the vPMU creates (period until a 48-bit wrap would be enormous;
    // any non-zero period makes it a sampling event).
    EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), 1 << 40)
}

fn host_perf(c: &mut Criterion) {
    let mut perf = HostPerf::new(Backend::Software).unwrap_or_else(|e| panic!("{e}"));
    // Keep one event open throughout, so no iteration pays the host's first-event cost
    // (see `vpmu compare`'s cold-start table).
    let _holder = perf
        .perf_event_create_kernel_counter(attr(), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut g = c.benchmark_group("host_perf");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g.bench_function("legacy: create + release", |b| {
        b.iter(|| {
            let ev = perf
                .perf_event_create_kernel_counter(attr(), 0)
                .unwrap_or_else(|e| panic!("{e}"));
            perf.perf_event_release_kernel(ev);
        })
    });
    let mut ev = perf
        .perf_event_create_kernel_counter(attr(), 0)
        .unwrap_or_else(|e| panic!("{e}"));
    g.bench_function("reuse: pause + period + enable", |b| {
        b.iter(|| {
            perf.perf_event_pause(&mut ev, true);
            perf.perf_event_period(&mut ev, 1 << 40)
                .unwrap_or_else(|e| panic!("{e}"));
            perf.perf_event_enable(&mut ev);
        })
    });
    g.finish();
    perf.perf_event_release_kernel(ev);
    reprogram(c);
    // The ledger grew with every call; drop it with the layer.
}

/// The `reprogram` group; called while `host_perf`'s holder event is open, so that no
/// iteration pays the host's first-event cost either.
fn reprogram(c: &mut Criterion) {
    let mut g = c.benchmark_group("reprogram");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for tier in TIERS {
        let perf =
            HostPerf::new((tier.backend)(&Backend::Software)).unwrap_or_else(|e| panic!("{e}"));
        let mut vpmu = (tier.vpmu)(caps(), perf);
        let on = vpmu
            .get_msr(IA32_PERF_GLOBAL_CTRL)
            .unwrap_or_else(|_| panic!("GLOBAL_CTRL"));
        // Instructions, USR|OS|EN: counting, its host event created here.
        vpmu.set_msr(IA32_PERFEVTSEL0, 0x43_00C0)
            .unwrap_or_else(|_| panic!("PERFEVTSEL0"));
        vpmu.service();
        g.bench_function(format!("global_ctrl off + on: {}", tier.name), |b| {
            b.iter(|| {
                for value in [0, on] {
                    vpmu.set_msr(IA32_PERF_GLOBAL_CTRL, value)
                        .unwrap_or_else(|_| panic!("GLOBAL_CTRL"));
                    vpmu.service();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, host_perf);
criterion_main!(benches);
