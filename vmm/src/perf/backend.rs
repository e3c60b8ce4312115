//! Which host events stand in for the guest's counters, and how one is chosen.

use super::attr::{EventAttr, EventKind, PERF_COUNT_HW_CPU_CYCLES};
use super::error::PerfError;
use super::real::{self, Flavour};
use super::scripted::ScriptedClock;

/// Where a vPMU's counts come from.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Hardware and raw events, opened exactly as KVM opens them (`exclude_host`, `pinned`).
    /// Needs a host with a PMU; the machines this workbook targets have none.
    Hardware,
    /// Every guest event is replaced by task-clock on the calling (vCPU) thread; see
    /// [`Backend::limitations`] for what that cannot keep.
    Software,
    /// Deterministic events without system calls; counts advance only through the clock.
    Scripted(ScriptedClock),
}

/// What the guest-visible counters lose when the software backend stands in for the PMU.
const SOFTWARE_LIMITATIONS: &[&str] = &[
    "counts are nanoseconds of vCPU-thread CPU time (task-clock), not instructions, cycles or the selected event",
    "every event select counts the same thing: two counters with different events advance alike",
    "USR/OS filtering is not honoured: the guest's user and kernel time, and the VMM's own time on the vCPU thread, all count",
    "sample periods below 10 us (10000 counts) are clamped by the kernel, so an overflow can come later than the guest programmed",
    "overflows are noticed when the host timer samples the thread, so a counter can run a little past its wrap before the PMI",
    "exclude_host and pinned have no meaning for a software event and are dropped",
];

impl Backend {
    /// Whether this backend makes system calls (and so needs the overflow signal handler).
    pub fn is_real(&self) -> bool {
        !matches!(self, Backend::Scripted(_))
    }

    /// A short name: `hardware`, `software` or `scripted`.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Hardware => "hardware",
            Backend::Software => "software",
            Backend::Scripted(_) => "scripted",
        }
    }

    /// The guest-visible meanings this backend cannot keep (empty for hardware and scripted).
    ///
    /// ```
    /// use vmm::perf::Backend;
    /// assert!(Backend::Software.limitations()[0].contains("nanoseconds"));
    /// assert!(Backend::Hardware.limitations().is_empty());
    /// ```
    pub fn limitations(&self) -> &'static [&'static str] {
        match self {
            Backend::Software => SOFTWARE_LIMITATIONS,
            _ => &[],
        }
    }

    /// The scripted backend's clock, if this is the scripted backend.
    pub fn clock(&self) -> Option<&ScriptedClock> {
        match self {
            Backend::Scripted(clock) => Some(clock),
            _ => None,
        }
    }

    pub(crate) fn flavour(&self) -> Option<Flavour> {
        match self {
            Backend::Hardware => Some(Flavour::Hardware),
            Backend::Software => Some(Flavour::Software),
            Backend::Scripted(_) => None,
        }
    }
}

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// Hardware if the host has a PMU, else software.
    #[default]
    Auto,
    /// Hardware events, or an error that says why not.
    Hardware,
    /// task-clock stand-ins.
    Software,
    /// The deterministic test backend with a fresh clock.
    Scripted,
}

/// A chosen backend and, in one line, why it was chosen.
#[derive(Debug, Clone)]
pub struct Selected {
    /// The backend to give [`super::HostPerf::new`].
    pub backend: Backend,
    /// Why: for transcripts and the book (e.g. that the host has no hardware PMU).
    pub reason: String,
}

/// Chooses a backend. `Auto` opens (and closes at once) a hardware cycles event to see
/// whether the host has a PMU, and falls back to software with the reason.
///
/// ```
/// use vmm::perf::{select, BackendChoice};
/// let s = select(BackendChoice::Scripted).unwrap();
/// assert_eq!(s.backend.name(), "scripted");
/// ```
pub fn select(choice: BackendChoice) -> Result<Selected, PerfError> {
    match choice {
        BackendChoice::Hardware => {
            probe_hardware()?;
            Ok(Selected {
                backend: Backend::Hardware,
                reason: "hardware backend requested, and the host PMU opened a cycles event"
                    .into(),
            })
        }
        BackendChoice::Software => Ok(Selected {
            backend: Backend::Software,
            reason: "software backend requested: task-clock on the vCPU thread stands in for every event".into(),
        }),
        BackendChoice::Scripted => Ok(Selected {
            backend: Backend::Scripted(ScriptedClock::new()),
            reason: "scripted backend requested: counts advance only when a test advances the clock".into(),
        }),
        BackendChoice::Auto => match probe_hardware() {
            Ok(()) => Ok(Selected {
                backend: Backend::Hardware,
                reason: "auto: the host PMU opened a hardware cycles event, so guest events map to host hardware events".into(),
            }),
            Err(e @ PerfError::NoHardwarePmu { .. }) => Ok(Selected {
                backend: Backend::Software,
                reason: format!(
                    "auto: this host has no hardware PMU (a hardware cycles event failed with {}), \
                     so task-clock on the vCPU thread stands in for every guest event",
                    super::error::errno_name(e.errno().unwrap_or(0))
                ),
            }),
            Err(e) => Ok(Selected {
                backend: Backend::Software,
                reason: format!(
                    "auto: a hardware cycles event could not be opened ({e}), so task-clock on the vCPU thread stands in for every guest event"
                ),
            }),
        },
    }
}

fn probe_hardware() -> Result<(), PerfError> {
    let attr = EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), 0);
    real::open(Flavour::Hardware, &attr).map(drop)
}
