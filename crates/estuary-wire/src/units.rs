//! Newtypes for wire units with wrapping (modular) arithmetic.
//!
//! RTP sequence numbers (16 bit) and timestamps (32 bit) wrap around (RFC 3550 §5.1), so
//! ordinary comparison is wrong near the wrap point. These types only offer wrapping
//! operations and a signed "distance" that is correct as long as the two values are less
//! than half the number space apart (RFC 3550 §A.1 uses the same rule).

/// RTP sequence number (RFC 3550 §5.1), 16 bits, wrapping.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u16);

impl SeqNum {
    /// The following sequence number (wraps from 0xffff to 0).
    #[must_use]
    pub const fn next(self) -> SeqNum {
        SeqNum(self.0.wrapping_add(1))
    }

    /// Adds `n`, wrapping.
    #[must_use]
    pub const fn wrapping_add(self, n: u16) -> SeqNum {
        SeqNum(self.0.wrapping_add(n))
    }

    /// Signed distance `self - earlier` in modular arithmetic: positive when `self` comes
    /// after `earlier`, negative when before. Exact while the true distance is within
    /// `-32768..=32767`.
    #[must_use]
    pub const fn diff(self, earlier: SeqNum) -> i16 {
        self.0.wrapping_sub(earlier.0) as i16
    }

    /// True if `self` comes strictly after `other` (modular order).
    #[must_use]
    pub const fn is_after(self, other: SeqNum) -> bool {
        self.diff(other) > 0
    }
}

/// RTP timestamp (RFC 3550 §5.1), 32 bits in media-clock units, wrapping.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct RtpTimestamp(pub u32);

impl RtpTimestamp {
    /// Adds `n` media-clock ticks, wrapping.
    #[must_use]
    pub const fn wrapping_add(self, n: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_add(n))
    }

    /// Subtracts `n` media-clock ticks, wrapping.
    #[must_use]
    pub const fn wrapping_sub(self, n: u32) -> RtpTimestamp {
        RtpTimestamp(self.0.wrapping_sub(n))
    }

    /// Signed distance `self - earlier` in ticks, modular. Exact while the true distance is
    /// within the `i32` range (about 12 hours at 48 kHz).
    #[must_use]
    pub const fn diff(self, earlier: RtpTimestamp) -> i32 {
        self.0.wrapping_sub(earlier.0) as i32
    }

    /// True if `self` comes strictly after `other` (modular order).
    #[must_use]
    pub const fn is_after(self, other: RtpTimestamp) -> bool {
        self.diff(other) > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_wraps() {
        assert_eq!(SeqNum(0xffff).next(), SeqNum(0));
        assert_eq!(SeqNum(0).diff(SeqNum(0xffff)), 1);
        assert_eq!(SeqNum(0xffff).diff(SeqNum(0)), -1);
        assert_eq!(SeqNum(10).diff(SeqNum(5)), 5);
        assert_eq!(SeqNum(0x8000).diff(SeqNum(0)), i16::MIN);
        assert!(SeqNum(2).is_after(SeqNum(0xfffe)));
        assert!(!SeqNum(5).is_after(SeqNum(5)));
        assert_eq!(SeqNum(0xfff0).wrapping_add(0x20), SeqNum(0x10));
    }

    #[test]
    fn timestamp_wraps() {
        assert_eq!(RtpTimestamp(u32::MAX).wrapping_add(48), RtpTimestamp(47));
        assert_eq!(RtpTimestamp(47).diff(RtpTimestamp(u32::MAX)), 48);
        assert_eq!(RtpTimestamp(u32::MAX).diff(RtpTimestamp(47)), -48);
        assert_eq!(RtpTimestamp(5).wrapping_sub(6), RtpTimestamp(u32::MAX));
        assert!(RtpTimestamp(1).is_after(RtpTimestamp(u32::MAX)));
    }
}
