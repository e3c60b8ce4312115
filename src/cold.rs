//! Cold start: why the first host perf event can take milliseconds, measured on this host.
//!
//! The commit reports a minimum guest NMI latency of 20407603 ns before it and 5979 ns after
//! it when the host's NMI watchdog is off. Something makes creating a perf event slow when
//! no other event keeps a host-wide resource alive, and the legacy tier creates events all
//! the time.
//!
//! What it is here (Linux 6.18, software events, no hardware PMU), from
//! `kernel/events/core.c`: a per-task event is accounted in `account_event()`; the first one
//! on the whole host (`perf_sched_count` going 0 → 1) takes `perf_sched_mutex`, enables the
//! static key `perf_sched_events` — which patches every `perf_event_task_sched_in/out`
//! call site in the kernel text (jump-label patching, with IPIs to every CPU) — and then
//! waits in `synchronize_rcu()`. The last such event's release does not disable the key at
//! once: `unaccount_event()` schedules `perf_sched_delayed` one second (`HZ` jiffies) later.
//! So a create pays milliseconds only if no per-task event existed anywhere on the host for
//! the last second; an event held open by anyone (another thread, another process) keeps
//! the key on. A CPU-wide event, like the NMI watchdog's, does not count: it is not a task
//! event.
//!
//! [`measure`] checks this on the host perf layer (first create after a quiet second,
//! the create right after it, and a create while a holder event is open) and on guests (the
//! first `GLOBAL_CTRL` enable of the `cold-start` workload, which creates the vPMU's first
//! events, under the same two conditions, on every tier). The quiet condition can only be
//! had if no other process on the host opens per-task events meanwhile; the number of perf
//! descriptors other processes hold is recorded with each sample.

use std::time::{Duration, Instant};

use guests::Program;
use tiers::{Tier, TIERS};
use vmm::perf::{Backend, EventAttr, EventKind, HostPerf, PERF_COUNT_HW_CPU_CYCLES};

use crate::run::run_tier;
use crate::stats::percentile_sorted;
use crate::Error;

/// How long to wait for the host to go quiet: the kernel disables `perf_sched_events` one
/// second after the last per-task event is released; a little more for the work to run.
pub const QUIET: Duration = Duration::from_millis(1200);

/// Under which condition a first create was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Condition {
    /// None of our events open for [`QUIET`] before the create.
    Quiet,
    /// Another per-task event of ours (the "holder") open for [`QUIET`] before the create.
    Holder,
}

/// The host perf layer's creates, one repetition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostColdSample {
    /// The first create after [`QUIET`] with nothing of ours open, ns.
    pub quiet_first_create_ns: u64,
    /// The create right after it (the first one released), ns.
    pub quiet_second_create_ns: u64,
    /// A create after [`QUIET`] with a holder event open, ns.
    pub holder_create_ns: u64,
    /// Perf descriptors other processes held just before the quiet create (if they hold
    /// per-task events, the host was not quiet).
    pub other_perf_fds: u64,
}

/// A guest's first enable (the vPMU's first host events), one tier, one condition.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GuestColdSample {
    /// The tier.
    pub tier: &'static Tier,
    /// Quiet or holder.
    pub condition: Condition,
    /// 0-based repetition.
    pub repetition: u32,
    /// The guest-measured round trip of the first `GLOBAL_CTRL` enable, ns.
    pub first_enable_ns: f64,
    /// The smallest of the warm toggles that follow it (off and on), ns.
    pub warm_toggle_min_ns: f64,
    /// Host event creations of the run.
    pub creations: u64,
    /// Perf descriptors other processes held before the run.
    pub other_perf_fds: u64,
}

/// Everything [`measure`] found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ColdStart {
    /// The vCPU's TSC frequency, kHz.
    pub tsc_khz: u32,
    /// Quiet wait before each cold create, ms.
    pub quiet_wait_ms: u64,
    /// Host perf layer samples.
    pub host: Vec<HostColdSample>,
    /// Guest samples.
    pub guest: Vec<GuestColdSample>,
}

impl ColdStart {
    /// Median of the host samples' `f`, ns.
    pub fn host_median(&self, f: impl Fn(&HostColdSample) -> u64) -> f64 {
        median(self.host.iter().map(|s| f(s) as f64).collect())
    }

