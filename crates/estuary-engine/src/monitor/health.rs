//! Stream-health alarms from [`StreamStats`] deltas and packet arrival times.
//!
//! The daemon calls [`HealthMonitor::update`] with the jitter buffer's counters at a steady
//! pace (e.g. every 100 ms, when statistics are published) and
//! [`HealthMonitor::on_packet`] for every stored packet (the `position` of
//! `PushOutcome::Started`/`Stored`). Counter alarms see the interval between two updates as
//! one sample of their condition ("some packets were lost in it"), debounced by
//! [`Debounce`] in nanoseconds. Nothing here allocates after [`HealthMonitor::new`].
//!
//! Packet-time drift is the sender's media clock measured against the local clock: the slope
//! of a least-squares fit of media position against arrival time over each `drift_window`,
//! in ppm of the nominal rate. Network jitter averages out of the fit (1 ms of random jitter
//! on 1 ms packets costs about 4 ppm over 10 s).

use core::time::Duration;

use crate::monitor::detect::{Change, Debounce, Timing};
use crate::stats::StreamStats;
use crate::time::MonoTime;

const NANOS: u64 = 1_000_000_000;

/// Thresholds and timings of the health alarms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthConfig {
    /// `packets_lost` grew (default: raise at once, clear after 5 s without).
    pub loss: Timing,
    /// `packets_late` grew (same default).
    pub late: Timing,
    /// `packets_duplicate` grew (same default).
    pub duplicates: Timing,
    /// `packets_reordered` grew (same default).
    pub reordered: Timing,
    /// Interarrival jitter above which the jitter alarm's condition holds (default 1 ms).
    pub jitter_threshold: Duration,
    /// While raised, jitter counts as fine only below `threshold − hysteresis` (default 250 µs).
    pub jitter_hysteresis: Duration,
    /// Jitter debounce (default raise after 1 s, clear after 5 s).
    pub jitter: Timing,
    /// SSRC, payload type or resync changed (default: raise at once, clear after 5 s).
    pub stream_change: Timing,
    /// No packet for this long raises the no-packets alarm; the next packet clears it
    /// (default 100 ms).
    pub no_packets_after: Duration,
    /// Drift measurement window (default 10 s).
    pub drift_window: Duration,
    /// `|drift|` above which the drift alarm's condition holds (default 200 ppm).
    pub drift_threshold_ppm: f64,
    /// While raised, drift counts as fine only below `threshold − hysteresis` (default 20 ppm).
    pub drift_hysteresis_ppm: f64,
    /// Drift debounce, counted in measurement windows (default raise at once, clear after 0:
    /// one window decides).
    pub drift: Timing,
}

impl Default for HealthConfig {
    fn default() -> Self {
        let counter = Timing::new(Duration::ZERO, Duration::from_secs(5));
        HealthConfig {
            loss: counter,
            late: counter,
            duplicates: counter,
            reordered: counter,
            jitter_threshold: Duration::from_millis(1),
            jitter_hysteresis: Duration::from_micros(250),
            jitter: Timing::new(Duration::from_secs(1), Duration::from_secs(5)),
            stream_change: counter,
            no_packets_after: Duration::from_millis(100),
            drift_window: Duration::from_secs(10),
            drift_threshold_ppm: 200.0,
            drift_hysteresis_ppm: 20.0,
            drift: Timing::new(Duration::ZERO, Duration::ZERO),
        }
    }
}

/// What a health alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HealthKind {
    /// Detail: packets lost in the interval.
    Loss,
    /// Detail: late packets in the interval.
    Late,
    /// Detail: duplicates in the interval.
    Duplicates,
    /// Detail: reordered packets in the interval.
    Reordered,
    /// Detail: jitter in microseconds.
    Jitter,
    /// Detail: SSRC changes + payload-type changes + resyncs in the interval.
    StreamChanged,
    /// Detail: milliseconds since the last packet (0 on clear).
    NoPackets,
    /// Detail: drift in ppm.
    Drift,
}

/// A health alarm state change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthEvent {
    /// What.
    pub kind: HealthKind,
    /// Raised or cleared.
    pub change: Change,
    /// A value explaining it (see [`HealthKind`]).
    pub detail: f64,
    /// When (the `now` of the update that decided it).
    pub at: MonoTime,
}

