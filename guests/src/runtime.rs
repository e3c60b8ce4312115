//! The guest runtime: the ring-0 prelude every guest program is built on.
//!
//! A program is ring-0 "kernel" code that may drop into ring-3 "user" code and come back.
//! On the machines this workbook targets, ring 0 is emulated (about 0.6 µs an instruction)
//! and ring 3 runs natively, so workloads belong in ring 3 and handlers stay short.
//!
//! The runtime supplies, after the program's own code:
//!
//! - an **NMI handler** (vector 2) that timestamps itself with `rdtsc`, runs the program's
//!   NMI body (by default: read `GLOBAL_STATUS` into the log) and stores its own latency;
//! - a **#GP handler** (vector 13) that, for a faulting `RDMSR`/`WRMSR`, logs the MSR and
//!   the RIP and skips the instruction (a faulted `RDMSR` reads as 0, as Linux's
//!   `rdmsr_safe` makes it), and for `RDPMC` (which never exits to the VMM here)
//!   emulates it with `RDMSR` of the same counter;
//! - a **way down from ring 3**: `int3` through a DPL-3 gate (vector 3). On kvm-pvm,
//!   `int 0x80` from ring 3 raises #UD and `syscall` reaches LSTAR still in user mode
//!   (CS 0x33), while an exception gate switches to ring 0 as the SDM says; so the
//!   runtime reserves `int3` for "return to the kernel";
//! - **fatal stubs** for every other exception, which stop the guest with status
//!   `0x1000 + vector` and leave the vector, RIP, error code and CR2 in the runtime area;
//! - `log`, a subroutine callable from both rings that appends `(tag, aux, value)` records.

use iced_x86::code_asm::*;
use vmm::layout;
use vmm::msr::{IA32_FIXED_CTR0, IA32_PERF_GLOBAL_STATUS, IA32_PMC0};

/// Offsets of the runtime area ([`layout::RUNTIME`]) that the host reads back.
pub mod rt {
    use vmm::layout::RUNTIME;
    /// Kernel RSP saved while ring 3 runs.
    pub const SAVED_KRSP: u64 = RUNTIME;
    /// #GP faults taken on RDMSR/WRMSR/RDPMC.
    pub const GP_COUNT: u64 = RUNTIME + 0x08;
    /// NMIs taken.
    pub const NMI_COUNT: u64 = RUNTIME + 0x10;
    /// Vector of the fatal exception, if any.
    pub const EXC_VECTOR: u64 = RUNTIME + 0x18;
    /// RIP of the fatal exception.
    pub const EXC_RIP: u64 = RUNTIME + 0x20;
    /// Error code of the fatal exception (0 if it has none).
    pub const EXC_ERROR: u64 = RUNTIME + 0x28;
    /// CR2 at the fatal exception.
    pub const EXC_CR2: u64 = RUNTIME + 0x30;
    /// TSC at NMI handler entry.
    pub const NMI_T0: u64 = RUNTIME + 0x38;
    /// Number of GP counters, written by the host before the run (for RDPMC emulation).
    pub const NR_GP: u64 = RUNTIME + 0x40;
    /// Number of fixed counters, written by the host before the run.
    pub const NR_FIXED: u64 = RUNTIME + 0x48;
    /// RDPMC instructions emulated.
    pub const RDPMC_COUNT: u64 = RUNTIME + 0x50;
}

/// Log tags the runtime itself writes; program tags count up from 0.
pub mod tag {
    /// A RDMSR/WRMSR raised #GP: aux = ECX (the MSR), value = RIP.
    pub const GP_FAULT: u32 = 0x7FFF_0001;
    /// An RDPMC was emulated: aux = ECX, value = the count read.
    pub const RDPMC: u32 = 0x7FFF_0002;
    /// An RDPMC raised #GP (bad counter index): aux = ECX, value = RIP.
    pub const RDPMC_FAULT: u32 = 0x7FFF_0003;
}

/// Status a program reports when it finishes well.
pub const STATUS_OK: u32 = 0;
/// Status base for a fatal exception: the status is this plus the vector.
pub const STATUS_EXCEPTION: u32 = 0x1000;

