//! Source failover: which of a priority list of sources (main, backup, fallback) is on air.
//!
//! A source is *healthy* while its packets keep coming (none missing for `switch_after`), it
//! is not silent (peak below the threshold) for `silence_after`, and its clock has not been
//! unlocked for `clock_unlocked_after` (when the caller judges its clock); a fallback (a tone or a
//! file, produced locally) is always healthy. The [`Switcher`] puts the highest-priority
//! healthy source on air: at once when the active source fails, and only after a source of
//! higher priority has been healthy for `return_after` when going back, so a flapping main
//! does not make the output flap. The caller crossfades over [`FailoverPolicy::crossfade`]
//! frames with [`crossfade`].

use core::time::Duration;

use crate::time::MonoTime;

/// Most sources in the list.
pub const MAX_SOURCES: usize = 4;

/// The switching rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailoverPolicy {
    /// A source with no packet for this long has failed.
    pub switch_after: Duration,
    /// Peak (absolute, MSB-aligned `i32`) below which audio counts as silence; `None`: the
    /// silence rule is off.
    pub silence_peak: Option<i32>,
    /// A source silent for this long has failed.
    pub silence_after: Duration,
    /// A source whose clock is unlocked this long has failed; `None`: the clock rule is off.
    pub clock_unlocked_after: Option<Duration>,
    /// A higher-priority source must be healthy this long before it goes back on air.
    pub return_after: Duration,
    /// Frames of the crossfade at a switch.
    pub crossfade: usize,
}

/// Why the switcher changed source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwitchReason {
    /// The active source's packets stopped.
    NoPackets,
    /// The active source was silent for too long.
    Silence,
    /// The active source's clock was unlocked for too long.
    ClockUnlocked,
    /// A higher-priority source has been healthy for the return period.
    Restored,
}

impl SwitchReason {
    /// Name used in logs, events and the API.
    pub fn name(self) -> &'static str {
        match self {
            SwitchReason::NoPackets => "no_packets",
            SwitchReason::Silence => "silence",
            SwitchReason::ClockUnlocked => "clock_unlocked",
            SwitchReason::Restored => "restored",
        }
    }
}

/// A change of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch {
    pub from: usize,
    pub to: usize,
    pub reason: SwitchReason,
}

#[derive(Debug, Clone, Copy, Default)]
struct Health {
    /// Produced locally: always healthy.
    local: bool,
    last_packet: Option<MonoTime>,
    /// Start of the current run of silent audio.
    quiet_since: Option<MonoTime>,
    /// Start of the current run of an unlocked clock.
    unlocked_since: Option<MonoTime>,
    /// Start of the current healthy run.
    healthy_since: Option<MonoTime>,
}

/// Which source is on air; see the module docs.
#[derive(Debug, Clone)]
pub struct Switcher {
    policy: FailoverPolicy,
    sources: Vec<Health>,
    active: usize,
    switches: u64,
    /// First decision: a source that never sent anything gets `switch_after` from here.
    started: Option<MonoTime>,
}

impl Switcher {
    /// `network` sources in priority order (index 0 = main), then `local` ones (always
    /// healthy, e.g. a fallback tone). Starts on source 0.
    pub fn new(policy: FailoverPolicy, network: usize, local: usize) -> Self {
        let mut sources = vec![Health::default(); (network + local).clamp(1, MAX_SOURCES)];
        for s in sources.iter_mut().skip(network) {
            s.local = true;
        }
        Switcher {
            policy,
            sources,
            active: 0,
            switches: 0,
            started: None,
        }
    }

    /// The source on air.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Switches so far.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// A packet of `source` was stored at `now`.
    pub fn packet(&mut self, source: usize, now: MonoTime) {
        if let Some(s) = self.sources.get_mut(source) {
            s.last_packet = Some(now);
        }
    }

    /// Audio of `source` played at `now` (interleaved samples): feeds the silence rule.
    pub fn audio(&mut self, source: usize, now: MonoTime, samples: &[i32]) {
        let Some(threshold) = self.policy.silence_peak else {
            return;
        };
        let Some(s) = self.sources.get_mut(source) else {
            return;
        };
        if samples.is_empty() {
            return;
        }
        let peak = samples.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        if peak >= threshold.unsigned_abs() {
            s.quiet_since = None;
        } else if s.quiet_since.is_none() {
            s.quiet_since = Some(now);
        }
    }

