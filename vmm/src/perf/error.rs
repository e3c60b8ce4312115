//! Why a perf call failed, said so that the reader knows what to do about it.
//!
//! `perf_event_open` answers with a bare errno, and the same errno means different things for
//! different events: `ENOENT` for a hardware event means "this host has no PMU", not "no such
//! file". [`PerfError::from_errno`] turns the errno and what was being done into a message that
//! names the cause and the fix.

use super::ledger::PerfOp;

/// A refused perf call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PerfError {
    /// `EACCES`/`EPERM`: the kernel's perf policy forbids the event.
    #[error(
        "{op}: permission denied ({}): perf_event_paranoid is {}; run as root or grant \
         CAP_PERFMON, or lower the policy with `sysctl -w kernel.perf_event_paranoid=1` \
         (kernel-inclusive events need <= 1)",
        errno_name(*errno),
        paranoid.map_or_else(|| "unknown".to_string(), |p| p.to_string())
    )]
    PermissionDenied {
        /// The call that failed.
        op: PerfOp,
        /// `EACCES` or `EPERM`.
        errno: i32,
        /// `/proc/sys/kernel/perf_event_paranoid` when the call failed, if readable.
        paranoid: Option<i32>,
    },
    /// `ENOENT`/`EOPNOTSUPP`/`ENODEV` for a hardware or raw event.
    #[error(
        "{op}: no hardware PMU on this host ({}: hardware events are not supported, as in a \
         VM without a virtual PMU); use the software backend (`--backend software` or \
         `auto`, which falls back to it; `BackendChoice::Software` or `Auto` in the API)",
        errno_name(*errno)
    )]
    NoHardwarePmu {
        /// The call that failed.
        op: PerfOp,
        /// The errno the kernel gave.
        errno: i32,
    },
    /// `EMFILE`/`ENFILE`: out of file descriptors.
    #[error(
        "{op}: out of file descriptors ({}): RLIMIT_NOFILE (often 1024) is reached; each host \
         event is one descriptor, so look for events created and never released (a leak?), \
         or raise the limit with `ulimit -n`",
        errno_name(*errno)
    )]
    TooManyFiles {
        /// The call that failed.
        op: PerfOp,
        /// `EMFILE` or `ENFILE`.
        errno: i32,
    },
    /// `EINVAL`: the kernel rejected the attributes or the argument.
    #[error(
        "{op}: invalid argument (EINVAL): {detail}; check the event attributes (a sampling \
         period must be non-zero and below 2^63; a period can only be changed on a sampling event)"
    )]
    InvalidArgument {
        /// The call that failed.
        op: PerfOp,
        /// What was being asked.
        detail: String,
    },
    /// Any other errno.
    #[error("{op}: the kernel refused with {} (errno {errno})", errno_name(*errno))]
    Os {
        /// The call that failed.
        op: PerfOp,
        /// The errno.
        errno: i32,
    },
    /// The overflow signal could not be set up on an event (fcntl) or installed (sigaction).
    #[error(
        "overflow signal set-up failed ({}): {what}; overflows could not reach the vCPU thread",
        errno_name(*errno)
    )]
    SignalSetup {
        /// Which step failed.
        what: &'static str,
        /// The errno.
        errno: i32,
    },
}

impl PerfError {
    /// Classifies `errno` from `op` on an event that is (`hardware`) or is not a hardware/raw
    /// event. Reads `perf_event_paranoid` to put it in the message.
    pub fn from_errno(op: PerfOp, hardware: bool, errno: i32) -> PerfError {
        let paranoid = match errno {
            libc::EACCES | libc::EPERM => read_paranoid(),
            _ => None,
        };
        PerfError::classify(op, hardware, errno, paranoid)
    }

