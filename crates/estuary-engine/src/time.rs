//! Injected monotonic time.
//!
//! The engine never reads a clock. Every entry point takes `now: MonoTime`, a count of
//! nanoseconds since an arbitrary epoch chosen by the caller (the I/O layer uses
//! `CLOCK_MONOTONIC` or kernel receive timestamps; tests use a virtual clock). Only
//! differences between two `MonoTime`s mean anything.
//!
//! Arithmetic never panics: `saturating_*` clamp at the ends of the `u64` range (about 584
//! years), `checked_*` return `None` instead.

use core::time::Duration;

/// A point in monotonic time: nanoseconds since an arbitrary, caller-chosen epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MonoTime(u64);

impl MonoTime {
    /// The epoch itself.
    pub const ZERO: MonoTime = MonoTime(0);
    /// The latest representable instant.
    pub const MAX: MonoTime = MonoTime(u64::MAX);

    /// `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        MonoTime(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self + d`, or `None` if it does not fit.
    pub fn checked_add(self, d: Duration) -> Option<Self> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_add(d).map(MonoTime)
    }

    /// `self - d`, or `None` if it would be before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Self> {
        let d = u64::try_from(d.as_nanos()).ok()?;
        self.0.checked_sub(d).map(MonoTime)
    }

    /// `self + d`, clamped to [`MonoTime::MAX`].
    pub fn saturating_add(self, d: Duration) -> Self {
        self.checked_add(d).unwrap_or(MonoTime::MAX)
    }

    /// `self - d`, clamped to [`MonoTime::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Self {
        self.checked_sub(d).unwrap_or(MonoTime::ZERO)
    }

    /// Time elapsed from `earlier` to `self`, or `None` if `earlier` is later than `self`.
    pub fn checked_duration_since(self, earlier: MonoTime) -> Option<Duration> {
        self.0.checked_sub(earlier.0).map(Duration::from_nanos)
    }

    /// Time elapsed from `earlier` to `self`; zero if `earlier` is later than `self`.
    pub fn duration_since(self, earlier: MonoTime) -> Duration {
        self.checked_duration_since(earlier)
            .unwrap_or(Duration::ZERO)
    }
}

impl core::ops::Add<Duration> for MonoTime {
    type Output = MonoTime;

    /// Saturating, like [`MonoTime::saturating_add`].
    fn add(self, d: Duration) -> MonoTime {
        self.saturating_add(d)
    }
}

impl core::ops::Sub<Duration> for MonoTime {
    type Output = MonoTime;

    /// Saturating, like [`MonoTime::saturating_sub`].
    fn sub(self, d: Duration) -> MonoTime {
        self.saturating_sub(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_checks() {
        let t = MonoTime::from_nanos(1_000);
        assert_eq!(t.as_nanos(), 1_000);
        assert_eq!(t.saturating_add(Duration::from_nanos(5)).as_nanos(), 1_005);
        assert_eq!(
            t.saturating_sub(Duration::from_nanos(5_000)),
            MonoTime::ZERO
        );
        assert_eq!(t.checked_sub(Duration::from_nanos(5_000)), None);
        assert_eq!(MonoTime::MAX.checked_add(Duration::from_nanos(1)), None);
        assert_eq!(MonoTime::MAX.saturating_add(Duration::MAX), MonoTime::MAX);
        assert_eq!(t.checked_add(Duration::MAX), None);
        assert_eq!(t + Duration::from_micros(1), MonoTime::from_nanos(2_000));
        assert_eq!(t - Duration::from_micros(1), MonoTime::ZERO);
    }

    #[test]
    fn durations_between_instants() {
        let a = MonoTime::from_nanos(10);
        let b = MonoTime::from_nanos(25);
        assert!(a < b);
        assert_eq!(b.duration_since(a), Duration::from_nanos(15));
        assert_eq!(a.duration_since(b), Duration::ZERO);
        assert_eq!(a.checked_duration_since(b), None);
        assert_eq!(b.checked_duration_since(a), Some(Duration::from_nanos(15)));
    }
}
