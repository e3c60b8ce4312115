//! The side-by-side run: every workload on every tier, interleaved, in one process.
//!
//! Runs go through the tiers in table order ([`TIERS`]: legacy, reuse, legacy, reuse, ...),
//! per workload and repetition, so that a drift of the host (another tenant, frequency,
//! cache state) hits every tier alike. Each run is one [`run_tier`]. The results are one
//! [`TierResult`] per tier, in table order, and each tier's reduction and speedups are
//! measured against the [`baseline`] row.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use guests::workloads::{Workload, WorkloadConfig};
use tiers::{baseline, Tier, TIERS};
use vmm::perf::{select, BackendChoice};

use crate::cold::{self, ColdStart};
use crate::host::HostInfo;
use crate::run::{caps, run_tier, RunRecord};
use crate::stats::LatencyStats;
use crate::Error;

/// Version of the JSON schema [`Report`] serialises to; bumped on any incompatible change.
///
/// Version 2: a workload's tiers are a list (`tiers`, in table order, each with its `tier`
/// name) instead of the fields `legacy` and `reuse`; the workload names its `baseline`, and
/// `creation_reduction_pct`, `speedup_avg` and `speedup_p50` moved into each tier's result,
/// measured against the baseline (null on the baseline itself).
pub const SCHEMA_VERSION: u32 = 2;

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
    /// One entry per guest workload run on every tier (not `cold-start`).
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

/// One workload on every tier.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WorkloadResult {
    /// The workload.
    pub workload: Workload,
    /// What one sample is (`NMI`, `toggle`, `exit`).
    pub unit: String,
    /// The tier the others are measured against.
    pub baseline: &'static Tier,
    /// One result per tier, in table order.
    pub tiers: Vec<TierResult>,
}

/// One tier's results on one workload, pooled over the repetitions.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TierResult {
    /// The tier.
    pub tier: &'static Tier,
    /// Host perf event creations (KVM's `pmc_reprogram_counter` calls), from the ledgers.
    pub creations: u64,
    /// `100 × (1 − creations / the baseline's creations)`; null on the baseline, and if the
    /// baseline created none.
    pub creation_reduction_pct: Option<f64>,
    /// The baseline's average latency over this tier's; null on the baseline, and without
    /// samples.
    pub speedup_avg: Option<f64>,
    /// The baseline's median over this tier's; null on the baseline, and without samples.
    pub speedup_p50: Option<f64>,
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

impl TierResult {
    /// Pools `runs` (with their latencies) of `tier` on `workload`.
    /// The comparison with the baseline is left empty; [`WorkloadResult::new`] fills it in.
    pub fn pool(
        tier: &'static Tier,
        workload: Workload,
        runs: Vec<(RunRecord, Vec<f64>)>,
    ) -> TierResult {
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
            creation_reduction_pct: None,
            speedup_avg: None,
            speedup_p50: None,
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
    /// The tiers' results on `workload` (in table order), each compared with the
    /// [`baseline`]'s: its creation reduction and speedups.
    pub fn new(workload: Workload, mut tiers: Vec<TierResult>) -> WorkloadResult {
        let base = baseline();
        let of_base = tiers
            .iter()
            .find(|t| t.tier == base)
            .map(|b| (b.creations, b.latency));
        let ratio = |a: f64, b: f64| (a > 0.0 && b > 0.0).then(|| a / b);
        for t in tiers.iter_mut().filter(|t| t.tier != base) {
            if let Some((creations, latency)) = of_base {
                t.creation_reduction_pct = reduction_pct(creations, t.creations);
                t.speedup_avg = ratio(latency.avg, t.latency.avg);
                t.speedup_p50 = ratio(latency.p50, t.latency.p50);
            }
        }
        WorkloadResult {
            workload,
            unit: workload.unit().to_string(),
            baseline: base,
            tiers,
        }
    }

    /// The result of `tier`, if it ran.
    pub fn tier(&self, tier: &Tier) -> Option<&TierResult> {
        self.tiers.iter().find(|t| t.tier == tier)
    }
}

/// `100 × (1 − tier / baseline)`, or `None` if the baseline is 0.
///
/// ```
/// assert_eq!(vpmu_workbook::compare::reduction_pct(200, 35), Some(82.5));
/// assert_eq!(vpmu_workbook::compare::reduction_pct(0, 0), None);
/// ```
pub fn reduction_pct(baseline: u64, tier: u64) -> Option<f64> {
    (baseline > 0).then(|| 100.0 * (1.0 - tier as f64 / baseline as f64))
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
        let mut runs: Vec<Vec<(RunRecord, Vec<f64>)>> = TIERS.iter().map(|_| Vec::new()).collect();
        for rep in 0..opts.repetitions {
            for (tier, runs) in TIERS.iter().zip(&mut runs) {
                progress.say(&format!(
                    "{} on {} (repetition {}/{})",
                    w.name(),
                    tier.name,
                    rep + 1,
                    opts.repetitions
                ));
                let (rec, lat, khz) = run_tier(tier, &program, &selected.backend, opts.limit, rep)?;
                tsc_khz = khz;
                runs.push((rec, lat));
            }
        }
        let results = TIERS
            .iter()
            .zip(runs)
            .map(|(tier, runs)| TierResult::pool(tier, w, runs))
            .collect();
        workloads.push(WorkloadResult::new(w, results));
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