/// Records the log can hold.
pub const LOG_CAPACITY: u64 = (layout::LOG_SIZE - 8) / 16;
/// NMI latency samples the guest can hold.
pub const LAT_CAPACITY: u64 = (layout::LAT_SIZE - 8) / 8;

/// Vectors that push an error code.
const HAS_ERROR_CODE: [u8; 8] = [8, 10, 11, 12, 13, 14, 17, 21];

type Asm = CodeAssembler;
type R<T = ()> = Result<T, IcedError>;

/// Labels of the runtime's routines, created before the program's code so both can use them.
pub(crate) struct Routines {
    pub log: CodeLabel,
    pub enter_user: CodeLabel,
    pub nmi: CodeLabel,
    pub gp: CodeLabel,
    pub user_return: CodeLabel,
    pub exceptions: Vec<(u8, CodeLabel)>,
    pub fatal: CodeLabel,
}

impl Routines {
    pub(crate) fn new(a: &mut Asm) -> Routines {
        Routines {
            log: a.create_label(),
            enter_user: a.create_label(),
            nmi: a.create_label(),
            gp: a.create_label(),
            user_return: a.create_label(),
            exceptions: (0u8..32)
                .filter(|v| ![2, 3, 13].contains(v))
                .map(|v| (v, a.create_label()))
                .collect(),
            fatal: a.create_label(),
        }
    }
}

/// `rdx:rax = rdtsc` folded into rax.
pub(crate) fn rdtsc_rax(a: &mut Asm) -> R {
    a.rdtsc()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)
}

/// `rax = rdmsr(ecx)` as one 64-bit value.
pub(crate) fn rdmsr_rax(a: &mut Asm) -> R {
    a.rdmsr()?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)
}

/// Splits rax into edx:eax, as WRMSR wants it.
pub(crate) fn split_rax(a: &mut Asm) -> R {
    a.mov(rdx, rax)?;
    a.shr(rdx, 32)
}

/// Emits the runtime's routines other than the NMI handler, which the program builder
/// emits itself around the program's NMI body (see [`nmi_prologue`]).
pub(crate) fn emit(a: &mut Asm, r: &mut Routines) -> R {
    emit_log(a, r)?;
    emit_enter_user(a, r)?;
    emit_user_return(a, r)?;
    emit_gp(a, r)?;
    emit_exceptions(a, r)
}

/// `log(rdi = tag | aux << 32, rsi = value)`; preserves every register.
fn emit_log(a: &mut Asm, r: &mut Routines) -> R {
    let mut full = a.create_label();
    a.set_label(&mut r.log)?;
    a.push(rax)?;
    a.mov(rax, qword_ptr(layout::LOG))?;
    a.cmp(rax, LOG_CAPACITY as i32)?;
    a.jae(full)?;
    a.shl(rax, 4)?;
    a.mov(qword_ptr(rax + (layout::LOG + 8) as i32), rdi)?;
    a.mov(qword_ptr(rax + (layout::LOG + 16) as i32), rsi)?;
    a.inc(qword_ptr(layout::LOG))?;
    a.set_label(&mut full)?;
    a.pop(rax)?;
    a.ret()
}

/// Enters ring 3 at rax with the user stack; `user_return` comes back to our caller.
// ANCHOR: enter_user
fn emit_enter_user(a: &mut Asm, r: &mut Routines) -> R {
    a.set_label(&mut r.enter_user)?;
    a.mov(qword_ptr(rt::SAVED_KRSP), rsp)?;
    a.push(i32::from(layout::USER_DS))?;
    a.mov(rdx, layout::USER_STACK_TOP)?;
    a.push(rdx)?;
    a.push(0x2)?; // RFLAGS: interrupts off; NMIs still arrive
    a.push(i32::from(layout::USER_CS))?;
    a.push(rax)?;
    a.iretq()
}
// ANCHOR_END: enter_user

// ANCHOR: user_return
fn emit_user_return(a: &mut Asm, r: &mut Routines) -> R {
    a.set_label(&mut r.user_return)?;
    a.mov(rsp, qword_ptr(rt::SAVED_KRSP))?;
    a.ret()
}
// ANCHOR_END: user_return

