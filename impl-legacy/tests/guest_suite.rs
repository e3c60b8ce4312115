//! The guest suite (every scenario of `guests::SCENARIOS`) on the legacy tier, on real KVM
//! guests with the host's perf backend.

use impl_legacy::LegacyPmu;
use vmm::perf::{select, BackendChoice, HostPerf};

fn host_perf() -> HostPerf {
    let selected = select(BackendChoice::Auto).unwrap_or_else(|e| panic!("{e}"));
    HostPerf::new(selected.backend).unwrap_or_else(|e| panic!("{e}"))
}

guests::guest_suite! {
    make: |caps| LegacyPmu::new(caps, host_perf()),
    trace: |pmu: &LegacyPmu| pmu.ledger().trace(),
}
