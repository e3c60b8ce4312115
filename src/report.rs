//! The comparison as a table: text for the terminal, markdown for the book. The commit's
//! published figures stand beside ours, labelled as theirs.
//!
//! Every per-tier column and row comes from [`TIERS`], in table order, and every comparison
//! is the one the results carry (against the baseline tier); a new tier adds no line here.
//! The published figures are data too ([`PUBLISHED`]).

use std::fmt::Write as _;

use crate::cold::{ColdStart, Condition, HostColdSample};
use crate::compare::{Report, WorkloadResult};
use guests::workloads::Workload;
use tiers::{Tier, TIERS};

/// What a published figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// `pmc_reprogram_counter` calls saved against the tier before, % (shown with what it
    /// was measured on, [`Published::on`]).
    CreationReductionPct,
    /// Average guest NMI handler latency, ns.
    AvgLatencyNs,
    /// Minimum guest NMI latency with the host's NMI watchdog off, ns.
    NoWatchdogMinNs,
}

/// One figure a kernel commit's message publishes, measured on an Intel host with a hardware
/// PMU and the vPMU in the kernel. Never measured here; shown beside ours for comparison.
#[derive(Debug, Clone, Copy)]
pub struct Published {
    /// The workload of ours that measures what the figure measures.
    pub workload: Workload,
    /// The name of the tier whose kernel the figure was measured on.
    pub tier: &'static str,
    /// What the figure is.
    pub metric: Metric,
    /// The figure.
    pub value: f64,
    /// The same commit's figure before it, if the figure is an improvement on it: the table
    /// shows the ratio `before / value` beside the figure.
    pub before: Option<f64>,
    /// What it was measured on, in the commit's words, where the workload does not say it.
    pub on: &'static str,
}

// ANCHOR: published
/// The figures commit a6da0d77's message publishes, keyed by workload, tier and metric.
pub const PUBLISHED: &[Published] = {
    use Metric::*;
    use Workload::*;
    &[
        Published::new(GpSampling, "reuse", CreationReductionPct, 82.5).on("GP sampling"),
        Published::new(FixedSampling, "reuse", CreationReductionPct, 99.9).on("fixed sampling"),
        Published::new(GpMultiplex, "legacy", AvgLatencyNs, 104_923.0),
        Published::new(GpMultiplex, "reuse", AvgLatencyNs, 48_393.0).before(104_923.0),
        Published::new(ColdStart, "legacy", NoWatchdogMinNs, 20_407_603.0),
        Published::new(ColdStart, "reuse", NoWatchdogMinNs, 5_979.0),
    ]
};
// ANCHOR_END: published

impl Published {
    /// A figure measured on `tier`'s kernel.
    pub const fn new(workload: Workload, tier: &'static str, metric: Metric, value: f64) -> Self {
        Published {
            workload,
            tier,
            metric,
            value,
            before: None,
            on: "",
        }
    }

    /// The same, an improvement on `before`.
    pub const fn before(self, before: f64) -> Self {
        Published {
            before: Some(before),
            ..self
        }
    }

    /// The same, measured on `on`.
    pub const fn on(self, on: &'static str) -> Self {
        Published { on, ..self }
    }
}

/// The published figures of `metric` on `workload`, in tier order.
fn published(workload: Workload, metric: Metric) -> impl Iterator<Item = &'static Published> {
    TIERS.iter().flat_map(move |t| {
        PUBLISHED
            .iter()
            .filter(move |p| p.workload == workload && p.metric == metric && p.tier == t.name)
    })
}

/// Why our numbers differ from the commit's, in one line.
pub const WHY_DIFFERENT: &str = "Ours differ because this vPMU is in user space: every guest \
PMU MSR access is a user-space exit (about 6.7 us a round trip here) and every host perf call \
a system call, the guest's ring 0 (the NMI handler) is emulated by kvm-pvm, and the host perf \
backend is software task-clock rather than hardware counters (no PMU reservation, no counter \
scheduling).";

/// One table: a title, column headings, rows, and notes printed under it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Title.
    pub title: String,
    /// Column headings.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// Lines under the table.
    pub notes: Vec<String>,
}

