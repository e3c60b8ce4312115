//! Host perf events, with the shape of the in-kernel API that KVM's vPMU calls.
//!
//! KVM backs each guest counter with a host `struct perf_event` and drives it through a
//! handful of kernel functions: `perf_event_create_kernel_counter`, `perf_event_release_kernel`,
//! `perf_event_read_value`, and, since Linux 5.5, `perf_event_pause` and `perf_event_period`.
//! [`HostPerf`] offers the same functions under the same names, so the vPMU code above it reads
//! like KVM's, and records every call in a [`Ledger`], which is how this workbook shows what
//! commit a6da0d77 changed: fewer creates and releases, more pauses and period changes.
//!
//! Three [`Backend`]s stand behind it:
//!
//! - [`Backend::Hardware`] opens the events KVM would open. Only useful on a host with a PMU.
//! - [`Backend::Software`] opens task-clock on the vCPU thread for every guest event, so the
//!   mechanics (create, pause, period, overflow signal) are real even where the host has no
//!   PMU; [`Backend::limitations`] lists the meanings it cannot keep.
//! - [`Backend::Scripted`] makes no system call: counts advance when a test advances a
//!   [`ScriptedClock`]. Tests and doc examples use it.
//!
//! In the kernel an overflow calls KVM back at once (`kvm_perf_overflow`). Here a real event
//! sends [`crate::signal::overflow_signal`] to the thread that created it, and the vPMU asks
//! [`HostPerf::take_overflow`] before the guest runs again.
//!
//! ```
//! use vmm::perf::{EventAttr, EventKind, HostPerf, PerfOp, PERF_COUNT_HW_CPU_CYCLES};
//! let (mut perf, clock) = HostPerf::scripted();
//! let attr = EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), 1 << 20);
//! let mut event = perf.perf_event_create_kernel_counter(attr, 32).unwrap();
//! clock.advance(500);
//! assert_eq!(perf.perf_event_pause(&mut event, true), 500); // disable, read, reset
//! perf.perf_event_period(&mut event, 1000).unwrap();
//! perf.perf_event_enable(&mut event);
//! perf.perf_event_release_kernel(event);
//! assert_eq!(perf.ledger().trace(), ["create fixed0", "pause fixed0", "period fixed0", "enable fixed0", "release fixed0"]);
//! assert_eq!(perf.ledger().count(PerfOp::Create), 1);
//! ```

mod attr;
mod backend;
mod error;
mod ledger;
mod real;
mod scripted;

use std::os::fd::{AsRawFd, RawFd};
use std::time::Instant;

pub use attr::*;
pub use backend::{select, Backend, BackendChoice, Selected};
pub use error::{errno_name, PerfError};
pub use ledger::{counter_name, Ledger, LedgerEntry, PerfOp, DEFAULT_ENTRY_LIMIT};
pub use scripted::ScriptedClock;

use real::RealEvent;
use scripted::ScriptedEvent;

/// The host event behind one guest counter (the kernel's `struct perf_event *`).
///
/// Made by [`HostPerf::perf_event_create_kernel_counter`], ended by
/// [`HostPerf::perf_event_release_kernel`]. Dropping it without releasing it still closes it
/// (no descriptor leaks), but the release is then missing from the ledger.
#[derive(Debug)]
pub struct PerfEvent {
    attr: EventAttr,
    pmc_idx: u32,
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Real(real::RealEvent),
    Scripted(ScriptedEvent),
}

impl PerfEvent {
    /// The attributes it was created with, with `sample_period` updated by
    /// [`HostPerf::perf_event_period`].
    pub fn attr(&self) -> &EventAttr {
        &self.attr
    }

    /// The guest counter it stands for (KVM's index).
    pub fn pmc_idx(&self) -> u32 {
        self.pmc_idx
    }

    /// The perf file descriptor, for real backends.
    pub fn fd(&self) -> Option<RawFd> {
        match &self.inner {
            Inner::Real(c) => Some(c.counter.as_raw_fd()),
            Inner::Scripted(_) => None,
        }
    }
}

/// The host perf layer of one vPMU, used from the vCPU thread.
///
/// Every call is timed and written in the [`Ledger`], failed ones too. Where the kernel
/// function cannot fail (`perf_event_read_value`, `perf_event_pause`, `perf_event_enable`,
/// `perf_event_disable`) ours does not return an error either: a failure (which would mean a
/// closed or broken descriptor) is recorded in the ledger and kept in
/// [`HostPerf::last_error`], and a read then yields 0.
#[derive(Debug)]
pub struct HostPerf {
    backend: Backend,
    ledger: Ledger,
    last_error: Option<PerfError>,
}