/// Current health values and alarm states.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HealthSnapshot {
    /// Last completed drift estimate, ppm (positive: the sender's clock is fast).
    pub drift_ppm: Option<f64>,
    /// Jitter in microseconds at the last update.
    pub jitter_us: f64,
    /// Raised alarms.
    pub loss: bool,
    /// Raised alarms.
    pub late: bool,
    /// Raised alarms.
    pub duplicates: bool,
    /// Raised alarms.
    pub reordered: bool,
    /// Raised alarms.
    pub jitter: bool,
    /// Raised alarms.
    pub stream_changed: bool,
    /// Raised alarms.
    pub no_packets: bool,
    /// Raised alarms.
    pub drift: bool,
}

/// Least-squares sums of (arrival seconds, position frames) relative to the window start.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Fit {
    start: Option<(MonoTime, u64)>,
    n: f64,
    t: f64,
    p: f64,
    tt: f64,
    tp: f64,
}

impl Fit {
    fn add(&mut self, t: f64, p: f64) {
        self.n += 1.0;
        self.t += t;
        self.p += p;
        self.tt += t * t;
        self.tp += t * p;
    }

    /// Slope in frames per second, if the points span some time.
    fn slope(&self) -> Option<f64> {
        let denominator = self.n * self.tt - self.t * self.t;
        (self.n >= 2.0 && denominator > 0.0)
            .then(|| (self.n * self.tp - self.t * self.p) / denominator)
    }
}

/// Health alarms of one received stream: see the module docs.
#[derive(Debug, Clone)]
pub struct HealthMonitor {
    sample_rate: u32,
    config: HealthConfig,
    previous: Option<(MonoTime, StreamStats)>,
    first_update: Option<MonoTime>,
    last_packet: Option<MonoTime>,
    fit: Fit,
    drift_ppm: Option<f64>,
    /// Drift estimate not yet judged by an update.
    drift_fresh: bool,
    /// Arrival interval (ns) the last estimate covers: the drift alarm's debounce counts
    /// measurement windows, not update intervals.
    drift_interval: (u64, u64),
    jitter_us: f64,
    loss: Debounce,
    late: Debounce,
    duplicates: Debounce,
    reordered: Debounce,
    jitter: Debounce,
    stream_change: Debounce,
    no_packets: bool,
    drift: Debounce,
    events: Vec<HealthEvent>,
}

impl HealthMonitor {
    /// A monitor for a stream whose media clock is `sample_rate` Hz.
    pub fn new(sample_rate: u32, config: HealthConfig) -> Self {
        let d = |t: Timing| Debounce::with_timing(t, NANOS);
        HealthMonitor {
            sample_rate,
            config,
            previous: None,
            first_update: None,
            last_packet: None,
            fit: Fit::default(),
            drift_ppm: None,
            drift_fresh: false,
            drift_interval: (0, 0),
            jitter_us: 0.0,
            loss: d(config.loss),
            late: d(config.late),
            duplicates: d(config.duplicates),
            reordered: d(config.reordered),
            jitter: d(config.jitter),
            stream_change: d(config.stream_change),
            no_packets: false,
            drift: d(config.drift),
            events: Vec::with_capacity(16),
        }
    }

    /// A packet whose first frame is at media `position` was stored, having arrived at
    /// `arrival`.
    pub fn on_packet(&mut self, arrival: MonoTime, position: u64) {
        self.last_packet = Some(self.last_packet.map_or(arrival, |t| t.max(arrival)));
        let Some((t0, p0)) = self.fit.start else {
            self.fit = Fit {
                start: Some((arrival, position)),
                ..Fit::default()
            };
            self.fit.add(0.0, 0.0);
            return;
        };
        let elapsed = arrival.duration_since(t0);
        // A position far outside the window (resync, sender restart) restarts the fit.
        let span =
            u64::from(self.sample_rate).saturating_mul(self.config.drift_window.as_secs() + 2);
        if position < p0 || position - p0 > span {
            self.fit = Fit::default();
            self.on_packet(arrival, position);
            return;
        }
        self.fit.add(elapsed.as_secs_f64(), (position - p0) as f64);
        if elapsed >= self.config.drift_window {
            if let Some(slope) = self.fit.slope() {
                self.drift_ppm = Some((slope / f64::from(self.sample_rate) - 1.0) * 1e6);
                self.drift_fresh = true;
                self.drift_interval = (t0.as_nanos(), arrival.as_nanos());
            }
            self.fit = Fit::default();
        }
    }

