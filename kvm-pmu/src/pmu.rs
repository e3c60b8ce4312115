//! Vendor-neutral vPMU logic that commit a6da0d77 left alone, after `arch/x86/kvm/pmu.c` and
//! `pmu.h`, and the [`Reprogram`] trait for the part it changed.
//!
//! Functions take the [`KvmPmu`] and a counter index where the kernel takes a `kvm_pmc *`
//! (from which it reaches the `kvm_pmu`).

use vmm::msr::FIXED_IDX_BASE;
use vmm::perf::{EventAttr, EventKind};

use crate::pmc::KvmPmu;

/// What commit a6da0d77 changed: how a counter's host event is (re)programmed and stopped.
///
/// Each tier implements it once: `impl-legacy` as Linux 5.4 did (release, then create),
/// `impl-reuse` as Linux 5.5 does (pause, then resume when the config is unchanged).
pub trait Reprogram {
    /// A name for transcripts and plots, e.g. `legacy (Linux 5.4)`.
    const NAME: &'static str;

    /// The guest wrote `eventsel` to GP counter `idx`'s event select, or the counter must be
    /// re-armed (KVM's `reprogram_gp_counter`).
    fn reprogram_gp_counter(pmu: &mut KvmPmu, idx: u32, eventsel: u64);

    /// Fixed counter `fixed_idx` (0-based) got control field `ctrl`, or must be re-armed
    /// (KVM's `reprogram_fixed_counter`).
    fn reprogram_fixed_counter(pmu: &mut KvmPmu, fixed_idx: u32, ctrl: u8);

    /// Folds the host event's count into counter `idx` and releases the event (KVM's
    /// `pmc_stop_counter`); used when the vPMU goes away.
    fn pmc_stop_counter(pmu: &mut KvmPmu, idx: u32);
}

/// The width mask of counter `idx` (KVM's `pmc_bitmask`).
pub fn pmc_bitmask(pmu: &KvmPmu, idx: u32) -> u64 {
    pmu.counter_bitmask[usize::from(idx >= FIXED_IDX_BASE)]
}

// ANCHOR: pmc_read_counter
/// The guest-visible value of counter `idx`: the saved value plus what the host event has
/// counted, masked to the width.
///
/// Mirrors `pmc_read_counter` (pmu.h). Like KVM, no scaling by enabled/running time.
pub fn pmc_read_counter(pmu: &mut KvmPmu, idx: u32) -> u64 {
    let mask = pmc_bitmask(pmu, idx);
    let (pmc, perf) = pmu.pmc_and_perf(idx);
    let mut counter = pmc.counter;
    if let Some(event) = pmc.perf_event.as_mut() {
        counter = counter.wrapping_add(perf.perf_event_read_value(event));
    }
    counter & mask
}
// ANCHOR_END: pmc_read_counter

/// Whether counter `idx` is globally enabled: its bit in `IA32_PERF_GLOBAL_CTRL`.
///
/// Mirrors `pmc_is_enabled`, which for Intel is `intel_pmc_is_enabled`.
pub fn pmc_is_enabled(pmu: &KvmPmu, idx: u32) -> bool {
    pmu.global_ctrl & (1u64 << idx) != 0
}

// ANCHOR: get_sample_period
/// The host sample period that makes the host event overflow when counter `idx`, now at
/// `counter_value`, wraps: `(-counter) & mask`, and a full `2^width` for a counter at 0.
///
/// Mirrors `get_sample_period` (pmu.h), which came after Linux 5.5: before it, a counter at
/// 0 got period 0, that is a counting event that never overflows (and whose period the 5.5
/// reuse path could then not change). Both tiers use the fixed form, so the only difference
/// between them is the commit.
pub fn get_sample_period(pmu: &KvmPmu, idx: u32, counter_value: u64) -> u64 {
    let mask = pmc_bitmask(pmu, idx);
    match counter_value.wrapping_neg() & mask {
        0 => mask + 1,
        period => period,
    }
}
// ANCHOR_END: get_sample_period

// ANCHOR: pmc_reprogram_counter
/// Creates the host event for counter `idx` and, on success, stores it and clears the
/// counter's `reprogram_pmi` bit.
///
/// Mirrors `pmc_reprogram_counter` (pmu.c): the attributes are KVM's (sample period until
/// the wrap, `exclude_host`, `pinned`, user/kernel exclusion from USR/OS), and `intr` picks
/// the PMI-raising overflow handling. On failure the counter is left without an event, as
/// KVM leaves it; KVM logs the error, we keep it in [`KvmPmu::last_create_error`].
pub fn pmc_reprogram_counter(
    pmu: &mut KvmPmu,
    idx: u32,
    kind: EventKind,
    exclude_user: bool,
    exclude_kernel: bool,
    intr: bool,
) {
    let counter = pmu.pmc(idx).map_or(0, |pmc| pmc.counter);
    let attr = EventAttr {
        kind,
        sample_period: get_sample_period(pmu, idx, counter),
        exclude_user,
        exclude_kernel,
        exclude_host: true,
        pinned: true,
        intr,
    };
    match pmu.perf.perf_event_create_kernel_counter(attr, idx) {
        Ok(event) => {
            let (pmc, _) = pmu.pmc_and_perf(idx);
            pmc.perf_event = Some(event);
            pmu.reprogram_pmi &= !(1u64 << idx);
        }
        Err(e) => pmu.last_create_error = Some((idx, e)),
    }
}
// ANCHOR_END: pmc_reprogram_counter

