//! How a host perf overflow, or a deadline, reaches the vCPU thread.
//!
//! In KVM a perf overflow calls `kvm_perf_overflow` directly, in the host's NMI or timer
//! context. In user space the nearest thing is a signal: each host perf event is set up
//! (by [`crate::perf`]) to send [`overflow_signal`] to the vCPU thread, with the event's file
//! descriptor in `si_fd`. The handler does the only two things that are safe there:
//!
//! 1. it records the descriptor in a lock-free bitmap ([`take_overflow`] reads it back), and
//! 2. it sets `kvm_run.immediate_exit`, so that `KVM_RUN` returns `EINTR` now if the thread
//!    is in the guest, or at once on the next entry if the thread is in the VMM.
//!
//! A one-shot POSIX timer sends [`kick_signal`] at a run's deadline the same way, which is
//! how a guest that never exits is stopped.
//!
//! Real-time signals queue, and the queue is per user (`RLIMIT_SIGPENDING`). When the
//! kernel cannot queue the overflow signal it sends plain `SIGIO` instead, whose default
//! action would end the process. The handler takes `SIGIO` too: it names no descriptor, so
//! it only counts a generation ([`lost_generation`]) that tells the perf layer to check
//! every open event itself.

use std::cell::Cell;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use kvm_bindings::kvm_run;

/// Descriptors up to this number can be recorded; `RLIMIT_NOFILE` on the target machines is
/// 1024, so 4096 leaves room.
const MAX_FDS: usize = 4096;

static OVERFLOWED: [AtomicU64; MAX_FDS / 64] = [const { AtomicU64::new(0) }; MAX_FDS / 64];

/// How many times `SIGIO` arrived: an overflow whose signal could not be queued.
static LOST: AtomicU64 = AtomicU64::new(0);

/// The overflow signal's number, read once at install so that the handler only compares.
static OVERFLOW_SIGNAL: AtomicI32 = AtomicI32::new(0);

thread_local! {
    // The vCPU's `kvm_run` while this thread owns a running machine; null otherwise.
    // A const-initialised, destructor-free thread local is a plain TLS slot, which is what
    // makes reading it from a signal handler sound.
    static RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

/// The signal a host perf event sends on overflow: `SIGRTMIN + 1`.
///
/// A real-time signal queues, so two counters that overflow together are two deliveries,
/// not one.
pub fn overflow_signal() -> libc::c_int {
    libc::SIGRTMIN() + 1
}

/// The signal the deadline timer sends: `SIGRTMIN + 2`.
pub fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

// ANCHOR: install_sig
/// Installs the handler for both signals, once per process.
pub fn install() -> io::Result<()> {
    static ONCE: Once = Once::new();
    static mut RESULT: i32 = 0;
    ONCE.call_once(|| {
        OVERFLOW_SIGNAL.store(overflow_signal(), Ordering::Relaxed);
        for sig in [overflow_signal(), kick_signal(), libc::SIGIO] {
            // SAFETY: a zeroed sigaction is valid; we fill in a handler that only touches
            // atomics and this thread's `kvm_run` (see `on_signal`).
            let rc = unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as SigAction as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut())
            };
            if rc != 0 {
                // SAFETY: written once, inside call_once, read after it.
                unsafe {
                    RESULT = io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EINVAL)
                };
            }
        }
    });
    // SAFETY: call_once has returned, so RESULT is no longer written.
    match unsafe { RESULT } {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}
// ANCHOR_END: install_sig

/// Offset of `si_fd` in `siginfo_t` for `SIGPOLL`-style signals on x86-64: after signo,
/// errno, code and padding (16 bytes) comes the union, whose `_sigpoll` member is
/// `{ long si_band; int si_fd; }`.
const SI_FD_OFFSET: usize = 24;

type SigAction = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