impl Table {
    fn new<H: Into<String>>(title: &str, headers: impl IntoIterator<Item = H>) -> Table {
        Table {
            title: title.into(),
            headers: headers.into_iter().map(Into::into).collect(),
            ..Table::default()
        }
    }

    /// Aligned plain text.
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, c) in cells.iter().enumerate() {
                let pad = widths[i] - c.chars().count();
                // Text columns (the first two) left-aligned, numbers right-aligned.
                if i < 2 {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                } else {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                }
                s.push_str("  ");
            }
            s.trim_end().to_string()
        };
        let mut out = format!("{}\n", self.title);
        out.push_str(&line(&self.headers));
        out.push('\n');
        out.push_str(
            &"-".repeat(
                widths
                    .iter()
                    .map(|w| w + 2)
                    .sum::<usize>()
                    .saturating_sub(2),
            ),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        for n in &self.notes {
            out.push_str(&format!("  {n}\n"));
        }
        out
    }

    /// A GitHub-flavoured markdown table under a heading.
    pub fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        out.push_str(&format!("| {} |\n", self.headers.join(" | ")));
        out.push_str(&format!(
            "|{}\n",
            self.headers
                .iter()
                .enumerate()
                .map(|(i, _)| if i < 2 { "---|" } else { "---:|" })
                .collect::<String>()
        ));
        for row in &self.rows {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for n in &self.notes {
                out.push_str(&format!("{n}\n\n"));
            }
        }
        out.push('\n');
        out
    }
}

fn ns(v: f64) -> String {
    format!("{v:.0}")
}

fn ratio(v: Option<f64>) -> String {
    v.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// "both" for two tiers, "all n" for more: how the prose names every tier.
fn every_tier() -> String {
    match TIERS.len() {
        2 => "both".into(),
        n => format!("all {n}"),
    }
}

/// The tiers measured against the baseline.
fn compared() -> impl Iterator<Item = &'static Tier> {
    TIERS.iter().filter(|t| !t.baseline)
}

/// The heading of a column comparing `tier` with the baseline: just `what` while there is only
/// one such tier.
fn vs_baseline(what: &str, tier: &Tier) -> String {
    if compared().count() == 1 {
        what.into()
    } else {
        format!("{what} {}", tier.name)
    }
}

fn theirs_creations(w: Workload) -> String {
    let cells: Vec<String> = published(w, Metric::CreationReductionPct)
        .map(|p| format!("-{}% ({})", p.value, p.on))
        .collect();
    if cells.is_empty() {
        "-".into()
    } else {
        cells.join("; ")
    }
}

fn theirs_latency(w: Workload, tier: &Tier) -> String {
    published(w, Metric::AvgLatencyNs)
        .find(|p| p.tier == tier.name)
        .map_or("-".into(), |p| match p.before {
            Some(before) => format!("avg {} ns ({:.2}x)", ns(p.value), before / p.value),
            None => format!("avg {} ns", ns(p.value)),
        })
}

fn theirs_cold_start() -> String {
    let values: Vec<String> = published(Workload::ColdStart, Metric::NoWatchdogMinNs)
        .map(|p| ns(p.value))
        .collect();
    if values.is_empty() {
        String::new()
    } else {
        format!("min {} ns, watchdog off", values.join(" -> "))
    }
}

/// The report's header lines: host, backend, options.
pub fn header(r: &Report) -> Vec<String> {
    let h = &r.host;
    let tiers: Vec<String> = TIERS
        .iter()
        .map(|t| format!("{} ({}: {})", t.name, t.kernel, t.reprogram))
        .collect();
    let names: Vec<&str> = TIERS.iter().map(|t| t.name).collect();
    vec![
        format!(
            "vpmu compare: Linux commit a6da0d77, {}, same guest bytes on {}",
            tiers.join(" vs "),
            every_tier()
        ),
        format!(
            "host: {}; CPU {} ({} CPUs); KVM module {}; nmi_watchdog {}; vCPU TSC {} kHz",
            h.kernel, h.cpu, h.cpus, h.kvm_module, h.nmi_watchdog, r.tsc_khz
        ),
        format!("perf backend: {} ({})", h.backend, h.backend_reason),
        format!(
            "runs: {} samples per run, period {} ns per NMI, {} GP counters, {} repetitions \
             per tier, interleaved {}; took {:.1} s",
            r.config.workload.samples,
            r.config.workload.period,
            r.config.workload.gp_counters,
            r.config.repetitions,
            names.join("/"),
            r.wall_seconds
        ),
    ]
}