impl HostPerf {
    /// A perf layer on `backend`. For a real backend this installs the overflow signal
    /// handler ([`crate::signal::install`]), once per process.
    pub fn new(backend: Backend) -> Result<HostPerf, PerfError> {
        if backend.is_real() {
            crate::signal::install().map_err(|e| PerfError::SignalSetup {
                what: "sigaction for the overflow signal",
                errno: e.raw_os_error().unwrap_or(libc::EINVAL),
            })?;
        }
        Ok(HostPerf {
            backend,
            ledger: Ledger::default(),
            last_error: None,
        })
    }

    /// A perf layer on a fresh scripted backend, and the handle of its clock.
    pub fn scripted() -> (HostPerf, ScriptedClock) {
        let clock = ScriptedClock::new();
        let perf = HostPerf {
            backend: Backend::Scripted(clock.clone()),
            ledger: Ledger::default(),
            last_error: None,
        };
        (perf, clock)
    }

    /// The backend in use.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Every call made so far.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The ledger, to clear it between phases of a test or benchmark.
    pub fn ledger_mut(&mut self) -> &mut Ledger {
        &mut self.ledger
    }

    /// The most recent failure of any call, for diagnostics.
    pub fn last_error(&self) -> Option<&PerfError> {
        self.last_error.as_ref()
    }

    fn note<T>(
        &mut self,
        op: PerfOp,
        pmc_idx: u32,
        start: Instant,
        r: Result<T, PerfError>,
    ) -> Result<T, PerfError> {
        self.ledger.record(op, pmc_idx, start.elapsed(), r.is_err());
        if let Err(e) = &r {
            self.last_error = Some(e.clone());
        }
        r
    }

    /// Opens a host event for guest counter `pmc_idx` and starts it counting.
    ///
    /// Mirrors `perf_event_create_kernel_counter` (kernel/events/core.c), which KVM calls with
    /// an overflow callback and the `kvm_pmc` as its context. Ours differs: the "callback" is
    /// [`EventAttr::intr`] plus [`HostPerf::take_overflow`]; a real event is opened disabled,
    /// routed to send the overflow signal to the calling thread, has any stale overflow mark
    /// of its descriptor number cleared, and only then enabled, so that no signal is lost or
    /// misattributed. The software backend replaces the event by task-clock.
    pub fn perf_event_create_kernel_counter(
        &mut self,
        attr: EventAttr,
        pmc_idx: u32,
    ) -> Result<PerfEvent, PerfError> {
        let start = Instant::now();
        let r = match &self.backend {
            Backend::Scripted(clock) => clock
                .open(attr.sample_period)
                .map(|ev| {
                    ev.set_enabled(true);
                    Inner::Scripted(ev)
                })
                // The scripted backend plays a host with a PMU: classify as a hardware event.
                .map_err(|errno| PerfError::classify(PerfOp::Create, true, errno, None)),
            backend => {
                let flavour = backend.flavour().expect("a real backend");
                real::open(flavour, &attr).and_then(|mut event| {
                    event
                        .arm()
                        .map_err(|e| real::op_error(PerfOp::Create, &e))?;
                    Ok(Inner::Real(event))
                })
            }
        };
        let inner = self.note(PerfOp::Create, pmc_idx, start, r)?;
        Ok(PerfEvent {
            attr,
            pmc_idx,
            inner,
        })
    }

    /// Closes a host event.
    ///
    /// Mirrors `perf_event_release_kernel`. Ours closes the descriptor (or forgets the scripted
    /// event); an overflow signal still in flight for it is cleared when the descriptor number
    /// is next reused.
    pub fn perf_event_release_kernel(&mut self, event: PerfEvent) {
        let start = Instant::now();
        let pmc_idx = event.pmc_idx;
        drop(event);
        self.ledger
            .record(PerfOp::Release, pmc_idx, start.elapsed(), false);
    }

    /// Reads the event's count (it keeps counting).
    ///
    /// Mirrors `perf_event_read_value`, without its enabled/running times: KVM ignores them
    /// (it does not scale), and so do we.
    pub fn perf_event_read_value(&mut self, event: &mut PerfEvent) -> u64 {
        let start = Instant::now();
        let r = match &mut event.inner {
            Inner::Real(c) => c
                .counter
                .read()
                .map_err(|e| real::op_error(PerfOp::Read, &e)),
            Inner::Scripted(s) => Ok(s.read()),
        };
        self.note(PerfOp::Read, event.pmc_idx, start, r)
            .unwrap_or(0)
    }

