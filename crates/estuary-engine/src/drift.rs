//! An elastic buffer that re-clocks audio from a sender whose clock is not ours.
//!
//! Decoded audio (an SRT contribution, say) arrives in bursts at the *sender's* rate; the
//! outputs take it at the *local* media clock's rate, one tick at a time. [`DriftBuffer`] holds
//! the audio between the two and keeps its fill at a target by steering a resampler:
//!
//! - every [`pull`](DriftBuffer::pull) measures the fill (frames buffered, plus frames still
//!   inside the resampler's input chunk), low-pass filters it (time constant
//!   [`FILL_SMOOTHING`]) and sets the resampler's relative ratio from the error against the
//!   target: a proportional controller whose loop settles in about [`LOOP_TIME`], so a
//!   100 ppm drift leaves an error of about 3 ms;
//! - lossy codecs, and any input whose rate is not the output rate, go through rubato's
//!   asynchronous sinc resampler (the nominal ratio converts the rate, the controller trims it);
//! - lossless input at the output rate goes through rubato's `Slip` instead: while the smoothed
//!   error stays inside a dead band of ±[`DEAD_BAND`] of the target, its ratio is exactly 1 and
//!   every sample passes unchanged (bit-exact). Only when drift has pushed the fill out of the
//!   band does the controller steer it, and `Slip` then inserts or drops one frame at a time
//!   under a short crossfade, as rarely as the drift requires (100 ppm: about 5 frames/s);
//! - senders deliver in bursts: FFmpeg's MPEG-TS muxer packs about 2930 bytes of audio into
//!   each PES (170 ms of 128 kb/s AAC). The buffer measures the longest gap between two
//!   deliveries (the *burst*, remembered for about [`BURST_MEMORY`]) and aims its *mean* fill
//!   at `target + burst / 2`, so the fill's low point, just before a delivery, stays near the
//!   configured target;
//! - playback starts after the input has been watched for [`OBSERVE`] (and at least two
//!   bursts), when the fill reaches `target + burst`; audio beyond that (a sender flushing its
//!   backlog on connect) is skipped, so playback starts at the live edge (counted as
//!   `start_skipped_frames`). Running dry plays silence and counts an
//!   *underrun*; playback then waits for the start fill again. A smoothed fill above twice the
//!   aim (more than the loop could absorb without an audible pitch change), or an instant
//!   fill above [`OVERRUN_FACTOR`] × the aim (a flood), drops the oldest audio down to the aim
//!   and counts an *overrun*.
//!
//! Nothing here reads a clock: the caller says how many frames are due.

use std::collections::VecDeque;
use std::time::Duration;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Adjustable, Async, FixedAsync, Slip};

/// Time constant of the fill low-pass filter: long against the burst pattern of the input
/// (AAC frames of 21 ms, SRT packets, scheduler jitter), short against clock drift.
pub const FILL_SMOOTHING: Duration = Duration::from_secs(2);
/// Settling time of the control loop (well above [`FILL_SMOOTHING`], so the loop is stable):
/// a fill 10 ms off the aim moves the ratio by 333 ppm (0.6 cent), and a 100 ppm drift settles
/// 3 ms off the aim.
pub const LOOP_TIME: Duration = Duration::from_secs(30);
/// Largest correction the controller applies (±0.2 %, 3.5 cents): twenty times any crystal's
/// drift, small enough to stay inaudible while it catches up after a disturbance. A fill
/// further off than the loop can absorb is re-centred at once instead (see [`DriftBuffer`]).
pub const MAX_CORRECTION: f64 = 0.002;
/// Lossless inputs: the fraction of the target inside which the ratio is exactly 1.
pub const DEAD_BAND: f64 = 0.5;
/// Fill, as a multiple of the target, above which the oldest audio is dropped.
pub const OVERRUN_FACTOR: usize = 4;
/// How long the input is watched before playback starts, to learn its delivery pattern.
pub const OBSERVE: Duration = Duration::from_millis(200);
/// Most audio held before playback starts, seconds (a sender's backlog on connect).
const MAX_BACKLOG_S: usize = 10;
/// How long the largest burst is remembered (it decays over this time).
pub const BURST_MEMORY: Duration = Duration::from_secs(20);
/// Input frames per resampler call (10 ms at 48 kHz).
const CHUNK: usize = 480;

