//! Stream-health alarms: counters from scripted `StreamStats`, the no-packets timer, the
//! drift estimate, and a jitter-buffer run with scripted packet loss.

use core::time::Duration;

use estuary_engine::jitter::{JitterBuffer, JitterConfig, PushOutcome};
use estuary_engine::monitor::detect::Change;
use estuary_engine::monitor::health::{HealthConfig, HealthEvent, HealthKind, HealthMonitor};
use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;
use estuary_wire::payload::{SampleFormat, encode_into};
use estuary_wire::rtp::RtpPacketBuilder;
use estuary_wire::units::{RtpTimestamp, SeqNum};

const RATE: u32 = 48_000;
const MS: u64 = 1_000_000;

fn ms(t: u64) -> MonoTime {
    MonoTime::from_nanos(t * MS)
}

fn timeline(events: &[HealthEvent]) -> Vec<(HealthKind, Change, MonoTime)> {
    events.iter().map(|e| (e.kind, e.change, e.at)).collect()
}

#[test]
fn loss_raises_at_once_and_clears_after_5_s_without_loss() {
    let mut h = HealthMonitor::new(RATE, HealthConfig::default());
    let mut stats = StreamStats::default();
    let mut events = Vec::new();
    for k in 0..=80u64 {
        stats.packets_received += 100;
        if k == 10 {
            stats.packets_lost += 3;
        }
        events.extend_from_slice(h.update(ms(k * 100), &stats));
    }
    assert_eq!(
        timeline(&events),
        vec![
            (HealthKind::Loss, Change::Raised, ms(1_000)),
            (HealthKind::Loss, Change::Cleared, ms(6_000)),
        ]
    );
    assert_eq!(events[0].detail, 3.0);
}

#[test]
fn ssrc_change_and_jitter_alarms() {
    let mut h = HealthMonitor::new(RATE, HealthConfig::default());
    let mut stats = StreamStats {
        payload_type: Some(97),
        ssrc: Some(1),
        ..StreamStats::default()
    };
    let mut events = Vec::new();
    for k in 0..=60u64 {
        stats.packets_received += 100;
        if k == 5 {
            stats.ssrc_changes += 1;
            stats.resyncs += 1;
            stats.ssrc = Some(2);
        }
        // 2 ms of jitter (96 samples) from 1.0 s to 1.9 s, then 0.8 ms, then 0.5 ms from 2.5 s.
        stats.jitter = match k {
            10..20 => 96,
            20..25 => 38,
            _ => 24,
        };
        events.extend_from_slice(h.update(ms(k * 100), &stats));
    }
    assert_eq!(
        timeline(&events),
        vec![
            (HealthKind::StreamChanged, Change::Raised, ms(500)),
            // The update at 1.0 s reports 2 ms for the interval from 0.9 s: held 1 s at 1.9 s.
            // It then stays raised (0.8 ms is inside the hysteresis band, and 0.5 ms from
            // 2.4 s would need 5 s to clear).
            (HealthKind::Jitter, Change::Raised, ms(1_900)),
            (HealthKind::StreamChanged, Change::Cleared, ms(5_500)),
        ]
    );
    assert_eq!(events[0].detail, 2.0);
    assert!((events[1].detail - 2_000.0).abs() < 1e-9);
    assert!(h.snapshot().jitter);
}

#[test]
fn no_packets_raises_after_100_ms_and_clears_on_the_next_packet() {
    let mut h = HealthMonitor::new(RATE, HealthConfig::default());
    let mut stats = StreamStats::default();
    let mut events = Vec::new();
    // Packets every millisecond until 2.0 s, none until 3.0 s, then again.
    for t in 0..4_000u64 {
        if !(2_000..3_000).contains(&t) {
            h.on_packet(ms(t), t * 48);
            stats.packets_received += 1;
        }
        if t % 50 == 0 {
            events.extend_from_slice(h.update(ms(t), &stats));
        }
    }
    assert_eq!(
        timeline(&events),
        vec![
            // Last packet at 1 999 ms: 101 ms later at the update of 2 100 ms.
            (HealthKind::NoPackets, Change::Raised, ms(2_100)),
            (HealthKind::NoPackets, Change::Cleared, ms(3_000)),
        ]
    );
    assert_eq!(events[0].detail, 101.0);
}

