//! The scripted backend: host events that count only when a test says so.
//!
//! No system call is made. Every event of a [`ScriptedClock`] sees the same clock; a test
//! calls [`ScriptedClock::advance`] to let `n` events happen, and each *enabled* event counts
//! them. A sampling event overflows each time its count crosses its period, as a hardware
//! counter programmed with `-period` would, and is marked overflowed until the mark is taken.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Default)]
struct Shared {
    events: BTreeMap<u64, EventState>,
    next_id: u64,
    now: u64,
    refuse_period: bool,
    refuse_create: Option<i32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct EventState {
    count: u64,
    enabled: bool,
    period: u64,
    // Events still to count before the next overflow (perf's `period_left`).
    left: u64,
    overflowed: bool,
}

/// The shared clock of the scripted backend; clone it to keep a handle for the test.
///
/// ```
/// use vmm::perf::{EventAttr, EventKind, HostPerf, PERF_COUNT_HW_INSTRUCTIONS};
/// let (mut perf, clock) = HostPerf::scripted();
/// let attr = EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_INSTRUCTIONS), 100);
/// let mut event = perf.perf_event_create_kernel_counter(attr, 0).unwrap();
/// clock.advance(150);
/// assert_eq!(perf.perf_event_read_value(&mut event), 150);
/// assert!(perf.take_overflow(&mut event)); // crossed its period of 100
/// perf.perf_event_release_kernel(event);
/// assert_eq!(clock.live_events(), 0);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ScriptedClock {
    shared: Arc<Mutex<Shared>>,
}

impl ScriptedClock {
    /// A new clock at 0 with no events.
    pub fn new() -> ScriptedClock {
        ScriptedClock::default()
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets `n` events happen: every enabled event counts them, and a sampling event whose
    /// count crosses its period is marked overflowed.
    pub fn advance(&self, n: u64) {
        let mut s = self.lock();
        s.now += n;
        for e in s.events.values_mut().filter(|e| e.enabled) {
            e.count = e.count.wrapping_add(n);
            if e.period == 0 {
                continue;
            }
            if n >= e.left {
                e.overflowed = true;
                // The event re-arms itself with the same period after each overflow.
                e.left = e.period - (n - e.left) % e.period;
            } else {
                e.left -= n;
            }
        }
    }

    /// How many events have happened since the clock was made.
    pub fn now(&self) -> u64 {
        self.lock().now
    }

    /// How many events are open (created and not yet released or dropped).
    pub fn live_events(&self) -> usize {
        self.lock().events.len()
    }

    /// From now on, refuse (or accept again) every `perf_event_period` call, as the kernel
    /// refuses a period it cannot apply.
    pub fn set_refuse_period(&self, refuse: bool) {
        self.lock().refuse_period = refuse;
    }

    /// From now on, make every `perf_event_create_kernel_counter` fail with `errno` (or succeed
    /// again with `None`).
    pub fn set_refuse_create(&self, errno: Option<i32>) {
        self.lock().refuse_create = errno;
    }

    pub(crate) fn open(&self, period: u64) -> Result<ScriptedEvent, i32> {
        let mut s = self.lock();
        if let Some(errno) = s.refuse_create {
            return Err(errno);
        }
        let id = s.next_id;
        s.next_id += 1;
        s.events.insert(
            id,
            EventState {
                period,
                left: period,
                ..EventState::default()
            },
        );
        Ok(ScriptedEvent {
            id,
            clock: self.clone(),
        })
    }
}

/// One scripted event; dropping it closes it, as dropping a perf fd would.
#[derive(Debug)]
pub(crate) struct ScriptedEvent {
    id: u64,
    clock: ScriptedClock,
}

impl ScriptedEvent {
    fn with<R>(&self, f: impl FnOnce(&mut EventState) -> R) -> R {
        let mut s = self.clock.lock();
        let state = s
            .events
            .get_mut(&self.id)
            .expect("a scripted event lives until dropped");
        f(state)
    }

    pub(crate) fn set_enabled(&self, enabled: bool) {
        self.with(|e| e.enabled = enabled);
    }

    pub(crate) fn read(&self) -> u64 {
        self.with(|e| e.count)
    }

    pub(crate) fn reset(&self) {
        self.with(|e| e.count = 0);
    }

    /// Sets a new period; the next overflow comes a full new period from now, as after
    /// perf's `PERF_EVENT_IOC_PERIOD`.
    pub(crate) fn set_period(&self, period: u64) -> Result<(), i32> {
        if self.clock.lock().refuse_period {
            return Err(libc::EINVAL);
        }
        self.with(|e| {
            e.period = period;
            e.left = period;
        });
        Ok(())
    }

    pub(crate) fn take_overflow(&self) -> bool {
        self.with(|e| std::mem::take(&mut e.overflowed))
    }
}

impl Drop for ScriptedEvent {
    fn drop(&mut self) {
        self.clock.lock().events.remove(&self.id);
    }
}
