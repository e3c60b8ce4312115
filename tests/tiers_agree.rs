//! The two tiers are indistinguishable to a guest: every scenario of the guest suite yields
//! the same transcript on impl-legacy and on impl-reuse. (Each tier's crate also snapshots
//! its transcripts; this test asserts the equality directly, not through two files.)

use guests::{run_scenario, SCENARIOS};
use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::perf::{select, BackendChoice, HostPerf};

fn host_perf() -> HostPerf {
    HostPerf::new(select(BackendChoice::Auto).expect("a perf backend").backend).expect("host perf")
}

#[test]
fn every_scenario_reads_the_same_on_both_tiers() {
    let caps = guests::suite::suite_caps();
    for scenario in SCENARIOS {
        let legacy = run_scenario(scenario, LegacyPmu::new(caps, host_perf()))
            .unwrap_or_else(|e| panic!("legacy: {e}"));
        let reuse = run_scenario(scenario, ReusePmu::new(caps, host_perf()))
            .unwrap_or_else(|e| panic!("reuse: {e}"));
        assert_eq!(
            legacy.transcript.lines, reuse.transcript.lines,
            "scenario {} differs between the tiers",
            scenario.name
        );
        assert!(
            !legacy.transcript.lines.is_empty(),
            "{} said nothing",
            scenario.name
        );
    }
}

#[test]
fn the_tiers_differ_where_the_commit_says_they_do() {
    // Guest-visible equality is only half the claim: on the host, the reuse tier must have
    // created fewer perf events for the same guest.
    let caps = guests::suite::suite_caps();
    let scenario = guests::suite::by_name("counting");
    let legacy = run_scenario(scenario, LegacyPmu::new(caps, host_perf())).expect("legacy");
    let reuse = run_scenario(scenario, ReusePmu::new(caps, host_perf())).expect("reuse");
    let creates = |trace: Vec<String>| trace.iter().filter(|l| l.starts_with("create")).count();
    let (l, r) = (
        creates(legacy.run.machine.pmu().ledger().trace()),
        creates(reuse.run.machine.pmu().ledger().trace()),
    );
    assert!(r < l, "reuse created {r} events, legacy {l}");
    assert_eq!(
        r, 7,
        "reuse creates one event per counter and reuses it after that"
    );
}
