//! The commit must be invisible to the guest. A PMI handler's life, and random guest
//! programs in the form that reaches a vPMU: sequences of PMU MSR reads and
//! writes, valid and invalid, with host time passing and the machine servicing the vPMU in
//! between. Every tier must show the guest exactly the same values, faults and PMIs as the
//! baseline tier.
//!
//! The deterministic scripted perf backend stands in for the host here, so that the only
//! source of difference is the tiers themselves; the real-backend guest suite
//! (`impl-*/tests/guest_suite.rs`, `tests/tiers_agree.rs`) covers the real host.

use proptest::prelude::*;
use tiers::{Tier, TIERS};
use vmm::msr::*;
use vmm::perf::{HostPerf, PerfOp, ScriptedClock};
use vmm::{Fault, PmuCaps, VirtualPmu};

/// One thing that happens to a vPMU.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// A guest RDMSR.
    Read(u32),
    /// A guest WRMSR.
    Write(u32, u64),
    /// `n` events happen on the host (every enabled host event counts them).
    Advance(u64),
    /// The machine is about to enter the guest: the vPMU services its requests.
    Service,
}

/// What the guest observes of an op.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Read(Result<u64, Fault>),
    Write(Result<(), Fault>),
    Pmi(bool),
    Nothing,
}

/// Every MSR the vPMU answers for with the default caps, some it must refuse, and the AMD
/// ones.
fn msr() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0..5u32).prop_map(|i| IA32_PMC0 + i),
        (0..5u32).prop_map(|i| IA32_PERFEVTSEL0 + i),
        (0..5u32).prop_map(|i| IA32_A_PMC0 + i),
        (0..4u32).prop_map(|i| IA32_FIXED_CTR0 + i),
        Just(IA32_FIXED_CTR_CTRL),
        Just(IA32_PERF_GLOBAL_STATUS),
        Just(IA32_PERF_GLOBAL_CTRL),
        Just(IA32_PERF_GLOBAL_OVF_CTRL),
        Just(IA32_PERF_CAPABILITIES),
        Just(AMD_K7_PERF_BASE),
    ]
}

/// Values that hit the interesting cases far more often than uniform u64s would: event
/// selects with and without EN/INT, control fields, enable masks, counters near the wrap,
/// reserved bits, and anything at all.
fn value() -> impl Strategy<Value = u64> {
    let en = 1u64 << 22;
    let int = 1u64 << 20;
    prop_oneof![
        // event selects: an architectural event, some of USR/OS/INT/EN, sometimes a
        // reserved bit (AnyThread, bit 32)
        (any::<u8>(), 0..4u64, any::<bool>(), any::<bool>(), 0..8u32).prop_map(
            move |(event, umask, e, i, extra)| {
                let mut v = u64::from(event) | umask << 8 | 0x3 << 16;
                if e {
                    v |= en;
                }
                if i {
                    v |= int;
                }
                match extra {
                    0 => v | 1 << 21,
                    1 => v | 1 << 32,
                    2 => v | 1 << 18, // edge: a raw event
                    _ => v,
                }
            }
        ),
        // FIXED_CTR_CTRL fields
        (0..0x1000u64).prop_map(|v| v & !0x444),
        0..0x1000u64,
        // GLOBAL_CTRL / OVF_CTRL masks, valid and not
        (0..16u64, 0..8u64).prop_map(|(gp, fixed)| gp | fixed << 32),
        Just(0x7_0000_000F),
        Just(0x8_0000_0010),
        // counters: near the wrap, small, beyond the width
        (1..5000u64).prop_map(|p| p.wrapping_neg() & ((1 << 48) - 1)),
        (1..5000u64).prop_map(|p| p.wrapping_neg()),
        0..5000u64,
        Just(1u64 << 48),
        any::<u64>(),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => msr().prop_map(Op::Read),
        5 => (msr(), value()).prop_map(|(m, v)| Op::Write(m, v)),
        2 => prop_oneof![0..100u64, 100..10_000u64, Just(1u64 << 20)].prop_map(Op::Advance),
        2 => Just(Op::Service),
    ]
}

