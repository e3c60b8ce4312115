//! The book's worked example (chapter 8, "Writing your own scenario"): a guest scenario
//! written outside the suite, run on both tiers on a real KVM guest.
//!
//! The scenario switches one running GP counter between two event selects and toggles it in
//! `GLOBAL_CTRL`. A guest must see one counter that keeps counting; the host sees the
//! difference: a new event select is a new config, which neither tier can reuse, while the
//! `GLOBAL_CTRL` toggle is reused by Tier 2 only.

use guests::linux::evtsel;
use guests::transcript::render;
use guests::{run_scenario, Guest, Program, Scenario};
use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::msr::{IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PMC0};
use vmm::perf::{select, BackendChoice, HostPerf, PerfOp};
use vmm::PmuCaps;

// ANCHOR: build
/// Ring-3 work between reads: enough for a running counter to move.
const WORK: u64 = 200_000;

fn switch_events(_caps: &PmuCaps) -> Program {
    let mut g = Guest::new("switch_events");
    let work = |g: &mut Guest| {
        g.user(|u| {
            u.spin(WORK);
        });
    };
    let instructions = evtsel(0xC0, 0, false); // Instructions Retired, USR|OS|EN
    let cycles = evtsel(0x3C, 0, false); // UnHalted Core Cycles, USR|OS|EN

    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1);
    g.wrmsr(IA32_PERFEVTSEL0, instructions);
    work(&mut g);
    g.read_msr("count gp0: instructions, after work", IA32_PMC0);
    g.wrmsr(IA32_PERFEVTSEL0, cycles);
    work(&mut g);
    g.read_msr("count gp0: switched to cycles, after work", IA32_PMC0);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.read_msr("count gp0: GLOBAL_CTRL bit cleared", IA32_PMC0);
    work(&mut g);
    g.read_msr("count gp0: work while stopped", IA32_PMC0);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1);
    work(&mut g);
    g.read_msr(
        "count gp0: GLOBAL_CTRL bit set again, after work",
        IA32_PMC0,
    );
    g.wrmsr(IA32_PERFEVTSEL0, instructions);
    work(&mut g);
    g.read_msr("count gp0: back to instructions, after work", IA32_PMC0);
    g.finish()
}

const SWITCH_EVENTS: Scenario = Scenario {
    name: "switch_events",
    about: "one running counter switched between two events and toggled in GLOBAL_CTRL",
    build: switch_events,
    render,
    host_trace_deterministic: true,
};
// ANCHOR_END: build

fn host_perf() -> HostPerf {
    HostPerf::new(select(BackendChoice::Auto).expect("a perf backend").backend).expect("host perf")
}

// ANCHOR: run
#[test]
fn switching_events_reads_the_same_on_both_tiers() {
    let caps = PmuCaps::default();
    let legacy = run_scenario(&SWITCH_EVENTS, LegacyPmu::new(caps, host_perf()))
        .unwrap_or_else(|e| panic!("legacy: {e}"));
    let reuse = run_scenario(&SWITCH_EVENTS, ReusePmu::new(caps, host_perf()))
        .unwrap_or_else(|e| panic!("reuse: {e}"));

    // The guest cannot tell the tiers apart...
    assert_eq!(legacy.transcript, reuse.transcript);
    // ...and what it sees is one counter that counts while enabled, whatever the event.
    assert_eq!(
        legacy.transcript.lines,
        [
            "gp0: instructions, after work -> first read",
            "gp0: switched to cycles, after work -> advanced",
            "gp0: GLOBAL_CTRL bit cleared -> advanced",
            "gp0: work while stopped -> unchanged",
            "gp0: GLOBAL_CTRL bit set again, after work -> advanced",
            "gp0: back to instructions, after work -> advanced",
            "#GP faults taken: 0",
        ]
    );

    // The host can: three configs in a row (instructions, cycles, instructions) need three
    // events on both tiers; only Tier 1 also recreates the event after the GLOBAL_CTRL toggle.
    let creates = |ledger: &vmm::perf::Ledger| ledger.count(PerfOp::Create);
    assert_eq!(creates(legacy.run.machine.pmu().ledger()), 4);
    assert_eq!(creates(reuse.run.machine.pmu().ledger()), 3);
    assert_eq!(reuse.run.machine.pmu().ledger().failures(PerfOp::Period), 0);
}
// ANCHOR_END: run
