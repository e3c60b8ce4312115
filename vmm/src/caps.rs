//! What PMU the guest is told it has: CPUID leaf 0xA and `IA32_PERF_CAPABILITIES`.
//!
//! A guest learns its PMU from CPUID leaf 0xA (SDM vol. 2A, CPUID, "Architectural Performance
//! Monitoring Leaf"):
//!
//! | register | bits | meaning |
//! |---|---|---|
//! | EAX | 7:0 | version ID |
//! | EAX | 15:8 | number of GP counters per logical processor |
//! | EAX | 23:16 | bit width of the GP counters |
//! | EAX | 31:24 | length of the EBX bit vector |
//! | EBX | 0..6 | a **set** bit means that architectural event is **not** available |
//! | EDX | 4:0 | number of fixed counters (version 2 and later) |
//! | EDX | 12:5 | bit width of the fixed counters |
//!
//! The in-kernel vPMU is off on the machines this workbook targets, so KVM reports leaf 0xA
//! as zeros; the machine writes the leaf built here instead, and the vPMU in user space
//! implements what it promises.

use crate::msr::{MAX_FIXED, MAX_GP};

// ANCHOR: arch_events
/// The seven architectural events of leaf 0xA's EBX vector, in bit order, with the event
/// select and unit mask the SDM gives each.
pub const ARCH_EVENTS: [ArchEvent; 7] = [
    ArchEvent {
        name: "UnHalted Core Cycles",
        event: 0x3C,
        umask: 0x00,
    },
    ArchEvent {
        name: "Instructions Retired",
        event: 0xC0,
        umask: 0x00,
    },
    ArchEvent {
        name: "UnHalted Reference Cycles",
        event: 0x3C,
        umask: 0x01,
    },
    ArchEvent {
        name: "LLC Reference",
        event: 0x2E,
        umask: 0x4F,
    },
    ArchEvent {
        name: "LLC Misses",
        event: 0x2E,
        umask: 0x41,
    },
    ArchEvent {
        name: "Branch Instructions Retired",
        event: 0xC4,
        umask: 0x00,
    },
    ArchEvent {
        name: "Branch Misses Retired",
        event: 0xC5,
        umask: 0x00,
    },
];
// ANCHOR_END: arch_events

/// One architectural event: its name and its encoding in `IA32_PERFEVTSELx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchEvent {
    /// The SDM's name for it.
    pub name: &'static str,
    /// Event select, bits 7:0 of `IA32_PERFEVTSELx`.
    pub event: u8,
    /// Unit mask, bits 15:8 of `IA32_PERFEVTSELx`.
    pub umask: u8,
}

/// `IA32_PERF_CAPABILITIES` bit 13: `IA32_A_PMCx` accept full-width writes.
pub const PERF_CAP_FW_WRITE: u64 = 1 << 13;

/// The virtual PMU's geometry, as the guest will see it.
///
/// ```
/// let caps = vmm::PmuCaps::default();
/// let leaf = caps.cpuid_0xa();
/// assert_eq!(leaf.eax & 0xff, 2); // version 2
/// assert_eq!((leaf.eax >> 8) & 0xff, 4); // four GP counters
/// assert_eq!(leaf.edx & 0x1f, 3); // three fixed counters
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PmuCaps {
    /// Architectural perfmon version (this workbook models version 2).
    pub version: u8,
    /// Number of general-purpose counters, 1 to [`MAX_GP`].
    pub nr_gp: u8,
    /// Width of the GP counters in bits.
    pub gp_width: u8,
    /// Number of fixed counters, 0 to 3 (the architectural ones).
    pub nr_fixed: u8,
    /// Width of the fixed counters in bits.
    pub fixed_width: u8,
    /// Leaf 0xA EBX: a set bit marks an architectural event as unavailable.
    pub unavailable_events: u32,
    /// Whether `IA32_A_PMCx` (full-width counter writes) are advertised.
    pub full_width_writes: bool,
}

impl Default for PmuCaps {
    fn default() -> Self {
        PmuCaps {
            version: 2,
            nr_gp: 4,
            gp_width: 48,
            nr_fixed: 3,
            fixed_width: 48,
            unavailable_events: 0,
            full_width_writes: true,
        }
    }
}

/// The four registers of one CPUID leaf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct CpuidRegs {
    /// EAX.
    pub eax: u32,
    /// EBX.
    pub ebx: u32,
    /// ECX.
    pub ecx: u32,
    /// EDX.
    pub edx: u32,
}

impl PmuCaps {
    /// Caps with `nr_gp` GP counters and the defaults otherwise.
    pub fn with_gp(nr_gp: u8) -> Self {
        PmuCaps {
            nr_gp,
            ..Self::default()
        }
    }

    /// Checks the geometry against what the vPMU and the MSR map can hold.
    pub fn validate(&self) -> Result<(), String> {
        if self.version != 2 {
            return Err(format!(
                "perfmon version {} is not modelled; use 2",
                self.version
            ));
        }
        if self.nr_gp == 0 || u32::from(self.nr_gp) > MAX_GP {
            return Err(format!("{} GP counters: choose 1 to {MAX_GP}", self.nr_gp));
        }
        if u32::from(self.nr_fixed) > 3.min(MAX_FIXED) {
            return Err(format!("{} fixed counters: choose 0 to 3", self.nr_fixed));
        }
        for (what, w) in [("GP", self.gp_width), ("fixed", self.fixed_width)] {
            if !(32..=48).contains(&w) {
                return Err(format!("{what} counter width {w}: choose 32 to 48 bits"));
            }
        }
        Ok(())
    }

    /// Mask of the bits a GP counter holds.
    pub fn gp_mask(&self) -> u64 {
        (1u64 << self.gp_width) - 1
    }

    /// Mask of the bits a fixed counter holds.
    pub fn fixed_mask(&self) -> u64 {
        (1u64 << self.fixed_width) - 1
    }

    // ANCHOR: cpuid_0xa
    /// CPUID leaf 0xA as the guest will read it.
    pub fn cpuid_0xa(&self) -> CpuidRegs {
        let ebx_len = ARCH_EVENTS.len() as u32;
        CpuidRegs {
            eax: u32::from(self.version)
                | u32::from(self.nr_gp) << 8
                | u32::from(self.gp_width) << 16
                | ebx_len << 24,
            ebx: self.unavailable_events & ((1 << ebx_len) - 1),
            ecx: 0,
            edx: u32::from(self.nr_fixed) | u32::from(self.fixed_width) << 5,
        }
    }
    // ANCHOR_END: cpuid_0xa

    /// The value of `IA32_PERF_CAPABILITIES` consistent with these caps.
    pub fn perf_capabilities(&self) -> u64 {
        if self.full_width_writes {
            PERF_CAP_FW_WRITE
        } else {
            0
        }
    }

    /// Whether architectural event `bit` (an index into [`ARCH_EVENTS`]) is available.
    pub fn event_available(&self, bit: usize) -> bool {
        bit < ARCH_EVENTS.len() && self.unavailable_events & (1 << bit) == 0
    }
}
