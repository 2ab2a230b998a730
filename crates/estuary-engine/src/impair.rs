//! The impairment model behind `estuary impair`: what happens to each datagram of a relayed
//! flow (loss, Gilbert-Elliott burst loss, reordering, duplication, delay and jitter,
//! corruption, rate limiting), decided by a seeded RNG so a run is reproducible.
//!
//! [`Impairer::push`] takes a datagram as it arrived; [`Impairer::pop_due`] gives back what is
//! to be sent at a given time, in order. Everything is driven by the caller's clock, so the
//! same seed, configuration and arrival times always give the same output and the same
//! [`ImpairReport`].
//!
//! Order of decisions for each datagram (outside the clean window, see
//! [`ImpairConfig::impair_from`]): burst state transition and burst loss, then independent
//! loss, then corruption (one byte XOR a non-zero value), duplication (the copy follows the
//! original), reordering (held back until `1..=reorder_depth` later datagrams have been
//! arrived, or [`MAX_HOLD`]), delay plus uniform jitter, then the rate limit (a FIFO link of
//! the given bit rate with a bounded queue; what does not fit is dropped).
//!
//! The report counts what was *sent*: a datagram is `reordered` when it leaves after a
//! datagram that arrived after it (whatever the cause: explicit reordering, or jitter larger
//! than the packet interval). A receiver that counts "sequence number below the highest seen"
//! counts the same datagrams, provided the input arrives in order.

use core::cmp::Reverse;
use core::time::Duration;
use std::collections::BinaryHeap;

use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt as _, SeedableRng as _};

use crate::time::MonoTime;

/// Longest time a reordered datagram is held waiting for later ones (so a flow that stops
/// does not keep it forever).
pub const MAX_HOLD: Duration = Duration::from_millis(100);
/// Largest reordering depth accepted.
pub const MAX_REORDER_DEPTH: u32 = 1_000;

/// Gilbert-Elliott two-state burst loss: a *good* and a *bad* state, each with its own loss
/// probability, and the probabilities of moving between them at each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from good to bad (per datagram).
    pub p: f64,
    /// Probability of going from bad to good (per datagram); mean burst length is `1/r`.
    pub r: f64,
    /// Loss probability in the good state (usually 0).
    pub loss_good: f64,
    /// Loss probability in the bad state (usually 1).
    pub loss_bad: f64,
}

/// What to do to a flow. Probabilities are in 0..=1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpairConfig {
    /// Independent (Bernoulli) loss probability.
    pub loss: f64,
    /// Burst loss, if any.
    pub burst: Option<GilbertElliott>,
    /// Probability that a datagram is held back and sent after later ones.
    pub reorder: f64,
    /// A reordered datagram is released when this many later ones (at most; the number is
    /// drawn in 1..=depth) have arrived, so it leaves after at most `depth` datagrams that
    /// arrived after it (1..=[`MAX_REORDER_DEPTH`]).
    pub reorder_depth: u32,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that one byte of a datagram is altered.
    pub corrupt: f64,
    /// Constant delay added to every datagram.
    pub delay: Duration,
    /// Each datagram's delay varies uniformly within `delay ± jitter` (never below zero).
    pub jitter: Duration,
    /// Link rate in bits per second (`None`: unlimited).
    pub rate_bps: Option<u64>,
    /// Longest queueing delay on the rate-limited link; datagrams that would wait longer are
    /// dropped.
    pub queue_limit: Duration,
    /// Datagrams before this index (counting from 0) pass unimpaired (only delayed), so a
    /// receiver can lock before the impairments start.
    pub impair_from: u64,
    /// Datagrams from this index on pass unimpaired again (`None`: impair until the end), so
    /// the last impaired loss is followed by datagrams that reveal it.
    pub impair_until: Option<u64>,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        ImpairConfig {
            loss: 0.0,
            burst: None,
            reorder: 0.0,
            reorder_depth: 1,
            duplicate: 0.0,
            corrupt: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            rate_bps: None,
            queue_limit: Duration::from_millis(100),
            impair_from: 0,
            impair_until: None,
        }
    }
}

