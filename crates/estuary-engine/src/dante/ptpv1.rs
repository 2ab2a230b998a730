//! A PTPv1 (IEEE 1588-2002) follower's arithmetic, the clock Dante devices run natively:
//! which leader to follow (best master from the grandmaster fields Sync carries, v1 having no
//! Announce), and the servo that turns Sync/Follow_Up and Delay_Req/Delay_Resp timestamps
//! into an *overlay clock*: leader time = local time + offset + drift × elapsed. The local
//! clock is never adjusted; the daemon reads the overlay instead (media time = leader time ×
//! rate).
//!
//! Pure: every timestamp is given by the caller (local times from the injected monotonic
//! clock, leader times from the messages), so it is tested against a simulated leader.

use std::collections::VecDeque;
use std::time::Duration;

/// Sync samples the frequency and offset are fitted over (at Dante's 4 Sync/s, 8 s).
pub const FIT_WINDOW: usize = 32;
/// Path-delay measurements the minimum is taken over (queueing only ever adds delay).
pub const DELAY_WINDOW: usize = 16;
/// Samples needed before the overlay is trusted.
pub const MIN_SAMPLES: usize = 4;
/// A fit whose residuals exceed this (RMS) is not locked.
pub const LOCK_RMS: Duration = Duration::from_micros(200);
/// A leader not heard for this long is forgotten by the best-master choice.
pub const LEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Leader time in ns as a function of local time in ns: a line through the Sync samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Overlay {
    /// Local time the line is anchored at.
    pub local0: u64,
    /// Leader minus local at `local0`, ns.
    pub offset0: i128,
    /// Leader rate relative to local, minus one (50 ppm = 50e-6).
    pub drift: f64,
}

impl Overlay {
    /// The leader's time at local time `local`.
    pub fn leader_ns(&self, local: u64) -> i128 {
        let dt = i128::from(local) - i128::from(self.local0);
        i128::from(local) + self.offset0 + (dt as f64 * self.drift).round() as i128
    }

    /// The drift in parts per billion (what Dante heartbeats report).
    pub fn drift_ppb(&self) -> i64 {
        (self.drift * 1e9).round() as i64
    }
}

/// The follower's servo.
#[derive(Debug, Clone, Default)]
pub struct Servo {
    /// (local receive time t2, leader send time t1) of recent Syncs.
    samples: VecDeque<(u64, i128)>,
    /// Recent mean path delays, ns.
    delays: VecDeque<i128>,
    /// A two-step Sync waiting for its Follow_Up: (sequence, t2).
    pending_sync: Option<(u16, u64)>,
    /// The Delay_Req in flight: (sequence, local send time t3).
    pending_delay: Option<(u16, u64)>,
    /// t2 − t1 of the latest Sync (local minus leader, with the path delay in it).
    last_sync_diff: Option<i128>,
    overlay: Option<Overlay>,
    rms_ns: f64,
}

impl Servo {
    pub fn new() -> Servo {
        Servo::default()
    }

    /// Forgets everything (the leader changed).
    pub fn reset(&mut self) {
        *self = Servo::default();
    }

    /// A Sync arrived at local time `t2`. A one-step Sync carries its send time `origin`;
    /// a two-step one (PTP_ASSIST) waits for [`Servo::follow_up`].
    pub fn sync(&mut self, sequence: u16, t2: u64, origin: i128, two_step: bool) {
        if two_step {
            self.pending_sync = Some((sequence, t2));
        } else {
            self.pending_sync = None;
            self.sample(t2, origin);
        }
    }

    /// The Follow_Up of Sync `sequence`, with its precise send time.
    pub fn follow_up(&mut self, sequence: u16, precise_origin: i128) {
        if let Some((seq, t2)) = self.pending_sync
            && seq == sequence
        {
            self.pending_sync = None;
            self.sample(t2, precise_origin);
        }
    }

    /// Our Delay_Req `sequence` left at local time `t3`.
    pub fn delay_request_sent(&mut self, sequence: u16, t3: u64) {
        self.pending_delay = Some((sequence, t3));
    }

