//! # tiers: the one table of the workbook's vPMU tiers
//!
//! ## The model
//!
//! A *tier* is one way KVM's vPMU has reprogrammed guest counters, rebuilt in user space in
//! a crate of its own (`impl-legacy` is Linux 5.4, `impl-reuse` the tree right after commit
//! a6da0d77). Everything that shows or checks "every tier" — `vpmu compare` and its report
//! and plot, `vpmu probe`, the benches, the cross-tier tests — iterates [`TIERS`], one
//! [`Tier`] row per tier, in the order tables print them. Nothing else names a tier.
//!
//! A row says what the tier is called ([`Tier::name`] on the command line and in the JSON,
//! [`Tier::label`] in titles), which kernel it mirrors, its colour in plots, how to build its
//! vPMU ([`Tier::vpmu`]) and on which host perf backend it runs ([`Tier::backend`]). One row is
//! the [`baseline`]: reductions and speedups are measured against it.
//!
//! ```
//! use tiers::{baseline, TIERS};
//! use vmm::perf::{HostPerf, PerfOp};
//! use vmm::{PmuCaps, VirtualPmu};
//!
//! // The same guest writes on every tier, each on its own scripted host.
//! for tier in TIERS {
//!     let (perf, _clock) = HostPerf::scripted();
//!     let mut vpmu = (tier.vpmu)(PmuCaps::default(), perf);
//!     vpmu.set_msr(0x186, 0x43_00C0).unwrap(); // PERFEVTSEL0: instructions, USR|OS|EN
//!     vpmu.set_msr(0x38F, 0).unwrap(); // GLOBAL_CTRL off
//!     vpmu.set_msr(0x38F, 1).unwrap(); // and on again
//!     let creates = vpmu.ledger().count(PerfOp::Create);
//!     // Before the commit the toggle recreated the event; after it, the event is reused.
//!     assert_eq!(creates, if tier.baseline { 2 } else { 1 }, "{}", tier.name);
//! }
//! assert_eq!(baseline().name, "legacy");
//! ```
//!
//! ## Why a function pointer to a trait object
//!
//! A row builds its vPMU with a plain `fn(PmuCaps, HostPerf) -> Box<dyn TierPmu>`, so the table
//! is data, like the guest suite's `Scenario` table: a `for` loop runs every tier, a report
//! reads its columns from it, and a vPMU that is not an [`IntelVpmu`] fits as long as it
//! implements [`TierPmu`] (a [`VirtualPmu`] whose host perf layer, and if it has one KVM's
//! PMU state, can be inspected). `Box<dyn TierPmu>` is itself a [`VirtualPmu`], so
//! `Machine<P>`, `Program::run` and `run_scenario` take it as they take a concrete vPMU.
//!
//! The alternative, a `for_each_tier!` macro that expands a generic test body once per
//! `Reprogram` type, keeps static dispatch but makes the list of tiers a piece of syntax
//! instead of a value: the report could not iterate it, and each kind of caller would need
//! its own expansion. Its only gain, static dispatch, is worth nothing here: the indirect call
//! per guest MSR access costs nanoseconds, against the user-space exit (several microseconds)
//! that brought the access to the vPMU.
//!
//! ## Why a crate of its own
//!
//! The table must be reachable from the `vpmu` command (the root crate) and from the crate
//! tests of `kvm-pmu`, which check the shared MSR rules through every tier. In the root crate
//! those tests could reach it only by moving out of `kvm-pmu`, and every user would pull in the
//! command's dependencies (clap, plotters). Here it depends only on the tier crates, and
//! `kvm-pmu` takes it as a dev-dependency, as it already takes the tier crates.
//!
//! ## Adding a tier
//!
//! 1. Write its crate. A `Reprogram` implementation (deriving `Debug`) gives an
//!    [`IntelVpmu`], which [`intel`] boxes; any other vPMU needs an `impl TierPmu` here.
//! 2. Add one row to [`TIERS`] (its `label` reads `name (kernel)`, its colour is its own).
//! 3. Add the crate to the workspace (`members`, `[workspace.dependencies]`) and to this
//!    crate's `[dependencies]`; give it its own `tests/guest_suite.rs` (the `guest_suite!`
//!    macro) and snapshots.
//!
//! The command, its report and plot, the probe, the benches and the cross-tier tests then
//! include it. Those tests compare every row with the baseline, and key what differs on
//! [`Tier::baseline`] (before the commit or after it).

