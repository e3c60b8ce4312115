//! The part of KVM's vPMU that commit a6da0d77 changed, as Linux 5.5 has it.
//!
//! A counter remembers the config its host event was created for (`current_config`). A
//! reprogram pauses the event (folds its count into the counter and resets it) instead of
//! releasing it, and, when the counter is enabled again with the same config, resumes it
//! with a new sample period instead of creating another. Only a new config, or a period the
//! host refuses, releases the event and creates a new one.
//! Compare with `impl-legacy/src/pmu.rs`: `diff -u` of the two files is the commit.

use kvm_pmu::eventsel::*;
use kvm_pmu::{
    find_fixed_event, get_sample_period, gp_event_kind, pmc_bitmask, pmc_is_enabled,
    pmc_read_counter, pmc_reprogram_counter, KvmPmu,
};
use vmm::msr::FIXED_IDX_BASE;
use vmm::perf::EventKind;

fn has_event(pmu: &KvmPmu, idx: u32) -> bool {
    pmu.pmc(idx).is_some_and(|pmc| pmc.perf_event.is_some())
}

// ANCHOR: pmc_release_perf_event
/// Releases the counter's host event, if any, and forgets the config it was created for.
///
/// Mirrors `pmc_release_perf_event` (arch/x86/kvm/pmu.h), added by the commit.
pub(crate) fn pmc_release_perf_event(pmu: &mut KvmPmu, idx: u32) {
    let (pmc, perf) = pmu.pmc_and_perf(idx);
    if let Some(event) = pmc.perf_event.take() {
        perf.perf_event_release_kernel(event);
        pmc.current_config = 0;
    }
}
// ANCHOR_END: pmc_release_perf_event

// ANCHOR: pmc_stop_counter
/// Folds the host event's count into the counter, then releases the event.
///
/// Mirrors `pmc_stop_counter` (arch/x86/kvm/pmu.h). The kernel reaches the event through
/// `pmc`; we take the PMU and the counter's index.
pub(crate) fn pmc_stop_counter(pmu: &mut KvmPmu, idx: u32) {
    if has_event(pmu, idx) {
        let counter = pmc_read_counter(pmu, idx);
        let (pmc, _) = pmu.pmc_and_perf(idx);
        pmc.counter = counter;
        pmc_release_perf_event(pmu, idx);
    }
}
// ANCHOR_END: pmc_stop_counter

// ANCHOR: pmc_pause_counter
/// Stops the host event, folds its count into the counter and resets the event's count, so
/// that what it counted is not added a second time later. The event is kept.
///
/// Mirrors `pmc_pause_counter` (arch/x86/kvm/pmu.c), added by the commit, through
/// [`vmm::perf::HostPerf::perf_event_pause`].
fn pmc_pause_counter(pmu: &mut KvmPmu, idx: u32) {
    let mask = pmc_bitmask(pmu, idx);
    let (pmc, perf) = pmu.pmc_and_perf(idx);
    let Some(event) = pmc.perf_event.as_mut() else {
        return;
    };
    let counter = pmc.counter.wrapping_add(perf.perf_event_pause(event, true));
    pmc.counter = counter & mask;
}
// ANCHOR_END: pmc_pause_counter

// ANCHOR: pmc_resume_counter
/// Restarts a paused host event as a newly created one would start: with the sample period
/// that makes it overflow when the counter wraps. Answers false, leaving the event paused, if
/// there is no event or the host refuses the period; the caller then creates a new event.
///
/// Mirrors `pmc_resume_counter` (arch/x86/kvm/pmu.c), added by the commit, except that the
/// period comes from [`get_sample_period`] (a counter at 0 gets a full wrap rather than the
/// period 0 the host would refuse), as in both tiers.
fn pmc_resume_counter(pmu: &mut KvmPmu, idx: u32) -> bool {
    let counter = pmu.pmc(idx).map_or(0, |pmc| pmc.counter);
    let period = get_sample_period(pmu, idx, counter);
    let (pmc, perf) = pmu.pmc_and_perf(idx);
    let Some(event) = pmc.perf_event.as_mut() else {
        return false;
    };

    if perf.perf_event_period(event, period).is_err() {
        return false;
    }

    perf.perf_event_enable(event);

    pmu.reprogram_pmi &= !(1u64 << idx);
    true
}
// ANCHOR_END: pmc_resume_counter

// ANCHOR: reprogram_gp_counter
/// Programs GP counter `idx` for event select `eventsel`: stores it, pauses the counter, and,
/// if the counter is enabled by EN and by `GLOBAL_CTRL`, resumes its host event when
/// `eventsel` is the config it was created for, or else replaces it with a new one.
///
/// Mirrors `reprogram_gp_counter` (arch/x86/kvm/pmu.c) without the VM's event filter (this
/// workbook has none) and without TSX qualifiers (reserved in this model).
pub(crate) fn reprogram_gp_counter(pmu: &mut KvmPmu, idx: u32, eventsel: u64) {
    pmu.gp[idx as usize].eventsel = eventsel;

    pmc_pause_counter(pmu, idx);

    if eventsel & ARCH_PERFMON_EVENTSEL_ENABLE == 0 || !pmc_is_enabled(pmu, idx) {
        return;
    }

    let kind = gp_event_kind(pmu, eventsel);

    if pmu.gp[idx as usize].current_config == eventsel && pmc_resume_counter(pmu, idx) {
        return;
    }

    pmc_release_perf_event(pmu, idx);

    pmu.gp[idx as usize].current_config = eventsel;
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
/// pauses the counter, and, if OS or USR is set and `GLOBAL_CTRL` enables it, resumes its
/// host event when `ctrl` is the config it was created for, or else replaces it.
///
/// Mirrors `reprogram_fixed_counter` (arch/x86/kvm/pmu.c), without the VM's event filter.
pub(crate) fn reprogram_fixed_counter(pmu: &mut KvmPmu, fixed_idx: u32, ctrl: u8) {
    let idx = FIXED_IDX_BASE + fixed_idx;
    let en_field = ctrl & 0x3;
    let pmi = ctrl & 0x8 != 0;

    pmc_pause_counter(pmu, idx);

    if en_field == 0 || !pmc_is_enabled(pmu, idx) {
        return;
    }

    if pmu.fixed[fixed_idx as usize].current_config == u64::from(ctrl)
        && pmc_resume_counter(pmu, idx)
    {
        return;
    }

    pmc_release_perf_event(pmu, idx);

    pmu.fixed[fixed_idx as usize].current_config = u64::from(ctrl);
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
