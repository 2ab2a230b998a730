//! Audio monitoring of one input: level meters, loudness and signal alarms.
//!
//! A [`Monitor`] is built once per input from `(channels, sample_rate, MonitorConfig)` and fed
//! every block of interleaved `i32` frames (MSB-aligned, full scale = `i32::MAX`) with the
//! injected time of the block's first frame. It allocates only in [`Monitor::new`]:
//! [`Monitor::process`] and [`Monitor::snapshot_into`] (once the snapshot has been sized) do
//! not allocate, lock or block (`tests/meters_alloc.rs` counts allocations to prove it).
//!
//! # Measurement
//!
//! Audio is analysed in windows of [`WINDOW`] (10 ms, `sample_rate / 100` frames), counted
//! from the first frame ever processed; block boundaries do not matter. At the end of each
//! window the per-window values are folded into the meters and every detector is stepped,
//! so alarm timing is exact to the window and independent of how the daemon cuts blocks.
//!
//! - Sample peak: largest `|x|`; true peak: ITU-R BS.1770-4 Annex 2 (4× oversampling with the
//!   Annex's 48-tap polyphase filter, [`true_peak`]); both in dBFS (dBTP) with a
//!   peak-hold that holds for `peak_hold`, then falls at `peak_decay_db_per_s`, in audio time.
//! - RMS over the last `rms_window`, relative to full scale (a full-scale sine is −3.01 dBFS).
//! - EBU R128 momentary, short-term, integrated loudness and LRA per loudness group
//!   ([`loudness`]).
//!
//! # Detectors
//!
//! Each is optional, debounced by [`detect::Debounce`] (raise after `raise_after` of the
//! condition, clear after `clear_after` without it) and, where a level applies, has a
//! hysteresis. See `docs/monitoring.md` for the semantics and defaults.

pub mod detect;
pub mod health;
pub mod loudness;
pub mod true_peak;

use core::time::Duration;

use crate::time::MonoTime;
use detect::{Change, Debounce, Timing, duration_to_ticks};
use loudness::{KWeighting, LoudnessLevels, LoudnessMeter, WINDOWS_PER_BLOCK};
use true_peak::{LANES, Lane, Oversampling, vectors, vectors_mut, vectors_per_lane};

/// Length of an analysis window.
pub const WINDOW: Duration = Duration::from_millis(10);
/// Most channels an input may have (as the jitter buffer).
pub const MAX_CHANNELS: u16 = 64;
/// Full scale of an MSB-aligned `i32` sample.
const FULL_SCALE: f64 = i32::MAX as f64;
/// Room for alarm changes per channel in the event buffer of one `process` call; further
/// changes in the same call are counted in `events_dropped` (their state stays readable).
const EVENTS_PER_CHANNEL: usize = 32;

/// Which channels are measured together for loudness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoudnessGrouping {
    /// No loudness measurement.
    None,
    /// Each channel alone (weight 1).
    Mono,
    /// Consecutive pairs (0,1), (2,3), …; an odd last channel alone.
    Pairs,
    /// All channels as one programme with the BS.1770 weights of L R C LFE Ls Rs (channels
    /// beyond the sixth are not counted).
    All,
}

/// Silence: window RMS below `threshold_dbfs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SilenceConfig {
    /// Level (10 ms RMS, dBFS) under which a window is silent.
    pub threshold_dbfs: f64,
    /// While raised, a window counts as sound only above `threshold + hysteresis`.
    pub hysteresis_db: f64,
    /// Debounce.
    pub timing: Timing,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        SilenceConfig {
            threshold_dbfs: -60.0,
            hysteresis_db: 3.0,
            timing: Timing::new(Duration::from_secs(5), Duration::from_secs(1)),
        }
    }
}

/// Clipping: a run of `consecutive` samples at or above `level_dbfs`, or a true peak above
/// `true_peak_dbtp`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClippingConfig {
    /// Sample level counted as "at full scale".
    pub level_dbfs: f64,
    /// Consecutive samples at that level that make a clip (runs may span windows and blocks).
    pub consecutive: u32,
    /// If set, a window whose true peak exceeds this also counts as clipped.
    pub true_peak_dbtp: Option<f64>,
    /// Debounce.
    pub timing: Timing,
}

impl Default for ClippingConfig {
    fn default() -> Self {
        ClippingConfig {
            level_dbfs: -0.01,
            consecutive: 3,
            true_peak_dbtp: Some(0.5),
            timing: Timing::new(Duration::ZERO, Duration::from_secs(2)),
        }
    }
}

/// Stuck signal: every sample of a window has the same non-zero value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StuckConfig {
    /// Debounce.
    pub timing: Timing,
}

impl Default for StuckConfig {
    fn default() -> Self {
        StuckConfig {
            timing: Timing::new(Duration::from_secs(1), Duration::from_secs(1)),
        }
    }
}

/// DC offset: `|mean|` over the last `window` above `threshold_dbfs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DcOffsetConfig {
    /// Mean level (dBFS of `|mean|`) above which the window has a DC offset.
    pub threshold_dbfs: f64,
    /// While raised, the offset counts as gone only below `threshold − hysteresis`.
    pub hysteresis_db: f64,
    /// Averaging window (rounded up to whole 10 ms windows); evaluated once it is full.
    pub window: Duration,
    /// Debounce.
    pub timing: Timing,
}

impl Default for DcOffsetConfig {
    fn default() -> Self {
        DcOffsetConfig {
            threshold_dbfs: -30.0,
            hysteresis_db: 3.0,
            window: Duration::from_secs(1),
            timing: Timing::new(Duration::from_secs(2), Duration::from_secs(1)),
        }
    }
}

/// Discontinuity (click): a sample whose second difference `x[n] − 2x[n−1] + x[n−2]` (the
/// error of a linear prediction from the two previous samples) is more than `ratio` times the
/// largest one of the local signal (the previous 10 ms window and the current one so far, clicks
/// excluded) and above `floor_dbfs`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiscontinuityConfig {
    /// How far above the local prediction error a jump must be.
    pub ratio: f64,
    /// Smallest jump counted (dBFS), so that noise in near-silence is not a click.
    pub floor_dbfs: f64,
    /// Debounce (a window with at least one click is "present").
    pub timing: Timing,
}

impl Default for DiscontinuityConfig {
    fn default() -> Self {
        DiscontinuityConfig {
            ratio: 4.0,
            floor_dbfs: -60.0,
            timing: Timing::new(Duration::ZERO, Duration::from_secs(1)),
        }
    }
}

/// Phase-inverted stereo: correlation of a pair (channels 2k, 2k+1) over `window` below
/// `threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaseConfig {
    /// Correlation (−1..1) below which the pair is inverted.
    pub threshold: f64,
    /// While raised, the pair counts as fine only above `threshold + hysteresis`.
    pub hysteresis: f64,
    /// Both channels' RMS over the window must exceed this for the pair to be judged.
    pub min_level_dbfs: f64,
    /// Correlation window (rounded up to whole 10 ms windows); evaluated once it is full.
    pub window: Duration,
    /// Debounce.
    pub timing: Timing,
}

impl Default for PhaseConfig {
    fn default() -> Self {
        PhaseConfig {
            threshold: -0.8,
            hysteresis: 0.1,
            min_level_dbfs: -50.0,
            window: Duration::from_secs(1),
            timing: Timing::new(Duration::from_secs(2), Duration::from_secs(1)),
        }
    }
}