const NMI_SAVED: [AsmRegister64; 10] = [rax, rbx, rcx, rdx, rsi, rdi, r8, r9, r10, r11];

/// NMI entry: save the scratch registers, take the entry timestamp, count the NMI. The
/// body that follows may use rax, rbx, rcx, rdx, rsi, rdi and r8–r11 freely.
pub(crate) fn nmi_prologue(a: &mut Asm, r: &mut Routines) -> R {
    a.set_label(&mut r.nmi)?;
    for reg in NMI_SAVED {
        a.push(reg)?;
    }
    rdtsc_rax(a)?;
    a.mov(qword_ptr(rt::NMI_T0), rax)?;
    a.inc(qword_ptr(rt::NMI_COUNT))
}

/// Appends rax to the latency samples ([`layout::LAT`]) unless they are full. Clobbers rbx.
/// The NMI handler stores its own duration this way; workloads that time something else
/// (an exit) store theirs the same way, so the host reads both alike.
pub fn append_latency(a: &mut Asm) -> R {
    let mut full = a.create_label();
    a.mov(rbx, qword_ptr(layout::LAT))?;
    a.cmp(rbx, LAT_CAPACITY as i32)?;
    a.jae(full)?;
    a.mov(qword_ptr(rbx * 8 + (layout::LAT + 8) as i32), rax)?;
    a.inc(qword_ptr(layout::LAT))?;
    a.set_label(&mut full)?;
    a.nop()
}

/// NMI exit: store the handler's latency in TSC ticks, restore, return.
pub(crate) fn nmi_epilogue(a: &mut Asm) -> R {
    rdtsc_rax(a)?;
    a.sub(rax, qword_ptr(rt::NMI_T0))?;
    append_latency(a)?;
    for reg in NMI_SAVED.iter().rev() {
        a.pop(*reg)?;
    }
    a.iretq()
}

/// The default NMI body: log `GLOBAL_STATUS` under `tag`.
pub(crate) fn nmi_log_status(a: &mut Asm, r: &Routines, tag: u32) -> R {
    a.mov(ecx, IA32_PERF_GLOBAL_STATUS)?;
    rdmsr_rax(a)?;
    a.mov(rsi, rax)?;
    a.mov(edi, tag)?;
    a.call(r.log)
}

