//! No descriptor outlives a machine: KVM's, and every host perf event its vPMU opened.
//! (A test binary of its own: the count is process-wide, so no other test may run beside it.)

use guests::Guest;
use vmm::msr::IA32_PERF_GLOBAL_CTRL;
use vmm::perf::{select, BackendChoice, EventAttr, EventKind, HostPerf, PerfEvent};
use vmm::{Fault, PmuCaps, Service, VirtualPmu};

/// A vPMU that holds one open host perf event for its whole life.
struct HoldsEvent {
    _perf: HostPerf,
    _event: PerfEvent,
}

impl VirtualPmu for HoldsEvent {
    fn caps(&self) -> PmuCaps {
        PmuCaps::default()
    }
    fn get_msr(&mut self, _: u32) -> Result<u64, Fault> {
        Ok(0)
    }
    fn set_msr(&mut self, _: u32, _: u64) -> Result<(), Fault> {
        Ok(())
    }
    fn service(&mut self) -> Service {
        Service::default()
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("procfs").count()
}

#[test]
fn dropping_a_machine_closes_every_descriptor() {
    let before = open_fds();
    for _ in 0..20 {
        let mut perf = HostPerf::new(select(BackendChoice::Software).expect("software").backend)
            .expect("host perf");
        let attr = EventAttr::counting(EventKind::Hardware(0), 1 << 40);
        let event = perf
            .perf_event_create_kernel_counter(attr, 0)
            .expect("created");
        let mut g = Guest::new("holds an event");
        g.read_msr("x", IA32_PERF_GLOBAL_CTRL);
        let run = g
            .finish()
            .run(HoldsEvent {
                _perf: perf,
                _event: event,
            })
            .expect("runs");
        assert!(
            open_fds() > before,
            "the machine and the event are open while the run lives"
        );
        drop(run);
    }
    assert_eq!(
        open_fds(),
        before,
        "a machine or its perf events leaked descriptors"
    );
}
