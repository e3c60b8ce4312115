//! A guest NMI handler shaped like Linux perf's, and the event-select helpers it needs.
//!
//! Linux's Intel PMI handler (`intel_pmu_handle_irq` in `arch/x86/events/intel/core.c`)
//! does, in order: disable every counter by writing 0 to `GLOBAL_CTRL`; read
//! `GLOBAL_STATUS`; for each overflowed counter, hand the sample to perf and re-arm the
//! counter by writing `-period` to it; acknowledge the bits through `GLOBAL_OVF_CTRL`; and
//! enable the counters again through `GLOBAL_CTRL`. Perf's multiplexing
//! (`perf_mux_hrtimer_handler` → `perf_rotate_context`) runs from a timer, also with the PMU
//! disabled, and swaps which events sit on the counters. [`sampling_handler`] emits that
//! sequence, with the rotation folded into the NMI every `rotate_every` NMIs.
//!
//! Every MSR access in it is an exit to the VMM: this is the code whose latency commit
//! a6da0d77 cut.

use iced_x86::code_asm::*;
use vmm::msr::{
    FIXED_IDX_BASE, IA32_FIXED_CTR0, IA32_FIXED_CTR_CTRL, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL,
    IA32_PERF_GLOBAL_OVF_CTRL, IA32_PERF_GLOBAL_STATUS, IA32_PMC0,
};

use crate::Guest;

/// `IA32_PERFEVTSELx` bit 16: count in ring 3.
pub const EVTSEL_USR: u64 = 1 << 16;
/// `IA32_PERFEVTSELx` bit 17: count in ring 0.
pub const EVTSEL_OS: u64 = 1 << 17;
/// `IA32_PERFEVTSELx` bit 20: raise a PMI on overflow.
pub const EVTSEL_INT: u64 = 1 << 20;
/// `IA32_PERFEVTSELx` bit 22: enable the counter.
pub const EVTSEL_EN: u64 = 1 << 22;

/// An enabled event select for architectural event `(event, umask)` in both rings.
pub fn evtsel(event: u8, umask: u8, int: bool) -> u64 {
    u64::from(event)
        | u64::from(umask) << 8
        | EVTSEL_USR
        | EVTSEL_OS
        | EVTSEL_EN
        | if int { EVTSEL_INT } else { 0 }
}

/// The events a multiplexing guest rotates through: the seven architectural events.
pub fn arch_event_selects(int: bool) -> Vec<u64> {
    vmm::caps::ARCH_EVENTS
        .iter()
        .map(|e| evtsel(e.event, e.umask, int))
        .collect()
}

/// The counter a PMI handler re-arms: its index in the shared space (GP `x` is `x`, fixed
/// `x` is `32 + x`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Armed {
    /// Counter index.
    pub idx: u32,
    /// The sampling period: the counter is written with `-period`.
    pub period: u64,
}

impl Armed {
    /// The MSR that holds this counter.
    pub fn counter_msr(&self) -> u32 {
        if self.idx >= FIXED_IDX_BASE {
            IA32_FIXED_CTR0 + (self.idx - FIXED_IDX_BASE)
        } else {
            IA32_PMC0 + self.idx
        }
    }

    /// `-period` as the counter of `width` bits holds it.
    pub fn preload(&self, width: u8) -> u64 {
        self.period.wrapping_neg() & ((1u64 << width) - 1)
    }

    /// The MSR and value that enable this counter, alone, to count instructions in both rings
    /// with its interrupt bit set: its event select (GP), or its field of
    /// `IA32_FIXED_CTR_CTRL` with OS, USR and PMI (fixed).
    pub fn sampling_control(&self) -> (u32, u64) {
        if self.idx >= FIXED_IDX_BASE {
            (
                IA32_FIXED_CTR_CTRL,
                0xB << (4 * (self.idx - FIXED_IDX_BASE)),
            )
        } else {
            (IA32_PERFEVTSEL0 + self.idx, evtsel(0xC0, 0, true))
        }
    }
}

// ANCHOR: start_sampling
/// Starts one counter sampling as `perf record` would: installs the Linux-shaped handler,
/// preloads the counter with `-period`, enables it with its interrupt bit and enables it,
/// alone, in `GLOBAL_CTRL`. The caller waits for NMIs and stops the counters.
pub fn start_sampling(g: &mut Guest, arm: Armed, width: u8) {
    g.on_nmi(move |g| sampling_handler(g, &[arm], width, None));
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.wrmsr(arm.counter_msr(), arm.preload(width));
    let (msr, value) = arm.sampling_control();
    g.wrmsr(msr, value);
    set_enabled_mask(g, 1 << arm.idx);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << arm.idx);
}
// ANCHOR_END: start_sampling

