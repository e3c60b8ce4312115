//! Errors that name their cause and the fix.

use std::fmt;
use std::time::Duration;

/// The guest's registers when something went wrong, for error messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// Instruction pointer.
    pub rip: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Flags.
    pub rflags: u64,
    /// RAX.
    pub rax: u64,
    /// RCX (the MSR index for RDMSR/WRMSR).
    pub rcx: u64,
    /// Code segment selector: its low two bits are the privilege level.
    pub cs: u16,
    /// The last page-fault address.
    pub cr2: u64,
}

impl fmt::Display for GuestRegs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rip={:#x} rsp={:#x} rflags={:#x} rax={:#x} rcx={:#x} cs={:#x} (ring {}) cr2={:#x}",
            self.rip,
            self.rsp,
            self.rflags,
            self.rax,
            self.rcx,
            self.cs,
            self.cs & 3,
            self.cr2
        )
    }
}

/// Everything that can stop a machine from being built or from running a guest to its end.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `/dev/kvm` could not be opened.
    #[error("cannot open {path}: {source}. {fix}")]
    KvmUnavailable {
        /// The device path tried.
        path: String,
        /// What `open` said.
        source: std::io::Error,
        /// What to do about it.
        fix: &'static str,
    },
    /// A KVM capability the machine needs is missing.
    #[error("KVM lacks {cap}, which {why}. Fix: {fix}")]
    MissingCapability {
        /// The capability's name.
        cap: &'static str,
        /// What the machine needs it for.
        why: &'static str,
        /// What to do about it.
        fix: &'static str,
    },
    /// A KVM ioctl failed.
    #[error("KVM {what} failed: {source}")]
    Kvm {
        /// Which call.
        what: &'static str,
        /// The error KVM returned.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be set up or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The guest image does not fit the layout.
    #[error("guest image: {0}")]
    Image(String),
    /// The guest triple-faulted: KVM reported a shutdown.
    #[error(
        "the guest triple-faulted (KVM_EXIT_SHUTDOWN) at {regs}. An exception hit while the \
         IDT, GDT, TSS or stack was unusable; check the handler for the vector that faulted \
         first and that the stacks are mapped"
    )]
    TripleFault {
        /// Registers at the shutdown.
        regs: GuestRegs,
    },
    /// The guest ran past its time limit.
    #[error(
        "the guest did not finish within {limit:?} and was stopped at {regs}. A ring-3 loop \
         that waits for NMIs which never come, or a missing `done`, are the usual causes; \
         raise the limit if the workload is just long"
    )]
    Runaway {
        /// The limit it ran past.
        limit: Duration,
        /// Registers when it was stopped.
        regs: GuestRegs,
    },
    /// The guest exited in a way the machine does not handle.
    #[error("unexpected guest exit: {what} at {regs}")]
    UnexpectedExit {
        /// What happened.
        what: String,
        /// Registers at the exit.
        regs: GuestRegs,
    },
    /// Signals for overflows or deadlines could not be set up.
    #[error("signal set-up failed: {0}")]
    Signal(std::io::Error),
}

/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// The advice for an `open("/dev/kvm")` error, by errno.
pub(crate) fn kvm_open_fix(err: &std::io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ENOENT) => {
            "KVM is not available on this host: load the module (`modprobe kvm_intel` or \
             `kvm_amd`), enable virtualization in the firmware, or run on a host that \
             exposes /dev/kvm"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "this user may not use KVM: add it to the `kvm` group (`usermod -aG kvm $USER`, \
             then log in again) or run as root"
        }
        _ => "check that the path is the KVM device (a character device 10:232)",
    }
}
