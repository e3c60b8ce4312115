//! A guest that reprograms a counter 100 000 times leaves the process's open descriptors
//! where they were, on every tier. (A test binary of its own: the count is process-wide.)

use guests::iced_x86::code_asm::{r12, CodeAssembler};
use guests::Guest;
use tiers::TIERS;
use vmm::msr::IA32_PERFEVTSEL0;
use vmm::perf::{select, BackendChoice, PerfOp};
use vmm::PmuCaps;

/// Enable/disable pairs: each is two reprograms of GP counter 0.
const PAIRS: u64 = 50_000;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

/// Ring 0: `PAIRS` times, enable counter 0 (GLOBAL_CTRL enables it from reset), then disable.
fn reprogrammer() -> guests::Program {
    let mut g = Guest::new("reprogram 100 000 times");
    let enabled = guests::linux::evtsel(0xC0, 0, false);
    let mut top = g.label();
    g.asm(|a: &mut CodeAssembler| a.mov(r12, PAIRS));
    g.place(&mut top);
    g.wrmsr(IA32_PERFEVTSEL0, enabled);
    g.wrmsr(IA32_PERFEVTSEL0, 0);
    g.asm(|a| {
        a.dec(r12)?;
        a.jnz(top)
    });
    g.finish()
}

#[test]
fn reprogramming_from_a_guest_leaks_nothing_on_any_tier() {
    let selected = select(BackendChoice::Auto).expect("a backend").backend;
    for tier in TIERS {
        let _tier = tier.checking();
        let perf = tier.host_perf(&selected).expect("host perf");
        let before = open_fds();
        let run = reprogrammer()
            .run((tier.vpmu)(PmuCaps::default(), perf))
            .expect("the guest finishes");
        assert_eq!(run.machine.stats().pmu_wrmsr, 2 * PAIRS);
        // Before the commit every enable creates an event; after it, the first one does.
        let expected_creates = if tier.baseline { PAIRS } else { 1 };
        assert_eq!(
            run.machine.pmu().ledger().count(PerfOp::Create),
            expected_creates
        );
        drop(run);
        assert_eq!(open_fds(), before, "descriptors leaked");
    }
}
