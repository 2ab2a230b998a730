//! EBU R128 loudness (ITU-R BS.1770-4) of a group of channels of an input, over the
//! `ebur128` crate.
//!
//! The crate is run in `HISTOGRAM` mode: integrated loudness and LRA are then computed from
//! fixed 1000-bin histograms (0.1 LU bins) instead of a history that grows with the programme
//! (the default `Queue` history pushes every 100 ms block into a `VecDeque` and so allocates on
//! the audio path once it outgrows its initial capacity). Everything else it needs (filter
//! state, the 3 s window of filtered audio) is allocated in `EbuR128::new`, so
//! [`LoudnessMeter::process`] does not allocate; `tests/meters_alloc.rs` checks this with a
//! counting allocator.
//!
//! The group's channels are copied out of the input's interleaved frames into a scratch buffer
//! of [`SCRATCH_FRAMES`] frames allocated at construction.

use ebur128::{EbuR128, Mode};

/// Frames copied per call into the crate.
pub const SCRATCH_FRAMES: usize = 512;

/// Loudness of one group at one instant, in LUFS (LU for `range`). A value is
/// `f64::NEG_INFINITY` while there is no (ungated) energy to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessLevels {
    /// Momentary loudness (400 ms window), EBU Tech 3341 §2.
    pub momentary: f64,
    /// Short-term loudness (3 s window).
    pub short_term: f64,
    /// Integrated (gated) loudness since the start (BS.1770-4 §2.8: −70 LUFS absolute gate,
    /// −10 LU relative gate).
    pub integrated: f64,
    /// Loudness range, EBU Tech 3342 (10th to 95th percentile of gated short-term values);
    /// 0 until there is enough signal.
    pub range: f64,
}

/// R128 meter of `count` consecutive channels starting at `first` of an interleaved input.
#[derive(Debug)]
pub struct LoudnessMeter {
    first: usize,
    count: usize,
    input_channels: usize,
    meter: EbuR128,
    scratch: Vec<i32>,
}

impl LoudnessMeter {
    /// A meter of channels `first..first + count` of an input of `input_channels` at
    /// `sample_rate`. The crate's default channel map applies: one or two channels are
    /// weighted 1 (L, R); for a larger group, BS.1770 weights of L R C LFE Ls Rs.
    pub fn new(
        input_channels: u16,
        first: u16,
        count: u16,
        sample_rate: u32,
    ) -> Result<Self, ebur128::Error> {
        if count == 0 || u32::from(first) + u32::from(count) > u32::from(input_channels) {
            return Err(ebur128::Error::InvalidChannelIndex);
        }
        let mode = Mode::M | Mode::S | Mode::I | Mode::LRA | Mode::HISTOGRAM;
        let meter = EbuR128::new(u32::from(count), sample_rate, mode)?;
        Ok(LoudnessMeter {
            first: usize::from(first),
            count: usize::from(count),
            input_channels: usize::from(input_channels),
            meter,
            scratch: vec![0; SCRATCH_FRAMES * usize::from(count)],
        })
    }

    /// First channel of the group (index in the input).
    pub fn first_channel(&self) -> u16 {
        self.first as u16
    }

    /// Channels in the group.
    pub fn channels(&self) -> u16 {
        self.count as u16
    }

    /// Accounts interleaved frames of the whole input (a trailing partial frame is ignored).
    pub fn process(&mut self, frames: &[i32]) {
        let group = self.first..self.first + self.count;
        for chunk in frames.chunks(SCRATCH_FRAMES * self.input_channels) {
            let mut used = 0;
            for (frame, out) in chunk
                .chunks_exact(self.input_channels)
                .zip(self.scratch.chunks_exact_mut(self.count))
            {
                if let Some(samples) = frame.get(group.clone()) {
                    out.copy_from_slice(samples);
                    used += self.count;
                }
            }
            if let Some(block) = self.scratch.get(..used) {
                // Only a channel-count mismatch can fail, and the scratch holds whole frames.
                let _ = self.meter.add_frames_i32(block);
            }
        }
    }

    /// The current values.
    pub fn levels(&self) -> LoudnessLevels {
        LoudnessLevels {
            momentary: self.meter.loudness_momentary().unwrap_or(f64::NEG_INFINITY),
            short_term: self.meter.loudness_shortterm().unwrap_or(f64::NEG_INFINITY),
            integrated: self.meter.loudness_global().unwrap_or(f64::NEG_INFINITY),
            range: self.meter.loudness_range().unwrap_or(0.0),
        }
    }
}