    // ANCHOR: perf_event_pause
    /// Stops the event, reads its count and, if `reset`, sets the count back to 0; returns the
    /// count read.
    ///
    /// Mirrors `perf_event_pause` (added to kernel/events/core.c for this very commit), which
    /// does the three steps under the event's context lock. Ours makes three system calls
    /// (disable, read, reset): the event is disabled first, so nothing is counted between the
    /// read and the reset.
    pub fn perf_event_pause(&mut self, event: &mut PerfEvent, reset: bool) -> u64 {
        let start = Instant::now();
        let r = match &mut event.inner {
            Inner::Real(RealEvent { counter: c, .. }) => (|| {
                c.disable()?;
                let count = c.read()?;
                if reset {
                    c.reset()?;
                }
                Ok(count)
            })()
            .map_err(|e: std::io::Error| real::op_error(PerfOp::Pause, &e)),
            Inner::Scripted(s) => {
                s.set_enabled(false);
                let count = s.read();
                if reset {
                    s.reset();
                }
                Ok(count)
            }
        };
        self.note(PerfOp::Pause, event.pmc_idx, start, r)
            .unwrap_or(0)
    }
    // ANCHOR_END: perf_event_pause

    /// Gives a sampling event a new period; the next overflow comes `period` events later.
    ///
    /// Mirrors `perf_event_period` (kernel/events/core.c), and refuses what it refuses before
    /// asking the host: a period of 0, and any change to an event created without a period
    /// (a counting event). Ours uses `PERF_EVENT_IOC_PERIOD` for real events. A refusal is
    /// recorded in the ledger as a failed `period`.
    pub fn perf_event_period(
        &mut self,
        event: &mut PerfEvent,
        period: u64,
    ) -> Result<(), PerfError> {
        let start = Instant::now();
        let r = if !event.attr.is_sampling() {
            Err(PerfError::InvalidArgument {
                op: PerfOp::Period,
                detail: "the event was created without a sample period (a counting event)".into(),
            })
        } else if period == 0 {
            Err(PerfError::InvalidArgument {
                op: PerfOp::Period,
                detail: "a period of 0 is refused".into(),
            })
        } else {
            match &mut event.inner {
                Inner::Real(c) => c.set_period(
                    self.backend
                        .flavour()
                        .expect("a real event has a real backend"),
                    period,
                ),
                Inner::Scripted(s) => s
                    .set_period(period)
                    .map_err(|errno| PerfError::classify(PerfOp::Period, false, errno, None)),
            }
        };
        if r.is_ok() {
            event.attr.sample_period = period;
        }
        self.note(PerfOp::Period, event.pmc_idx, start, r)
    }

    /// Starts (or resumes) counting.
    ///
    /// Mirrors `perf_event_enable`; a failure is recorded, not returned, as the kernel's
    /// returns nothing.
    pub fn perf_event_enable(&mut self, event: &mut PerfEvent) {
        self.switch(event, true);
    }

    /// Stops counting; the count is kept.
    ///
    /// Mirrors `perf_event_disable`; a failure is recorded, not returned.
    pub fn perf_event_disable(&mut self, event: &mut PerfEvent) {
        self.switch(event, false);
    }

    /// Enables (`on`) or disables the event and records the call as `Enable`/`Disable`.
    fn switch(&mut self, event: &mut PerfEvent, on: bool) {
        let op = if on { PerfOp::Enable } else { PerfOp::Disable };
        let start = Instant::now();
        let r = match &mut event.inner {
            Inner::Real(c) => {
                if on { c.arm() } else { c.counter.disable() }.map_err(|e| real::op_error(op, &e))
            }
            Inner::Scripted(s) => {
                s.set_enabled(on);
                Ok(())
            }
        };
        let _ = self.note(op, event.pmc_idx, start, r);
    }

    /// Whether the event overflowed since the last call; takes the mark.
    ///
    /// No kernel counterpart: in the kernel the overflow calls KVM directly. Real events read
    /// the mark the signal handler left ([`crate::signal::take_overflow`]); scripted events
    /// their own flag. Not recorded in the ledger (it is not a perf call).
    pub fn take_overflow(&self, event: &mut PerfEvent) -> bool {
        match &mut event.inner {
            Inner::Real(c) => c.take_overflow(),
            Inner::Scripted(s) => s.take_overflow(),
        }
    }
}

#[cfg(test)]
mod tests;
