//! Per-stream counters and the RFC 3550 interarrival jitter estimator.
//!
//! [`StreamStats`] is a plain `Copy` snapshot; the API, Prometheus exporter and alarm rules
//! expose its fields as they are, so each field documents exactly when it moves.
//!
//! Every datagram given to [`crate::jitter::JitterBuffer::push`] is counted in
//! `packets_received` and lands in exactly one outcome, so
//! `packets_received = stored + packets_duplicate + packets_late + malformed +
//! wrong_payload_type`, where "stored" packets are those written to the ring (the
//! `packets_reordered` ones among them).

use crate::time::MonoTime;

/// Counters of one received stream (one jitter buffer). All counters only ever increase,
/// across resyncs too; `jitter`, `buffer_fill_frames`, `ssrc` and `payload_type` are gauges.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Datagrams handed to the buffer, whatever became of them (malformed ones included).
    pub packets_received: u64,
    /// Sum of the sizes in bytes of those datagrams (RTP header and padding included; IP and
    /// UDP headers excluded).
    pub bytes_received: u64,
    /// Packets of the current stream that were never played out: counted when playout reaches
    /// the end of a gap (a run of concealed frames), as the number of sequence numbers missing
    /// between the packet played before the gap and the one played after it (RFC 3550 §6.4.1
    /// "expected − received", but only across concealed audio). A packet that arrives late is
    /// therefore counted here *and* in `packets_late`. A gap that is still open when the
    /// stream resyncs (the sender stopped) is concealed but adds no lost packets, since no
    /// later sequence number says how many were sent.
    pub packets_lost: u64,
    /// Packets dropped because at least one of their frames had already been played out
    /// (as silence) when they arrived; this includes a duplicate of a packet already played.
    pub packets_late: u64,
    /// Packets dropped because frames at their position were already buffered and not yet
    /// played out (an RTP duplicate, e.g. from the network or a 2022-7 path).
    pub packets_duplicate: u64,
    /// Packets stored in time although their extended sequence number (RFC 3550 §A.1) is
    /// lower than that of a packet of the same stream stored before them. Late and duplicate
    /// packets are not counted here.
    pub packets_reordered: u64,
    /// Frames (one sample per channel) played out as silence because nothing had been
    /// received for their position: lost packets, gaps before the first packet after a
    /// resync, and underruns while the sender is silent.
    pub frames_concealed: u64,
    /// Datagrams that are not valid RTP, or whose payload does not decode as whole frames of
    /// the configured format and channel count, or that carry no frame, or more frames than
    /// the buffer can hold. Dropped.
    pub malformed: u64,
    /// Valid RTP packets whose payload type differs from the configured one. Dropped.
    pub wrong_payload_type: u64,
    /// Times a packet with a different SSRC than the current stream took over (each is also
    /// a resync). The first packet ever does not count.
    pub ssrc_changes: u64,
    /// Times the buffer restarted on a new stream: SSRC change, an RTP timestamp more than the
    /// buffer capacity away from the playout position (sender restart), or every packet
    /// arriving late for longer than the playout latency (the path delay grew). The first
    /// packet ever does not count.
    pub resyncs: u64,
    /// Frames that had been received but not yet played out when a resync replaced their
    /// stream: audio the box had and did not play, so it is counted, never silently lost.
    pub frames_discarded: u64,
    /// RFC 3550 §6.4.1 interarrival jitter of the current stream, in RTP timestamp units
    /// (samples), from the injected arrival times of every valid packet of the current SSRC
    /// (late and duplicate ones included). Restarts from zero at each resync.
    pub jitter: u32,
    /// Frames from the playout position to the end of the furthest packet buffered (gaps
    /// included): how much audio is queued ahead of playout.
    pub buffer_fill_frames: u64,
    /// SSRC of the stream being played out; `None` before the first packet.
    pub ssrc: Option<u32>,
    /// Payload type of the most recent valid RTP packet, even one dropped for its payload
    /// type (so a misconfigured PT is visible); `None` before the first.
    pub payload_type: Option<u8>,
}