/// The tables of `r`, in print order.
pub fn tables(r: &Report) -> Vec<Table> {
    let mut out = Vec::new();

    let mut headers = vec!["workload".to_string(), "per".into()];
    headers.extend(TIERS.iter().map(|t| t.name.to_string()));
    headers.extend(compared().map(|t| vs_baseline("reduction", t)));
    headers.push("theirs (commit)".into());
    let mut t = Table::new(
        "Reprogram calls (host perf event creations, from the ledger)",
        headers,
    );
    for w in &r.workloads {
        let mut row = vec![w.workload.name().into(), w.unit.clone()];
        row.extend(
            TIERS
                .iter()
                .map(|t| w.tier(t).map_or("-".into(), |t| t.creations.to_string())),
        );
        row.extend(compared().map(|t| {
            w.tier(t)
                .and_then(|t| t.creation_reduction_pct)
                .map_or("-".into(), |p| format!("-{p:.2}%"))
        }));
        row.push(theirs_creations(w.workload));
        t.rows.push(row);
    }
    out.push(t);

    let mut t = Table::new(
        "Guest-measured latency, ns (NMI handler entry to iretq; exits: rdtsc around the WRMSRs)",
        [
            "workload",
            "tier",
            "samples",
            "avg",
            "min",
            "p50",
            "p99",
            "max",
            "speedup avg",
            "speedup p50",
            "theirs (commit)",
        ],
    );
    for w in &r.workloads {
        for tr in &w.tiers {
            let (sa, sp) = if tr.tier.baseline {
                (String::new(), String::new())
            } else {
                (ratio(tr.speedup_avg), ratio(tr.speedup_p50))
            };
            let l = &tr.latency;
            t.rows.push(vec![
                w.workload.name().into(),
                tr.tier.name.into(),
                l.count.to_string(),
                ns(l.avg),
                ns(l.min),
                ns(l.p50),
                ns(l.p99),
                ns(l.max),
                sa,
                sp,
                theirs_latency(w.workload, tr.tier),
            ]);
        }
    }
    t.notes.push(format!(
        "guest rdtsc deltas converted with the vCPU TSC ({} kHz); the handler's own rdtsc and \
         MSR accesses run in kvm-pvm's emulated ring 0",
        r.tsc_khz
    ));
    out.push(t);

    let mut t = Table::new(
        "Host perf calls per sample (from the ledger; per guest NMI for sampling workloads)",
        [
            "workload",
            "tier",
            "guest NMIs",
            "create",
            "release",
            "pause",
            "period",
            "enable",
            "read",
            "ops/sample",
            "perf us/sample",
        ],
    );
    for w in &r.workloads {
        for tr in &w.tiers {
            let op = |n: &str| tr.host_ops.get(n).copied().unwrap_or(0).to_string();
            t.rows.push(vec![
                w.workload.name().into(),
                tr.tier.name.into(),
                tr.guest_nmis.to_string(),
                op("create"),
                op("release"),
                op("pause"),
                op("period"),
                op("enable"),
                op("read"),
                format!("{:.2}", tr.host_ops_per_sample),
                format!("{:.2}", tr.host_perf_ns_per_sample / 1e3),
            ]);
        }
    }
    out.push(t);

    if let Some(c) = &r.cold_start {
        out.push(cold_start_table(c));
    }
    out
}

/// Which measurement of a host cold-start sample a table row shows.
type HostField = fn(&HostColdSample) -> u64;

/// Which measurement of a tier's guest cold-start samples a table row shows.
type GuestField = fn(&ColdStart, &Tier) -> f64;

