//! What a reader should see of a run: the guest-visible transcript.
//!
//! A transcript turns the guest's log into lines that are the same on every run and for both
//! tiers. Values that depend on time are never printed; they are shown as relations:
//!
//! | log tag | line |
//! |---|---|
//! | `count <series>: <what>` | `<series>: <what> -> advanced` (or `unchanged`, `went back`, `first read`), against the previous read of the same series |
//! | `from <n> <series>: <what>` | `<series>: <what> -> continued from <n>` if the value is `n` or a little more |
//! | anything else | `<tag> = <value in hex>` |
//! | a #GP the runtime logged | `#GP on <MSR name>` |
//! | an emulated RDPMC | `rdpmc(<ecx>) -> <relation>`, as a count series of its own |

use std::collections::BTreeMap;
use std::fmt;

use crate::program::Record;

/// The most a counter may move past a value written to it and still "continue from" it:
/// 2^40 events (about 18 minutes of task-clock nanoseconds).
const CONTINUE_SLACK: u64 = 1 << 40;

/// Guest-visible lines, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The lines.
    pub lines: Vec<String>,
}

impl Transcript {
    /// Appends a line.
    pub fn push(&mut self, line: impl Into<String>) {
        self.lines.push(line.into());
    }
}

impl fmt::Display for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for line in &self.lines {
            writeln!(f, "{line}")?;
        }
        Ok(())
    }
}

/// How a read compares with the one before it in the same series.
pub fn relation(prev: Option<u64>, now: u64) -> &'static str {
    match prev {
        None => "first read",
        Some(p) if now > p => "advanced",
        Some(p) if now == p => "unchanged",
        Some(_) => "went back",
    }
}

/// Renders a log with the rules in the module documentation.
///
/// ```
/// use guests::{transcript::render, Record};
/// let v = |name: &str, value| Record::Value { name: name.into(), value };
/// let log = [v("ctrl", 0xf), v("count gp0: start", 5), v("count gp0: later", 9)];
/// assert_eq!(
///     render(&log).lines,
///     ["ctrl = 0xf", "gp0: start -> first read", "gp0: later -> advanced"]
/// );
/// ```
pub fn render(log: &[Record]) -> Transcript {
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Transcript::default();
    let mut series_line = |series: &str, what: &str, value: u64| {
        let rel = relation(last.get(series).copied(), value);
        last.insert(series.to_string(), value);
        if what.is_empty() {
            format!("{series} -> {rel}")
        } else {
            format!("{series}: {what} -> {rel}")
        }
    };
    for record in log {
        let line = match record {
            Record::Value { name, value } => {
                if let Some(rest) = name.strip_prefix("count ") {
                    let (series, what) = rest.split_once(": ").unwrap_or((rest, ""));
                    series_line(series, what, *value)
                } else if let Some(rest) = name.strip_prefix("from ") {
                    let (n, label) = rest.split_once(' ').unwrap_or((rest, ""));
                    let n: u64 = n.parse().unwrap_or(0);
                    let (series, _) = label.split_once(": ").unwrap_or((label, ""));
                    let _ = series_line(series, "", *value);
                    if *value >= n && *value - n < CONTINUE_SLACK {
                        format!("{label} -> continued from {n}")
                    } else {
                        format!("{label} -> did not continue from {n}")
                    }
                } else {
                    format!("{name} = {value:#x}")
                }
            }
            Record::Rdpmc { ecx, value } => series_line(&format!("rdpmc({ecx:#x})"), "", *value),
            other => other.to_string(),
        };
        out.push(line);
    }
    out
}
