//! `vpmu probe`: the PMU a guest sees (CPUID leaf 0xA, decoded by a guest) and the perf
//! backend behind it, with what that backend cannot do.

use std::fmt::Write as _;

use impl_reuse::ReusePmu;
use vmm::perf::{select, BackendChoice, HostPerf};

use crate::host::HostInfo;
use crate::Error;

/// Boots the suite's CPUID guest and describes the PMU and backend, as text.
pub fn probe(choice: BackendChoice) -> Result<String, Error> {
    let selected = select(choice)?;
    let host = HostInfo::probe(&selected);
    let perf = HostPerf::new(selected.backend.clone())?;
    let scenario = guests::suite::by_name("cpuid_leaf_0xa");
    let out = guests::run_scenario(scenario, ReusePmu::new(crate::compare::caps(), perf))?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "host: {}; CPU {} ({} CPUs); KVM module {}; nmi_watchdog {}",
        host.kernel, host.cpu, host.cpus, host.kvm_module, host.nmi_watchdog
    );
    let _ = writeln!(
        s,
        "\nThe PMU the guest sees (a guest read CPUID leaf 0xA and IA32_PERF_CAPABILITIES):"
    );
    for line in out.transcript.to_string().lines() {
        let _ = writeln!(s, "  {line}");
    }
    let _ = writeln!(s, "\nperf backend: {}", host.backend);
    let _ = writeln!(s, "  why: {}", host.backend_reason);
    let limits = selected.backend.limitations();
    if limits.is_empty() {
        let _ = writeln!(s, "  limitations: none known");
    } else {
        let _ = writeln!(s, "  limitations:");
        for l in limits {
            let _ = writeln!(s, "  - {l}");
        }
    }
    Ok(s)
}