    /// The state of `source`'s clock at `now`: `Some(false)` unlocked, `Some(true)` locked,
    /// `None` not judged (no PTP, or not yet acquired), which never fails a source.
    pub fn clock(&mut self, source: usize, now: MonoTime, locked: Option<bool>) {
        let Some(s) = self.sources.get_mut(source) else {
            return;
        };
        if locked == Some(false) {
            s.unlocked_since.get_or_insert(now);
        } else {
            s.unlocked_since = None;
        }
    }

    /// Why `source` is unhealthy at `now`, if it is.
    fn fault(&self, source: usize, now: MonoTime) -> Option<SwitchReason> {
        let s = &self.sources[source];
        if s.local {
            return None;
        }
        let since = s.last_packet.or(self.started).unwrap_or(now);
        let stale = now
            .checked_duration_since(since)
            .is_some_and(|d| d > self.policy.switch_after);
        if stale {
            return Some(SwitchReason::NoPackets);
        }
        let unlocked = self.policy.clock_unlocked_after.is_some_and(|after| {
            s.unlocked_since
                .and_then(|t| now.checked_duration_since(t))
                .is_some_and(|d| d >= after)
        });
        if unlocked {
            return Some(SwitchReason::ClockUnlocked);
        }
        let silent = s.quiet_since.is_some_and(|t| {
            now.checked_duration_since(t)
                .is_some_and(|d| d >= self.policy.silence_after)
        });
        silent.then_some(SwitchReason::Silence)
    }

    /// Re-evaluates the sources at `now`; returns the switch made, if any.
    pub fn decide(&mut self, now: MonoTime) -> Option<Switch> {
        self.started.get_or_insert(now);
        for i in 0..self.sources.len() {
            let healthy = self.fault(i, now).is_none();
            let s = &mut self.sources[i];
            if !healthy {
                s.healthy_since = None;
            } else if s.healthy_since.is_none() {
                s.healthy_since = Some(now);
            }
        }
        let best = (0..self.sources.len()).find(|&i| self.sources[i].healthy_since.is_some())?;
        let to = if let Some(reason) = self.fault(self.active, now) {
            Some((best, reason))
        } else if best < self.active {
            let stable = self.sources[best].healthy_since.is_some_and(|t| {
                now.checked_duration_since(t)
                    .is_some_and(|d| d >= self.policy.return_after)
            });
            stable.then_some((best, SwitchReason::Restored))
        } else {
            None
        };
        let (to, reason) = to?;
        if to == self.active {
            return None;
        }
        let switch = Switch {
            from: self.active,
            to,
            reason,
        };
        self.active = to;
        self.switches += 1;
        Some(switch)
    }
}

