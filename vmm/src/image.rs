//! What a guest program hands the machine: bytes to place, where to start, which handlers.

/// One IDT gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdtGate {
    /// The vector (2 is NMI, 13 is #GP, ...).
    pub vector: u8,
    /// The handler's address.
    pub handler: u64,
    /// Whether ring 3 may raise it with `INT n` (gate DPL 3), as a system-call gate needs.
    pub user_callable: bool,
}

/// A guest ready to load: memory contents, the ring-0 entry point and the IDT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestImage {
    /// `(guest physical address, bytes)` to copy into guest memory.
    pub segments: Vec<(u64, Vec<u8>)>,
    /// Where ring-0 execution starts.
    pub entry: u64,
    /// The IDT gates to install; vectors not listed are not present.
    pub idt: Vec<IdtGate>,
}
