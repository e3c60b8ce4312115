//! The workloads the `vpmu compare` command and the benches run on both tiers.
//!
//! Each [`Workload`] builds one guest program from a [`WorkloadConfig`] and the guest's
//! [`PmuCaps`]; the program's bytes do not depend on the tier, so whatever differs between
//! two runs comes from the vPMU behind the MSRs. Every workload leaves its measurements where
//! the runtime's NMI latencies go (the latency area, [`vmm::layout::LAT`]), in TSC ticks, so
//! [`crate::Run::nmi_latency_ticks`] and [`crate::Run::nmi_latency_ns`] read them all:
//!
//! - the sampling workloads ([`Workload::GpMultiplex`], [`Workload::GpSampling`],
//!   [`Workload::FixedSampling`]) measure the guest NMI handler, entry to `iretq`, as the
//!   runtime does for every NMI;
//! - the exit workloads ([`Workload::CountingToggle`], [`Workload::EvtselToggle`],
//!   [`Workload::ColdStart`]) take no NMIs and measure, with `rdtsc` around the `WRMSR`s,
//!   the round trip of the exits they are about.
//!
//! The counters here count the vCPU thread's time on the software backend, including the
//! emulated ring-0 tail of the PMI handler after it re-enables them; a sampling period close
//! to the handler's own length re-fires before ring 3 runs again (an NMI storm that real
//! perf would throttle). Keep [`WorkloadConfig::period`] at 200 µs or more: the sampling
//! workloads give each of `n` counters sampling at once a period of `n × period`, so NMIs
//! arrive about once per `period` of guest time whatever `n` is.

use iced_x86::code_asm::{qword_ptr, r12, rax};
use vmm::caps::PmuCaps;
use vmm::layout;
use vmm::msr::{
    FIXED_IDX_BASE, IA32_FIXED_CTR0, IA32_FIXED_CTR_CTRL, IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL,
    IA32_PMC0,
};

use crate::linux::{self, evtsel, Armed, Rotation, EVTSEL_EN};
use crate::runtime;
use crate::{Guest, Program};

/// A loop counter for the exit workloads, clear of the PMI handler's variables (which use
/// the first 0x200 bytes of [`layout::VARS`]).
const LOOP: u64 = layout::VARS + 0x800;

/// `IA32_FIXED_CTR_CTRL` field for fixed counter 0 counting in both rings (OS | USR).
const FIXED0_COUNT: u64 = 0x3;

