//! An assembled guest program, and what running it on a machine yields.

use std::fmt;
use std::time::Duration;

use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
use vmm::image::GuestImage;
use vmm::{layout, Machine, Outcome, VirtualPmu};

use crate::runtime::{self, rt, tag};

/// How long a program may run before the machine stops it, unless told otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(30);

/// A guest program ready to run: its image and the names of its log tags.
#[derive(Debug, Clone)]
pub struct Program {
    name: String,
    image: GuestImage,
    tags: Vec<String>,
}

/// One record of the guest's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// The program logged `value` under tag `name`.
    Value {
        /// The tag's name.
        name: String,
        /// The value.
        value: u64,
    },
    /// A RDMSR or WRMSR of `msr` raised #GP at `rip`.
    GpFault {
        /// The MSR (the guest's ECX).
        msr: u32,
        /// Where.
        rip: u64,
    },
    /// RDPMC with this ECX was emulated and returned `value`.
    Rdpmc {
        /// The guest's ECX.
        ecx: u32,
        /// The count returned.
        value: u64,
    },
    /// RDPMC with this ECX named no counter and raised #GP at `rip`.
    RdpmcFault {
        /// The guest's ECX.
        ecx: u32,
        /// Where.
        rip: u64,
    },
}

/// Why a run did not end well.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The machine could not be built or stopped the guest.
    #[error("guest {program:?}: {source}")]
    Machine {
        /// The program.
        program: String,
        /// The machine's error.
        source: vmm::Error,
    },
    /// An exception the runtime does not handle.
    #[error(
        "guest {program:?} took an unhandled {name} (vector {vector}) at rip={rip:#x}, error \
         code {error_code:#x}, cr2={cr2:#x}; see `Program::listing` for the code at that address"
    )]
    Exception {
        /// The program.
        program: String,
        /// The vector.
        vector: u8,
        /// Its mnemonic.
        name: &'static str,
        /// Where.
        rip: u64,
        /// The error code, 0 if none.
        error_code: u64,
        /// CR2 (the faulting address of a #PF).
        cr2: u64,
    },
    /// The program reported a failure status.
    #[error("guest {program:?} reported failure status {status}")]
    Failed {
        /// The program.
        program: String,
        /// The status.
        status: u32,
    },
}

/// A finished run: the machine (with its vPMU, for ledgers), the log and the NMI latencies.
pub struct Run<P: VirtualPmu> {
    /// The machine the program ran on.
    pub machine: Machine<P>,
    /// The guest's log, in order.
    pub log: Vec<Record>,
    /// NMIs the guest handled.
    pub nmis: u64,
    /// RDMSR/WRMSR/RDPMC #GP faults the guest took.
    pub gp_faults: u64,
    /// Each NMI handler's duration, in TSC ticks, as the guest measured it.
    pub nmi_latency_ticks: Vec<u64>,
}

impl<P: VirtualPmu> Run<P> {
    /// The NMI handler durations in nanoseconds (TSC ticks over the vCPU's TSC frequency).
    pub fn nmi_latency_ns(&self) -> Vec<f64> {
        let khz = f64::from(self.machine.tsc_khz().max(1));
        self.nmi_latency_ticks
            .iter()
            .map(|t| *t as f64 * 1e6 / khz)
            .collect()
    }

    /// Every value logged under `name`, in order.
    pub fn values(&self, name: &str) -> Vec<u64> {
        self.log
            .iter()
            .filter_map(|r| match r {
                Record::Value { name: n, value } if n == name => Some(*value),
                _ => None,
            })
            .collect()
    }

    /// The one value logged under `name`.
    ///
    /// # Panics
    /// If there is not exactly one.
    pub fn value(&self, name: &str) -> u64 {
        match self.values(name).as_slice() {
            [v] => *v,
            other => panic!("expected one value logged as {name:?}, found {other:?}"),
        }
    }
}

impl Program {
    pub(crate) fn new(name: String, image: GuestImage, tags: Vec<String>) -> Program {
        Program { name, image, tags }
    }

    /// The program's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the machine loads.
    pub fn image(&self) -> &GuestImage {
        &self.image
    }

    /// Runs the program on a new machine with `pmu`, for at most [`DEFAULT_LIMIT`].
    pub fn run<P: VirtualPmu>(&self, pmu: P) -> Result<Run<P>, RunError> {
        self.run_for(pmu, DEFAULT_LIMIT)
    }

