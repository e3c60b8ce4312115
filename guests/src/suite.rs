//! The guest test suite that both tiers must pass with identical guest-visible results.
//!
//! Each [`Scenario`] is a real guest program plus a way to render its log as a
//! [`Transcript`]. [`run_scenario`] runs one on any [`VirtualPmu`]; each tier's crate runs
//! all of them from its own tests with [`guest_suite!`](crate::guest_suite), snapshotting
//! the transcript and, where it is deterministic, the tier's host perf trace.
//!
//! Adding a scenario is a few lines: a function that builds the program, and a
//! [`Scenario`] entry in [`SCENARIOS`] (or your own list; `run_scenario` takes any).

use iced_x86::code_asm::{eax, ecx, qword_ptr, rax, rbx, rcx, rdx};
use vmm::caps::PmuCaps;
use vmm::msr::*;
use vmm::VirtualPmu;

use crate::linux::{self, evtsel, Armed, Rotation, EVTSEL_EN};
use crate::runtime::rt;
use crate::transcript::{render, Transcript};
use crate::{Guest, Program, Record, Run, RunError};

// ANCHOR: scenario
/// One scenario of the suite.
#[derive(Clone, Copy)]
pub struct Scenario {
    /// A short snake_case name; also the test's and the snapshots' name.
    pub name: &'static str,
    /// What it shows, in one line.
    pub about: &'static str,
    /// Builds the guest program for a PMU with these caps.
    pub build: fn(&PmuCaps) -> Program,
    /// Turns the guest's log into the transcript (usually [`render`]).
    pub render: fn(&[Record]) -> Transcript,
    /// Whether the host perf operations it causes are the same on every run (no overflow
    /// timing in them), so that the tier's host trace can be snapshotted too.
    pub host_trace_deterministic: bool,
}
// ANCHOR_END: scenario

/// What a scenario run yields.
pub struct ScenarioRun<P: VirtualPmu> {
    /// The guest-visible transcript.
    pub transcript: Transcript,
    /// The run itself (machine, vPMU, log, latencies).
    pub run: Run<P>,
}

// ANCHOR: run_scenario
/// Runs `scenario` on a machine with `pmu`; the transcript ends with the number of #GP
/// faults the guest took.
pub fn run_scenario<P: VirtualPmu>(
    scenario: &Scenario,
    pmu: P,
) -> Result<ScenarioRun<P>, RunError> {
    let program = (scenario.build)(&pmu.caps());
    let run = program.run(pmu)?;
    let mut transcript = (scenario.render)(&run.log);
    transcript.push(format!("#GP faults taken: {}", run.gp_faults));
    Ok(ScenarioRun { transcript, run })
}
// ANCHOR_END: run_scenario

/// The caps every scenario of [`SCENARIOS`] runs with: 4 GP and 3 fixed counters, 48 bits
/// wide, full-width writes.
pub fn suite_caps() -> PmuCaps {
    PmuCaps::default()
}

/// The suite, in order.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "cpuid_leaf_0xa",
        about: "CPUID leaf 0xA as the guest decodes it",
        build: cpuid_leaf_0xa,
        render: render_cpuid,
        host_trace_deterministic: true,
    },
    Scenario {
        name: "reset_values",
        about: "every PMU MSR after reset, and the ones that do not exist",
        build: reset_values,
        render,
        host_trace_deterministic: true,
    },
    Scenario {
        name: "write_widths",
        about: "IA32_PMCx sign-extends, IA32_A_PMCx and fixed counters take the full width",
        build: write_widths,
        render,
        host_trace_deterministic: true,
    },
    Scenario {
        name: "reserved_bits",
        about: "reserved bits of every PMU MSR fault and leave the state unchanged",
        build: reserved_bits,
        render,
        host_trace_deterministic: true,
    },
    Scenario {
        name: "status_and_ovf_ctrl",
        about: "GLOBAL_STATUS is read-only; GLOBAL_OVF_CTRL clears exactly the bits written",
        build: status_and_ovf_ctrl,
        render,
        host_trace_deterministic: false,
    },
    Scenario {
        name: "counting",
        about: "counters advance while enabled and stop on their EN bit, field or GLOBAL_CTRL bit",
        build: counting,
        render,
        host_trace_deterministic: true,
    },
    Scenario {
        name: "overflow_every_counter",
        about: "each counter preloaded near the wrap overflows; an NMI only with INT/PMI set",
        build: overflow_every_counter,
        render,
        host_trace_deterministic: false,
    },
    Scenario {
        name: "write_running_counter",
        about: "a counter written while it runs continues from the new value and wraps there",
        build: write_running_counter,
        render,
        host_trace_deterministic: false,
    },
    Scenario {
        name: "sampling",
        about: "a Linux-shaped PMI handler re-arms a GP counter, NMI after NMI",
        build: sampling,
        render: render_sampling,
        host_trace_deterministic: false,
    },
    Scenario {
        name: "sampling_fixed",
        about: "the same handler re-arms fixed counter 0, NMI after NMI",
        build: sampling_fixed,
        render: render_sampling,
        host_trace_deterministic: false,
    },
    Scenario {
        name: "multiplexing",
        about: "the handler also rotates seven events over four GP counters, as perf does",
        build: multiplexing,
        render: render_multiplexing,
        host_trace_deterministic: false,
    },
];

