//! The contract between the machine and a virtual PMU.
//!
//! The machine knows nothing of counters. It routes every PMU MSR access (see
//! [`crate::msr::PMU_MSR_BLOCKS`]) to a [`VirtualPmu`], turns a [`Fault`] into a #GP in the
//! guest, and before every entry into the guest asks the vPMU to [`VirtualPmu::service`]
//! whatever its host perf events reported; when that answers that a PMI is due, the machine
//! injects an NMI (`KVM_NMI`), which is how a guest's LVTPC is normally programmed to deliver
//! a PMI.

use crate::caps::PmuCaps;

// ANCHOR: fault_service
/// A guest access that must fail with #GP(0), as hardware would fail it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault;

/// What the machine must do before the guest runs again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Service {
    /// Inject an NMI: a counter with its interrupt bit set overflowed (KVM's `KVM_REQ_PMI`).
    pub pmi: bool,
}
// ANCHOR_END: fault_service

// ANCHOR: virtual_pmu
/// A virtual PMU living in user space.
///
/// The two tiers of this workbook (`impl-legacy`, `impl-reuse`) implement it; tests implement
/// small ones to exercise the machine. Calls come from the vCPU thread only, and host perf
/// events a vPMU creates belong to that thread.
pub trait VirtualPmu {
    /// The geometry the guest is told about in CPUID.
    fn caps(&self) -> PmuCaps;

    /// A guest `RDMSR` of a routed MSR (KVM's `kvm_pmu_get_msr`).
    fn get_msr(&mut self, msr: u32) -> Result<u64, Fault>;

    /// A guest `WRMSR` of a routed MSR (KVM's `kvm_pmu_set_msr`).
    fn set_msr(&mut self, msr: u32, data: u64) -> Result<(), Fault>;

    /// Called before every entry into the guest: pick up host perf overflows, do the work
    /// KVM does for `KVM_REQ_PMU` (`kvm_pmu_handle_event`), and say whether a PMI is due.
    fn service(&mut self) -> Service;
}
// ANCHOR_END: virtual_pmu