// ANCHOR: on_signal
extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    if sig == OVERFLOW_SIGNAL.load(Ordering::Relaxed) && !info.is_null() {
        // SAFETY: the kernel passed a valid siginfo_t; for a signal set by F_SETSIG on a
        // perf event its union is the `_sigpoll` member, whose `si_fd` sits at this offset.
        let fd = unsafe { *((info as *const u8).add(SI_FD_OFFSET) as *const i32) };
        mark(fd);
    } else if sig == libc::SIGIO {
        LOST.fetch_add(1, Ordering::AcqRel);
    }
    let run = RUN.with(Cell::get);
    if !run.is_null() {
        // SAFETY: `run` was registered by `RunGuard` for this thread and stays mapped until
        // the guard is dropped, which clears it first. A volatile byte store is all we do.
        unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
    }
}
// ANCHOR_END: on_signal

fn mark(fd: RawFd) {
    if let Ok(fd) = usize::try_from(fd) {
        if fd < MAX_FDS {
            OVERFLOWED[fd / 64].fetch_or(1 << (fd % 64), Ordering::AcqRel);
        }
    }
}

/// Takes the overflow mark of `fd`: true if an overflow signal named it since the last call.
pub fn take_overflow(fd: RawFd) -> bool {
    match usize::try_from(fd) {
        Ok(fd) if fd < MAX_FDS => {
            let bit = 1u64 << (fd % 64);
            OVERFLOWED[fd / 64].fetch_and(!bit, Ordering::AcqRel) & bit != 0
        }
        _ => false,
    }
}

/// How many overflow signals the kernel could not queue (each became a `SIGIO` that names no
/// descriptor). When it has moved since an event last looked, that event may have
/// overflowed without a mark.
pub fn lost_generation() -> u64 {
    LOST.load(Ordering::Acquire)
}

/// Forgets any overflow mark of `fd` (a new event may reuse a closed event's number).
pub fn clear_overflow(fd: RawFd) {
    take_overflow(fd);
}

/// Records an overflow of `fd` as the signal handler would: for backends that do not signal
/// (the scripted test backend) and for tests.
pub fn raise_overflow(fd: RawFd) {
    mark(fd);
}

/// While alive, signals on this thread set `immediate_exit` in `run`.
pub(crate) struct RunGuard;

impl RunGuard {
    /// Registers `run` for this thread.
    ///
    /// # Safety
    /// `run` must stay valid until the guard is dropped.
    pub(crate) unsafe fn new(run: *mut kvm_run) -> RunGuard {
        RUN.with(|r| r.set(run));
        RunGuard
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        RUN.with(|r| r.set(std::ptr::null_mut()));
    }
}

/// The calling thread's kernel thread id, which perf's `F_SETOWN_EX` and timers address.
pub fn gettid() -> libc::pid_t {
    // SAFETY: gettid takes no arguments and cannot fail.
    unsafe { libc::gettid() }
}

/// A one-shot timer that sends [`kick_signal`] to the thread that armed it.
pub(crate) struct DeadlineTimer(libc::timer_t);

impl DeadlineTimer {
    /// Arms a timer that fires once, `after` from now, at the calling thread.
    pub(crate) fn arm(after: Duration) -> io::Result<DeadlineTimer> {
        // SAFETY: zeroed sigevent is valid; we set the fields SIGEV_THREAD_ID needs.
        let mut sev: libc::sigevent = unsafe { std::mem::zeroed() };
        sev.sigev_notify = libc::SIGEV_THREAD_ID;
        sev.sigev_signo = kick_signal();
        sev.sigev_notify_thread_id = gettid();
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to locals; the kernel fills `timer`.
        if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut sev, &mut timer) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let guard = DeadlineTimer(timer);
        let after = after.max(Duration::from_micros(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: after.as_secs() as libc::time_t,
                tv_nsec: after.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `timer` is the timer just created; `spec` is a valid local.
        if unsafe { libc::timer_settime(guard.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(guard)
    }
}

impl Drop for DeadlineTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `arm` and is deleted once.
        unsafe { libc::timer_delete(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_marks_are_taken_once() {
        raise_overflow(700);
        assert!(take_overflow(700));
        assert!(!take_overflow(700));
        assert!(!take_overflow(-1));
        assert!(!take_overflow(MAX_FDS as RawFd));
    }
}