/// The scenario called `name`.
///
/// # Panics
/// If there is none.
pub fn by_name(name: &str) -> &'static Scenario {
    SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name:?}"))
}

// ANCHOR: periods
/// Sampling period of the scenarios, in events: 20 µs of task-clock, above the software
/// backend's 10 µs floor.
const PERIOD: u64 = 20_000;
/// Sampling period of the PMI-handler scenarios: 200 µs of task-clock. The counters count
/// the vCPU thread's time, including the emulated ring-0 tail of the handler after it
/// re-enables them (tens of µs here); a period close to that re-fires before ring 3 runs
/// again, an NMI storm that real perf avoids by throttling.
const SAMPLING_PERIOD: u64 = 200_000;
// ANCHOR_END: periods
/// Ring-3 iterations that take long enough (about 10 ms) for any period here to pass.
const LONG_SPIN: u64 = 20_000_000;
/// Ring-3 iterations that make a running counter advance visibly.
const SHORT_SPIN: u64 = 200_000;

/// Every GP counter's index and every fixed counter's index, in the shared index space.
fn all_counters(caps: &PmuCaps) -> Vec<u32> {
    (0..u32::from(caps.nr_gp))
        .chain((0..u32::from(caps.nr_fixed)).map(|i| FIXED_IDX_BASE + i))
        .collect()
}

fn counter_name(idx: u32) -> String {
    if idx >= FIXED_IDX_BASE {
        format!("fixed{}", idx - FIXED_IDX_BASE)
    } else {
        format!("gp{idx}")
    }
}

fn width(caps: &PmuCaps, idx: u32) -> u8 {
    if idx >= FIXED_IDX_BASE {
        caps.fixed_width
    } else {
        caps.gp_width
    }
}

/// Logs the guest's NMI count under `tag` (exact: only where NMIs are deterministic).
fn log_nmis(g: &mut Guest, tag: &str) {
    g.asm(|a| a.mov(rbx, qword_ptr(rt::NMI_COUNT)));
    g.log(tag, rbx);
}

/// Reads the counter `idx` as a count series.
fn count(g: &mut Guest, idx: u32, what: &str) {
    let msr = Armed { idx, period: 0 }.counter_msr();
    g.read_msr(&format!("count {}: {what}", counter_name(idx)), msr);
}

/// Enables or disables counter `idx` by its own control: EN in the event select (GP), the
/// 2-bit enable of its FIXED_CTR_CTRL field (fixed). `fixed_ctrl` tracks that MSR.
fn own_enable(g: &mut Guest, idx: u32, on: bool, int: bool, fixed_ctrl: &mut u64) {
    if idx >= FIXED_IDX_BASE {
        let shift = 4 * (idx - FIXED_IDX_BASE);
        *fixed_ctrl &= !(0xF << shift);
        if on {
            *fixed_ctrl |= (0x3 | if int { 0x8 } else { 0 }) << shift;
        }
        g.wrmsr(IA32_FIXED_CTR_CTRL, *fixed_ctrl);
    } else {
        let sel = evtsel(0xC0, 0, int);
        g.wrmsr(
            IA32_PERFEVTSEL0 + idx,
            if on { sel } else { sel & !EVTSEL_EN },
        );
    }
}

