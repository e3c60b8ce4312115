//! The guest-visible rules of the Intel PMU (SDM vol. 3B, perfmon version 2), checked through
//! every tier of the tier table with the scripted backend: the commit must not change any of
//! them.

use kvm_pmu::KvmPmu;
use tiers::{Tier, TierPmu, TIERS};
use vmm::msr::*;
use vmm::perf::{
    EventKind, HostPerf, ScriptedClock, PERF_COUNT_HW_BUS_CYCLES, PERF_COUNT_HW_INSTRUCTIONS,
    PERF_COUNT_HW_REF_CPU_CYCLES,
};
use vmm::{Fault, PmuCaps, VirtualPmu};

const EN: u64 = 1 << 22;
const USR: u64 = 1 << 16;
const OS: u64 = 1 << 17;
const INT: u64 = 1 << 20;
const INSTRUCTIONS: u64 = 0xC0;
const MASK48: u64 = (1 << 48) - 1;

type Vpmu = Box<dyn TierPmu>;

fn vpmu(tier: &Tier, caps: PmuCaps) -> (Vpmu, ScriptedClock) {
    let (perf, clock) = HostPerf::scripted();
    ((tier.vpmu)(caps, perf), clock)
}

/// KVM's PMU state, which these rules also check: every tier keeps one.
trait State {
    fn pmu(&self) -> &KvmPmu;
    fn pmu_mut(&mut self) -> &mut KvmPmu;
}

impl State for Vpmu {
    fn pmu(&self) -> &KvmPmu {
        self.kvm_pmu().expect("the tier keeps KVM's PMU state")
    }

    fn pmu_mut(&mut self) -> &mut KvmPmu {
        self.kvm_pmu_mut().expect("the tier keeps KVM's PMU state")
    }
}

/// Everything a faulting write must leave alone.
fn snapshot(v: &mut Vpmu) -> Vec<u64> {
    let caps = v.caps();
    let mut msrs = vec![
        IA32_FIXED_CTR_CTRL,
        IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_CTRL,
        IA32_PERF_GLOBAL_OVF_CTRL,
        IA32_PERF_CAPABILITIES,
    ];
    msrs.extend((0..u32::from(caps.nr_gp)).flat_map(|x| [IA32_PMC0 + x, IA32_PERFEVTSEL0 + x]));
    msrs.extend((0..u32::from(caps.nr_fixed)).map(|x| IA32_FIXED_CTR0 + x));
    let mut values: Vec<u64> = msrs.iter().map(|&m| v.get_msr(m).unwrap()).collect();
    values.push(v.pmu().reprogram_pmi);
    values.push(v.pmu().live_events() as u64);
    values
}

