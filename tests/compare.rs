//! The compare logic on real KVM guests with tiny parameters: the JSON schema (fields and
//! their types) and the report's internal consistency. No timing is asserted anywhere.

use std::time::Duration;

use guests::workloads::{Workload, WorkloadConfig};
use serde_json::Value;
use vmm::perf::BackendChoice;
use vpmu_workbook::{compare::reduction_pct, run_compare, CompareOptions, TIERS};

const SAMPLES: u64 = 12;

fn tiny() -> CompareOptions {
    CompareOptions {
        workloads: Workload::ALL.to_vec(),
        config: WorkloadConfig {
            samples: SAMPLES,
            spin: 2_000,
            ..WorkloadConfig::default()
        },
        repetitions: 1,
        backend: BackendChoice::Auto,
        limit: Duration::from_secs(60),
        progress: false,
    }
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    v.get(key)
        .unwrap_or_else(|| panic!("field {key:?} missing in {v}"))
}

fn num(v: &Value, key: &str) -> f64 {
    field(v, key)
        .as_f64()
        .unwrap_or_else(|| panic!("{key:?} is not a number: {v}"))
}

#[test]
fn compare_json_schema_and_consistency() {
    let report = run_compare(&tiny()).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_value(&report).expect("serialises");

    // Schema: top level.
    assert_eq!(num(&json, "schema_version"), 2.0);
    for key in [
        "kernel",
        "cpu",
        "kvm_module",
        "nmi_watchdog",
        "backend",
        "backend_reason",
    ] {
        assert!(field(field(&json, "host"), key).is_string(), "host.{key}");
    }
    assert!(num(field(&json, "host"), "cpus") >= 1.0);
    assert!(num(&json, "tsc_khz") > 0.0);
    assert!(num(&json, "wall_seconds") >= 0.0);
    let config = field(&json, "config");
    assert!(field(config, "workloads").is_array());
    assert_eq!(num(field(config, "workload"), "samples"), SAMPLES as f64);

    // Every guest workload but cold-start has a row, in order.
    let rows = field(&json, "workloads").as_array().expect("array");
    let names: Vec<&str> = rows
        .iter()
        .map(|r| field(r, "workload").as_str().expect("string"))
        .collect();
    assert_eq!(
        names,
        [
            "gp-multiplex",
            "gp-sampling",
            "fixed-sampling",
            "counting-toggle",
            "evtsel-toggle"
        ]
    );
    let baseline = TIERS.iter().find(|t| t.baseline).expect("a baseline").name;
    for row in rows {
        assert!(field(row, "unit").is_string());
        assert_eq!(field(row, "baseline").as_str(), Some(baseline));
        // One result per tier, in table order.
        let tiers = field(row, "tiers").as_array().expect("tiers is a list");
        let tier_names: Vec<&str> = tiers
            .iter()
            .map(|t| field(t, "tier").as_str().expect("string"))
            .collect();
        assert_eq!(tier_names, TIERS.iter().map(|t| t.name).collect::<Vec<_>>());
        for t in tiers {
            let is_baseline = field(t, "tier").as_str() == Some(baseline);
            for key in ["creation_reduction_pct", "speedup_avg", "speedup_p50"] {
                let v = field(t, key);
                assert!(v.is_number() || v.is_null(), "{key}");
                assert!(!is_baseline || v.is_null(), "the baseline has a {key}");
            }
            for key in [
                "creations",
                "guest_nmis",
                "samples",
                "host_ops_total",
                "host_perf_ns",
                "host_ops_per_sample",
                "host_perf_ns_per_sample",
            ] {
                num(t, key);
            }
            for key in ["count", "avg", "min", "p50", "p99", "max"] {
                num(field(t, "latency"), key);
            }
            assert!(field(t, "host_ops").is_object());
            assert!(field(t, "latencies_ns").is_array());
            for run in field(t, "runs").as_array().expect("runs") {
                for key in [
                    "guest_nmis",
                    "samples",
                    "creations",
                    "create_entries",
                    "wall_ms",
                ] {
                    num(run, key);
                }
                assert!(field(run, "exits").is_object());
            }
        }
    }
    let cold = field(&json, "cold_start");
    assert_eq!(field(cold, "host").as_array().map(Vec::len), Some(1));
    // Two conditions per tier, one repetition.
    assert_eq!(
        field(cold, "guest").as_array().map(Vec::len),
        Some(2 * TIERS.len())
    );

    // Consistency, on the typed report.
    for w in &report.workloads {
        let base = w.tier(w.baseline).expect("the baseline ran");
        for t in &w.tiers {
            let name = format!("{} on {}", w.workload.name(), t.tier);
            if t.tier != w.baseline {
                assert_eq!(
                    t.creation_reduction_pct,
                    reduction_pct(base.creations, t.creations),
                    "{name}"
                );
                if base.samples > 0 && t.samples > 0 {
                    assert_eq!(
                        t.speedup_p50,
                        Some(base.latency.p50 / t.latency.p50),
                        "{name}"
                    );
                }
                // The commit's effect, as counts: no later tier creates more than the
                // baseline.
                assert!(t.creations <= base.creations, "{name}");
            }
            // Creations counted equal the ledger's Create entries, run by run.
            for r in &t.runs {
                assert_eq!(r.ledger_dropped, 0, "{name}");
                assert_eq!(r.creations, r.create_entries, "{name}");
                assert_eq!(r.creations, r.host_ops["create"], "{name}");
            }
            assert_eq!(t.creations, t.runs.iter().map(|r| r.creations).sum::<u64>());
            assert_eq!(t.host_ops_total, t.host_ops.values().sum::<u64>(), "{name}");
            assert_eq!(t.samples, t.latencies_ns.len() as u64, "{name}");
            assert_eq!(t.latency.count, t.samples, "{name}");
            // Per-sample figures are totals over NMIs (sampling) or samples (exits).
            let per = if w.workload.samples_nmis() {
                assert!(t.guest_nmis >= SAMPLES, "{name}: {} NMIs", t.guest_nmis);
                t.guest_nmis
            } else {
                assert_eq!(t.guest_nmis, 0, "{name}: an exit workload took NMIs");
                assert_eq!(t.samples, SAMPLES, "{name}");
                t.samples
            };
            assert_eq!(t.host_ops_per_sample, t.host_ops_total as f64 / per as f64);
            assert_eq!(
                t.host_perf_ns_per_sample,
                t.host_perf_ns as f64 / per as f64
            );
            assert!(t.latency.min <= t.latency.p50 && t.latency.p50 <= t.latency.max);
        }
    }

    // The text and markdown renderings name every workload.
    let text = vpmu_workbook::report::text(&report);
    let md = vpmu_workbook::report::markdown(&report);
    for n in names {
        assert!(text.contains(n) && md.contains(n), "{n}");
    }
    assert!(text.contains("theirs (commit)"));
}

#[test]
fn unknown_workload_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vpmu"))
        .args(["compare", "--workloads", "nope"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("gp-multiplex"));
}

#[test]
fn bad_counters_are_refused_with_a_message() {
    let mut opts = tiny();
    opts.config.gp_counters = 9;
    let err = run_compare(&opts).expect_err("refused");
    assert!(err.to_string().contains("--counters"));
}
