//! The PMU MSR map: which index is which.
//!
//! Intel's architectural performance monitoring (SDM vol. 3B, chapter "Performance
//! Monitoring", section "Architectural Performance Monitoring") puts its registers at fixed
//! MSR indices. A vPMU with `n` general-purpose (GP) counters and `m` fixed counters owns:
//!
//! | MSR | index | what it holds |
//! |---|---|---|
//! | `IA32_PMCx` | `0xC1 + x` | GP counter `x`; writes take bits 31:0, sign-extended |
//! | `IA32_PERFEVTSELx` | `0x186 + x` | GP counter `x`'s event select |
//! | `IA32_A_PMCx` | `0x4C1 + x` | GP counter `x`, full-width writes (if `PERF_CAPABILITIES[13]`) |
//! | `IA32_FIXED_CTRx` | `0x309 + x` | fixed counter `x` (instructions, cycles, ref-cycles) |
//! | `IA32_PERF_CAPABILITIES` | `0x345` | read-only feature bits |
//! | `IA32_FIXED_CTR_CTRL` | `0x38D` | 4 control bits per fixed counter |
//! | `IA32_PERF_GLOBAL_STATUS` | `0x38E` | overflow bits, read-only |
//! | `IA32_PERF_GLOBAL_CTRL` | `0x38F` | one enable bit per counter |
//! | `IA32_PERF_GLOBAL_OVF_CTRL` | `0x390` | write 1 to clear a status bit |
//!
//! Counters are also numbered in one space, as KVM and Linux perf number them: GP counter
//! `x` is index `x`, fixed counter `x` is index `32 + x`. Bit `i` of `GLOBAL_CTRL` and
//! `GLOBAL_STATUS` belongs to counter index `i`.

// ANCHOR: msr_indices
/// `IA32_PMC0`: the first general-purpose counter (legacy, 32-bit sign-extended writes).
pub const IA32_PMC0: u32 = 0xC1;
/// `IA32_PERFEVTSEL0`: the first general-purpose event select.
pub const IA32_PERFEVTSEL0: u32 = 0x186;
/// `IA32_A_PMC0`: the first general-purpose counter's full-width alias.
pub const IA32_A_PMC0: u32 = 0x4C1;
/// `IA32_FIXED_CTR0`: the first fixed-function counter.
pub const IA32_FIXED_CTR0: u32 = 0x309;
/// `IA32_PERF_CAPABILITIES`: read-only capability bits (bit 13: full-width writes).
pub const IA32_PERF_CAPABILITIES: u32 = 0x345;
/// `IA32_FIXED_CTR_CTRL`: OS, USR, AnyThread and PMI bits for each fixed counter.
pub const IA32_FIXED_CTR_CTRL: u32 = 0x38D;
/// `IA32_PERF_GLOBAL_STATUS`: one overflow bit per counter index.
pub const IA32_PERF_GLOBAL_STATUS: u32 = 0x38E;
/// `IA32_PERF_GLOBAL_CTRL`: one enable bit per counter index.
pub const IA32_PERF_GLOBAL_CTRL: u32 = 0x38F;
/// `IA32_PERF_GLOBAL_OVF_CTRL`: writing 1 to a bit clears it in `GLOBAL_STATUS`.
pub const IA32_PERF_GLOBAL_OVF_CTRL: u32 = 0x390;
// ANCHOR_END: msr_indices

/// The first counter index of the fixed counters in the shared index space.
pub const FIXED_IDX_BASE: u32 = 32;

/// How many MSRs each architectural block spans at most (SDM: up to 8 GP counters in
/// leaf 0xA's 8-bit field is common; we reserve room for that many).
pub const MAX_GP: u32 = 8;
/// The most fixed counters this vPMU models.
pub const MAX_FIXED: u32 = 4;

/// AMD's legacy PMU MSRs (`PerfEvtSel0..3`, `PerfCtr0..3`). KVM handles these in the kernel and
/// reads them as 0 unless they are filtered, so we route them too and let the vPMU refuse them.
pub const AMD_K7_PERF_BASE: u32 = 0xC001_0000;
/// AMD's family-15h-and-later core PMU MSRs (`PerfEvtSel0..5` interleaved with `PerfCtr0..5`).
pub const AMD_F15H_PERF_BASE: u32 = 0xC001_0200;

