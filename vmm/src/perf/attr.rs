//! What a host perf event is asked to count: the part of `struct perf_event_attr` that KVM's
//! `pmc_reprogram_counter` fills in for a guest counter.

/// `PERF_COUNT_HW_CPU_CYCLES`: core cycles.
pub const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
/// `PERF_COUNT_HW_INSTRUCTIONS`: instructions retired.
pub const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
/// `PERF_COUNT_HW_CACHE_REFERENCES`: last-level cache references.
pub const PERF_COUNT_HW_CACHE_REFERENCES: u64 = 2;
/// `PERF_COUNT_HW_CACHE_MISSES`: last-level cache misses.
pub const PERF_COUNT_HW_CACHE_MISSES: u64 = 3;
/// `PERF_COUNT_HW_BRANCH_INSTRUCTIONS`: branches retired.
pub const PERF_COUNT_HW_BRANCH_INSTRUCTIONS: u64 = 4;
/// `PERF_COUNT_HW_BRANCH_MISSES`: mispredicted branches retired.
pub const PERF_COUNT_HW_BRANCH_MISSES: u64 = 5;
/// `PERF_COUNT_HW_BUS_CYCLES`: bus cycles.
pub const PERF_COUNT_HW_BUS_CYCLES: u64 = 6;
/// `PERF_COUNT_HW_REF_CPU_CYCLES`: reference cycles, independent of frequency scaling.
pub const PERF_COUNT_HW_REF_CPU_CYCLES: u64 = 9;

/// Which host event: a generic hardware event or a raw, model-specific encoding.
///
/// KVM picks `PERF_TYPE_HARDWARE` when a guest event select is one of the architectural events
/// (and uses no edge/invert/counter-mask qualifiers), and `PERF_TYPE_RAW` with the guest's own
/// encoding otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `PERF_TYPE_HARDWARE` with one of the `PERF_COUNT_HW_*` ids as its config.
    Hardware(u64),
    /// `PERF_TYPE_RAW` with the event select's event, unit mask and qualifier bits.
    Raw(u64),
}

impl EventKind {
    /// A short name for traces and messages: `hw:1`, `raw:0x1c4`.
    pub fn describe(&self) -> String {
        match self {
            EventKind::Hardware(id) => format!("hw:{id}"),
            EventKind::Raw(config) => format!("raw:{config:#x}"),
        }
    }
}

/// The attributes of one host perf event standing in for one guest counter.
///
/// This is the subset of `struct perf_event_attr` that KVM sets in `pmc_reprogram_counter`,
/// plus [`EventAttr::intr`], which in the kernel is not an attribute but the choice of overflow
/// callback (`kvm_perf_overflow_intr` versus `kvm_perf_overflow`).
///
/// ```
/// use vmm::perf::{EventAttr, EventKind, PERF_COUNT_HW_INSTRUCTIONS};
/// let attr = EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_INSTRUCTIONS), 1000);
/// assert!(attr.is_sampling());
/// assert!(attr.exclude_host && attr.pinned && !attr.intr);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventAttr {
    /// The event to count.
    pub kind: EventKind,
    /// Events between two overflows; 0 makes a counting (non-sampling) event that never
    /// overflows and whose period cannot be changed later.
    pub sample_period: u64,
    /// Do not count at user level (the guest cleared USR).
    pub exclude_user: bool,
    /// Do not count at kernel level (the guest cleared OS).
    pub exclude_kernel: bool,
    /// Count only while the thread runs the guest, not while it runs the host.
    pub exclude_host: bool,
    /// Keep the event on the PMU or put it in error state, never multiplex it.
    pub pinned: bool,
    /// Whether an overflow must end in a PMI for the guest (INT/PMI bit set).
    pub intr: bool,
}

impl EventAttr {
    /// The attributes KVM would use for a counter that counts at every level and raises no
    /// PMI: `exclude_host` and `pinned` set, the rest clear.
    pub fn counting(kind: EventKind, sample_period: u64) -> EventAttr {
        EventAttr {
            kind,
            sample_period,
            exclude_user: false,
            exclude_kernel: false,
            exclude_host: true,
            pinned: true,
            intr: false,
        }
    }

    /// Whether the event samples, that is, has a period and so can overflow (the kernel's
    /// `is_sampling_event`).
    pub fn is_sampling(&self) -> bool {
        self.sample_period != 0
    }
}
