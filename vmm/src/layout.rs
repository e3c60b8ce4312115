//! Where everything sits in guest physical memory.
//!
//! Guest memory is identity-mapped (virtual address = physical address) with 2 MiB pages
//! over the first GiB, every page user-accessible: this is a laboratory, not an operating
//! system, and ring 3 code must be able to write the log and read the runtime area.
//!
//! ```text
//! 0x0000_1000  PML4 ─┐
//! 0x0000_2000  PDPT  ├ page tables (1 GiB identity map, 2 MiB pages)
//! 0x0000_3000  PD   ─┘
//! 0x0000_4000  GDT: null, kernel code, kernel data, user data, user code, TSS
//! 0x0000_4800  TSS: RSP0 = top of the interrupt stack
//! 0x0000_5000  IDT: 256 gates
//! 0x0000_6000  runtime area (fault and NMI bookkeeping, written by the guest runtime)
//! 0x0000_7000  program variables
//! 0x0001_0000  log: u64 count, then 16-byte records (the guest's report to the host)
//! 0x0002_0000  NMI latency samples: u64 count, then u64 TSC deltas
//! 0x0006_0000  kernel stack (top 0x0006_8000)
//! 0x0006_8000  interrupt stack, entered from ring 3 through TSS.RSP0 (top 0x0007_0000)
//! 0x0007_0000  user stack (top 0x0008_0000)
//! 0x0010_0000  code
//! 0x0020_0000  data
//! ```

/// Bytes of guest RAM.
pub const MEM_SIZE: u64 = 4 << 20;
/// Top-level page table.
pub const PML4: u64 = 0x1000;
/// Page-directory-pointer table.
pub const PDPT: u64 = 0x2000;
/// Page directory of 2 MiB pages.
pub const PD: u64 = 0x3000;
/// Global descriptor table.
pub const GDT: u64 = 0x4000;
/// Task-state segment (64-bit): holds RSP0.
pub const TSS: u64 = 0x4800;
/// Interrupt descriptor table.
pub const IDT: u64 = 0x5000;
/// Runtime bookkeeping the guest runtime writes (see `guests::runtime`).
pub const RUNTIME: u64 = 0x6000;
/// Variables a program may use.
pub const VARS: u64 = 0x7000;
/// The log: a u64 record count, then records of 16 bytes.
pub const LOG: u64 = 0x1_0000;
/// Bytes the log may use.
pub const LOG_SIZE: u64 = 0x1_0000;
/// NMI latency samples: a u64 count, then u64 TSC deltas.
pub const LAT: u64 = 0x2_0000;
/// Bytes the latency samples may use.
pub const LAT_SIZE: u64 = 0x4_0000;
/// Top of the stack ring-0 code starts on.
pub const KERNEL_STACK_TOP: u64 = 0x6_8000;
/// Top of the stack the CPU switches to on an interrupt from ring 3 (TSS.RSP0).
pub const INTERRUPT_STACK_TOP: u64 = 0x7_0000;
/// Top of the ring-3 stack.
pub const USER_STACK_TOP: u64 = 0x8_0000;
/// Where code is loaded.
pub const CODE: u64 = 0x10_0000;
/// Bytes code may use.
pub const CODE_SIZE: u64 = 0x10_0000;
/// Where program data is loaded.
pub const DATA: u64 = 0x20_0000;

/// Kernel code segment selector.
pub const KERNEL_CS: u16 = 0x08;
/// Kernel data segment selector.
pub const KERNEL_DS: u16 = 0x10;
/// User data segment selector (RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// User code segment selector (RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// TSS selector.
pub const TSS_SEL: u16 = 0x28;

/// The I/O port a guest writes a 32-bit status to when it is done (0 = success).
pub const PORT_DONE: u16 = 0xF4;
/// The I/O port a guest writes characters to; the machine collects them as console text.
pub const PORT_CONSOLE: u16 = 0xE9;
