//! Metering of a receiving input. The audio meters ([`InlineMeter`]) run in the thread that
//! feeds the input's rings (the ingest thread, or the generator / SRT / Dante input's thread),
//! on each block right after it was pulled: no copy, no ring, no wake-up, and the block is
//! still in cache. That thread never waits for anyone: alarm changes go out through a
//! lock-free ring, the snapshot is published with a `try_lock`. Each input's [`MeterWorker`]
//! judges stream health every 50 ms, turns alarm changes into signals (which allocate) and
//! publishes; it also builds the `Monitor` of new detector settings, which the feeding thread
//! swaps in without allocating or freeing. One thread runs every input's worker: a thread per
//! input cost a context switch per input every period, more CPU than the health work itself.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, SystemTime};

use estuary_engine::monitor::detect::Change;
use estuary_engine::monitor::health::{HealthConfig, HealthKind, HealthMonitor, HealthSnapshot};
use estuary_engine::monitor::{AlarmKind, MeterSnapshot, Monitor, MonitorConfig, MonitorEvent};
use estuary_engine::time::MonoTime;
use estuary_io::clock::monotonic_now;

use super::{InputSnapshot, Registration};
use crate::gateway::{Condition, Scope, Signal};
use crate::shutdown::Stop;

/// How often health is judged and the snapshots published.
const PUBLISH_PERIOD: Duration = Duration::from_millis(50);
/// How long the meter thread naps when no input is metered.
const IDLE: Duration = Duration::from_millis(500);
/// Alarm changes in flight from the feeding thread to the worker (a 50 ms period rarely has
/// more than a few; a full ring drops and counts them in `events_dropped`).
const EVENT_RING: usize = 1024;

/// Set only by `bench ingest --meters` to time metering against none in one process, in turns
/// of a fraction of a second (see the bench): while set, the meters and their workers skip
/// their work. The daemon never sets it.
pub static PAUSED: AtomicBool = AtomicBool::new(false);

/// What the metering publishes: `meters` by the feeding thread, the rest by the worker.
#[derive(Debug, Clone, Default)]
pub struct MeterShared {
    pub meters: MeterSnapshot,
    pub health: HealthSnapshot,
    /// Raised conditions, for the input's health badge (alarm rules give them severities).
    pub raised: Vec<(Condition, Option<u16>)>,
}

/// A `Monitor` built by the worker for new detector settings, waiting for the feeding thread
/// (which leaves its old one in the slot for the worker to free).
#[derive(Default)]
struct Mailbox {
    pending: AtomicBool,
    slot: Mutex<Option<(u32, Box<Monitor>)>>,
}

/// Most regions of [`Monitor::hot_memory`] kept (it names about a dozen); any beyond are not
/// prefetched.
const HOT_REGIONS: usize = 24;

/// Where a monitor's per-block state lies (start address, bytes), noted once so that the
/// prefetch reads nothing of the cold state itself, which would wait for it.
struct HotMemory {
    regions: [(usize, usize); HOT_REGIONS],
    len: usize,
}

impl HotMemory {
    fn of(monitor: &Monitor) -> Self {
        let mut hot = HotMemory {
            regions: [(0, 0); HOT_REGIONS],
            len: 0,
        };
        monitor.hot_memory(|start, len| {
            if let Some(region) = hot.regions.get_mut(hot.len) {
                *region = (start.addr(), len);
                hot.len += 1;
            }
        });
        hot
    }

    fn prefetch(&self) {
        for &(start, len) in self.regions.iter().take(self.len) {
            estuary_io::memory::prefetch(std::ptr::without_provenance(start), len);
        }
    }
}

/// The audio meters of an input, run by the thread that feeds its rings (see the module doc).
pub(super) struct InlineMeter {
    monitor: Box<Monitor>,
    hot: HotMemory,
    /// Which settings `monitor` has: the worker ignores changes from older ones.
    generation: u32,
    events: rtrb::Producer<(u32, MonitorEvent)>,
    events_dropped: u64,
    mailbox: Arc<Mailbox>,
    shared: Arc<Mutex<MeterShared>>,
    since_publish: u64,
    publish_frames: u64,
}

impl InlineMeter {
    /// Measures a block of interleaved frames whose first frame is due at `now`.
    pub fn process(&mut self, samples: &[i32], now: MonoTime) {
        if PAUSED.load(Ordering::Relaxed) {
            return;
        }
        if self.mailbox.pending.load(Ordering::Acquire) {
            self.swap_in_retuned();
        }
        for event in self.monitor.process(now, samples) {
            if self.events.push((self.generation, *event)).is_err() {
                self.events_dropped += 1;
            }
        }
        self.since_publish += (samples.len() / usize::from(self.monitor.channels())) as u64;
        if self.since_publish >= self.publish_frames
            && let Ok(mut shared) = self.shared.try_lock()
        {
            // A busy reader only delays this to the next block.
            self.monitor.snapshot_into(&mut shared.meters);
            shared.meters.events_dropped += self.events_dropped;
            self.since_publish = 0;
        }
    }

