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

/// Opens (disabled) the event that stands for `attr` on this backend.
pub(crate) fn open(flavour: Flavour, attr: &EventAttr) -> Result<Counter, PerfError> {
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
    if attr.sample_period != 0 {
        builder.sample_period(attr.sample_period);
    }
    let hardware = flavour == Flavour::Hardware;
    let counter = builder
        .build()
        .map_err(|e| error_from_io(PerfOp::Create, hardware, &e))?;
    route_overflow_signal(counter.as_raw_fd())?;
    Ok(counter)
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
pub(crate) fn set_period(counter: &Counter, period: u64) -> Result<(), PerfError> {
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