/// A counter armed the way a sampling guest arms it: preloaded with `-period`, enabled with
/// its interrupt bit, and enabled in GLOBAL_CTRL. Random ops alone almost never line these
/// up, and without them no PMI would ever be tested.
fn arm() -> impl Strategy<Value = Vec<Op>> {
    (0..7u32, 1..5000u64, any::<bool>()).prop_map(|(c, period, int)| {
        let preload = period.wrapping_neg() & ((1 << 48) - 1);
        if c < 4 {
            let sel = 0xC0 | 0x3 << 16 | 1 << 22 | u64::from(int) << 20;
            vec![
                Op::Write(IA32_PMC0 + c, preload),
                Op::Write(IA32_PERFEVTSEL0 + c, sel),
                Op::Write(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F),
            ]
        } else {
            let f = c - 4;
            let ctrl = (0x3 | u64::from(int) << 3) << (4 * f);
            vec![
                Op::Write(IA32_FIXED_CTR0 + f, preload),
                Op::Write(IA32_FIXED_CTR_CTRL, ctrl),
                Op::Write(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F),
            ]
        }
    })
}

/// A program: random ops, with armed counters mixed in.
fn program() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        prop_oneof![4 => op().prop_map(|o| vec![o]), 1 => arm()],
        1..60,
    )
    .prop_map(|chunks| chunks.into_iter().flatten().collect())
}

fn apply(vpmu: &mut dyn VirtualPmu, clock: &ScriptedClock, ops: &[Op]) -> Vec<Seen> {
    ops.iter()
        .map(|op| match *op {
            Op::Read(m) => Seen::Read(vpmu.get_msr(m)),
            Op::Write(m, v) => Seen::Write(vpmu.set_msr(m, v)),
            Op::Advance(n) => {
                clock.advance(n);
                Seen::Nothing
            }
            Op::Service => Seen::Pmi(vpmu.service().pmi),
        })
        .collect()
}

/// Every MSR's value at the end, as a guest would read them one by one.
fn final_state(vpmu: &mut dyn VirtualPmu) -> Vec<(u32, Result<u64, Fault>)> {
    let mut msrs: Vec<u32> = (0..4).map(|i| IA32_PMC0 + i).collect();
    msrs.extend((0..4).map(|i| IA32_PERFEVTSEL0 + i));
    msrs.extend((0..3).map(|i| IA32_FIXED_CTR0 + i));
    msrs.extend([
        IA32_FIXED_CTR_CTRL,
        IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_CTRL,
        IA32_PERF_GLOBAL_OVF_CTRL,
    ]);
    msrs.into_iter().map(|m| (m, vpmu.get_msr(m))).collect()
}

/// What one tier made of a program.
#[derive(Debug)]
struct Outcome {
    tier: &'static Tier,
    /// What the guest saw, op by op.
    seen: Vec<Seen>,
    /// Every MSR's value at the end.
    last: Vec<(u32, Result<u64, Fault>)>,
    /// Host events the tier created.
    creates: u64,
    /// Host events it still holds.
    live: usize,
}

/// Runs `ops` through every tier, each on its own scripted host; the baseline's outcome
/// first, then the others' in table order.
fn every_tier(ops: &[Op]) -> (Outcome, Vec<Outcome>) {
    let (mut base, mut others) = (None, Vec::new());
    for tier in TIERS {
        let (perf, clock) = HostPerf::scripted();
        let mut vpmu = (tier.vpmu)(PmuCaps::default(), perf);
        let seen = apply(&mut vpmu, &clock, ops);
        let last = final_state(&mut vpmu);
        let outcome = Outcome {
            tier,
            seen,
            last,
            creates: vpmu.ledger().count(PerfOp::Create),
            live: clock.live_events(),
        };
        if tier.baseline {
            base = Some(outcome);
        } else {
            others.push(outcome);
        }
    }
    (base.expect("a baseline tier"), others)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn both_tiers_show_the_guest_the_same(ops in program()) {
        let (base, others) = every_tier(&ops);
        for o in &others {
            prop_assert_eq!(&o.seen, &base.seen, "{} and {}", o.tier.name, base.tier.name);
            prop_assert_eq!(&o.last, &base.last, "{} and {}", o.tier.name, base.tier.name);
            // The host side may differ, but only in the commit's direction.
            prop_assert!(
                o.creates <= base.creates,
                "{} created more host events than {}", o.tier.name, base.tier.name
            );
        }
        // And none leaks: every event a tier still holds is one of its counters'.
        for o in others.iter().chain([&base]) {
            prop_assert!(o.live <= 7, "{} holds {} events", o.tier.name, o.live);
        }
    }
}

