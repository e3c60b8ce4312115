//! # guests: programs that run on the workbook's KVM machine
//!
//! Guest programs are written in Rust with iced-x86's `code_asm`, no external assembler:
//! [`Guest`] builds one from calls such as [`Guest::wrmsr`], [`Guest::user`] (a ring-3
//! block) and [`Guest::log`], on top of a small [`runtime`] (NMI, #GP and exception
//! handlers, a ring-3 gate, a log). [`Program::run`] boots it on a [`vmm::Machine`] with any
//! [`vmm::VirtualPmu`] and returns the guest's log and NMI latencies.

pub mod guest;
pub mod program;
pub mod runtime;

pub use guest::{Guest, Reg};
pub use program::{exception_name, Program, Record, Run, RunError, DEFAULT_LIMIT};
pub mod linux;
pub mod macros;
pub mod suite;
pub mod transcript;
pub mod workloads;

pub use suite::{run_scenario, Scenario, SCENARIOS};
pub use transcript::Transcript;

#[doc(hidden)]
pub use insta;

/// The assembler guest programs are written with, so that a crate writing its own guests
/// (a scenario, a workload) needs no dependency of its own on it.
pub use iced_x86;