    /// Median first-enable latency of `tier` under `condition`, ns.
    pub fn guest_median(&self, tier: &Tier, condition: Condition) -> f64 {
        median(
            self.guest
                .iter()
                .filter(|s| s.tier == tier && s.condition == condition)
                .map(|s| s.first_enable_ns)
                .collect(),
        )
    }

    /// Median of the warm toggles' minimum of `tier`, ns.
    pub fn guest_warm_median(&self, tier: &Tier) -> f64 {
        median(
            self.guest
                .iter()
                .filter(|s| s.tier == tier)
                .map(|s| s.warm_toggle_min_ns)
                .collect(),
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    percentile_sorted(&v, 50.0)
}

/// Perf event descriptors held by processes other than this one (scans /proc/*/fd; needs
/// root to see other users' processes, so it is a lower bound otherwise).
pub fn other_perf_fds() -> u64 {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut n = 0;
    for p in procs.flatten() {
        let name = p.file_name();
        let name = name.to_string_lossy();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        n += fds
            .flatten()
            .filter(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|l| l.to_string_lossy() == "anon_inode:[perf_event]")
            })
            .count() as u64;
    }
    n
}

/// A sampling attr like the vPMU's (the software backend turns it into task-clock).
fn sampling_attr() -> EventAttr {
    EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), 200_000)
}

/// Times one create on `perf` and releases the event; ns.
fn timed_create(perf: &mut HostPerf) -> Result<u64, Error> {
    let t = Instant::now();
    let ev = perf.perf_event_create_kernel_counter(sampling_attr(), 0)?;
    let ns = t.elapsed().as_nanos() as u64;
    perf.perf_event_release_kernel(ev);
    Ok(ns)
}

/// Opens a counting event on this thread that keeps per-task accounting alive.
fn holder(perf: &mut HostPerf) -> Result<vmm::perf::PerfEvent, Error> {
    let attr = EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), 0);
    Ok(perf.perf_event_create_kernel_counter(attr, 1)?)
}

/// Measures cold and warm creates on the host perf layer and on guests, `repetitions`
/// times each; every cold sample waits [`QUIET`] first (about 5 s per repetition).
pub fn measure(
    program: &Program,
    backend: &Backend,
    limit: Duration,
    repetitions: u32,
) -> Result<ColdStart, Error> {
    let mut host = Vec::new();
    let mut guest = Vec::new();
    let mut tsc_khz = 0;
    for rep in 0..repetitions {
        let mut perf = HostPerf::new(backend.clone())?;
        std::thread::sleep(QUIET);
        let other = other_perf_fds();
        let quiet_first = timed_create(&mut perf)?;
        let quiet_second = timed_create(&mut perf)?;
        let hold = holder(&mut perf)?;
        std::thread::sleep(QUIET);
        let with_holder = timed_create(&mut perf)?;
        perf.perf_event_release_kernel(hold);
        host.push(HostColdSample {
            quiet_first_create_ns: quiet_first,
            quiet_second_create_ns: quiet_second,
            holder_create_ns: with_holder,
            other_perf_fds: other,
        });
        for tier in TIERS {
            for condition in [Condition::Quiet, Condition::Holder] {
                let mut hperf = HostPerf::new(backend.clone())?;
                let hold = match condition {
                    Condition::Quiet => None,
                    Condition::Holder => Some(holder(&mut hperf)?),
                };
                std::thread::sleep(QUIET);
                let other = other_perf_fds();
                let (rec, lat, khz) = run_tier(tier, program, backend, limit, rep)?;
                if let Some(h) = hold {
                    hperf.perf_event_release_kernel(h);
                }
                tsc_khz = khz;
                let (first, warm) = lat.split_first().unwrap_or((&0.0, &[]));
                guest.push(GuestColdSample {
                    tier,
                    condition,
                    repetition: rep,
                    first_enable_ns: *first,
                    warm_toggle_min_ns: warm.iter().copied().reduce(f64::min).unwrap_or(0.0),
                    creations: rec.creations,
                    other_perf_fds: other,
                });
            }
        }
    }
    Ok(ColdStart {
        tsc_khz,
        quiet_wait_ms: QUIET.as_millis() as u64,
        host,
        guest,
    })
}
