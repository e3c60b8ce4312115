//! Intel's PMU as the guest sees it: its MSRs and its architectural events, after
//! `arch/x86/kvm/vmx/pmu_intel.c`.
//!
//! The rules are those of the SDM (vol. 3B, architectural performance monitoring version 2)
//! where KVM follows it, and KVM's where the SDM leaves room; each place that differs from
//! Linux 5.4 says so. A write that faults changes nothing.

use vmm::msr::*;
use vmm::perf::{
    EventKind, PERF_COUNT_HW_BRANCH_INSTRUCTIONS, PERF_COUNT_HW_BRANCH_MISSES,
    PERF_COUNT_HW_BUS_CYCLES, PERF_COUNT_HW_CACHE_MISSES, PERF_COUNT_HW_CACHE_REFERENCES,
    PERF_COUNT_HW_CPU_CYCLES, PERF_COUNT_HW_INSTRUCTIONS, PERF_COUNT_HW_REF_CPU_CYCLES,
};
use vmm::Fault;

use crate::pmc::KvmPmu;
use crate::pmu::{pmc_read_counter, pmc_write_counter, reprogram_counter, Reprogram};

/// The generic perf event for each architectural event, in leaf 0xA EBX bit order (the
/// encodings are [`vmm::caps::ARCH_EVENTS`]). Bit 2, "UnHalted Reference Cycles", maps to
/// bus cycles, as in KVM 5.4.
const ARCH_EVENT_PERF_IDS: [u64; 7] = [
    PERF_COUNT_HW_CPU_CYCLES,
    PERF_COUNT_HW_INSTRUCTIONS,
    PERF_COUNT_HW_BUS_CYCLES,
    PERF_COUNT_HW_CACHE_REFERENCES,
    PERF_COUNT_HW_CACHE_MISSES,
    PERF_COUNT_HW_BRANCH_INSTRUCTIONS,
    PERF_COUNT_HW_BRANCH_MISSES,
];

/// The generic perf event of an architectural event select, if `event_select`/`unit_mask`
/// is one the guest was told is available; `None` means "use a raw event".
///
/// Mirrors `intel_find_arch_event`, which answers `PERF_COUNT_HW_MAX` for "none".
pub fn find_arch_event(pmu: &KvmPmu, event_select: u8, unit_mask: u8) -> Option<u64> {
    vmm::caps::ARCH_EVENTS
        .iter()
        .zip(ARCH_EVENT_PERF_IDS)
        .enumerate()
        .find(|(bit, (ev, _))| {
            ev.event == event_select
                && ev.umask == unit_mask
                && pmu.available_event_types & (1 << bit) != 0
        })
        .map(|(_, (_, id))| id)
}

/// The generic perf event fixed counter `fixed_idx` counts: instructions retired, core
/// cycles, reference cycles.
///
/// Mirrors `intel_find_fixed_event`.
///
/// # Panics
/// For `fixed_idx` above 2 (the model has at most three fixed counters).
pub fn find_fixed_event(fixed_idx: u32) -> u64 {
    [
        PERF_COUNT_HW_INSTRUCTIONS,
        PERF_COUNT_HW_CPU_CYCLES,
        PERF_COUNT_HW_REF_CPU_CYCLES,
    ][fixed_idx as usize]
}

/// The 4-bit field of fixed counter `fixed_idx` in `IA32_FIXED_CTR_CTRL`: OS (bit 0),
/// USR (bit 1), AnyThread (bit 2), PMI (bit 3).
///
/// Mirrors the `fixed_ctrl_field` macro (pmu.h).
pub fn fixed_ctrl_field(ctrl_reg: u64, fixed_idx: u32) -> u8 {
    ((ctrl_reg >> (fixed_idx * 4)) & 0xF) as u8
}