/// #GP: log and skip a faulting RDMSR/WRMSR, emulate RDPMC, stop on anything else.
fn emit_gp(a: &mut Asm, r: &mut Routines) -> R {
    // Stack after the pushes: rdi, rsi, rdx, rcx, rbx, rax, error code, RIP, CS, RFLAGS,
    // RSP, SS.
    const SAVED: [AsmRegister64; 6] = [rax, rbx, rcx, rdx, rsi, rdi];
    const RDX: i32 = 2 * 8;
    const RCX: i32 = 3 * 8;
    const RAX: i32 = 5 * 8;
    const RIP: i32 = 7 * 8;
    let mut rdpmc = a.create_label();
    let mut msr_fault = a.create_label();
    let mut rdmsr_fault = a.create_label();
    let mut fixed = a.create_label();
    let mut read = a.create_label();
    let mut bad_index = a.create_label();
    let mut log_fault = a.create_label();
    let mut skip = a.create_label();
    let mut fatal = a.create_label();

    a.set_label(&mut r.gp)?;
    for reg in SAVED {
        a.push(reg)?;
    }
    a.mov(rbx, qword_ptr(rsp + RIP))?;
    a.movzx(eax, word_ptr(rbx))?;
    a.cmp(eax, 0x330F)?; // RDPMC is 0F 33
    a.je(rdpmc)?;
    a.cmp(eax, 0x320F)?; // RDMSR is 0F 32
    a.je(rdmsr_fault)?;
    a.cmp(eax, 0x300F)?; // WRMSR is 0F 30
    a.je(msr_fault)?;
    a.jmp(fatal)?;

    // ANCHOR: gp_rdmsr_rdpmc
    // A faulted RDMSR reads as 0, as Linux's rdmsr_safe fixup makes it, so no stale value
    // is taken for the MSR's.
    a.set_label(&mut rdmsr_fault)?;
    a.mov(qword_ptr(rsp + RAX), 0)?;
    a.mov(qword_ptr(rsp + RDX), 0)?;
    a.set_label(&mut msr_fault)?;
    a.mov(edi, tag::GP_FAULT)?;
    a.jmp(log_fault)?;

    // RDPMC: ECX bit 30 selects the fixed counters, the low bits the index. Read the same
    // counter through its MSR and hand EDX:EAX back to the interrupted code.
    a.set_label(&mut rdpmc)?;
    a.mov(eax, ecx)?;
    a.and(eax, 0x3FFF_FFFF)?;
    a.bt(ecx, 30)?;
    a.jc(fixed)?;
    a.cmp(rax, qword_ptr(rt::NR_GP))?;
    a.jae(bad_index)?;
    a.add(eax, IA32_PMC0 as i32)?;
    a.jmp(read)?;
    a.set_label(&mut fixed)?;
    a.cmp(rax, qword_ptr(rt::NR_FIXED))?;
    a.jae(bad_index)?;
    a.add(eax, IA32_FIXED_CTR0 as i32)?;
    a.set_label(&mut read)?;
    a.mov(ecx, eax)?;
    a.rdmsr()?;
    a.mov(qword_ptr(rsp + RAX), rax)?;
    a.mov(qword_ptr(rsp + RDX), rdx)?;
    a.inc(qword_ptr(rt::RDPMC_COUNT))?;
    a.shl(rdx, 32)?;
    a.or(rax, rdx)?;
    a.mov(rsi, rax)?;
    a.mov(eax, dword_ptr(rsp + RCX))?;
    a.shl(rax, 32)?;
    a.mov(edi, tag::RDPMC)?;
    a.or(rdi, rax)?;
    a.call(r.log)?;
    a.jmp(skip)?;
    // ANCHOR_END: gp_rdmsr_rdpmc

    a.set_label(&mut bad_index)?;
    a.mov(edi, tag::RDPMC_FAULT)?;
    // Log (edi = tag, aux = the guest's ECX, value = RIP) and count the fault.
    a.set_label(&mut log_fault)?;
    a.inc(qword_ptr(rt::GP_COUNT))?;
    a.mov(eax, dword_ptr(rsp + RCX))?;
    a.shl(rax, 32)?;
    a.or(rdi, rax)?;
    a.mov(rsi, rbx)?;
    a.call(r.log)?;

    a.set_label(&mut skip)?;
    a.add(qword_ptr(rsp + RIP), 2)?; // all three instructions are two bytes long
    for reg in SAVED.iter().rev() {
        a.pop(*reg)?;
    }
    a.add(rsp, 8)?; // the error code
    a.iretq()?;

    a.set_label(&mut fatal)?;
    for reg in SAVED.iter().rev() {
        a.pop(*reg)?;
    }
    a.push(13)?; // the error code is already below
    a.jmp(r.fatal)
}

/// One stub per other exception vector, then the common path that reports it.
fn emit_exceptions(a: &mut Asm, r: &mut Routines) -> R {
    for (vector, label) in r.exceptions.iter_mut() {
        a.set_label(label)?;
        if !HAS_ERROR_CODE.contains(vector) {
            a.push(0)?;
        }
        a.push(i32::from(*vector))?;
        a.jmp(r.fatal)?;
    }
    a.set_label(&mut r.fatal)?;
    a.pop(qword_ptr(rt::EXC_VECTOR))?;
    a.pop(qword_ptr(rt::EXC_ERROR))?;
    a.mov(rax, qword_ptr(rsp))?;
    a.mov(qword_ptr(rt::EXC_RIP), rax)?;
    a.mov(rax, cr2)?;
    a.mov(qword_ptr(rt::EXC_CR2), rax)?;
    a.mov(eax, dword_ptr(rt::EXC_VECTOR))?;
    a.add(eax, STATUS_EXCEPTION as i32)?;
    a.mov(dx, layout::PORT_DONE as u32)?;
    a.out(dx, eax)?;
    a.hlt()
}
