//! The machine and the guest runtime on real KVM, with a small test vPMU.

use std::collections::BTreeMap;
use std::time::Duration;

use guests::{Guest, Record, RunError};
use iced_x86::code_asm::*;
use vmm::msr::{IA32_PERFEVTSEL0, IA32_PERF_GLOBAL_CTRL, IA32_PERF_GLOBAL_STATUS};
use vmm::{Fault, PmuCaps, Service, VirtualPmu};

/// A vPMU that stores what it is given, refuses one MSR, and raises a PMI on request.
#[derive(Default)]
struct Recorder {
    regs: BTreeMap<u32, u64>,
    writes: Vec<(u32, u64)>,
    pmi_after_writes_to: Option<u32>,
    pmi_pending: bool,
}

impl VirtualPmu for Recorder {
    fn caps(&self) -> PmuCaps {
        PmuCaps::default()
    }
    fn get_msr(&mut self, msr: u32) -> Result<u64, Fault> {
        if msr == IA32_PERF_GLOBAL_STATUS + 100 {
            return Err(Fault);
        }
        Ok(self.regs.get(&msr).copied().unwrap_or(0))
    }
    fn set_msr(&mut self, msr: u32, data: u64) -> Result<(), Fault> {
        if msr == IA32_PERF_GLOBAL_STATUS {
            return Err(Fault);
        }
        self.writes.push((msr, data));
        self.regs.insert(msr, data);
        if self.pmi_after_writes_to == Some(msr) {
            self.pmi_pending = true;
        }
        Ok(())
    }
    fn service(&mut self) -> Service {
        Service {
            pmi: std::mem::take(&mut self.pmi_pending),
        }
    }
}

#[test]
fn boots_in_long_mode_and_runs_ring3() {
    let mut g = Guest::new("ring3");
    g.asm(|a| a.mov(rbx, 7u64));
    g.user(|u| {
        u.spin(1_000_000);
        u.asm(|a| {
            a.mov(rax, cs)?;
            a.and(rax, 3)?;
            a.mov(rbx, rax)
        });
    });
    g.log("cpl in user block", rbx);
    g.asm(|a| {
        a.mov(rax, cs)?;
        a.and(rax, 3)
    });
    g.log("cpl after", rax);
    let run = g.finish().run(Recorder::default()).expect("runs");
    assert_eq!(run.value("cpl in user block"), 3);
    assert_eq!(run.value("cpl after"), 0);
}

#[test]
fn pmu_msrs_reach_the_vpmu_and_faults_become_gp() {
    let mut g = Guest::new("msr routing");
    g.wrmsr(IA32_PERFEVTSEL0, 0x43_00C0);
    g.read_msr("evtsel0", IA32_PERFEVTSEL0);
    g.wrmsr(IA32_PERF_GLOBAL_STATUS, 1); // the test vPMU refuses this
    g.read_msr("after fault", IA32_PERFEVTSEL0);
    let run = g.finish().run(Recorder::default()).expect("runs");
    assert_eq!(run.value("evtsel0"), 0x43_00C0);
    assert_eq!(run.value("after fault"), 0x43_00C0);
    assert_eq!(run.gp_faults, 1);
    assert!(matches!(
        run.log[1],
        Record::GpFault {
            msr: IA32_PERF_GLOBAL_STATUS,
            ..
        }
    ));
    assert_eq!(
        run.machine.pmu().writes,
        vec![(IA32_PERFEVTSEL0, 0x43_00C0)]
    );
}

#[test]
fn unknown_msr_gets_gp() {
    let mut g = Guest::new("unknown msr");
    g.rdmsr(0x4000_1234); // no such MSR
    g.read_msr("global ctrl", IA32_PERF_GLOBAL_CTRL);
    let run = g.finish().run(Recorder::default()).expect("runs");
    assert_eq!(run.gp_faults, 1);
    assert_eq!(
        run.log[0],
        Record::GpFault {
            msr: 0x4000_1234,
            rip: run.log_rip(0)
        }
    );
}

trait RipOf {
    fn log_rip(&self, i: usize) -> u64;
}
impl<P: VirtualPmu> RipOf for guests::Run<P> {
    fn log_rip(&self, i: usize) -> u64 {
        match self.log[i] {
            Record::GpFault { rip, .. } => rip,
            _ => 0,
        }
    }
}

#[test]
fn injected_nmi_reaches_the_guest_handler() {
    let mut g = Guest::new("nmi");
    g.user(|u| {
        u.spin(10);
    });
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1); // the test vPMU raises a PMI after this write
    g.user(|u| {
        u.wait_for_nmis(1);
    });
    let pmu = Recorder {
        pmi_after_writes_to: Some(IA32_PERF_GLOBAL_CTRL),
        ..Default::default()
    };
    let run = g.finish().run(pmu).expect("runs");
    assert_eq!(run.nmis, 1);
    assert_eq!(run.values("nmi.status"), vec![0]);
    assert_eq!(run.nmi_latency_ticks.len(), 1);
    assert_eq!(run.machine.stats().nmis_injected, 1);
}

