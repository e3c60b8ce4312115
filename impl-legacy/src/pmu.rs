//! The part of KVM's vPMU that commit a6da0d77 changed, as Linux 5.4 had it.
//!
//! Every reprogram of a counter stops it (folds the host event's count into the counter and
//! releases the event) and, if the counter is still enabled, creates a new host event for it.
//! Compare with `impl-reuse/src/pmu.rs`: `diff -u` of the two files is the commit.

use kvm_pmu::eventsel::*;
use kvm_pmu::{
    find_fixed_event, gp_event_kind, pmc_is_enabled, pmc_read_counter, pmc_reprogram_counter,
    KvmPmu,
};
use vmm::msr::FIXED_IDX_BASE;
use vmm::perf::EventKind;

fn has_event(pmu: &KvmPmu, idx: u32) -> bool {
    pmu.pmc(idx).is_some_and(|pmc| pmc.perf_event.is_some())
}

// ANCHOR: pmc_stop_counter
/// Folds the host event's count into the counter, then releases the event.
///
/// Mirrors `pmc_stop_counter` (arch/x86/kvm/pmu.h). The kernel reaches the event through
/// `pmc`; we take the PMU and the counter's index.
pub(crate) fn pmc_stop_counter(pmu: &mut KvmPmu, idx: u32) {
    if has_event(pmu, idx) {
        let counter = pmc_read_counter(pmu, idx);
        let (pmc, perf) = pmu.pmc_and_perf(idx);
        pmc.counter = counter;
        if let Some(event) = pmc.perf_event.take() {
            perf.perf_event_release_kernel(event);
        }
    }
}
// ANCHOR_END: pmc_stop_counter

// ANCHOR: reprogram_gp_counter
/// Programs GP counter `idx` for event select `eventsel`: stores it, stops the counter, and,
/// if the counter is enabled by EN and by `GLOBAL_CTRL`, creates a host event for it.
///
/// Mirrors `reprogram_gp_counter` (arch/x86/kvm/pmu.c) without the VM's event filter (this
/// workbook has none) and without TSX qualifiers (reserved in this model).
pub(crate) fn reprogram_gp_counter(pmu: &mut KvmPmu, idx: u32, eventsel: u64) {
    pmu.gp[idx as usize].eventsel = eventsel;

    pmc_stop_counter(pmu, idx);

    if eventsel & ARCH_PERFMON_EVENTSEL_ENABLE == 0 || !pmc_is_enabled(pmu, idx) {
        return;
    }

    let kind = gp_event_kind(pmu, eventsel);

    pmc_reprogram_counter(
        pmu,
        idx,
        kind,
        eventsel & ARCH_PERFMON_EVENTSEL_USR == 0,
        eventsel & ARCH_PERFMON_EVENTSEL_OS == 0,
        eventsel & ARCH_PERFMON_EVENTSEL_INT != 0,
    );
}
// ANCHOR_END: reprogram_gp_counter

// ANCHOR: reprogram_fixed_counter
/// Programs fixed counter `fixed_idx` for its control field `ctrl` (OS, USR, AnyThread, PMI):
/// stops the counter, and, if OS or USR is set and `GLOBAL_CTRL` enables it, creates a host
/// event for it.
///
/// Mirrors `reprogram_fixed_counter` (arch/x86/kvm/pmu.c), without the VM's event filter.
pub(crate) fn reprogram_fixed_counter(pmu: &mut KvmPmu, fixed_idx: u32, ctrl: u8) {
    let idx = FIXED_IDX_BASE + fixed_idx;
    let en_field = ctrl & 0x3;
    let pmi = ctrl & 0x8 != 0;

    pmc_stop_counter(pmu, idx);

    if en_field == 0 || !pmc_is_enabled(pmu, idx) {
        return;
    }

    pmc_reprogram_counter(
        pmu,
        idx,
        EventKind::Hardware(find_fixed_event(fixed_idx)),
        en_field & 0x2 == 0, // exclude user
        en_field & 0x1 == 0, // exclude kernel
        pmi,
    );
}
// ANCHOR_END: reprogram_fixed_counter
