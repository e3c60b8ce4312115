//! A guest that reprograms a counter 100 000 times leaves the process's open descriptors
//! where they were, on both tiers. (A test binary of its own: the count is process-wide.)

use guests::iced_x86::code_asm::{r12, CodeAssembler};
use guests::Guest;
use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::msr::IA32_PERFEVTSEL0;
use vmm::perf::{select, BackendChoice, HostPerf, PerfOp};
use vmm::{PmuCaps, VirtualPmu};

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

fn host_perf() -> HostPerf {
    HostPerf::new(select(BackendChoice::Auto).expect("a backend").backend).expect("host perf")
}

fn check<P: VirtualPmu>(pmu: P, creates: impl Fn(&P) -> u64, expected_creates: u64) {
    let before = open_fds();
    let run = reprogrammer().run(pmu).expect("the guest finishes");
    assert_eq!(run.machine.stats().pmu_wrmsr, 2 * PAIRS);
    assert_eq!(creates(run.machine.pmu()), expected_creates);
    drop(run);
    assert_eq!(open_fds(), before, "descriptors leaked");
}

#[test]
fn reprogramming_from_a_guest_leaks_nothing_on_either_tier() {
    let caps = PmuCaps::default();
    check(
        LegacyPmu::new(caps, host_perf()),
        |p| p.ledger().count(PerfOp::Create),
        PAIRS,
    );
    check(
        ReusePmu::new(caps, host_perf()),
        |p| p.ledger().count(PerfOp::Create),
        1,
    );
}
