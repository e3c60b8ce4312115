//! The KVM machine: one vCPU in 64-bit long mode, its PMU MSRs routed to a [`VirtualPmu`].
//!
//! A [`Machine`] is built in four steps that mirror what real hardware and firmware do:
//!
//! 1. **CPUID** ([`Machine::new`]): KVM's supported CPUID with leaf 0xA replaced by the
//!    vPMU's geometry, set with `KVM_SET_CPUID2` *before* the long-mode registers (KVM
//!    checks the vCPU model when paging is switched on).
//! 2. **MSR routing**: `KVM_CAP_X86_USER_SPACE_MSR` plus an MSR filter that denies every PMU
//!    MSR, so each guest `RDMSR`/`WRMSR` of one exits to user space.
//! 3. **Long mode** ([`Machine::load`]): page tables, GDT, TSS, IDT and the registers of a
//!    CPU that has just switched to 64-bit mode.
//! 4. **The run loop** ([`Machine::run`]): before every entry, ask the vPMU what its host
//!    perf events reported and inject an NMI if a PMI is due; on every exit, route MSR
//!    accesses, collect console output, and stop on `done`, a triple fault or the deadline.

use std::time::{Duration, Instant};

use kvm_bindings::{kvm_enable_cap, kvm_segment, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{
    Cap, Kvm, MsrExitReason, MsrFilterDefaultAction, MsrFilterRange, MsrFilterRangeFlags, VcpuExit,
    VcpuFd, VmFd,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use crate::error::{kvm_open_fix, Error, GuestRegs, Result};
use crate::image::GuestImage;
use crate::layout::*;
use crate::msr::PMU_MSR_BLOCKS;
use crate::pmu::VirtualPmu;
use crate::signal::{self, DeadlineTimer, RunGuard};

/// How a run ended, when it ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The guest wrote `status` to [`PORT_DONE`].
    Done {
        /// 0 for success; the guest runtime defines the rest.
        status: u32,
    },
    /// The guest executed `HLT` with nothing to wake it.
    Halted,
}

/// What the run loop saw, for diagnostics and the compare command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExitStats {
    /// PMU MSR reads routed to the vPMU.
    pub pmu_rdmsr: u64,
    /// PMU MSR writes routed to the vPMU.
    pub pmu_wrmsr: u64,
    /// Accesses the vPMU refused (each became a #GP).
    pub pmu_faults: u64,
    /// Accesses to MSRs KVM did not know, answered with #GP.
    pub unknown_msr: u64,
    /// NMIs injected with `KVM_NMI`.
    pub nmis_injected: u64,
    /// `KVM_RUN` returns with `EINTR` (a signal: an overflow or the deadline).
    pub interrupted: u64,
    /// All exits.
    pub exits: u64,
}

/// A one-vCPU KVM virtual machine whose PMU is `P`.
///
/// ```
/// use vmm::{image::GuestImage, layout, machine::Machine, PmuCaps};
/// # struct NoPmu;
/// # impl vmm::VirtualPmu for NoPmu {
/// #     fn caps(&self) -> PmuCaps { PmuCaps::default() }
/// #     fn get_msr(&mut self, _: u32) -> Result<u64, vmm::Fault> { Err(vmm::Fault) }
/// #     fn set_msr(&mut self, _: u32, _: u64) -> Result<(), vmm::Fault> { Err(vmm::Fault) }
/// #     fn service(&mut self) -> vmm::Service { vmm::Service::default() }
/// # }
/// // mov eax, 0; mov dx, 0xF4; out dx, eax
/// let code = vec![0xB8, 0, 0, 0, 0, 0x66, 0xBA, 0xF4, 0x00, 0xEF];
/// let image = GuestImage { segments: vec![(layout::CODE, code)], entry: layout::CODE, idt: vec![] };
/// let mut m = Machine::new(NoPmu)?;
/// m.load(&image)?;
/// assert_eq!(m.run(std::time::Duration::from_secs(5))?, vmm::machine::Outcome::Done { status: 0 });
/// # Ok::<(), vmm::Error>(())
/// ```
pub struct Machine<P: VirtualPmu> {
    _kvm: Kvm,
    _vm: VmFd,
    vcpu: VcpuFd,
    mem: GuestMemoryMmap,
    pmu: P,
    console: String,
    stats: ExitStats,
    tsc_khz: u32,
}

impl<P: VirtualPmu> Machine<P> {
    /// Builds a machine on `/dev/kvm` whose PMU MSRs go to `pmu`.
    pub fn new(pmu: P) -> Result<Self> {
        Self::with_kvm_path("/dev/kvm", pmu)
    }

