//! Real host perf events: `perf_event_open` through perf-event2, plus the two things that
//! crate does not do (the `PERIOD` ioctl and routing the overflow signal to this thread).
//!
//! Every `unsafe` block of the perf layer is in this file.

use std::os::fd::{AsRawFd, RawFd};

use perf_event::events::{Event, Software};
use perf_event::{Builder, Counter};
use perf_event_open_sys::bindings::{self, perf_event_attr};

use super::attr::{EventAttr, EventKind};
use super::error::PerfError;
use super::ledger::PerfOp;

/// Which real events to open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    /// The guest's event as KVM would open it.
    Hardware,
    /// task-clock on the calling thread, whatever the guest asked for.
    Software,
}

/// A generic hardware event by its `PERF_COUNT_HW_*` id (perf-event2's `Hardware` enum only
/// takes its own named values).
struct GenericHardware(u64);

impl Event for GenericHardware {
    fn update_attrs(self, attr: &mut perf_event_attr) {
        attr.type_ = bindings::PERF_TYPE_HARDWARE;
        attr.config = self.0;
    }
}

/// `fcntl(F_SETSIG)`: which signal an O_ASYNC descriptor sends.
const F_SETSIG: libc::c_int = 10;
/// `fcntl(F_SETOWN_EX)`: which thread or process receives it.
const F_SETOWN_EX: libc::c_int = 15;
/// `f_owner_ex.type`: a single thread (`F_OWNER_TID`).
const F_OWNER_TID: libc::c_int = 0;

/// The argument of `F_SETOWN_EX` (`struct f_owner_ex` in `<fcntl.h>`), which the libc crate
/// does not define for us.
#[repr(C)]
struct FOwnerEx {
    type_: libc::c_int,
    pid: libc::pid_t,
}

/// The smallest sample period the software backend opens: the kernel runs a software
/// sampling event on an hrtimer and clamps its period to 10 us (`perf_swevent_init_hrtimer`).
pub(crate) const SOFTWARE_MIN_PERIOD: u64 = 10_000;

impl Flavour {
    /// The period this flavour actually opens for a requested `period` (0 stays 0).
    pub(crate) fn effective_period(self, period: u64) -> u64 {
        match self {
            Flavour::Software if period != 0 => period.max(SOFTWARE_MIN_PERIOD),
            _ => period,
        }
    }
}

// ANCHOR: real_event
/// A real host event, armed for one overflow signal at a time.
///
/// A sampling event is armed with `PERF_EVENT_IOC_REFRESH(1)`: perf lets it overflow once,
/// sends the signal, and disables it (its event limit reaches 0). So an event can never
/// signal faster than the vPMU re-arms it, which KVM does once per guest overflow; a guest
/// that programs a tiny period gets a tiny period, not a queue of signals that outgrows
/// `RLIMIT_SIGPENDING`. The price is that the host event stops at the overflow instead of
/// counting on until the vPMU reprograms it, a few microseconds later.
///
/// `REFRESH` adds to the limit rather than setting it, so the event must know whether its
/// last arming was used: re-arming an unused one with `ENABLE` keeps the limit at 1.
/// Every overflow mark passes through [`RealEvent::take_overflow`] or [`RealEvent::arm`],
/// which is how it knows: the event is disabled whenever it is re-armed, so no mark can
/// arrive in between.
#[derive(Debug)]
pub(crate) struct RealEvent {
    pub(crate) counter: Counter,
    /// The period the event was opened or last set with (after the backend's clamp).
    period: u64,
    /// The last arming's overflow happened (perf has disabled the event).
    spent: bool,
    /// A mark found when the event was re-armed: the previous arming's overflow, not yet
    /// reported.
    carried: bool,
    /// [`crate::signal::lost_generation`] when the event last looked at it.
    lost_seen: u64,
}
// ANCHOR_END: real_event

impl RealEvent {
    fn fd(&self) -> RawFd {
        self.counter.as_raw_fd()
    }

    fn sampling(&self) -> bool {
        self.period != 0
    }

    /// Starts counting, with one overflow signal allowed (sampling events).
    pub(crate) fn arm(&mut self) -> std::io::Result<()> {
        if !self.sampling() {
            return self.counter.enable();
        }
        if crate::signal::take_overflow(self.fd()) {
            self.carried = true;
            self.spent = true;
        }
        let generation = crate::signal::lost_generation();
        // After a SIGIO we cannot know whether the arming was used: refresh, which at worst
        // allows two signals per arming from then on, never an unlimited number.
        let unknown = std::mem::replace(&mut self.lost_seen, generation) != generation;
        if std::mem::replace(&mut self.spent, false) || unknown {
            // SAFETY: REFRESH takes an int by value; the descriptor is ours.
            if unsafe { perf_event_open_sys::ioctls::REFRESH(self.fd(), 1) } == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        } else {
            self.counter.enable()
        }
    }

    /// Whether the event overflowed since the last call.
    pub(crate) fn take_overflow(&mut self) -> bool {
        let fresh = crate::signal::take_overflow(self.fd());
        if fresh {
            self.spent = true;
        }
        let carried = std::mem::replace(&mut self.carried, false);
        fresh || carried || self.lost_overflow()
    }

    /// After a SIGIO (an overflow signal the kernel could not queue): whether this event's
    /// count has reached its period, which is when perf overflows it. Counts are reset at
    /// every re-arming but a period change on a running event, so this may report that one
    /// a little early; only ever after a SIGIO.
    fn lost_overflow(&mut self) -> bool {
        let generation = crate::signal::lost_generation();
        if std::mem::replace(&mut self.lost_seen, generation) == generation || !self.sampling() {
            return false;
        }
        let overflowed = self.counter.read().is_ok_and(|count| count >= self.period);
        if overflowed {
            self.spent = true;
        }
        overflowed
    }