fn cpuid_leaf_0xa(_: &PmuCaps) -> Program {
    let mut g = Guest::new("cpuid_leaf_0xa");
    g.asm(|a| {
        a.mov(eax, 0xA)?;
        a.xor(ecx, ecx)?;
        a.cpuid()
    });
    for (reg, name) in [(rax, "eax"), (rbx, "ebx"), (rcx, "ecx"), (rdx, "edx")] {
        g.log(&format!("cpuid.0xa.{name}"), reg);
    }
    g.asm(|a| {
        a.mov(eax, 1)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.shr(ecx, 15)?;
        a.and(ecx, 1)
    });
    g.log("cpuid.1.ecx.pdcm", rcx);
    g.read_msr("IA32_PERF_CAPABILITIES", IA32_PERF_CAPABILITIES);
    g.finish()
}

/// Decodes leaf 0xA the way a guest kernel does, field by field.
fn render_cpuid(log: &[Record]) -> Transcript {
    let mut t = render(log);
    let value = |n: &str| {
        log.iter()
            .find_map(|r| match r {
                Record::Value { name, value } if name == n => Some(*value as u32),
                _ => None,
            })
            .unwrap_or(0)
    };
    let (leaf_a, leaf_b, leaf_d) = (
        value("cpuid.0xa.eax"),
        value("cpuid.0xa.ebx"),
        value("cpuid.0xa.edx"),
    );
    t.push(format!("version: {}", leaf_a & 0xFF));
    t.push(format!("GP counters: {}", (leaf_a >> 8) & 0xFF));
    t.push(format!("GP counter width: {}", (leaf_a >> 16) & 0xFF));
    let len = (leaf_a >> 24) & 0xFF;
    for (bit, e) in vmm::caps::ARCH_EVENTS.iter().enumerate().take(len as usize) {
        let available = leaf_b & (1 << bit) == 0;
        t.push(format!(
            "event {:?}: {}",
            e.name,
            if available {
                "available"
            } else {
                "not available"
            }
        ));
    }
    t.push(format!("fixed counters: {}", leaf_d & 0x1F));
    t.push(format!("fixed counter width: {}", (leaf_d >> 5) & 0xFF));
    t
}

/// Every PMU MSR the caps promise, then the first of each block they do not.
fn pmu_msrs(caps: &PmuCaps) -> Vec<u32> {
    let gp = u32::from(caps.nr_gp);
    let mut msrs: Vec<u32> = (0..gp).map(|i| IA32_PMC0 + i).collect();
    msrs.extend((0..gp).map(|i| IA32_PERFEVTSEL0 + i));
    if caps.full_width_writes {
        msrs.extend((0..gp).map(|i| IA32_A_PMC0 + i));
    }
    msrs.extend((0..u32::from(caps.nr_fixed)).map(|i| IA32_FIXED_CTR0 + i));
    msrs.extend([
        IA32_FIXED_CTR_CTRL,
        IA32_PERF_GLOBAL_STATUS,
        IA32_PERF_GLOBAL_CTRL,
        IA32_PERF_GLOBAL_OVF_CTRL,
        IA32_PERF_CAPABILITIES,
    ]);
    msrs
}

fn read_all(g: &mut Guest, caps: &PmuCaps, when: &str) {
    for msr in pmu_msrs(caps) {
        g.read_msr(&format!("{when} {}", vmm::msr::name(msr)), msr);
    }
}

fn reset_values(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("reset_values");
    read_all(&mut g, caps, "reset");
    let gp = u32::from(caps.nr_gp);
    let fixed = u32::from(caps.nr_fixed);
    // Beyond what CPUID promises, and the AMD PMU: each read must fault.
    for msr in [
        IA32_PMC0 + gp,
        IA32_PERFEVTSEL0 + gp,
        IA32_A_PMC0 + gp,
        IA32_FIXED_CTR0 + fixed,
        AMD_K7_PERF_BASE,
        AMD_F15H_PERF_BASE,
    ] {
        g.read_msr(&format!("absent {}", vmm::msr::name(msr)), msr);
    }
    g.finish()
}

