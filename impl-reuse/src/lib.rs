//! # impl-reuse: the vPMU after commit a6da0d77 (Linux 5.5)
//!
//! Each counter remembers the config its host perf event was created for. When the guest
//! reprograms a counter to the same config (toggles it in `IA32_PERF_GLOBAL_CTRL` or
//! `IA32_FIXED_CTR_CTRL`, or it is re-armed after an overflow), this tier pauses the event
//! (disable, read, reset) and resumes it with a new sample period (period, enable) instead
//! of releasing it and creating another. A new config, or a refused period, still releases
//! and creates.
//!
//! Everything but that lives in [`kvm_pmu`] and is shared with `impl-legacy`; the code that
//! differs is the private module `pmu` (file `src/pmu.rs`).
//!
//! ```
//! use impl_reuse::ReusePmu;
//! use vmm::perf::{HostPerf, PerfOp};
//! use vmm::{PmuCaps, VirtualPmu};
//!
//! let (perf, clock) = HostPerf::scripted();
//! let mut vpmu = ReusePmu::new(PmuCaps::default(), perf);
//! vpmu.set_msr(0x186, 0x43_00C0).unwrap(); // PERFEVTSEL0: instructions, USR|OS|EN
//! clock.advance(10);
//! assert_eq!(vpmu.get_msr(0xC1), Ok(10)); // PMC0
//! vpmu.set_msr(0x38F, 0).unwrap(); // GLOBAL_CTRL off: the event is paused
//! vpmu.set_msr(0x38F, 1).unwrap(); // on again: the same event is resumed
//! assert_eq!(vpmu.ledger().count(PerfOp::Create), 1);
//! assert_eq!(vpmu.ledger().count(PerfOp::Pause), 2);
//! ```

mod pmu;

pub use kvm_pmu::{IntelVpmu, KvmPmc, KvmPmu, Reprogram};

/// The Linux 5.5 way of reprogramming counters: reuse the host event when the config is
/// unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reuse;

impl Reprogram for Reuse {
    const NAME: &'static str = "reuse (Linux 5.5)";

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

/// The Intel vPMU with Linux 5.5's reprogramming.
pub type ReusePmu = IntelVpmu<Reuse>;