/// What the buffer does to the audio it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Lossy input, or any rate: sinc resampling, always steered.
    Resample,
    /// Lossless input: bit-exact inside the dead band, frame slips outside it.
    Lossless,
}

/// Counters and state of a [`DriftBuffer`], for the status.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DriftStats {
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Frames of silence played for them.
    pub underrun_frames: u64,
    /// Times the buffer overflowed.
    pub overruns: u64,
    /// Frames dropped for them.
    pub overrun_frames: u64,
    /// Output frames per input frame now (the rate conversion times the drift correction).
    pub ratio: f64,
    /// The drift correction now, parts per million (positive: the sender is slower).
    pub correction_ppm: f64,
    /// Smoothed fill, frames.
    pub fill_frames: f64,
    /// The mean fill aimed at (the configured target plus half the largest burst), frames.
    pub target_frames: u64,
    /// The longest gap between two deliveries of audio (remembered for a while), frames.
    pub burst_frames: u64,
    /// Frames handed out with audio in them.
    pub frames_played: u64,
    /// Whether audio is playing (false before the buffer first fills, and after an underrun).
    pub playing: bool,
    /// Lossless inputs: pulls during which the ratio was not exactly 1.
    pub steered_pulls: u64,
    /// Frames skipped when playback started, to start at the live edge.
    pub start_skipped_frames: u64,
}

/// Errors from building a [`DriftBuffer`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DriftError {
    #[error("drift buffer: {0}")]
    Invalid(&'static str),
    #[error("resampler: {0}")]
    Resampler(String),
}

/// The elastic buffer (see the module doc).
pub struct DriftBuffer {
    channels: usize,
    out_rate: u32,
    in_rate: u32,
    conversion: Conversion,
    resampler: Box<dyn Adjustable<f64>>,
    /// Input frames waiting for a whole resampler chunk.
    staging: Vec<f64>,
    staged_frames: usize,
    out_chunk: Vec<f64>,
    fifo: VecDeque<i32>,
    target: usize,
    /// Input frames pushed since the last pull, and the largest such burst (output frames,
    /// decaying).
    inflow: usize,
    burst: f64,
    /// Output frames pulled since the last delivery, and whether any came yet.
    idle: usize,
    seen_input: bool,
    /// Output frames pulled since input started while not playing.
    observed: usize,
    smoothed: Option<f64>,
    correction: f64,
    stats: DriftStats,
}

