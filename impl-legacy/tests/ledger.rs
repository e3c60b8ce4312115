//! Linux 5.4's reprogramming, seen in the perf ledger: every enable creates a host event and
//! every disable releases it; an overflow is re-armed by release and create.

use impl_legacy::LegacyPmu;
use vmm::msr::*;
use vmm::perf::{HostPerf, PerfOp, ScriptedClock};
use vmm::{PmuCaps, VirtualPmu};

const EN: u64 = 1 << 22;
const OS_USR: u64 = 3 << 16;
const INT: u64 = 1 << 20;
const INSTRUCTIONS: u64 = 0xC0;

fn legacy() -> (LegacyPmu, ScriptedClock) {
    let (perf, clock) = HostPerf::scripted();
    (LegacyPmu::new(PmuCaps::default(), perf), clock)
}

#[test]
fn each_eventsel_enable_creates_and_each_disable_releases() {
    let (mut v, clock) = legacy();
    for _ in 0..3 {
        v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
            .unwrap();
        clock.advance(10);
        v.set_msr(IA32_PERFEVTSEL0, OS_USR | INSTRUCTIONS).unwrap();
    }
    assert_eq!(
        v.ledger().trace(),
        ["create gp0", "read gp0", "release gp0"].repeat(3)
    );
    assert_eq!(v.get_msr(IA32_PMC0), Ok(30));
}

#[test]
fn each_global_ctrl_toggle_releases_or_creates() {
    let (mut v, _clock) = legacy();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    v.set_msr(IA32_PERFEVTSEL0 + 1, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    v.perf_mut().ledger_mut().clear();
    for _ in 0..5 {
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0xF).unwrap();
    }
    let l = v.ledger();
    assert_eq!(
        (l.count(PerfOp::Create), l.count(PerfOp::Release)),
        (10, 10)
    );
    assert_eq!(l.count(PerfOp::Pause) + l.count(PerfOp::Period), 0);
    assert_eq!(
        l.trace()[..6],
        [
            "read gp0",
            "release gp0",
            "read gp1",
            "release gp1",
            "create gp0",
            "create gp1"
        ]
    );
}

#[test]
fn each_fixed_ctr_ctrl_toggle_releases_or_creates() {
    let (mut v, _clock) = legacy();
    v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 33).unwrap();
    for _ in 0..4 {
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x30).unwrap();
        v.set_msr(IA32_FIXED_CTR_CTRL, 0).unwrap();
    }
    assert_eq!(
        v.ledger().trace(),
        ["create fixed1", "read fixed1", "release fixed1"].repeat(4)
    );
}

#[test]
fn an_overflow_is_rearmed_by_release_and_create() {
    let (mut v, clock) = legacy();
    v.set_msr(IA32_PMC0, (-100i64) as u64).unwrap();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INT | INSTRUCTIONS)
        .unwrap();
    v.perf_mut().ledger_mut().clear();
    clock.advance(100);
    assert!(v.service().pmi);
    assert_eq!(
        v.ledger().trace(),
        ["read gp0", "release gp0", "create gp0"]
    );
    let event = v.pmu().gp[0].perf_event.as_ref().unwrap();
    assert_eq!(event.attr().sample_period, 1 << 48);
}

#[test]
fn legacy_never_touches_current_config() {
    let (mut v, _clock) = legacy();
    v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | INSTRUCTIONS)
        .unwrap();
    v.set_msr(IA32_FIXED_CTR_CTRL, 0x3).unwrap();
    v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1).unwrap();
    assert!(v
        .pmu()
        .pmc_indices()
        .all(|i| v.pmu().pmc(i).unwrap().current_config == 0));
}