/// Everything a [`Monitor`] measures and how.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorConfig {
    /// How long the displayed peak holds its maximum (default 1.5 s).
    pub peak_hold: Duration,
    /// How fast it then falls (default 20 dB/s).
    pub peak_decay_db_per_s: f64,
    /// RMS window, rounded up to whole 10 ms windows (default 300 ms).
    pub rms_window: Duration,
    /// Loudness groups (default [`LoudnessGrouping::Pairs`]).
    pub loudness: LoudnessGrouping,
    /// Silence detector (default on).
    pub silence: Option<SilenceConfig>,
    /// Clipping detector (default on).
    pub clipping: Option<ClippingConfig>,
    /// Stuck-signal detector (default on).
    pub stuck: Option<StuckConfig>,
    /// DC-offset detector (default on).
    pub dc_offset: Option<DcOffsetConfig>,
    /// Discontinuity detector (default on).
    pub discontinuity: Option<DiscontinuityConfig>,
    /// Phase-inversion detector on pairs (default on).
    pub phase: Option<PhaseConfig>,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            peak_hold: Duration::from_millis(1_500),
            peak_decay_db_per_s: 20.0,
            rms_window: Duration::from_millis(300),
            loudness: LoudnessGrouping::Pairs,
            silence: Some(SilenceConfig::default()),
            clipping: Some(ClippingConfig::default()),
            stuck: Some(StuckConfig::default()),
            dc_offset: Some(DcOffsetConfig::default()),
            discontinuity: Some(DiscontinuityConfig::default()),
            phase: Some(PhaseConfig::default()),
        }
    }
}

impl MonitorConfig {
    /// Meters and loudness only, every detector off: for displays that raise no alarms, and
    /// as the base for enabling detectors one by one.
    pub fn meters_only() -> Self {
        MonitorConfig {
            silence: None,
            clipping: None,
            stuck: None,
            dc_offset: None,
            discontinuity: None,
            phase: None,
            ..MonitorConfig::default()
        }
    }
}

/// Why a [`Monitor`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// `channels` is 0 or above [`MAX_CHANNELS`].
    #[error("channel count {channels} is outside 1..={MAX_CHANNELS}")]
    Channels {
        /// The value given.
        channels: u16,
    },
    /// `sample_rate` is outside [`crate::jitter::SAMPLE_RATES`].
    #[error("sample rate {sample_rate} Hz is outside 8000..=384000")]
    SampleRate {
        /// The value given.
        sample_rate: u32,
    },
    /// The loudness meter refused the configuration.
    #[error("loudness meter: {reason}")]
    Loudness {
        /// Why (kept for compatibility: the built-in meter accepts every valid input).
        reason: String,
    },
}

/// What an alarm is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmKind {
    /// Detail: window RMS in dBFS.
    Silence,
    /// Detail: longest run of full-scale samples in the window, or the true peak in dBTP
    /// when only that triggered.
    Clipping,
    /// Detail: the stuck value in dBFS.
    Stuck,
    /// Detail: `|mean|` over the DC window in dBFS.
    DcOffset,
    /// Detail: clicks counted in the window.
    Discontinuity,
    /// Detail: correlation over the phase window. `channel` is the first of the pair.
    PhaseInverted,
}

/// An alarm state change, reported by [`Monitor::process`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorEvent {
    /// What.
    pub kind: AlarmKind,
    /// Channel (first channel of the pair for [`AlarmKind::PhaseInverted`]).
    pub channel: u16,
    /// Raised or cleared.
    pub change: Change,
    /// A value explaining it (see [`AlarmKind`]), from the window that triggered the change.
    pub detail: f64,
    /// Frame index (since the first frame processed) at which the change happened: the end of
    /// the window that decided it.
    pub frame: u64,
    /// The same instant in injected time (block time + frames / rate).
    pub at: MonoTime,
}

/// Raised alarms of one channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelAlarms {
    /// Silence alarm raised.
    pub silence: bool,
    /// Clipping alarm raised.
    pub clipping: bool,
    /// Stuck alarm raised.
    pub stuck: bool,
    /// DC-offset alarm raised.
    pub dc_offset: bool,
    /// Discontinuity alarm raised.
    pub discontinuity: bool,
}

/// Levels of one channel. dB values are `f64::NEG_INFINITY` for digital silence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChannelLevels {
    /// Sample peak with peak-hold, dBFS.
    pub peak: f64,
    /// True peak with peak-hold, dBTP.
    pub true_peak: f64,
    /// RMS over the RMS window, dBFS.
    pub rms: f64,
    /// Largest sample peak since the start, dBFS.
    pub peak_max: f64,
    /// Largest true peak since the start, dBTP.
    pub true_peak_max: f64,
    /// Discontinuities counted since the start.
    pub clicks: u64,
    /// Alarm states.
    pub alarms: ChannelAlarms,
}

/// Loudness of one group.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GroupLoudness {
    /// First channel of the group.
    pub first_channel: u16,
    /// Channels in the group.
    pub channels: u16,
    /// The values.
    pub levels: LoudnessLevels,
}

/// Correlation of one pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairLevels {
    /// First channel of the pair (the other is the next one).
    pub first_channel: u16,
    /// Correlation over the phase window (−1..1); `None` until the window is full or while a
    /// channel is below the minimum level.
    pub correlation: Option<f64>,
    /// Phase-inversion alarm raised.
    pub phase_inverted: bool,
}

/// Everything a [`Monitor`] shows, as plain data for the daemon to publish.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeterSnapshot {
    /// Frames processed since the start.
    pub frames: u64,
    /// Per channel.
    pub channels: Vec<ChannelLevels>,
    /// Per loudness group.
    pub loudness: Vec<GroupLoudness>,
    /// Per pair (only when the phase detector is on).
    pub pairs: Vec<PairLevels>,
    /// Alarm changes that did not fit in the event buffer of a `process` call.
    pub events_dropped: u64,
}

/// A displayed peak with hold and decay, in audio time (frames).
#[derive(Debug, Clone, Copy, PartialEq)]
struct PeakHold {
    /// The held amplitude (full scale 1.0): kept linear, so that a window that does not beat
    /// it while it holds costs no logarithm.
    held: f64,
    held_at: u64,
}

impl PeakHold {
    const fn new() -> Self {
        PeakHold {
            held: 0.0,
            held_at: 0,
        }
    }

    /// Frames the display has been falling at `now` (0 while it holds).
    fn falling(&self, now: u64, hold: u64) -> u64 {
        now.saturating_sub(self.held_at).saturating_sub(hold)
    }

    /// The displayed value at frame `now`, in dB.
    fn display(&self, now: u64, hold: u64, decay_per_frame: f64) -> f64 {
        let held_db = amplitude_db(self.held);
        match self.falling(now, hold) {
            0 => held_db,
            falling => held_db - decay_per_frame * falling as f64,
        }
    }

    /// A new window peak `level` (amplitude) ending at frame `now`.
    fn update(&mut self, now: u64, level: f64, hold: u64, decay_per_frame: f64) {
        // The display never exceeds what is held, and equals it while it holds: only a
        // falling display needs the comparison in dB.
        let beats = level >= self.held
            || (self.falling(now, hold) > 0
                && amplitude_db(level) >= self.display(now, hold, decay_per_frame));
        if beats {
            self.held = level;
            self.held_at = now;
        }
    }
}

/// A ring of per-window sums, summed over the last `len` windows.
#[derive(Debug, Clone)]
struct WindowRing<const N: usize> {
    slots: Vec<[f64; N]>,
    next: usize,
    filled: usize,
    /// The sum of the slots held, kept as windows come and go and summed afresh each time
    /// the ring wraps, so rounding never accumulates beyond one turn.
    total: [f64; N],
}

impl<const N: usize> WindowRing<N> {
    fn new(windows: usize) -> Self {
        WindowRing {
            slots: vec![[0.0; N]; windows.max(1)],
            next: 0,
            filled: 0,
            total: [0.0; N],
        }
    }

    fn push(&mut self, value: [f64; N]) {
        let full = self.full();
        if let Some(slot) = self.slots.get_mut(self.next) {
            let leaving = if full { *slot } else { [0.0; N] };
            for ((t, v), old) in self.total.iter_mut().zip(value).zip(leaving) {
                *t += v - old;
            }
            *slot = value;
        }
        self.next = (self.next + 1) % self.slots.len();
        self.filled = (self.filled + 1).min(self.slots.len());
        if self.next == 0 {
            self.total = self.summed();
        }
    }

    fn full(&self) -> bool {
        self.filled == self.slots.len()
    }

    fn filled(&self) -> usize {
        self.filled
    }

    /// Element-wise sum over the windows held.
    fn sum(&self) -> [f64; N] {
        self.total
    }

    /// [`Self::sum`] added up from the slots.
    fn summed(&self) -> [f64; N] {
        let mut total = [0.0; N];
        for slot in self.slots.iter().take(self.filled) {
            for (t, v) in total.iter_mut().zip(slot) {
                *t += v;
            }
        }
        total
    }
}