    /// Builds a machine on the KVM device at `path`.
    pub fn with_kvm_path(path: &str, pmu: P) -> Result<Self> {
        let caps = pmu.caps();
        caps.validate().map_err(Error::Image)?;
        let kvm = open_kvm(path)?;
        for (cap, name, why) in [
            (
                Cap::X86UserSpaceMsr,
                "KVM_CAP_X86_USER_SPACE_MSR",
                "routes PMU MSR accesses to user space",
            ),
            (
                Cap::X86MsrFilter,
                "KVM_CAP_X86_MSR_FILTER",
                "selects which MSRs are routed",
            ),
            (
                Cap::UserNmi,
                "KVM_CAP_USER_NMI",
                "injects the PMI as an NMI",
            ),
            (
                Cap::ImmediateExit,
                "KVM_CAP_IMMEDIATE_EXIT",
                "lets a signal stop KVM_RUN without a race",
            ),
        ] {
            if !kvm.check_extension(cap) {
                return Err(Error::MissingCapability {
                    cap: name,
                    why,
                    fix: "use a host kernel of 5.10 or later with KVM built in",
                });
            }
        }
        let vm = kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)])
            .map_err(|e| Error::Memory(e.to_string()))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = mem
                .get_host_address(region.start_addr())
                .map_err(|e| Error::Memory(e.to_string()))?;
            let region = kvm_bindings::kvm_userspace_memory_region {
                slot: slot as u32,
                guest_phys_addr: region.start_addr().0,
                memory_size: region.len(),
                userspace_addr: host as u64,
                flags: 0,
            };
            // SAFETY: the region is backed by `mem`, which the machine owns and keeps mapped
            // for as long as the VM exists.
            unsafe { vm.set_user_memory_region(region) }
                .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        route_pmu_msrs(&vm)?;
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&guest_cpuid(&kvm, &caps)?)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        let tsc_khz = vcpu.get_tsc_khz().map_err(kvm_err("KVM_GET_TSC_KHZ"))?;
        signal::install().map_err(Error::Signal)?;
        Ok(Machine {
            _kvm: kvm,
            _vm: vm,
            vcpu,
            mem,
            pmu,
            console: String::new(),
            stats: ExitStats::default(),
            tsc_khz,
        })
    }

    /// Writes the boot structures and `image` into guest memory and points the vCPU at its
    /// entry, in 64-bit mode at ring 0.
    pub fn load(&mut self, image: &GuestImage) -> Result<()> {
        write_page_tables(&self.mem)?;
        write_gdt_and_tss(&self.mem)?;
        write_idt(&self.mem, image)?;
        for (gpa, bytes) in &image.segments {
            if gpa + bytes.len() as u64 > MEM_SIZE || *gpa < RUNTIME {
                return Err(Error::Image(format!(
                    "{} bytes at {gpa:#x} do not fit the guest layout",
                    bytes.len()
                )));
            }
            self.write(*gpa, bytes)?;
        }
        self.set_long_mode_registers(image.entry)
    }

    /// Runs the guest until it is done or halts, it fails, or `limit` has passed.
    pub fn run(&mut self, limit: Duration) -> Result<Outcome> {
        let deadline = Instant::now() + limit;
        let _timer = DeadlineTimer::arm(limit).map_err(Error::Signal)?;
        let run_ptr: *mut kvm_bindings::kvm_run = self.vcpu.get_kvm_run();
        // SAFETY: the kvm_run mapping belongs to `self.vcpu`, which outlives the guard.
        let _guard = unsafe { RunGuard::new(run_ptr) };
        loop {
            // ANCHOR: run_loop_entry
            // KVM's vcpu_enter_guest checks KVM_REQ_PMU and KVM_REQ_PMI at this point.
            if self.pmu.service().pmi {
                self.vcpu.nmi().map_err(kvm_err("KVM_NMI"))?;
                self.stats.nmis_injected += 1;
            }
            let exit = self.vcpu.run();
            // ANCHOR_END: run_loop_entry
            self.stats.exits += 1;
            match exit {
                Ok(VcpuExit::IoOut(PORT_DONE, data)) => {
                    let mut status = [0u8; 4];
                    status[..data.len().min(4)].copy_from_slice(&data[..data.len().min(4)]);
                    return Ok(Outcome::Done {
                        status: u32::from_le_bytes(status),
                    });
                }
                Ok(VcpuExit::IoOut(PORT_CONSOLE, data)) => {
                    self.console.extend(data.iter().map(|&b| b as char));
                }
                Ok(VcpuExit::Hlt) => return Ok(Outcome::Halted),
                Ok(VcpuExit::X86Rdmsr(exit)) => {
                    if exit.reason == MsrExitReason::Filter {
                        self.stats.pmu_rdmsr += 1;
                        match self.pmu.get_msr(exit.index) {
                            Ok(v) => *exit.data = v,
                            Err(_) => {
                                self.stats.pmu_faults += 1;
                                *exit.error = 1;
                            }
                        }
                    } else {
                        self.stats.unknown_msr += 1;
                        *exit.error = 1;
                    }
                }
                // ANCHOR: wrmsr_exit
                Ok(VcpuExit::X86Wrmsr(exit)) => {
                    if exit.reason == MsrExitReason::Filter {
                        self.stats.pmu_wrmsr += 1;
                        if self.pmu.set_msr(exit.index, exit.data).is_err() {
                            self.stats.pmu_faults += 1;
                            *exit.error = 1;
                        }
                    } else {
                        self.stats.unknown_msr += 1;
                        *exit.error = 1;
                    }
                }
                // ANCHOR_END: wrmsr_exit
                Ok(VcpuExit::Shutdown) => {
                    return Err(Error::TripleFault { regs: self.regs() });
                }
                Ok(other) => {
                    let what = format!("{other:?}");
                    return Err(Error::UnexpectedExit {
                        what,
                        regs: self.regs(),
                    });
                }
                // ANCHOR: eintr
                Err(e) if e.errno() == libc::EINTR => {
                    // Clear before looking at what the signal reported, so that a signal
                    // arriving from here on makes the next KVM_RUN return at once.
                    self.vcpu.set_kvm_immediate_exit(0);
                    self.stats.interrupted += 1;
                    if Instant::now() >= deadline {
                        return Err(Error::Runaway {
                            limit,
                            regs: self.regs(),
                        });
                    }
                }
                // ANCHOR_END: eintr
                Err(e) if e.errno() == libc::EAGAIN => {}
                Err(source) => {
                    return Err(Error::Kvm {
                        what: "KVM_RUN",
                        source,
                    })
                }
            }
        }
    }

    /// The vPMU.
    pub fn pmu(&self) -> &P {
        &self.pmu
    }

    /// The vPMU, mutably.
    pub fn pmu_mut(&mut self) -> &mut P {
        &mut self.pmu
    }

    /// Takes the machine apart and returns its vPMU.
    pub fn into_pmu(self) -> P {
        self.pmu
    }

    /// The vCPU's TSC frequency in kHz, to turn the guest's `rdtsc` deltas into time.
    pub fn tsc_khz(&self) -> u32 {
        self.tsc_khz
    }

    /// What the guest wrote to [`PORT_CONSOLE`].
    pub fn console(&self) -> &str {
        &self.console
    }

    /// Exit counts of the runs so far.
    pub fn stats(&self) -> ExitStats {
        self.stats
    }

    /// Reads `len` bytes of guest memory at `gpa`.
    pub fn read(&self, gpa: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; len];
        self.mem
            .read_slice(&mut buf, GuestAddress(gpa))
            .map_err(|e| Error::Memory(format!("read {len} bytes at {gpa:#x}: {e}")))?;
        Ok(buf)
    }

    /// Reads a little-endian u64 of guest memory at `gpa`.
    pub fn read_u64(&self, gpa: u64) -> Result<u64> {
        self.mem
            .read_obj(GuestAddress(gpa))
            .map_err(|e| Error::Memory(format!("read u64 at {gpa:#x}: {e}")))
    }

    /// Writes `bytes` into guest memory at `gpa`.
    pub fn write(&self, gpa: u64, bytes: &[u8]) -> Result<()> {
        write_mem(&self.mem, gpa, bytes)
    }

    /// The guest's registers now.
    pub fn regs(&self) -> GuestRegs {
        let regs = self.vcpu.get_regs().unwrap_or_default();
        let sregs = self.vcpu.get_sregs().unwrap_or_default();
        GuestRegs {
            rip: regs.rip,
            rsp: regs.rsp,
            rflags: regs.rflags,
            rax: regs.rax,
            rcx: regs.rcx,
            cs: sregs.cs.selector,
            cr2: sregs.cr2,
        }
    }

    fn set_long_mode_registers(&mut self, entry: u64) -> Result<()> {
        let mut sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        let code = segment(KERNEL_CS, 0xB, 0, true);
        let data = segment(KERNEL_DS, 0x3, 0, false);
        sregs.cs = code;
        (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
        sregs.tr = kvm_segment {
            base: TSS,
            limit: TSS_LIMIT,
            selector: TSS_SEL,
            type_: 0xB, // 64-bit TSS, busy
            present: 1,
            s: 0,
            ..Default::default()
        };
        sregs.gdt.base = GDT;
        sregs.gdt.limit = (GDT_ENTRIES.len() * 8 + 16 - 1) as u16;
        sregs.idt.base = IDT;
        sregs.idt.limit = 256 * 16 - 1;
        sregs.cr3 = PML4;
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        sregs.efer = EFER_LME | EFER_LMA | EFER_SCE;
        self.vcpu
            .set_sregs(&sregs)
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        let regs = kvm_bindings::kvm_regs {
            rip: entry,
            rsp: KERNEL_STACK_TOP,
            rflags: 0x2,
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))?;
        Ok(())
    }
}

