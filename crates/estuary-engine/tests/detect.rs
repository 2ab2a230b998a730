//! Audio detectors: raise and clear timing to the frame, detail values, no false positives on
//! clean signals. Windows are 10 ms (480 frames at 48 kHz); a change is reported at the end
//! of the window that decides it.

use core::f64::consts::PI;
use core::time::Duration;

use estuary_engine::monitor::detect::{Change, Timing};
use estuary_engine::monitor::{
    AlarmKind, ClippingConfig, DcOffsetConfig, DiscontinuityConfig, Monitor, MonitorConfig,
    MonitorEvent, PhaseConfig, SilenceConfig, StuckConfig,
};
use estuary_engine::time::MonoTime;

const RATE: u32 = 48_000;
const SECOND: u64 = RATE as u64;
const BLOCK: usize = 48;

fn sine_at(n: u64, freq: f64, dbfs: f64) -> f64 {
    10f64.powf(dbfs / 20.0) * (2.0 * PI * freq * n as f64 / f64::from(RATE)).sin()
}

fn to_i32(v: f64) -> i32 {
    (v * f64::from(i32::MAX))
        .round()
        .clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
}

/// Mono signal from a function of the frame index.
fn mono(frames: u64, f: impl Fn(u64) -> f64) -> Vec<i32> {
    (0..frames).map(|n| to_i32(f(n))).collect()
}

fn only(f: impl FnOnce(&mut MonitorConfig)) -> MonitorConfig {
    let mut c = MonitorConfig::meters_only();
    f(&mut c);
    c
}

/// Runs `frames` through a new monitor in 1 ms blocks; returns the monitor and its events.
fn run(config: MonitorConfig, channels: u16, frames: &[i32]) -> (Monitor, Vec<MonitorEvent>) {
    let mut m = Monitor::new(channels, RATE, config).expect("valid config");
    let mut events = Vec::new();
    for (k, block) in frames.chunks(BLOCK * usize::from(channels)).enumerate() {
        let now = MonoTime::from_nanos((k * BLOCK) as u64 * 1_000_000_000 / SECOND);
        events.extend_from_slice(m.process(now, block));
    }
    (m, events)
}

/// `(kind, channel, change, frame)` of each event.
fn timeline(events: &[MonitorEvent]) -> Vec<(AlarmKind, u16, Change, u64)> {
    events
        .iter()
        .map(|e| (e.kind, e.channel, e.change, e.frame))
        .collect()
}

#[test]
fn silence_raises_after_5_s_and_clears_after_1_s_of_sound() {
    // 1 s tone, 6 s digital silence, 2 s tone.
    let signal = mono(9 * SECOND, |n| {
        if (SECOND..7 * SECOND).contains(&n) {
            0.0
        } else {
            sine_at(n, 1_000.0, -20.0)
        }
    });
    let (m, events) = run(
        only(|c| c.silence = Some(SilenceConfig::default())),
        1,
        &signal,
    );
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Silence, 0, Change::Raised, 6 * SECOND),
            (AlarmKind::Silence, 0, Change::Cleared, 8 * SECOND),
        ]
    );
    assert_eq!(events[0].detail, f64::NEG_INFINITY);
    assert_eq!(events[0].at, MonoTime::from_nanos(6_000_000_000));
    assert_eq!(events[1].at, MonoTime::from_nanos(8_000_000_000));
    assert!(!m.snapshot().channels[0].alarms.silence);
}

#[test]
fn silence_level_hysteresis_needs_3_db_more_to_clear() {
    // RMS levels: −70 dBFS for 6 s (raises), then −58.5 dBFS (inside the hysteresis band,
    // stays raised) for 3 s, then −50 dBFS (clears 1 s later).
    let peak = |rms_db: f64| rms_db + 3.0103;
    let signal = mono(12 * SECOND, |n| {
        let level = match n / SECOND {
            0..6 => peak(-70.0),
            6..9 => peak(-58.5),
            _ => peak(-50.0),
        };
        sine_at(n, 1_000.0, level)
    });
    let (_, events) = run(
        only(|c| c.silence = Some(SilenceConfig::default())),
        1,
        &signal,
    );
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Silence, 0, Change::Raised, 5 * SECOND),
            (AlarmKind::Silence, 0, Change::Cleared, 10 * SECOND),
        ]
    );
    assert!(
        (events[0].detail - -70.0).abs() < 0.1,
        "{}",
        events[0].detail
    );
    assert!(
        (events[1].detail - -50.0).abs() < 0.1,
        "{}",
        events[1].detail
    );
}

