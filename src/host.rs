//! What host the numbers come from: kernel, CPU, KVM module, NMI watchdog, perf backend.

use std::path::Path;

/// The host, as the table's host line and the JSON describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostInfo {
    /// `uname -srm`.
    pub kernel: String,
    /// `model name` of the first CPU in /proc/cpuinfo.
    pub cpu: String,
    /// CPUs this process may use.
    pub cpus: usize,
    /// Which KVM vendor module is loaded, from /sys/module: `kvm_pvm`, `kvm_intel`,
    /// `kvm_amd`, or `none`.
    pub kvm_module: String,
    /// /proc/sys/kernel/nmi_watchdog (`0` off, `1` on, `unknown`).
    pub nmi_watchdog: String,
    /// The perf backend the vPMUs use (`software`, `hardware`).
    pub backend: String,
    /// Why that backend, as `vmm::perf::select` says.
    pub backend_reason: String,
}

impl HostInfo {
    /// Describes this host, with the backend `selected`.
    pub fn probe(selected: &vmm::perf::Selected) -> HostInfo {
        HostInfo {
            kernel: uname(),
            cpu: cpu_model(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kvm_module: kvm_module(Path::new("/sys/module")),
            nmi_watchdog: std::fs::read_to_string("/proc/sys/kernel/nmi_watchdog")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            backend: selected.backend.name().to_string(),
            backend_reason: selected.reason.clone(),
        }
    }
}

/// `sysname release machine`, as `uname -srm` prints them.
pub fn uname() -> String {
    // SAFETY: utsname is plain old data; uname fills it and we read NUL-terminated fields.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid, writable utsname.
    if unsafe { libc::uname(&mut u) } != 0 {
        return "unknown".into();
    }
    let field = |f: &[libc::c_char]| {
        let bytes: Vec<u8> = f
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    format!(
        "{} {} {}",
        field(&u.sysname),
        field(&u.release),
        field(&u.machine)
    )
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The KVM vendor module under `sys_module` (normally /sys/module). kvm-pvm is checked
/// first: on a nested host it is the one that runs guests even if another is loaded.
pub fn kvm_module(sys_module: &Path) -> String {
    ["kvm_pvm", "kvm_intel", "kvm_amd"]
        .into_iter()
        .find(|m| sys_module.join(m).exists())
        .unwrap_or("none")
        .to_string()
}
