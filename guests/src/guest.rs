//! The guest-program builder: write a program as calls, get a [`Program`] to run.

use std::collections::BTreeMap;

use iced_x86::code_asm::*;
use iced_x86::BlockEncoderOptions;
use vmm::image::{GuestImage, IdtGate};
use vmm::layout;

use crate::program::Program;
use crate::runtime::{self, rt, Routines};

type R<T = ()> = Result<T, IcedError>;

/// A 64-bit register the builder's helpers take values in or return them in.
pub use iced_x86::code_asm::AsmRegister64 as Reg;

/// A program's NMI handler body, emitted when the program is finished.
type NmiBody = Box<dyn FnOnce(&mut Guest)>;

/// Builds one guest program.
///
/// Code is emitted in call order, starting at ring 0. [`Guest::user`] wraps a block that
/// runs in ring 3 and returns to ring 0 when it ends. Values reach the host through the log:
/// [`Guest::log`] appends a record under a named tag, and the runtime appends one for every
/// #GP it takes.
///
/// ```
/// use guests::Guest;
/// let mut g = Guest::new("hello");
/// g.mov(vmm::layout::VARS, 41);                 // a variable in guest memory
/// g.user(|u| {
///     u.spin(1000); // ring 3: a native busy loop
/// });
/// g.read_msr("ctrl", vmm::msr::IA32_PERF_GLOBAL_CTRL); // ring 0: RDMSR, logged as "ctrl"
/// let program = g.finish();
/// assert!(program.listing().contains("rdmsr"));
/// ```
pub struct Guest {
    name: String,
    a: CodeAssembler,
    r: Routines,
    entry: CodeLabel,
    tags: Vec<String>,
    tag_ids: BTreeMap<String, u32>,
    nmi: Option<NmiBody>,
    in_user: bool,
}

impl Guest {
    /// A new program called `name`; its code starts at ring 0.
    pub fn new(name: &str) -> Guest {
        let mut a = CodeAssembler::new(64).expect("64-bit is a valid bitness");
        let r = Routines::new(&mut a);
        let mut entry = a.create_label();
        a.set_label(&mut entry).expect("a fresh label");
        a.nop().expect("nop");
        Guest {
            name: name.to_string(),
            a,
            r,
            entry,
            tags: Vec::new(),
            tag_ids: BTreeMap::new(),
            nmi: None,
            in_user: false,
        }
    }

    /// Emits raw instructions. Use it for what the helpers do not cover.
    ///
    /// # Panics
    /// If iced-x86 rejects an instruction: a bug in the guest program, reported with the
    /// program's name.
    pub fn asm(&mut self, f: impl FnOnce(&mut CodeAssembler) -> R) -> &mut Self {
        let name = self.name.clone();
        f(&mut self.a).unwrap_or_else(|e| panic!("guest program {name:?}: {e}"));
        self
    }

    /// A new label for [`Guest::place`] and jumps in [`Guest::asm`].
    pub fn label(&mut self) -> CodeLabel {
        self.a.create_label()
    }

    /// Places `label` on the next instruction (a `nop` is emitted so two labels never share
    /// an instruction).
    pub fn place(&mut self, label: &mut CodeLabel) -> &mut Self {
        self.asm(|a| {
            a.set_label(label)?;
            a.nop()
        })
    }

    /// The id of log tag `name`, registering it on first use.
    pub fn tag(&mut self, name: &str) -> u32 {
        if let Some(id) = self.tag_ids.get(name) {
            return *id;
        }
        let id = self.tags.len() as u32;
        self.tags.push(name.to_string());
        self.tag_ids.insert(name.to_string(), id);
        id
    }

    /// `[addr] = value` (a 64-bit store).
    pub fn mov(&mut self, addr: u64, value: u64) -> &mut Self {
        self.asm(|a| {
            a.mov(rax, value)?;
            a.mov(qword_ptr(addr), rax)
        })
    }

