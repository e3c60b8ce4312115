//! A machine that cannot get KVM says why and what to do.

use vmm::{Error, Fault, Machine, PmuCaps, Service, VirtualPmu};

/// A vPMU that refuses every MSR and promises `.0` in CPUID.
struct NoPmu(PmuCaps);

impl VirtualPmu for NoPmu {
    fn caps(&self) -> PmuCaps {
        self.0
    }
    fn get_msr(&mut self, _: u32) -> Result<u64, Fault> {
        Err(Fault)
    }
    fn set_msr(&mut self, _: u32, _: u64) -> Result<(), Fault> {
        Err(Fault)
    }
    fn service(&mut self) -> Service {
        Service::default()
    }
}

fn message(path: &str) -> String {
    match Machine::with_kvm_path(path, NoPmu(PmuCaps::default())) {
        Err(e @ Error::KvmUnavailable { .. }) => e.to_string(),
        Err(other) => panic!("expected KvmUnavailable, got {other}"),
        Ok(_) => panic!("{path} is not a KVM device, yet a machine was built"),
    }
}

#[test]
fn missing_device_names_the_cause_and_the_fix() {
    let msg = message("/nonexistent/kvm");
    assert!(msg.contains("/nonexistent/kvm"), "{msg}");
    assert!(msg.contains("KVM is not available"), "{msg}");
    assert!(msg.contains("modprobe"), "{msg}");
}

#[test]
fn a_device_that_is_not_kvm_is_refused() {
    let msg = message("/dev/null");
    assert!(msg.contains("not the KVM device"), "{msg}");
}

#[test]
fn an_unopenable_path_is_refused() {
    let dir = std::env::temp_dir();
    let msg = message(dir.to_str().expect("utf-8 temp dir"));
    assert!(msg.starts_with("cannot open"), "{msg}");
}

#[test]
fn invalid_caps_are_refused_before_kvm_is_touched() {
    let err = Machine::with_kvm_path("/nonexistent", NoPmu(PmuCaps::with_gp(9)))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("9 GP counters"), "{err}");
}
