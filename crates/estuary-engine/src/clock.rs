//! Playout clocks: which media positions are due at a given local time.
//!
//! The jitter buffer stores audio by media position (the 64-bit extended RTP timestamp) and
//! asks a [`PlayoutClock`] which positions are due. Without PTP, [`PacketClock`] derives that
//! mapping from the packets themselves; a PTP-locked clock (media time = PTP time × rate −
//! latency) can implement the same trait later and ignore the arrival callbacks.
//!
//! # The packet-clocked mapping
//!
//! Position `p` is due at `t_a + (p − p_a) / r`, where the anchor `(t_a, p_a)` starts at the
//! first packet (`t_a` = its arrival + latency, `p_a` = its first frame) and `r` is the
//! playout rate in frames per second, nominally the configured sample rate.
//!
//! For every stored packet the clock measures its *lead*: how long before its deadline it
//! arrived. The largest lead over a sliding window (4 blocks of 500 ms) belongs to the packet
//! with the least network delay, so it is insensitive to jitter; the controller steers it
//! towards the configured latency. A proportional-integral loop (updated once per block)
//! turns the error into a small rate correction, clamped to ±[`MAX_CORRECTION_PPM`], so the
//! playout rate follows the sender's clock (drift of ±100 ppm is typical) and the buffer
//! neither fills up nor runs dry over hours. Rate changes re-anchor the mapping at the
//! current position, so the position sequence stays continuous: frames are never skipped or
//! repeated, only delivered slightly faster or slower (a resampler downstream absorbs that).
//!
//! All arithmetic on positions and times is integer (Q32.32 positions, `i128`), so a clean
//! stream maps exactly and results are bit-for-bit deterministic.

use crate::time::MonoTime;

/// Maps local time to due media positions.
pub trait PlayoutClock {
    /// A (new) stream starts: its first packet, whose first frame is at `position`, arrived
    /// at `now`. Called on the first packet and on every resync.
    fn start(&mut self, now: MonoTime, position: u64);

    /// A packet whose first frame is at `position` was stored, having arrived at `now`
    /// (also called for the packet passed to [`PlayoutClock::start`]).
    fn on_arrival(&mut self, now: MonoTime, position: u64);

    /// Exclusive end of the positions due at `now`: every frame at a position below it should
    /// have been played out. `None` while the clock has no mapping. Never decreases while
    /// `now` increases between two calls of [`PlayoutClock::start`].
    fn due_end(&self, now: MonoTime) -> Option<u64>;

    /// The earliest instant `t` with `due_end(t) > position`, or `None` while the clock has no
    /// mapping. May be in the past.
    fn due_time(&self, position: u64) -> Option<MonoTime>;
}

/// Largest rate correction the packet clock applies, in parts per million.
pub const MAX_CORRECTION_PPM: f64 = 1_000.0;

const NANOS_PER_SEC: i128 = 1_000_000_000;
/// One frame in Q32.32.
const ONE_Q: i128 = 1 << 32;
/// Length of one measurement block (nanoseconds of arrival time).
const BLOCK_NANOS: u64 = 500_000_000;
/// Blocks in the sliding window of the earliest-arrival (largest-lead) tracker.
const WINDOW_BLOCKS: usize = 4;
/// Proportional gain: rate correction per second of lead error (1 ms → 100 ppm).
const KP: f64 = 0.1;
/// Integral gain in 1/s²; `KP² / 4` makes the loop critically damped (time constant ≈ 20 s).
const KI: f64 = 0.0025;

/// The mapping `(t_a, p_a, r)` of the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    /// `t_a` in nanoseconds.
    time: i128,
    /// `p_a` in Q32.32 frames.
    position_q: i128,
    /// `r` in Q32.32 frames per second.
    rate_q: i128,
}

impl Anchor {
    /// Position (Q32.32) reached at `now`.
    fn position_q_at(&self, now: MonoTime) -> i128 {
        let dt = i128::from(now.as_nanos()) - self.time;
        self.position_q + dt.saturating_mul(self.rate_q).div_euclid(NANOS_PER_SEC)
    }

    /// Nanoseconds from `t_a` until the position `offset_q` (Q32.32, relative to `p_a`) is
    /// reached, rounded up.
    fn nanos_until(&self, offset_q: i128) -> i128 {
        let num = offset_q.saturating_mul(NANOS_PER_SEC);
        -((-num).div_euclid(self.rate_q))
    }
}

/// The packet-clocked [`PlayoutClock`] (no PTP): see the module docs.
#[derive(Debug, Clone)]
pub struct PacketClock {
    sample_rate: u32,
    latency_nanos: i128,
    anchor: Option<Anchor>,
    /// Start of the current measurement block.
    block_start: MonoTime,
    /// Largest lead seen in the current block, in nanoseconds.
    block_lead: Option<i128>,
    /// Largest leads of the last blocks (ring), nanoseconds.
    window: [i128; WINDOW_BLOCKS],
    window_len: usize,
    window_next: usize,
    /// Integral term of the controller (fractional frequency offset).
    frequency: f64,
    /// Applied correction (fractional), `r = rate × (1 + correction)`.
    correction: f64,
}

impl PacketClock {
    /// A clock for a stream at `sample_rate` Hz played out `latency` after the earliest
    /// arrivals.
    pub fn new(sample_rate: u32, latency: core::time::Duration) -> Self {
        PacketClock {
            sample_rate,
            latency_nanos: i128::try_from(latency.as_nanos()).unwrap_or(i128::MAX / 4),
            anchor: None,
            block_start: MonoTime::ZERO,
            block_lead: None,
            window: [0; WINDOW_BLOCKS],
            window_len: 0,
            window_next: 0,
            frequency: 0.0,
            correction: 0.0,
        }
    }

