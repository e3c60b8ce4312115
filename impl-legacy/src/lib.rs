//! # impl-legacy: the vPMU before commit a6da0d77 (Linux 5.4)
//!
//! Every time the guest reprograms a counter (writes its event select, toggles it in
//! `IA32_PERF_GLOBAL_CTRL` or `IA32_FIXED_CTR_CTRL`) and every time a counter overflows and
//! must be re-armed, this tier releases the counter's host perf event and creates a new one.
//!
//! Everything but that lives in [`kvm_pmu`] and is shared with `impl-reuse`; the code that
//! differs is the private module `pmu` (file `src/pmu.rs`).
//!
//! ```
//! use impl_legacy::LegacyPmu;
//! use vmm::perf::{HostPerf, PerfOp};
//! use vmm::{PmuCaps, VirtualPmu};
//!
//! let (perf, clock) = HostPerf::scripted();
//! let mut vpmu = LegacyPmu::new(PmuCaps::default(), perf);
//! vpmu.set_msr(0x186, 0x43_00C0).unwrap(); // PERFEVTSEL0: instructions, USR|OS|EN
//! clock.advance(10);
//! assert_eq!(vpmu.get_msr(0xC1), Ok(10)); // PMC0
//! vpmu.set_msr(0x38F, 0).unwrap(); // GLOBAL_CTRL off: the event is released
//! vpmu.set_msr(0x38F, 1).unwrap(); // on again: a new event is created
//! assert_eq!(vpmu.ledger().count(PerfOp::Create), 2);
//! ```

mod pmu;

pub use kvm_pmu::{IntelVpmu, KvmPmc, KvmPmu, Reprogram};

/// The Linux 5.4 way of reprogramming counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Legacy;

impl Reprogram for Legacy {
    const NAME: &'static str = "legacy (Linux 5.4)";

    fn reprogram_gp_counter(pmu: &mut KvmPmu, idx: u32, eventsel: u64) {
        pmu::reprogram_gp_counter(pmu, idx, eventsel);
    }

    fn reprogram_fixed_counter(pmu: &mut KvmPmu, fixed_idx: u32, ctrl: u8) {
        pmu::reprogram_fixed_counter(pmu, fixed_idx, ctrl);
    }

    fn pmc_stop_counter(pmu: &mut KvmPmu, idx: u32) {
        pmu::pmc_stop_counter(pmu, idx);
    }
}

/// The Intel vPMU with Linux 5.4's reprogramming.
pub type LegacyPmu = IntelVpmu<Legacy>;