fn cold_start_table(c: &ColdStart) -> Table {
    let mut headers = vec!["what".to_string(), "condition".into()];
    headers.extend(TIERS.iter().map(|t| t.name.to_string()));
    headers.extend(["host perf layer".into(), "theirs (commit)".into()]);
    let mut t = Table::new(
        "Cold start: the first host perf event (median over repetitions), ns",
        headers,
    );
    let quiet = format!("quiet {} ms", c.quiet_wait_ms);
    let host_rows: [(&str, &str, HostField); 3] = [
        ("first create", &quiet, |s| s.quiet_first_create_ns),
        ("second create", "right after", |s| s.quiet_second_create_ns),
        ("first create", "holder event open", |s| s.holder_create_ns),
    ];
    for (what, condition, field) in host_rows {
        let mut row = vec![what.to_string(), condition.to_string()];
        row.extend(TIERS.iter().map(|_| String::new()));
        row.extend([ns(c.host_median(field)), String::new()]);
        t.rows.push(row);
    }
    // The last cell: whether the commit's figure stands beside the row.
    let guest_rows: [(&str, &str, GuestField, bool); 3] = [
        (
            "guest first enable",
            &quiet,
            |c, t| c.guest_median(t, Condition::Quiet),
            true,
        ),
        (
            "guest first enable",
            "holder event open",
            |c, t| c.guest_median(t, Condition::Holder),
            false,
        ),
        (
            "guest warm toggle (min)",
            "after it",
            |c, t| c.guest_warm_median(t),
            false,
        ),
    ];
    for (what, condition, field, theirs) in guest_rows {
        let mut row = vec![what.to_string(), condition.to_string()];
        row.extend(TIERS.iter().map(|t| ns(field(c, t))));
        row.push(String::new());
        row.push(if theirs {
            theirs_cold_start()
        } else {
            String::new()
        });
        t.rows.push(row);
    }
    let others = c.host.iter().map(|s| s.other_perf_fds).max().unwrap_or(0);
    t.notes.push(format!(
        "cause (kernel/events/core.c): the first per-task event on the host enables the \
         perf_sched_events static key (jump-label patching of the scheduler hooks) and \
         waits in synchronize_rcu(); the last release disables it only 1 s later \
         (perf_sched_delayed). An event held open anywhere keeps it on. Other processes \
         held up to {others} perf descriptors during the quiet samples."
    ));
    let every = every_tier();
    t.notes.push(format!(
        "measured here: {every} tiers pay it at the guest's first enable (the vPMU's first \
         create); the fastest warm toggle after it costs tens of us on {every}. The \
         commit's 20 ms minimum came from a host with a hardware PMU and the watchdog off, \
         which this host (no hardware PMU) cannot reproduce"
    ));
    t
}

/// The whole report as plain text (what `vpmu compare` prints).
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for l in header(r) {
        let _ = writeln!(out, "{l}");
    }
    for t in tables(r) {
        out.push('\n');
        out.push_str(&t.text());
    }
    let _ = writeln!(out, "\n{WHY_DIFFERENT}");
    out
}

/// The whole report as markdown (for the book).
pub fn markdown(r: &Report) -> String {
    let mut out = String::new();
    for l in header(r) {
        let _ = writeln!(out, "{l}\n");
    }
    for t in tables(r) {
        out.push_str(&t.markdown());
    }
    let _ = writeln!(out, "{WHY_DIFFERENT}");
    out
}