    /// Appends a log record `(tag, value of reg)`. Preserves every register. Works in both
    /// rings.
    pub fn log(&mut self, tag: &str, reg: Reg) -> &mut Self {
        let id = self.tag(tag);
        let log = self.r.log;
        self.asm(|a| {
            a.push(rdi)?;
            a.push(rsi)?;
            a.mov(rsi, reg)?;
            a.mov(edi, id)?;
            a.call(log)?;
            a.pop(rsi)?;
            a.pop(rdi)
        })
    }

    /// `WRMSR(msr, value)`. Ring 0 only. Clobbers rax, rcx, rdx.
    pub fn wrmsr(&mut self, msr: u32, value: u64) -> &mut Self {
        self.ring0("wrmsr");
        self.asm(|a| {
            a.mov(ecx, msr)?;
            a.mov(eax, value as u32)?;
            a.mov(edx, (value >> 32) as u32)?;
            a.wrmsr()
        })
    }

    /// `WRMSR(msr, reg)`. Ring 0 only. Clobbers rax, rcx, rdx.
    pub fn wrmsr_reg(&mut self, msr: u32, reg: Reg) -> &mut Self {
        self.ring0("wrmsr_reg");
        self.asm(|a| {
            a.mov(rax, reg)?;
            runtime::split_rax(a)?;
            a.mov(ecx, msr)?;
            a.wrmsr()
        })
    }

    /// `rax = RDMSR(msr)`. Ring 0 only. Clobbers rcx, rdx.
    pub fn rdmsr(&mut self, msr: u32) -> &mut Self {
        self.ring0("rdmsr");
        self.asm(|a| {
            a.mov(ecx, msr)?;
            runtime::rdmsr_rax(a)
        })
    }

    /// `RDMSR(msr)` logged under `tag`. Ring 0 only. Clobbers rax, rcx, rdx.
    pub fn read_msr(&mut self, tag: &str, msr: u32) -> &mut Self {
        self.rdmsr(msr).log(tag, rax)
    }

    /// `rax = RDPMC(ecx)` logged under `tag`; RDPMC always traps here and the runtime's #GP
    /// handler emulates it. Works in both rings. Clobbers rax, rcx, rdx.
    pub fn rdpmc(&mut self, tag: &str, ecx_value: u32) -> &mut Self {
        self.asm(|a| {
            a.mov(ecx, ecx_value)?;
            a.rdpmc()?;
            a.shl(rdx, 32)?;
            a.or(rax, rdx)
        })
        .log(tag, rax)
    }

    /// `rax = rdtsc`. Clobbers rdx.
    pub fn rdtsc(&mut self) -> &mut Self {
        self.asm(runtime::rdtsc_rax)
    }

    /// A busy loop of `iterations` (`dec rcx; jnz`): about half a nanosecond each in ring 3
    /// here, 1.2 µs each in ring 0. Clobbers rcx.
    pub fn spin(&mut self, iterations: u64) -> &mut Self {
        self.asm(|a| {
            let mut top = a.create_label();
            a.mov(rcx, iterations.max(1))?;
            a.set_label(&mut top)?;
            a.dec(rcx)?;
            a.jnz(top)
        })
    }

    /// Spins until the runtime has counted `count` NMIs in total. Clobbers nothing.
    pub fn wait_for_nmis(&mut self, count: u64) -> &mut Self {
        self.asm(|a| {
            let mut top = a.create_label();
            a.set_label(&mut top)?;
            a.cmp(qword_ptr(rt::NMI_COUNT), count as i32)?;
            a.jb(top)
        })
    }