/// Each window's Σx² of every channel, summed over the last `windows` windows (the RMS
/// meter). Kept per lane group, so a window's sums of eight channels are one 32-byte slot:
/// a ring per channel touched a cache line per channel per window, and with a thousand
/// channels metered those lines are cold every time.
#[derive(Debug, Clone)]
struct LaneRing {
    /// `windows` × `groups` slots, window-major.
    slots: Vec<Lane>,
    groups: usize,
    next: usize,
    filled: usize,
    /// Per channel (lane), the sum of the windows held: kept as windows come and go, and
    /// summed afresh at each turn of the ring, so rounding never accumulates beyond one.
    total: Vec<f64>,
}

impl LaneRing {
    fn new(windows: usize, groups: usize) -> Self {
        LaneRing {
            slots: vec![[0.0; LANES]; windows.max(1) * groups],
            groups,
            next: 0,
            filled: 0,
            total: vec![0.0; groups * LANES],
        }
    }

    fn windows(&self) -> usize {
        self.slots.len() / self.groups.max(1)
    }

    /// Adds a window's sums (one [`Lane`] per group), replacing the oldest.
    fn push(&mut self, window: &[Lane]) {
        let windows = self.windows();
        let full = self.filled == windows;
        let at = self.next * self.groups;
        if let Some(slots) = self.slots.get_mut(at..at + self.groups) {
            let pairs = slots
                .as_flattened_mut()
                .iter_mut()
                .zip(window.as_flattened());
            for ((slot, &new), total) in pairs.zip(self.total.iter_mut()) {
                let old = if full { f64::from(*slot) } else { 0.0 };
                *total += f64::from(new) - old;
                *slot = new;
            }
        }
        self.next = (self.next + 1) % windows;
        self.filled = (self.filled + 1).min(windows);
        if self.next == 0 {
            self.total.fill(0.0);
            for window in self.slots.chunks_exact(self.groups) {
                for (t, &v) in self.total.iter_mut().zip(window.as_flattened()) {
                    *t += f64::from(v);
                }
            }
        }
    }

    /// Mean square of channel `ch` over the windows held, in dB (−∞ before the first).
    fn mean_square_db(&self, ch: usize, window_frames: u64) -> f64 {
        let frames = self.filled as f64 * window_frames as f64;
        match self.total.get(ch) {
            Some(total) if frames > 0.0 => power_db(total / frames),
            _ => f64::NEG_INFINITY,
        }
    }
}

/// Window-rate state of one channel that every window close reads: the holds and maxima of
/// the peak meters and the two detectors of the default alarm rules (the per-sample
/// accumulators are in [`Lanes`]). Kept apart from [`ChannelDetectors`], in two cache lines:
/// with a thousand channels metered these lines are cold at each close, and the detectors
/// that are off by default would more than double them.
#[derive(Debug, Clone)]
#[repr(align(64))]
struct ChannelState {
    peak_hold: PeakHold,
    true_peak_hold: PeakHold,
    /// Largest window peaks since the start (amplitude, full scale 1.0).
    peak_max: f64,
    true_peak_max: f64,
    silence: Debounce,
    clipping: Debounce,
}

/// Window-rate state of one channel's detectors that are off by default (touched only when
/// configured).
#[derive(Debug, Clone)]
struct ChannelDetectors {
    dc: WindowRing<1>,
    stuck: Debounce,
    dc_offset: Debounce,
    discontinuity: Debounce,
}

/// Per-sample accumulators of every channel. The level quantities (peak, Σx², clip runs,
/// true peak, K-weighting) are kept per lane group of [`LANES`] channels, the input padded
/// with silent lanes, so the per-frame loops run on whole vectors; the detector inputs that
/// need exact integers or `f64` are kept per channel. Window accumulators are reset at each
/// window end.
#[derive(Debug, Clone)]
struct Lanes {
    channels: usize,
    /// Lane groups: `channels` rounded up to whole [`LANES`].
    groups: usize,
    // Window accumulators.
    /// Largest |x| (full scale 1.0), per group.
    peak: Vec<Lane>,
    /// Σx², per group (`f32` in sample order: about 1e-4 dB over a window, and how blocks are
    /// cut changes nothing).
    sum_sq: Vec<Lane>,
    sum: Vec<f64>,
    min: Vec<i32>,
    max: Vec<i32>,
    /// Twice the largest oversampled |value| (see [`true_peak::measure`]), per group.
    true_peak2: Vec<Lane>,
    longest_clip_run: Vec<[u32; LANES]>,
    clicks_in_window: Vec<u32>,
    /// Largest non-click |second difference| in the current window.
    d2_current: Vec<f64>,
    // Running state.
    clip_run: Vec<[u32; LANES]>,
    /// Last two samples (normalised).
    previous: Vec<f64>,
    previous2: Vec<f64>,
    /// Largest non-click |second difference| of the previous window (valid once
    /// `Monitor::d2_ready`).
    d2_previous: Vec<f64>,
    /// Samples since the last anomalous one (one click makes two consecutive anomalies).
    since_anomaly: Vec<u32>,
    clicks: Vec<u64>,
    /// Σxy of the current window, per pair (2k, 2k+1).
    sum_xy: Vec<f64>,
    k_weighting: KWeighting,
    /// The frames in `f32` (full scale 1.0), one run of [`SPAN`] frames per lane group (so
    /// each group's frames are contiguous): [`true_peak::HISTORY`] frames of history (for the
    /// true-peak filter), then up to [`TP_FRAMES`].
    tp_buf: Vec<Lane>,
    /// Sample peak of the current chunk, per group (whether clip runs need a look).
    chunk_peak: Vec<Lane>,
}

/// Frames converted to `f32` at a time (bounds the scratch buffer).
const TP_FRAMES: usize = 64;
/// Frames of one lane group in the scratch buffer.
const SPAN: usize = true_peak::HISTORY + TP_FRAMES;

impl Lanes {
    fn new(channels: usize, sample_rate: u32, pairs: usize) -> Self {
        let groups = channels.div_ceil(LANES);
        Lanes {
            channels,
            groups,
            peak: vec![[0.0; LANES]; groups],
            sum_sq: vec![[0.0; LANES]; groups],
            sum: vec![0.0; channels],
            min: vec![i32::MAX; channels],
            max: vec![i32::MIN; channels],
            true_peak2: vec![[0.0; LANES]; groups],
            longest_clip_run: vec![[0; LANES]; groups],
            clicks_in_window: vec![0; channels],
            d2_current: vec![0.0; channels],
            clip_run: vec![[0; LANES]; groups],
            previous: vec![0.0; channels],
            previous2: vec![0.0; channels],
            d2_previous: vec![0.0; channels],
            since_anomaly: vec![u32::MAX; channels],
            clicks: vec![0; channels],
            sum_xy: vec![0.0; pairs],
            k_weighting: KWeighting::new(groups, sample_rate),
            tp_buf: vec![[0.0; LANES]; SPAN * groups],
            chunk_peak: vec![[0.0; LANES]; groups],
        }
    }

    /// Clears the window accumulators that `k` uses (the others stay untouched: with a
    /// thousand channels metered, every line written here is a cache miss).
    fn reset_window(&mut self, k: &Kernel) {
        self.peak.fill([0.0; LANES]);
        self.sum_sq.fill([0.0; LANES]);
        self.true_peak2.fill([0.0; LANES]);
        if k.dc {
            self.sum.fill(0.0);
        }
        if k.stuck {
            self.min.fill(i32::MAX);
            self.max.fill(i32::MIN);
        }
        if k.clip {
            self.longest_clip_run.fill([0; LANES]);
        }
        if k.click.is_some() {
            self.clicks_in_window.fill(0);
            self.d2_current.fill(0.0);
        }
        if k.phase {
            self.sum_xy.fill(0.0);
        }
    }
}

/// What the per-sample pass computes (from the config).
#[derive(Debug, Clone, Copy)]
struct Kernel {
    oversampling: Oversampling,
    loudness: bool,
    /// Clipping input: runs of samples at or above `clip_level` (full scale 1.0).
    clip: bool,
    /// DC input: Σx.
    dc: bool,
    /// Stuck input: min and max.
    stuck: bool,
    clip_level: f32,
    /// Discontinuity `(ratio, floor)`.
    click: Option<(f64, f64)>,
    phase: bool,
}

