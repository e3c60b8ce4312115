//! [`guest_suite!`](crate::guest_suite): the suite as `#[test]`s in a tier's own crate.

/// The names of [`crate::SCENARIOS`], in order, for [`guest_suite!`](crate::guest_suite)
/// (a macro cannot iterate over a constant; a test checks that the two lists agree).
pub const SUITE_NAMES: &[&str] = &[
    "cpuid_leaf_0xa",
    "reset_values",
    "write_widths",
    "reserved_bits",
    "status_and_ovf_ctrl",
    "counting",
    "overflow_every_counter",
    "write_running_counter",
    "sampling",
    "sampling_fixed",
    "multiplexing",
];

/// Expands to one `#[test]` per scenario of the guest suite, for one tier.
///
/// `make` builds the tier's vPMU from [`vmm::PmuCaps`]; `trace` turns it into its host
/// perf trace (one line per operation). Each test runs its scenario on a real KVM guest,
/// snapshots the guest-visible transcript as `<scenario>__guest` and, where the scenario's
/// host operations do not depend on timing, the host trace as `<scenario>__host`. The
/// snapshots live in the calling crate's `tests/snapshots/`.
///
/// Each tier's `tests/guest_suite.rs` is this, with its own vPMU type (see
/// `impl-legacy/tests/guest_suite.rs`):
///
/// ```text
/// guests::guest_suite! {
///     make: |caps| impl_legacy::LegacyPmu::new(caps, host_perf()),
///     trace: |pmu: &impl_legacy::LegacyPmu| pmu.ledger().trace(),
/// }
/// ```
#[macro_export]
macro_rules! guest_suite {
    (make: $make:expr, trace: $trace:expr $(,)?) => {
        $crate::guest_suite!(@tests $make, $trace;
            cpuid_leaf_0xa reset_values write_widths reserved_bits status_and_ovf_ctrl
            counting overflow_every_counter write_running_counter sampling sampling_fixed
            multiplexing);

        #[test]
        fn suite_macro_lists_every_scenario() {
            let names: Vec<&str> = $crate::SCENARIOS.iter().map(|s| s.name).collect();
            assert_eq!(names, $crate::macros::SUITE_NAMES);
        }
    };
    // ANCHOR: suite_tests
    (@tests $make:expr, $trace:expr; $($name:ident)*) => {
        $(
            #[test]
            fn $name() {
                let scenario = $crate::suite::by_name(stringify!($name));
                let make = $make;
                let pmu = make($crate::suite::suite_caps());
                let out = $crate::run_scenario(scenario, pmu).unwrap_or_else(|e| panic!("{e}"));
                $crate::insta::assert_snapshot!(
                    concat!(stringify!($name), "__guest"),
                    out.transcript.to_string()
                );
                if scenario.host_trace_deterministic {
                    let trace = $trace;
                    $crate::insta::assert_snapshot!(
                        concat!(stringify!($name), "__host"),
                        trace(out.run.machine.pmu()).join("\n")
                    );
                }
            }
        )*
    };
    // ANCHOR_END: suite_tests
}