/// Starts GP counters `0..rot.counters` sampling with `period` each while the handler
/// rotates `rot.events` over them, as perf multiplexing does. The caller waits for NMIs and
/// stops the counters.
pub fn start_multiplexing(g: &mut Guest, rot: &Rotation, period: u64, width: u8) {
    let armed: Vec<Armed> = (0..rot.counters).map(|idx| Armed { idx, period }).collect();
    let (armed_h, rot_h) = (armed.clone(), rot.clone());
    g.on_nmi(move |g| sampling_handler(g, &armed_h, width, Some(&rot_h)));
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    install_rotation(g, rot);
    for (c, arm) in armed.iter().enumerate() {
        g.wrmsr(arm.counter_msr(), arm.preload(width));
        g.wrmsr(IA32_PERFEVTSEL0 + c as u32, rot.events[c]);
    }
    let mask = (1u64 << rot.counters) - 1;
    set_enabled_mask(g, mask);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, mask);
}

/// Multiplexing: which event selects the GP counters cycle through, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    /// The events, more than there are counters.
    pub events: Vec<u64>,
    /// Rotate once every this many NMIs.
    pub every: u64,
    /// How many GP counters take part (counters `0..counters`).
    pub counters: u32,
}

/// Where the handler keeps its state in [`vmm::layout::VARS`].
mod vars {
    use vmm::layout::VARS;
    /// NMIs handled so far by this handler.
    pub const SEQ: u64 = VARS;
    /// Current rotation step.
    pub const ROT: u64 = VARS + 8;
    /// The GLOBAL_CTRL value the handler re-enables.
    pub const ENABLED: u64 = VARS + 16;
    /// Rotation table: `steps × counters` event selects.
    pub const TABLE: u64 = VARS + 0x100;
}

/// Writes the handler's state that the host could otherwise not know: the enable mask.
/// Call before enabling the counters.
pub fn set_enabled_mask(g: &mut Guest, mask: u64) {
    g.mov(vars::ENABLED, mask);
}

/// Emits code that fills the rotation table in the program's variables: row `r` holds the
/// event selects of counters `0..counters` after `r` rotations.
pub fn install_rotation(g: &mut Guest, rot: &Rotation) {
    let steps = rot.events.len();
    for step in 0..steps {
        for c in 0..rot.counters as usize {
            let sel = rot.events[(step + c) % steps];
            g.mov(
                vars::TABLE + ((step * rot.counters as usize + c) * 8) as u64,
                sel,
            );
        }
    }
}

// ANCHOR: sampling_handler
/// The Linux-shaped PMI handler body: disable all, read status, re-arm the overflowed
/// counters of `armed` with `-period`, (rotate), acknowledge, enable all. Logs the status
/// it saw under `"pmi.status"`.
pub fn sampling_handler(g: &mut Guest, armed: &[Armed], width: u8, rotation: Option<&Rotation>) {
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.rdmsr(IA32_PERF_GLOBAL_STATUS);
    g.asm(|a| a.mov(rbx, rax));
    g.log("pmi.status", rbx);
    for arm in armed {
        let mut next = g.label();
        let bit = arm.idx;
        g.asm(|a| {
            a.bt(rbx, bit)?;
            a.jnc(next)
        });
        g.wrmsr(arm.counter_msr(), arm.preload(width));
        g.place(&mut next);
    }
    if let Some(rot) = rotation {
        rotate(g, rot);
    }
    g.wrmsr_reg(IA32_PERF_GLOBAL_OVF_CTRL, rbx);
    g.asm(|a| a.mov(rbx, qword_ptr(vars::ENABLED)));
    g.wrmsr_reg(IA32_PERF_GLOBAL_CTRL, rbx);
}
// ANCHOR_END: sampling_handler

/// Every `rot.every` NMIs, load the next row of the rotation table into the event selects.
fn rotate(g: &mut Guest, rot: &Rotation) {
    let mut done = g.label();
    let mut wrapped = g.label();
    let steps = rot.events.len() as i32;
    let row = (rot.counters * 8) as i32;
    let every = rot.every.max(1);
    g.asm(|a| {
        a.inc(qword_ptr(vars::SEQ))?;
        a.mov(rax, qword_ptr(vars::SEQ))?;
        a.xor(edx, edx)?;
        a.mov(rcx, every)?;
        a.div(rcx)?;
        a.test(rdx, rdx)?;
        a.jnz(done)?;
        a.mov(rax, qword_ptr(vars::ROT))?;
        a.inc(rax)?;
        a.cmp(rax, steps)?;
        a.jb(wrapped)?;
        a.xor(eax, eax)?;
        a.set_label(&mut wrapped)?;
        a.mov(qword_ptr(vars::ROT), rax)?;
        a.imul_3(rsi, rax, row)?;
        a.add(rsi, vars::TABLE as i32)
    });
    for c in 0..rot.counters {
        // wrmsr_reg clobbers rax, rcx and rdx only, so rsi keeps pointing at the row.
        g.asm(|a| a.mov(rax, qword_ptr(rsi + (c * 8) as i32)));
        g.wrmsr_reg(IA32_PERFEVTSEL0 + c, rax);
    }
    g.place(&mut done);
}
