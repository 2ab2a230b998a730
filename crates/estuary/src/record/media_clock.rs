//! Where a stream's media clock stands against the wall clock, so takes rotate on media-clock
//! boundaries: every recorder of a stream on the same clock cuts on the same sample.
//!
//! An AES67 sender's RTP timestamp is its PTP time × rate modulo 2^32 (PTP time is TAI,
//! 37 s ahead of UTC). The recorder's media position is that timestamp extended to 64 bits
//! from wherever the stream started, so it lacks the wraps before it (2^32 frames are about
//! 24.9 h at 48 kHz). Both are recovered from the wall clock when a stream starts: the
//! number of wraps is the one that puts the position nearest now, and the remaining offset
//! to UTC is rounded to whole seconds (0 for a UTC clock, 37 for PTP's, anything for a
//! sender with a random offset, whose takes then still rotate within half a second of the
//! wall clock). Two recorders on one clock compute the same mapping, whatever the network
//! delay (well under half a second), so their boundaries agree to the sample.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const WRAP: i128 = 1 << 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaClock {
    /// UTC in frames since the epoch = position + `offset`.
    offset: i128,
    rate: u32,
}

impl MediaClock {
    /// The mapping for a stream whose frame at `position` arrives at `now`.
    pub fn new(position: u64, now: SystemTime, rate: u32) -> Self {
        let rate_i = i128::from(rate.max(1));
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let now_frames = now_ns * rate_i / 1_000_000_000;
        let p = i128::from(position);
        let wraps = (now_frames - p + WRAP / 2).div_euclid(WRAP);
        let media = p + wraps * WRAP;
        // Whole seconds between the media clock and UTC, rounded to the nearest.
        let seconds = (media - now_frames + rate_i / 2).div_euclid(rate_i);
        Self {
            offset: wraps * WRAP - seconds * rate_i,
            rate: rate.max(1),
        }
    }

    /// UTC frames since the epoch at media position `position`.
    fn utc_frames(&self, position: u64) -> i128 {
        i128::from(position) + self.offset
    }

    /// The wall-clock (UTC) time of `position`.
    pub fn wall_time(&self, position: u64) -> SystemTime {
        let frames = self.utc_frames(position).max(0);
        let rate = i128::from(self.rate);
        let secs = (frames / rate) as u64;
        let nanos = ((frames % rate) * 1_000_000_000 / rate) as u32;
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// The first position after `position` whose UTC time is a multiple of `every` since
    /// the epoch (`1h`: on the hour).
    pub fn next_boundary(&self, position: u64, every: Duration) -> u64 {
        let every = (every.as_nanos() as i128 * i128::from(self.rate) / 1_000_000_000).max(1);
        let utc = self.utc_frames(position);
        let boundary = (utc.div_euclid(every) + 1) * every;
        u64::try_from(boundary - self.offset).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(secs)
    }

    /// The RTP timestamp of a sender whose clock is `ahead` seconds ahead of UTC at UTC `t`,
    /// extended as a stream's first packet is (no wraps).
    fn timestamp(t: f64, ahead: f64) -> u64 {
        (((t + ahead) * f64::from(RATE)).round() as u64) % (1 << 32)
    }

    #[test]
    fn ptp_and_utc_senders_rotate_on_the_hour_and_agree() {
        let t = 1_795_228_245.25; // 02:30:45.25 UTC
        for ahead in [37.0, 0.0] {
            // Two senders on the same clock, received 3 ms and 180 ms after they sent.
            let p = timestamp(t, ahead);
            let a = MediaClock::new(p, at(t + 0.003), RATE);
            let b = MediaClock::new(p + 48_000, at(t + 1.18), RATE);
            assert_eq!(a, b);
            let hour = Duration::from_secs(3600);
            let cut = a.next_boundary(p, hour);
            assert_eq!(cut, b.next_boundary(p + 10, hour));
            assert_eq!(a.wall_time(cut), at(1_795_230_000.0), "03:00:00 UTC");
            assert_eq!(cut - p, (1_795_230_000 - 1_795_228_245) * 48_000 - 12_000);
            // The next take's boundary is exactly one period later.
            assert_eq!(a.next_boundary(cut, hour), cut + 3600 * 48_000);
        }
    }

    #[test]
    fn a_random_offset_still_rotates_near_the_wall_clock() {
        let t = 1_795_228_245.0;
        let p = 3_000_000_017;
        let clock = MediaClock::new(p, at(t), RATE);
        let wall = clock
            .wall_time(p)
            .duration_since(UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        assert!((wall - t).abs() <= 0.5, "{wall} vs {t}");
        let cut = clock.next_boundary(p, Duration::from_secs(60));
        let cut_wall = clock
            .wall_time(cut)
            .duration_since(UNIX_EPOCH)
            .expect("after")
            .as_secs_f64();
        assert_eq!(cut_wall % 60.0, 0.0);
        assert!(cut > p && cut - p <= 60 * 48_000);
    }

    #[test]
    fn a_position_near_the_wrap_finds_the_right_wrap() {
        let t = 1_795_228_245.0;
        let full = ((t + 37.0) * 48_000.0) as i128;
        let wraps = full / WRAP;
        // A stream that started just before its timestamp wrapped, still extended below 2^32.
        let p = (WRAP - 10) as u64;
        let now = at((wraps * WRAP + WRAP - 10) as f64 / 48_000.0 - 37.0);
        let clock = MediaClock::new(p, now, RATE);
        assert_eq!(clock.offset, wraps * WRAP - 37 * 48_000);
        // Past the wrap the extended position keeps counting: the same mapping holds.
        assert!(clock.next_boundary(p + 100, Duration::from_secs(1)) > p + 100);
    }
}
