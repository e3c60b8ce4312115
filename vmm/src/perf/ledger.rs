//! The operation ledger: every perf call a vPMU makes, in order, with its cost.
//!
//! The commit this workbook studies is about *which* perf calls KVM makes (release and create
//! versus pause, period and enable), so the perf layer writes each call down. Tests assert on
//! the deterministic part (the op, the counter, whether it failed); benchmarks read the
//! durations.

use std::fmt;
use std::time::Duration;

/// One kind of call into the host perf layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum PerfOp {
    /// `perf_event_create_kernel_counter`: open (and enable) a new event.
    Create,
    /// `perf_event_release_kernel`: close an event.
    Release,
    /// `perf_event_read_value`: read an event's count.
    Read,
    /// `perf_event_pause`: disable, read and optionally reset an event.
    Pause,
    /// `perf_event_period`: change a sampling event's period.
    Period,
    /// `perf_event_enable`.
    Enable,
    /// `perf_event_disable`.
    Disable,
}

impl PerfOp {
    /// Every op, in declaration order.
    pub const ALL: [PerfOp; 7] = [
        PerfOp::Create,
        PerfOp::Release,
        PerfOp::Read,
        PerfOp::Pause,
        PerfOp::Period,
        PerfOp::Enable,
        PerfOp::Disable,
    ];

    /// The lower-case name used in traces (`create`, `pause`, ...).
    pub fn name(self) -> &'static str {
        match self {
            PerfOp::Create => "create",
            PerfOp::Release => "release",
            PerfOp::Read => "read",
            PerfOp::Pause => "pause",
            PerfOp::Period => "period",
            PerfOp::Enable => "enable",
            PerfOp::Disable => "disable",
        }
    }

    fn slot(self) -> usize {
        self as usize
    }
}

impl fmt::Display for PerfOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The name of counter index `pmc_idx` in KVM's numbering: `gp0`..`gp31` for the
/// general-purpose counters, `fixed0`.. for index 32 and up.
///
/// ```
/// assert_eq!(vmm::perf::counter_name(3), "gp3");
/// assert_eq!(vmm::perf::counter_name(33), "fixed1");
/// ```
pub fn counter_name(pmc_idx: u32) -> String {
    if pmc_idx < crate::msr::FIXED_IDX_BASE {
        format!("gp{pmc_idx}")
    } else {
        format!("fixed{}", pmc_idx - crate::msr::FIXED_IDX_BASE)
    }
}

/// One recorded call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedgerEntry {
    /// What was called.
    pub op: PerfOp,
    /// For which guest counter (KVM's index: GP `x` is `x`, fixed `x` is `32 + x`).
    pub pmc_idx: u32,
    /// Wall-clock time the call took (not deterministic; never assert on it in tests).
    pub duration: Duration,
    /// Whether the call failed (the host refused it).
    pub failed: bool,
}

impl LedgerEntry {
    /// The deterministic one-line form: `create gp0`, `period fixed1 refused`.
    pub fn trace_line(&self) -> String {
        let refused = if self.failed { " refused" } else { "" };
        format!("{} {}{refused}", self.op, counter_name(self.pmc_idx))
    }
}

/// How many entries a ledger keeps by default before it only counts; the totals stay exact.
pub const DEFAULT_ENTRY_LIMIT: usize = 1 << 20;

/// Every perf call, in order, plus exact per-op totals.
///
/// A long guest run makes millions of calls, so the list of entries is capped (see
/// [`Ledger::with_entry_limit`]); the counts and total durations per op are always exact.
///
/// ```
/// use std::time::Duration;
/// use vmm::perf::{Ledger, PerfOp};
/// let mut ledger = Ledger::default();
/// ledger.record(PerfOp::Create, 0, Duration::from_micros(3), false);
/// ledger.record(PerfOp::Pause, 33, Duration::from_micros(1), false);
/// assert_eq!(ledger.trace(), ["create gp0", "pause fixed1"]);
/// assert_eq!(ledger.count(PerfOp::Create), 1);
/// ```
#[derive(Debug, Clone)]
pub struct Ledger {
    entries: Vec<LedgerEntry>,
    entry_limit: usize,
    dropped: u64,
    counts: [u64; PerfOp::ALL.len()],
    failures: [u64; PerfOp::ALL.len()],
    totals: [Duration; PerfOp::ALL.len()],
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::with_entry_limit(DEFAULT_ENTRY_LIMIT)
    }
}

impl Ledger {
    /// A ledger that keeps at most `limit` entries (totals stay exact beyond it).
    pub fn with_entry_limit(limit: usize) -> Ledger {
        Ledger {
            entries: Vec::new(),
            entry_limit: limit,
            dropped: 0,
            counts: [0; PerfOp::ALL.len()],
            failures: [0; PerfOp::ALL.len()],
            totals: [Duration::ZERO; PerfOp::ALL.len()],
        }
    }

    /// Writes one call down.
    pub fn record(&mut self, op: PerfOp, pmc_idx: u32, duration: Duration, failed: bool) {
        let slot = op.slot();
        self.counts[slot] += 1;
        self.failures[slot] += u64::from(failed);
        self.totals[slot] += duration;
        if self.entries.len() < self.entry_limit {
            self.entries.push(LedgerEntry {
                op,
                pmc_idx,
                duration,
                failed,
            });
        } else {
            self.dropped += 1;
        }
    }

    /// The recorded entries, oldest first (at most the entry limit).
    pub fn entries(&self) -> &[LedgerEntry] {
        &self.entries
    }

    /// How many entries were counted but not kept because of the entry limit.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many calls of `op` were made (including failed ones).
    pub fn count(&self, op: PerfOp) -> u64 {
        self.counts[op.slot()]
    }

    /// How many calls of `op` failed.
    pub fn failures(&self, op: PerfOp) -> u64 {
        self.failures[op.slot()]
    }

    /// Total wall-clock time spent in `op`.
    pub fn total(&self, op: PerfOp) -> Duration {
        self.totals[op.slot()]
    }

    /// Calls of every op, in [`PerfOp::ALL`] order.
    pub fn counts(&self) -> Vec<(PerfOp, u64)> {
        PerfOp::ALL.iter().map(|&op| (op, self.count(op))).collect()
    }

    /// The kept entries as deterministic lines (`create gp0`, `pause fixed1`,
    /// `period gp2 refused`), for assertions and snapshots.
    pub fn trace(&self) -> Vec<String> {
        self.entries.iter().map(LedgerEntry::trace_line).collect()
    }

    /// Forgets everything recorded so far.
    pub fn clear(&mut self) {
        *self = Ledger::with_entry_limit(self.entry_limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_trace() {
        let mut l = Ledger::with_entry_limit(2);
        l.record(PerfOp::Create, 0, Duration::from_nanos(5), false);
        l.record(PerfOp::Period, 34, Duration::from_nanos(7), true);
        l.record(PerfOp::Release, 0, Duration::from_nanos(1), false);
        assert_eq!(l.trace(), ["create gp0", "period fixed2 refused"]);
        assert_eq!(l.dropped(), 1);
        assert_eq!(l.count(PerfOp::Release), 1);
        assert_eq!(l.failures(PerfOp::Period), 1);
        assert_eq!(l.total(PerfOp::Create), Duration::from_nanos(5));
        l.clear();
        assert!(l.entries().is_empty());
        assert_eq!(l.count(PerfOp::Create), 0);
    }
}
