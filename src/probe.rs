//! `vpmu probe`: the PMU a guest sees (CPUID leaf 0xA, decoded by a guest) on every tier,
//! and the perf backend behind it, with what that backend cannot do.

use std::fmt::Write as _;

use guests::transcript::Transcript;
use tiers::{Tier, TIERS};
use vmm::perf::{select, BackendChoice};

use crate::host::HostInfo;
use crate::run::caps;
use crate::Error;

/// Boots the suite's CPUID guest on every tier and describes the PMU and backend, as text.
/// Tiers that show the guest the same PMU share one description.
pub fn probe(choice: BackendChoice) -> Result<String, Error> {
    let selected = select(choice)?;
    let host = HostInfo::probe(&selected);
    let scenario = guests::suite::by_name("cpuid_leaf_0xa");
    let mut seen: Vec<(Transcript, Vec<&Tier>)> = Vec::new();
    for tier in TIERS {
        let perf = tier.host_perf(&selected.backend)?;
        let out = guests::run_scenario(scenario, (tier.vpmu)(caps(), perf))?;
        match seen.iter_mut().find(|(t, _)| *t == out.transcript) {
            Some((_, tiers)) => tiers.push(tier),
            None => seen.push((out.transcript, vec![tier])),
        }
    }
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
    for (transcript, tiers) in &seen {
        if seen.len() > 1 {
            let labels: Vec<&str> = tiers.iter().map(|t| t.label).collect();
            let _ = writeln!(s, "on {}:", labels.join(", "));
        }
        for line in transcript.to_string().lines() {
            let _ = writeln!(s, "  {line}");
        }
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