/// Feeds 1 ms packets from a sender whose clock is `ppm` fast, arrivals jittered by a
/// deterministic pseudo-random 0..`jitter_us`, for `seconds`; returns the events.
fn drift_run(ppm: f64, jitter_us: u64, seconds: u64) -> (HealthMonitor, Vec<HealthEvent>) {
    let config = HealthConfig {
        drift_threshold_ppm: 50.0,
        ..HealthConfig::default()
    };
    let mut h = HealthMonitor::new(RATE, config);
    let mut stats = StreamStats::default();
    let mut events = Vec::new();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_update = 0u64;
    for k in 0..seconds * 1_000 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let jitter = if jitter_us == 0 {
            0
        } else {
            rng % (jitter_us * 1_000)
        };
        let sent = (k as f64 * 1e6 / (1.0 + ppm * 1e-6)) as u64;
        let arrival = sent + 1_000_000 + jitter;
        h.on_packet(MonoTime::from_nanos(arrival), k * 48);
        stats.packets_received += 1;
        if arrival >= next_update {
            events.extend_from_slice(h.update(MonoTime::from_nanos(arrival), &stats));
            next_update += 100 * MS;
        }
    }
    (h, events)
}

#[test]
fn drift_of_a_fast_sender_is_measured_in_ppm() {
    let (h, events) = drift_run(100.0, 0, 25);
    let ppm = h.snapshot().drift_ppm.unwrap_or(f64::NAN);
    assert!((ppm - 100.0).abs() < 1.0, "{ppm}");
    let raised: Vec<_> = events
        .iter()
        .filter(|e| e.kind == HealthKind::Drift)
        .map(|e| e.change)
        .collect();
    assert_eq!(raised, vec![Change::Raised]);
    // With up to 1 ms of random arrival jitter the estimate stays within 5 ppm.
    let (h, _) = drift_run(100.0, 1_000, 25);
    let ppm = h.snapshot().drift_ppm.unwrap_or(f64::NAN);
    assert!((ppm - 100.0).abs() < 5.0, "{ppm}");
    // A nominal sender: about 0, no alarm.
    let (h, events) = drift_run(0.0, 1_000, 25);
    let ppm = h.snapshot().drift_ppm.unwrap_or(f64::NAN);
    assert!(ppm.abs() < 5.0, "{ppm}");
    assert!(
        events.iter().all(|e| e.kind != HealthKind::Drift),
        "{events:?}"
    );
}

/// One L24 stereo 1 ms RTP packet, sequence `k`.
fn packet(k: u64) -> Vec<u8> {
    let samples = [0x0010_0000i32; 48 * 2];
    let mut payload = [0u8; 48 * 2 * 3];
    let n = encode_into(SampleFormat::L24, &samples, &mut payload).expect("encode");
    let builder = RtpPacketBuilder {
        payload_type: 97,
        sequence: SeqNum(k as u16),
        timestamp: RtpTimestamp((k * 48) as u32),
        ssrc: 0x1234,
        payload: &payload[..n],
        ..RtpPacketBuilder::default()
    };
    let mut bytes = vec![0u8; builder.wire_size()];
    builder.write_into(&mut bytes).expect("write");
    bytes
}

#[test]
fn jitter_buffer_loss_drives_the_loss_alarm() {
    let mut jb = JitterBuffer::new(JitterConfig {
        channels: 2,
        sample_rate: RATE,
        format: SampleFormat::L24,
        payload_type: Some(97),
        latency: Duration::from_millis(5),
        capacity: Duration::from_millis(200),
    })
    .expect("config");
    let mut h = HealthMonitor::new(RATE, HealthConfig::default());
    let mut out = vec![0i32; 4096 * 2];
    let mut events = Vec::new();
    // Packet k is sent at k ms and arrives 1 ms later; packets 500..=503 are lost.
    for t in 1..=12_000u64 {
        let k = t - 1;
        if !(500..=503).contains(&k) {
            match jb.push(ms(t), &packet(k)) {
                PushOutcome::Started { position, .. } | PushOutcome::Stored { position, .. } => {
                    h.on_packet(ms(t), position);
                }
                other => panic!("packet {k}: {other:?}"),
            }
        }
        let _ = jb.pull(ms(t), &mut out);
        if t % 100 == 0 {
            events.extend_from_slice(h.update(ms(t), jb.stats()));
        }
    }
    assert_eq!(jb.stats().packets_lost, 4);
    assert_eq!(
        timeline(&events),
        vec![
            // The gap ends at playout of packet 504 (≈ 510 ms): seen by the 600 ms update.
            (HealthKind::Loss, Change::Raised, ms(600)),
            (HealthKind::Loss, Change::Cleared, ms(5_600)),
        ]
    );
    assert_eq!(events[0].detail, 4.0);
    let drift = h.snapshot().drift_ppm.unwrap_or(f64::NAN);
    assert!(drift.abs() < 1.0, "{drift}");
}