    /// [`PerfError::from_errno`] with the paranoid level given rather than read.
    ///
    /// ```
    /// use vmm::perf::{PerfError, PerfOp};
    /// let e = PerfError::classify(PerfOp::Create, true, libc::ENOENT, None);
    /// assert!(e.to_string().contains("no hardware PMU"));
    /// ```
    pub fn classify(op: PerfOp, hardware: bool, errno: i32, paranoid: Option<i32>) -> PerfError {
        match errno {
            libc::EACCES | libc::EPERM => PerfError::PermissionDenied {
                op,
                errno,
                paranoid,
            },
            libc::ENOENT | libc::EOPNOTSUPP | libc::ENODEV if hardware => {
                PerfError::NoHardwarePmu { op, errno }
            }
            libc::EMFILE | libc::ENFILE => PerfError::TooManyFiles { op, errno },
            libc::EINVAL => PerfError::InvalidArgument {
                op,
                detail: format!("the kernel refused the {op} call"),
            },
            _ => PerfError::Os { op, errno },
        }
    }

    /// The errno behind the error, if there was one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            PerfError::PermissionDenied { errno, .. }
            | PerfError::NoHardwarePmu { errno, .. }
            | PerfError::TooManyFiles { errno, .. }
            | PerfError::Os { errno, .. }
            | PerfError::SignalSetup { errno, .. } => Some(*errno),
            PerfError::InvalidArgument { .. } => Some(libc::EINVAL),
        }
    }
}

fn read_paranoid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The symbolic name of the errnos perf calls give, for messages.
pub fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENODEV => "ENODEV",
        libc::EMFILE => "EMFILE",
        libc::ENFILE => "ENFILE",
        libc::EINVAL => "EINVAL",
        libc::EBUSY => "EBUSY",
        libc::E2BIG => "E2BIG",
        libc::EFAULT => "EFAULT",
        libc::EBADF => "EBADF",
        libc::ENOSPC => "ENOSPC",
        libc::ESRCH => "ESRCH",
        _ => "an unexpected errno",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_errors_name_paranoid_capability_and_sysctl() {
        for errno in [libc::EACCES, libc::EPERM] {
            let msg = PerfError::classify(PerfOp::Create, false, errno, Some(2)).to_string();
            assert!(msg.contains("perf_event_paranoid is 2"), "{msg}");
            assert!(msg.contains("CAP_PERFMON"), "{msg}");
            assert!(msg.contains("root"), "{msg}");
            assert!(
                msg.contains("sysctl -w kernel.perf_event_paranoid"),
                "{msg}"
            );
            assert!(msg.contains(errno_name(errno)), "{msg}");
        }
        let msg = PerfError::classify(PerfOp::Create, false, libc::EACCES, None).to_string();
        assert!(msg.contains("perf_event_paranoid is unknown"), "{msg}");
    }

    #[test]
    fn hardware_unsupported_errors_point_to_the_software_backend() {
        for errno in [libc::ENOENT, libc::EOPNOTSUPP, libc::ENODEV] {
            let e = PerfError::classify(PerfOp::Create, true, errno, None);
            assert_eq!(
                e,
                PerfError::NoHardwarePmu {
                    op: PerfOp::Create,
                    errno
                }
            );
            let msg = e.to_string();
            assert!(msg.contains("no hardware PMU on this host"), "{msg}");
            assert!(msg.contains("software backend"), "{msg}");
        }
        // The same errno on a software event is not about a missing PMU.
        let e = PerfError::classify(PerfOp::Create, false, libc::ENOENT, None);
        assert_eq!(
            e,
            PerfError::Os {
                op: PerfOp::Create,
                errno: libc::ENOENT
            }
        );
    }

    #[test]
    fn fd_exhaustion_suggests_a_leak() {
        let msg = PerfError::classify(PerfOp::Create, false, libc::EMFILE, None).to_string();
        assert!(msg.contains("EMFILE") && msg.contains("leak") && msg.contains("RLIMIT_NOFILE"));
    }

    #[test]
    fn einval_names_the_call() {
        let e = PerfError::classify(PerfOp::Period, false, libc::EINVAL, None);
        assert_eq!(e.errno(), Some(libc::EINVAL));
        assert!(e
            .to_string()
            .starts_with("period: invalid argument (EINVAL)"));
    }
}
