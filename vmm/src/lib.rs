//! # vmm: a one-vCPU KVM machine with its PMU in user space
//!
//! The in-kernel vPMU is off on the machines this workbook targets (CPUID leaf 0xA from
//! `KVM_GET_SUPPORTED_CPUID` is all zeros), so this crate moves the vPMU out of the kernel:
//!
//! - [`msr`]: which MSR index is which, and which ones are routed to user space;
//! - [`caps`]: the PMU the guest is told about (CPUID leaf 0xA, `IA32_PERF_CAPABILITIES`);
//! - [`pmu`]: the [`VirtualPmu`] trait a vPMU implements;
//! - [`perf`]: host perf events, with the kernel API's shape (`perf_event_create_kernel_counter`,
//!   `perf_event_pause`, `perf_event_period`, ...) and a ledger of every call;
//! - [`signal`]: how a perf overflow or a deadline reaches the vCPU thread;
//! - [`machine`]: the KVM machine and its run loop.

pub mod caps;
pub mod msr;
pub mod perf;
pub mod pmu;
pub mod signal;

pub use caps::PmuCaps;
pub use pmu::{Fault, Service, VirtualPmu};
pub mod error;
pub mod image;
pub mod layout;
pub mod machine;

pub use error::{Error, GuestRegs, Result};
pub use machine::{ExitStats, Machine, Outcome};