use std::fmt;

use impl_legacy::Legacy;
use impl_reuse::Reuse;
use kvm_pmu::{IntelVpmu, KvmPmu, Reprogram};
use vmm::perf::{Backend, HostPerf, Ledger, PerfError};
use vmm::{Fault, PmuCaps, Service, VirtualPmu};

/// One row of the tier table.
#[derive(Debug, Clone, Copy)]
pub struct Tier {
    /// The name on the command line, in the JSON and in table columns: `legacy`.
    pub name: &'static str,
    /// The title in tables and plots: `legacy (Linux 5.4)`.
    pub label: &'static str,
    /// The kernel whose vPMU the tier mirrors: `Linux 5.4`.
    pub kernel: &'static str,
    /// What the tier does when a counter is reprogrammed, in a few words: `release + create`.
    pub reprogram: &'static str,
    /// Its colour in plots, RGB.
    pub colour: [u8; 3],
    /// Whether this is the row the others are measured against. Exactly one row is.
    pub baseline: bool,
    /// Builds the tier's vPMU of geometry `caps`, its host events from `perf`.
    pub vpmu: fn(caps: PmuCaps, perf: HostPerf) -> Box<dyn TierPmu>,
    /// The host perf backend the tier runs on, given the one the command selected
    /// ([`selected`] for a tier that runs on whatever the host offers).
    pub backend: fn(selected: &Backend) -> Backend,
}

// ANCHOR: tiers
/// Every tier, in the order tables and plots show them.
pub static TIERS: &[Tier] = &[
    Tier {
        name: "legacy",
        label: Legacy::NAME,
        kernel: "Linux 5.4",
        reprogram: "release + create",
        colour: [255, 0, 0],
        baseline: true,
        vpmu: intel::<Legacy>,
        backend: selected,
    },
    Tier {
        name: "reuse",
        label: Reuse::NAME,
        kernel: "Linux 5.5",
        reprogram: "pause + resume",
        colour: [0, 0, 255],
        baseline: false,
        vpmu: intel::<Reuse>,
        backend: selected,
    },
];
// ANCHOR_END: tiers

/// The row the others are measured against.
///
/// # Panics
/// If [`TIERS`] has no baseline row (a test checks that it has exactly one).
pub fn baseline() -> &'static Tier {
    TIERS
        .iter()
        .find(|t| t.baseline)
        .expect("the tier table has a baseline row")
}

/// The row called `name`.
///
/// ```
/// assert_eq!(tiers::by_name("reuse").map(|t| t.kernel), Some("Linux 5.5"));
/// assert!(tiers::by_name("nope").is_none());
/// ```
pub fn by_name(name: &str) -> Option<&'static Tier> {
    TIERS.iter().find(|t| t.name == name)
}

/// The backend the command selected, for a tier that runs on it.
pub fn selected(backend: &Backend) -> Backend {
    backend.clone()
}

/// The vPMU of an [`IntelVpmu`] tier, boxed for [`Tier::vpmu`].
pub fn intel<T: Reprogram + fmt::Debug + 'static>(
    caps: PmuCaps,
    perf: HostPerf,
) -> Box<dyn TierPmu> {
    Box::new(IntelVpmu::<T>::new(caps, perf))
}

impl Tier {
    /// A fresh host perf layer on this tier's backend, given the one the command (or test)
    /// `selected`.
    pub fn host_perf(&self, selected: &Backend) -> Result<HostPerf, PerfError> {
        HostPerf::new((self.backend)(selected))
    }

    /// A guard for a test that loops over [`TIERS`]: if the thread panics while it lives, the
    /// test's output names this tier after the panic message.
    pub fn checking(&self) -> Checking {
        Checking(self.name)
    }
}

/// Rows are the same row when their names are (a name is the row's key).
impl PartialEq for Tier {
    fn eq(&self, other: &Tier) -> bool {
        self.name == other.name
    }
}

impl Eq for Tier {}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A tier is written as its name in the JSON.
impl serde::Serialize for Tier {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name)
    }
}