    /// The leader received Delay_Req `sequence` at its time `t4`.
    pub fn delay_response(&mut self, sequence: u16, t4: i128) {
        let (Some((seq, t3)), Some(ms)) = (self.pending_delay, self.last_sync_diff) else {
            return;
        };
        if seq != sequence {
            return;
        }
        self.pending_delay = None;
        // (t2 − t1) + (t4 − t3) = both path delays; the clocks' offset cancels.
        let delay = (ms + (t4 - i128::from(t3))) / 2;
        if delay < 0 {
            return;
        }
        if self.delays.len() == DELAY_WINDOW {
            self.delays.pop_front();
        }
        self.delays.push_back(delay);
        self.refit();
    }

    /// The mean path delay used (the minimum of the recent ones), if measured.
    pub fn path_delay(&self) -> Option<Duration> {
        let d = self.delays.iter().min()?;
        Some(Duration::from_nanos(u64::try_from(*d).unwrap_or(0)))
    }

    /// The overlay clock, once enough samples are fitted.
    pub fn overlay(&self) -> Option<Overlay> {
        self.overlay
    }

    /// Whether the overlay is trusted: enough samples, a delay measured, and the samples
    /// on a line within [`LOCK_RMS`].
    pub fn locked(&self) -> bool {
        self.overlay.is_some()
            && !self.delays.is_empty()
            && self.rms_ns < LOCK_RMS.as_nanos() as f64
    }

    fn sample(&mut self, t2: u64, t1: i128) {
        self.last_sync_diff = Some(i128::from(t2) - t1);
        if self.samples.len() == FIT_WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((t2, t1));
        self.refit();
    }

    /// Least squares of (leader − local) against local over the window; the leader's time
    /// at t2 is t1 plus the path delay.
    fn refit(&mut self) {
        if self.samples.len() < MIN_SAMPLES {
            return;
        }
        let delay = self.delays.iter().min().copied().unwrap_or(0);
        let Some(&(x0, y0_t1)) = self.samples.front() else {
            return;
        };
        let y0 = y0_t1 + delay - i128::from(x0);
        let points: Vec<(f64, f64)> = self
            .samples
            .iter()
            .map(|&(t2, t1)| {
                let x = (i128::from(t2) - i128::from(x0)) as f64;
                let y = (t1 + delay - i128::from(t2) - y0) as f64;
                (x, y)
            })
            .collect();
        let Some(first) = Line::fit(&points) else {
            return;
        };
        // A Sync read late (a busy host) only ever sits below the line, and drags a
        // least-squares fit down: twice, refit over the half of the samples highest above
        // the last fit (the clean half's own jitter biases the line by a fraction of it).
        let keep = points.len().div_ceil(2).max(MIN_SAMPLES.min(points.len()));
        let mut kept = points;
        let mut line = first;
        for _ in 0..2 {
            kept.sort_by(|a, b| line.residual(*b).total_cmp(&line.residual(*a)));
            kept.truncate(keep);
            line = Line::fit(&kept).unwrap_or(line);
        }
        let (drift, intercept) = (line.slope, line.intercept);
        self.rms_ns = line.rms(&kept);
        self.overlay = Some(Overlay {
            local0: x0,
            offset0: y0 + intercept.round() as i128,
            drift,
        });
    }
}

/// What a Sync says of its grandmaster, in the order the best-master choice compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeaderRank {
    /// Preferred leaders first (Dante's "Preferred Leader").
    pub not_preferred: bool,
    pub stratum: u8,
    pub identifier: [u8; 4],
    pub variance: i16,
    /// Tie-break: the grandmaster's UUID (its MAC).
    pub uuid: [u8; 6],
}

impl LeaderRank {
    pub fn from_sync(sync: &estuary_wire::dante::ptpv1::SyncBody) -> LeaderRank {
        LeaderRank {
            not_preferred: !sync.grandmaster_preferred,
            stratum: sync.grandmaster_stratum,
            identifier: sync.grandmaster_identifier,
            variance: sync.grandmaster_variance,
            uuid: sync.grandmaster.uuid,
        }
    }
}