impl StreamStats {
    /// Adds `other`'s counters to these, leaving the gauges alone: the totals of an input
    /// across the streams (jitter buffers) it has had.
    pub fn add_counters(&mut self, other: &StreamStats) {
        self.packets_received += other.packets_received;
        self.bytes_received += other.bytes_received;
        self.packets_lost += other.packets_lost;
        self.packets_late += other.packets_late;
        self.packets_duplicate += other.packets_duplicate;
        self.packets_reordered += other.packets_reordered;
        self.frames_concealed += other.frames_concealed;
        self.malformed += other.malformed;
        self.wrong_payload_type += other.wrong_payload_type;
        self.ssrc_changes += other.ssrc_changes;
        self.resyncs += other.resyncs;
        self.frames_discarded += other.frames_discarded;
    }
}

/// RFC 3550 §6.4.1 / §A.8 interarrival jitter estimator for one source.
///
/// `D(i,j) = (Rj − Ri) − (Sj − Si)` in timestamp units, `J += (|D(i−1,i)| − J) / 16`, kept
/// as in §A.8 in fixed point scaled by 16 so the result is exact and deterministic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterarrivalJitter {
    /// `transit` of §A.8 (arrival − RTP timestamp, modulo 2^32) of the previous packet.
    transit: Option<u32>,
    /// `jitter` of §A.8, scaled by 16.
    jitter_x16: u32,
}

impl InterarrivalJitter {
    /// A fresh estimator (no packet seen, jitter zero).
    pub const fn new() -> Self {
        InterarrivalJitter {
            transit: None,
            jitter_x16: 0,
        }
    }

    /// Account one packet with RTP timestamp `timestamp`, arrived at `arrival` for a media
    /// clock of `rate` Hz.
    pub fn update(&mut self, arrival: MonoTime, timestamp: u32, rate: u32) {
        // Arrival in timestamp units, modulo 2^32 like the RTP timestamp itself: only the
        // difference between consecutive transits matters, which wraps correctly.
        let arrival_ts = (u128::from(arrival.as_nanos()) * u128::from(rate) / 1_000_000_000) as u32;
        let transit = arrival_ts.wrapping_sub(timestamp);
        if let Some(previous) = self.transit {
            let d = transit.wrapping_sub(previous) as i32;
            let d = d.unsigned_abs();
            // J += (|D| − J)/16, in units of J/16: jitter += |D| − round(jitter/16).
            self.jitter_x16 = self
                .jitter_x16
                .saturating_add(d)
                .saturating_sub(self.jitter_x16.saturating_add(8) >> 4);
        }
        self.transit = Some(transit);
    }

    /// The current estimate `J` in timestamp units (truncated, as reported in RTCP).
    pub const fn jitter(&self) -> u32 {
        self.jitter_x16 >> 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at_ms(ms: u64) -> MonoTime {
        MonoTime::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn steady_arrivals_have_no_jitter() {
        let mut j = InterarrivalJitter::new();
        for k in 0..100u32 {
            j.update(at_ms(u64::from(k)), 1_000 + k * 48, 48_000);
        }
        assert_eq!(j.jitter(), 0);
    }

    #[test]
    fn one_late_packet_is_one_sixteenth_of_its_delay() {
        let mut j = InterarrivalJitter::new();
        j.update(at_ms(0), 0, 48_000);
        // 1 ms late: D = 48 timestamp units, J = 48/16 = 3.
        j.update(at_ms(2), 48, 48_000);
        assert_eq!(j.jitter(), 3);
        // Back on time: D = −48, J = 3 + (48 − 3)/16 = 5.8 → 5 (scaled: 48 + 48 − 3 = 93).
        j.update(at_ms(2), 96, 48_000);
        assert_eq!(j.jitter(), 5);
    }

    #[test]
    fn timestamp_wrap_is_not_jitter() {
        let mut j = InterarrivalJitter::new();
        let start = u32::MAX - 100;
        for k in 0..10u32 {
            j.update(at_ms(u64::from(k)), start.wrapping_add(k * 48), 48_000);
        }
        assert_eq!(j.jitter(), 0);
    }
}
