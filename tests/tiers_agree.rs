//! The tiers are indistinguishable to a guest: every scenario of the guest suite yields the
//! same transcript on every tier as on the baseline. (Each tier's crate also snapshots its
//! transcripts; this test asserts the equality directly, not through files.)

use guests::{run_scenario, SCENARIOS};
use tiers::{baseline, Tier, TIERS};
use vmm::perf::{select, BackendChoice, HostPerf};

fn host_perf(tier: &Tier) -> HostPerf {
    let selected = select(BackendChoice::Auto).expect("a perf backend").backend;
    tier.host_perf(&selected).expect("host perf")
}

#[test]
fn every_scenario_reads_the_same_on_every_tier() {
    let caps = guests::suite::suite_caps();
    let base = baseline();
    for scenario in SCENARIOS {
        let expected = run_scenario(scenario, (base.vpmu)(caps, host_perf(base)))
            .unwrap_or_else(|e| panic!("{}: {e}", base.name));
        assert!(
            !expected.transcript.lines.is_empty(),
            "{} said nothing",
            scenario.name
        );
        for tier in TIERS.iter().filter(|t| !t.baseline) {
            let seen = run_scenario(scenario, (tier.vpmu)(caps, host_perf(tier)))
                .unwrap_or_else(|e| panic!("{}: {e}", tier.name));
            assert_eq!(
                expected.transcript.lines, seen.transcript.lines,
                "scenario {} differs between {} and {}",
                scenario.name, base.name, tier.name
            );
        }
    }
}

#[test]
fn the_tiers_differ_where_the_commit_says_they_do() {
    // Guest-visible equality is only half the claim: on the host, every tier after the
    // commit must have created fewer perf events than the baseline for the same guest.
    let caps = guests::suite::suite_caps();
    let scenario = guests::suite::by_name("counting");
    let creates = |tier: &Tier| {
        let run = run_scenario(scenario, (tier.vpmu)(caps, host_perf(tier)))
            .unwrap_or_else(|e| panic!("{}: {e}", tier.name));
        let trace = run.run.machine.pmu().ledger().trace();
        trace.iter().filter(|l| l.starts_with("create")).count()
    };
    let base = baseline();
    let l = creates(base);
    for tier in TIERS.iter().filter(|t| !t.baseline) {
        let r = creates(tier);
        assert!(r < l, "{} created {r} events, {} {l}", tier.name, base.name);
        assert_eq!(
            r, 7,
            "{} creates one event per counter and reuses it after that",
            tier.name
        );
    }
}