fn write_widths(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("write_widths");
    let w = u64::from(caps.gp_width);
    let writes: [(u32, u64, &str); 8] = [
        (
            IA32_PMC0,
            0x8000_0000,
            "PMC0 <- 0x80000000 (bit 31 set: sign-extends)",
        ),
        (
            IA32_PMC0,
            0x1_7FFF_FFFF,
            "PMC0 <- 0x17fffffff (bit 32 ignored)",
        ),
        (
            IA32_A_PMC0,
            0x8000_0000,
            "A_PMC0 <- 0x80000000 (no sign extension)",
        ),
        (IA32_A_PMC0, (1 << w) - 1, "A_PMC0 <- all ones of the width"),
        (
            IA32_A_PMC0,
            1 << w,
            "A_PMC0 <- 1 << width (beyond the width: #GP)",
        ),
        (IA32_PMC0 + 1, 0xFFFF_FFFF, "PMC1 <- 0xffffffff"),
        (
            IA32_FIXED_CTR0,
            (1 << caps.fixed_width) - 1,
            "FIXED_CTR0 <- all ones of the width",
        ),
        (IA32_FIXED_CTR0 + 1, 0x1234, "FIXED_CTR1 <- 0x1234"),
    ];
    for (msr, value, what) in writes {
        g.wrmsr(msr, value);
        g.read_msr(&format!("{what}: reads"), msr);
        if msr == IA32_PMC0 || msr == IA32_A_PMC0 {
            g.read_msr(&format!("{what}: A_PMC0 reads"), IA32_A_PMC0);
        }
    }
    g.finish()
}

