//! Fixed-ratio sample-rate conversion for outputs whose codec runs at another rate than their
//! input (an SRT output carries 48 kHz; a 96 kHz ST 2110-30 input or a 44.1 kHz generator
//! feeds it).
//!
//! Both sides of an input and an output share one media clock, so the ratio is exact and
//! fixed: rubato's sinc resampler converts fixed input blocks of [`BLOCK`] (20 ms) at that
//! ratio, with no control loop (each block gives the exact output count, give or take one
//! frame of phase). Drift between a foreign sender's clock and ours is a different job, done by
//! [`crate::drift::DriftBuffer`] on the input side.

use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{
    Async, FixedAsync, Resampler, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Conversion block: 20 ms holds a whole number of frames at every rate that is a multiple of
/// 50 Hz (all the audio rates), on both sides.
pub const BLOCK: Duration = Duration::from_millis(20);

/// Full scale of a left-justified `i32` sample (the engine's sample format).
const FULL_SCALE: f32 = 2_147_483_648.0;

/// Why a conversion cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("{0} Hz is not a multiple of 50 Hz")]
    Rate(u32),
    #[error("no channels")]
    NoChannels,
    #[error("the resampler refused {0} Hz → {1} Hz: {2}")]
    Refused(u32, u32, String),
}

/// Converts interleaved `i32` audio from one rate to another in 20 ms blocks.
pub struct RateConverter {
    channels: usize,
    in_frames: usize,
    out_frames: usize,
    resampler: Async<f32>,
    input: Vec<f32>,
    output: Vec<f32>,
    converted: Vec<i32>,
}

impl std::fmt::Debug for RateConverter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateConverter")
            .field("channels", &self.channels)
            .field("in_frames", &self.in_frames)
            .field("out_frames", &self.out_frames)
            .finish_non_exhaustive()
    }
}

impl RateConverter {
    /// A converter from `from` Hz to `to` Hz for `channels` interleaved channels.
    ///
    /// # Errors
    /// A rate that is not a multiple of 50 Hz, or no channels.
    pub fn new(from: u32, to: u32, channels: usize) -> Result<Self, RateError> {
        let in_frames = block_frames(from)?;
        let out_frames = block_frames(to)?;
        if channels == 0 {
            return Err(RateError::NoChannels);
        }
        let resampler = Async::<f32>::new_sinc(
            f64::from(to) / f64::from(from),
            1.0,
            &sinc_parameters(),
            in_frames,
            channels,
            FixedAsync::Input,
        )
        .map_err(|e| RateError::Refused(from, to, e.to_string()))?;
        let out_max = resampler.output_frames_max();
        Ok(Self {
            channels,
            in_frames,
            out_frames,
            resampler,
            input: vec![0.0; in_frames * channels],
            output: vec![0.0; out_max * channels],
            converted: Vec::with_capacity(out_max * channels),
        })
    }

    /// Input frames per block.
    pub fn in_frames(&self) -> usize {
        self.in_frames
    }

    /// Output frames per block, on average (one block may give one more or one less).
    pub fn out_frames(&self) -> usize {
        self.out_frames
    }

    /// How many output frames an input event appears late (the filter's delay).
    pub fn delay_frames(&self) -> usize {
        self.resampler.output_delay()
    }

    /// Converts one block of [`in_frames`](Self::in_frames) interleaved frames and returns
    /// the converted frames, interleaved. A block of another size gives nothing rather than
    /// a panic.
    pub fn process(&mut self, input: &[i32]) -> &[i32] {
        let (channels, in_frames) = (self.channels, self.in_frames);
        self.converted.clear();
        if input.len() != in_frames * channels {
            return &self.converted;
        }
        for (f, &s) in self.input.iter_mut().zip(input) {
            *f = s as f32 / FULL_SCALE;
        }
        let out_frames = self.output.len() / channels;
        let produced = match (
            InterleavedSlice::new(&self.input[..], channels, in_frames),
            InterleavedSlice::new_mut(&mut self.output[..], channels, out_frames),
        ) {
            (Ok(i), Ok(mut o)) => self
                .resampler
                .process_into_buffer(&i, &mut o, None)
                .map_or(0, |(_, produced)| produced),
            _ => 0,
        };
        // `as` saturates: an overshoot of the filter at full scale clips, never wraps.
        self.converted.extend(
            self.output[..produced * channels]
                .iter()
                .map(|&f| (f * FULL_SCALE) as i32),
        );
        &self.converted
    }
}