/// Correlation state of one pair.
#[derive(Debug, Clone)]
struct PairState {
    first: usize,
    /// Per window: Σxy, Σx², Σy².
    ring: WindowRing<3>,
    correlation: Option<f64>,
    alarm: Debounce,
}

/// Window-rate parameters derived from the config.
#[derive(Debug, Clone, Copy)]
struct Derived {
    hold_frames: u64,
    decay_per_frame: f64,
    clip_level: f32,
    click_floor: f64,
    /// Silence thresholds as window mean squares (full scale 1.0): to raise, and while
    /// raised (threshold + hysteresis).
    silence_power: f64,
    silence_power_raised: f64,
    /// The clipping detector's true-peak limit as an amplitude (∞ when unset).
    clip_true_peak: f64,
    /// DC thresholds as `|mean|` (full scale 1.0): to raise, and while raised (threshold −
    /// hysteresis).
    dc_level: f64,
    dc_level_raised: f64,
}

/// Meters, loudness and alarms of one input: see the module docs.
#[derive(Debug)]
pub struct Monitor {
    channels: usize,
    sample_rate: u32,
    window_frames: u64,
    config: MonitorConfig,
    derived: Derived,
    /// Frames processed since the start.
    frames: u64,
    /// Frames into the current window.
    in_window: u64,
    state: Vec<ChannelState>,
    detectors: Vec<ChannelDetectors>,
    /// The RMS meter's windows.
    rms: LaneRing,
    lanes: Lanes,
    kernel: Kernel,
    /// The previous window's second differences are known (after the first window).
    d2_ready: bool,
    /// The vector instructions of this CPU that the per-sample pass runs on.
    arch: Isa,
    pairs: Vec<PairState>,
    groups: Vec<LoudnessMeter>,
    events: Vec<MonitorEvent>,
    events_dropped: u64,
}

