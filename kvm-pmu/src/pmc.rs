//! The state of the virtual PMU, after KVM's `struct kvm_pmc` and `struct kvm_pmu`.

use vmm::msr::FIXED_IDX_BASE;
use vmm::perf::{HostPerf, PerfError, PerfEvent};
use vmm::PmuCaps;

/// `IA32_PERF_GLOBAL_OVF_CTRL` bit 62: clear `OvfBuf` (DS buffer overflow). KVM accepts it.
pub const GLOBAL_OVF_CTRL_OVF_BUF: u64 = 1 << 62;
/// `IA32_PERF_GLOBAL_OVF_CTRL` bit 63: clear `CondChgd`. KVM accepts it.
pub const GLOBAL_OVF_CTRL_COND_CHGD: u64 = 1 << 63;

/// `IA32_PERFEVTSELx` bits that are reserved in perfmon version 2: the upper 32 bits and
/// AnyThread (bit 21). KVM 5.4's `intel_pmu_refresh` uses the same value (it frees bits 32/33
/// only for TSX hosts, which this model does not advertise).
pub const EVENTSEL_RESERVED_BITS: u64 = 0xFFFF_FFFF_0020_0000;

/// One guest counter (KVM's `struct kvm_pmc`).
#[derive(Debug)]
pub struct KvmPmc {
    /// KVM's index: GP counter `x` is `x`, fixed counter `x` is `32 + x`.
    pub idx: u32,
    /// The guest value as of the last time the host event was folded in; the live value is
    /// [`crate::pmc_read_counter`]. Always within the counter width.
    pub counter: u64,
    /// `IA32_PERFEVTSELx` (GP counters only; 0 for fixed ones).
    pub eventsel: u64,
    /// The host event counting for this counter, if any.
    pub perf_event: Option<PerfEvent>,
    /// The config the host event was created for: the event select of a GP counter, the
    /// 4-bit control field of a fixed one, 0 without an event. Added by commit a6da0d77 to
    /// decide whether the event can be reused; only the reuse tier reads or writes it.
    pub current_config: u64,
}

impl KvmPmc {
    fn new(idx: u32) -> KvmPmc {
        KvmPmc {
            idx,
            counter: 0,
            eventsel: 0,
            perf_event: None,
            current_config: 0,
        }
    }

    /// Whether this is a GP counter (`pmc_is_gp`).
    pub fn is_gp(&self) -> bool {
        self.idx < FIXED_IDX_BASE
    }
}

/// The whole virtual PMU of one vCPU (KVM's `struct kvm_pmu`).
///
/// Fields are public: the tiers implement parts of KVM on it, and tests inspect it.
#[derive(Debug)]
pub struct KvmPmu {
    /// The geometry the guest was told about.
    pub caps: PmuCaps,
    /// GP counters, `gp[x].idx == x`.
    pub gp: Vec<KvmPmc>,
    /// Fixed counters, `fixed[x].idx == 32 + x`.
    pub fixed: Vec<KvmPmc>,
    /// `IA32_FIXED_CTR_CTRL`.
    pub fixed_ctr_ctrl: u64,
    /// `IA32_PERF_GLOBAL_CTRL`.
    pub global_ctrl: u64,
    /// `IA32_PERF_GLOBAL_STATUS`.
    pub global_status: u64,
    /// `IA32_PERF_GLOBAL_OVF_CTRL`, as last written (KVM 5.4 reads it back).
    pub global_ovf_ctrl: u64,
    /// Counters (bit = idx) whose host event must be reprogrammed on the next
    /// `KVM_REQ_PMU`: after an overflow, or after a write to a running counter.
    pub reprogram_pmi: u64,
    /// `KVM_REQ_PMU`: run [`crate::kvm_pmu_handle_event`] before the guest runs again.
    pub req_pmu: bool,
    /// `KVM_REQ_PMI`: inject a PMI before the guest runs again.
    pub req_pmi: bool,
    /// Reserved bits of `IA32_PERFEVTSELx`: a write with any of them set faults.
    pub reserved_bits: u64,
    /// Reserved bits of `IA32_PERF_GLOBAL_CTRL` (every bit that is no counter's).
    pub global_ctrl_mask: u64,
    /// Reserved bits of `IA32_PERF_GLOBAL_OVF_CTRL`.
    pub global_ovf_ctrl_mask: u64,
    /// Reserved bits of `IA32_FIXED_CTR_CTRL`.
    pub fixed_ctr_ctrl_mask: u64,
    /// Width masks, `[GP, fixed]` (KVM's `counter_bitmask[KVM_PMC_GP/FIXED]`).
    pub counter_bitmask: [u64; 2],
    /// Architectural events (bit = leaf 0xA EBX bit) the guest may use as generic events.
    pub available_event_types: u32,
    /// The host perf layer the counters' events come from.
    pub perf: HostPerf,
    /// The last host event that could not be created, for diagnostics: KVM logs it
    /// (rate-limited) and leaves the counter without an event; so do we, and keep it here.
    pub last_create_error: Option<(u32, PerfError)>,
}