/// One workload of the comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// GP counters sampling with the Linux-shaped PMI handler, rotating more events than
    /// counters through them (perf's multiplexing): the commit's "multiplexing perf
    /// sampling mode".
    GpMultiplex,
    /// One GP counter sampling, no rotation.
    GpSampling,
    /// Fixed counter 0 sampling, no rotation.
    FixedSampling,
    /// Counting counters switched off and on through `GLOBAL_CTRL`, as a guest kernel does
    /// around context switches, with ring-3 work between; measures the two exits.
    CountingToggle,
    /// One counting GP counter whose event select is rewritten with EN cleared, then set
    /// again with the same event; measures the exit that sets it (create or resume).
    EvtselToggle,
    /// The first host event the vPMU creates: the guest's first `GLOBAL_CTRL` enable is
    /// measured, then a few toggles. The command runs it on a quiet host and with another
    /// event held open (the commit's "host disables the watchdog" case).
    ColdStart,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 6] = [
        Workload::GpMultiplex,
        Workload::GpSampling,
        Workload::FixedSampling,
        Workload::CountingToggle,
        Workload::EvtselToggle,
        Workload::ColdStart,
    ];

    /// The workload's name on the command line and in tables (`gp-multiplex`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Workload::GpMultiplex => "gp-multiplex",
            Workload::GpSampling => "gp-sampling",
            Workload::FixedSampling => "fixed-sampling",
            Workload::CountingToggle => "counting-toggle",
            Workload::EvtselToggle => "evtsel-toggle",
            Workload::ColdStart => "cold-start",
        }
    }

    /// The workload called `name`, if any.
    pub fn from_name(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// What it does, in one line.
    pub fn about(self) -> &'static str {
        match self {
            Workload::GpMultiplex => {
                "GP counters sampling, perf-style rotation of 7 events, Linux-shaped PMI handler"
            }
            Workload::GpSampling => "one GP counter sampling, Linux-shaped PMI handler",
            Workload::FixedSampling => "fixed counter 0 sampling, Linux-shaped PMI handler",
            Workload::CountingToggle => {
                "counting counters, GLOBAL_CTRL off and on around ring-3 work (two exits)"
            }
            Workload::EvtselToggle => {
                "one counting GP counter, event select EN cleared then set (the set is measured)"
            }
            Workload::ColdStart => "the first host event created, on a quiet host and not",
        }
    }

    /// Whether its measurements are NMI handler latencies (else exit round trips).
    pub fn samples_nmis(self) -> bool {
        matches!(
            self,
            Workload::GpMultiplex | Workload::GpSampling | Workload::FixedSampling
        )
    }

    /// What one measurement is, for table headings: `NMI`, `toggle`, `exit`, `first enable`.
    pub fn unit(self) -> &'static str {
        match self {
            Workload::GpMultiplex | Workload::GpSampling | Workload::FixedSampling => "NMI",
            Workload::CountingToggle => "toggle",
            Workload::EvtselToggle => "exit",
            Workload::ColdStart => "first enable",
        }
    }

    /// Builds the guest program for `caps` (the same bytes on every tier).
    ///
    /// # Panics
    /// If `cfg` asks for more GP counters than `caps` has, or for none.
    pub fn program(self, cfg: &WorkloadConfig, caps: &PmuCaps) -> Program {
        assert!(
            cfg.gp_counters >= 1 && cfg.gp_counters <= u32::from(caps.nr_gp),
            "workload {}: {} GP counters asked, the PMU has {}",
            self.name(),
            cfg.gp_counters,
            caps.nr_gp
        );
        match self {
            Workload::GpMultiplex => gp_multiplex(cfg, caps),
            Workload::GpSampling => sampling(self, cfg, caps, 0),
            Workload::FixedSampling => sampling(self, cfg, caps, FIXED_IDX_BASE),
            Workload::CountingToggle => toggles(self, cfg, cfg.samples, false),
            Workload::EvtselToggle => evtsel_toggle(cfg, caps),
            // One cold enable, then a few warm toggles for comparison.
            Workload::ColdStart => toggles(self, cfg, 3, true),
        }
    }
}

/// The knobs of a workload. [`WorkloadConfig::default`] is what `vpmu compare` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadConfig {
    /// Measurements to take: NMIs for the sampling workloads (the guest waits for this many;
    /// one more may arrive), toggles or exits for the others (not used by `cold-start`).
    pub samples: u64,
    /// Guest time between NMIs, in counter events (task-clock nanoseconds on the software
    /// backend). Each of `n` counters sampling at once gets `n × period`.
    pub period: u64,
    /// GP counters in use: sampling in `gp-multiplex`, counting in `counting-toggle`
    /// and `cold-start` (fixed counter 0 counts there too).
    pub gp_counters: u32,
    /// `gp-multiplex` rotates the events every this many NMIs (perf rotates on a timer).
    pub rotate_every: u64,
    /// Ring-3 loop iterations between two toggles (about 0.5 ns each here).
    pub spin: u64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            samples: 2000,
            period: 200_000,
            gp_counters: 4,
            rotate_every: 4,
            spin: 20_000,
        }
    }
}

impl WorkloadConfig {
    /// The sample period each of `counters` counters sampling at once gets.
    pub fn period_per_counter(&self, counters: u32) -> u64 {
        self.period.max(1) * u64::from(counters.max(1))
    }
}

/// `r12 = rdtsc`, the start of a measured exit.
fn start_clock(g: &mut Guest) {
    g.rdtsc().asm(|a| a.mov(r12, rax));
}

/// `rax = rdtsc - r12`, stored as a sample.
fn stop_clock(g: &mut Guest) {
    g.rdtsc().asm(|a| a.sub(rax, r12));
    g.asm(runtime::append_latency);
}