impl Monitor {
    /// A monitor for an input of `channels` at `sample_rate` Hz.
    pub fn new(
        channels: u16,
        sample_rate: u32,
        config: MonitorConfig,
    ) -> Result<Self, MonitorError> {
        if channels == 0 || channels > MAX_CHANNELS {
            return Err(MonitorError::Channels { channels });
        }
        if !crate::jitter::SAMPLE_RATES.contains(&sample_rate) {
            return Err(MonitorError::SampleRate { sample_rate });
        }
        let rate = u64::from(sample_rate);
        let window_frames = duration_to_ticks(WINDOW, rate).max(1);
        let windows_of = |d: Duration| duration_to_ticks(d, rate).div_ceil(window_frames) as usize;
        let channel = ChannelState {
            peak_hold: PeakHold::new(),
            true_peak_hold: PeakHold::new(),
            peak_max: 0.0,
            true_peak_max: 0.0,
            silence: debounce(config.silence.map(|c| c.timing), rate),
            clipping: debounce(config.clipping.map(|c| c.timing), rate),
        };
        let detectors = ChannelDetectors {
            dc: WindowRing::new(config.dc_offset.map_or(1, |c| windows_of(c.window))),
            stuck: debounce(config.stuck.map(|c| c.timing), rate),
            dc_offset: debounce(config.dc_offset.map(|c| c.timing), rate),
            discontinuity: debounce(config.discontinuity.map(|c| c.timing), rate),
        };
        let pairs = match config.phase {
            Some(phase) => (0..usize::from(channels) / 2)
                .map(|k| PairState {
                    first: 2 * k,
                    ring: WindowRing::new(windows_of(phase.window)),
                    correlation: None,
                    alarm: Debounce::with_timing(phase.timing, rate),
                })
                .collect(),
            None => Vec::new(),
        };
        let groups: Vec<_> = loudness_groups(channels, config.loudness)
            .map(|(first, count)| LoudnessMeter::new(first, count, window_frames))
            .collect();
        let arch = Isa::detect();
        let derived = Derived {
            hold_frames: duration_to_ticks(config.peak_hold, rate),
            decay_per_frame: config.peak_decay_db_per_s / sample_rate as f64,
            clip_level: config
                .clipping
                .map_or(f32::INFINITY, |c| db_to_linear(c.level_dbfs) as f32),
            click_floor: config
                .discontinuity
                .map_or(0.0, |c| db_to_linear(c.floor_dbfs)),
            silence_power: config
                .silence
                .map_or(0.0, |c| db_to_power(c.threshold_dbfs)),
            silence_power_raised: config
                .silence
                .map_or(0.0, |c| db_to_power(c.threshold_dbfs + c.hysteresis_db)),
            clip_true_peak: config
                .clipping
                .and_then(|c| c.true_peak_dbtp)
                .map_or(f64::INFINITY, db_to_linear),
            dc_level: config
                .dc_offset
                .map_or(0.0, |c| db_to_linear(c.threshold_dbfs)),
            dc_level_raised: config
                .dc_offset
                .map_or(0.0, |c| db_to_linear(c.threshold_dbfs - c.hysteresis_db)),
        };
        Ok(Monitor {
            channels: usize::from(channels),
            sample_rate,
            window_frames,
            config,
            derived,
            frames: 0,
            in_window: 0,
            state: vec![channel; usize::from(channels)],
            detectors: vec![detectors; usize::from(channels)],
            rms: LaneRing::new(
                windows_of(config.rms_window),
                usize::from(channels).div_ceil(LANES),
            ),
            lanes: Lanes::new(usize::from(channels), sample_rate, pairs.len()),
            kernel: Kernel {
                oversampling: Oversampling::of(sample_rate),
                loudness: !groups.is_empty(),
                clip: config.clipping.is_some(),
                dc: config.dc_offset.is_some(),
                stuck: config.stuck.is_some(),
                clip_level: derived.clip_level,
                click: config.discontinuity.map(|c| (c.ratio, derived.click_floor)),
                phase: !pairs.is_empty(),
            },
            d2_ready: false,
            arch,
            pairs,
            groups,
            events: Vec::with_capacity(usize::from(channels) * EVENTS_PER_CHANNEL),
            events_dropped: 0,
        })
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The configuration.
    pub fn config(&self) -> &MonitorConfig {
        &self.config
    }

    /// Accounts a block of interleaved frames whose first frame is at `now` (a trailing
    /// partial frame is ignored) and returns the alarm changes it caused, in time order per
    /// window. Does not allocate.
    pub fn process(&mut self, now: MonoTime, frames: &[i32]) -> &[MonitorEvent] {
        self.events.clear();
        let block_start = self.frames;
        let whole = frames.len() - frames.len() % self.channels;
        let mut rest = frames.get(..whole).unwrap_or_default();
        while !rest.is_empty() {
            let room = (self.window_frames - self.in_window) as usize;
            let (chunk, next) = rest.split_at((room * self.channels).min(rest.len()));
            self.accumulate(chunk);
            let n = (chunk.len() / self.channels) as u64;
            self.frames += n;
            self.in_window += n;
            if self.in_window == self.window_frames {
                self.close_window(now, block_start);
                self.in_window = 0;
            }
            rest = next;
        }
        &self.events
    }

    /// Calls `visit` with each region of memory (start, length in bytes) that every
    /// [`process`](Self::process) reads, for a caller that can prefetch it: a thread that
    /// meters a hundred inputs in turn finds each one's state gone from its caches by its
    /// turn, and waiting for it there cost more than the measuring. The regions stay where
    /// they are for the monitor's life (it never reallocates), so they can be kept.
    pub fn hot_memory(&self, mut visit: impl FnMut(*const u8, usize)) {
        fn span<T>(items: &[T]) -> (*const u8, usize) {
            (items.as_ptr().cast(), core::mem::size_of_val(items))
        }
        let mut slice = |(start, len): (*const u8, usize)| {
            if len > 0 {
                visit(start, len);
            }
        };
        slice(span(core::slice::from_ref(self)));
        let l = &self.lanes;
        for lanes in [
            &l.peak,
            &l.sum_sq,
            &l.true_peak2,
            &l.chunk_peak,
            &l.k_weighting.sum,
        ] {
            slice(span(lanes));
        }
        slice(span(&l.clip_run));
        slice(span(&l.longest_clip_run));
        slice(span(&l.k_weighting.state));
        // The true-peak filter's history, and the conversion scratch after it: written
        // before it is read, but a line written that is not in the cache is read first.
        slice(span(&l.tp_buf));
        // A window may close in this block.
        slice(span(&self.state));
        slice(span(&self.rms.total));
    }

    /// The current values, allocating a new snapshot.
    pub fn snapshot(&self) -> MeterSnapshot {
        let mut out = MeterSnapshot::default();
        self.snapshot_into(&mut out);
        out
    }

    /// Writes the current values into `out`, reusing its vectors (no allocation once they
    /// have grown to this monitor's sizes).
    pub fn snapshot_into(&self, out: &mut MeterSnapshot) {
        let d = self.derived;
        out.frames = self.frames;
        out.events_dropped = self.events_dropped;
        out.channels.clear();
        out.channels.extend(
            (self.state.iter().zip(&self.detectors))
                .zip(&self.lanes.clicks)
                .enumerate()
                .map(|(ch, ((s, detectors), &clicks))| ChannelLevels {
                    peak: s
                        .peak_hold
                        .display(self.frames, d.hold_frames, d.decay_per_frame),
                    true_peak: s.true_peak_hold.display(
                        self.frames,
                        d.hold_frames,
                        d.decay_per_frame,
                    ),
                    rms: self.rms.mean_square_db(ch, self.window_frames),
                    peak_max: amplitude_db(s.peak_max),
                    true_peak_max: amplitude_db(s.true_peak_max),
                    clicks,
                    alarms: ChannelAlarms {
                        silence: s.silence.active(),
                        clipping: s.clipping.active(),
                        stuck: detectors.stuck.active(),
                        dc_offset: detectors.dc_offset.active(),
                        discontinuity: detectors.discontinuity.active(),
                    },
                }),
        );
        out.loudness.clear();
        out.loudness
            .extend(self.groups.iter().map(|g| GroupLoudness {
                first_channel: g.first_channel(),
                channels: g.channels(),
                levels: g.levels(),
            }));
        out.pairs.clear();
        out.pairs.extend(self.pairs.iter().map(|p| PairLevels {
            first_channel: p.first as u16,
            correlation: p.correlation,
            phase_inverted: p.alarm.active(),
        }));
    }

    /// Per-sample work on frames that all belong to the current window.
    fn accumulate(&mut self, chunk: &[i32]) {
        // Frames before the third ever have no second difference.
        let unprimed = (2u64.saturating_sub(self.frames) as usize).min(chunk.len() / self.channels);
        self.arch.dispatch(Accumulate {
            wide: None,
            lanes: &mut self.lanes,
            kernel: &self.kernel,
            d2_ready: self.d2_ready,
            unprimed,
            chunk,
        });
    }

    /// Folds the window that ends at `self.frames` into meters and detectors.
    fn close_window(&mut self, block_time: MonoTime, block_start: u64) {
        let end = self.frames;
        let start = end - self.window_frames;
        // Exact to the nanosecond below, without a 128-bit division.
        let at = block_time + Duration::from_secs(end - block_start) / self.sample_rate;
        let d = self.derived;
        let config = self.config;
        let window_frames = self.window_frames as f64;
        let mut events = EventSink {
            events: &mut self.events,
            dropped: &mut self.events_dropped,
            frame: end,
            at,
        };
        let l = &mut self.lanes;
        if self.kernel.loudness && (end / self.window_frames).is_multiple_of(WINDOWS_PER_BLOCK) {
            l.k_weighting.close_block();
            for group in &mut self.groups {
                group.push_block(&l.k_weighting.energy);
            }
            l.k_weighting.end_block();
        }
        let (peaks, true_peaks2) = (l.peak.as_flattened(), l.true_peak2.as_flattened());
        self.rms.push(&l.sum_sq);
        let (sums_sq, runs) = (l.sum_sq.as_flattened(), l.longest_clip_run.as_flattened());
        // Readings stay linear here (thresholds are converted once, in `Derived`): a
        // logarithm is taken only for an event's detail or a published value.
        let channels = self.state.iter_mut().zip(&mut self.detectors);
        for (ch, (s, detectors)) in channels.enumerate() {
            let peak = f64::from(peaks[ch]);
            let true_peak = (f64::from(true_peaks2[ch]) / 2.0).max(peak);
            let sum_sq = f64::from(sums_sq[ch]);
            let longest_clip_run = runs[ch];
            s.peak_hold
                .update(end, peak, d.hold_frames, d.decay_per_frame);
            s.true_peak_hold
                .update(end, true_peak, d.hold_frames, d.decay_per_frame);
            s.peak_max = s.peak_max.max(peak);
            s.true_peak_max = s.true_peak_max.max(true_peak);
            if config.dc_offset.is_some() {
                detectors.dc.push([l.sum[ch]]);
            }
            let (i, ch) = (ch, ch as u16);
            let window_power = sum_sq / window_frames;
            if config.silence.is_some() {
                // While raised, only a level above threshold + hysteresis counts as sound.
                let present = if s.silence.active() {
                    window_power <= d.silence_power_raised
                } else {
                    window_power < d.silence_power
                };
                let change = s.silence.update(start, end, present);
                events.push(AlarmKind::Silence, ch, change, || power_db(window_power));
            }
            if let Some(c) = config.clipping {
                let tp_over = true_peak > d.clip_true_peak;
                let present = longest_clip_run >= c.consecutive || tp_over;
                let change = s.clipping.update(start, end, present);
                events.push(AlarmKind::Clipping, ch, change, || {
                    if longest_clip_run >= c.consecutive || !tp_over {
                        f64::from(longest_clip_run)
                    } else {
                        amplitude_db(true_peak)
                    }
                });
            }
            if config.stuck.is_some() {
                let (min, max) = (l.min[i], l.max[i]);
                let present = min == max && min != 0;
                let change = detectors.stuck.update(start, end, present);
                events.push(AlarmKind::Stuck, ch, change, || {
                    amplitude_db(f64::from(min.unsigned_abs()) / FULL_SCALE)
                });
            }
            if config.dc_offset.is_some() && detectors.dc.full() {
                let frames = detectors.dc.filled() as f64 * window_frames;
                let mean = (detectors.dc.sum()[0] / frames).abs();
                let present = if detectors.dc_offset.active() {
                    mean >= d.dc_level_raised
                } else {
                    mean > d.dc_level
                };
                let change = detectors.dc_offset.update(start, end, present);
                events.push(AlarmKind::DcOffset, ch, change, || amplitude_db(mean));
            }
            if config.discontinuity.is_some() {
                let clicks_in_window = l.clicks_in_window[i];
                let present = clicks_in_window > 0;
                let change = detectors.discontinuity.update(start, end, present);
                events.push(AlarmKind::Discontinuity, ch, change, || {
                    f64::from(clicks_in_window)
                });
            }
        }
        // Every window has at least two frames, so after one the predictor is primed.
        if self.kernel.click.is_some() {
            l.d2_previous.copy_from_slice(&l.d2_current);
        }
        self.d2_ready = true;
        if let Some(c) = config.phase {
            let min_energy = db_to_linear(c.min_level_dbfs).powi(2);
            for p in &mut self.pairs {
                let sums_sq = l.sum_sq.as_flattened();
                let (x, y) = match (sums_sq.get(p.first), sums_sq.get(p.first + 1)) {
                    (Some(&x), Some(&y)) => (f64::from(x), f64::from(y)),
                    _ => continue,
                };
                let xy = l.sum_xy.get(p.first / 2).copied().unwrap_or(0.0);
                p.ring.push([xy, x, y]);
                if !p.ring.full() {
                    continue;
                }
                let [xy, xx, yy] = p.ring.sum();
                let frames = p.ring.filled() as f64 * window_frames;
                p.correlation = (xx / frames > min_energy && yy / frames > min_energy)
                    .then(|| xy / (xx * yy).sqrt());
                let present = p.correlation.is_some_and(|r| {
                    if p.alarm.active() {
                        r <= c.threshold + c.hysteresis
                    } else {
                        r < c.threshold
                    }
                });
                let change = p.alarm.update(start, end, present);
                let detail = p.correlation.unwrap_or(0.0);
                events.push(AlarmKind::PhaseInverted, p.first as u16, change, || detail);
            }
        }
        l.reset_window(&self.kernel);
    }
}

/// Pushes alarm changes into the preallocated event buffer.
struct EventSink<'a> {
    events: &'a mut Vec<MonitorEvent>,
    dropped: &'a mut u64,
    frame: u64,
    at: MonoTime,
}