const CR0_PE: u64 = 1;
const CR0_MP: u64 = 1 << 1;
const CR0_ET: u64 = 1 << 4;
const CR0_NE: u64 = 1 << 5;
const CR0_WP: u64 = 1 << 16;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_OSFXSR: u64 = 1 << 9;
const CR4_OSXMMEXCPT: u64 = 1 << 10;
const EFER_SCE: u64 = 1;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const TSS_LIMIT: u32 = 0x67;

/// Flat segment descriptors: null, kernel code, kernel data, user data, user code. The TSS
/// descriptor (16 bytes) follows them.
const GDT_ENTRIES: [u64; 5] = [
    0,
    0x00AF_9A00_0000_FFFF, // 0x08: ring-0 64-bit code
    0x00CF_9200_0000_FFFF, // 0x10: ring-0 data
    0x00CF_F200_0000_FFFF, // 0x18: ring-3 data
    0x00AF_FA00_0000_FFFF, // 0x20: ring-3 64-bit code
];

fn segment(selector: u16, type_: u8, dpl: u8, code: bool) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xFFFF_FFFF,
        selector,
        type_,
        present: 1,
        dpl,
        db: u8::from(!code),
        s: 1,
        l: u8::from(code),
        g: 1,
        ..Default::default()
    }
}

