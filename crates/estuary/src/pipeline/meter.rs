//! One metering thread per receiving input: meters, loudness, signal detectors and stream
//! health, fed by its own ring exactly like an output, so the ingest thread pays one copy and
//! metering can never delay audio.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use estuary_engine::monitor::detect::Change;
use estuary_engine::monitor::health::{HealthConfig, HealthKind, HealthMonitor, HealthSnapshot};
use estuary_engine::monitor::{AlarmKind, MeterSnapshot, Monitor, MonitorConfig};
use estuary_engine::time::MonoTime;
use estuary_io::clock::monotonic_now;

use super::InputSnapshot;
use crate::gateway::{Condition, Scope, Signal};
use crate::shutdown::Stop;

/// Blocks measured per second: 10 ms, the detectors' window.
const BLOCKS_PER_SECOND: u32 = 100;
/// How often health is judged and the snapshot published.
const PUBLISH_PERIOD: Duration = Duration::from_millis(50);

/// What the metering thread publishes.
#[derive(Debug, Clone, Default)]
pub struct MeterShared {
    pub meters: MeterSnapshot,
    pub health: HealthSnapshot,
    /// Raised conditions, for the input's health badge (alarm rules give them severities).
    pub raised: Vec<(Condition, Option<u16>)>,
}

pub(super) struct MeterWorker {
    input: String,
    samples: rtrb::Consumer<i32>,
    channels: usize,
    monitor: Monitor,
    health: HealthMonitor,
    stats: Arc<Mutex<InputSnapshot>>,
    shared: Arc<Mutex<MeterShared>>,
    signals: Option<Sender<Signal>>,
    block: Vec<i32>,
    published: MeterShared,
    last_packet: Option<(MonoTime, u64)>,
    /// New detector settings from a live config change, applied without touching audio.
    retune: Receiver<(MonitorConfig, HealthConfig)>,
    sample_rate: u32,
}

impl MeterWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        input: &str,
        samples: rtrb::Consumer<i32>,
        (channels, sample_rate): (u16, u32),
        (monitor, health): (MonitorConfig, HealthConfig),
        stats: Arc<Mutex<InputSnapshot>>,
        shared: Arc<Mutex<MeterShared>>,
        (signals, retune): (
            Option<Sender<Signal>>,
            Receiver<(MonitorConfig, HealthConfig)>,
        ),
    ) -> anyhow::Result<Self> {
        let monitor = Monitor::new(channels, sample_rate, monitor)?;
        Ok(MeterWorker {
            input: input.to_owned(),
            samples,
            channels: usize::from(channels),
            monitor,
            health: HealthMonitor::new(sample_rate, health),
            stats,
            shared,
            signals,
            block: vec![
                0;
                (sample_rate / BLOCKS_PER_SECOND).max(1) as usize * usize::from(channels)
            ],
            published: MeterShared::default(),
            last_packet: None,
            retune,
            sample_rate,
        })
    }

    /// Frames per measured block; the ingest thread wakes the worker when one is complete.
    pub fn block_frames(&self) -> usize {
        self.block.len() / self.channels
    }

    /// Measures until `halt`. The ingest thread unparks it when a block is ready.
    pub fn run(mut self, halt: &Stop) {
        let mut next_publish = monotonic_now();
        while !halt.requested() {
            thread::park_timeout(Duration::from_millis(10));
            if let Ok(settings) = self.retune.try_recv() {
                self.apply_settings(settings);
            }
            self.measure();
            let now = monotonic_now();
            if now >= next_publish {
                next_publish = now.saturating_add(PUBLISH_PERIOD);
                self.judge_health(now);
                self.publish();
            }
        }
        self.clear_all();
        self.publish();
    }

    /// Whatever was raised is over (route stopped, detectors replaced): say so, so no alarm
    /// stays stuck.
    fn clear_all(&mut self) {
        for (condition, channel) in std::mem::take(&mut self.published.raised) {
            self.send(condition, channel, false, 0.0);
        }
    }

    /// Replaces the detectors; the meters start over with them.
    fn apply_settings(&mut self, (monitor, health): (MonitorConfig, HealthConfig)) {
        let channels = self.monitor.channels();
        match Monitor::new(channels, self.sample_rate, monitor) {
            Ok(new) => {
                self.clear_all();
                self.monitor = new;
                self.health = HealthMonitor::new(self.sample_rate, health);
                self.last_packet = None;
            }
            // Settings were validated with the config; keep measuring with the old ones.
            Err(e) => tracing::warn!(input = %self.input, error = %e, "detector settings refused"),
        }
    }

    fn measure(&mut self) {
        let block = self.block.len();
        while self.samples.slots() >= block {
            let Ok(chunk) = self.samples.read_chunk(block) else {
                break;
            };
            let (a, b) = chunk.as_slices();
            self.block[..a.len()].copy_from_slice(a);
            self.block[a.len()..].copy_from_slice(b);
            chunk.commit_all();
            let events = self.monitor.process(monotonic_now(), &self.block);
            for e in events {
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
                let signal = Signal {
                    scope: Scope::Input,
                    subject: self.input.clone(),
                    channel,
                    condition,
                    raised,
                    value: e.detail,
                    at: SystemTime::now(),
                };
                track(&mut self.published.raised, condition, channel, raised);
                if let Some(sink) = &self.signals {
                    let _ = sink.send(signal);
                }
            }
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
            track(&mut self.published.raised, condition, None, raised);
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
        self.monitor.snapshot_into(&mut self.published.meters);
        self.published.health = self.health.snapshot();
        // The reader copies under the lock; skip a round rather than wait for it.
        if let Ok(mut shared) = self.shared.try_lock() {
            shared.clone_from(&self.published);
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