impl EventSink<'_> {
    /// `detail` is only evaluated for a change (it may cost a logarithm).
    fn push(
        &mut self,
        kind: AlarmKind,
        channel: u16,
        change: Option<Change>,
        detail: impl FnOnce() -> f64,
    ) {
        let Some(change) = change else {
            return;
        };
        // Never grow the buffer on the audio path: count what does not fit.
        if self.events.len() == self.events.capacity() {
            *self.dropped += 1;
            return;
        }
        self.events.push(MonitorEvent {
            kind,
            channel,
            change,
            detail: detail(),
            frame: self.frame,
            at: self.at,
        });
    }
}

/// The vector instructions the per-sample pass is compiled for, chosen at run time: on x86-64
/// AVX-512 or AVX2 and FMA when present, else the build's baseline; on aarch64 NEON. The
/// lane-group code runs on 8-lane vectors (AVX2: one lane group per vector) even under
/// AVX-512, whose 16 lanes are wider than a lane group; there only the true-peak filter,
/// which runs along time, takes the wide vectors ([`true_peak::measure_wide`]).
#[derive(Debug, Clone, Copy)]
enum Isa {
    #[cfg(target_arch = "x86_64")]
    Wide(true_peak::Wide),
    #[cfg(target_arch = "x86_64")]
    V3(pulp::x86::V3),
    #[cfg(target_arch = "x86_64")]
    Scalar,
    #[cfg(not(target_arch = "x86_64"))]
    Arch(pulp::Arch),
}

impl Isa {
    fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        return match (true_peak::detect_wide(), pulp::x86::V3::try_new()) {
            (Some(wide), _) => Isa::Wide(wide),
            (None, Some(v3)) => Isa::V3(v3),
            (None, None) => Isa::Scalar,
        };
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Arch(pulp::Arch::new())
    }

    /// Scalar code everywhere (tests compare it with the vector paths).
    #[cfg(test)]
    fn scalar() -> Self {
        #[cfg(target_arch = "x86_64")]
        return Isa::Scalar;
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Arch(pulp::Arch::Scalar)
    }

    fn dispatch(self, op: Accumulate<'_>) {
        match self {
            // Compiled once, for AVX-512: the lane code on AVX2's 8-lane vectors (which the
            // wide CPU has), the true-peak filter on 16 lanes.
            #[cfg(target_arch = "x86_64")]
            Isa::Wide(wide) => pulp::Simd::vectorize(wide, OnWide { op, wide }),
            #[cfg(target_arch = "x86_64")]
            Isa::V3(simd) => pulp::Simd::vectorize(simd, op),
            #[cfg(target_arch = "x86_64")]
            Isa::Scalar => pulp::Simd::vectorize(pulp::Scalar::new(), op),
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Arch(arch) => arch.dispatch(op),
        }
    }
}

/// [`Accumulate`] run inside code compiled for [`true_peak::Wide`].
#[cfg(target_arch = "x86_64")]
struct OnWide<'a> {
    op: Accumulate<'a>,
    wide: true_peak::Wide,
}

#[cfg(target_arch = "x86_64")]
impl pulp::WithSimd for OnWide<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) {
        let OnWide { mut op, wide } = self;
        op.wide = Some(wide);
        // AVX-512 includes AVX2 and FMA: the lane code's 8-lane vectors.
        pulp::WithSimd::with_simd(op, *wide)
    }
}

/// [`accumulate_lanes`] compiled for the CPU's widest vector instructions (AVX2 and FMA on
/// x86-64 when present, else the build's baseline; NEON on aarch64), chosen at run time.
struct Accumulate<'a> {
    /// Set only inside code compiled for the wide instructions.
    wide: Option<true_peak::Wide>,
    lanes: &'a mut Lanes,
    kernel: &'a Kernel,
    d2_ready: bool,
    unprimed: usize,
    chunk: &'a [i32],
}

impl pulp::WithSimd for Accumulate<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, simd: S) {
        let Accumulate {
            wide,
            lanes,
            kernel,
            d2_ready,
            unprimed,
            chunk,
        } = self;
        accumulate_lanes(simd, wide, lanes, kernel, (d2_ready, unprimed), chunk);
    }
}

/// The per-sample pass over frames of one window. The level quantities are written on
/// `simd`'s vectors of the frames converted to `f32` lane groups, one pass per group (and
/// vector of it) whose state stays in registers; the detector inputs are loops over the
/// frames with an inner loop across channels, branch-free so that they vectorise. Everything
/// here is inlined into the `with_simd` body, so it is compiled with `S`'s CPU features.
/// Quantities nothing reads (a detector that is off) are skipped.
#[inline(always)]
fn accumulate_lanes<S: pulp::Simd>(
    simd: S,
    wide: Option<true_peak::Wide>,
    l: &mut Lanes,
    k: &Kernel,
    (d2_ready, unprimed): (bool, usize),
    chunk: &[i32],
) {
    let n = l.channels;
    let groups = l.groups;
    const H: usize = true_peak::HISTORY;
    // Taken out for the loop so the level state can be borrowed beside it (no allocation).
    let mut tp_buf = core::mem::take(&mut l.tp_buf);
    for part in chunk.chunks(TP_FRAMES * n) {
        let frames = part.len() / n;
        to_lanes(&mut tp_buf, part, n);
        for (g, span) in tp_buf.chunks_exact_mut(SPAN).enumerate().take(groups) {
            let Some(group) = span.get(..H + frames) else {
                break;
            };
            let current = &group[H..];
            if k.loudness {
                levels::<S, true>(simd, l, g, current);
            } else {
                levels::<S, false>(simd, l, g, current);
            }
            if k.clip {
                clip_runs(
                    current,
                    &l.chunk_peak[g],
                    k.clip_level,
                    (&mut l.clip_run[g], &mut l.longest_clip_run[g]),
                );
            }
            if let Some(peak2) = l.true_peak2.get_mut(g) {
                let taken = true_peak::measure_wide(wide, k.oversampling, group, peak2);
                let rest = group.get(taken..).unwrap_or_default();
                true_peak::measure(simd, k.oversampling, rest, peak2);
            }
            // The last frames are the next chunk's history.
            span.copy_within(frames..H + frames, 0);
        }
    }
    l.tp_buf = tp_buf;
    let scale = 1.0 / FULL_SCALE;
    if k.dc {
        let sum = &mut l.sum[..n];
        for frame in chunk.chunks_exact(n) {
            for c in 0..n {
                sum[c] += f64::from(frame[c]) * scale;
            }
        }
    }
    if k.stuck {
        let (min, max) = (&mut l.min[..n], &mut l.max[..n]);
        for frame in chunk.chunks_exact(n) {
            for c in 0..n {
                min[c] = min[c].min(frame[c]);
                max[c] = max[c].max(frame[c]);
            }
        }
    }
    if let Some((ratio, floor)) = k.click {
        let (p1, p2) = (&mut l.previous[..n], &mut l.previous2[..n]);
        let (d2_cur, d2_prev) = (&mut l.d2_current[..n], &l.d2_previous[..n]);
        let (since, clicks) = (&mut l.since_anomaly[..n], &mut l.clicks[..n]);
        let in_window = &mut l.clicks_in_window[..n];
        for (i, frame) in chunk.chunks_exact(n).enumerate() {
            if i < unprimed {
                for c in 0..n {
                    p2[c] = p1[c];
                    p1[c] = f64::from(frame[c]) * scale;
                }
                continue;
            }
            for c in 0..n {
                let v = f64::from(frame[c]) * scale;
                // Error of the linear prediction 2x[n−1] − x[n−2]: small for smooth audio
                // (about ω² times the amplitude for a sine), about ω times the amplitude at
                // a dropped or repeated sample.
                let d2 = (v - 2.0 * p1[c] + p2[c]).abs();
                let s = since[c].saturating_add(1);
                let local = d2_prev[c].max(d2_cur[c]);
                let anomalous = d2_ready & (d2 > floor) & (d2 > ratio * local);
                let counted = u32::from(anomalous & (s > 2));
                clicks[c] += u64::from(counted);
                in_window[c] += counted;
                since[c] = if anomalous { 0 } else { s };
                d2_cur[c] = if anomalous {
                    d2_cur[c]
                } else {
                    d2_cur[c].max(d2)
                };
                p2[c] = p1[c];
                p1[c] = v;
            }
        }
    }
    if k.phase {
        let pairs = l.sum_xy.len();
        let sum_xy = &mut l.sum_xy[..pairs];
        for frame in chunk.chunks_exact(n) {
            for (xy, p) in sum_xy.iter_mut().zip(frame.chunks_exact(2)) {
                *xy += (f64::from(p[0]) * scale) * (f64::from(p[1]) * scale);
            }
        }
    }
}