/// One contiguous block of MSR indices that the machine routes to the vPMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsrBlock {
    /// What the block is, for messages and the book.
    pub name: &'static str,
    /// The first index.
    pub base: u32,
    /// How many indices.
    pub count: u32,
}

// ANCHOR: pmu_msr_blocks
/// Every MSR block the machine denies in its MSR filter, so that each access exits to user
/// space and reaches [`crate::VirtualPmu`].
pub const PMU_MSR_BLOCKS: &[MsrBlock] = &[
    MsrBlock {
        name: "IA32_PMCx",
        base: IA32_PMC0,
        count: MAX_GP,
    },
    MsrBlock {
        name: "IA32_PERFEVTSELx",
        base: IA32_PERFEVTSEL0,
        count: MAX_GP,
    },
    MsrBlock {
        name: "IA32_FIXED_CTRx",
        base: IA32_FIXED_CTR0,
        count: MAX_FIXED,
    },
    MsrBlock {
        name: "IA32_PERF_CAPABILITIES",
        base: IA32_PERF_CAPABILITIES,
        count: 1,
    },
    MsrBlock {
        name: "IA32_FIXED_CTR_CTRL..GLOBAL_OVF_CTRL",
        base: IA32_FIXED_CTR_CTRL,
        count: 4,
    },
    MsrBlock {
        name: "IA32_A_PMCx",
        base: IA32_A_PMC0,
        count: MAX_GP,
    },
    MsrBlock {
        name: "AMD PerfEvtSel/PerfCtr (K7)",
        base: AMD_K7_PERF_BASE,
        count: 8,
    },
    MsrBlock {
        name: "AMD PerfEvtSel/PerfCtr (F15h)",
        base: AMD_F15H_PERF_BASE,
        count: 12,
    },
];
// ANCHOR_END: pmu_msr_blocks

/// Whether the machine routes `msr` to the vPMU.
///
/// ```
/// assert!(vmm::msr::is_pmu_msr(vmm::msr::IA32_PERF_GLOBAL_CTRL));
/// assert!(!vmm::msr::is_pmu_msr(0x10)); // IA32_TIME_STAMP_COUNTER stays with KVM
/// ```
pub fn is_pmu_msr(msr: u32) -> bool {
    PMU_MSR_BLOCKS
        .iter()
        .any(|b| msr >= b.base && msr - b.base < b.count)
}

/// A readable name for a PMU MSR index, e.g. `IA32_PERFEVTSEL2`, for transcripts and errors.
///
/// ```
/// assert_eq!(vmm::msr::name(0x188), "IA32_PERFEVTSEL2");
/// assert_eq!(vmm::msr::name(0x38F), "IA32_PERF_GLOBAL_CTRL");
/// assert_eq!(vmm::msr::name(0x10), "MSR 0x10");
/// ```
pub fn name(msr: u32) -> String {
    let indexed = |base: u32, count: u32, stem: &str| {
        (msr >= base && msr - base < count).then(|| format!("{stem}{}", msr - base))
    };
    let fixed = match msr {
        IA32_PERF_CAPABILITIES => Some("IA32_PERF_CAPABILITIES"),
        IA32_FIXED_CTR_CTRL => Some("IA32_FIXED_CTR_CTRL"),
        IA32_PERF_GLOBAL_STATUS => Some("IA32_PERF_GLOBAL_STATUS"),
        IA32_PERF_GLOBAL_CTRL => Some("IA32_PERF_GLOBAL_CTRL"),
        IA32_PERF_GLOBAL_OVF_CTRL => Some("IA32_PERF_GLOBAL_OVF_CTRL"),
        _ => None,
    };
    fixed
        .map(str::to_string)
        .or_else(|| indexed(IA32_PMC0, MAX_GP, "IA32_PMC"))
        .or_else(|| indexed(IA32_PERFEVTSEL0, MAX_GP, "IA32_PERFEVTSEL"))
        .or_else(|| indexed(IA32_A_PMC0, MAX_GP, "IA32_A_PMC"))
        .or_else(|| indexed(IA32_FIXED_CTR0, MAX_FIXED, "IA32_FIXED_CTR"))
        .or_else(|| indexed(AMD_K7_PERF_BASE, 8, "AMD_K7_PERF+"))
        .or_else(|| indexed(AMD_F15H_PERF_BASE, 12, "AMD_F15H_PERF+"))
        .unwrap_or_else(|| format!("MSR {msr:#x}"))
}