    /// Records the period set with `PERF_EVENT_IOC_PERIOD`.
    pub(crate) fn set_period(&mut self, flavour: Flavour, period: u64) -> Result<(), PerfError> {
        let period = flavour.effective_period(period);
        set_period(&self.counter, period)?;
        self.period = period;
        Ok(())
    }
}

/// Opens (disabled) the event that stands for `attr` on this backend.
pub(crate) fn open(flavour: Flavour, attr: &EventAttr) -> Result<RealEvent, PerfError> {
    let mut builder = match (flavour, attr.kind) {
        (Flavour::Hardware, EventKind::Hardware(id)) => Builder::new(GenericHardware(id)),
        (Flavour::Hardware, EventKind::Raw(config)) => {
            Builder::new(perf_event::events::Raw::new(config))
        }
        (Flavour::Software, _) => Builder::new(Software::TASK_CLOCK),
    };
    // The calling thread (pid 0 names the caller), any CPU, not inherited by children.
    builder
        .observe_self()
        .any_cpu()
        .inherit(false)
        .enabled(false);
    // ANCHOR: backend_attrs
    match flavour {
        Flavour::Hardware => {
            // As KVM fills in `perf_event_attr`: the guest's USR/OS choice, never the host,
            // pinned, and idle time excluded.
            builder
                .exclude_user(attr.exclude_user)
                .exclude_kernel(attr.exclude_kernel)
                .exclude_hv(false)
                .exclude_idle(true)
                .exclude_host(attr.exclude_host)
                .pinned(attr.pinned);
        }
        Flavour::Software => {
            // task-clock must include kernel time: while the vCPU thread is inside KVM_RUN it
            // is in the kernel, and an event that excludes the kernel would never overflow
            // there. USR/OS, exclude_host and pinned have no meaning for it.
            builder.exclude_user(false).exclude_kernel(false);
        }
    }
    // ANCHOR_END: backend_attrs
    let period = flavour.effective_period(attr.sample_period);
    if period != 0 {
        builder.sample_period(period);
    }
    let hardware = flavour == Flavour::Hardware;
    let counter = builder
        .build()
        .map_err(|e| error_from_io(PerfOp::Create, hardware, &e))?;
    route_overflow_signal(counter.as_raw_fd())?;
    crate::signal::clear_overflow(counter.as_raw_fd());
    Ok(RealEvent {
        counter,
        period,
        // A new event's limit is 0 (unlimited) until the first REFRESH.
        spent: true,
        carried: false,
        lost_seen: crate::signal::lost_generation(),
    })
}

fn error_from_io(op: PerfOp, hardware: bool, e: &std::io::Error) -> PerfError {
    match e.raw_os_error() {
        Some(errno) => PerfError::from_errno(op, hardware, errno),
        // perf-event2 turns E2BIG into a custom error without an errno.
        None => PerfError::Os {
            op,
            errno: libc::E2BIG,
        },
    }
}

// ANCHOR: route_overflow_signal
/// Makes an overflow of `fd` send [`crate::signal::overflow_signal`] to the calling thread,
/// with `fd` in `si_fd`.
fn route_overflow_signal(fd: RawFd) -> Result<(), PerfError> {
    let owner = FOwnerEx {
        type_: F_OWNER_TID,
        pid: crate::signal::gettid(),
    };
    let steps: [(&'static str, libc::c_int); 3] = [
        // SAFETY: F_SETFL with an int flag on a descriptor we own.
        ("fcntl(F_SETFL, O_ASYNC)", unsafe {
            libc::fcntl(fd, libc::F_SETFL, libc::O_ASYNC)
        }),
        // SAFETY: F_SETSIG with an int signal number on a descriptor we own.
        ("fcntl(F_SETSIG)", unsafe {
            libc::fcntl(fd, F_SETSIG, crate::signal::overflow_signal())
        }),
        // SAFETY: F_SETOWN_EX reads a `struct f_owner_ex`, which `owner` lays out (repr(C));
        // the pointer is valid for the duration of the call.
        ("fcntl(F_SETOWN_EX, F_OWNER_TID)", unsafe {
            libc::fcntl(fd, F_SETOWN_EX, &owner as *const FOwnerEx)
        }),
    ];
    for (what, rc) in steps {
        if rc == -1 {
            return Err(PerfError::SignalSetup {
                what,
                errno: last_errno(),
            });
        }
    }
    Ok(())
}
// ANCHOR_END: route_overflow_signal

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `PERF_EVENT_IOC_PERIOD`: the kernel reads the new period through a pointer.
fn set_period(counter: &Counter, period: u64) -> Result<(), PerfError> {
    // SAFETY: PERIOD reads one u64 through the pointer passed as its argument; `period` lives
    // on our stack for the whole call.
    let rc = unsafe {
        perf_event_open_sys::ioctls::PERIOD(counter.as_raw_fd(), &period as *const u64 as u64)
    };
    if rc == -1 {
        return Err(PerfError::from_errno(PerfOp::Period, false, last_errno()));
    }
    Ok(())
}

/// Converts an io error of an ioctl or read on an open event.
pub(crate) fn op_error(op: PerfOp, e: &std::io::Error) -> PerfError {
    error_from_io(op, false, e)
}