impl std::fmt::Debug for DriftBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriftBuffer")
            .field("channels", &self.channels)
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("conversion", &self.conversion)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DriftBuffer {
    /// A buffer for `channels` channels from `in_rate` to `out_rate`, holding `target` of audio.
    pub fn new(
        channels: usize,
        in_rate: u32,
        out_rate: u32,
        target: Duration,
        conversion: Conversion,
    ) -> Result<Self, DriftError> {
        if channels == 0 || channels > 64 {
            return Err(DriftError::Invalid("channels must be 1 to 64"));
        }
        if in_rate == 0 || out_rate == 0 {
            return Err(DriftError::Invalid("sample rates must not be zero"));
        }
        let target = (target.as_secs_f64() * f64::from(out_rate)).round() as usize;
        if target < 48 {
            return Err(DriftError::Invalid("target must be at least 1 ms"));
        }
        // Slip only matches almost-equal rates.
        let conversion = if in_rate == out_rate {
            conversion
        } else {
            Conversion::Resample
        };
        let nominal = f64::from(out_rate) / f64::from(in_rate);
        let resampler: Box<dyn Adjustable<f64>> = match conversion {
            Conversion::Lossless => Box::new(
                Slip::<f64>::new(CHUNK, channels, FixedAsync::Input)
                    .map_err(|e| DriftError::Resampler(e.to_string()))?,
            ),
            Conversion::Resample => Box::new(
                Async::<f64>::new_sinc(
                    nominal,
                    1.0 + 2.0 * MAX_CORRECTION,
                    &crate::rate::sinc_parameters(),
                    CHUNK,
                    channels,
                    FixedAsync::Input,
                )
                .map_err(|e| DriftError::Resampler(e.to_string()))?,
            ),
        };
        let out_max = resampler.output_frames_max();
        Ok(Self {
            channels,
            out_rate,
            in_rate,
            conversion,
            staging: vec![0.0; CHUNK * channels],
            staged_frames: 0,
            out_chunk: vec![0.0; out_max * channels],
            fifo: VecDeque::with_capacity((target * (OVERRUN_FACTOR + 1) + out_max) * channels),
            resampler,
            target,
            inflow: 0,
            burst: 0.0,
            idle: 0,
            seen_input: false,
            observed: 0,
            smoothed: None,
            correction: 0.0,
            stats: DriftStats {
                ratio: nominal,
                target_frames: target as u64,
                ..DriftStats::default()
            },
        })
    }

    /// Counters and state.
    pub fn stats(&self) -> DriftStats {
        self.stats
    }

    /// The input rate this buffer converts from.
    pub fn in_rate(&self) -> u32 {
        self.in_rate
    }

    /// The conversion in use.
    pub fn conversion(&self) -> Conversion {
        self.conversion
    }

    /// Appends interleaved MSB-aligned input frames (`channels` per frame).
    pub fn push(&mut self, samples: &[i32]) {
        let channels = self.channels;
        self.inflow += samples.len() / channels;
        let mut rest = samples;
        while !rest.is_empty() {
            let room = (CHUNK - self.staged_frames) * channels;
            let take = room.min(rest.len() / channels * channels);
            if take == 0 {
                break;
            }
            let (now, later) = rest.split_at(take);
            let start = self.staged_frames * channels;
            for (dst, &src) in self.staging[start..start + take].iter_mut().zip(now) {
                *dst = f64::from(src) / FULL_SCALE;
            }
            self.staged_frames += take / channels;
            rest = later;
            if self.staged_frames == CHUNK {
                self.process_chunk();
            }
        }
        self.limit();
    }

    /// Fills `out` (interleaved, whole frames) with the next frames to play; frames the buffer
    /// cannot supply are silence. Returns the frames that carried audio.
    pub fn pull(&mut self, out: &mut [i32]) -> usize {
        let frames = out.len() / self.channels;
        self.track_bursts(frames);
        self.steer(frames);
        let buffered = self.fifo.len() / self.channels;
        let start_fill = (self.target as f64 + self.burst) as usize;
        if !self.stats.playing {
            if self.seen_input {
                self.observed += frames;
            }
            let observe = (OBSERVE.as_secs_f64() * f64::from(self.out_rate)) as usize;
            let watched = self.observed >= observe.max(2 * self.burst as usize);
            if watched && buffered >= start_fill {
                self.observed = 0;
                let skip = buffered - start_fill;
                self.fifo.drain(..skip * self.channels);
                self.stats.start_skipped_frames += skip as u64;
                self.stats.playing = true;
                self.smoothed = None;
            } else {
                out.fill(0);
                return 0;
            }
        } else if self.smoothed.is_some_and(|s| s > 2.0 * self.aim()) {
            let drop = buffered.saturating_sub(self.aim() as usize);
            self.fifo.drain(..drop * self.channels);
            self.stats.overruns += 1;
            self.stats.overrun_frames += drop as u64;
            self.smoothed = None;
        }
        let buffered = self.fifo.len() / self.channels;
        let give = frames.min(buffered);
        for (dst, src) in out.iter_mut().zip(self.fifo.drain(..give * self.channels)) {
            *dst = src;
        }
        out[give * self.channels..].fill(0);
        self.stats.frames_played += give as u64;
        if give < frames {
            self.stats.underruns += 1;
            self.stats.underrun_frames += (frames - give) as u64;
            self.stats.playing = false;
        }
        give
    }

    /// The mean fill aimed at, frames.
    fn aim(&self) -> f64 {
        self.target as f64 + self.burst / 2.0
    }

    /// Remembers the longest gap between deliveries, forgetting it over [`BURST_MEMORY`].
    fn track_bursts(&mut self, frames: usize) {
        let dt = frames as f64 / f64::from(self.out_rate);
        self.burst *= 1.0 - dt / BURST_MEMORY.as_secs_f64();
        if self.inflow > 0 {
            if self.seen_input {
                self.burst = self.burst.max((self.idle + frames) as f64);
            }
            self.seen_input = true;
            self.idle = 0;
        } else if self.seen_input {
            self.idle += frames;
        }
        self.inflow = 0;
        self.stats.burst_frames = self.burst as u64;
        self.stats.target_frames = self.aim() as u64;
    }

    /// Buffered frames, counting input still waiting in the resampler's chunk.
    fn fill(&self) -> f64 {
        let staged = self.staged_frames as f64 * self.resampler.resample_ratio();
        (self.fifo.len() / self.channels) as f64 + staged
    }

    /// Updates the controller after `frames` more output frames are due.
    fn steer(&mut self, frames: usize) {
        let fill = self.fill();
        let dt = frames as f64 / f64::from(self.out_rate);
        let alpha = (dt / FILL_SMOOTHING.as_secs_f64()).min(1.0);
        let smoothed = match self.smoothed {
            Some(s) if self.stats.playing => s + alpha * (fill - s),
            // Before playback (and after an underrun) the fill ramps up on purpose: start the
            // filter at the aim so the ramp is not taken for drift.
            _ => self.aim(),
        };
        self.smoothed = Some(smoothed);
        self.stats.fill_frames = smoothed;
        let target = self.aim();
        let mut error = smoothed - target;
        if self.conversion == Conversion::Lossless {
            let band = DEAD_BAND * target;
            error = if error.abs() <= band {
                0.0
            } else {
                error - band * error.signum()
            };
        }
        // Proportional control: a fill `error` frames above target is spent in LOOP_TIME.
        let gain = 1.0 / (LOOP_TIME.as_secs_f64() * f64::from(self.out_rate));
        let correction = (-error * gain).clamp(-MAX_CORRECTION, MAX_CORRECTION);
        if correction != self.correction {
            self.correction = correction;
            // Within the constructor's bounds by the clamp, so this cannot fail.
            let _ = self
                .resampler
                .set_resample_ratio_relative(1.0 + correction, true);
        }
        if self.conversion == Conversion::Lossless && correction != 0.0 {
            self.stats.steered_pulls += 1;
        }
        self.stats.correction_ppm = correction * 1e6;
        self.stats.ratio = self.resampler.resample_ratio();
    }

    fn process_chunk(&mut self) {
        let channels = self.channels;
        let frames_out = self.resampler.output_frames_next();
        let Ok(input) = InterleavedSlice::new(&self.staging[..], channels, CHUNK) else {
            self.staged_frames = 0;
            return;
        };
        let Ok(mut output) =
            InterleavedSlice::new_mut(&mut self.out_chunk[..], channels, frames_out)
        else {
            self.staged_frames = 0;
            return;
        };
        let produced = match self
            .resampler
            .process_into_buffer(&input, &mut output, None)
        {
            Ok((_, produced)) => produced,
            Err(_) => 0,
        };
        self.staged_frames = 0;
        self.fifo.extend(
            self.out_chunk[..produced * channels]
                .iter()
                .map(|&s| to_i32(s)),
        );
    }

    /// Drops the oldest audio down to the target when the buffer overflows.
    fn limit(&mut self) {
        let buffered = self.fifo.len() / self.channels;
        let aim = self.aim() as usize;
        // Before playback the excess is skipped when playback starts (at the live edge); only
        // a flood beyond any sane backlog is cut here.
        let limit = if self.stats.playing {
            aim * OVERRUN_FACTOR
        } else {
            (self.out_rate as usize * MAX_BACKLOG_S).max(aim * OVERRUN_FACTOR)
        };
        if buffered > limit {
            let drop = buffered - aim;
            self.fifo.drain(..drop * self.channels);
            self.stats.overruns += 1;
            self.stats.overrun_frames += drop as u64;
        }
    }
}

