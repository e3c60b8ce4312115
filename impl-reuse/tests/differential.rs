//! The commit must be invisible to the guest: the same MSR accesses, clock advances and
//! services through both tiers give the same values, faults and PMIs.

use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::msr::*;
use vmm::perf::{HostPerf, PerfOp, ScriptedClock};
use vmm::{PmuCaps, VirtualPmu};

const EN: u64 = 1 << 22;
const INT: u64 = 1 << 20;

/// One step of a guest's (or the host's) life.
#[derive(Debug, Clone, Copy)]
enum Step {
    Read(u32),
    Write(u32, u64),
    Advance(u64),
    Service,
}

/// What the guest could observe of a step.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Value(Result<u64, vmm::Fault>),
    Written(Result<(), vmm::Fault>),
    Pmi(bool),
    Nothing,
}

fn run(vpmu: &mut dyn VirtualPmu, clock: &ScriptedClock, steps: &[Step]) -> Vec<Seen> {
    steps
        .iter()
        .map(|&step| match step {
            Step::Read(msr) => Seen::Value(vpmu.get_msr(msr)),
            Step::Write(msr, data) => Seen::Written(vpmu.set_msr(msr, data)),
            Step::Advance(n) => {
                clock.advance(n);
                Seen::Nothing
            }
            Step::Service => Seen::Pmi(vpmu.service().pmi),
        })
        .collect()
}

/// A small deterministic generator (64-bit LCG, high bits), so the test needs no crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 16
    }

    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[(self.next() % from.len() as u64) as usize]
    }
}

fn random_steps(seed: u64, n: usize) -> Vec<Step> {
    let mut r = Lcg(seed);
    let counters: Vec<u32> = (0..4)
        .flat_map(|x| [IA32_PMC0 + x, IA32_A_PMC0 + x])
        .chain((0..3).map(|x| IA32_FIXED_CTR0 + x))
        .collect();
    let events = [0xC0, 0xC4, 0x3C, 0x01_3C, 0x0100_00C0, 0x2E, 0x4F_2E];
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let step = match r.next() % 16 {
            0..=2 => {
                let flags = r.pick(&[EN | 3 << 16, EN | 1 << 17, EN | 3 << 16 | INT, 3 << 16, 0]);
                let reserved = if matches!(r.next() % 20, 0) {
                    1 << 21
                } else {
                    0
                };
                Step::Write(
                    IA32_PERFEVTSEL0 + (r.next() % 4) as u32,
                    flags | r.pick(&events) | reserved,
                )
            }
            3 => Step::Write(
                IA32_PERF_GLOBAL_CTRL,
                r.pick(&[0xF, 0, 0x7_0000_000F, 0x5_0000_0003, 0x1_0000_0010]),
            ),
            4 => Step::Write(
                IA32_FIXED_CTR_CTRL,
                r.pick(&[0, 0x333, 0xBBB, 0x0B3, 0x004, 0x300]),
            ),
            5 => Step::Write(
                IA32_PERF_GLOBAL_OVF_CTRL,
                r.next() & (0xF | 0x7 << 32 | 1 << 40),
            ),
            6 => {
                let value = r.pick(&[
                    0,
                    1,
                    (-5i64) as u64,
                    (-1000i64) as u64,
                    0xFFFF_FFF0,
                    1 << 47,
                    1 << 48,
                ]);
                Step::Write(r.pick(&counters), value)
            }
            7..=10 => Step::Advance(r.pick(&[1, 3, 10, 100, 1000, 1 << 20])),
            11 | 12 => Step::Service,
            _ => Step::Read(r.pick(&[
                IA32_PERF_GLOBAL_STATUS,
                IA32_PERF_GLOBAL_CTRL,
                IA32_PMC0,
                IA32_PMC0 + 1,
                IA32_PMC0 + 3,
                IA32_FIXED_CTR0,
                IA32_FIXED_CTR0 + 2,
                IA32_PERFEVTSEL0 + 2,
                AMD_K7_PERF_BASE,
            ])),
        };
        steps.push(step);
    }
    steps
}

fn both(steps: &[Step]) -> (Vec<Seen>, Vec<Seen>, [u64; 2]) {
    let (perf, clock) = HostPerf::scripted();
    let mut legacy = LegacyPmu::new(PmuCaps::default(), perf);
    let seen_legacy = run(&mut legacy, &clock, steps);
    let (perf, clock) = HostPerf::scripted();
    let mut reuse = ReusePmu::new(PmuCaps::default(), perf);
    let seen_reuse = run(&mut reuse, &clock, steps);
    let creates = [
        legacy.ledger().count(PerfOp::Create),
        reuse.ledger().count(PerfOp::Create),
    ];
    (seen_legacy, seen_reuse, creates)
}

#[test]
fn a_guest_sees_the_same_pmu_through_both_tiers() {
    // A PMI handler's life: count to an overflow, stop, clear, re-arm, go again.
    let mut steps = vec![
        Step::Write(IA32_PMC0, (-1000i64) as u64),
        Step::Write(IA32_PERFEVTSEL0, EN | 3 << 16 | INT | 0xC0),
        Step::Write(IA32_FIXED_CTR_CTRL, 0xB),
        Step::Write(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1),
    ];
    for _ in 0..50 {
        steps.extend([
            Step::Advance(600),
            Step::Service,
            Step::Advance(600),
            Step::Service,
            Step::Write(IA32_PERF_GLOBAL_CTRL, 0),
            Step::Read(IA32_PERF_GLOBAL_STATUS),
            Step::Read(IA32_PMC0),
            Step::Read(IA32_FIXED_CTR0),
            Step::Write(IA32_PERF_GLOBAL_OVF_CTRL, 1 << 32 | 1),
            Step::Write(IA32_PMC0, (-1000i64) as u64),
            Step::Write(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1),
        ]);
    }
    let (legacy, reuse, creates) = both(&steps);
    assert_eq!(legacy, reuse);
    assert!(legacy.contains(&Seen::Pmi(true)));
    // Same guest view, far fewer host events for the reuse tier.
    assert!(creates[1] < creates[0] / 10, "{creates:?}");
}

#[test]
fn random_programs_look_the_same_through_both_tiers() {
    for seed in 0..20 {
        let steps = random_steps(seed, 3000);
        let (legacy, reuse, _) = both(&steps);
        for (i, (l, r)) in legacy.iter().zip(&reuse).enumerate() {
            assert_eq!(l, r, "seed {seed}, step {i}: {:?}", steps[i]);
        }
        assert!(
            legacy.contains(&Seen::Pmi(true)),
            "seed {seed} never raised a PMI"
        );
    }
}
