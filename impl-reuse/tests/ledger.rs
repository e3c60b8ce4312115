//! Linux 5.5's reprogramming, seen in the perf ledger: a counter re-enabled with the config
//! its event was created for pauses and resumes that event; only a new config (or a refused
//! period) releases and creates.

use impl_reuse::ReusePmu;
use vmm::msr::*;
use vmm::perf::{HostPerf, PerfOp, ScriptedClock};
use vmm::{PmuCaps, VirtualPmu};

const EN: u64 = 1 << 22;
const OS_USR: u64 = 3 << 16;
const INT: u64 = 1 << 20;
const INSTRUCTIONS: u64 = 0xC0;
const BRANCHES: u64 = 0xC4;

fn reuse() -> (ReusePmu, ScriptedClock) {
    let (perf, clock) = HostPerf::scripted();
    (ReusePmu::new(PmuCaps::default(), perf), clock)
}

#[test]
fn global_ctrl_toggles_create_nothing_after_the_first_enable() {
    let (mut v, clock) = reuse();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    assert_eq!(v.ledger().trace(), ["create gp0"]);
    v.perf_mut().ledger_mut().clear();
    for _ in 0..5 {
        clock.advance(10);
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0xF).unwrap();
    }
    let l = v.ledger();
    assert_eq!((l.count(PerfOp::Create), l.count(PerfOp::Release)), (0, 0));
    assert_eq!(
        l.trace()[..4],
        ["pause gp0", "pause gp0", "period gp0", "enable gp0"]
    );
    assert_eq!(v.get_msr(IA32_PMC0), Ok(50));
    assert_eq!(v.pmu().gp[0].current_config, EN | OS_USR | INSTRUCTIONS);
}

#[test]
fn eventsel_en_toggles_with_the_same_event_reuse_the_event() {
    let (mut v, clock) = reuse();
    for _ in 0..3 {
        v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
            .unwrap();
        clock.advance(10);
        v.set_msr(IA32_PERFEVTSEL0, OS_USR | INSTRUCTIONS).unwrap();
    }
    assert_eq!(v.ledger().count(PerfOp::Create), 1);
    assert_eq!(
        v.ledger().trace(),
        [
            "create gp0",
            "pause gp0",
            "pause gp0",
            "period gp0",
            "enable gp0",
            "pause gp0",
            "pause gp0",
            "period gp0",
            "enable gp0",
            "pause gp0"
        ]
    );
    assert_eq!(v.get_msr(IA32_PMC0), Ok(30));
}

#[test]
fn a_new_event_select_releases_the_old_event_and_creates_one() {
    let (mut v, clock) = reuse();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    clock.advance(7);
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | BRANCHES).unwrap();
    assert_eq!(
        v.ledger().trace(),
        ["create gp0", "pause gp0", "release gp0", "create gp0"]
    );
    assert_eq!(v.pmu().gp[0].current_config, EN | OS_USR | BRANCHES);
    clock.advance(3);
    assert_eq!(v.get_msr(IA32_PMC0), Ok(10));
    // Only the INT bit differs: still a new config.
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INT | BRANCHES)
        .unwrap();
    assert_eq!(v.ledger().count(PerfOp::Create), 3);
    assert!(v.pmu().gp[0].perf_event.as_ref().unwrap().attr().intr);
}

#[test]
fn fixed_ctr_ctrl_toggles_reuse_and_a_new_field_replaces() {
    let (mut v, _clock) = reuse();
    v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 33).unwrap();
    for _ in 0..4 {
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x30).unwrap();
        v.set_msr(IA32_FIXED_CTR_CTRL, 0).unwrap();
    }
    assert_eq!(v.ledger().count(PerfOp::Create), 1);
    assert_eq!(v.ledger().count(PerfOp::Release), 0);
    assert_eq!(v.pmu().fixed[1].current_config, 0x3);
    // PMI added: a new config.
    v.set_msr(IA32_FIXED_CTR_CTRL, 0xB0).unwrap();
    assert_eq!(v.ledger().count(PerfOp::Create), 2);
    assert_eq!(v.ledger().count(PerfOp::Release), 1);
    assert_eq!(v.pmu().fixed[1].current_config, 0xB);
}

#[test]
fn an_overflow_is_rearmed_without_a_create() {
    let (mut v, clock) = reuse();
    v.set_msr(IA32_PMC0, (-100i64) as u64).unwrap();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INT | INSTRUCTIONS)
        .unwrap();
    v.perf_mut().ledger_mut().clear();
    clock.advance(100);
    assert!(v.service().pmi);
    assert_eq!(
        v.ledger().trace(),
        ["pause gp0", "period gp0", "enable gp0"]
    );
    let event = v.pmu().gp[0].perf_event.as_ref().unwrap();
    assert_eq!(event.attr().sample_period, 1 << 48);
}

#[test]
fn a_refused_period_falls_back_to_release_and_create() {
    let (mut v, clock) = reuse();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    clock.advance(5);
    clock.set_refuse_period(true);
    v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
    v.set_msr(IA32_PERF_GLOBAL_CTRL, 1).unwrap();
    assert_eq!(
        v.ledger().trace(),
        [
            "create gp0",
            "pause gp0",
            "pause gp0",
            "period gp0 refused",
            "release gp0",
            "create gp0"
        ]
    );
    assert_eq!(v.ledger().failures(PerfOp::Period), 1);
    clock.advance(5);
    assert_eq!(v.get_msr(IA32_PMC0), Ok(10));
    assert_eq!(v.pmu().gp[0].current_config, EN | OS_USR | INSTRUCTIONS);
}

#[test]
fn a_disabled_counter_keeps_its_event_paused_until_the_vpmu_goes() {
    let (perf, clock) = HostPerf::scripted();
    let mut v = ReusePmu::new(PmuCaps::default(), perf);
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    v.set_msr(IA32_PERFEVTSEL0, OS_USR | INSTRUCTIONS).unwrap();
    assert_eq!(clock.live_events(), 1);
    clock.advance(100);
    assert_eq!(v.get_msr(IA32_PMC0), Ok(0));
    drop(v);
    assert_eq!(clock.live_events(), 0);
}