    /// Accounts the counters at `now` and returns the alarm changes. The first call only sets
    /// the baseline (and starts the no-packets clock).
    pub fn update(&mut self, now: MonoTime, stats: &StreamStats) -> &[HealthEvent] {
        self.events.clear();
        let Some((before, old)) = self.previous.replace((now, *stats)) else {
            self.first_update = Some(now);
            return &self.events;
        };
        let (start, end) = (before.as_nanos(), now.as_nanos());
        let mut sink = Sink {
            events: &mut self.events,
            at: now,
        };
        let delta = |new: u64, old: u64| new.saturating_sub(old);
        for (kind, alarm, n) in [
            (
                HealthKind::Loss,
                &mut self.loss,
                delta(stats.packets_lost, old.packets_lost),
            ),
            (
                HealthKind::Late,
                &mut self.late,
                delta(stats.packets_late, old.packets_late),
            ),
            (
                HealthKind::Duplicates,
                &mut self.duplicates,
                delta(stats.packets_duplicate, old.packets_duplicate),
            ),
            (
                HealthKind::Reordered,
                &mut self.reordered,
                delta(stats.packets_reordered, old.packets_reordered),
            ),
        ] {
            sink.push(kind, alarm.update(start, end, n > 0), n as f64);
        }
        let changes = delta(stats.ssrc_changes, old.ssrc_changes)
            + delta(stats.resyncs, old.resyncs)
            + u64::from(stats.payload_type != old.payload_type && old.payload_type.is_some());
        let change = self.stream_change.update(start, end, changes > 0);
        sink.push(HealthKind::StreamChanged, change, changes as f64);
        self.jitter_us = f64::from(stats.jitter) * 1e6 / f64::from(self.sample_rate);
        let threshold_us = self.config.jitter_threshold.as_secs_f64() * 1e6;
        let present = if self.jitter.active() {
            self.jitter_us >= threshold_us - self.config.jitter_hysteresis.as_secs_f64() * 1e6
        } else {
            self.jitter_us > threshold_us
        };
        let change = self.jitter.update(start, end, present);
        sink.push(HealthKind::Jitter, change, self.jitter_us);
        self.update_no_packets(now, stats.packets_received > old.packets_received, before);
        if self.drift_fresh {
            self.drift_fresh = false;
            self.update_drift(now);
        }
        &self.events
    }

    /// Current values and alarm states.
    pub fn snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            drift_ppm: self.drift_ppm,
            jitter_us: self.jitter_us,
            loss: self.loss.active(),
            late: self.late.active(),
            duplicates: self.duplicates.active(),
            reordered: self.reordered.active(),
            jitter: self.jitter.active(),
            stream_changed: self.stream_change.active(),
            no_packets: self.no_packets,
            drift: self.drift.active(),
        }
    }

    /// No packets for `no_packets_after`: counted from the last packet (or the first update
    /// when none came yet); cleared by the first update that saw packets arrive. `before` is
    /// the previous update.
    fn update_no_packets(&mut self, now: MonoTime, received: bool, before: MonoTime) {
        if received {
            // Without `on_packet` arrivals in this interval, the counters only say a packet came
            // by `now`: the alarm may then fire up to one update period late, never early.
            if self.last_packet.is_none_or(|t| t <= before) {
                self.last_packet = Some(now);
            }
            if self.no_packets {
                self.no_packets = false;
                self.events.push(HealthEvent {
                    kind: HealthKind::NoPackets,
                    change: Change::Cleared,
                    detail: 0.0,
                    at: now,
                });
            }
            return;
        }
        let since = now.duration_since(
            self.last_packet
                .unwrap_or(self.first_update.unwrap_or(before)),
        );
        if !self.no_packets && since >= self.config.no_packets_after {
            self.no_packets = true;
            self.events.push(HealthEvent {
                kind: HealthKind::NoPackets,
                change: Change::Raised,
                detail: since.as_secs_f64() * 1e3,
                at: now,
            });
        }
    }

    fn update_drift(&mut self, now: MonoTime) {
        let (start, end) = self.drift_interval;
        let Some(ppm) = self.drift_ppm else {
            return;
        };
        let c = &self.config;
        let present = if self.drift.active() {
            ppm.abs() >= c.drift_threshold_ppm - c.drift_hysteresis_ppm
        } else {
            ppm.abs() > c.drift_threshold_ppm
        };
        let change = self.drift.update(start, end, present);
        let mut sink = Sink {
            events: &mut self.events,
            at: now,
        };
        sink.push(HealthKind::Drift, change, ppm);
    }
}

/// Pushes changes into the preallocated event buffer (at most one per alarm per update, so
/// it never grows past its initial capacity).
struct Sink<'a> {
    events: &'a mut Vec<HealthEvent>,
    at: MonoTime,
}

impl Sink<'_> {
    fn push(&mut self, kind: HealthKind, change: Option<Change>, detail: f64) {
        if let Some(change) = change {
            self.events.push(HealthEvent {
                kind,
                change,
                detail,
                at: self.at,
            });
        }
    }
}
