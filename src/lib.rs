//! # vpmu-workbook: the `vpmu` command's logic, as a library
//!
//! The `vpmu` binary is a thin command line over these modules, so tests and benches reach
//! the same code:
//!
//! - [`host`]: what machine this is (kernel, KVM module, CPU, perf backend);
//! - [`stats`]: latency statistics (avg, min, percentiles);
//! - [`run`]: one guest run on one tier of [`tiers::TIERS`], recorded;
//! - [`compare`]: runs each workload on every tier, interleaved, and collects the results;
//! - [`cold`]: what makes the first host perf event slow, measured on this host;
//! - [`report`]: the table (text and markdown), with the commit's published figures;
//! - [`plot`]: the latency distributions as SVG;
//! - [`probe`]: the PMU a guest sees, and the backend's limits;
//! - [`error`]: the errors, each naming its cause and fix.

pub mod cold;
pub mod compare;
pub mod error;
pub mod host;
pub mod plot;
pub mod probe;
pub mod report;
pub mod run;
pub mod stats;

pub use compare::{run_compare, CompareOptions, Report};
pub use error::Error;
pub use tiers::{Tier, TIERS};
