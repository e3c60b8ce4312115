//! Tests of the perf layer against the real host (software events) and the scripted backend.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::*;

/// Tests that open descriptors take this lock, so that the leak test, which counts the
/// process's open descriptors, never runs while another test holds some.
static FDS: Mutex<()> = Mutex::new(());

fn fds_lock() -> MutexGuard<'static, ()> {
    FDS.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn task_clock(period: u64) -> EventAttr {
    EventAttr::counting(EventKind::Hardware(PERF_COUNT_HW_CPU_CYCLES), period)
}

fn spin_until(deadline: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed() < deadline {
        for i in 0..10_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        if done() {
            return true;
        }
    }
    false
}

#[test]
fn auto_picks_software_here_and_says_there_is_no_hardware_pmu() {
    let _fds = fds_lock();
    let s = select(BackendChoice::Auto).unwrap();
    match select(BackendChoice::Hardware) {
        Ok(_) => assert_eq!(s.backend.name(), "hardware", "{}", s.reason),
        Err(e) => {
            // The machines this workbook targets have no PMU: this is the branch that runs.
            assert!(matches!(e, PerfError::NoHardwarePmu { .. }), "{e}");
            assert!(e.to_string().contains("use the software backend"), "{e}");
            assert_eq!(s.backend.name(), "software");
            assert!(s.reason.contains("no hardware PMU"), "{}", s.reason);
        }
    }
}

#[test]
fn hardware_backend_refusal_is_recorded_and_explained() {
    let _fds = fds_lock();
    let mut perf = HostPerf::new(Backend::Hardware).unwrap();
    match perf.perf_event_create_kernel_counter(task_clock(0), 0) {
        Ok(ev) => perf.perf_event_release_kernel(ev), // a host with a PMU
        Err(e) => {
            assert!(
                e.to_string().contains("no hardware PMU on this host"),
                "{e}"
            );
            assert_eq!(perf.ledger().trace(), ["create gp0 refused"]);
            assert_eq!(perf.last_error(), Some(&e));
        }
    }
}

#[test]
fn software_overflow_arrives_as_a_signal_on_this_thread() {
    let _fds = fds_lock();
    let mut perf = HostPerf::new(Backend::Software).unwrap();
    // 100 us of this thread's CPU time per overflow.
    let mut ev = perf
        .perf_event_create_kernel_counter(task_clock(100_000), 1)
        .unwrap();
    let mut seen = false;
    spin_until(Duration::from_millis(20), || {
        seen |= perf.take_overflow(&mut ev);
        false
    });
    let seen = seen || spin_until(Duration::from_secs(2), || perf.take_overflow(&mut ev));
    assert!(seen, "no overflow signal arrived while spinning");
    assert!(perf.perf_event_read_value(&mut ev) > 0);
    perf.perf_event_release_kernel(ev);
}

#[test]
fn software_pause_period_enable_continue_counting() {
    let _fds = fds_lock();
    let mut perf = HostPerf::new(Backend::Software).unwrap();
    let mut ev = perf
        .perf_event_create_kernel_counter(task_clock(1 << 40), 0)
        .unwrap();
    spin_until(Duration::from_millis(2), || false);
    let first = perf.perf_event_pause(&mut ev, true);
    assert!(first > 0);
    // Paused and reset: nothing counts.
    spin_until(Duration::from_millis(1), || false);
    assert_eq!(perf.perf_event_read_value(&mut ev), 0);
    perf.perf_event_period(&mut ev, 1 << 41).unwrap();
    assert_eq!(ev.attr().sample_period, 1 << 41);
    perf.perf_event_enable(&mut ev);
    spin_until(Duration::from_millis(1), || false);
    assert!(perf.perf_event_read_value(&mut ev) > 0);
    perf.perf_event_disable(&mut ev);
    let stopped = perf.perf_event_read_value(&mut ev);
    spin_until(Duration::from_millis(1), || false);
    assert_eq!(perf.perf_event_read_value(&mut ev), stopped);
    perf.perf_event_release_kernel(ev);
    assert_eq!(
        perf.ledger().trace(),
        [
            "create gp0",
            "pause gp0",
            "read gp0",
            "period gp0",
            "enable gp0",
            "read gp0",
            "disable gp0",
            "read gp0",
            "read gp0",
            "release gp0"
        ]
    );
    assert!(perf.last_error().is_none());
}