/// Why an [`ImpairConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ImpairConfigError {
    /// A probability is outside 0..=1 (or not a number).
    #[error("{field} = {value} is not a probability in 0..=1")]
    Probability {
        /// Which one.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// `reorder_depth` is 0 or above [`MAX_REORDER_DEPTH`].
    #[error("reorder depth {0} is outside 1..={MAX_REORDER_DEPTH}")]
    ReorderDepth(u32),
    /// `rate_bps` is 0.
    #[error("rate must be above 0 bit/s")]
    Rate,
}

/// What the impairer did, counted per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairReport {
    /// The seed the run used.
    pub seed: u64,
    /// Datagrams pushed in.
    pub received: u64,
    /// Datagrams sent out (duplicates included).
    pub sent: u64,
    /// Dropped by independent loss.
    pub lost_random: u64,
    /// Dropped by the burst model.
    pub lost_burst: u64,
    /// Dropped because the rate-limited link's queue was full.
    pub dropped_rate: u64,
    /// Extra copies sent.
    pub duplicated: u64,
    /// Originals sent after a datagram that arrived after them.
    pub reordered: u64,
    /// Datagrams held back on purpose (the cause of most of `reordered`).
    pub held: u64,
    /// Datagrams with one byte altered.
    pub corrupted: u64,
    /// Datagrams still queued or held (not yet sent).
    pub pending: u64,
}

impl ImpairReport {
    /// All datagrams dropped, whatever the cause.
    pub fn lost(&self) -> u64 {
        self.lost_random + self.lost_burst + self.dropped_rate
    }
}

/// A datagram waiting to be sent.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    at: MonoTime,
    /// Tie-break: scheduling order, so equal times keep their order.
    order: u64,
    index: u64,
    original: bool,
    bytes: Vec<u8>,
}

#[derive(Debug)]
struct Held {
    index: u64,
    /// Later datagrams still to be scheduled before this one is released.
    remaining: u32,
    since: MonoTime,
    bytes: Vec<u8>,
    duplicate: bool,
}

/// The seeded impairment model of one flow; see the module docs.
#[derive(Debug)]
pub struct Impairer {
    config: ImpairConfig,
    rng: Xoshiro256PlusPlus,
    burst_bad: bool,
    next_index: u64,
    next_order: u64,
    held: Vec<Held>,
    queue: BinaryHeap<Reverse<Scheduled>>,
    /// When the rate-limited link is next free.
    link_free: MonoTime,
    /// Highest arrival index among the originals sent.
    max_sent: Option<u64>,
    report: ImpairReport,
    /// Arrival indices of the datagrams dropped, when asked for.
    dropped: Option<Vec<u64>>,
}

fn check_probability(field: &'static str, value: f64) -> Result<(), ImpairConfigError> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(ImpairConfigError::Probability { field, value })
    }
}

impl ImpairConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), ImpairConfigError> {
        check_probability("loss", self.loss)?;
        check_probability("reorder", self.reorder)?;
        check_probability("duplicate", self.duplicate)?;
        check_probability("corrupt", self.corrupt)?;
        if let Some(ge) = &self.burst {
            check_probability("burst p", ge.p)?;
            check_probability("burst r", ge.r)?;
            check_probability("burst loss_good", ge.loss_good)?;
            check_probability("burst loss_bad", ge.loss_bad)?;
        }
        if self.reorder_depth == 0 || self.reorder_depth > MAX_REORDER_DEPTH {
            return Err(ImpairConfigError::ReorderDepth(self.reorder_depth));
        }
        if self.rate_bps == Some(0) {
            return Err(ImpairConfigError::Rate);
        }
        Ok(())
    }
}

impl Impairer {
    /// A model for one flow, seeded with `seed`.
    pub fn new(config: ImpairConfig, seed: u64) -> Result<Self, ImpairConfigError> {
        config.validate()?;
        Ok(Impairer {
            config,
            rng: Xoshiro256PlusPlus::seed_from_u64(seed),
            burst_bad: false,
            next_index: 0,
            next_order: 0,
            held: Vec::new(),
            queue: BinaryHeap::new(),
            link_free: MonoTime::ZERO,
            max_sent: None,
            dropped: None,
            report: ImpairReport {
                seed,
                ..ImpairReport::default()
            },
        })
    }

    /// Keeps the arrival index of every datagram dropped (memory grows with the losses), so
    /// a test can check which packets a receiver lost.
    pub fn record_drops(&mut self) {
        self.dropped.get_or_insert_with(Vec::new);
    }

