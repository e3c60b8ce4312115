//! `vpmu`: the workbook's vPMU tiers (before and after Linux commit a6da0d77) side by side on
//! this host.
//!
//! `cargo run --release` runs `vpmu compare` with its defaults; `vpmu probe` shows the PMU a
//! guest sees. Errors print the library's message (cause and fix) and exit with status 1.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use guests::workloads::{Workload, WorkloadConfig};
use vmm::perf::BackendChoice;
use vpmu_workbook::{compare, plot, probe, report, CompareOptions, Error};

#[derive(Parser)]
#[command(
    name = "vpmu",
    about = "KVM's vPMU before and after commit a6da0d77, side by side on real guests",
    version
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run every workload on every tier, interleaved, and print the table (the default).
    Compare(CompareArgs),
    /// Show the PMU a guest sees and the host perf backend behind it.
    Probe {
        /// Host perf backend.
        #[arg(long, value_enum, default_value_t = Backend::Auto)]
        backend: Backend,
    },
}

#[derive(clap::Args, Clone)]
struct CompareArgs {
    /// NMIs per sampling run (toggles or exits per run for the exit workloads).
    #[arg(long, default_value_t = WorkloadConfig::default().samples)]
    nmis: u64,
    /// Guest time between NMIs, ns of task-clock; each of n counters sampling at once gets
    /// n times this. Below about 200000 the handler's own time causes NMI storms.
    #[arg(long, default_value_t = WorkloadConfig::default().period)]
    period: u64,
    /// GP counters in use (1 to 4).
    #[arg(long, default_value_t = WorkloadConfig::default().gp_counters)]
    counters: u32,
    /// Workloads to run, comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_workload,
          default_value = "gp-multiplex,gp-sampling,fixed-sampling,counting-toggle,evtsel-toggle,cold-start")]
    workloads: Vec<Workload>,
    /// Host perf backend.
    #[arg(long, value_enum, default_value_t = Backend::Auto)]
    backend: Backend,
    /// Runs per tier and workload (samples are pooled).
    #[arg(long, default_value_t = 3)]
    repetitions: u32,
    /// Seconds one guest run may take before it is stopped as a runaway.
    #[arg(long, default_value_t = 60)]
    limit: u64,
    /// Write all results as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<String>,
    /// Draw the latency distributions of every tier as SVG to this file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<String>,
    /// Write the table as markdown to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<String>,
    /// No progress on stderr.
    #[arg(long)]
    quiet: bool,
}

impl Default for CompareArgs {
    fn default() -> Self {
        // Parsing no arguments gives clap's defaults, the single source of them.
        Cli::parse_from(["vpmu", "compare"])
            .command
            .and_then(|c| match c {
                Command::Compare(a) => Some(a),
                Command::Probe { .. } => None,
            })
            .expect("`vpmu compare` parses")
    }
}

#[derive(ValueEnum, Clone, Copy)]
enum Backend {
    /// Hardware events if the host has a PMU, else software task-clock.
    Auto,
    /// task-clock on the vCPU thread for every guest event.
    Software,
    /// Host hardware events (fails without a host PMU).
    Hardware,
}

impl From<Backend> for BackendChoice {
    fn from(b: Backend) -> Self {
        match b {
            Backend::Auto => BackendChoice::Auto,
            Backend::Software => BackendChoice::Software,
            Backend::Hardware => BackendChoice::Hardware,
        }
    }
}

fn parse_workload(s: &str) -> Result<Workload, String> {
    Workload::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        format!("unknown workload {s:?}; choose from {}", names.join(", "))
    })
}

fn write(path: &str, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Write {
        path: path.into(),
        source,
    })
}

fn run_compare(a: CompareArgs) -> Result<(), Error> {
    let opts = CompareOptions {
        workloads: a.workloads,
        config: WorkloadConfig {
            samples: a.nmis,
            period: a.period,
            gp_counters: a.counters,
            ..WorkloadConfig::default()
        },
        repetitions: a.repetitions,
        backend: a.backend.into(),
        limit: Duration::from_secs(a.limit),
        progress: !a.quiet,
    };
    let r = compare::run_compare(&opts)?;
    print!("{}", report::text(&r));
    if let Some(p) = &a.json {
        let json = serde_json::to_string_pretty(&r).expect("the report serialises");
        write(p, &json)?;
    }
    if let Some(p) = &a.markdown {
        write(p, &report::markdown(&r))?;
    }
    if let Some(p) = &a.plot {
        plot::write_svg(&r, p)?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run_compare(CompareArgs::default()),
        Some(Command::Compare(a)) => run_compare(a),
        Some(Command::Probe { backend }) => probe::probe(backend.into()).map(|s| print!("{s}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vpmu: {e}");
            ExitCode::FAILURE
        }
    }
}