#[test]
fn clipping_raises_on_a_run_of_full_scale_samples_and_clears_2_s_later() {
    // 1 s at −6 dBFS, 1 s of a 100 Hz sine driven 6 dB into the rails, 3 s at −6 dBFS.
    let signal = mono(5 * SECOND, |n| {
        if (SECOND..2 * SECOND).contains(&n) {
            sine_at(n, 100.0, 6.0)
        } else {
            sine_at(n, 100.0, -6.0)
        }
    });
    let (m, events) = run(
        only(|c| c.clipping = Some(ClippingConfig::default())),
        1,
        &signal,
    );
    // The first run starts at 30° (frame 48 040) and reaches 3 samples in the window that
    // ends at 48 480; the last clipped window ends at 96 000, so it clears at 96 000 + 2 s.
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Clipping, 0, Change::Raised, SECOND + 480),
            (AlarmKind::Clipping, 0, Change::Cleared, 4 * SECOND),
        ]
    );
    // Longest run in the deciding window: +6 dB (×1.995) reaches −0.01 dBFS from 30.04° to
    // 149.96°, frames 48 041..=48 199: 159 samples.
    assert_eq!(events[0].detail, 159.0);
    assert!(!m.snapshot().channels[0].alarms.clipping);
}

#[test]
fn clipping_raises_on_true_peak_over_threshold_without_full_scale_samples() {
    // fs/4 at 45° and +1 dBTP: samples at −2.01 dBFS, true peak +1.0 dBTP > +0.5.
    let signal = mono(SECOND, |n| {
        10f64.powf(1.0 / 20.0) * (PI / 2.0 * n as f64 + PI / 4.0).sin()
    });
    let (_, events) = run(
        only(|c| c.clipping = Some(ClippingConfig::default())),
        1,
        &signal,
    );
    assert_eq!(
        timeline(&events),
        vec![(AlarmKind::Clipping, 0, Change::Raised, 480)]
    );
    // Includes the onset overshoot of the interpolator (+0.08 dB).
    assert!((events[0].detail - 1.0).abs() < 0.1, "{}", events[0].detail);
}

#[test]
fn stuck_value_raises_after_1_s_and_clears_after_1_s() {
    let stuck = 0x1000_0000;
    let mut signal = mono(4 * SECOND, |n| sine_at(n, 1_000.0, -6.0));
    for x in &mut signal[SECOND as usize..3 * SECOND as usize] {
        *x = stuck;
    }
    let config = only(|c| c.stuck = Some(StuckConfig::default()));
    let (_, events) = run(config, 1, &signal);
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Stuck, 0, Change::Raised, 2 * SECOND),
            (AlarmKind::Stuck, 0, Change::Cleared, 4 * SECOND),
        ]
    );
    let level = 20.0 * (f64::from(stuck) / f64::from(i32::MAX)).log10();
    assert!((events[0].detail - level).abs() < 1e-9);
    assert!((level - -18.06).abs() < 0.01);
}

#[test]
fn dc_offset_over_the_1_s_mean_raises_and_clears_with_hysteresis() {
    // A −20 dBFS sine riding on a +0.1 (−20 dBFS) offset for 5 s, then without it.
    let signal = mono(8 * SECOND, |n| {
        let dc = if n < 5 * SECOND { 0.1 } else { 0.0 };
        sine_at(n, 1_000.0, -20.0) + dc
    });
    let config = only(|c| c.dc_offset = Some(DcOffsetConfig::default()));
    let (_, events) = run(config, 1, &signal);
    // First judged at the window ending at 1 s (the mean window is then full), so the 2 s
    // count starts at that window's start (47 520): raised at 143 520. After the offset
    // stops, the mean falls as 0.1·(1 − k/100) over k clean windows and is below −33 dBFS
    // (threshold − hysteresis) from k = 78 (window start 276 960): cleared 1 s later.
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::DcOffset, 0, Change::Raised, 143_520),
            (AlarmKind::DcOffset, 0, Change::Cleared, 324_960),
        ]
    );
    assert!(
        (events[0].detail - -20.0).abs() < 0.1,
        "{}",
        events[0].detail
    );
}

/// A −6 dBFS 1 kHz sine, 4 s, with optionally sample 48 001 dropped and sample 120 001
/// repeated (both at the steepest point of the waveform, where the jump is largest).
fn sine_with_glitches(glitch: bool) -> Vec<i32> {
    let clean = mono(4 * SECOND, |n| sine_at(n, 1_000.0, -6.0));
    if !glitch {
        return clean;
    }
    let mut out = Vec::with_capacity(clean.len());
    for (n, &x) in clean.iter().enumerate() {
        match n {
            48_001 => {}
            120_001 => out.extend([x, x]),
            _ => out.push(x),
        }
    }
    out
}