    /// Arrival indices (from 0) of the datagrams dropped, if [`Impairer::record_drops`] was
    /// called: by loss, burst loss or the rate limit (only the original counts for the rate
    /// limit; a dropped duplicate copy is not listed).
    pub fn drops(&self) -> Option<&[u64]> {
        self.dropped.as_deref()
    }

    fn note_drop(&mut self, index: u64) {
        if let Some(d) = &mut self.dropped {
            d.push(index);
        }
    }

    /// What was done so far.
    pub fn report(&self) -> ImpairReport {
        ImpairReport {
            pending: (self.queue.len() + self.held.len()) as u64,
            ..self.report
        }
    }

    /// A datagram arrived at `now`.
    pub fn push(&mut self, now: MonoTime, bytes: Vec<u8>) {
        let index = self.next_index;
        self.decide(now, index, bytes);
        self.count_down_held(now, index);
    }

    fn decide(&mut self, now: MonoTime, index: u64, mut bytes: Vec<u8>) {
        self.next_index += 1;
        self.report.received += 1;
        let impaired = index >= self.config.impair_from
            && self.config.impair_until.is_none_or(|end| index < end);
        if !impaired {
            self.enqueue(now, index, bytes, false);
            return;
        }
        if let Some(ge) = self.config.burst {
            let flip = if self.burst_bad { ge.r } else { ge.p };
            if self.rng.random_bool(flip) {
                self.burst_bad = !self.burst_bad;
            }
            let loss = if self.burst_bad {
                ge.loss_bad
            } else {
                ge.loss_good
            };
            if self.rng.random_bool(loss) {
                self.report.lost_burst += 1;
                self.note_drop(index);
                return;
            }
        }
        if self.rng.random_bool(self.config.loss) {
            self.report.lost_random += 1;
            self.note_drop(index);
            return;
        }
        if !bytes.is_empty() && self.rng.random_bool(self.config.corrupt) {
            let offset = self.rng.random_range(0..bytes.len());
            let xor: u8 = self.rng.random_range(1..=255);
            bytes[offset] ^= xor;
            self.report.corrupted += 1;
        }
        let duplicate = self.rng.random_bool(self.config.duplicate);
        if self.rng.random_bool(self.config.reorder) {
            let remaining = self.rng.random_range(1..=self.config.reorder_depth);
            self.report.held += 1;
            self.held.push(Held {
                index,
                remaining,
                since: now,
                bytes,
                duplicate,
            });
            return;
        }
        self.enqueue(now, index, bytes, duplicate);
    }

    /// Datagram `index` arrived: the ones held before it have one fewer arrival to wait for.
    fn count_down_held(&mut self, now: MonoTime, index: u64) {
        let mut k = 0;
        while k < self.held.len() {
            let held = &mut self.held[k];
            if held.index == index {
                k += 1;
                continue;
            }
            held.remaining -= 1;
            if held.remaining == 0 {
                let held = self.held.remove(k);
                self.enqueue(now, held.index, held.bytes, held.duplicate);
            } else {
                k += 1;
            }
        }
    }

    /// Applies delay, jitter and the rate limit, and queues the datagram (and its copy).
    fn enqueue(&mut self, now: MonoTime, index: u64, bytes: Vec<u8>, duplicate: bool) {
        let copy = duplicate.then(|| bytes.clone());
        self.enqueue_one(now, index, bytes, true);
        if let Some(copy) = copy
            && self.enqueue_one(now, index, copy, false)
        {
            self.report.duplicated += 1;
        }
    }

    /// Returns whether the datagram was queued (not dropped by the rate limit).
    fn enqueue_one(&mut self, now: MonoTime, index: u64, bytes: Vec<u8>, original: bool) -> bool {
        let mut at = now.saturating_add(self.config.delay);
        if !self.config.jitter.is_zero() {
            let span = self.config.jitter.as_nanos() as u64;
            let offset = self.rng.random_range(0..=2 * span);
            at = if offset >= span {
                at.saturating_add(Duration::from_nanos(offset - span))
            } else {
                at.saturating_sub(Duration::from_nanos(span - offset))
                    .max(now)
            };
        }
        if let Some(rate) = self.config.rate_bps {
            let start = at.max(self.link_free);
            if start.checked_duration_since(at).unwrap_or_default() > self.config.queue_limit {
                self.report.dropped_rate += 1;
                if original {
                    self.note_drop(index);
                }
                return false;
            }
            let bits = (bytes.len() as u128 + 28) * 8; // UDP + IPv4 headers are on the link too
            let nanos = (bits * 1_000_000_000 / u128::from(rate)) as u64;
            self.link_free = start.saturating_add(Duration::from_nanos(nanos));
            at = start;
        }
        let order = self.next_order;
        self.next_order += 1;
        self.queue.push(Reverse(Scheduled {
            at,
            order,
            index,
            original,
            bytes,
        }));
        true
    }

