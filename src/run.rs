//! One guest run on one tier, recorded: the runner that [`crate::compare`] and
//! [`crate::cold`] both use.
//!
//! Each run boots a fresh machine and vPMU with a fresh host perf layer, so its ledger holds
//! exactly that run's host perf calls (read before the vPMU is dropped: the releases at
//! tear-down are not in it, the creations at set-up are).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use guests::{Program, Run};
use tiers::{Tier, TierPmu};
use vmm::perf::{Backend, PerfOp};
use vmm::{ExitStats, PmuCaps};

use crate::Error;

/// One guest run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRecord {
    /// 0-based repetition.
    pub repetition: u32,
    /// NMIs the guest counted.
    pub guest_nmis: u64,
    /// Latency samples the guest stored.
    pub samples: u64,
    /// `ledger.count(Create)`.
    pub creations: u64,
    /// Create entries found in the ledger's kept entries (equal to `creations` unless
    /// the ledger hit its entry limit, see `ledger_dropped`).
    pub create_entries: u64,
    /// Entries the ledger counted but did not keep.
    pub ledger_dropped: u64,
    /// Host perf calls by op name.
    pub host_ops: BTreeMap<String, u64>,
    /// Time in host perf calls by op name, ns.
    pub host_ns: BTreeMap<String, u64>,
    /// What the machine's run loop counted.
    pub exits: ExitStats,
    /// Wall-clock milliseconds of the run (machine set-up included).
    pub wall_ms: f64,
}

/// The caps every workload runs with: the default Intel PMU (4 GP, 3 fixed, 48 bits).
pub fn caps() -> PmuCaps {
    PmuCaps::default()
}

/// Runs `program` on `tier`, its host events on a fresh host perf layer of the tier's backend
/// given the `selected` one ([`Tier::host_perf`]; a scripted backend gets its own clone).
/// Returns the run's record, its latencies (ns) and the vCPU's TSC frequency (kHz).
pub fn run_tier(
    tier: &Tier,
    program: &Program,
    selected: &Backend,
    limit: Duration,
    repetition: u32,
) -> Result<(RunRecord, Vec<f64>, u32), Error> {
    let perf = tier.host_perf(selected)?;
    let start = Instant::now();
    let run = program.run_for((tier.vpmu)(caps(), perf), limit)?;
    Ok(record(&run, start, repetition))
}

fn record(
    run: &Run<Box<dyn TierPmu>>,
    start: Instant,
    repetition: u32,
) -> (RunRecord, Vec<f64>, u32) {
    let ledger = run.machine.pmu().ledger();
    let latencies = run.nmi_latency_ns();
    let rec = RunRecord {
        repetition,
        guest_nmis: run.nmis,
        samples: latencies.len() as u64,
        creations: ledger.count(PerfOp::Create),
        create_entries: ledger
            .entries()
            .iter()
            .filter(|e| e.op == PerfOp::Create)
            .count() as u64,
        ledger_dropped: ledger.dropped(),
        host_ops: PerfOp::ALL
            .iter()
            .map(|&op| (op.name().to_string(), ledger.count(op)))
            .collect(),
        host_ns: PerfOp::ALL
            .iter()
            .map(|&op| (op.name().to_string(), ledger.total(op).as_nanos() as u64))
            .collect(),
        exits: run.machine.stats(),
        wall_ms: start.elapsed().as_secs_f64() * 1e3,
    };
    (rec, latencies, run.machine.tsc_khz())
}