/// Interleaved `i32` frames of `channels` samples into `f32` lane groups (full scale 1.0),
/// group `g`'s frames at `out[g * SPAN + HISTORY..]`; the padding lanes are never written, so
/// they stay silent.
#[inline(always)]
fn to_lanes(out: &mut [Lane], frames: &[i32], channels: usize) {
    // 2^-31 exactly in `f32`, so 24-bit samples convert without rounding.
    let scale = 1.0 / FULL_SCALE as f32;
    let convert = |o: &mut Lane, x: &[i32; LANES]| {
        for c in 0..LANES {
            o[c] = x[c] as f32 * scale;
        }
    };
    for (g, span) in out.chunks_exact_mut(SPAN).enumerate() {
        let first = g * LANES;
        let width = channels.saturating_sub(first).min(LANES);
        let lanes = span.iter_mut().skip(true_peak::HISTORY);
        if channels == LANES {
            // One group, frames already lane-sized: a flat conversion.
            for (o, x) in lanes.zip(frames.as_chunks::<LANES>().0) {
                convert(o, x);
            }
        } else if width == LANES {
            for (o, frame) in lanes.zip(frames.chunks_exact(channels)) {
                if let Some(x) = frame.get(first..).and_then(|f| f.first_chunk::<LANES>()) {
                    convert(o, x);
                }
            }
        } else {
            for (o, frame) in lanes.zip(frames.chunks_exact(channels)) {
                for (o, &x) in o.iter_mut().zip(frame.iter().skip(first)) {
                    *o = x as f32 * scale;
                }
            }
        }
    }
}

/// Sample peak, Σx² and (`LOUD`) the K-weighting with its energy of the `frames` of lane
/// group `g`, on `simd`'s vectors (one [`Lane`] is [`vectors_per_lane`] of them), with the
/// state of each vector in locals.
#[inline(always)]
fn levels<S: pulp::Simd, const LOUD: bool>(simd: S, l: &mut Lanes, g: usize, frames: &[Lane]) {
    let subs = const { vectors_per_lane::<S>() };
    let x = vectors::<S>(frames);
    let kw = &mut l.k_weighting;
    let splat = |c: f32| simd.splat_f32s(c);
    let [b0, b1, b2, a1, a2] = kw.shelf;
    // Negated so each step is one multiply-add.
    let (b0, b1, b2, na1, na2) = (splat(b0), splat(b1), splat(b2), splat(-a1), splat(-a2));
    let [h1, h2] = kw.high_pass;
    let (nh1, nh2) = (splat(-h1), splat(-h2));
    let (Some(window_peak), Some(chunk_peak), Some(sum_sq), Some(state), Some(energy)) = (
        l.peak.get_mut(g),
        l.chunk_peak.get_mut(g),
        l.sum_sq.get_mut(g),
        kw.state.get_mut(g),
        kw.sum.get_mut(g),
    ) else {
        return;
    };
    let window_peak = vectors_mut::<S>(core::slice::from_mut(window_peak));
    let chunk_peak = vectors_mut::<S>(core::slice::from_mut(chunk_peak));
    let sum_sq = vectors_mut::<S>(core::slice::from_mut(sum_sq));
    let state = vectors_mut::<S>(state);
    let energy = vectors_mut::<S>(core::slice::from_mut(energy));
    for s in 0..subs {
        // Peak of this chunk alone: clip runs need a second look only if it reaches the level.
        let mut peak = simd.splat_f32s(0.0);
        // Sums continue from the window's so far, in sample order.
        let mut sq = sum_sq[s];
        let at = |q: usize| q * subs + s;
        let (mut x1, mut x2, mut y1, mut y2) =
            (state[at(0)], state[at(1)], state[at(2)], state[at(3)]);
        let (mut z1, mut z2) = (state[at(4)], state[at(5)]);
        let mut e = energy[s];
        for &v in x.iter().skip(s).step_by(subs) {
            peak = simd.max_f32s(peak, simd.abs_f32s(v));
            sq = simd.mul_add_e_f32s(v, v, sq);
            if LOUD {
                // BS.1770 K-weighting: shelf, then the RLB high-pass (numerator 1, −2, 1,
                // as differences: exact where y ≈ y1 ≈ y2, at low frequencies).
                let y = simd.mul_add_e_f32s(
                    na1,
                    y1,
                    simd.mul_add_e_f32s(
                        na2,
                        y2,
                        simd.mul_add_e_f32s(
                            b2,
                            x2,
                            simd.mul_add_e_f32s(b1, x1, simd.mul_f32s(b0, v)),
                        ),
                    ),
                );
                let u = simd.sub_f32s(simd.sub_f32s(y, y1), simd.sub_f32s(y1, y2));
                let z = simd.mul_add_e_f32s(nh1, z1, simd.mul_add_e_f32s(nh2, z2, u));
                (x2, x1, y2, y1, z2, z1) = (x1, v, y1, y, z1, z);
                e = simd.mul_add_e_f32s(z, z, e);
            }
        }
        chunk_peak[s] = peak;
        window_peak[s] = simd.max_f32s(window_peak[s], peak);
        sum_sq[s] = sq;
        if LOUD {
            (state[at(0)], state[at(1)], state[at(2)]) = (x1, x2, y1);
            (state[at(3)], state[at(4)], state[at(5)]) = (y2, z1, z2);
            energy[s] = e;
        }
    }
}

/// Runs of samples at or above `clip_level` in `frames` (one lane group), carried across
/// chunks, and the longest of the window. Exact, but walks the samples only where some sample
/// reached the level (`peak` is the chunk's): otherwise every run ends here.
#[inline(always)]
fn clip_runs(
    frames: &[Lane],
    peak: &Lane,
    clip_level: f32,
    (run, longest): (&mut [u32; LANES], &mut [u32; LANES]),
) {
    if peak.iter().all(|&p| p < clip_level) {
        *run = [0; LANES];
        return;
    }
    for x in frames {
        for c in 0..LANES {
            run[c] = if x[c].abs() >= clip_level {
                run[c].saturating_add(1)
            } else {
                0
            };
            longest[c] = longest[c].max(run[c]);
        }
    }
}

/// A debouncer for an optional detector (an absent one never sees its condition).
fn debounce(timing: Option<Timing>, rate: u64) -> Debounce {
    timing.map_or(Debounce::new(u64::MAX, 0), |t| {
        Debounce::with_timing(t, rate)
    })
}

/// The `(first, count)` channel ranges of the loudness groups.
fn loudness_groups(channels: u16, grouping: LoudnessGrouping) -> impl Iterator<Item = (u16, u16)> {
    let (step, count) = match grouping {
        LoudnessGrouping::None => (channels, 0),
        LoudnessGrouping::Mono => (1, 1),
        LoudnessGrouping::Pairs => (2, 2),
        LoudnessGrouping::All => (channels, channels),
    };
    (0..channels)
        .step_by(usize::from(step.max(1)))
        .filter(move |_| count > 0)
        .map(move |first| (first, count.min(channels - first)))
}

fn db_to_linear(db: f64) -> f64 {
    10f64.powf(db / 20.0)
}