/// The guest wrote `data` to `IA32_FIXED_CTR_CTRL`: reprogram each fixed counter whose field
/// changed, then store the register.
///
/// Mirrors `reprogram_fixed_counters` (pmu_intel.c).
pub fn reprogram_fixed_counters<T: Reprogram>(pmu: &mut KvmPmu, data: u64) {
    for i in 0..u32::from(pmu.caps.nr_fixed) {
        let new_ctrl = fixed_ctrl_field(data, i);
        let old_ctrl = fixed_ctrl_field(pmu.fixed_ctr_ctrl, i);
        if old_ctrl == new_ctrl {
            continue;
        }
        T::reprogram_fixed_counter(pmu, i, new_ctrl);
    }
    pmu.fixed_ctr_ctrl = data;
}

// ANCHOR: global_ctrl_changed
/// The guest wrote `data` to `IA32_PERF_GLOBAL_CTRL`: store it, then reprogram every counter
/// whose bit changed.
///
/// Mirrors `global_ctrl_changed` (pmu_intel.c).
pub fn global_ctrl_changed<T: Reprogram>(pmu: &mut KvmPmu, data: u64) {
    let mut diff = pmu.global_ctrl ^ data;
    pmu.global_ctrl = data;
    while diff != 0 {
        let idx = diff.trailing_zeros();
        diff &= diff - 1;
        reprogram_counter::<T>(pmu, idx);
    }
}
// ANCHOR_END: global_ctrl_changed

/// Which counter an MSR index names, if the guest has it.
fn counter_of(msr: u32, base: u32, count: u8) -> Option<u32> {
    (msr >= base && msr - base < u32::from(count)).then(|| msr - base)
}

/// A guest `RDMSR` of a PMU MSR.
///
/// Mirrors `intel_pmu_get_msr`. Counters read their live value; `IA32_A_PMCx` exists only
/// if full-width writes are advertised; any routed index the guest does not have (a counter
/// beyond `nr_gp`/`nr_fixed`, the AMD PMU MSRs) faults, as on an Intel CPU without it.
pub fn intel_pmu_get_msr(pmu: &mut KvmPmu, msr: u32) -> Result<u64, Fault> {
    let caps = pmu.caps;
    match msr {
        IA32_PERF_CAPABILITIES => Ok(caps.perf_capabilities()),
        IA32_FIXED_CTR_CTRL => Ok(pmu.fixed_ctr_ctrl),
        IA32_PERF_GLOBAL_STATUS => Ok(pmu.global_status),
        IA32_PERF_GLOBAL_CTRL => Ok(pmu.global_ctrl),
        IA32_PERF_GLOBAL_OVF_CTRL => Ok(pmu.global_ovf_ctrl),
        _ => {
            if let Some(x) = counter_of(msr, IA32_PMC0, caps.nr_gp) {
                Ok(pmc_read_counter(pmu, x))
            } else if let Some(x) =
                counter_of(msr, IA32_A_PMC0, caps.nr_gp).filter(|_| caps.full_width_writes)
            {
                Ok(pmc_read_counter(pmu, x))
            } else if let Some(x) = counter_of(msr, IA32_FIXED_CTR0, caps.nr_fixed) {
                Ok(pmc_read_counter(pmu, FIXED_IDX_BASE + x))
            } else if let Some(x) = counter_of(msr, IA32_PERFEVTSEL0, caps.nr_gp) {
                Ok(pmu.gp[x as usize].eventsel)
            } else {
                Err(Fault)
            }
        }
    }
}