/// The workload results of `r` that have latency samples on every tier.
pub fn with_samples(r: &Report) -> impl Iterator<Item = &WorkloadResult> {
    r.workloads
        .iter()
        .filter(|w| !w.tiers.is_empty() && w.tiers.iter().all(|t| t.samples > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cold::{ColdStart, GuestColdSample, HostColdSample};
    use crate::compare::{ConfigRecord, TierResult, SCHEMA_VERSION};
    use crate::host::HostInfo;
    use crate::run::RunRecord;
    use guests::workloads::WorkloadConfig;

    /// A run with made-up counts: `creations` creates, `nmis` NMIs, latencies `lat`.
    fn run(creations: u64, nmis: u64, lat: &[f64]) -> (RunRecord, Vec<f64>) {
        let host_ops = [
            ("create", creations),
            ("release", creations),
            ("pause", 3 * nmis),
        ]
        .into_iter()
        .map(|(op, n)| (op.to_string(), n))
        .collect();
        let host_ns = [("create", creations * 6_000), ("pause", nmis * 1_500)]
            .into_iter()
            .map(|(op, n)| (op.to_string(), n))
            .collect();
        let rec = RunRecord {
            repetition: 0,
            guest_nmis: nmis,
            samples: lat.len() as u64,
            creations,
            create_entries: creations,
            ledger_dropped: 0,
            host_ops,
            host_ns,
            exits: vmm::ExitStats::default(),
            wall_ms: 1.0,
        };
        (rec, lat.to_vec())
    }

    /// A report with fixed numbers, of the shape `run_compare` produces; the numbers are given
    /// per tier in table order.
    fn fixed_report() -> Report {
        let mut workloads = Vec::new();
        for (w, legacy, reuse) in [
            (
                Workload::GpMultiplex,
                run(4_000, 1_000, &[180_000.0, 190_000.0, 200_500.0]),
                run(500, 1_000, &[170_000.0, 175_500.0, 210_000.0]),
            ),
            (
                Workload::GpSampling,
                run(1_001, 1_000, &[100_000.0, 101_000.0]),
                run(1, 1_000, &[90_000.0, 95_000.0]),
            ),
            (
                Workload::FixedSampling,
                run(1_001, 1_000, &[80_000.0]),
                run(1, 1_000, &[79_000.0]),
            ),
            (Workload::CountingToggle, run(0, 0, &[]), run(0, 0, &[])),
        ] {
            let results = TIERS
                .iter()
                .zip([legacy, reuse])
                .map(|(tier, run)| TierResult::pool(tier, w, vec![run]))
                .collect();
            workloads.push(WorkloadResult::new(w, results));
        }
        let guest = |tier, condition, first: f64| GuestColdSample {
            tier,
            condition,
            repetition: 0,
            first_enable_ns: first,
            warm_toggle_min_ns: first / 100.0,
            creations: 5,
            other_perf_fds: 0,
        };
        Report {
            schema_version: SCHEMA_VERSION,
            host: HostInfo {
                kernel: "Linux 6.18.0 x86_64".into(),
                cpu: "Test CPU".into(),
                cpus: 2,
                kvm_module: "kvm_pvm".into(),
                nmi_watchdog: "0".into(),
                backend: "software".into(),
                backend_reason: "no hardware PMU".into(),
            },
            tsc_khz: 2_000_000,
            config: ConfigRecord {
                workloads: vec!["gp-multiplex".into()],
                workload: WorkloadConfig::default(),
                repetitions: 1,
                backend_choice: "auto".into(),
            },
            workloads,
            cold_start: Some(ColdStart {
                tsc_khz: 2_000_000,
                quiet_wait_ms: 1_200,
                host: vec![HostColdSample {
                    quiet_first_create_ns: 3_000_000,
                    quiet_second_create_ns: 9_000,
                    holder_create_ns: 8_000,
                    other_perf_fds: 2,
                }],
                guest: TIERS
                    .iter()
                    .zip([(3_100_000.0, 60_000.0), (3_050_000.0, 58_000.0)])
                    .flat_map(|(tier, (quiet, holder))| {
                        [
                            guest(tier, Condition::Quiet, quiet),
                            guest(tier, Condition::Holder, holder),
                        ]
                    })
                    .collect(),
            }),
            wall_seconds: 12.5,
        }
    }

    #[test]
    fn every_published_figure_belongs_to_a_tier() {
        for p in PUBLISHED {
            assert!(tiers::by_name(p.tier).is_some(), "{p:?}");
        }
    }

    #[test]
    fn the_rendering_of_a_fixed_report_is_stable() {
        // The text and markdown the book's `compare.md` is made of, from fixed numbers: a
        // refactoring of the report must leave these bytes alone.
        let r = fixed_report();
        insta::assert_snapshot!("fixed_report_text", text(&r));
        insta::assert_snapshot!("fixed_report_markdown", markdown(&r));
    }
}
