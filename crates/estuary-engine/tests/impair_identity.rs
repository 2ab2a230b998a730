//! The counting identity between the impairment model and the jitter buffer, in virtual time:
//! what the buffer counts lost, late, reordered and duplicate follows exactly from what the
//! impairer did, including packets that arrive after their playout time.

use core::time::Duration;

use estuary_engine::impair::{ImpairConfig, Impairer};
use estuary_engine::jitter::{JitterBuffer, JitterConfig, PushOutcome};
use estuary_engine::time::MonoTime;
use estuary_wire::payload::SampleFormat;

fn packet(seq: u32, frames: u32, channels: u32) -> Vec<u8> {
    let mut p = vec![0x80, 98];
    p.extend_from_slice(&(seq as u16).to_be_bytes());
    p.extend_from_slice(&(seq.wrapping_mul(frames)).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 7]);
    p.extend(std::iter::repeat_n(1u8, (frames * channels * 3) as usize));
    p
}

fn run(frames: u32, latency_ms: u64, delay_jitter_us: u64, seed: u64, packets: u32) {
    let channels = 2;
    let mut jb = JitterBuffer::new(JitterConfig {
        channels: channels as u16,
        sample_rate: 48_000,
        format: SampleFormat::L24,
        payload_type: Some(98),
        latency: Duration::from_millis(latency_ms),
        capacity: Duration::from_millis(400),
    })
    .expect("config");
    let mut imp = Impairer::new(
        ImpairConfig {
            loss: 0.01,
            reorder: 0.05,
            reorder_depth: 3,
            // Duplicates with jitter: `identity_holds_with_duplicates_under_jitter`.
            duplicate: if delay_jitter_us > 0 && !DUPLICATES_UNDER_JITTER.with(|d| d.get()) {
                0.0
            } else {
                0.01
            },
            jitter: Duration::from_micros(delay_jitter_us),
            delay: Duration::from_micros(delay_jitter_us),
            impair_from: 100,
            impair_until: Some(u64::from(packets) - 200),
            ..ImpairConfig::default()
        },
        seed,
    )
    .expect("valid");
    let period_ns = u64::from(frames) * 1_000_000_000 / 48_000;
    let mut out = vec![0i32; 4800 * 2];
    let step = 50_000u64; // 50 µs virtual ticks
    // A sentinel packet 50 ms after the last one, straight to the buffer and in time, closes
    // any trailing gap: a packet missing at the very end is only known lost once a later one
    // is played. The `gap` packets between are never sent, so they count as lost.
    let gap = (50_000_000 / period_ns) as u32;
    let sentinel = packets + gap;
    let sentinel_at = u64::from(sentinel) * period_ns;
    let end = sentinel_at + 100_000_000;
    let mut next = 0u32;
    let mut t = 0u64;
    let mut sentinel_sent = false;
    let (mut first_seq, mut before_start) = (None::<u16>, 0u64);
    while t < end {
        let now = MonoTime::from_nanos(t);
        if !sentinel_sent && t >= sentinel_at {
            jb.push(now, &packet(sentinel, frames, channels));
            sentinel_sent = true;
        }
        while next < packets && u64::from(next) * period_ns <= t {
            imp.push(now, packet(next, frames, channels));
            next += 1;
        }
        while let Some(d) = imp.pop_due(now) {
            let seq = u16::from_be_bytes([d[2], d[3]]);
            match jb.push(now, &d) {
                PushOutcome::Started { .. } => first_seq = Some(seq),
                // Overtaken by the packet that started the stream: before the stream, so
                // late but never a gap in it.
                PushOutcome::Late if first_seq.is_some_and(|f| seq < f) => before_start += 1,
                _ => {}
            }
        }
        jb.pull(now, &mut out);
        t += step;
    }
    let r = imp.report();
    let s = *jb.stats();
    assert_eq!(s.resyncs, 0, "{s:?}");
    assert_eq!(s.packets_received, r.sent + 1);
    assert_eq!(
        s.packets_lost + r.duplicated,
        r.lost() + u64::from(gap) + s.packets_duplicate + s.packets_late - before_start,
        "frames {frames} seed {seed}: {r:?}\n{s:?}"
    );
    assert!(s.packets_reordered <= r.reordered);
    // A reordered original is not counted reordered by the buffer when it came late, or
    // when (with jitter) its duplicate copy overtook it and was stored first.
    let overtaken_by_copy = if delay_jitter_us > 0 { r.duplicated } else { 0 };
    assert!(
        r.reordered - s.packets_reordered <= s.packets_late + overtaken_by_copy,
        "{r:?}\n{s:?}"
    );
}

#[test]
fn identity_holds_without_late_packets() {
    for seed in 0..5 {
        run(48, 10, 0, seed, 3000);
        run(6, 10, 0, seed, 20_000);
    }
}

#[test]
fn identity_holds_across_sequence_wraps() {
    run(6, 10, 0, 1, 140_000);
}

/// Packets late by the jitter: each is counted late *and* lost (its slot was played as
/// silence). Packets overtaken by the one that started the stream, and a gap at the very end
/// with nothing played after it, are the only exceptions; the sentinel and `before_start`
/// account for them.
#[test]
fn identity_holds_with_late_packets_under_jitter() {
    for seed in 0..4 {
        run(48, 3, 2000, seed, 3000);
        run(6, 4, 1500, seed, 20_000);
    }
}

/// With jitter a duplicate copy and its original are delayed independently (they can swap,
/// or straddle the playout point); the identity still holds.
#[test]
fn identity_holds_with_duplicates_under_jitter() {
    DUPLICATES_UNDER_JITTER.with(|d| d.set(true));
    for seed in 0..4 {
        run(48, 3, 2000, seed, 3000);
        run(6, 4, 1500, seed, 20_000);
    }
}

thread_local! {
    static DUPLICATES_UNDER_JITTER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}
