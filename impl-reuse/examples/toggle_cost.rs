//! Host perf cost of toggling a counter in `IA32_PERF_GLOBAL_CTRL`, per tier, on the software
//! backend (real task-clock events on this thread, no guest). Run with
//! `cargo run --release -p impl-reuse --example toggle_cost`.

use impl_legacy::LegacyPmu;
use impl_reuse::ReusePmu;
use vmm::msr::*;
use vmm::perf::{select, BackendChoice, HostPerf, Ledger, PerfOp};
use vmm::{PmuCaps, VirtualPmu};

const TOGGLES: u32 = 20_000;

fn toggle(vpmu: &mut dyn VirtualPmu) {
    vpmu.set_msr(IA32_PERFEVTSEL0, 1 << 22 | 3 << 16 | 0xC0)
        .unwrap();
    for _ in 0..TOGGLES {
        vpmu.set_msr(IA32_PERF_GLOBAL_CTRL, 0).unwrap();
        vpmu.set_msr(IA32_PERF_GLOBAL_CTRL, 0xF).unwrap();
    }
}

fn report(name: &str, ledger: &Ledger) {
    let total: std::time::Duration = PerfOp::ALL.iter().map(|&op| ledger.total(op)).sum();
    println!(
        "{name:>20}: {:>7.2} us of perf calls per off+on toggle",
        total.as_secs_f64() * 1e6 / f64::from(TOGGLES)
    );
    for op in PerfOp::ALL {
        if ledger.count(op) > 0 {
            println!(
                "{:>24} {:>7} calls, {:>6.2} us each",
                op.name(),
                ledger.count(op),
                ledger.total(op).as_secs_f64() * 1e6 / ledger.count(op) as f64
            );
        }
    }
}

fn main() {
    let selected = select(BackendChoice::Auto).expect("a backend");
    println!("backend: {}", selected.reason);
    let perf = HostPerf::new(selected.backend.clone()).expect("perf");
    let mut legacy = LegacyPmu::new(PmuCaps::default(), perf);
    toggle(&mut legacy);
    report(legacy.tier_name(), legacy.ledger());
    let perf = HostPerf::new(selected.backend).expect("perf");
    let mut reuse = ReusePmu::new(PmuCaps::default(), perf);
    toggle(&mut reuse);
    report(reuse.tier_name(), reuse.ledger());
}