fn kvm_err(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { what, source }
}

fn open_kvm(path: &str) -> Result<Kvm> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| Error::KvmUnavailable {
            path: path.to_string(),
            fix: kvm_open_fix(&source),
            source,
        })?;
    // SAFETY: we own the descriptor we just opened and hand it to Kvm, which closes it.
    let kvm = unsafe { Kvm::from_raw_fd(file.into_raw_fd()) };
    match kvm.get_api_version() {
        12 => Ok(kvm),
        v => Err(Error::KvmUnavailable {
            path: path.to_string(),
            source: std::io::Error::other(format!("KVM_GET_API_VERSION answered {v}, not 12")),
            fix: "this is not the KVM device; use /dev/kvm",
        }),
    }
}

/// Denies every PMU MSR in KVM's MSR filter, so each access exits to user space.
fn route_pmu_msrs(vm: &VmFd) -> Result<()> {
    let cap = kvm_enable_cap {
        cap: kvm_bindings::KVM_CAP_X86_USER_SPACE_MSR,
        args: [
            u64::from(
                (MsrExitReason::Filter | MsrExitReason::Unknown | MsrExitReason::Inval).bits(),
            ),
            0,
            0,
            0,
        ],
        ..Default::default()
    };
    vm.enable_cap(&cap)
        .map_err(kvm_err("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)"))?;
    // An all-zero bitmap denies every MSR of the range; denied accesses exit with reason
    // Filter instead of being handled (or silently answered) in the kernel.
    let bitmaps: Vec<Vec<u8>> = PMU_MSR_BLOCKS
        .iter()
        .map(|b| vec![0u8; b.count.div_ceil(8) as usize])
        .collect();
    let ranges: Vec<MsrFilterRange<'_>> = PMU_MSR_BLOCKS
        .iter()
        .zip(&bitmaps)
        .map(|(b, bitmap)| MsrFilterRange {
            flags: MsrFilterRangeFlags::READ | MsrFilterRangeFlags::WRITE,
            base: b.base,
            msr_count: b.count,
            bitmap,
        })
        .collect();
    vm.set_msr_filter(MsrFilterDefaultAction::ALLOW, &ranges)
        .map_err(kvm_err("KVM_X86_SET_MSR_FILTER"))
}