    /// Runs the program on a new machine with `pmu`, for at most `limit`.
    pub fn run_for<P: VirtualPmu>(&self, pmu: P, limit: Duration) -> Result<Run<P>, RunError> {
        let machine_err = |source| RunError::Machine {
            program: self.name.clone(),
            source,
        };
        let caps = pmu.caps();
        let mut machine = Machine::new(pmu).map_err(machine_err)?;
        machine.load(&self.image).map_err(machine_err)?;
        machine
            .write(rt::NR_GP, &u64::from(caps.nr_gp).to_le_bytes())
            .and_then(|_| machine.write(rt::NR_FIXED, &u64::from(caps.nr_fixed).to_le_bytes()))
            .map_err(machine_err)?;
        let outcome = machine.run(limit).map_err(machine_err)?;
        let read = |gpa| machine.read_u64(gpa).map_err(machine_err);
        match outcome {
            Outcome::Done {
                status: runtime::STATUS_OK,
            }
            | Outcome::Halted => {}
            Outcome::Done { status } if status >= runtime::STATUS_EXCEPTION => {
                let vector = (status - runtime::STATUS_EXCEPTION) as u8;
                return Err(RunError::Exception {
                    program: self.name.clone(),
                    vector,
                    name: exception_name(vector),
                    rip: read(rt::EXC_RIP)?,
                    error_code: read(rt::EXC_ERROR)?,
                    cr2: read(rt::EXC_CR2)?,
                });
            }
            Outcome::Done { status } => {
                return Err(RunError::Failed {
                    program: self.name.clone(),
                    status,
                })
            }
        }
        let log = self.read_log(&machine).map_err(machine_err)?;
        let lat_count = read(layout::LAT)?.min(runtime::LAT_CAPACITY);
        let lat_bytes = machine
            .read(layout::LAT + 8, lat_count as usize * 8)
            .map_err(machine_err)?;
        Ok(Run {
            nmis: read(rt::NMI_COUNT)?,
            gp_faults: read(rt::GP_COUNT)?,
            nmi_latency_ticks: lat_bytes
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect(),
            log,
            machine,
        })
    }

    fn read_log<P: VirtualPmu>(&self, m: &Machine<P>) -> vmm::Result<Vec<Record>> {
        let count = m.read_u64(layout::LOG)?.min(runtime::LOG_CAPACITY);
        let bytes = m.read(layout::LOG + 8, count as usize * 16)?;
        Ok(bytes
            .chunks_exact(16)
            .map(|c| {
                let word = u64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
                let value = u64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
                let (id, aux) = (word as u32, (word >> 32) as u32);
                match id {
                    tag::GP_FAULT => Record::GpFault {
                        msr: aux,
                        rip: value,
                    },
                    tag::RDPMC => Record::Rdpmc { ecx: aux, value },
                    tag::RDPMC_FAULT => Record::RdpmcFault {
                        ecx: aux,
                        rip: value,
                    },
                    _ => Record::Value {
                        name: self
                            .tags
                            .get(id as usize)
                            .cloned()
                            .unwrap_or_else(|| format!("tag#{id}")),
                        value,
                    },
                }
            })
            .collect())
    }

    /// The program's code, disassembled (Intel syntax), one instruction a line.
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for (base, bytes) in &self.image.segments {
            let mut decoder = Decoder::with_ip(64, bytes, *base, DecoderOptions::NONE);
            let mut formatter = IntelFormatter::new();
            let mut text = String::new();
            for instr in &mut decoder {
                text.clear();
                formatter.format(&instr, &mut text);
                out.push_str(&format!("{:08x}  {text}\n", instr.ip()));
            }
        }
        out
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Record::Value { name, value } => write!(f, "{name} = {value:#x}"),
            Record::GpFault { msr, .. } => write!(f, "#GP on {}", vmm::msr::name(*msr)),
            Record::Rdpmc { ecx, value } => write!(f, "rdpmc({ecx:#x}) = {value:#x}"),
            Record::RdpmcFault { ecx, .. } => write!(f, "#GP on rdpmc({ecx:#x})"),
        }
    }
}

/// The SDM's mnemonic for exception `vector`.
pub fn exception_name(vector: u8) -> &'static str {
    const NAMES: [&str; 22] = [
        "#DE",
        "#DB",
        "NMI",
        "#BP",
        "#OF",
        "#BR",
        "#UD",
        "#NM",
        "#DF",
        "coprocessor overrun",
        "#TS",
        "#NP",
        "#SS",
        "#GP",
        "#PF",
        "reserved",
        "#MF",
        "#AC",
        "#MC",
        "#XM",
        "#VE",
        "#CP",
    ];
    NAMES
        .get(usize::from(vector))
        .copied()
        .unwrap_or("exception")
}

impl Program {
    /// Drops every IDT gate, so that the first exception triple-faults (for tests of the
    /// machine's triple-fault report).
    #[doc(hidden)]
    pub fn clear_idt_for_test(&mut self) {
        self.image.idt.clear();
    }
}
