//! The side-by-side run: every workload on both tiers, interleaved, in one process.
//!
//! Runs alternate legacy, reuse, legacy, reuse, ... (per workload and repetition), so that a
//! drift of the host (another tenant, frequency, cache state) hits both tiers alike. Each run
//! boots a fresh machine and vPMU with a fresh host perf layer, so its ledger holds exactly
//! that run's host perf calls (read before the vPMU is dropped: the releases at tear-down are
//! not in it, the creations at set-up are).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use guests::workloads::{Workload, WorkloadConfig};
use guests::{Program, Run};
use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::perf::{select, Backend, BackendChoice, HostPerf, Ledger, PerfOp};
use vmm::{ExitStats, PmuCaps, VirtualPmu};

use crate::cold::{self, ColdStart};
use crate::host::HostInfo;
use crate::stats::LatencyStats;
use crate::Error;

/// Version of the JSON schema [`Report`] serialises to; bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// The two tiers of the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tier {
    /// `impl-legacy`: release and create on every reprogram (Linux 5.4).
    Legacy,
    /// `impl-reuse`: pause and resume when the config is unchanged (Linux 5.5).
    Reuse,
}

impl Tier {
    /// Both, in run order.
    pub const BOTH: [Tier; 2] = [Tier::Legacy, Tier::Reuse];

    /// `legacy` or `reuse`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Legacy => "legacy",
            Tier::Reuse => "reuse",
        }
    }
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareOptions {
    /// The workloads, in table order.
    pub workloads: Vec<Workload>,
    /// Workload knobs (samples, period, counters, ...).
    pub config: WorkloadConfig,
    /// Runs per tier and workload; their samples are pooled.
    pub repetitions: u32,
    /// Which host perf backend.
    pub backend: BackendChoice,
    /// How long one guest run may take before it is stopped as a runaway.
    pub limit: Duration,
    /// Print progress on stderr (only if it is a terminal).
    pub progress: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            workloads: Workload::ALL.to_vec(),
            config: WorkloadConfig::default(),
            repetitions: 3,
            backend: BackendChoice::Auto,
            limit: Duration::from_secs(60),
            progress: true,
        }
    }
}

/// Everything one `vpmu compare` found; serialised as the `--json` output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The host.
    pub host: HostInfo,
    /// The vCPU's TSC frequency in kHz (guest `rdtsc` deltas are converted with it).
    pub tsc_khz: u32,
    /// The options, as run.
    pub config: ConfigRecord,
    /// One entry per guest workload run on both tiers (not `cold-start`).
    pub workloads: Vec<WorkloadResult>,
    /// The cold-start measurements, if `cold-start` was selected.
    pub cold_start: Option<ColdStart>,
    /// Wall-clock seconds the whole comparison took.
    pub wall_seconds: f64,
}

/// The options of a run, for the record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConfigRecord {
    /// Workload names, in order.
    pub workloads: Vec<String>,
    /// The workload knobs.
    pub workload: WorkloadConfig,
    /// Runs per tier and workload.
    pub repetitions: u32,
    /// The backend asked for (`auto`, `software`, `hardware`).
    pub backend_choice: String,
}

/// One workload on both tiers.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadResult {
    /// The workload.
    pub workload: Workload,
    /// What one sample is (`NMI`, `toggle`, `exit`).
    pub unit: String,
    /// The legacy tier.
    pub legacy: TierResult,
    /// The reuse tier.
    pub reuse: TierResult,
    /// `100 × (1 − reuse creations / legacy creations)`; null if legacy created none.
    pub creation_reduction_pct: Option<f64>,
    /// Legacy average latency over reuse average latency; null without samples.
    pub speedup_avg: Option<f64>,
    /// Legacy median over reuse median; null without samples.
    pub speedup_p50: Option<f64>,
}