    /// Releases held datagrams that waited [`MAX_HOLD`], or all of them with `flush`.
    fn release_held(&mut self, now: MonoTime, flush: bool) {
        let mut k = 0;
        while k < self.held.len() {
            let expired = flush
                || now
                    .checked_duration_since(self.held[k].since)
                    .is_some_and(|d| d >= MAX_HOLD);
            if expired {
                let held = self.held.remove(k);
                self.enqueue(now, held.index, held.bytes, held.duplicate);
            } else {
                k += 1;
            }
        }
    }

    /// When the next datagram is due (including held ones that will expire), if any.
    pub fn next_due(&self) -> Option<MonoTime> {
        let queued = self.queue.peek().map(|Reverse(s)| s.at);
        let held = self
            .held
            .iter()
            .map(|h| h.since.saturating_add(MAX_HOLD))
            .min();
        match (queued, held) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next datagram due at `now`, if any, in sending order.
    pub fn pop_due(&mut self, now: MonoTime) -> Option<Vec<u8>> {
        self.release_held(now, false);
        if self.queue.peek().is_none_or(|Reverse(s)| s.at > now) {
            return None;
        }
        let Reverse(scheduled) = self.queue.pop()?;
        self.report.sent += 1;
        if scheduled.original {
            match self.max_sent {
                Some(max) if scheduled.index < max => self.report.reordered += 1,
                _ => self.max_sent = Some(scheduled.index),
            }
        }
        Some(scheduled.bytes)
    }

    /// Sends everything still held or queued, regardless of time (end of a run).
    pub fn drain(&mut self) -> Vec<Vec<u8>> {
        self.release_held(MonoTime::MAX, true);
        let mut out = Vec::new();
        while let Some(bytes) = self.pop_due(MonoTime::MAX) {
            out.push(bytes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at_ms(ms: u64) -> MonoTime {
        MonoTime::from_nanos(ms * 1_000_000)
    }

    /// Pushes `n` numbered datagrams one per millisecond and collects what comes out.
    fn run(config: ImpairConfig, seed: u64, n: u32) -> (Vec<u32>, ImpairReport) {
        let mut imp = Impairer::new(config, seed).expect("valid");
        let mut out = Vec::new();
        for i in 0..n {
            let now = at_ms(u64::from(i));
            imp.push(now, i.to_be_bytes().to_vec());
            while let Some(b) = imp.pop_due(now) {
                out.push(u32::from_be_bytes(b[..4].try_into().expect("4 bytes")));
            }
        }
        for b in imp.drain() {
            out.push(u32::from_be_bytes(b[..4].try_into().expect("4 bytes")));
        }
        (out, imp.report())
    }

    /// Counts what a receiver tracking the highest sequence number would see.
    fn receiver_view(out: &[u32], n: u32) -> (u64, u64, u64) {
        let mut seen = std::collections::HashSet::new();
        let (mut max, mut reordered, mut duplicates) = (None, 0, 0);
        for &s in out {
            if !seen.insert(s) {
                duplicates += 1;
                continue;
            }
            match max {
                Some(m) if s < m => reordered += 1,
                _ => max = Some(s),
            }
        }
        (n as u64 - seen.len() as u64, reordered, duplicates)
    }

    #[test]
    fn no_impairment_is_transparent() {
        let (out, report) = run(ImpairConfig::default(), 1, 100);
        assert_eq!(out, (0..100).collect::<Vec<_>>());
        assert_eq!(report.sent, 100);
        assert_eq!(report.lost() + report.reordered + report.duplicated, 0);
    }

    #[test]
    fn same_seed_same_run_other_seed_other_run() {
        let config = ImpairConfig {
            loss: 0.05,
            reorder: 0.1,
            reorder_depth: 5,
            duplicate: 0.05,
            ..ImpairConfig::default()
        };
        let a = run(config, 7, 2000);
        assert_eq!(a, run(config, 7, 2000));
        assert_ne!(a.0, run(config, 8, 2000).0);
    }

    #[test]
    fn counts_match_what_a_receiver_sees() {
        let config = ImpairConfig {
            loss: 0.01,
            reorder: 0.1,
            reorder_depth: 5,
            duplicate: 0.005,
            ..ImpairConfig::default()
        };
        for seed in 0..20 {
            let (out, report) = run(config, seed, 5000);
            let (lost, reordered, duplicates) = receiver_view(&out, 5000);
            assert_eq!(lost, report.lost(), "seed {seed}");
            assert_eq!(reordered, report.reordered, "seed {seed}");
            assert_eq!(duplicates, report.duplicated, "seed {seed}");
            assert_eq!(report.sent, 5000 - lost + duplicates);
            // Rates near what was asked (5000 draws).
            assert!((20..=80).contains(&report.lost_random), "{report:?}");
            assert!((380..=620).contains(&report.held), "{report:?}");
        }
    }

    #[test]
    fn reorder_depth_is_bounded() {
        let config = ImpairConfig {
            reorder: 0.3,
            reorder_depth: 3,
            ..ImpairConfig::default()
        };
        let (out, report) = run(config, 3, 1000);
        assert!(report.reordered > 100);
        for (pos, &s) in out.iter().enumerate() {
            // Never after more than `depth` datagrams that arrived after it.
            let overtaken = out[..pos].iter().filter(|&&o| o > s).count();
            assert!(overtaken <= 3, "{s} left after {overtaken} later ones");
        }
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts() {
        let config = ImpairConfig {
            burst: Some(GilbertElliott {
                p: 0.01,
                r: 0.25,
                loss_good: 0.0,
                loss_bad: 1.0,
            }),
            ..ImpairConfig::default()
        };
        let (out, report) = run(config, 11, 20_000);
        assert_eq!(report.lost_random, 0);
        // Stationary bad share p/(p+r) ≈ 3.8 %, mean burst 1/r = 4 datagrams.
        let share = report.lost_burst as f64 / 20_000.0;
        assert!((0.025..0.055).contains(&share), "burst loss share {share}");
        let mut bursts = 0;
        for w in out.windows(2) {
            if w[1] != w[0] + 1 {
                bursts += 1;
            }
        }
        let mean = report.lost_burst as f64 / f64::from(bursts);
        assert!((2.5..6.0).contains(&mean), "mean burst {mean}");
    }

    #[test]
    fn delay_and_jitter_stay_in_range_and_jitter_reorders_are_counted() {
        let config = ImpairConfig {
            delay: 5 * MS,
            jitter: 2 * MS,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(config, 5).expect("valid");
        let mut out = Vec::new();
        for t in 0..2000u64 {
            let now = MonoTime::from_nanos(t * 100_000); // 0.1 ms ticks
            if t % 10 == 0 {
                imp.push(now, (t / 10).to_be_bytes().to_vec());
            }
            while let Some(b) = imp.pop_due(now) {
                let i = u64::from_be_bytes(b[..8].try_into().expect("8 bytes"));
                let delay = now.checked_duration_since(at_ms(i)).expect("after arrival");
                assert!(delay >= 3 * MS && delay <= 7 * MS + MS / 10, "{delay:?}");
                out.push(i as u32);
            }
        }
        let (lost, reordered, _) = receiver_view(&out, out.len() as u32);
        assert_eq!(lost, 0);
        assert!(reordered > 0);
        assert_eq!(reordered, imp.report().reordered);
    }

    #[test]
    fn rate_limit_paces_and_drops_beyond_the_queue() {
        // 1000-byte datagrams (8224 bits on the link) every ms = 8.2 Mbit/s into 4 Mbit/s.
        let config = ImpairConfig {
            rate_bps: Some(4_000_000),
            queue_limit: 10 * MS,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(config, 1).expect("valid");
        let mut sent_times = Vec::new();
        for t in 0..1000u64 {
            let now = at_ms(t);
            imp.push(now, vec![0; 1000]);
            while imp.pop_due(now).is_some() {
                sent_times.push(t);
            }
        }
        let report = imp.report();
        assert!(report.dropped_rate > 400, "{report:?}");
        // Steady state: about 4e6 / 8224 ≈ 486 datagrams per second.
        let last_half = sent_times.iter().filter(|&&t| t >= 500).count();
        assert!((230..=260).contains(&last_half), "{last_half}");
    }

    #[test]
    fn corruption_changes_exactly_one_byte() {
        let config = ImpairConfig {
            corrupt: 1.0,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(config, 9).expect("valid");
        for _ in 0..100 {
            imp.push(MonoTime::ZERO, vec![0; 64]);
            let b = imp.pop_due(MonoTime::ZERO).expect("sent");
            assert_eq!(b.iter().filter(|&&x| x != 0).count(), 1);
        }
        assert_eq!(imp.report().corrupted, 100);
    }

    #[test]
    fn clean_window_passes_unimpaired() {
        let config = ImpairConfig {
            loss: 1.0,
            impair_from: 10,
            impair_until: Some(20),
            ..ImpairConfig::default()
        };
        let (out, report) = run(config, 1, 30);
        assert_eq!(out, (0..10).chain(20..30).collect::<Vec<_>>());
        let mut imp = Impairer::new(config, 1).expect("valid");
        imp.record_drops();
        for _ in 0..30 {
            imp.push(MonoTime::ZERO, vec![0]);
        }
        assert_eq!(imp.drops(), Some(&(10..20).collect::<Vec<_>>()[..]));
        assert_eq!(report.lost_random, 10);
    }

    #[test]
    fn held_datagrams_leave_after_max_hold_when_the_flow_stops() {
        let config = ImpairConfig {
            reorder: 1.0,
            reorder_depth: 5,
            ..ImpairConfig::default()
        };
        let mut imp = Impairer::new(config, 1).expect("valid");
        imp.push(MonoTime::ZERO, vec![1]);
        assert_eq!(imp.pop_due(at_ms(99)), None);
        assert_eq!(imp.next_due(), Some(at_ms(100)));
        assert_eq!(imp.pop_due(at_ms(100)), Some(vec![1]));
        assert_eq!(imp.report().pending, 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the probabilities, depth and seed (no jitter, no rate limit): a receiver
        /// sees exactly the losses, reorders and duplicates the report counts.
        #[test]
        fn report_matches_the_receiver_view(
            loss in 0.0f64..0.5,
            burst in proptest::option::of((0.0f64..0.2, 0.05f64..1.0)),
            reorder in 0.0f64..0.5,
            depth in 1u32..8,
            duplicate in 0.0f64..0.3,
            seed in proptest::prelude::any::<u64>(),
        ) {
            let config = ImpairConfig {
                loss,
                burst: burst.map(|(p, r)| GilbertElliott { p, r, loss_good: 0.0, loss_bad: 1.0 }),
                reorder,
                reorder_depth: depth,
                duplicate,
                ..ImpairConfig::default()
            };
            let (out, report) = run(config, seed, 500);
            let (lost, reordered, duplicates) = receiver_view(&out, 500);
            proptest::prop_assert_eq!(lost, report.lost());
            proptest::prop_assert_eq!(reordered, report.reordered);
            proptest::prop_assert_eq!(duplicates, report.duplicated);
            proptest::prop_assert_eq!(report.pending, 0);
            proptest::prop_assert_eq!(report.sent, 500 - lost + duplicates);
        }
    }

    #[test]
    fn bad_config_is_rejected() {
        let bad = ImpairConfig {
            loss: 1.5,
            ..ImpairConfig::default()
        };
        assert!(matches!(
            Impairer::new(bad, 0),
            Err(ImpairConfigError::Probability { field: "loss", .. })
        ));
        let nan = ImpairConfig {
            duplicate: f64::NAN,
            ..ImpairConfig::default()
        };
        assert!(Impairer::new(nan, 0).is_err());
        let depth = ImpairConfig {
            reorder_depth: 0,
            ..ImpairConfig::default()
        };
        assert_eq!(
            Impairer::new(depth, 0).err(),
            Some(ImpairConfigError::ReorderDepth(0))
        );
    }
}