/// An MSR, a valid value for it, and invalid values with what makes each invalid.
type ReservedCase = (u32, u64, Vec<(u64, &'static str)>);

fn reserved_bits(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("reserved_bits");
    let gp_bits = (1u64 << caps.nr_gp) - 1;
    let fixed_bits = ((1u64 << caps.nr_fixed) - 1) << FIXED_IDX_BASE;
    let sel = evtsel(0xC0, 0, false) & !EVTSEL_EN;
    // (MSR, a valid value, invalid values): the valid one is written first, each invalid
    // one must fault, and the read after them must still see the valid one.
    let cases: Vec<ReservedCase> = vec![
        (
            IA32_PERFEVTSEL0,
            sel,
            vec![
                (sel | 1 << 21, "AnyThread (bit 21)"),
                (sel | 1 << 32, "bit 32"),
            ],
        ),
        (
            IA32_FIXED_CTR_CTRL,
            0x0,
            vec![
                (0x4, "AnyThread of FIXED_CTR0 (bit 2)"),
                (1 << (4 * caps.nr_fixed), "beyond the fixed counters"),
            ],
        ),
        (
            IA32_PERF_GLOBAL_CTRL,
            gp_bits | fixed_bits,
            vec![
                (1 << caps.nr_gp, "beyond the GP counters"),
                (
                    1 << (FIXED_IDX_BASE + u32::from(caps.nr_fixed)),
                    "beyond the fixed counters",
                ),
            ],
        ),
        (
            IA32_PERF_GLOBAL_OVF_CTRL,
            0x1,
            vec![
                (1 << caps.nr_gp, "beyond the GP counters"),
                (1 << 40, "bit 40"),
            ],
        ),
        (
            IA32_A_PMC0,
            0x1234,
            vec![(1 << caps.gp_width, "beyond the width")],
        ),
    ];
    for (msr, good, bads) in cases {
        let name = vmm::msr::name(msr);
        g.wrmsr(msr, good);
        for (bad, why) in bads {
            g.wrmsr(msr, bad);
            g.read_msr(&format!("{name} after writing {why}"), msr);
        }
    }
    g.wrmsr(IA32_PERF_GLOBAL_STATUS, 0);
    g.wrmsr(IA32_PERF_GLOBAL_STATUS, 1);
    g.wrmsr(IA32_PERF_CAPABILITIES, 0);
    read_all(&mut g, caps, "final");
    g.finish()
}

fn status_and_ovf_ctrl(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("status_and_ovf_ctrl");
    let counters = [0u32, 1, FIXED_IDX_BASE];
    let mut fixed_ctrl = 0;
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    let mut mask = 0;
    for idx in counters {
        let arm = Armed {
            idx,
            period: PERIOD,
        };
        g.wrmsr(arm.counter_msr(), arm.preload(width(caps, idx)));
        own_enable(&mut g, idx, true, false, &mut fixed_ctrl);
        mask |= 1u64 << idx;
    }
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, mask);
    g.user(|u| {
        u.spin(LONG_SPIN);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.read_msr("status after three overflows", IA32_PERF_GLOBAL_STATUS);
    log_nmis(&mut g, "NMIs (no INT/PMI bit was set)");
    g.wrmsr(IA32_PERF_GLOBAL_STATUS, 0);
    g.read_msr("status after a write to it", IA32_PERF_GLOBAL_STATUS);
    for idx in counters {
        g.wrmsr(IA32_PERF_GLOBAL_OVF_CTRL, 1 << idx);
        g.read_msr(
            &format!("status after OVF_CTRL clears bit {idx}"),
            IA32_PERF_GLOBAL_STATUS,
        );
    }
    g.finish()
}

// ANCHOR: counting
fn counting(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("counting");
    let mut fixed_ctrl = 0;
    let spin = |g: &mut Guest| {
        g.user(|u| {
            u.spin(SHORT_SPIN);
        });
    };
    for idx in all_counters(caps) {
        let bit = 1u64 << idx;
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, bit);
        own_enable(&mut g, idx, true, false, &mut fixed_ctrl);
        count(&mut g, idx, "enabled");
        spin(&mut g);
        count(&mut g, idx, "after ring-3 work");
        own_enable(&mut g, idx, false, false, &mut fixed_ctrl);
        count(&mut g, idx, "own enable cleared");
        spin(&mut g);
        count(&mut g, idx, "ring-3 work while stopped");
        own_enable(&mut g, idx, true, false, &mut fixed_ctrl);
        spin(&mut g);
        count(&mut g, idx, "own enable set again, after work");
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
        count(&mut g, idx, "GLOBAL_CTRL bit cleared");
        spin(&mut g);
        count(&mut g, idx, "ring-3 work while globally stopped");
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, bit);
        spin(&mut g);
        count(&mut g, idx, "GLOBAL_CTRL bit set again, after work");
        own_enable(&mut g, idx, false, false, &mut fixed_ctrl);
    }
    g.finish()
}
// ANCHOR_END: counting

fn overflow_every_counter(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("overflow_every_counter");
    let mut fixed_ctrl = 0;
    let mut nmis = 0;
    for idx in all_counters(caps) {
        for int in [false, true] {
            let name = counter_name(idx);
            let arm = Armed {
                idx,
                period: PERIOD,
            };
            g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
            g.wrmsr(arm.counter_msr(), arm.preload(width(caps, idx)));
            own_enable(&mut g, idx, true, int, &mut fixed_ctrl);
            g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << idx);
            if int {
                nmis += 1;
                g.user(|u| {
                    u.wait_for_nmis(nmis);
                });
            } else {
                g.user(|u| {
                    u.spin(LONG_SPIN);
                });
            }
            g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
            let int_name = if idx >= FIXED_IDX_BASE { "PMI" } else { "INT" };
            let tag = format!("{name} with {int_name}={}", u8::from(int));
            g.read_msr(&format!("{tag}: status"), IA32_PERF_GLOBAL_STATUS);
            log_nmis(&mut g, &format!("{tag}: NMIs so far"));
            g.wrmsr(IA32_PERF_GLOBAL_OVF_CTRL, 1 << idx);
            g.read_msr(
                &format!("{tag}: status after OVF_CTRL"),
                IA32_PERF_GLOBAL_STATUS,
            );
            own_enable(&mut g, idx, false, int, &mut fixed_ctrl);
        }
    }
    g.finish()
}