/// One tier's results on one workload, pooled over the repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TierResult {
    /// The tier.
    pub tier: Tier,
    /// Host perf event creations (KVM's `pmc_reprogram_counter` calls), from the ledgers.
    pub creations: u64,
    /// NMIs the guests took (their own count), over all repetitions.
    pub guest_nmis: u64,
    /// Latency samples the guests stored, over all repetitions.
    pub samples: u64,
    /// Host perf calls by op name, over all repetitions.
    pub host_ops: BTreeMap<String, u64>,
    /// Host perf calls of every op, over all repetitions.
    pub host_ops_total: u64,
    /// Time spent in host perf calls, nanoseconds, over all repetitions.
    pub host_perf_ns: u64,
    /// `host_ops_total / per`, where `per` is NMIs for sampling workloads, samples otherwise.
    pub host_ops_per_sample: f64,
    /// `host_perf_ns / per`, likewise.
    pub host_perf_ns_per_sample: f64,
    /// The guest-measured latency, ns.
    pub latency: LatencyStats,
    /// Every latency sample, ns, in run order (for plots).
    pub latencies_ns: Vec<f64>,
    /// Each run separately.
    pub runs: Vec<RunRecord>,
}

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

/// A fresh host perf layer on `backend` (a scripted backend gets its own clone).
pub fn host_perf(backend: &Backend) -> Result<HostPerf, Error> {
    Ok(HostPerf::new(backend.clone())?)
}

/// Runs `program` on `tier` and returns the run's record and latencies.
pub fn run_tier(
    tier: Tier,
    program: &Program,
    backend: &Backend,
    limit: Duration,
    repetition: u32,
) -> Result<(RunRecord, Vec<f64>, u32), Error> {
    let perf = host_perf(backend)?;
    let start = Instant::now();
    match tier {
        Tier::Legacy => {
            let run = program.run_for(LegacyPmu::new(caps(), perf), limit)?;
            Ok(record(&run, run.machine.pmu().ledger(), start, repetition))
        }
        Tier::Reuse => {
            let run = program.run_for(ReusePmu::new(caps(), perf), limit)?;
            Ok(record(&run, run.machine.pmu().ledger(), start, repetition))
        }
    }
}

fn record<P: VirtualPmu>(
    run: &Run<P>,
    ledger: &Ledger,
    start: Instant,
    repetition: u32,
) -> (RunRecord, Vec<f64>, u32) {
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

impl TierResult {
    /// Pools `runs` (with their latencies) of `tier` on `workload`.
    pub fn pool(tier: Tier, workload: Workload, runs: Vec<(RunRecord, Vec<f64>)>) -> TierResult {
        let mut host_ops: BTreeMap<String, u64> = BTreeMap::new();
        let mut host_perf_ns = 0;
        let mut latencies_ns = Vec::new();
        let mut records = Vec::new();
        for (rec, lat) in runs {
            for (op, n) in &rec.host_ops {
                *host_ops.entry(op.clone()).or_default() += n;
            }
            host_perf_ns += rec.host_ns.values().sum::<u64>();
            latencies_ns.extend(lat);
            records.push(rec);
        }
        let guest_nmis = records.iter().map(|r| r.guest_nmis).sum();
        let samples = latencies_ns.len() as u64;
        let host_ops_total = host_ops.values().sum();
        let per = if workload.samples_nmis() {
            guest_nmis
        } else {
            samples
        };
        let per_sample = |x: u64| if per == 0 { 0.0 } else { x as f64 / per as f64 };
        TierResult {
            tier,
            creations: records.iter().map(|r| r.creations).sum(),
            guest_nmis,
            samples,
            host_ops_per_sample: per_sample(host_ops_total),
            host_perf_ns_per_sample: per_sample(host_perf_ns),
            host_ops,
            host_ops_total,
            host_perf_ns,
            latency: LatencyStats::of(&latencies_ns),
            latencies_ns,
            runs: records,
        }
    }
}

impl WorkloadResult {
    /// Puts the two tiers side by side and derives the reduction and speedups.
    pub fn new(workload: Workload, legacy: TierResult, reuse: TierResult) -> WorkloadResult {
        let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| a / b);
        WorkloadResult {
            workload,
            unit: workload.unit().to_string(),
            creation_reduction_pct: reduction_pct(legacy.creations, reuse.creations),
            speedup_avg: ratio(legacy.latency.avg, reuse.latency.avg),
            speedup_p50: ratio(legacy.latency.p50, reuse.latency.p50),
            legacy,
            reuse,
        }
    }

    /// The tier's result.
    pub fn tier(&self, tier: Tier) -> &TierResult {
        match tier {
            Tier::Legacy => &self.legacy,
            Tier::Reuse => &self.reuse,
        }
    }
}