    // ANCHOR: user_block
    /// Runs `body` in ring 3, then continues here in ring 0 (the block ends with `int3`,
    /// the runtime's way down). Registers other than rax and rdx (used to enter ring 3)
    /// carry over in both directions.
    pub fn user(&mut self, body: impl FnOnce(&mut Guest)) -> &mut Self {
        assert!(
            !self.in_user,
            "guest program {:?}: ring-3 blocks do not nest",
            self.name
        );
        let mut start = self.a.create_label();
        let mut after = self.a.create_label();
        let enter = self.r.enter_user;
        self.asm(|a| {
            a.lea(rax, ptr(start))?;
            a.call(enter)?;
            a.jmp(after)?;
            a.set_label(&mut start)?;
            a.nop()
        });
        self.in_user = true;
        body(self);
        self.in_user = false;
        self.asm(|a| {
            a.int3()?;
            a.set_label(&mut after)?;
            a.nop()
        })
    }
    // ANCHOR_END: user_block

    /// Sets the NMI handler's body, emitted by [`Guest::finish`] between the runtime's
    /// prologue (registers saved, entry TSC taken, NMI counted) and epilogue (latency
    /// stored, registers restored, `iretq`). It runs in ring 0 and may clobber rax, rbx,
    /// rcx, rdx, rsi, rdi and r8–r11. Without one, the body logs `GLOBAL_STATUS` as
    /// `"nmi.status"`.
    pub fn on_nmi(&mut self, body: impl FnOnce(&mut Guest) + 'static) -> &mut Self {
        self.nmi = Some(Box::new(body));
        self
    }

    /// Reports `status` to the host and stops (0 means success).
    pub fn exit(&mut self, status: u32) -> &mut Self {
        self.ring0("exit");
        self.asm(|a| {
            a.mov(eax, status)?;
            a.mov(dx, u32::from(layout::PORT_DONE))?;
            a.out(dx, eax)?;
            a.hlt()
        })
    }

    fn ring0(&self, what: &str) {
        assert!(
            !self.in_user,
            "guest program {:?}: {what} is privileged and would #GP in ring 3",
            self.name
        );
    }

    /// Ends the program with a successful exit, appends the runtime, and assembles it.
    ///
    /// # Panics
    /// If the code does not assemble (a bug in the program), naming the program.
    pub fn finish(mut self) -> Program {
        self.exit(runtime::STATUS_OK);
        let body = self.nmi.take();
        runtime::nmi_prologue(&mut self.a, &mut self.r).expect("NMI prologue");
        match body {
            Some(body) => body(&mut self),
            None => {
                let status = self.tag("nmi.status");
                let r = &self.r;
                runtime::nmi_log_status(&mut self.a, r, status).expect("NMI body");
            }
        }
        runtime::nmi_epilogue(&mut self.a).expect("NMI epilogue");
        runtime::emit(&mut self.a, &mut self.r).expect("runtime routines");
        let name = self.name.clone();
        let result = self
            .a
            .assemble_options(
                layout::CODE,
                BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS,
            )
            .unwrap_or_else(|e| panic!("guest program {name:?} does not assemble: {e}"));
        let ip = |l: &CodeLabel| {
            result
                .label_ip(l)
                .unwrap_or_else(|e| panic!("guest program {name:?}: {e}"))
        };
        let mut idt = vec![
            IdtGate {
                vector: 2,
                handler: ip(&self.r.nmi),
                user_callable: false,
            },
            IdtGate {
                vector: 13,
                handler: ip(&self.r.gp),
                user_callable: false,
            },
            IdtGate {
                vector: 3,
                handler: ip(&self.r.user_return),
                user_callable: true,
            },
        ];
        idt.extend(self.r.exceptions.iter().map(|(v, l)| IdtGate {
            vector: *v,
            handler: ip(l),
            user_callable: false,
        }));
        let entry = ip(&self.entry);
        let code = result.inner.code_buffer;
        assert!(
            (code.len() as u64) <= layout::CODE_SIZE,
            "guest program {name:?} is {} bytes, more than the code area holds",
            code.len()
        );
        let image = GuestImage {
            segments: vec![(layout::CODE, code)],
            entry,
            idt,
        };
        Program::new(self.name, image, self.tags)
    }
}