/// Emits `body` `count` times as a loop (the code stays small however many samples).
fn repeat(g: &mut Guest, count: u64, body: impl FnOnce(&mut Guest)) {
    let mut top = g.label();
    let mut end = g.label();
    g.mov(LOOP, count);
    g.asm(|a| {
        a.cmp(qword_ptr(LOOP), 0)?;
        a.je(end)
    });
    g.place(&mut top);
    body(g);
    g.asm(|a| {
        a.dec(qword_ptr(LOOP))?;
        a.jnz(top)
    });
    g.place(&mut end);
}

fn gp_multiplex(cfg: &WorkloadConfig, caps: &PmuCaps) -> Program {
    let mut g = Guest::new(Workload::GpMultiplex.name());
    let rot = Rotation {
        events: linux::arch_event_selects(true),
        every: cfg.rotate_every.max(1),
        counters: cfg.gp_counters,
    };
    let period = cfg.period_per_counter(cfg.gp_counters);
    linux::start_multiplexing(&mut g, &rot, period, caps.gp_width);
    let samples = cfg.samples;
    g.user(|u| {
        u.wait_for_nmis(samples);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.finish()
}

fn sampling(w: Workload, cfg: &WorkloadConfig, caps: &PmuCaps, idx: u32) -> Program {
    let mut g = Guest::new(w.name());
    let arm = Armed {
        idx,
        period: cfg.period_per_counter(1),
    };
    let width = if idx >= FIXED_IDX_BASE {
        caps.fixed_width
    } else {
        caps.gp_width
    };
    linux::start_sampling(&mut g, arm, width);
    let samples = cfg.samples;
    g.user(|u| {
        u.wait_for_nmis(samples);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.finish()
}

/// Counting counters (GP `0..gp_counters` and fixed 0) toggled through `GLOBAL_CTRL`
/// `count` times, each off-and-on pair measured; with `first_enable`, the very first enable
/// (the vPMU's first host event) is measured too, as sample 0.
fn toggles(w: Workload, cfg: &WorkloadConfig, count: u64, first_enable: bool) -> Program {
    let mut g = Guest::new(w.name());
    let mask = ((1u64 << cfg.gp_counters) - 1) | 1 << FIXED_IDX_BASE;
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    for c in 0..cfg.gp_counters {
        // Counters at 0 (get a full-wrap period: 2^48 ns, never reached here).
        g.wrmsr(IA32_PMC0 + c, 0);
        g.wrmsr(
            IA32_PERFEVTSEL0 + c,
            linux::arch_event_selects(false)[c as usize],
        );
    }
    g.wrmsr(IA32_FIXED_CTR0, 0);
    g.wrmsr(IA32_FIXED_CTR_CTRL, FIXED0_COUNT);
    if first_enable {
        start_clock(&mut g);
    }
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, mask);
    if first_enable {
        stop_clock(&mut g);
    }
    let spin = cfg.spin;
    repeat(&mut g, count, |g| {
        g.user(|u| {
            u.spin(spin);
        });
        start_clock(g);
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
        g.wrmsr(IA32_PERF_GLOBAL_CTRL, mask);
        stop_clock(g);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.finish()
}

fn evtsel_toggle(cfg: &WorkloadConfig, _caps: &PmuCaps) -> Program {
    let mut g = Guest::new(Workload::EvtselToggle.name());
    let sel = evtsel(0xC0, 0, false);
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1);
    g.wrmsr(IA32_PMC0, 0);
    g.wrmsr(IA32_PERFEVTSEL0, sel);
    let spin = cfg.spin;
    repeat(&mut g, cfg.samples, |g| {
        g.wrmsr(IA32_PERFEVTSEL0, sel & !EVTSEL_EN);
        g.user(|u| {
            u.spin(spin);
        });
        start_clock(g);
        g.wrmsr(IA32_PERFEVTSEL0, sel);
        stop_clock(g);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 0);
    g.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::from_name(w.name()), Some(w));
        }
        assert_eq!(Workload::from_name("nope"), None);
    }

    #[test]
    fn every_workload_assembles() {
        let caps = PmuCaps::default();
        for w in Workload::ALL {
            let p = w.program(&WorkloadConfig::default(), &caps);
            assert!(p.listing().contains("wrmsr"), "{}", w.name());
        }
    }
}