/// The best-master choice among the leaders heard (by the grandmaster fields of their
/// Syncs); a leader silent for [`LEADER_TIMEOUT`] drops out.
#[derive(Debug, Clone, Default)]
pub struct LeaderChoice {
    /// Sender UUID → (rank, last heard, ns).
    heard: Vec<([u8; 6], LeaderRank, u64)>,
}

impl LeaderChoice {
    /// A Sync from `sender` at local time `now`; returns whether `sender` is the leader to
    /// follow.
    pub fn observe(&mut self, sender: [u8; 6], rank: LeaderRank, now: u64) -> bool {
        match self.heard.iter_mut().find(|h| h.0 == sender) {
            Some(h) => {
                h.1 = rank;
                h.2 = now;
            }
            None => self.heard.push((sender, rank, now)),
        }
        self.best(now) == Some(sender)
    }

    /// The sender of the best leader heard recently.
    pub fn best(&mut self, now: u64) -> Option<[u8; 6]> {
        let timeout = LEADER_TIMEOUT.as_nanos() as u64;
        self.heard.retain(|h| now.saturating_sub(h.2) < timeout);
        self.heard.iter().min_by_key(|h| h.1).map(|h| h.0)
    }
}

/// A least-squares line through (local ns since the first sample, offset ns) points.
#[derive(Debug, Clone, Copy)]
struct Line {
    slope: f64,
    intercept: f64,
}

impl Line {
    /// `None` when every point has the same local time.
    fn fit(points: &[(f64, f64)]) -> Option<Line> {
        let n = points.len() as f64;
        let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
        let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
        let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
        if sxx <= 0.0 || !sxx.is_finite() {
            return None;
        }
        let slope = sxy / sxx;
        Some(Line {
            slope,
            intercept: mean_y - slope * mean_x,
        })
    }

    /// How far `(x, y)` is above the line.
    fn residual(&self, (x, y): (f64, f64)) -> f64 {
        y - self.intercept - self.slope * x
    }