/// The sinc filter of every rate conversion in the engine: 128 taps (64 frames of delay),
/// stop band well below 24-bit noise at the output's Nyquist for audio-band content.
pub(crate) fn sinc_parameters() -> SincInterpolationParameters {
    SincInterpolationParameters {
        sinc_len: 128,
        f_cutoff: None,
        oversampling_factor: 128,
        interpolation: SincInterpolationType::Linear,
        window: WindowFunction::BlackmanHarris2,
    }
}

fn block_frames(rate: u32) -> Result<usize, RateError> {
    if rate == 0 || !rate.is_multiple_of(50) {
        return Err(RateError::Rate(rate));
    }
    Ok((u64::from(rate) * BLOCK.as_millis() as u64 / 1000) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, amplitude: f64, frames: usize, channels: usize) -> Vec<i32> {
        (0..frames)
            .flat_map(|n| {
                let v = amplitude
                    * (2.0 * std::f64::consts::PI * hz * n as f64 / f64::from(rate)).sin();
                std::iter::repeat_n((v * 2_147_483_647.0) as i32, channels)
            })
            .collect()
    }

    /// Amplitude and frequency (from zero crossings) of one channel.
    fn measure(samples: &[i32], channels: usize, channel: usize, rate: u32) -> (f64, f64) {
        let x: Vec<f64> = samples
            .iter()
            .skip(channel)
            .step_by(channels)
            .map(|&s| f64::from(s) / 2_147_483_648.0)
            .collect();
        let rms = (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt();
        let crossings: Vec<usize> = (1..x.len())
            .filter(|&i| x[i - 1] < 0.0 && x[i] >= 0.0)
            .collect();
        let periods = (crossings.len() - 1) as f64;
        let hz = periods * f64::from(rate) / (crossings[crossings.len() - 1] - crossings[0]) as f64;
        (rms * 2f64.sqrt(), hz)
    }

    fn convert(from: u32, to: u32, input: &[i32], channels: usize) -> Vec<i32> {
        let mut conv = RateConverter::new(from, to, channels).expect("converter");
        let mut all = Vec::new();
        for block in input.chunks_exact(conv.in_frames() * channels) {
            all.extend_from_slice(conv.process(block));
        }
        // Past the filter's delay.
        all.split_off(conv.delay_frames() * 2 * channels)
    }

    #[test]
    fn a_tone_keeps_its_frequency_and_level_across_rates() {
        for (from, to) in [
            (96_000, 48_000),
            (44_100, 48_000),
            (32_000, 48_000),
            (48_000, 44_100),
        ] {
            let input = sine(from, 997.0, 0.5, from as usize, 2);
            let out = convert(from, to, &input, 2);
            assert_eq!(out.len() % 2, 0);
            for ch in 0..2 {
                let (amplitude, hz) = measure(&out, 2, ch, to);
                assert!(
                    (amplitude - 0.5).abs() < 0.005,
                    "{from}→{to}: amplitude {amplitude}"
                );
                assert!((hz - 997.0).abs() < 0.5, "{from}→{to}: {hz} Hz");
            }
        }
    }

    #[test]
    fn a_second_of_input_gives_a_second_of_output() {
        let mut conv = RateConverter::new(96_000, 48_000, 8).expect("converter");
        assert_eq!((conv.in_frames(), conv.out_frames()), (1920, 960));
        let input = vec![0; 1920 * 8];
        let mut frames = 0;
        for _ in 0..50 {
            let out = conv.process(&input);
            assert!(out.iter().all(|&s| s == 0));
            frames += out.len() / 8;
        }
        // The sinc filter's delay is the only shortfall.
        assert!(
            48_000 - frames <= conv.delay_frames() + 1,
            "{frames} frames"
        );
    }

    #[test]
    fn content_above_the_new_nyquist_is_filtered_out() {
        // 30 kHz exists at 96 kHz, not at 48 kHz: it must not fold back to 18 kHz.
        let input = sine(96_000, 30_000.0, 0.5, 96_000, 1);
        let out = convert(96_000, 48_000, &input, 1);
        let peak = out
            .iter()
            .map(|&s| (f64::from(s) / 2_147_483_648.0).abs())
            .fold(0.0, f64::max);
        assert!(peak < 0.005, "alias at {peak}");
    }

    #[test]
    fn bad_rates_and_sizes_are_errors_not_panics() {
        assert_eq!(
            RateConverter::new(44_101, 48_000, 2).err(),
            Some(RateError::Rate(44_101))
        );
        assert_eq!(
            RateConverter::new(48_000, 0, 2).err(),
            Some(RateError::Rate(0))
        );
        assert_eq!(
            RateConverter::new(48_000, 96_000, 0).err(),
            Some(RateError::NoChannels)
        );
        let mut conv = RateConverter::new(48_000, 96_000, 2).expect("converter");
        assert!(conv.process(&[0; 3]).is_empty());
    }
}
