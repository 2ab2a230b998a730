//! What a stream's description says about ST 2110 profiles: the ST 2110-30 conformance level
//! a receiver needs (§6.1) and the ST 2110-10 timing rules (§8).

use super::{AudioStream, RefClock};

/// ST 2110-30 §6.1 receiver conformance levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// 48 kHz, 1 to 8 channels, 1 ms.
    A,
    /// Level A, plus 96 kHz with 1 to 4 channels at 1 ms.
    AX,
    /// 48 kHz, 1 to 8 channels, 1 ms or 125 µs.
    B,
    /// Level B, plus 96 kHz with 1 to 4 channels at 1 ms or 1 to 8 at 125 µs.
    BX,
    /// 48 kHz, 1 to 8 channels at 1 ms or 1 to 64 at 125 µs.
    C,
    /// Level C, plus 96 kHz with 1 to 4 channels at 1 ms or 1 to 32 at 125 µs.
    CX,
}

/// Why a stream does not follow ST 2110-10 timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum St2110_10Issue {
    /// No `a=mediaclk:direct=`.
    NoMediaClock,
    /// `a=mediaclk:direct=<n>` with n ≠ 0: RTP time is not aligned to the PTP epoch (§8.2).
    MediaClockOffset(u32),
    /// No `a=ts-refclk`.
    NoReferenceClock,
    /// The reference clock is not PTP (e.g. `localmac=`).
    NotPtp,
}

impl std::fmt::Display for St2110_10Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoMediaClock => f.write_str("no a=mediaclk:direct="),
            Self::MediaClockOffset(n) => write!(f, "media clock offset {n} is not 0"),
            Self::NoReferenceClock => f.write_str("no a=ts-refclk"),
            Self::NotPtp => f.write_str("reference clock is not PTP"),
        }
    }
}

impl AudioStream {
    /// The lowest ST 2110-30 conformance level whose receivers must accept this stream, from
    /// rate, packet time and channels; `None` when no level covers it (e.g. 44.1 kHz, 4 ms).
    pub fn conformance_level(&self) -> Option<Level> {
        let frames = self.frames_per_packet()?;
        let ch = u32::from(self.channels);
        // Exact integer tests: a rounded ptime of 0.12 has already become 6 frames.
        let one_ms = u64::from(frames) * 1000 == u64::from(self.sample_rate);
        let short = u64::from(frames) * 8000 == u64::from(self.sample_rate);
        match (self.sample_rate, one_ms, short) {
            (48_000, true, _) if (1..=8).contains(&ch) => Some(Level::A),
            (48_000, _, true) if (1..=8).contains(&ch) => Some(Level::B),
            (48_000, _, true) if (1..=64).contains(&ch) => Some(Level::C),
            (96_000, true, _) if (1..=4).contains(&ch) => Some(Level::AX),
            (96_000, _, true) if (1..=8).contains(&ch) => Some(Level::BX),
            (96_000, _, true) if (1..=32).contains(&ch) => Some(Level::CX),
            _ => None,
        }
    }

    /// ST 2110-10 §8: the RTP clock must be PTP-referenced with a zero offset
    /// (`a=mediaclk:direct=0` and a PTP `a=ts-refclk`). Dante streams fail on the offset.
    pub fn st2110_10_compliance(&self) -> Result<(), St2110_10Issue> {
        match self.media_clock_offset {
            None => return Err(St2110_10Issue::NoMediaClock),
            Some(0) => {}
            Some(n) => return Err(St2110_10Issue::MediaClockOffset(n)),
        }
        match &self.ts_refclk {
            None => Err(St2110_10Issue::NoReferenceClock),
            Some(RefClock::Ptp { .. } | RefClock::PtpTraceable { .. }) => Ok(()),
            Some(_) => Err(St2110_10Issue::NotPtp),
        }
    }

    /// True when [`AudioStream::st2110_10_compliance`] finds nothing.
    pub fn is_st2110_10_compliant(&self) -> bool {
        self.st2110_10_compliance().is_ok()
    }
}
