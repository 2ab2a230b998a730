//! Alarm debouncing shared by the audio detectors and the stream-health monitor.
//!
//! A detector samples a *condition* (silence, clipping, loss, …) over consecutive intervals of
//! time. [`Debounce`] turns those samples into alarm state changes: it raises once the
//! condition has held without a break for `raise_after`, and clears once it has been absent
//! without a break for `clear_after`. Level hysteresis is the caller's business: while an
//! alarm is raised, the caller tests the condition against a threshold moved by the
//! hysteresis (see each detector's config), so a level hovering at the threshold does not
//! flap.
//!
//! Time is counted in abstract *ticks* (audio frames for the audio detectors, nanoseconds for
//! the health monitor), so timing is exact and deterministic.

use core::time::Duration;

/// How long a condition must hold before its alarm is raised, and be absent before it clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Condition held without a break for this long → raised. Zero raises at the end of the
    /// first interval where it is seen.
    pub raise_after: Duration,
    /// Condition absent without a break for this long → cleared. Zero clears at the end of the
    /// first interval without it.
    pub clear_after: Duration,
}

impl Timing {
    /// Shorthand for a [`Timing`].
    pub const fn new(raise_after: Duration, clear_after: Duration) -> Self {
        Timing {
            raise_after,
            clear_after,
        }
    }
}

/// An alarm state change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Change {
    /// The condition has held for `raise_after`.
    Raised,
    /// The condition has been absent for `clear_after`.
    Cleared,
}

/// The raise/clear state machine of one alarm (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    raise_after: u64,
    clear_after: u64,
    active: bool,
    /// Start (in ticks) of the current unbroken run of intervals that contradict the state:
    /// condition present while cleared, or absent while raised.
    run_start: Option<u64>,
}

impl Debounce {
    /// A cleared alarm with thresholds in ticks.
    pub const fn new(raise_after: u64, clear_after: u64) -> Self {
        Debounce {
            raise_after,
            clear_after,
            active: false,
            run_start: None,
        }
    }

    /// A cleared alarm whose [`Timing`] is converted to ticks of `ticks_per_second`.
    pub fn with_timing(timing: Timing, ticks_per_second: u64) -> Self {
        Debounce::new(
            duration_to_ticks(timing.raise_after, ticks_per_second),
            duration_to_ticks(timing.clear_after, ticks_per_second),
        )
    }

    /// Whether the alarm is raised.
    pub const fn active(&self) -> bool {
        self.active
    }

    /// Accounts the interval `[start, end)` (ticks) over which the condition was `present`,
    /// and says whether the alarm changed state at `end`.
    #[must_use]
    pub fn update(&mut self, start: u64, end: u64, present: bool) -> Option<Change> {
        if present == self.active {
            // The interval confirms the current state: any run towards a change is broken.
            self.run_start = None;
            return None;
        }
        let run_start = *self.run_start.get_or_insert(start);
        let needed = if self.active {
            self.clear_after
        } else {
            self.raise_after
        };
        if end.saturating_sub(run_start) < needed {
            return None;
        }
        self.active = !self.active;
        self.run_start = None;
        Some(if self.active {
            Change::Raised
        } else {
            Change::Cleared
        })
    }
}

/// `d` in ticks of `ticks_per_second`, rounded up (so an alarm never fires early), saturating.
pub fn duration_to_ticks(d: Duration, ticks_per_second: u64) -> u64 {
    let ticks = d
        .as_nanos()
        .saturating_mul(u128::from(ticks_per_second))
        .div_ceil(1_000_000_000);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raises_after_duration_and_clears_after_absence() {
        let mut d = Debounce::new(30, 20);
        assert_eq!(d.update(0, 10, true), None);
        assert_eq!(d.update(10, 20, true), None);
        assert_eq!(d.update(20, 30, true), Some(Change::Raised));
        assert!(d.active());
        assert_eq!(d.update(30, 40, false), None);
        // A present interval breaks the run of absence.
        assert_eq!(d.update(40, 50, true), None);
        assert_eq!(d.update(50, 60, false), None);
        assert_eq!(d.update(60, 70, false), Some(Change::Cleared));
        assert!(!d.active());
    }

    #[test]
    fn a_break_restarts_the_raise_run() {
        let mut d = Debounce::new(20, 0);
        assert_eq!(d.update(0, 10, true), None);
        assert_eq!(d.update(10, 20, false), None);
        assert_eq!(d.update(20, 30, true), None);
        assert_eq!(d.update(30, 40, true), Some(Change::Raised));
        assert_eq!(d.update(40, 50, false), Some(Change::Cleared));
    }

    #[test]
    fn durations_round_up_to_ticks() {
        assert_eq!(duration_to_ticks(Duration::from_millis(10), 48_000), 480);
        assert_eq!(duration_to_ticks(Duration::from_nanos(1), 48_000), 1);
        assert_eq!(duration_to_ticks(Duration::MAX, u64::MAX), u64::MAX);
    }
}
