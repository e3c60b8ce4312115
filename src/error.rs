//! Errors of the `vpmu` command. Each wraps the library error that names the cause and the
//! fix (no `/dev/kvm`, a refused `perf_event_open`, a runaway guest), and is printed as is.

/// Why a `vpmu` command failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A guest could not be run (machine set-up, KVM, a runaway or faulting guest).
    #[error(transparent)]
    Run(#[from] guests::RunError),
    /// The host perf layer refused (no permission, no hardware PMU, out of descriptors).
    #[error(transparent)]
    Perf(#[from] vmm::perf::PerfError),
    /// An output file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The plot could not be drawn.
    #[error("cannot draw {path}: {detail}")]
    Plot {
        /// The file.
        path: String,
        /// What plotters said.
        detail: String,
    },
    /// The options make no sense together (named in the message).
    #[error("{0}")]
    Usage(String),
}