#[test]
fn period_is_refused_for_zero_and_for_counting_events_on_every_backend() {
    let _fds = fds_lock();
    let (scripted, _clock) = HostPerf::scripted();
    for mut perf in [HostPerf::new(Backend::Software).unwrap(), scripted] {
        let mut counting = perf
            .perf_event_create_kernel_counter(task_clock(0), 2)
            .unwrap();
        let e = perf.perf_event_period(&mut counting, 100).unwrap_err();
        assert!(e.to_string().contains("counting event"), "{e}");
        let mut sampling = perf
            .perf_event_create_kernel_counter(task_clock(1 << 30), 3)
            .unwrap();
        assert!(perf.perf_event_period(&mut sampling, 0).is_err());
        assert_eq!(sampling.attr().sample_period, 1 << 30);
        perf.perf_event_release_kernel(counting);
        perf.perf_event_release_kernel(sampling);
        assert_eq!(perf.ledger().failures(PerfOp::Period), 2);
        assert_eq!(
            perf.ledger().trace(),
            [
                "create gp2",
                "period gp2 refused",
                "create gp3",
                "period gp3 refused",
                "release gp2",
                "release gp3"
            ]
        );
    }
}

#[test]
fn create_and_release_leak_no_descriptor() {
    let _fds = fds_lock();
    let mut perf = HostPerf::new(Backend::Software).unwrap();
    let before = open_fds();
    for i in 0..2000 {
        let ev = perf
            .perf_event_create_kernel_counter(task_clock(1 << 30), i % 4)
            .unwrap();
        assert!(ev.fd().is_some());
        perf.perf_event_release_kernel(ev);
    }
    assert_eq!(open_fds(), before);
    assert_eq!(perf.ledger().count(PerfOp::Create), 2000);
    assert_eq!(perf.ledger().count(PerfOp::Release), 2000);
}

#[test]
fn scripted_events_count_only_while_enabled_and_overflow_at_their_period() {
    let _fds = fds_lock();
    let (mut perf, clock) = HostPerf::scripted();
    let mut ev = perf
        .perf_event_create_kernel_counter(task_clock(100), 32)
        .unwrap();
    clock.advance(99);
    assert!(!perf.take_overflow(&mut ev));
    clock.advance(1);
    assert!(perf.take_overflow(&mut ev));
    assert!(!perf.take_overflow(&mut ev));
    // Re-armed with the same period.
    clock.advance(100);
    assert!(perf.take_overflow(&mut ev));
    assert_eq!(perf.perf_event_pause(&mut ev, false), 200);
    clock.advance(1000);
    assert_eq!(perf.perf_event_read_value(&mut ev), 200);
    assert!(!perf.take_overflow(&mut ev));
    perf.perf_event_period(&mut ev, 10).unwrap();
    perf.perf_event_enable(&mut ev);
    clock.advance(9);
    assert!(!perf.take_overflow(&mut ev));
    clock.advance(1);
    assert!(perf.take_overflow(&mut ev));
    clock.set_refuse_period(true);
    assert!(perf.perf_event_period(&mut ev, 50).is_err());
    clock.set_refuse_create(Some(libc::ENOENT));
    let e = perf
        .perf_event_create_kernel_counter(task_clock(1), 0)
        .unwrap_err();
    assert!(matches!(e, PerfError::NoHardwarePmu { .. }));
    assert_eq!(clock.live_events(), 1);
    drop(ev); // dropping closes too
    assert_eq!(clock.live_events(), 0);
}
