//! SMPTE ST 2022-7 seamless protection: two copies of one RTP stream on two paths, merged per
//! packet.
//!
//! Both paths feed the same [`JitterBuffer`](crate::jitter::JitterBuffer): it stores the
//! first copy of each packet (by its position, i.e. timestamp, and sequence number) and
//! reports the second one as a duplicate, or as late when the first has already been played.
//! [`PathMerger`] watches the outcomes to count, per path, what arrived, what was missing on
//! that path, and what was used (the copy that went on air), and to measure the skew between
//! the paths from the arrival times of the two copies of the same packet. The second copy of
//! a packet is the protection working, not a network fault, so it is counted per path
//! (`redundant`) and taken out of the merged duplicate and late counters.

use core::time::Duration;

use crate::jitter::PushOutcome;
use crate::time::MonoTime;

/// Packets remembered for pairing the two copies (about 4 s of 1 ms packets).
const SEEN: usize = 4096;

/// Counters of one path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathCounters {
    /// Datagrams received on this path.
    pub received: u64,
    /// Packets missing on this path (by its own sequence numbers, RFC 3550 style).
    pub lost: u64,
    /// Copies from this path that went on air (the first valid copy of their packet).
    pub used: u64,
    /// Copies from this path that arrived after the other path's copy of the same packet.
    pub redundant: u64,
    /// Copies that arrived more than the skew limit after the other path's.
    pub beyond_skew: u64,
}

/// Path skew: arrival of path 1's copy minus path 0's copy of the same packet.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Skew {
    /// Smoothed (exponential average over about 16 packets), microseconds (positive: path 1
    /// is behind).
    pub last_us: f64,
    /// The largest magnitude seen, microseconds.
    pub max_abs_us: f64,
    /// Pairs measured.
    pub pairs: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct PathSeq {
    first: Option<u64>,
    max: u64,
}

impl PathSeq {
    /// Extends `seq` near the highest seen and returns the packets expected so far.
    fn record(&mut self, seq: u16) -> u64 {
        let Some(first) = self.first else {
            self.first = Some(u64::from(seq));
            self.max = u64::from(seq);
            return 1;
        };
        let delta = seq.wrapping_sub(self.max as u16) as i16;
        let ext = self.max.wrapping_add_signed(i64::from(delta));
        if ext > self.max && ext >= first {
            self.max = ext;
        }
        self.max - first + 1
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    seq: u16,
    path: u8,
    arrival: MonoTime,
    valid: bool,
}

/// Per-path counters and skew of a redundant input; see the module docs.
#[derive(Debug, Clone)]
pub struct PathMerger {
    counters: [PathCounters; 2],
    seqs: [PathSeq; 2],
    seen: Vec<Seen>,
    skew: Skew,
    max_skew: Duration,
    /// Second copies the jitter buffer counted as duplicate or late.
    removed_duplicates: u64,
    removed_late: u64,
    /// Copies that filled the other path's gap after later packets had arrived: the jitter
    /// buffer counts them reordered, but the network did not reorder anything.
    removed_reordered: u64,
}

impl PathMerger {
    /// A merger that flags copies arriving more than `max_skew` after their twin.
    pub fn new(max_skew: Duration) -> Self {
        PathMerger {
            counters: [PathCounters::default(); 2],
            seqs: [PathSeq::default(); 2],
            seen: vec![Seen::default(); SEEN],
            skew: Skew::default(),
            max_skew,
            removed_duplicates: 0,
            removed_late: 0,
            removed_reordered: 0,
        }
    }

    /// Records what the jitter buffer did with a datagram from `path` (0 or 1) whose RTP
    /// sequence number is `seq` (`None`: not RTP).
    pub fn record(
        &mut self,
        path: usize,
        arrival: MonoTime,
        seq: Option<u16>,
        outcome: PushOutcome,
    ) {
        let path = path.min(1);
        self.counters[path].received += 1;
        let Some(seq) = seq else {
            return;
        };
        let expected = self.seqs[path].record(seq);
        let slot = &mut self.seen[usize::from(seq) % SEEN];
        let twin = (slot.valid && slot.seq == seq && usize::from(slot.path) != path)
            .then_some(slot.arrival);
        match outcome {
            PushOutcome::Started { .. }
            | PushOutcome::Stored { .. }
            | PushOutcome::Reordered { .. }
            | PushOutcome::Resynced { .. } => {
                let other = self.seqs[1 - path];
                if matches!(outcome, PushOutcome::Reordered { .. })
                    && other.first.is_some()
                    && other.max as u16 != seq
                    && (other.max as u16).wrapping_sub(seq) < 0x8000
                {
                    self.removed_reordered += 1;
                }
                self.counters[path].used += 1;
                *slot = Seen {
                    seq,
                    path: path as u8,
                    arrival,
                    valid: true,
                };
            }
            PushOutcome::Duplicate | PushOutcome::Late if twin.is_some() => {
                self.counters[path].redundant += 1;
                if outcome == PushOutcome::Duplicate {
                    self.removed_duplicates += 1;
                } else {
                    self.removed_late += 1;
                }
            }
            _ => {}
        }
        if let Some(first) = twin {
            let behind = arrival.checked_duration_since(first).unwrap_or_default();
            if behind > self.max_skew {
                self.counters[path].beyond_skew += 1;
            }
            let us = behind.as_secs_f64() * 1e6;
            let signed = if path == 1 { us } else { -us };
            self.skew.last_us = if self.skew.pairs == 0 {
                signed
            } else {
                self.skew.last_us + (signed - self.skew.last_us) / 16.0
            };
            self.skew.max_abs_us = self.skew.max_abs_us.max(us);
            self.skew.pairs += 1;
            // One measurement per pair.
            self.seen[usize::from(seq) % SEEN].valid = false;
        }
        let received = self.counters[path].received;
        self.counters[path].lost = expected.saturating_sub(received);
    }

