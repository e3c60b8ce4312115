//! The book's generated outputs: each file under `book/src/generated/` is computed here from
//! the workbook's code and compared with the file on disk. A test fails when they differ, so
//! the book cannot show an output the code no longer produces.
//!
//! This test is the command that regenerates them:
//!
//! ```console
//! $ UPDATE_BOOK=1 cargo test --test book_outputs
//! ```
//!
//! With `UPDATE_BOOK=1` each test writes its file instead of comparing. Only deterministic
//! outputs live here: no timings, nothing that needs `/dev/kvm` (the perf ledgers come from
//! the scripted perf backend, which makes no system call).

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use tiers::{Tier, TierPmu, TIERS};
use vmm::msr::{
    FIXED_IDX_BASE, IA32_FIXED_CTR0, IA32_FIXED_CTR_CTRL, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL,
    IA32_PERF_GLOBAL_OVF_CTRL, IA32_PERF_GLOBAL_STATUS, IA32_PMC0,
};
use vmm::perf::{HostPerf, PerfOp};
use vmm::{PmuCaps, VirtualPmu};

const REGENERATE: &str = "UPDATE_BOOK=1 cargo test --test book_outputs";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn generated(name: &str) -> PathBuf {
    root().join("book/src/generated").join(name)
}

/// Compares `content` with `book/src/generated/<name>`, or writes it there when
/// `UPDATE_BOOK=1`.
fn check_or_update(name: &str, content: &str) {
    let path = generated(name);
    if std::env::var("UPDATE_BOOK").is_ok_and(|v| v == "1") {
        fs::create_dir_all(path.parent().expect("a parent")).expect("create generated/");
        fs::write(&path, content).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let on_disk = fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; regenerate with `{REGENERATE}`", path.display()));
    if on_disk != content {
        let first = on_disk
            .lines()
            .zip(content.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(content.lines().count()));
        panic!(
            "book/src/generated/{name} is out of date (first difference at line {}); \
             regenerate it with `{REGENERATE}` and review the change with `git diff`",
            first + 1
        );
    }
}

// ANCHOR: tier_diff
/// `diff -u impl-legacy/src/pmu.rs impl-reuse/src/pmu.rs`, computed in Rust: the commit.
fn tier_diff() -> String {
    let read = |p: &str| fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    let (legacy, reuse) = (
        read("impl-legacy/src/pmu.rs"),
        read("impl-reuse/src/pmu.rs"),
    );
    similar::TextDiff::from_lines(&legacy, &reuse)
        .unified_diff()
        .context_radius(3)
        .header("impl-legacy/src/pmu.rs", "impl-reuse/src/pmu.rs")
        .to_string()
}
// ANCHOR_END: tier_diff

#[test]
fn tier_diff_is_current() {
    check_or_update("tier-diff.diff", &tier_diff());
}

#[test]
fn scenario_table_is_current() {
    let mut out =
        String::from("| scenario | what it shows | host trace snapshotted |\n|---|---|---|\n");
    for s in guests::SCENARIOS {
        writeln!(
            out,
            "| `{}` | {} | {} |",
            s.name,
            s.about.replace('|', "\\|"),
            if s.host_trace_deterministic {
                "yes"
            } else {
                "no (timing-dependent)"
            }
        )
        .unwrap();
    }
    check_or_update("scenarios.md", &out);
}

#[test]
fn sampling_listing_is_current() {
    let scenario = guests::suite::by_name("sampling");
    let program = (scenario.build)(&guests::suite::suite_caps());
    check_or_update("listing-sampling.txt", &program.listing());
}

/// Which counter the simulated guest samples with.
#[derive(Clone, Copy)]
enum Sampled {
    Gp0,
    Fixed0,
}

impl Sampled {
    fn idx(self) -> u32 {
        match self {
            Sampled::Gp0 => 0,
            Sampled::Fixed0 => FIXED_IDX_BASE,
        }
    }
    fn counter_msr(self) -> u32 {
        match self {
            Sampled::Gp0 => IA32_PMC0,
            Sampled::Fixed0 => IA32_FIXED_CTR0,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Sampled::Gp0 => "GP counter 0 (`IA32_PMC0`)",
            Sampled::Fixed0 => "fixed counter 0 (`IA32_FIXED_CTR0`)",
        }
    }
}

/// The period the simulated guest samples with (the suite's `SAMPLING_PERIOD`).
const PERIOD: u64 = 200_000;
/// How many PMIs the totals are taken over.
const PMIS: u64 = 100;

/// What one simulated PMI cost a tier: the host calls of each step of the first PMI, and the
/// totals per op over [`PMIS`] PMIs (set-up excluded).
struct Simulated {
    steps: Vec<(String, Vec<String>)>,
    totals: Vec<(PerfOp, u64)>,
}

// ANCHOR: simulate_pmis
/// Plays the `sampling` scenario's PMU traffic on `tier` with the scripted perf backend:
/// the set-up, then [`PMIS`] times "the host event overflows, the vPMU is serviced before
/// the next entry, and the guest's Linux-shaped PMI handler runs" (the MSR accesses of
/// `guests::linux::sampling_handler`, in its order).
fn simulate(tier: &Tier, sampled: Sampled) -> Simulated {
    let caps = PmuCaps::default();
    let (perf, clock) = HostPerf::scripted();
    let mut vpmu = (tier.vpmu)(caps, perf);
    let preload = PERIOD.wrapping_neg() & caps.gp_mask();
    let enabled = 1u64 << sampled.idx();

    // Set-up, as the `sampling` scenarios do it.
    vpmu.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
    vpmu.set_msr(sampled.counter_msr(), preload).unwrap();
    match sampled {
        Sampled::Gp0 => vpmu.set_msr(IA32_PERFEVTSEL0, 0x53_00C0).unwrap(), // INT, EN, USR, OS
        Sampled::Fixed0 => vpmu.set_msr(IA32_FIXED_CTR_CTRL, 0xB).unwrap(), // PMI, USR, OS
    }
    vpmu.set_msr(IA32_PERF_GLOBAL_CTRL, enabled).unwrap();
    assert!(!vpmu.service().pmi);
    let before = vpmu.ledger().counts();

    let mut steps = Vec::new();
    for pmi in 0..PMIS {
        let mut step = |what: &str, vpmu: &mut dyn TierPmu, f: &dyn Fn(&mut dyn TierPmu)| {
            let from = vpmu.ledger().entries().len();
            f(vpmu);
            if pmi == 0 {
                steps.push((what.to_string(), vpmu.ledger().trace()[from..].to_vec()));
            }
        };
        step(
            "the host event overflows; `service` before the next entry (`KVM_REQ_PMU`, then a PMI)",
            &mut vpmu,
            &|v| {
                clock.advance(PERIOD);
                assert!(v.service().pmi, "the overflow must raise a PMI");
            },
        );
        step("guest `WRMSR GLOBAL_CTRL ← 0`", &mut vpmu, &|v| {
            v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap()
        });
        step("guest `RDMSR GLOBAL_STATUS`", &mut vpmu, &|v| {
            assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(enabled));
        });
        step("guest `WRMSR` counter ← −period", &mut vpmu, &|v| {
            v.set_msr(sampled.counter_msr(), preload).unwrap()
        });
        step(
            "guest `WRMSR GLOBAL_OVF_CTRL ← status`",
            &mut vpmu,
            &|v| v.set_msr(IA32_PERF_GLOBAL_OVF_CTRL, enabled).unwrap(),
        );
        step("guest `WRMSR GLOBAL_CTRL ← enabled`", &mut vpmu, &|v| {
            v.set_msr(IA32_PERF_GLOBAL_CTRL, enabled).unwrap()
        });
        step("`service` before the next entry", &mut vpmu, &|v| {
            assert!(!v.service().pmi, "no second PMI")
        });
    }
    let totals = vpmu
        .ledger()
        .counts()
        .into_iter()
        .zip(before)
        .map(|((op, after), (_, before))| (op, after - before))
        .collect();
    Simulated { steps, totals }
}
// ANCHOR_END: simulate_pmis