/// `i32` full scale; MSB-aligned 24-bit samples convert to `f64` and back exactly.
const FULL_SCALE: f64 = 2_147_483_648.0;

fn to_i32(s: f64) -> i32 {
    (s * FULL_SCALE)
        .round()
        .clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    /// A stereo counting signal, 24-bit MSB-aligned, distinct on both channels.
    fn signal(start: usize, frames: usize) -> Vec<i32> {
        (start..start + frames)
            .flat_map(|i| {
                let a = (((i as i64 + 1) * 7919) % (1 << 23)) as i32;
                [a << 8, (-a) << 8]
            })
            .collect()
    }

    /// Runs `seconds` of a sender `ppm` fast (pushing 1 ms blocks, plus a burst pattern) into
    /// a buffer pulled at 1 ms ticks, and returns the buffer and everything played.
    fn run(
        conversion: Conversion,
        in_rate: u32,
        ppm: f64,
        seconds: usize,
    ) -> (DriftBuffer, Vec<i32>) {
        let mut buffer =
            DriftBuffer::new(2, in_rate, RATE, Duration::from_millis(50), conversion).expect("new");
        let mut sent = 0usize;
        let mut played = Vec::new();
        let mut out = vec![0; 96];
        let sender_rate = f64::from(in_rate) * (1.0 + ppm * 1e-6);
        for tick in 1..=seconds * 1000 {
            // The sender delivers in 21 ms bursts (an AAC frame's worth), like a real link.
            if tick % 21 == 0 {
                let due = (tick as f64 / 1000.0 * sender_rate) as usize;
                buffer.push(&signal(sent, due - sent));
                sent = due;
            }
            buffer.pull(&mut out);
            played.extend_from_slice(&out);
        }
        (buffer, played)
    }

    #[test]
    fn lossless_at_matched_rate_is_bit_exact() {
        let (buffer, played) = run(Conversion::Lossless, RATE, 0.0, 20);
        let stats = buffer.stats();
        assert_eq!(stats.underruns, 0);
        assert_eq!(stats.overruns, 0);
        assert_eq!(stats.steered_pulls, 0);
        assert_eq!(stats.ratio, 1.0);
        // Find the first played frame in the source and compare everything after it.
        let first = played
            .chunks_exact(2)
            .position(|f| f != [0, 0])
            .expect("audio played");
        let audio = &played[first * 2..];
        // Playback starts at the live edge: find where in the signal it starts.
        let offset = (0..RATE as usize)
            .find(|&i| signal(i, 1) == audio[..2])
            .expect("first played frame is from the signal");
        let expected = signal(offset, audio.len() / 2);
        let mismatch = audio.iter().zip(&expected).position(|(a, b)| a != b);
        assert_eq!(mismatch, None, "played {} samples", audio.len());
        assert!(audio.len() > 19 * 2 * RATE as usize);
    }

    #[test]
    fn lossless_absorbs_drift_with_slips() {
        for ppm in [300.0, -300.0] {
            let (buffer, _) = run(Conversion::Lossless, RATE, ppm, 240);
            let stats = buffer.stats();
            assert_eq!(
                (stats.underruns, stats.overruns),
                (0, 0),
                "{ppm} ppm: {stats:?}"
            );
            assert!(stats.steered_pulls > 0, "{ppm} ppm never steered");
            let error = stats.fill_frames - stats.target_frames as f64;
            assert!(
                // The dead band (half the aim) plus the loop's steady error (432 frames).
                error.abs() < 0.75 * stats.target_frames as f64,
                "{ppm} ppm: {stats:?}"
            );
        }
    }

    #[test]
    fn resampler_tracks_drift_and_rate() {
        for (rate, ppm) in [(48_000, 200.0), (48_000, -200.0), (44_100, 100.0)] {
            let (buffer, _) = run(Conversion::Resample, rate, ppm, 180);
            let stats = buffer.stats();
            assert_eq!(
                (stats.underruns, stats.overruns),
                (0, 0),
                "{rate} {ppm}: {stats:?}"
            );
            let error = stats.fill_frames - stats.target_frames as f64;
            // The proportional loop's steady error: drift x LOOP_TIME x rate.
            let steady = ppm * 1e-6 * LOOP_TIME.as_secs_f64() * f64::from(RATE);
            assert!(
                (error - steady).abs() < 60.0,
                "{rate} Hz {ppm} ppm: error {error} frames, expected {steady}"
            );
            // The correction cancels the drift: ratio × sender rate = our rate.
            let expected = f64::from(RATE) / (f64::from(rate) * (1.0 + ppm * 1e-6));
            assert!(
                (stats.ratio / expected - 1.0).abs() < 20e-6,
                "{rate} Hz {ppm} ppm: ratio {} expected {expected}",
                stats.ratio
            );
        }
    }

    #[test]
    fn underrun_and_overrun_are_counted() {
        let mut buffer = DriftBuffer::new(
            1,
            RATE,
            RATE,
            Duration::from_millis(10),
            Conversion::Lossless,
        )
        .expect("new");
        let mut out = vec![0; 48];
        // 1 ms deliveries: playback starts after the observation time.
        let mut played = 0;
        for _ in 0..300 {
            buffer.push(&[1 << 8; 48]);
            played += buffer.pull(&mut out);
        }
        let stats = buffer.stats();
        assert!(stats.playing, "{stats:?}");
        assert!(played > 48 * 50, "{stats:?}");
        // The sender stops: the buffer runs dry.
        for _ in 0..50 {
            buffer.pull(&mut out);
        }
        let stats = buffer.stats();
        assert_eq!(stats.underruns, 1, "{stats:?}");
        assert!(!stats.playing);
        // A backlog, then regular deliveries: playback restarts at the live edge.
        buffer.push(&vec![1 << 8; 48_000]);
        for _ in 0..300 {
            buffer.push(&[1 << 8; 48]);
            buffer.pull(&mut out);
        }
        let stats = buffer.stats();
        assert!(stats.playing, "{stats:?}");
        assert_eq!(stats.overruns, 0, "{stats:?}");
        assert!(stats.start_skipped_frames > 40_000, "{stats:?}");
        // A flood while playing is cut to the aim.
        buffer.push(&vec![1 << 8; 200_000]);
        let stats = buffer.stats();
        assert_eq!(stats.overruns, 1);
        assert!(stats.overrun_frames > 100_000, "{stats:?}");
    }

    #[test]
    fn rejects_bad_settings() {
        assert!(
            DriftBuffer::new(
                0,
                RATE,
                RATE,
                Duration::from_millis(50),
                Conversion::Resample
            )
            .is_err()
        );
        assert!(
            DriftBuffer::new(2, 0, RATE, Duration::from_millis(50), Conversion::Resample).is_err()
        );
        assert!(DriftBuffer::new(2, RATE, RATE, Duration::ZERO, Conversion::Resample).is_err());
    }
}