/// One `#[test]` per check, running `$body` once per row of the tier table, with `$tier` the
/// row.
macro_rules! on_every_tier {
    ($(fn $name:ident($tier:ident) $body:block)*) => {$(
        #[test]
        fn $name() {
            fn check($tier: &'static Tier) $body
            for tier in TIERS {
                let _tier = tier.checking();
                check(tier);
            }
        }
    )*};
}

on_every_tier! {
    fn eventsel_reserved_bits_fault_and_change_nothing(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | OS | INSTRUCTIONS).unwrap();
        let before = snapshot(&mut v);
        let ledger_before = v.ledger().trace();
        for bad in [1 << 21, 1 << 32, 1 << 63, 0xFFFF_FFFF_0000_0000] {
            assert_eq!(v.set_msr(IA32_PERFEVTSEL0, EN | OS | bad), Err(Fault), "{bad:#x}");
            assert_eq!(v.set_msr(IA32_PERFEVTSEL0 + 1, bad), Err(Fault), "{bad:#x}");
        }
        assert_eq!(snapshot(&mut v), before);
        // Only the snapshot's reads are new in the ledger: no create, release or pause.
        assert!(v.ledger().trace()[ledger_before.len()..].iter().all(|l| l.starts_with("read")));
    }

    fn eventsel_same_value_does_nothing(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | INSTRUCTIONS).unwrap();
        let n = v.ledger().entries().len();
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | INSTRUCTIONS).unwrap();
        assert_eq!(v.ledger().entries().len(), n);
        assert_eq!(v.get_msr(IA32_PERFEVTSEL0), Ok(EN | USR | INSTRUCTIONS));
    }

    fn pmc_writes_take_bits_31_0_sign_extended(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        for (data, seen) in [
            (0xFFFF_FFF0, 0xFFFF_FFFF_FFF0),
            (0x7FFF_FFFF, 0x7FFF_FFFF),
            (0x1_0000_0005, 5),
            (0xABCD_0000_8000_0000, 0xFFFF_8000_0000),
        ] {
            v.set_msr(IA32_PMC0 + 1, data).unwrap();
            assert_eq!(v.get_msr(IA32_PMC0 + 1), Ok(seen), "{data:#x}");
            assert_eq!(v.get_msr(IA32_A_PMC0 + 1), Ok(seen), "{data:#x}");
        }
        // A narrower counter sign-extends to its own width.
        let (mut v, _clock) = vpmu(tier, PmuCaps { gp_width: 40, ..PmuCaps::default() });
        v.set_msr(IA32_PMC0, 0x8000_0000).unwrap();
        assert_eq!(v.get_msr(IA32_PMC0), Ok(0xFF_8000_0000));
    }

    fn full_width_writes_only_when_advertised(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        assert_eq!(v.get_msr(IA32_PERF_CAPABILITIES), Ok(vmm::caps::PERF_CAP_FW_WRITE));
        v.set_msr(IA32_A_PMC0 + 2, 0x1234_5678_9ABC).unwrap();
        assert_eq!(v.get_msr(IA32_PMC0 + 2), Ok(0x1234_5678_9ABC));
        let before = snapshot(&mut v);
        assert_eq!(v.set_msr(IA32_A_PMC0 + 2, 1 << 48), Err(Fault));
        assert_eq!(v.set_msr(IA32_A_PMC0 + 2, u64::MAX), Err(Fault));
        assert_eq!(snapshot(&mut v), before);

        let caps = PmuCaps { full_width_writes: false, ..PmuCaps::default() };
        let (mut v, _clock) = vpmu(tier, caps);
        assert_eq!(v.get_msr(IA32_PERF_CAPABILITIES), Ok(0));
        assert_eq!(v.get_msr(IA32_A_PMC0), Err(Fault));
        assert_eq!(v.set_msr(IA32_A_PMC0, 1), Err(Fault));
        assert_eq!(v.get_msr(IA32_PMC0), Ok(0));
    }

    fn fixed_counter_writes_are_full_width_masked(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_FIXED_CTR0 + 2, u64::MAX).unwrap();
        assert_eq!(v.get_msr(IA32_FIXED_CTR0 + 2), Ok(MASK48));
        v.set_msr(IA32_FIXED_CTR0, 0x1234_5678_9ABC).unwrap();
        assert_eq!(v.get_msr(IA32_FIXED_CTR0), Ok(0x1234_5678_9ABC));
    }

    fn fixed_ctr_ctrl_reserved_bits_fault(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        let before = snapshot(&mut v);
        for bad in [0x4, 0x40, 0x400, 1 << 12, 1 << 63] {
            assert_eq!(v.set_msr(IA32_FIXED_CTR_CTRL, 0x3 | bad), Err(Fault), "{bad:#x}");
        }
        assert_eq!(snapshot(&mut v), before);
        v.set_msr(IA32_FIXED_CTR_CTRL, 0xBBB).unwrap();
        assert_eq!(v.get_msr(IA32_FIXED_CTR_CTRL), Ok(0xBBB));
        // With two fixed counters, the third field is reserved.
        let (mut v, _clock) = vpmu(tier, PmuCaps { nr_fixed: 2, ..PmuCaps::default() });
        assert_eq!(v.set_msr(IA32_FIXED_CTR_CTRL, 0x100), Err(Fault));
        assert_eq!(v.set_msr(IA32_FIXED_CTR_CTRL, 0xBB), Ok(()));
    }

    fn global_ctrl_resets_to_gp_bits_and_faults_beyond_the_counters(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_CTRL), Ok(0xF));
        let before = snapshot(&mut v);
        for bad in [1 << 4, 1 << 8, 1 << 31, 1 << 35, 1 << 63] {
            assert_eq!(v.set_msr(IA32_PERF_GLOBAL_CTRL, 0x1 | bad), Err(Fault), "{bad:#x}");
        }
        assert_eq!(snapshot(&mut v), before);
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F).unwrap();
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_CTRL), Ok(0x7_0000_000F));
        let (v, _clock) = vpmu(tier, PmuCaps::with_gp(2));
        assert_eq!(v.pmu().global_ctrl, 0x3);
    }

    fn read_only_msrs_fault_on_write(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        v.pmu_mut().global_status = 0b101;
        let before = snapshot(&mut v);
        assert_eq!(v.set_msr(IA32_PERF_GLOBAL_STATUS, 0), Err(Fault));
        assert_eq!(v.set_msr(IA32_PERF_CAPABILITIES, 0), Err(Fault));
        assert_eq!(snapshot(&mut v), before);
    }

    fn ovf_ctrl_clears_exactly_the_bits_written(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps::default());
        let status = 0b1011 | 1 << 33 | 1 << 34;
        v.pmu_mut().global_status = status;
        v.set_msr(IA32_PERF_GLOBAL_OVF_CTRL, 0b0010 | 1 << 34).unwrap();
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0b1001 | 1 << 33));
        // KVM 5.4 reads back the last value written.
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_OVF_CTRL), Ok(0b0010 | 1 << 34));
        let before = snapshot(&mut v);
        for bad in [1 << 4, 1 << 35, 1 << 61] {
            assert_eq!(v.set_msr(IA32_PERF_GLOBAL_OVF_CTRL, 0b1 | bad), Err(Fault), "{bad:#x}");
        }
        assert_eq!(snapshot(&mut v), before);
        // Bits 62 and 63 (OvfBuf, CondChgd) are accepted, as KVM accepts them.
        v.set_msr(IA32_PERF_GLOBAL_OVF_CTRL, 3 << 62 | 1).unwrap();
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0b1000 | 1 << 33));
    }

    fn msrs_the_guest_does_not_have_fault(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps { nr_gp: 2, nr_fixed: 2, ..PmuCaps::default() });
        let before = snapshot(&mut v);
        let absent = [
            IA32_PMC0 + 2,
            IA32_PMC0 + 7,
            IA32_A_PMC0 + 2,
            IA32_PERFEVTSEL0 + 2,
            IA32_FIXED_CTR0 + 2,
            IA32_FIXED_CTR0 + 3,
            AMD_K7_PERF_BASE,
            AMD_K7_PERF_BASE + 4,
            AMD_F15H_PERF_BASE,
            AMD_F15H_PERF_BASE + 11,
        ];
        for msr in absent {
            assert!(is_pmu_msr(msr), "{}", name(msr));
            assert_eq!(v.get_msr(msr), Err(Fault), "{}", name(msr));
            assert_eq!(v.set_msr(msr, 0), Err(Fault), "{}", name(msr));
            assert_eq!(v.set_msr(msr, EN | OS), Err(Fault), "{}", name(msr));
        }
        assert_eq!(snapshot(&mut v), before);
    }

    fn reads_advance_only_while_enabled(tier) {
        let (mut v, clock) = vpmu(tier, PmuCaps::default());
        clock.advance(1000); // nothing counts yet
        assert_eq!(v.get_msr(IA32_PMC0), Ok(0));
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | OS | INSTRUCTIONS).unwrap();
        clock.advance(100);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(100));
        // Off by EN.
        v.set_msr(IA32_PERFEVTSEL0, USR | OS | INSTRUCTIONS).unwrap();
        clock.advance(50);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(100));
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | OS | INSTRUCTIONS).unwrap();
        clock.advance(7);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(107));
        // Off by GLOBAL_CTRL.
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
        clock.advance(50);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(107));
        // Fixed counter 1, USR only, on in both places.
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x2 << 4).unwrap();
        clock.advance(5);
        assert_eq!(v.get_msr(IA32_FIXED_CTR0 + 1), Ok(0));
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 33 | 1).unwrap();
        clock.advance(20);
        assert_eq!(v.get_msr(IA32_FIXED_CTR0 + 1), Ok(20));
        assert_eq!(v.get_msr(IA32_PMC0), Ok(127));
        v.set_msr(IA32_FIXED_CTR_CTRL, 0).unwrap();
        clock.advance(20);
        assert_eq!(v.get_msr(IA32_FIXED_CTR0 + 1), Ok(20));
        // A write sets the visible value; counting continues from it.
        v.set_msr(IA32_PMC0, 1000).unwrap();
        clock.advance(3);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(1003));
    }

    fn overflow_sets_status_and_asks_for_a_pmi_only_with_int(tier) {
        let (mut v, clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_PMC0, (-10i64) as u64).unwrap();
        v.set_msr(IA32_PMC0 + 1, (-10i64) as u64).unwrap();
        v.set_msr(IA32_FIXED_CTR0, MASK48 - 9).unwrap();
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | OS | INSTRUCTIONS).unwrap();
        v.set_msr(IA32_PERFEVTSEL0 + 1, EN | USR | OS | INT | INSTRUCTIONS).unwrap();
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 0b11).unwrap();
        assert!(!v.service().pmi);

        // Counter 0 (no INT) wraps: status, no PMI.
        v.set_msr(IA32_PERFEVTSEL0 + 1, USR | OS | INT | INSTRUCTIONS).unwrap();
        clock.advance(15);
        assert!(!v.service().pmi);
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0b1));
        assert_eq!(v.get_msr(IA32_PMC0), Ok(5));

        // Counter 1 (INT) wraps: status and PMI, once.
        v.set_msr(IA32_PERFEVTSEL0 + 1, EN | USR | OS | INT | INSTRUCTIONS).unwrap();
        clock.advance(10);
        assert!(v.service().pmi);
        assert!(!v.service().pmi);
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0b11));
        assert_eq!(v.get_msr(IA32_PMC0 + 1), Ok(0));
        assert_eq!(v.get_msr(IA32_PMC0), Ok(15));

        // Fixed counter 0 with PMI (field 0xB) wraps.
        v.set_msr(IA32_FIXED_CTR_CTRL, 0xB).unwrap();
        clock.advance(10);
        assert!(v.service().pmi);
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0b11 | 1 << 32));
        assert_eq!(v.get_msr(IA32_FIXED_CTR0), Ok(0));

        // Re-armed at the next wrap, a full period later.
        v.set_msr(IA32_PERF_GLOBAL_OVF_CTRL, 0b11 | 1 << 32).unwrap();
        clock.advance(1000);
        assert!(!v.service().pmi);
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(0));
        assert_eq!(v.pmu().reprogram_pmi, 0);
    }

    fn writing_a_running_counter_moves_its_overflow(tier) {
        let (mut v, clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_PERFEVTSEL0, EN | OS | INT | INSTRUCTIONS).unwrap();
        clock.advance(100);
        v.set_msr(IA32_PMC0, (-5i64) as u64).unwrap();
        assert!(v.pmu().req_pmu);
        assert!(!v.service().pmi); // re-derives the period
        assert_eq!(v.get_msr(IA32_PMC0), Ok(MASK48 - 4));
        clock.advance(5);
        assert!(v.service().pmi);
        assert_eq!(v.get_msr(IA32_PERF_GLOBAL_STATUS), Ok(1));
    }

    fn host_events_follow_the_guest_programming(tier) {
        let (mut v, _clock) = vpmu(tier, PmuCaps { unavailable_events: 1 << 5, ..PmuCaps::default() });
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F).unwrap();
        v.set_msr(IA32_PMC0 + 1, 0xFFFF_FF00).unwrap();
        v.set_msr(IA32_PERFEVTSEL0, EN | USR | INSTRUCTIONS).unwrap();
        v.set_msr(IA32_PERFEVTSEL0 + 1, EN | OS | INT | 0x01_3C).unwrap();
        // A counter mask makes even an architectural event raw; USR/OS/INT/EN are dropped.
        v.set_msr(IA32_PERFEVTSEL0 + 2, EN | OS | 0x0200_0000 | INSTRUCTIONS).unwrap();
        // Branch instructions (0xC4), marked unavailable in CPUID: raw.
        v.set_msr(IA32_PERFEVTSEL0 + 3, EN | OS | USR | 0xC4).unwrap();
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x1 << 8).unwrap();
        let pmu = v.pmu();
        let attr = |idx: u32| *pmu.pmc(idx).unwrap().perf_event.as_ref().unwrap().attr();
        let a = attr(0);
        assert_eq!(a.kind, EventKind::Hardware(PERF_COUNT_HW_INSTRUCTIONS));
        assert_eq!((a.exclude_user, a.exclude_kernel, a.intr), (false, true, false));
        assert_eq!(a.sample_period, 1 << 48, "a counter at 0 waits a full wrap");
        assert!(a.exclude_host && a.pinned);
        let a = attr(1);
        assert_eq!(a.kind, EventKind::Hardware(PERF_COUNT_HW_BUS_CYCLES));
        assert_eq!((a.exclude_user, a.exclude_kernel, a.intr), (true, false, true));
        assert_eq!(a.sample_period, 0x100);
        assert_eq!(attr(2).kind, EventKind::Raw(0x0200_0000 | INSTRUCTIONS));
        assert_eq!(attr(3).kind, EventKind::Raw(0xC4));
        let a = attr(34);
        assert_eq!(a.kind, EventKind::Hardware(PERF_COUNT_HW_REF_CPU_CYCLES));
        assert_eq!((a.exclude_user, a.exclude_kernel, a.intr), (true, false, false));
    }

    fn a_refused_create_leaves_the_counter_without_an_event(tier) {
        let (mut v, clock) = vpmu(tier, PmuCaps::default());
        clock.set_refuse_create(Some(libc::ENOENT));
        v.set_msr(IA32_PMC0, 42).unwrap();
        v.set_msr(IA32_PERFEVTSEL0, EN | OS | INSTRUCTIONS).unwrap();
        assert_eq!(v.pmu().live_events(), 0);
        let (idx, e) = v.pmu().last_create_error.clone().unwrap();
        assert_eq!(idx, 0);
        assert!(e.to_string().contains("no hardware PMU"), "{e}");
        clock.advance(10);
        assert_eq!(v.get_msr(IA32_PMC0), Ok(42));
        assert_eq!(v.ledger().trace(), ["create gp0 refused"]);
    }

    fn dropping_the_vpmu_releases_every_event(tier) {
        let (mut v, clock) = vpmu(tier, PmuCaps::default());
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F).unwrap();
        for x in 0..4 {
            v.set_msr(IA32_PERFEVTSEL0 + x, EN | OS | INSTRUCTIONS).unwrap();
        }
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x333).unwrap();
        // Disabled again: the reuse tier keeps these paused, the legacy one released them.
        v.set_msr(IA32_PERFEVTSEL0, OS | INSTRUCTIONS).unwrap();
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x330).unwrap();
        assert!(clock.live_events() >= 5);
        drop(v);
        assert_eq!(clock.live_events(), 0);
    }
}
