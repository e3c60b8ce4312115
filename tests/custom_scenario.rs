//! The book's worked example (chapter 8, "Writing your own scenario"): a guest scenario
//! written outside the suite, run on every tier on a real KVM guest.
//!
//! The scenario switches one running GP counter between two event selects and toggles it in
//! `GLOBAL_CTRL`. A guest must see one counter that keeps counting; the host sees the
//! difference: a new event select is a new config, which no tier can reuse, while the
//! `GLOBAL_CTRL` toggle is reused by every tier after the commit.

use guests::linux::evtsel;
use guests::transcript::render;
use guests::{run_scenario, Guest, Program, Scenario};
use tiers::{Tier, TIERS};
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

fn host_perf(tier: &Tier) -> HostPerf {
    let selected = select(BackendChoice::Auto).expect("a perf backend").backend;
    tier.host_perf(&selected).expect("host perf")
}

// ANCHOR: run
#[test]
fn switching_events_reads_the_same_on_every_tier() {
    let caps = PmuCaps::default();
    for tier in TIERS {
        let _tier = tier.checking();
        let seen = run_scenario(&SWITCH_EVENTS, (tier.vpmu)(caps, host_perf(tier)))
            .unwrap_or_else(|e| panic!("{}: {e}", tier.name));

        // The guest cannot tell the tiers apart: on every one, what it sees is one counter
        // that counts while enabled, whatever the event.
        assert_eq!(
            seen.transcript.lines,
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

        // The host can: three configs in a row (instructions, cycles, instructions) need
        // three events on every tier; only the baseline, from before the commit, also
        // recreates the event after the GLOBAL_CTRL toggle.
        let ledger = seen.run.machine.pmu().ledger();
        assert_eq!(
            ledger.count(PerfOp::Create),
            if tier.baseline { 4 } else { 3 }
        );
        assert_eq!(ledger.failures(PerfOp::Period), 0);
    }
}
// ANCHOR_END: run