/// A guest `WRMSR` of a PMU MSR.
///
/// Mirrors `intel_pmu_set_msr` for a guest (not host-initiated) write:
///
/// - `IA32_PERFEVTSELx`: same value, nothing to do; reserved bits fault; otherwise
///   `reprogram_gp_counter`.
/// - `IA32_PMCx`: bits 31:0, sign-extended to the width. `IA32_A_PMCx` (only if advertised):
///   the full width, and bits beyond it fault. `IA32_FIXED_CTRx`: the full width, masked.
///   A counter write sets the guest-visible value (see [`pmc_write_counter`]).
/// - `IA32_FIXED_CTR_CTRL`: same value, nothing; reserved bits (AnyThread, fields past
///   `nr_fixed`) fault; otherwise `reprogram_fixed_counters`.
/// - `IA32_PERF_GLOBAL_CTRL`: same value, nothing; bits of no counter fault; otherwise
///   `global_ctrl_changed`.
/// - `IA32_PERF_GLOBAL_OVF_CTRL`: clears the `GLOBAL_STATUS` bits written; bits of no
///   counter fault, except 62 and 63, which KVM accepts.
/// - `IA32_PERF_GLOBAL_STATUS` and `IA32_PERF_CAPABILITIES` are read-only: writes fault.
/// - Anything else routed here faults.
pub fn intel_pmu_set_msr<T: Reprogram>(pmu: &mut KvmPmu, msr: u32, data: u64) -> Result<(), Fault> {
    let caps = pmu.caps;
    match msr {
        IA32_FIXED_CTR_CTRL => {
            if pmu.fixed_ctr_ctrl == data {
                return Ok(());
            }
            if data & pmu.fixed_ctr_ctrl_mask != 0 {
                return Err(Fault);
            }
            reprogram_fixed_counters::<T>(pmu, data);
            Ok(())
        }
        IA32_PERF_GLOBAL_CTRL => {
            if pmu.global_ctrl == data {
                return Ok(());
            }
            if data & pmu.global_ctrl_mask != 0 {
                return Err(Fault);
            }
            global_ctrl_changed::<T>(pmu, data);
            Ok(())
        }
        IA32_PERF_GLOBAL_OVF_CTRL => {
            if data & pmu.global_ovf_ctrl_mask != 0 {
                return Err(Fault);
            }
            pmu.global_status &= !data;
            pmu.global_ovf_ctrl = data;
            Ok(())
        }
        IA32_PERF_GLOBAL_STATUS | IA32_PERF_CAPABILITIES => Err(Fault),
        _ => {
            if let Some(x) = counter_of(msr, IA32_PMC0, caps.nr_gp) {
                let val = data as u32 as i32 as i64 as u64 & caps.gp_mask();
                pmc_write_counter(pmu, x, val);
                Ok(())
            } else if let Some(x) =
                counter_of(msr, IA32_A_PMC0, caps.nr_gp).filter(|_| caps.full_width_writes)
            {
                if data & !caps.gp_mask() != 0 {
                    return Err(Fault);
                }
                pmc_write_counter(pmu, x, data);
                Ok(())
            } else if let Some(x) = counter_of(msr, IA32_FIXED_CTR0, caps.nr_fixed) {
                pmc_write_counter(pmu, FIXED_IDX_BASE + x, data & caps.fixed_mask());
                Ok(())
            } else if let Some(x) = counter_of(msr, IA32_PERFEVTSEL0, caps.nr_gp) {
                if pmu.gp[x as usize].eventsel == data {
                    return Ok(());
                }
                if data & pmu.reserved_bits != 0 {
                    return Err(Fault);
                }
                T::reprogram_gp_counter(pmu, x, data);
                Ok(())
            } else {
                Err(Fault)
            }
        }
    }
}

/// The host event for a GP counter's event select: a generic hardware event for an
/// available architectural event without edge/invert/counter-mask qualifiers, else a raw
/// event of the select's [`crate::eventsel::X86_RAW_EVENT_MASK`] bits (which include the
/// counter mask, as KVM's do).
///
/// This is the type/config computation of KVM's `reprogram_gp_counter`, which the commit did
/// not change; both tiers call it.
pub fn gp_event_kind(pmu: &KvmPmu, eventsel: u64) -> EventKind {
    use crate::eventsel::*;
    let event_select = (eventsel & ARCH_PERFMON_EVENTSEL_EVENT) as u8;
    let unit_mask = ((eventsel & ARCH_PERFMON_EVENTSEL_UMASK) >> 8) as u8;
    let qualified = eventsel
        & (ARCH_PERFMON_EVENTSEL_EDGE | ARCH_PERFMON_EVENTSEL_INV | ARCH_PERFMON_EVENTSEL_CMASK)
        != 0;
    match find_arch_event(pmu, event_select, unit_mask).filter(|_| !qualified) {
        Some(id) => EventKind::Hardware(id),
        None => EventKind::Raw(eventsel & X86_RAW_EVENT_MASK),
    }
}
