//! The audio path does not allocate: a counting global allocator sees zero allocations on
//! this thread across `Monitor::process`, `Monitor::snapshot_into` (once sized),
//! `HealthMonitor::on_packet` / `update` and `snapshot`, with signals that make every
//! detector change state.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use core::f64::consts::PI;

use estuary_engine::monitor::health::{HealthConfig, HealthMonitor};
use estuary_engine::monitor::{MeterSnapshot, Monitor, MonitorConfig};
use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;

/// Counts allocations made by the thread that enabled counting.
struct Counting;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    let _ = ENABLED.try_with(|enabled| {
        if enabled.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: forwards every call to the system allocator unchanged; the counting only touches
// const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations_in(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ENABLED.with(|e| e.set(true));
    f();
    ENABLED.with(|e| e.set(false));
    COUNT.with(|c| c.get())
}

const RATE: u32 = 48_000;
const CHANNELS: usize = 8;

/// Sample of channel `c` at frame `n`: a changing programme that silences, clips, sticks,
/// clicks and inverts phase at different times, so every detector raises and clears.
fn sample(n: u64, c: usize) -> i32 {
    let t = n as f64 / f64::from(RATE);
    let second = n / u64::from(RATE);
    let tone = (2.0 * PI * 997.0 * t).sin();
    let v = match (second % 12, c) {
        (0..7, 0) => 0.0,
        (2..4, 1) => 2.0 * tone,
        (4..7, 2) => 0.3,
        (_, 3) if n.is_multiple_of(10_007) => 0.9,
        (1..6, 5) => -0.2 * (2.0 * PI * 997.0 * t).sin(),
        (_, 4) => 0.2 * tone,
        _ => 0.2 * tone + 0.1 * (2.0 * PI * 131.0 * t + c as f64).sin(),
    };
    (v * f64::from(i32::MAX))
        .round()
        .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

#[test]
fn monitor_and_health_do_not_allocate_after_construction() {
    // The counter itself works.
    assert_eq!(
        allocations_in(|| drop(std::hint::black_box(vec![1u8; 16]))),
        1
    );
    let mut monitor =
        Monitor::new(CHANNELS as u16, RATE, MonitorConfig::default()).expect("valid config");
    let mut health = HealthMonitor::new(RATE, HealthConfig::default());
    let mut snapshot = MeterSnapshot::default();
    let mut stats = StreamStats::default();
    // Sizes the snapshot's vectors (the only allocation after construction, done once).
    monitor.snapshot_into(&mut snapshot);
    // 30 s of audio in 1 ms blocks, prepared before counting.
    let seconds = 30u64;
    let audio: Vec<i32> = (0..seconds * u64::from(RATE))
        .flat_map(|n| (0..CHANNELS).map(move |c| sample(n, c)))
        .collect();
    let mut events = 0usize;
    let allocations = allocations_in(|| {
        for (k, block) in audio.chunks(48 * CHANNELS).enumerate() {
            let now = MonoTime::from_nanos(k as u64 * 1_000_000);
            let e = monitor.process(now, block);
            events += e.len();
            // Scripted stream: a packet per ms, except a 300 ms outage every 10 s, and
            // losses now and then.
            if k % 10_000 >= 300 {
                health.on_packet(now, k as u64 * 48);
                stats.packets_received += 1;
            }
            if k.is_multiple_of(1_777) {
                stats.packets_lost += 2;
            }
            if k.is_multiple_of(100) {
                events += health.update(now, &stats).len();
                monitor.snapshot_into(&mut snapshot);
                let _ = health.snapshot();
            }
        }
    });
    assert_eq!(allocations, 0);
    // The run did exercise the detectors: events were reported and the snapshot is live.
    assert!(events >= 20, "{events}");
    assert_eq!(snapshot.channels.len(), CHANNELS);
    assert_eq!(snapshot.loudness.len(), CHANNELS / 2);
    assert!(snapshot.channels[3].clicks > 0);
    assert_eq!(snapshot.events_dropped, 0);
}