impl KvmPmu {
    /// A reset PMU of geometry `caps` whose events come from `perf` (KVM's `intel_pmu_init`
    /// followed by `intel_pmu_refresh`).
    ///
    /// `IA32_PERF_GLOBAL_CTRL` starts with every GP counter's bit set and every fixed
    /// counter's bit clear, the reset value the SDM gives. KVM 5.4's `intel_pmu_refresh` set
    /// the fixed counters' bits too; guests program `GLOBAL_CTRL` before use either way, and
    /// we prefer the architectural value.
    ///
    /// # Panics
    /// If `caps` fails [`PmuCaps::validate`].
    pub fn new(caps: PmuCaps, perf: HostPerf) -> KvmPmu {
        if let Err(e) = caps.validate() {
            panic!("invalid PMU geometry: {e}");
        }
        let gp_bits = (1u64 << caps.nr_gp) - 1;
        let fixed_bits = ((1u64 << caps.nr_fixed) - 1) << FIXED_IDX_BASE;
        let global_ctrl_mask = !(gp_bits | fixed_bits);
        // Each fixed counter owns OS (bit 0), USR (bit 1) and PMI (bit 3) of its 4-bit field;
        // AnyThread (bit 2) is reserved in version 2, and so is everything past the last field.
        let fixed_ctr_ctrl_mask =
            (0..u64::from(caps.nr_fixed)).fold(!0u64, |mask, i| mask & !(0xB << (i * 4)));
        KvmPmu {
            caps,
            gp: (0..u32::from(caps.nr_gp)).map(KvmPmc::new).collect(),
            fixed: (0..u32::from(caps.nr_fixed))
                .map(|i| KvmPmc::new(FIXED_IDX_BASE + i))
                .collect(),
            fixed_ctr_ctrl: 0,
            global_ctrl: gp_bits,
            global_status: 0,
            global_ovf_ctrl: 0,
            reprogram_pmi: 0,
            req_pmu: false,
            req_pmi: false,
            reserved_bits: EVENTSEL_RESERVED_BITS,
            global_ctrl_mask,
            global_ovf_ctrl_mask: global_ctrl_mask
                & !(GLOBAL_OVF_CTRL_OVF_BUF | GLOBAL_OVF_CTRL_COND_CHGD),
            fixed_ctr_ctrl_mask,
            counter_bitmask: [caps.gp_mask(), caps.fixed_mask()],
            available_event_types: !caps.unavailable_events
                & ((1 << vmm::caps::ARCH_EVENTS.len()) - 1),
            perf,
            last_create_error: None,
        }
    }

    /// The counter of index `idx`, if the guest has it (KVM's `pmc_idx_to_pmc`).
    pub fn pmc(&self, idx: u32) -> Option<&KvmPmc> {
        if idx < FIXED_IDX_BASE {
            self.gp.get(idx as usize)
        } else {
            self.fixed.get((idx - FIXED_IDX_BASE) as usize)
        }
    }

    /// The counter of index `idx`, mutably.
    pub fn pmc_mut(&mut self, idx: u32) -> Option<&mut KvmPmc> {
        if idx < FIXED_IDX_BASE {
            self.gp.get_mut(idx as usize)
        } else {
            self.fixed.get_mut((idx - FIXED_IDX_BASE) as usize)
        }
    }

    /// The counter of index `idx` together with the perf layer, for code that drives the
    /// counter's event (the kernel reaches both through the `kvm_pmc` pointer).
    ///
    /// # Panics
    /// If the guest has no counter `idx`; callers pass indices of existing counters.
    pub fn pmc_and_perf(&mut self, idx: u32) -> (&mut KvmPmc, &mut HostPerf) {
        let pmc = if idx < FIXED_IDX_BASE {
            self.gp.get_mut(idx as usize)
        } else {
            self.fixed.get_mut((idx - FIXED_IDX_BASE) as usize)
        };
        (
            pmc.unwrap_or_else(|| panic!("no counter with index {idx}")),
            &mut self.perf,
        )
    }

    /// Every counter index the guest has: GP ones first, then fixed ones.
    pub fn pmc_indices(&self) -> impl Iterator<Item = u32> + '_ {
        self.gp.iter().chain(self.fixed.iter()).map(|pmc| pmc.idx)
    }

    /// How many counters have a host event right now.
    pub fn live_events(&self) -> usize {
        self.gp
            .iter()
            .chain(self.fixed.iter())
            .filter(|pmc| pmc.perf_event.is_some())
            .count()
    }
}