// ANCHOR: reprogram_counter
/// Reprograms counter `idx` from its current programming: the event select of a GP counter,
/// the `IA32_FIXED_CTR_CTRL` field of a fixed one.
///
/// Mirrors `reprogram_counter` (pmu.c).
pub fn reprogram_counter<T: Reprogram>(pmu: &mut KvmPmu, idx: u32) {
    let Some(pmc) = pmu.pmc(idx) else { return };
    if pmc.is_gp() {
        let eventsel = pmc.eventsel;
        T::reprogram_gp_counter(pmu, idx, eventsel);
    } else {
        let fixed_idx = idx - FIXED_IDX_BASE;
        let ctrl = crate::intel::fixed_ctrl_field(pmu.fixed_ctr_ctrl, fixed_idx);
        T::reprogram_fixed_counter(pmu, fixed_idx, ctrl);
    }
}
// ANCHOR_END: reprogram_counter

// ANCHOR: kvm_perf_overflow
/// Counter `idx`'s host event overflowed: set its `GLOBAL_STATUS` bit, mark it for
/// reprogramming and request `KVM_REQ_PMU`, and, if the counter raises interrupts (`intr`),
/// `KVM_REQ_PMI` too. A counter already marked is left alone.
///
/// Mirrors `kvm_perf_overflow` and `kvm_perf_overflow_intr` (pmu.c), which the kernel calls
/// from the host's overflow interrupt; ours runs on the vCPU thread when the overflow signal
/// has been noticed (see [`crate::IntelVpmu`]).
pub fn kvm_perf_overflow(pmu: &mut KvmPmu, idx: u32, intr: bool) {
    let bit = 1u64 << idx;
    if pmu.reprogram_pmi & bit != 0 {
        return;
    }
    pmu.reprogram_pmi |= bit;
    pmu.global_status |= bit;
    pmu.req_pmu = true;
    if intr {
        pmu.req_pmi = true;
    }
}
// ANCHOR_END: kvm_perf_overflow

// ANCHOR: kvm_pmu_handle_event
/// Services `KVM_REQ_PMU`: reprograms every counter marked in `reprogram_pmi`; a mark on a
/// counter without a host event is just cleared.
///
/// Mirrors `kvm_pmu_handle_event` (pmu.c).
pub fn kvm_pmu_handle_event<T: Reprogram>(pmu: &mut KvmPmu) {
    let mut bitmask = pmu.reprogram_pmi;
    while bitmask != 0 {
        let idx = bitmask.trailing_zeros();
        bitmask &= bitmask - 1;
        if !matches!(pmu.pmc(idx), Some(pmc) if pmc.perf_event.is_some()) {
            pmu.reprogram_pmi &= !(1u64 << idx);
            continue;
        }
        reprogram_counter::<T>(pmu, idx);
        drop_overflow_raised_while_pending(pmu, idx);
    }
}
// ANCHOR_END: kvm_pmu_handle_event

// ANCHOR: drop_overflow_raised_while_pending
/// Forgets an overflow the host reported for counter `idx` between its overflow being
/// picked up and its reprogram.
///
/// A host event can fire again in that window: the signal reaches the vCPU thread some
/// microseconds after the overflow, and a short period can elapse once more before the
/// reprogram pauses or releases the event. KVM never sees such a second callback as an
/// overflow, because `reprogram_pmi` is still set when it comes (`kvm_perf_overflow` tests
/// and sets it). Here the mark would outlive the reprogram on an event that is reused, and
/// raise a second, spurious PMI. Nothing genuine is lost by dropping it: the reprogram has
/// just armed a whole new period, and none of it can have passed yet (software periods are
/// at least 10 µs; hardware events count only while the guest runs).
fn drop_overflow_raised_while_pending(pmu: &mut KvmPmu, idx: u32) {
    let (pmc, perf) = pmu.pmc_and_perf(idx);
    if let Some(event) = pmc.perf_event.as_mut() {
        perf.take_overflow(event);
    }
}
// ANCHOR_END: drop_overflow_raised_while_pending

/// Whether counter `idx` is counting: it has a host event and is enabled by its own bits and
/// by `GLOBAL_CTRL`.
pub(crate) fn pmc_is_running(pmu: &KvmPmu, idx: u32) -> bool {
    let Some(pmc) = pmu.pmc(idx) else {
        return false;
    };
    let own_enable = if pmc.is_gp() {
        pmc.eventsel & crate::eventsel::ARCH_PERFMON_EVENTSEL_ENABLE != 0
    } else {
        crate::intel::fixed_ctrl_field(pmu.fixed_ctr_ctrl, idx - FIXED_IDX_BASE) & 0x3 != 0
    };
    pmc.perf_event.is_some() && own_enable && pmc_is_enabled(pmu, idx)
}

// ANCHOR: pmc_write_counter
/// Sets the guest-visible value of counter `idx` to `val` (already masked to the width).
///
/// `counter += val - pmc_read_counter(pmc)`: the host event keeps its count, and the saved
/// value absorbs the difference, so the next read returns `val` plus what is counted from now
/// on. Linux 5.4 assigned `counter = val` instead, which a running counter's event count then
/// added to; later kernels fixed it this way. A running counter is also marked for
/// reprogramming, so that the next `KVM_REQ_PMU` re-derives its host sample period and its
/// overflow comes at the new wrap, as later kernels defer it.
pub fn pmc_write_counter(pmu: &mut KvmPmu, idx: u32, val: u64) {
    let mask = pmc_bitmask(pmu, idx);
    let live = pmc_read_counter(pmu, idx);
    let (pmc, _) = pmu.pmc_and_perf(idx);
    pmc.counter = pmc.counter.wrapping_add(val.wrapping_sub(live)) & mask;
    if pmc_is_running(pmu, idx) {
        pmu.reprogram_pmi |= 1u64 << idx;
        pmu.req_pmu = true;
    }
}
// ANCHOR_END: pmc_write_counter