/// Mixes `old` into `new` in place: frame `k` of `new` gets `old × g + new × (1 − g)` with
/// `g` falling linearly from 1 over `total` frames, starting `done` frames into the fade.
/// Returns the frames of the fade done after this block.
pub fn crossfade(
    new: &mut [i32],
    old: &[i32],
    channels: usize,
    done: usize,
    total: usize,
) -> usize {
    let mut k = done;
    for (n, o) in new
        .chunks_exact_mut(channels)
        .zip(old.chunks_exact(channels))
    {
        if k >= total {
            break;
        }
        let g = 1.0 - (k as f64 + 0.5) / total as f64;
        for (a, &b) in n.iter_mut().zip(o) {
            *a = (f64::from(b) * g + f64::from(*a) * (1.0 - g)).round() as i32;
        }
        k += 1;
    }
    k.min(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> MonoTime {
        MonoTime::from_nanos(v * 1_000_000)
    }

    fn policy() -> FailoverPolicy {
        FailoverPolicy {
            switch_after: Duration::from_millis(250),
            silence_peak: Some(1 << 16),
            silence_after: Duration::from_secs(2),
            clock_unlocked_after: Some(Duration::from_millis(500)),
            return_after: Duration::from_secs(5),
            crossfade: 480,
        }
    }

    #[test]
    fn main_lost_backup_on_air_then_return_after_stable_period() {
        let mut sw = Switcher::new(policy(), 2, 1);
        let loud = [1 << 20; 96];
        let mut switches = Vec::new();
        for t in 0..20_000u64 {
            let now = ms(t);
            let main_up = !(1_000..8_000).contains(&t);
            if main_up {
                sw.packet(0, now);
                sw.audio(0, now, &loud);
            }
            sw.packet(1, now);
            sw.audio(1, now, &loud);
            if let Some(s) = sw.decide(now) {
                switches.push((t, s));
            }
        }
        assert_eq!(switches.len(), 2, "{switches:?}");
        // (No switch at the start: the sources had `switch_after` to show up.)
        let (t0, s0) = switches[0];
        assert_eq!((s0.from, s0.to, s0.reason), (0, 1, SwitchReason::NoPackets));
        assert!((1_250..=1_252).contains(&t0), "switched at {t0}");
        let (t1, s1) = switches[1];
        assert_eq!((s1.from, s1.to, s1.reason), (1, 0, SwitchReason::Restored));
        assert!((13_000..=13_001).contains(&t1), "returned at {t1}");
    }

    #[test]
    fn silence_fails_a_source_and_the_fallback_takes_over() {
        let mut sw = Switcher::new(policy(), 1, 1);
        let quiet = [10; 96];
        let mut last = None;
        for t in 0..3_000u64 {
            sw.packet(0, ms(t));
            sw.audio(0, ms(t), &quiet);
            if let Some(s) = sw.decide(ms(t)) {
                last = Some((t, s));
            }
        }
        let (t, s) = last.expect("a switch");
        assert_eq!((s.to, s.reason), (1, SwitchReason::Silence));
        assert_eq!(t, 2_000);
        assert_eq!(sw.active(), 1);
    }

    #[test]
    fn clock_unlock_fails_the_main_and_it_returns_once_locked_for_the_stable_period() {
        let mut sw = Switcher::new(policy(), 2, 0);
        let loud = [1 << 20; 96];
        let mut switches = Vec::new();
        for t in 0..20_000u64 {
            let now = ms(t);
            for source in 0..2 {
                sw.packet(source, now);
                sw.audio(source, now, &loud);
            }
            // The main's clock: not judged at first (acquiring), locked from 1 s, unlocked
            // from 3 s to 9 s (the grandmaster gone), a 200 ms blip at 12 s (shorter than
            // the rule's 500 ms: no switch), locked after.
            let locked = match t {
                0..1_000 => None,
                3_000..9_000 | 12_000..12_200 => Some(false),
                _ => Some(true),
            };
            sw.clock(0, now, locked);
            if let Some(s) = sw.decide(now) {
                switches.push((t, s));
            }
        }
        assert_eq!(switches.len(), 2, "{switches:?}");
        let (t0, s0) = switches[0];
        assert_eq!(
            (s0.from, s0.to, s0.reason),
            (0, 1, SwitchReason::ClockUnlocked)
        );
        assert_eq!(t0, 3_500);
        let (t1, s1) = switches[1];
        assert_eq!((s1.from, s1.to, s1.reason), (1, 0, SwitchReason::Restored));
        assert_eq!(t1, 14_000, "locked at 9 s + the 5 s return period");
    }

    #[test]
    fn without_the_clock_rule_an_unlocked_clock_is_ignored() {
        let mut sw = Switcher::new(
            FailoverPolicy {
                clock_unlocked_after: None,
                ..policy()
            },
            2,
            0,
        );
        let loud = [1 << 20; 96];
        for t in 0..5_000u64 {
            for source in 0..2 {
                sw.packet(source, ms(t));
                sw.audio(source, ms(t), &loud);
            }
            sw.clock(0, ms(t), Some(false));
            assert_eq!(sw.decide(ms(t)), None);
        }
    }

    #[test]
    fn crossfade_goes_from_old_to_new() {
        let mut new = vec![1000; 10];
        let old = vec![0; 10];
        let done = crossfade(&mut new, &old, 1, 0, 10);
        assert_eq!(done, 10);
        assert!(new[0] < 100 && new[9] > 900, "{new:?}");
        assert!(new.windows(2).all(|w| w[0] <= w[1]));
    }
}