    /// Counters of path 0 and path 1.
    pub fn paths(&self) -> [PathCounters; 2] {
        self.counters
    }

    /// Path skew measured so far.
    pub fn skew(&self) -> Skew {
        self.skew
    }

    /// Takes the redundant copies out of the merged counters (whose duplicate and late
    /// counts include them, as the jitter buffer cannot tell them from network faults).
    pub fn correct(&self, merged: &mut crate::stats::StreamStats) {
        merged.packets_duplicate = merged
            .packets_duplicate
            .saturating_sub(self.removed_duplicates);
        merged.packets_late = merged.packets_late.saturating_sub(self.removed_late);
        merged.packets_reordered = merged
            .packets_reordered
            .saturating_sub(self.removed_reordered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jitter::{JitterBuffer, JitterConfig};
    use estuary_wire::payload::SampleFormat;

    const MS: u64 = 1_000_000;

    fn packet(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 98];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(u32::from(seq) * 48).to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1]);
        // 48 stereo L24 frames whose samples encode the sequence number.
        for _ in 0..96 {
            p.extend_from_slice(&[0, (seq >> 8) as u8 | 1, seq as u8]);
        }
        p
    }

    fn buffer(latency_ms: u64) -> JitterBuffer {
        JitterBuffer::new(JitterConfig {
            channels: 2,
            sample_rate: 48_000,
            format: SampleFormat::L24,
            payload_type: Some(98),
            latency: Duration::from_millis(latency_ms),
            capacity: Duration::from_millis(400),
        })
        .expect("config")
    }

    /// Path 1 loses every 11th packet, except those path 0 lost (every 7th).
    fn lost_on_1(seq: u16) -> bool {
        seq % 11 == 5 && seq % 7 != 3
    }

    /// Two paths with disjoint losses and a 2 ms skew: nothing lost in the merged output.
    #[test]
    fn disjoint_losses_are_healed_and_counted_per_path() {
        let mut jb = buffer(10);
        let mut merger = PathMerger::new(Duration::from_millis(5));
        let mut out = vec![0i32; 48 * 2 * 20];
        let mut concealed_after_start = 0;
        for seq in 0..1000u16 {
            let t0 = MonoTime::from_nanos(u64::from(seq) * MS);
            let t1 = MonoTime::from_nanos(u64::from(seq) * MS + 2 * MS);
            if seq % 7 != 3 {
                let o = jb.push(t0, &packet(seq));
                merger.record(0, t0, Some(seq), o);
            }
            if !lost_on_1(seq) {
                let o = jb.push(t1, &packet(seq));
                merger.record(1, t1, Some(seq), o);
            }
            let before = jb.stats().frames_concealed;
            jb.pull(t1, &mut out);
            if seq > 20 {
                concealed_after_start += jb.stats().frames_concealed - before;
            }
        }
        let mut stats = *jb.stats();
        merger.correct(&mut stats);
        assert_eq!(concealed_after_start, 0);
        assert_eq!(stats.packets_lost, 0);
        assert_eq!(stats.packets_duplicate, 0);
        assert_eq!(stats.packets_late, 0);
        assert_eq!(stats.packets_reordered, 0, "gap fills are not reordering");
        let [a, b] = merger.paths();
        assert_eq!(a.lost, (0..1000).filter(|s| s % 7 == 3).count() as u64);
        assert_eq!(b.lost, (0..1000).filter(|&s| lost_on_1(s)).count() as u64);
        assert_eq!(a.used + b.used, 1000);
        assert_eq!(
            a.received + b.received,
            a.used + b.used + a.redundant + b.redundant
        );
        let skew = merger.skew();
        assert!((skew.last_us - 2000.0).abs() < 1.0, "{skew:?}");
        assert_eq!(a.beyond_skew + b.beyond_skew, 0);
    }

    #[test]
    fn a_packet_lost_on_both_paths_is_lost() {
        let mut jb = buffer(5);
        let mut merger = PathMerger::new(Duration::from_millis(5));
        let mut out = vec![0i32; 48 * 2 * 20];
        for seq in 0..100u16 {
            let t = MonoTime::from_nanos(u64::from(seq) * MS);
            for path in 0..2 {
                if seq != 50 {
                    let o = jb.push(t, &packet(seq));
                    merger.record(path, t, Some(seq), o);
                }
            }
            jb.pull(t, &mut out);
        }
        let mut stats = *jb.stats();
        merger.correct(&mut stats);
        assert_eq!(stats.packets_lost, 1);
        assert_eq!(merger.paths()[0].lost, 1);
        assert_eq!(merger.paths()[1].lost, 1);
    }

    #[test]
    fn a_path_beyond_the_skew_limit_is_flagged() {
        let mut jb = buffer(10);
        let mut merger = PathMerger::new(Duration::from_millis(5));
        for seq in 0..50u16 {
            let t0 = MonoTime::from_nanos(u64::from(seq) * MS);
            let o = jb.push(t0, &packet(seq));
            merger.record(0, t0, Some(seq), o);
            let t1 = MonoTime::from_nanos(u64::from(seq) * MS + 8 * MS);
            let o = jb.push(t1, &packet(seq));
            merger.record(1, t1, Some(seq), o);
        }
        assert_eq!(merger.paths()[1].beyond_skew, 50);
        assert!(merger.skew().max_abs_us >= 8000.0);
    }

    #[test]
    fn sequence_extension_survives_wrap() {
        let mut s = PathSeq::default();
        let mut expected = 0;
        for i in 0..70_000u32 {
            expected = s.record((i + 65_000) as u16);
        }
        assert_eq!(expected, 70_000);
    }
}
