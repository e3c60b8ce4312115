//! # kvm-pmu: the guest-visible Intel PMU, and the parts of KVM's vPMU the commit kept
//!
//! ## The model
//!
//! The guest sees an Intel architectural PMU, version 2 (SDM vol. 3B, "Architectural
//! Performance Monitoring"), of the geometry in [`vmm::PmuCaps`]: `nr_gp` general-purpose
//! counters and `nr_fixed` fixed counters. Each guest counter is a [`KvmPmc`]; all of them,
//! with the global registers, make a [`KvmPmu`].
//!
//! Counters have one number each, KVM's `pmc->idx`, which is also their bit in the global
//! registers:
//!
//! | counter | idx | MSRs | bit in `GLOBAL_CTRL`/`GLOBAL_STATUS` |
//! |---|---|---|---|
//! | GP counter `x` | `x` | `IA32_PMCx`, `IA32_A_PMCx`, `IA32_PERFEVTSELx` | `x` |
//! | fixed counter `x` | `32 + x` | `IA32_FIXED_CTRx`, field `x` of `IA32_FIXED_CTR_CTRL` | `32 + x` |
//!
//! A guest counter is not counted by anything itself. While it is enabled (its own enable
//! bits *and* its bit in `GLOBAL_CTRL`), a host perf event counts for it, and the guest value
//! is `pmc.counter + (the host event's count)`, masked to the counter width
//! ([`pmc_read_counter`]). The host event is created with a sample period of "events until
//! the guest counter wraps", so the host overflow *is* the guest overflow
//! ([`pmc_reprogram_counter`]). An overflow sets the counter's `GLOBAL_STATUS` bit, marks the
//! counter for reprogramming and asks for `KVM_REQ_PMU`; with the counter's interrupt bit, it
//! also asks for `KVM_REQ_PMI` ([`kvm_perf_overflow`]). Servicing `KVM_REQ_PMU`
//! ([`kvm_pmu_handle_event`]) reprograms each marked counter so that it counts on towards its
//! next wrap.
//!
//! ## What the commit changed, and where it lives
//!
//! Linux commit a6da0d77 ("KVM: x86/vPMU: Reuse perf_event to avoid unnecessary
//! pmc_reprogram_counter", 5.5) changed only how a counter is reprogrammed: before it, every
//! reprogram released the host event and created another; after it, a counter whose config is
//! unchanged pauses its event and resumes it with a new period. That part is the
//! [`Reprogram`] trait, implemented once per tier (crates `impl-legacy` and `impl-reuse`).
//! Everything here is shared by both tiers, so that any difference the workbook measures comes
//! from the commit alone.
//!
//! ## Modules
//!
//! - [`pmc`]: the state ([`KvmPmc`], [`KvmPmu`]), after `struct kvm_pmc`/`struct kvm_pmu`;
//! - [`pmu`]: the vendor-neutral logic, after `arch/x86/kvm/pmu.c` and `pmu.h`;
//! - [`intel`]: the MSRs and events of Intel's PMU, after `arch/x86/kvm/vmx/pmu_intel.c`;
//! - [`vpmu`]: [`IntelVpmu`], which puts it together as a [`vmm::VirtualPmu`].

pub mod intel;
pub mod pmc;
pub mod pmu;
pub mod vpmu;

pub use intel::{
    find_arch_event, find_fixed_event, fixed_ctrl_field, global_ctrl_changed, gp_event_kind,
    intel_pmu_get_msr, intel_pmu_set_msr, reprogram_fixed_counters,
};
pub use pmc::{KvmPmc, KvmPmu};
pub use pmu::{
    get_sample_period, kvm_perf_overflow, kvm_pmu_handle_event, pmc_bitmask, pmc_is_enabled,
    pmc_read_counter, pmc_reprogram_counter, pmc_write_counter, reprogram_counter, Reprogram,
};
pub use vpmu::IntelVpmu;

/// Bits of `IA32_PERFEVTSELx` (SDM vol. 3B, "IA32_PERFEVTSELx MSRs"), with Linux's names.
pub mod eventsel {
    /// Event select, bits 7:0.
    pub const ARCH_PERFMON_EVENTSEL_EVENT: u64 = 0x0000_00FF;
    /// Unit mask, bits 15:8.
    pub const ARCH_PERFMON_EVENTSEL_UMASK: u64 = 0x0000_FF00;
    /// USR: count at privilege levels 1 to 3.
    pub const ARCH_PERFMON_EVENTSEL_USR: u64 = 1 << 16;
    /// OS: count at privilege level 0.
    pub const ARCH_PERFMON_EVENTSEL_OS: u64 = 1 << 17;
    /// E: count edges (deasserted-to-asserted transitions).
    pub const ARCH_PERFMON_EVENTSEL_EDGE: u64 = 1 << 18;
    /// PC: pin control (ignored by KVM and here).
    pub const ARCH_PERFMON_EVENTSEL_PIN_CONTROL: u64 = 1 << 19;
    /// INT: raise a PMI on overflow.
    pub const ARCH_PERFMON_EVENTSEL_INT: u64 = 1 << 20;
    /// AnyThread (version 3 and later; reserved in version 2).
    pub const ARCH_PERFMON_EVENTSEL_ANY: u64 = 1 << 21;
    /// EN: the counter's own enable.
    pub const ARCH_PERFMON_EVENTSEL_ENABLE: u64 = 1 << 22;
    /// INV: invert the counter-mask comparison.
    pub const ARCH_PERFMON_EVENTSEL_INV: u64 = 1 << 23;
    /// CMASK: counter mask, bits 31:24.
    pub const ARCH_PERFMON_EVENTSEL_CMASK: u64 = 0xFF00_0000;
    /// The bits of a raw host event KVM takes from the guest's event select: event, unit
    /// mask, edge, invert and counter mask (Linux's `X86_RAW_EVENT_MASK`); USR, OS, INT and
    /// EN become perf attributes instead.
    pub const X86_RAW_EVENT_MASK: u64 = ARCH_PERFMON_EVENTSEL_EVENT
        | ARCH_PERFMON_EVENTSEL_UMASK
        | ARCH_PERFMON_EVENTSEL_EDGE
        | ARCH_PERFMON_EVENTSEL_INV
        | ARCH_PERFMON_EVENTSEL_CMASK;
}