    /// Starts bringing this meter's own fields into the caches (reads none of them): for
    /// [`prefetch_state`](Self::prefetch_state) a little later.
    pub fn prefetch_meter(&self) {
        estuary_io::memory::prefetch((&raw const *self).cast(), size_of::<Self>());
    }

    /// Starts bringing the state the next [`process`](Self::process) reads into the caches
    /// (see `Monitor::hot_memory`), reading only this meter's fields.
    pub fn prefetch_state(&self) {
        self.hot.prefetch();
        let mailbox = Arc::as_ptr(&self.mailbox);
        estuary_io::memory::prefetch(mailbox.cast(), size_of::<Mailbox>());
    }

    fn swap_in_retuned(&mut self) {
        // Never wait: the worker holds this lock only to post or to free.
        let Ok(mut slot) = self.mailbox.slot.try_lock() else {
            return;
        };
        if let Some((generation, monitor)) = slot.as_mut() {
            std::mem::swap(&mut self.monitor, monitor);
            self.hot = HotMemory::of(&self.monitor);
            self.generation = *generation;
            self.since_publish = self.publish_frames;
            self.mailbox.pending.store(false, Ordering::Release);
        }
    }
}

/// The metering of one input: the audio meters for the feeding thread, and the worker.
pub(super) fn start(
    input: &str,
    (channels, sample_rate): (u16, u32),
    (monitor, health): (MonitorConfig, HealthConfig),
    stats: Arc<Mutex<InputSnapshot>>,
    shared: Arc<Mutex<MeterShared>>,
    (signals, retune): (
        Option<Sender<Signal>>,
        Receiver<(MonitorConfig, HealthConfig)>,
    ),
) -> anyhow::Result<(InlineMeter, MeterWorker)> {
    let monitor = Box::new(Monitor::new(channels, sample_rate, monitor)?);
    let (events, events_rx) = rtrb::RingBuffer::new(EVENT_RING);
    let mailbox = Arc::new(Mailbox::default());
    let inline = InlineMeter {
        hot: HotMemory::of(&monitor),
        monitor,
        generation: 0,
        events,
        events_dropped: 0,
        mailbox: Arc::clone(&mailbox),
        shared: Arc::clone(&shared),
        since_publish: 0,
        publish_frames: (PUBLISH_PERIOD.as_secs_f64() * f64::from(sample_rate)) as u64,
    };
    let worker = MeterWorker {
        input: input.to_owned(),
        channels,
        events: events_rx,
        generation: 0,
        mailbox,
        health: HealthMonitor::new(sample_rate, health),
        stats,
        shared,
        signals,
        raised: Vec::new(),
        last_packet: None,
        retune,
        sample_rate,
    };
    Ok((inline, worker))
}

/// The per-input metering thread (see the module doc).
pub(super) struct MeterWorker {
    input: String,
    channels: u16,
    events: rtrb::Consumer<(u32, MonitorEvent)>,
    /// The settings whose changes count (see [`InlineMeter::generation`]).
    generation: u32,
    mailbox: Arc<Mailbox>,
    health: HealthMonitor,
    stats: Arc<Mutex<InputSnapshot>>,
    shared: Arc<Mutex<MeterShared>>,
    signals: Option<Sender<Signal>>,
    raised: Vec<(Condition, Option<u16>)>,
    last_packet: Option<(MonoTime, u64)>,
    /// New detector settings from a live config change, applied without touching audio.
    retune: Receiver<(MonitorConfig, HealthConfig)>,
    sample_rate: u32,
}

impl MeterWorker {
    /// One period's work: settings, alarm changes, health, publication.
    fn tick(&mut self) {
        if PAUSED.load(Ordering::Relaxed) {
            return;
        }
        if let Ok(settings) = self.retune.try_recv() {
            self.apply_settings(settings);
        }
        self.free_replaced();
        self.forward_audio_events();
        self.judge_health(monotonic_now());
        self.publish();
    }

    /// The route has stopped: clears what was raised and publishes that.
    fn finish(&mut self) {
        self.clear_all();
        self.publish();
    }

    /// Whatever was raised is over (route stopped, detectors replaced): say so, so no alarm
    /// stays stuck.
    fn clear_all(&mut self) {
        for (condition, channel) in std::mem::take(&mut self.raised) {
            self.send(condition, channel, false, 0.0);
        }
    }

    /// Replaces the detectors; the meters start over with them.
    fn apply_settings(&mut self, (monitor, health): (MonitorConfig, HealthConfig)) {
        match Monitor::new(self.channels, self.sample_rate, monitor) {
            Ok(new) => {
                self.clear_all();
                self.generation = self.generation.wrapping_add(1);
                *super::lock(&self.mailbox.slot) = Some((self.generation, Box::new(new)));
                self.mailbox.pending.store(true, Ordering::Release);
                self.health = HealthMonitor::new(self.sample_rate, health);
                self.last_packet = None;
            }
            // Settings were validated with the config; keep measuring with the old ones.
            Err(e) => tracing::warn!(input = %self.input, error = %e, "detector settings refused"),
        }
    }