#[test]
fn a_pmi_handlers_life_looks_the_same_through_both_tiers() {
    // Count to an overflow, stop everything, read, acknowledge, re-arm, go again: what a
    // sampling guest does fifty times a run.
    let (en_int, preload) = (
        1u64 << 22 | 1 << 20 | 3 << 16 | 0xC0,
        1000u64.wrapping_neg(),
    );
    let mut ops = vec![
        Op::Write(IA32_PMC0, preload),
        Op::Write(IA32_PERFEVTSEL0, en_int),
        Op::Write(IA32_FIXED_CTR_CTRL, 0xB),
        Op::Write(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1),
    ];
    for _ in 0..50 {
        ops.extend([
            Op::Advance(600),
            Op::Service,
            Op::Advance(600),
            Op::Service,
            Op::Write(IA32_PERF_GLOBAL_CTRL, 0),
            Op::Read(IA32_PERF_GLOBAL_STATUS),
            Op::Read(IA32_PMC0),
            Op::Read(IA32_FIXED_CTR0),
            Op::Write(IA32_PERF_GLOBAL_OVF_CTRL, 1 << 32 | 1),
            Op::Write(IA32_PMC0, preload),
            Op::Write(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1),
        ]);
    }
    let (base, others) = every_tier(&ops);
    assert!(base.seen.contains(&Seen::Pmi(true)));
    for o in others {
        // Same guest view, far fewer host events after the commit.
        assert_eq!(o.seen, base.seen, "{}", o.tier.name);
        assert!(
            o.creates < base.creates / 10,
            "{} created {}, {} {}",
            o.tier.name,
            o.creates,
            base.tier.name,
            base.creates
        );
    }
}

proptest! {
    // Long programs too: state that builds up over thousands of accesses.
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn long_programs_look_the_same_through_both_tiers(
        chunks in prop::collection::vec(program(), 20..40)
    ) {
        let ops: Vec<Op> = chunks.into_iter().flatten().collect();
        let (base, others) = every_tier(&ops);
        for o in others {
            prop_assert_eq!(&o.seen, &base.seen, "{}", o.tier.name);
        }
    }
}

#[test]
fn the_generators_reach_the_interesting_cases() {
    // A property test is only as good as its inputs: check that random programs do fault,
    // do overflow into a PMI, and do make each tier's host operations differ from the
    // baseline's.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut faults, mut pmis) = (0, 0);
    let mut saved_creates = vec![0; TIERS.len() - 1];
    for _ in 0..300 {
        let ops = program().new_tree(&mut runner).expect("a value").current();
        let (base, others) = every_tier(&ops);
        faults += base
            .seen
            .iter()
            .filter(|s| matches!(s, Seen::Read(Err(_)) | Seen::Write(Err(_))))
            .count();
        pmis += base.seen.iter().filter(|s| **s == Seen::Pmi(true)).count();
        for (saved, o) in saved_creates.iter_mut().zip(&others) {
            if o.creates < base.creates {
                *saved += 1;
            }
        }
    }
    assert!(faults > 100, "only {faults} faults in 300 programs");
    assert!(pmis > 10, "only {pmis} PMIs in 300 programs");
    let others = TIERS.iter().filter(|t| !t.baseline);
    for (saved, tier) in saved_creates.into_iter().zip(others) {
        assert!(
            saved > 10,
            "{} saved creates in only {saved} programs",
            tier.name
        );
    }
}