    fn rms(&self, points: &[(f64, f64)]) -> f64 {
        let sum: f64 = points.iter().map(|&p| self.residual(p).powi(2)).sum();
        (sum / points.len().max(1) as f64).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic generator for jitter and loss.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// A leader whose clock runs `drift` fast and `offset` ahead of ours, 100 µs ± 30 µs
    /// away towards us and 300 µs ± 30 µs back (200 µs asymmetry, which no follower can
    /// see: half of it, 100 µs, is the expected error), two-step Syncs every 250 ms, one
    /// Delay_Req per Sync, 10 % of every message lost.
    #[test]
    fn the_servo_locks_to_a_drifting_leader_through_loss_jitter_and_asymmetry() {
        let drift = 40e-6;
        let offset: i128 = 1_700_000_000_000_000_000;
        let leader_at = |local: u64| offset + i128::from(local) + (local as f64 * drift) as i128;
        let mut rng = Rng(0x5eed_1234);
        let mut servo = Servo::new();
        let start = 3_000_000_000u64;
        let mut worst_after_lock = 0i128;
        let mut locked_at = None;
        for k in 0..240u64 {
            let local_send = start + k * 250_000_000;
            let seq = k as u16;
            let t1 = leader_at(local_send);
            let t2 = local_send + 100_000 + rng.below(30_000);
            if rng.below(10) != 0 {
                servo.sync(seq, t2, 0, true);
                if rng.below(10) != 0 {
                    servo.follow_up(seq, t1);
                }
            }
            let t3 = t2 + 5_000_000;
            let t4 = leader_at(t3 + 300_000 + rng.below(30_000));
            servo.delay_request_sent(seq, t3);
            if rng.below(10) != 0 {
                servo.delay_response(seq, t4);
            }
            if servo.locked() {
                locked_at.get_or_insert(k);
                let overlay = servo.overlay().expect("overlay");
                let now = t3 + 1_000_000;
                let err = (overlay.leader_ns(now) - leader_at(now)).abs();
                if k > 40 {
                    worst_after_lock = worst_after_lock.max(err);
                }
            }
        }
        let locked_at = locked_at.expect("locked");
        assert!(locked_at <= 10, "locked after {locked_at} Syncs");
        let overlay = servo.overlay().expect("overlay");
        assert!(
            (overlay.drift - drift).abs() < 0.5e-6,
            "drift {}",
            overlay.drift
        );
        assert!(
            (overlay.drift_ppb() - 40_000).abs() < 500,
            "{} ppb",
            overlay.drift_ppb()
        );
        // The asymmetry's half (100 µs) plus the jitter's.
        assert!(worst_after_lock < 130_000, "error {worst_after_lock} ns");
        assert!(
            worst_after_lock > 70_000,
            "asymmetry should show: {worst_after_lock} ns"
        );
        let delay = servo.path_delay().expect("delay").as_nanos();
        assert!((200_000..230_000).contains(&delay), "delay {delay} ns");
    }

    /// A busy host reads one Sync in five (up to 13 of a window's 32) up to 3 ms late: the fit sets those aside, locks,
    /// and keeps the offset within the clean samples' jitter.
    #[test]
    fn syncs_read_late_by_a_busy_host_do_not_keep_the_servo_from_locking() {
        let drift = -25e-6;
        let offset: i128 = 1_600_000_000_000_000_000;
        let leader_at = |local: u64| offset + i128::from(local) + (local as f64 * drift) as i128;
        let mut rng = Rng(0xb05e_0001);
        let mut servo = Servo::new();
        let start = 5_000_000_000u64;
        let mut worst = 0i128;
        for k in 0..80u64 {
            let local_send = start + k * 250_000_000;
            let late = if rng.below(5) == 0 {
                500_000 + rng.below(2_500_000)
            } else {
                0
            };
            let t2 = local_send + 50_000 + rng.below(20_000) + late;
            servo.sync(k as u16, t2, 0, true);
            servo.follow_up(k as u16, leader_at(local_send));
            let t3 = t2 + 1_000_000;
            servo.delay_request_sent(k as u16, t3);
            servo.delay_response(k as u16, leader_at(t3 + 50_000 + rng.below(20_000)));
            if k >= 40 {
                assert!(servo.locked(), "not locked after {k} Syncs");
                let now = t3 + 1_000_000;
                let overlay = servo.overlay().expect("overlay");
                worst = worst.max((overlay.leader_ns(now) - leader_at(now)).abs());
            }
        }
        assert!(worst < 60_000, "error {worst} ns");
    }

    #[test]
    fn mismatched_follow_ups_and_responses_are_ignored() {
        let mut servo = Servo::new();
        servo.sync(1, 1_000, 0, true);
        servo.follow_up(2, 500);
        assert!(servo.samples.is_empty());
        servo.sync(3, 2_000, 900, false);
        servo.delay_request_sent(4, 3_000);
        servo.delay_response(5, 3_500);
        assert!(servo.path_delay().is_none());
        servo.delay_response(4, 3_500);
        assert_eq!(servo.path_delay(), Some(Duration::from_nanos(800)));
        assert!(!servo.locked());
    }

    #[test]
    fn the_preferred_then_lowest_stratum_leader_is_followed_until_it_falls_silent() {
        let rank = |preferred: bool, stratum: u8, last: u8| LeaderRank {
            not_preferred: !preferred,
            stratum,
            identifier: *b"DFLT",
            variance: 0,
            uuid: [0, 0, 0, 0, 0, last],
        };
        let s = Duration::from_secs(1).as_nanos() as u64;
        let mut choice = LeaderChoice::default();
        assert!(choice.observe([1; 6], rank(false, 4, 1), 0));
        assert!(choice.observe([2; 6], rank(false, 2, 2), s));
        assert!(!choice.observe([1; 6], rank(false, 4, 1), 2 * s));
        assert!(choice.observe([3; 6], rank(true, 4, 3), 2 * s));
        assert!(!choice.observe([2; 6], rank(false, 2, 2), 4 * s));
        // The preferred one stops; after the timeout the next best takes over.
        assert_eq!(choice.best(8 * s), Some([2; 6]));
        assert!(choice.observe([2; 6], rank(false, 2, 2), 8 * s));
    }
}