/// `100 × (1 − reuse / legacy)`, or `None` if legacy is 0.
///
/// ```
/// assert_eq!(vpmu_workbook::compare::reduction_pct(200, 35), Some(82.5));
/// assert_eq!(vpmu_workbook::compare::reduction_pct(0, 0), None);
/// ```
pub fn reduction_pct(legacy: u64, reuse: u64) -> Option<f64> {
    (legacy > 0).then(|| 100.0 * (1.0 - reuse as f64 / legacy as f64))
}

/// Progress lines on stderr, only when it is a terminal and progress is wanted.
struct Progress {
    on: bool,
    start: Instant,
}

impl Progress {
    fn say(&self, what: &str) {
        if self.on {
            eprintln!("[{:6.1}s] {what}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// Runs the comparison `opts` describes.
pub fn run_compare(opts: &CompareOptions) -> Result<Report, Error> {
    if opts.repetitions == 0 {
        return Err(Error::Usage("--repetitions must be at least 1".into()));
    }
    let caps = caps();
    if opts.config.gp_counters == 0 || opts.config.gp_counters > u32::from(caps.nr_gp) {
        return Err(Error::Usage(format!(
            "--counters must be between 1 and {} (the guest PMU's GP counters)",
            caps.nr_gp
        )));
    }
    if opts.config.period < 10_000 {
        return Err(Error::Usage(
            "--period must be at least 10000 (the kernel clamps software periods to 10 us; \
             below about 200000 the PMI handler's own time re-fires the counters)"
                .into(),
        ));
    }
    let start = Instant::now();
    let progress = Progress {
        on: opts.progress && std::io::stderr().is_terminal(),
        start,
    };
    let selected = select(opts.backend)?;
    let host = HostInfo::probe(&selected);
    progress.say(&format!(
        "backend: {} ({})",
        host.backend, host.backend_reason
    ));
    let mut tsc_khz = 0;
    let mut workloads = Vec::new();
    for &w in opts.workloads.iter().filter(|w| **w != Workload::ColdStart) {
        let program = w.program(&opts.config, &caps);
        let mut runs: BTreeMap<Tier, Vec<(RunRecord, Vec<f64>)>> = BTreeMap::new();
        for rep in 0..opts.repetitions {
            for tier in Tier::BOTH {
                progress.say(&format!(
                    "{} on {} (repetition {}/{})",
                    w.name(),
                    tier.name(),
                    rep + 1,
                    opts.repetitions
                ));
                let (rec, lat, khz) = run_tier(tier, &program, &selected.backend, opts.limit, rep)?;
                tsc_khz = khz;
                runs.entry(tier).or_default().push((rec, lat));
            }
        }
        let legacy = TierResult::pool(
            Tier::Legacy,
            w,
            runs.remove(&Tier::Legacy).unwrap_or_default(),
        );
        let reuse = TierResult::pool(
            Tier::Reuse,
            w,
            runs.remove(&Tier::Reuse).unwrap_or_default(),
        );
        workloads.push(WorkloadResult::new(w, legacy, reuse));
    }
    let cold_start = if opts.workloads.contains(&Workload::ColdStart) {
        progress.say("cold-start (each condition waits 1.1 s for the host to go quiet)");
        let program = Workload::ColdStart.program(&opts.config, &caps);
        let c = cold::measure(&program, &selected.backend, opts.limit, opts.repetitions)?;
        if tsc_khz == 0 {
            tsc_khz = c.tsc_khz;
        }
        Some(c)
    } else {
        None
    };
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        host,
        tsc_khz,
        config: ConfigRecord {
            workloads: opts
                .workloads
                .iter()
                .map(|w| w.name().to_string())
                .collect(),
            workload: opts.config,
            repetitions: opts.repetitions,
            backend_choice: backend_choice_name(opts.backend).into(),
        },
        workloads,
        cold_start,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// The command-line spelling of a backend choice.
pub fn backend_choice_name(c: BackendChoice) -> &'static str {
    match c {
        BackendChoice::Auto => "auto",
        BackendChoice::Software => "software",
        BackendChoice::Hardware => "hardware",
        BackendChoice::Scripted => "scripted",
    }
}