fn write_running_counter(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("write_running_counter");
    let mut fixed_ctrl = 0;
    for idx in [0u32, FIXED_IDX_BASE] {
        let name = counter_name(idx);
        let msr = Armed { idx, period: 0 }.counter_msr();
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1 << idx);
        own_enable(&mut g, idx, true, false, &mut fixed_ctrl);
        g.user(|u| {
            u.spin(SHORT_SPIN);
        });
        g.wrmsr(msr, 1000);
        g.read_msr(
            &format!("from 1000 {name}: written 1000 while running, read at once"),
            msr,
        );
        g.user(|u| {
            u.spin(SHORT_SPIN);
        });
        g.read_msr(&format!("from 1000 {name}: after more work"), msr);
        own_enable(&mut g, idx, false, false, &mut fixed_ctrl);
    }
    // Preloading a running counter near the wrap must move its overflow there.
    let arm = Armed {
        idx: 0,
        period: PERIOD,
    };
    own_enable(&mut g, 0, true, true, &mut fixed_ctrl);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1);
    g.user(|u| {
        u.spin(SHORT_SPIN);
    });
    g.wrmsr(arm.counter_msr(), arm.preload(caps.gp_width));
    g.user(|u| {
        u.wait_for_nmis(1);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.read_msr(
        "gp0 preloaded while running: status",
        IA32_PERF_GLOBAL_STATUS,
    );
    log_nmis(&mut g, "gp0 preloaded while running: NMIs");
    g.finish()
}

/// NMIs the sampling scenarios wait for.
const SAMPLES: u64 = 16;

// ANCHOR: sampling
fn sampling(caps: &PmuCaps) -> Program {
    sample_one(
        "sampling",
        Armed {
            idx: 0,
            period: SAMPLING_PERIOD,
        },
        caps.gp_width,
    )
}

/// Sampling fixed counter 0 the same way.
fn sampling_fixed(caps: &PmuCaps) -> Program {
    let fixed = Armed {
        idx: FIXED_IDX_BASE,
        period: SAMPLING_PERIOD,
    };
    sample_one("sampling_fixed", fixed, caps.fixed_width)
}

// ANCHOR_END: sampling

// ANCHOR: sample_one
/// One counter sampling under the Linux-shaped handler for [`SAMPLES`] NMIs.
fn sample_one(name: &str, arm: Armed, width: u8) -> Program {
    let mut g = Guest::new(name);
    linux::start_sampling(&mut g, arm, width);
    g.user(|u| {
        u.wait_for_nmis(SAMPLES);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.wrmsr(arm.sampling_control().0, 0);
    log_nmis(&mut g, &format!("{} NMIs", counter_name(arm.idx)));
    g.finish()
}
// ANCHOR_END: sample_one

/// Sampling transcripts state what must hold of every NMI: how many arrive past the target
/// depends on timing (one more may be on its way when the guest stops the counters).
fn render_sampling(log: &[Record]) -> Transcript {
    let statuses: Vec<u64> = values_of(log, "pmi.status");
    let mut t = Transcript::default();
    for (name, nmis) in log.iter().filter_map(|r| match r {
        Record::Value { name, value } if name.ends_with("NMIs") => Some((name, *value)),
        _ => None,
    }) {
        t.push(format!("{name}: at least {SAMPLES}: {}", nmis >= SAMPLES));
        t.push(format!(
            "every NMI logged its status: {}",
            statuses.len() as u64 == nmis
        ));
    }
    let distinct: std::collections::BTreeSet<u64> = statuses.iter().copied().collect();
    t.push(format!("statuses seen: {distinct:#x?}"));
    t
}

fn values_of(log: &[Record], tag: &str) -> Vec<u64> {
    log.iter()
        .filter_map(|r| match r {
            Record::Value { name, value } if name == tag => Some(*value),
            _ => None,
        })
        .collect()
}

fn multiplexing(caps: &PmuCaps) -> Program {
    let mut g = Guest::new("multiplexing");
    let rot = Rotation {
        events: linux::arch_event_selects(true),
        every: 4,
        counters: u32::from(caps.nr_gp),
    };
    linux::start_multiplexing(&mut g, &rot, SAMPLING_PERIOD * 5, caps.gp_width);
    g.user(|u| {
        u.wait_for_nmis(SAMPLES * 2);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    log_nmis(&mut g, "NMIs handled");
    g.finish()
}

/// Multiplexed counters overflow in an order that depends on timing, so the transcript
/// states what must hold of every NMI rather than listing them.
fn render_multiplexing(log: &[Record]) -> Transcript {
    let statuses = values_of(log, "pmi.status");
    let nmis = log
        .iter()
        .find_map(|r| match r {
            Record::Value { name, value } if name == "NMIs handled" => Some(*value),
            _ => None,
        })
        .unwrap_or(0);
    let mut t = Transcript::default();
    t.push(format!(
        "NMIs handled: at least {}: {}",
        SAMPLES * 2,
        nmis >= SAMPLES * 2
    ));
    t.push(format!(
        "every NMI logged its status: {}",
        statuses.len() as u64 == nmis
    ));
    t.push(format!(
        "every status names only GP counters 0-3: {}",
        statuses.iter().all(|s| s & !0xF == 0)
    ));
    t.push(format!(
        "overflows seen: {}",
        statuses.iter().any(|s| *s != 0)
    ));
    t
}