    /// Frees the `Monitor` the feeding thread swapped out (here, not on the audio path).
    fn free_replaced(&mut self) {
        if !self.mailbox.pending.load(Ordering::Acquire) {
            drop(super::lock(&self.mailbox.slot).take());
        }
    }

    fn forward_audio_events(&mut self) {
        while let Ok((generation, e)) = self.events.pop() {
            if generation != self.generation {
                continue;
            }
            let condition = match e.kind {
                AlarmKind::Silence => Condition::Silence,
                AlarmKind::Clipping => Condition::Clipping,
                AlarmKind::Stuck => Condition::Stuck,
                AlarmKind::DcOffset => Condition::DcOffset,
                AlarmKind::Discontinuity => Condition::Discontinuity,
                AlarmKind::PhaseInverted => Condition::PhaseInverted,
            };
            let raised = e.change == Change::Raised;
            let channel = Some(e.channel + 1);
            track(&mut self.raised, condition, channel, raised);
            self.send(condition, channel, raised, e.detail);
        }
    }

    fn judge_health(&mut self, now: MonoTime) {
        let (stats, last_packet) = {
            let snap = super::lock(&self.stats);
            (snap.stats, snap.last_packet)
        };
        if let Some((arrival, position)) = last_packet
            && self.last_packet != last_packet
        {
            self.last_packet = last_packet;
            self.health.on_packet(arrival, position);
        }
        let events: Vec<_> = self.health.update(now, &stats).to_vec();
        for e in events {
            let condition = match e.kind {
                HealthKind::Loss => Condition::Loss,
                HealthKind::Late => Condition::Late,
                HealthKind::Duplicates => Condition::Duplicates,
                HealthKind::Reordered => Condition::Reordered,
                HealthKind::Jitter => Condition::Jitter,
                HealthKind::StreamChanged => Condition::StreamChanged,
                HealthKind::NoPackets => Condition::NoPackets,
                HealthKind::Drift => Condition::Drift,
            };
            let raised = e.change == Change::Raised;
            track(&mut self.raised, condition, None, raised);
            self.send(condition, None, raised, e.detail);
        }
    }

    fn send(&self, condition: Condition, channel: Option<u16>, raised: bool, value: f64) {
        if let Some(sink) = &self.signals {
            let _ = sink.send(Signal {
                scope: Scope::Input,
                subject: self.input.clone(),
                channel,
                condition,
                raised,
                value,
                at: SystemTime::now(),
            });
        }
    }

    fn publish(&mut self) {
        let health = self.health.snapshot();
        // The reader copies under the lock; skip a round rather than wait for it.
        if let Ok(mut shared) = self.shared.try_lock() {
            shared.health = health;
            shared.raised.clone_from(&self.raised);
        }
    }
}

fn track(
    raised: &mut Vec<(Condition, Option<u16>)>,
    condition: Condition,
    channel: Option<u16>,
    up: bool,
) {
    raised.retain(|&(c, ch)| (c, ch) != (condition, channel));
    if up {
        raised.push((condition, channel));
    }
}

/// A worker on the meter thread, until its route's halt is requested.
struct Adopted {
    worker: MeterWorker,
    halt: Stop,
    released: Sender<()>,
}

/// The thread that runs every input's [`MeterWorker`].
struct MeterThread {
    inbox: Mutex<Vec<Adopted>>,
    arrived: AtomicBool,
    thread: Thread,
}

static METERS: OnceLock<MeterThread> = OnceLock::new();

fn meter_thread() -> &'static MeterThread {
    METERS.get_or_init(|| {
        let thread = super::spawn_shared("meters", run);
        MeterThread {
            inbox: Mutex::new(Vec::new()),
            arrived: AtomicBool::new(false),
            thread,
        }
    })
}

/// Hands `worker` to the meter thread, which runs it until `halt` is requested.
pub(super) fn register(worker: MeterWorker, halt: Stop) -> Registration {
    let meters = meter_thread();
    let (released, registration) = Registration::new(meters.thread.clone());
    super::lock(&meters.inbox).push(Adopted {
        worker,
        halt,
        released,
    });
    meters.arrived.store(true, Ordering::Release);
    meters.thread.unpark();
    registration
}

fn run() {
    let mut workers: Vec<Adopted> = Vec::new();
    loop {
        let Some(meters) = METERS.get() else {
            thread::park_timeout(IDLE);
            continue;
        };
        if meters.arrived.swap(false, Ordering::Acquire) {
            workers.append(&mut super::lock(&meters.inbox));
        }
        workers.retain_mut(|a| {
            if a.halt.requested() {
                a.worker.finish();
                let _ = a.released.send(());
                return false;
            }
            a.worker.tick();
            true
        });
        // An unpark (a new worker, a route stopping) ends the nap early.
        thread::park_timeout(if workers.is_empty() {
            IDLE
        } else {
            PUBLISH_PERIOD
        });
    }
}