fn calls(lines: &[String]) -> String {
    if lines.is_empty() {
        "—".to_string()
    } else {
        lines
            .iter()
            .map(|l| format!("`{l}`"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One markdown table row: `first`, then `cells`.
fn row(out: &mut String, first: &str, cells: impl Iterator<Item = String>) {
    write!(out, "| {first} |").unwrap();
    for c in cells {
        write!(out, " {c} |").unwrap();
    }
    out.push('\n');
}

#[test]
fn pmi_ledger_is_current() {
    // One column per tier; the book calls them "Tier 1", "Tier 2", ... in table order.
    let heads = |after: &'static str| {
        let tier = move |(i, t): (usize, &Tier)| format!("Tier {} ({}){after}", i + 1, t.name);
        TIERS.iter().enumerate().map(tier)
    };
    let rule = format!("|---|{}\n", "---|".repeat(TIERS.len()));
    let mut out = String::new();
    for sampled in [Sampled::Gp0, Sampled::Fixed0] {
        let sims: Vec<Simulated> = TIERS.iter().map(|t| simulate(t, sampled)).collect();
        writeln!(out, "#### One PMI on {}\n", sampled.name()).unwrap();
        row(&mut out, "step", heads(" host calls"));
        out.push_str(&rule);
        for (i, (what, _)) in sims[0].steps.iter().enumerate() {
            row(&mut out, what, sims.iter().map(|s| calls(&s.steps[i].1)));
        }
        writeln!(
            out,
            "\n#### Totals over {PMIS} PMIs on {} (set-up excluded)\n",
            sampled.name()
        )
        .unwrap();
        row(&mut out, "host call", heads(""));
        out.push_str(&rule);
        for (i, (op, _)) in sims[0].totals.iter().enumerate() {
            let totals = sims.iter().map(|s| s.totals[i].1.to_string());
            row(&mut out, &format!("`{op}`"), totals);
        }
        out.push('\n');
    }
    check_or_update("pmi-ledger.md", &out);
}