#[test]
fn a_dropped_and_a_repeated_sample_are_two_clicks() {
    let config = only(|c| c.discontinuity = Some(DiscontinuityConfig::default()));
    let (m, events) = run(config, 1, &sine_with_glitches(true));
    // Dropped at output frame 48 001 (window ending 48 480); the repeat sits at output
    // 120 000..=120 001 (window ending 120 480). Each clears 1 s after its window.
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Discontinuity, 0, Change::Raised, 48_480),
            (AlarmKind::Discontinuity, 0, Change::Cleared, 96_480),
            (AlarmKind::Discontinuity, 0, Change::Raised, 120_480),
            (AlarmKind::Discontinuity, 0, Change::Cleared, 168_480),
        ]
    );
    assert_eq!(events[0].detail, 1.0);
    assert_eq!(m.snapshot().channels[0].clicks, 2);
}

#[test]
fn a_clean_sine_has_no_click() {
    let config = only(|c| c.discontinuity = Some(DiscontinuityConfig::default()));
    let (m, events) = run(config, 1, &sine_with_glitches(false));
    assert!(events.is_empty(), "{events:?}");
    assert_eq!(m.snapshot().channels[0].clicks, 0);
}

#[test]
fn phase_inverted_pair_raises_after_2_s_and_clears_with_hysteresis() {
    // Stereo 1 kHz at −20 dBFS; R = −L from 1 s to 5 s.
    let frames: Vec<i32> = (0..7 * SECOND)
        .flat_map(|n| {
            let l = sine_at(n, 1_000.0, -20.0);
            let r = if (SECOND..5 * SECOND).contains(&n) {
                -l
            } else {
                l
            };
            [to_i32(l), to_i32(r)]
        })
        .collect();
    let phase = PhaseConfig {
        threshold: -0.85,
        ..PhaseConfig::default()
    };
    let (m, events) = run(only(|c| c.phase = Some(phase)), 2, &frames);
    // Over the 1 s window the correlation is (100 − 2k)/100 after k inverted windows: below
    // −0.85 from k = 93 (window start 92 160) → raised 2 s later. After the inversion it is
    // (2k − 100)/100 after k clean windows: above −0.75 from k = 13 (window start 245 760)
    // → cleared 1 s later.
    assert_eq!(
        timeline(&events),
        vec![
            (
                AlarmKind::PhaseInverted,
                0,
                Change::Raised,
                92_160 + 2 * SECOND
            ),
            (
                AlarmKind::PhaseInverted,
                0,
                Change::Cleared,
                245_760 + SECOND
            ),
        ]
    );
    // The detail is the correlation of the deciding window: fully inverted by then.
    assert!(
        (events[0].detail - -1.0).abs() < 1e-6,
        "{}",
        events[0].detail
    );
    assert!(
        (events[1].detail - 1.0).abs() < 1e-6,
        "{}",
        events[1].detail
    );
    let pair = m.snapshot().pairs[0];
    assert_eq!(pair.first_channel, 0);
    assert!((pair.correlation.unwrap_or(0.0) - 1.0).abs() < 1e-6);
}

#[test]
fn clean_programme_raises_nothing_with_default_detectors() {
    // Two channels of sums of tones at typical programme levels, slightly different.
    let frames: Vec<i32> = (0..10 * SECOND)
        .flat_map(|n| {
            let l = sine_at(n, 440.0, -14.0) + sine_at(n, 3_100.0, -24.0);
            let r = sine_at(n, 550.0, -14.0) + sine_at(n, 97.0, -20.0);
            [to_i32(l), to_i32(r)]
        })
        .collect();
    let (m, events) = run(MonitorConfig::default(), 2, &frames);
    assert!(events.is_empty(), "{events:?}");
    let s = m.snapshot();
    assert_eq!(s.channels[0].clicks + s.channels[1].clicks, 0);
    assert_eq!(s.events_dropped, 0);
}

#[test]
fn timing_config_is_respected() {
    // Silence with a 100 ms raise and 0 s clear: exact frames.
    let signal = mono(2 * SECOND, |n| {
        if n < SECOND {
            0.0
        } else {
            sine_at(n, 1_000.0, -20.0)
        }
    });
    let silence = SilenceConfig {
        timing: Timing::new(Duration::from_millis(100), Duration::ZERO),
        ..SilenceConfig::default()
    };
    let (_, events) = run(only(|c| c.silence = Some(silence)), 1, &signal);
    assert_eq!(
        timeline(&events),
        vec![
            (AlarmKind::Silence, 0, Change::Raised, 4_800),
            (AlarmKind::Silence, 0, Change::Cleared, SECOND + 480),
        ]
    );
}