    /// The rate correction currently applied, in parts per million (positive: playing out
    /// faster than the nominal rate because the sender's clock is fast).
    pub fn correction_ppm(&self) -> f64 {
        self.correction * 1e6
    }

    fn nominal_rate_q(&self) -> i128 {
        i128::from(self.sample_rate) << 32
    }

    /// Closes the current block: feeds its largest lead to the controller and re-anchors
    /// the mapping at `now` with the new rate.
    fn close_block(&mut self, now: MonoTime) {
        let Some(lead) = self.block_lead.take() else {
            return;
        };
        self.window[self.window_next] = lead;
        self.window_next = (self.window_next + 1) % WINDOW_BLOCKS;
        self.window_len = (self.window_len + 1).min(WINDOW_BLOCKS);
        let Some(max_lead) = self.window[..self.window_len].iter().copied().max() else {
            return;
        };
        // Positive error: even the earliest packets arrive earlier than needed, the buffer
        // holds more than the latency, so play out faster.
        let error_s = (max_lead - self.latency_nanos) as f64 * 1e-9;
        let block_s = BLOCK_NANOS as f64 * 1e-9;
        let max = MAX_CORRECTION_PPM * 1e-6;
        self.frequency = (self.frequency + KI * block_s * error_s).clamp(-max, max);
        self.correction = (self.frequency + KP * error_s).clamp(-max, max);
        if let Some(anchor) = &mut self.anchor {
            let position_q = anchor.position_q_at(now);
            let rate_q = (self.sample_rate as f64 * (1.0 + self.correction) * ONE_Q as f64).round();
            *anchor = Anchor {
                time: i128::from(now.as_nanos()),
                position_q,
                rate_q: (rate_q as i128).max(1),
            };
        }
    }
}

impl PlayoutClock for PacketClock {
    fn start(&mut self, now: MonoTime, position: u64) {
        self.anchor = Some(Anchor {
            time: i128::from(now.as_nanos()) + self.latency_nanos,
            position_q: i128::from(position) << 32,
            rate_q: self.nominal_rate_q(),
        });
        self.block_start = now;
        self.block_lead = None;
        self.window_len = 0;
        self.window_next = 0;
        self.frequency = 0.0;
        self.correction = 0.0;
    }

    fn on_arrival(&mut self, now: MonoTime, position: u64) {
        if now.duration_since(self.block_start).as_nanos() >= u128::from(BLOCK_NANOS) {
            self.close_block(now);
            self.block_start = now;
        }
        let Some(anchor) = self.anchor else {
            return;
        };
        // Lead = deadline of `position` − arrival.
        let offset_q = (i128::from(position) << 32) - anchor.position_q;
        let deadline = anchor.time
            + offset_q
                .saturating_mul(NANOS_PER_SEC)
                .div_euclid(anchor.rate_q);
        let lead = deadline - i128::from(now.as_nanos());
        self.block_lead = Some(self.block_lead.map_or(lead, |l| l.max(lead)));
    }

    fn due_end(&self, now: MonoTime) -> Option<u64> {
        let anchor = self.anchor?;
        let q = anchor.position_q_at(now);
        // Frame p is due once the position has moved past p: ceil(q) in whole frames.
        let end = (q + ONE_Q - 1) >> 32;
        Some(u64::try_from(end.max(0)).unwrap_or(u64::MAX))
    }

    fn due_time(&self, position: u64) -> Option<MonoTime> {
        let anchor = self.anchor?;
        // due_end(t) > p  ⇔  q(t) ≥ p + 2^-32  ⇔  t − t_a ≥ ceil((p·2^32 − p_a + 1)/r).
        let offset_q = (i128::from(position) << 32) - anchor.position_q + 1;
        let t = anchor.time + anchor.nanos_until(offset_q);
        Some(MonoTime::from_nanos(
            u64::try_from(t.max(0)).unwrap_or(u64::MAX),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::time::Duration;

    fn ms(v: u64) -> MonoTime {
        MonoTime::from_nanos(v * 1_000_000)
    }

    #[test]
    fn clean_mapping_is_exact() {
        let mut c = PacketClock::new(48_000, Duration::from_millis(10));
        assert_eq!(c.due_end(ms(0)), None);
        c.start(ms(100), 1_000);
        c.on_arrival(ms(100), 1_000);
        assert_eq!(c.due_end(ms(105)), Some(760));
        assert_eq!(c.due_end(ms(110)), Some(1_000));
        assert_eq!(c.due_end(ms(111)), Some(1_048));
        assert_eq!(c.due_time(1_000), Some(MonoTime::from_nanos(110_000_001)));
        // Frame 1 048 starts at exactly 111 ms, so it is due just after.
        assert_eq!(c.due_time(1_048), Some(MonoTime::from_nanos(111_000_001)));
        for k in 1..5_000u64 {
            c.on_arrival(ms(100 + k), 1_000 + 48 * k);
        }
        assert_eq!(c.correction_ppm(), 0.0);
        assert_eq!(c.due_end(ms(5_110)), Some(1_000 + 48 * 5_000));
    }

    #[test]
    fn due_time_matches_due_end() {
        let mut c = PacketClock::new(44_100, Duration::from_millis(7));
        c.start(ms(3), 12_345);
        for p in [0u64, 12_000, 12_345, 12_346, 20_000, 1 << 40] {
            if let Some(t) = c.due_time(p) {
                assert!(c.due_end(t).is_some_and(|e| e > p), "{p}");
                if t.as_nanos() > 0 {
                    let before = MonoTime::from_nanos(t.as_nanos() - 1);
                    assert!(c.due_end(before).is_some_and(|e| e <= p), "{p}");
                }
            }
        }
    }
}
