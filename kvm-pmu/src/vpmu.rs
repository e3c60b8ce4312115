//! [`IntelVpmu`]: the shared Intel vPMU with one tier's reprogramming, as a
//! [`vmm::VirtualPmu`] the machine can run.

use std::marker::PhantomData;

use vmm::perf::{HostPerf, Ledger};
use vmm::{Fault, PmuCaps, Service, VirtualPmu};

use crate::intel::{intel_pmu_get_msr, intel_pmu_set_msr};
use crate::pmc::KvmPmu;
use crate::pmu::{kvm_perf_overflow, kvm_pmu_handle_event, Reprogram};

/// An Intel vPMU whose counters are reprogrammed the way tier `T` does it.
///
/// ```
/// use kvm_pmu::{IntelVpmu, KvmPmu, Reprogram};
/// use vmm::perf::HostPerf;
/// use vmm::{PmuCaps, VirtualPmu};
///
/// // A do-nothing tier, to show the shape; the real ones are impl-legacy and impl-reuse.
/// struct Inert;
/// impl Reprogram for Inert {
///     const NAME: &'static str = "inert";
///     fn reprogram_gp_counter(pmu: &mut KvmPmu, idx: u32, eventsel: u64) {
///         pmu.gp[idx as usize].eventsel = eventsel;
///     }
///     fn reprogram_fixed_counter(_: &mut KvmPmu, _: u32, _: u8) {}
///     fn pmc_stop_counter(_: &mut KvmPmu, _: u32) {}
/// }
///
/// let (perf, _clock) = HostPerf::scripted();
/// let mut vpmu = IntelVpmu::<Inert>::new(PmuCaps::default(), perf);
/// vpmu.set_msr(0x186, 0x43_00C0).unwrap(); // IA32_PERFEVTSEL0: instructions, USR|OS|EN
/// assert_eq!(vpmu.get_msr(0x186), Ok(0x43_00C0));
/// assert!(vpmu.set_msr(0x186, 1 << 40).is_err()); // reserved bit: #GP
/// ```
#[derive(Debug)]
pub struct IntelVpmu<T: Reprogram> {
    pmu: KvmPmu,
    tier: PhantomData<T>,
}

impl<T: Reprogram> IntelVpmu<T> {
    /// A reset vPMU of geometry `caps`, its events from `perf`.
    ///
    /// # Panics
    /// If `caps` fails [`PmuCaps::validate`].
    pub fn new(caps: PmuCaps, perf: HostPerf) -> Self {
        IntelVpmu {
            pmu: KvmPmu::new(caps, perf),
            tier: PhantomData,
        }
    }

    /// The tier's name ([`Reprogram::NAME`]).
    pub fn tier_name(&self) -> &'static str {
        T::NAME
    }

    /// The PMU state.
    pub fn pmu(&self) -> &KvmPmu {
        &self.pmu
    }

    /// The PMU state, mutably (for tests that set up unusual states).
    pub fn pmu_mut(&mut self) -> &mut KvmPmu {
        &mut self.pmu
    }

    /// The host perf layer.
    pub fn perf(&self) -> &HostPerf {
        &self.pmu.perf
    }

    /// The host perf layer, mutably (e.g. to clear its ledger).
    pub fn perf_mut(&mut self) -> &mut HostPerf {
        &mut self.pmu.perf
    }

    /// Every host perf call made so far.
    pub fn ledger(&self) -> &Ledger {
        self.pmu.perf.ledger()
    }

    // ANCHOR: pick_up_overflows
    /// Turns each host overflow noticed since the last call into `kvm_perf_overflow`.
    ///
    /// In the kernel the overflow handler runs the moment the host counter overflows. Here the
    /// signal only leaves a mark, so marks are picked up before every guest MSR access as well
    /// as in [`VirtualPmu::service`]: an overflow that happened before the guest's access is
    /// then seen by it (in `GLOBAL_STATUS`), and is not lost if the access releases the event.
    pub fn pick_up_overflows(&mut self) {
        let pmu = &mut self.pmu;
        // Runs on every exit: gather the marks into a bitmask of counter indices (every index
        // is below 64) rather than a list, so that the hot path never allocates.
        let perf = &pmu.perf;
        let overflowed = pmu
            .gp
            .iter_mut()
            .chain(pmu.fixed.iter_mut())
            .filter_map(|pmc| {
                let event = pmc.perf_event.as_mut()?;
                perf.take_overflow(event).then_some(pmc.idx)
            })
            .fold(0u64, |mask, idx| mask | 1 << idx);
        let mut bits = overflowed;
        while bits != 0 {
            let idx = bits.trailing_zeros();
            bits &= bits - 1;
            let intr = pmu
                .pmc(idx)
                .and_then(|pmc| pmc.perf_event.as_ref())
                .is_some_and(|event| event.attr().intr);
            kvm_perf_overflow(pmu, idx, intr);
        }
    }
    // ANCHOR_END: pick_up_overflows
}

impl<T: Reprogram> VirtualPmu for IntelVpmu<T> {
    fn caps(&self) -> PmuCaps {
        self.pmu.caps
    }

    fn get_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        self.pick_up_overflows();
        intel_pmu_get_msr(&mut self.pmu, msr)
    }

    fn set_msr(&mut self, msr: u32, data: u64) -> Result<(), Fault> {
        self.pick_up_overflows();
        intel_pmu_set_msr::<T>(&mut self.pmu, msr, data)
    }

    // ANCHOR: service
    /// Picks up host overflows, services `KVM_REQ_PMU` (KVM's `kvm_pmu_handle_event`), and
    /// answers `KVM_REQ_PMI`; both requests are cleared.
    fn service(&mut self) -> Service {
        self.pick_up_overflows();
        if std::mem::take(&mut self.pmu.req_pmu) {
            kvm_pmu_handle_event::<T>(&mut self.pmu);
        }
        Service {
            pmi: std::mem::take(&mut self.pmu.req_pmi),
        }
    }
    // ANCHOR_END: service
}

impl<T: Reprogram> Drop for IntelVpmu<T> {
    /// Stops every counter, releasing every host event (KVM's `kvm_pmu_destroy` via
    /// `intel_pmu_reset`): no descriptor outlives the vPMU.
    fn drop(&mut self) {
        let indices: Vec<u32> = self.pmu.pmc_indices().collect();
        for idx in indices {
            T::pmc_stop_counter(&mut self.pmu, idx);
        }
    }
}