/// Returned by [`Tier::checking`].
#[derive(Debug)]
#[must_use = "the guard names the tier only while it lives"]
pub struct Checking(&'static str);

impl Drop for Checking {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("(that failure is on tier `{}`)", self.0);
        }
    }
}

/// What a tier's vPMU offers beyond [`VirtualPmu`]: its host perf layer (with the ledger of
/// every call), and KVM's PMU state if it keeps one.
pub trait TierPmu: VirtualPmu + fmt::Debug {
    /// The host perf layer the vPMU's events come from.
    fn perf(&self) -> &HostPerf;

    /// Every host perf call made so far.
    fn ledger(&self) -> &Ledger {
        self.perf().ledger()
    }

    /// KVM's PMU state (counters, global registers, pending requests), for the tests that
    /// check it directly; `None` for a vPMU that does not keep its state in a [`KvmPmu`].
    fn kvm_pmu(&self) -> Option<&KvmPmu>;

    /// The same, mutably (for tests that set up unusual states).
    fn kvm_pmu_mut(&mut self) -> Option<&mut KvmPmu>;
}

impl<T: Reprogram + fmt::Debug> TierPmu for IntelVpmu<T> {
    fn perf(&self) -> &HostPerf {
        IntelVpmu::perf(self)
    }

    fn kvm_pmu(&self) -> Option<&KvmPmu> {
        Some(self.pmu())
    }

    fn kvm_pmu_mut(&mut self) -> Option<&mut KvmPmu> {
        Some(self.pmu_mut())
    }
}

/// A boxed tier vPMU runs on a machine like the vPMU inside it. Every method of
/// [`VirtualPmu`] is forwarded: one added to that trait must be forwarded here too, or the
/// box would answer with the trait's default instead of the tier's.
impl VirtualPmu for Box<dyn TierPmu> {
    fn caps(&self) -> PmuCaps {
        (**self).caps()
    }

    fn get_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        (**self).get_msr(msr)
    }

    fn set_msr(&mut self, msr: u32, data: u64) -> Result<(), Fault> {
        (**self).set_msr(msr, data)
    }

    fn service(&mut self) -> Service {
        (**self).service()
    }
}

/// The box is a tier vPMU too, so that it goes wherever a `&mut dyn TierPmu` or a
/// `P: TierPmu` is asked for.
impl TierPmu for Box<dyn TierPmu> {
    fn perf(&self) -> &HostPerf {
        (**self).perf()
    }

    fn ledger(&self) -> &Ledger {
        (**self).ledger()
    }

    fn kvm_pmu(&self) -> Option<&KvmPmu> {
        (**self).kvm_pmu()
    }

    fn kvm_pmu_mut(&mut self) -> Option<&mut KvmPmu> {
        (**self).kvm_pmu_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_formed() {
        assert_eq!(TIERS.iter().filter(|t| t.baseline).count(), 1);
        for (i, t) in TIERS.iter().enumerate() {
            assert!(
                TIERS[..i].iter().all(|u| u.name != t.name),
                "{} twice",
                t.name
            );
            assert!(
                TIERS[..i].iter().all(|u| u.colour != t.colour),
                "{}'s colour is taken",
                t.name
            );
            assert!(
                !t.name.is_empty() && t.name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{:?} is not a command-line name",
                t.name
            );
            assert_eq!(t.label, format!("{} ({})", t.name, t.kernel));
            assert_eq!(by_name(t.name), Some(t));
        }
    }

    #[test]
    fn every_row_builds_a_vpmu_of_the_geometry_asked_for() {
        for tier in TIERS {
            let _tier = tier.checking();
            let caps = PmuCaps::with_gp(2);
            let (perf, _clock) = HostPerf::scripted();
            let mut vpmu = (tier.vpmu)(caps, perf);
            assert_eq!(vpmu.caps(), caps);
            assert_eq!(vpmu.kvm_pmu().map(|p| p.gp.len()), Some(2));
            // The box forwards to the tier: a write reaches its state and its host layer.
            vpmu.set_msr(0x186, 0x43_00C0).unwrap();
            assert_eq!(vpmu.get_msr(0x186), Ok(0x43_00C0));
            assert_eq!(
                vpmu.ledger().trace().first().map(String::as_str),
                Some("create gp0")
            );
            assert!(!vpmu.service().pmi);
        }
    }
}