#[test]
fn runaway_guest_is_stopped_by_the_deadline() {
    let mut g = Guest::new("runaway");
    g.user(|u| {
        u.wait_for_nmis(1); // no NMI will come
    });
    let err = g
        .finish()
        .run_for(Recorder::default(), Duration::from_millis(300))
        .err()
        .expect("must not finish");
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            RunError::Machine {
                source: vmm::Error::Runaway { .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("ring 3"), "{msg}");
}

#[test]
fn triple_fault_is_an_error() {
    let mut g = Guest::new("triple fault");
    // An empty IDT makes any exception a triple fault.
    g.asm(|a| {
        a.mov(rax, 0x8000_0000_0000u64)?; // non-canonical
        a.mov(qword_ptr(rax), 0)
    });
    let mut program = g.finish();
    program.clear_idt_for_test();
    let err = program.run(Recorder::default()).err().expect("must fail");
    assert!(
        matches!(
            err,
            RunError::Machine {
                source: vmm::Error::TripleFault { .. },
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn unhandled_exception_names_vector_and_rip() {
    let mut g = Guest::new("ud2");
    g.asm(|a| a.ud2());
    let err = g
        .finish()
        .run(Recorder::default())
        .err()
        .expect("must fail");
    match &err {
        RunError::Exception {
            vector: 6,
            name: "#UD",
            rip,
            ..
        } => assert!(*rip >= vmm::layout::CODE),
        other => panic!("{other}"),
    }
}

#[test]
fn rdpmc_is_emulated_through_gp_in_both_rings() {
    let mut g = Guest::new("rdpmc");
    g.wrmsr(vmm::msr::IA32_PMC0 + 1, 1234);
    g.rdpmc("ring0", 1);
    g.user(|u| {
        u.rdpmc("ring3", 1);
        u.rdpmc("bad index", 9);
    });
    let run = g.finish().run(Recorder::default()).expect("runs");
    assert_eq!(run.value("ring0"), 1234);
    assert_eq!(run.value("ring3"), 1234);
    assert!(run
        .log
        .iter()
        .any(|r| matches!(r, Record::RdpmcFault { ecx: 9, .. })));
}

/// A vPMU with one host perf event: created on the first GLOBAL_CTRL write, it raises a PMI
/// when the host reports its overflow.
struct OneEvent {
    perf: vmm::perf::HostPerf,
    event: Option<vmm::perf::PerfEvent>,
    overflows: u64,
}

impl VirtualPmu for OneEvent {
    fn caps(&self) -> PmuCaps {
        PmuCaps::default()
    }
    fn get_msr(&mut self, _: u32) -> Result<u64, Fault> {
        Ok(self.overflows)
    }
    fn set_msr(&mut self, msr: u32, _: u64) -> Result<(), Fault> {
        if msr == IA32_PERF_GLOBAL_CTRL && self.event.is_none() {
            use vmm::perf::{EventAttr, EventKind, PERF_COUNT_HW_INSTRUCTIONS};
            let mut attr =
                EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_INSTRUCTIONS), 100_000);
            attr.intr = true;
            let event = self
                .perf
                .perf_event_create_kernel_counter(attr, 0)
                .unwrap_or_else(|e| panic!("{e}"));
            self.event = Some(event);
        }
        Ok(())
    }
    fn service(&mut self) -> Service {
        let overflowed = self
            .event
            .as_mut()
            .is_some_and(|e| self.perf.take_overflow(e));
        if overflowed {
            // One PMI is all this test wants: stop the event so it cannot fire again.
            let event = self.event.take().expect("present");
            self.perf.perf_event_release_kernel(event);
            self.overflows += 1;
        }
        Service { pmi: overflowed }
    }
}

#[test]
fn host_perf_overflow_arrives_as_a_guest_nmi() {
    let selected = vmm::perf::select(vmm::perf::BackendChoice::Auto).expect("a backend");
    let perf = vmm::perf::HostPerf::new(selected.backend).expect("host perf");
    let mut g = Guest::new("overflow to nmi");
    g.wrmsr(IA32_PERF_GLOBAL_CTRL, 1);
    g.user(|u| {
        u.wait_for_nmis(1);
    });
    g.read_msr("overflows seen by the vPMU", IA32_PERF_GLOBAL_CTRL);
    let run = g
        .finish()
        .run(OneEvent {
            perf,
            event: None,
            overflows: 0,
        })
        .expect("the NMI arrives and the guest finishes");
    assert_eq!(run.nmis, 1);
    assert_eq!(run.value("overflows seen by the vPMU"), 1);
    let stats = run.machine.stats();
    assert_eq!(stats.nmis_injected, 1);
    assert!(
        stats.interrupted >= 1,
        "the overflow signal must have interrupted KVM_RUN: {stats:?}"
    );
}