/// KVM's supported CPUID, with the PMU leaves describing the user-space vPMU.
fn guest_cpuid(kvm: &Kvm, caps: &crate::PmuCaps) -> Result<CpuId> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    let leaf = caps.cpuid_0xa();
    let mut has_0xa = false;
    for e in cpuid.as_mut_slice() {
        match e.function {
            0 => e.eax = e.eax.max(0xA),
            // PDCM (ECX bit 15): IA32_PERF_CAPABILITIES exists.
            1 => e.ecx |= 1 << 15,
            0xA => {
                (e.eax, e.ebx, e.ecx, e.edx) = (leaf.eax, leaf.ebx, leaf.ecx, leaf.edx);
                has_0xa = true;
            }
            _ => {}
        }
    }
    if !has_0xa {
        let entry = kvm_bindings::kvm_cpuid_entry2 {
            function: 0xA,
            eax: leaf.eax,
            ebx: leaf.ebx,
            ecx: leaf.ecx,
            edx: leaf.edx,
            ..Default::default()
        };
        cpuid
            .push(entry)
            .map_err(|e| Error::Image(format!("CPUID table full: {e:?}")))?;
    }
    Ok(cpuid)
}

fn write_mem(mem: &GuestMemoryMmap, gpa: u64, bytes: &[u8]) -> Result<()> {
    mem.write_slice(bytes, GuestAddress(gpa))
        .map_err(|e| Error::Memory(format!("write {} bytes at {gpa:#x}: {e}", bytes.len())))
}

fn write_u64s(mem: &GuestMemoryMmap, gpa: u64, words: &[u64]) -> Result<()> {
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    write_mem(mem, gpa, &bytes)
}

/// Identity map of the first GiB in 2 MiB pages, present, writable and user-accessible.
fn write_page_tables(mem: &GuestMemoryMmap) -> Result<()> {
    const P_RW_US: u64 = 0b111;
    const PAGE_SIZE_2M: u64 = 1 << 7;
    write_u64s(mem, PML4, &[PDPT | P_RW_US])?;
    write_u64s(mem, PDPT, &[PD | P_RW_US])?;
    let pd: Vec<u64> = (0..512u64)
        .map(|i| (i << 21) | P_RW_US | PAGE_SIZE_2M)
        .collect();
    write_u64s(mem, PD, &pd)
}

fn write_gdt_and_tss(mem: &GuestMemoryMmap) -> Result<()> {
    // A 64-bit TSS descriptor is two GDT slots: base and limit split the usual way, type 9
    // (available 64-bit TSS), present; the second slot holds base bits 63:32.
    let base = TSS;
    let lim = u64::from(TSS_LIMIT);
    let low = (lim & 0xFFFF)
        | (base & 0xFF_FFFF) << 16
        | 0x89 << 40
        | ((lim >> 16) & 0xF) << 48
        | ((base >> 24) & 0xFF) << 56;
    let high = base >> 32;
    let mut gdt = GDT_ENTRIES.to_vec();
    gdt.extend([low, high]);
    write_u64s(mem, GDT, &gdt)?;
    // TSS: RSP0 at offset 4; the I/O map base at offset 0x66 points past the limit (no map).
    let mut tss = [0u8; 0x68];
    tss[4..12].copy_from_slice(&INTERRUPT_STACK_TOP.to_le_bytes());
    tss[0x66..0x68].copy_from_slice(&0x68u16.to_le_bytes());
    write_mem(mem, TSS, &tss)
}

fn write_idt(mem: &GuestMemoryMmap, image: &GuestImage) -> Result<()> {
    let mut idt = vec![0u8; 256 * 16];
    for gate in &image.idt {
        let h = gate.handler;
        // Interrupt gate (type 0xE), present, DPL 0 or 3.
        let attr: u8 = if gate.user_callable { 0xEE } else { 0x8E };
        let e = &mut idt[usize::from(gate.vector) * 16..][..16];
        e[0..2].copy_from_slice(&(h as u16).to_le_bytes());
        e[2..4].copy_from_slice(&KERNEL_CS.to_le_bytes());
        e[4] = 0;
        e[5] = attr;
        e[6..8].copy_from_slice(&((h >> 16) as u16).to_le_bytes());
        e[8..12].copy_from_slice(&((h >> 32) as u32).to_le_bytes());
    }
    write_mem(mem, IDT, &idt)
}