/// The power ratio of `db` (`10^(db/10)`).
fn db_to_power(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// 20·log10 of an amplitude ratio (−∞ for 0).
fn amplitude_db(ratio: f64) -> f64 {
    20.0 * ratio.log10()
}

/// 10·log10 of a power ratio (−∞ for 0).
fn power_db(ratio: f64) -> f64 {
    10.0 * ratio.log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_ring_totals_stay_the_sum_of_their_windows() {
        let (windows, groups) = (5, 3);
        let mut ring = LaneRing::new(windows, groups);
        let mut pushed: Vec<Vec<Lane>> = Vec::new();
        for w in 0..200u32 {
            let window: Vec<Lane> = (0..groups)
                .map(|g| {
                    core::array::from_fn(|c| ((w * 7 + g as u32 * 3 + c as u32) % 11) as f32 * 0.25)
                })
                .collect();
            ring.push(&window);
            pushed.push(window);
            let held = &pushed[pushed.len().saturating_sub(windows)..];
            for ch in 0..groups * LANES {
                let want: f64 = held
                    .iter()
                    .map(|win| f64::from(win[ch / LANES][ch % LANES]))
                    .sum();
                let frames = held.len() as f64 * 10.0;
                let got = ring.mean_square_db(ch, 10);
                let want = power_db(want / frames);
                assert!(
                    got == want || (got - want).abs() < 1e-9,
                    "window {w} ch {ch}: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn window_ring_running_sum_stays_the_sum_of_its_slots() {
        let mut ring = WindowRing::<2>::new(7);
        let mut x = 0.37_f64;
        for i in 0..1_000 {
            x = (x * 3.9 * (1.0 - x)).clamp(1e-6, 1.0);
            ring.push([x * 1e-3, -x]);
            let (running, summed) = (ring.sum(), ring.summed());
            for (r, s) in running.iter().zip(summed) {
                assert!(
                    (r - s).abs() <= 1e-12 * s.abs().max(1.0),
                    "push {i}: {r} != {s}"
                );
            }
            assert_eq!(ring.filled(), (i + 1).min(7));
        }
    }

    #[test]
    fn loudness_groups_cover_the_channels() {
        let pairs: Vec<_> = loudness_groups(5, LoudnessGrouping::Pairs).collect();
        assert_eq!(pairs, vec![(0, 2), (2, 2), (4, 1)]);
        let all: Vec<_> = loudness_groups(6, LoudnessGrouping::All).collect();
        assert_eq!(all, vec![(0, 6)]);
        assert_eq!(loudness_groups(4, LoudnessGrouping::None).count(), 0);
        assert_eq!(loudness_groups(3, LoudnessGrouping::Mono).count(), 3);
    }

    #[test]
    fn hot_memory_is_the_monitor_and_its_per_block_state_only() {
        fn span<T>(items: &[T]) -> (*const T, usize) {
            (items.as_ptr(), size_of_val(items))
        }
        let monitor = Monitor::new(8, 48_000, MonitorConfig::default()).expect("monitor");
        let mut regions = Vec::new();
        monitor.hot_memory(|start, len| regions.push((start as usize, len)));
        let own = (&raw const monitor) as usize;
        assert_eq!(regions[0], (own, size_of::<Monitor>()));
        assert!(regions.iter().all(|&(start, len)| start != 0 && len > 0));
        // One lane group's accumulators, filter state and scratch, eight channels' window
        // state: a few kilobytes, not the loudness meters' histograms (8 KB each).
        let total: usize = regions.iter().map(|r| r.1).sum();
        assert!(total < 8192, "{total} bytes");
        let scratch = span(&monitor.lanes.tp_buf);
        assert!(regions.contains(&(scratch.0 as usize, scratch.1)));
    }

    #[test]
    fn peak_hold_holds_then_falls() {
        let near = |got: f64, want: f64| assert!((got - want).abs() < 1e-9, "{got} != {want}");
        let mut p = PeakHold::new();
        assert_eq!(p.display(0, 100, 0.5), f64::NEG_INFINITY);
        p.update(0, db_to_linear(-6.0), 100, 0.5);
        near(p.display(100, 100, 0.5), -6.0);
        // Held: a lower peak changes nothing.
        p.update(100, db_to_linear(-7.0), 100, 0.5);
        near(p.display(100, 100, 0.5), -6.0);
        near(p.display(110, 100, 0.5), -11.0);
        // Falling: below the display changes nothing, above it takes over.
        p.update(110, db_to_linear(-20.0), 100, 0.5);
        near(p.display(110, 100, 0.5), -11.0);
        p.update(110, db_to_linear(-8.0), 100, 0.5);
        near(p.display(110, 100, 0.5), -8.0);
        // Silence never beats a held peak.
        p.update(400, 0.0, 100, 0.5);
        near(p.display(400, 100, 0.5), -8.0 - 0.5 * 190.0);
    }

    /// The pass the CPU dispatches to (AVX2 + FMA on x86-64, NEON on aarch64: `test.sh` runs
    /// this under qemu) reads as the portable scalar pass, up to `f32` rounding, for a channel
    /// count that leaves padding lanes, levels from −90 dBFS to clipping, 31 Hz to 10 kHz, and every detector.
    #[test]
    fn dispatched_and_scalar_passes_agree() {
        // 4× true peak at 48 kHz, 2× at 96 kHz.
        for rate in [48_000, 96_000] {
            passes_agree_at(rate);
        }
    }

    fn passes_agree_at(rate: u32) {
        let channels = 11u16;
        let ch = usize::from(channels);
        let mut audio = Vec::new();
        for n in 0..rate as usize {
            let t = n as f64 / f64::from(rate);
            for c in 0..ch {
                // Channel 0 at −90 dBFS and 10 kHz … channel 10 at +6 dBFS (clipped), 31 Hz.
                let level = db_to_linear(-90.0 + 9.6 * c as f64);
                let freq = 31.0 + 1_000.0 * (ch - 1 - c) as f64;
                let v = (level * (2.0 * core::f64::consts::PI * freq * t).sin()).clamp(-1.0, 1.0);
                audio.push((v * FULL_SCALE) as i32);
            }
        }
        let mut native = Monitor::new(channels, rate, MonitorConfig::default()).expect("valid");
        let mut scalar = Monitor::new(channels, rate, MonitorConfig::default()).expect("valid");
        scalar.arch = Isa::scalar();
        // Blocks of 48 frames plus an odd one, so chunks do not line up with windows.
        for block in audio.chunks(47 * ch) {
            native.process(MonoTime::ZERO, block);
            scalar.process(MonoTime::ZERO, block);
        }
        let (a, b) = (native.snapshot(), scalar.snapshot());
        let close = |x: f64, y: f64| (x == y) || (x - y).abs() < 1e-3;
        for (c, (x, y)) in a.channels.iter().zip(&b.channels).enumerate() {
            assert!(close(x.peak, y.peak), "channel {c}: {x:?} vs {y:?}");
            assert!(
                close(x.true_peak, y.true_peak),
                "channel {c}: {x:?} vs {y:?}"
            );
            assert!(close(x.rms, y.rms), "channel {c}: {x:?} vs {y:?}");
            assert_eq!(x.alarms, y.alarms, "channel {c}");
            assert_eq!(x.clicks, y.clicks, "channel {c}");
        }
        assert!(a.channels[10].alarms.clipping && !a.channels[5].alarms.clipping);
        assert!(a.channels[0].true_peak < -89.0 && a.channels[0].true_peak > -91.0);
        for (x, y) in a.loudness.iter().zip(&b.loudness) {
            let (x, y) = (x.levels, y.levels);
            assert!(close(x.momentary, y.momentary), "{x:?} vs {y:?}");
            assert!(close(x.short_term, y.short_term), "{x:?} vs {y:?}");
            assert!(close(x.integrated, y.integrated), "{x:?} vs {y:?}");
        }
    }

    #[test]
    fn bad_configs_are_rejected() {
        let c = MonitorConfig::default();
        assert_eq!(
            Monitor::new(0, 48_000, c).err(),
            Some(MonitorError::Channels { channels: 0 })
        );
        assert_eq!(
            Monitor::new(2, 100, c).err(),
            Some(MonitorError::SampleRate { sample_rate: 100 })
        );
    }
}
