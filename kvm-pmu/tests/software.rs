//! Every tier on real host perf events (the software backend: task-clock on this thread),
//! without a guest: counts advance, pause and resume continue from the paused value, and no
//! descriptor leaks however often counters are reprogrammed. Each check runs on each tier.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tiers::{Tier, TierPmu, TIERS};
use vmm::msr::*;
use vmm::perf::{Backend, PerfOp};
use vmm::{PmuCaps, VirtualPmu};

const EN: u64 = 1 << 22;
const OS_USR: u64 = 3 << 16;

/// The leak test counts the process's descriptors: no other test may hold some meanwhile.
static FDS: Mutex<()> = Mutex::new(());

fn fds_lock() -> MutexGuard<'static, ()> {
    FDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn vpmu(tier: &Tier) -> Box<dyn TierPmu> {
    let perf = tier.host_perf(&Backend::Software).unwrap();
    (tier.vpmu)(PmuCaps::default(), perf)
}

/// Burns this thread's CPU until `done` or a generous deadline (never a timing assertion).
fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < Duration::from_secs(5) {
        for i in 0..20_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        if done() {
            return true;
        }
    }
    false
}

/// Burns this thread's CPU for about \`how_long\` of wall-clock time.
fn spin_for(how_long: Duration) {
    let start = Instant::now();
    spin_until(|| start.elapsed() >= how_long);
}

/// One `#[test]` per check, running it on each tier in turn.
macro_rules! on_every_tier {
    ($($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let _fds = fds_lock();
                for tier in TIERS {
                    let _tier = tier.checking();
                    checks::$check(tier);
                }
            }
        )*
    };
}

on_every_tier!(
    an_enabled_counter_advances,
    counting_continues_from_the_paused_value,
    reprogramming_100_000_times_leaks_no_descriptor,
);

mod checks {
    use super::*;

    pub fn an_enabled_counter_advances(tier: &Tier) {
        let mut v = vpmu(tier);
        v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | 0xC0).unwrap();
        v.set_msr(IA32_FIXED_CTR_CTRL, 0x3).unwrap();
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 1 << 32 | 1).unwrap();
        assert!(spin_until(|| v.get_msr(IA32_PMC0).unwrap() > 0));
        assert!(spin_until(|| v.get_msr(IA32_FIXED_CTR0).unwrap() > 0));
        assert_eq!(v.get_msr(IA32_PMC0 + 1), Ok(0));
    }

    pub fn counting_continues_from_the_paused_value(tier: &Tier) {
        let mut v = vpmu(tier);
        v.set_msr(IA32_PERFEVTSEL0, EN | OS_USR | 0xC0).unwrap();
        let mut last = 0;
        for _ in 0..20 {
            assert!(spin_until(|| v.get_msr(IA32_PMC0).unwrap() > last));
            v.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
            let paused = v.get_msr(IA32_PMC0).unwrap();
            assert!(paused > last);
            spin_for(Duration::from_millis(1));
            assert_eq!(v.get_msr(IA32_PMC0), Ok(paused), "a stopped counter moved");
            v.set_msr(IA32_PERF_GLOBAL_CTRL, 0xF).unwrap();
            let resumed = v.get_msr(IA32_PMC0).unwrap();
            assert!(
                resumed >= paused,
                "{resumed} < {paused}: the count went back"
            );
            last = resumed;
        }
        // Before the commit every re-enable creates an event; after it, only the first.
        let expected_creates = if tier.baseline { 21 } else { 1 };
        assert_eq!(v.ledger().count(PerfOp::Create), expected_creates);
        assert!(
            v.perf().last_error().is_none(),
            "{:?}",
            v.perf().last_error()
        );
    }

    pub fn reprogramming_100_000_times_leaks_no_descriptor(tier: &Tier) {
        let before = open_fds();
        let mut v = vpmu(tier);
        v.set_msr(IA32_PERF_GLOBAL_CTRL, 0x7_0000_000F).unwrap();
        let events = [0xC0, 0xC4, 0x3C, 0x2E];
        for i in 0..100_000u64 {
            let x = (i % 4) as u32;
            let event = events[((i / 8) % 4) as usize];
            let en = if (i / 4) % 2 == 0 { EN } else { 0 };
            v.set_msr(IA32_PERFEVTSEL0 + x, en | OS_USR | event)
                .unwrap();
            if i % 16 == 0 {
                let ctrl = if (i / 16) % 2 == 0 { 0x333 } else { 0 };
                v.set_msr(IA32_FIXED_CTR_CTRL, ctrl).unwrap();
            }
            let pmu = v.kvm_pmu().expect("the tier keeps KVM's PMU state");
            assert!(pmu.live_events() <= 7);
        }
        assert!(open_fds() <= before + 7);
        assert!(v.ledger().count(PerfOp::Create) > 1000);
        assert!(
            v.perf().last_error().is_none(),
            "{:?}",
            v.perf().last_error()
        );
        drop(v);
        assert_eq!(open_fds(), before);
    }
}
