//! Meters and loudness checked against reference signals generated here: sines at known dBFS,
//! an inter-sample-peak signal, and EBU Tech 3341 / 3342 style programme sequences.

use core::f64::consts::PI;
use core::time::Duration;

use estuary_engine::monitor::{
    LoudnessGrouping, MeterSnapshot, Monitor, MonitorConfig, MonitorEvent,
};
use estuary_engine::time::MonoTime;

const RATE: u32 = 48_000;
/// Frames per block fed to the monitor (1 ms, as the ingest thread pulls).
const BLOCK: usize = 48;

/// A sine of `freq` Hz at `dbfs` peak, starting at `phase` radians, as MSB-aligned i32.
fn sine(seconds: f64, freq: f64, dbfs: f64, phase: f64) -> Vec<i32> {
    let frames = (seconds * f64::from(RATE)).round() as usize;
    let amplitude = 10f64.powf(dbfs / 20.0) * f64::from(i32::MAX);
    (0..frames)
        .map(|n| {
            let v = amplitude * (2.0 * PI * freq * n as f64 / f64::from(RATE) + phase).sin();
            v.round().clamp(f64::from(i32::MIN), f64::from(i32::MAX)) as i32
        })
        .collect()
}

/// The same mono signal on both channels of an interleaved stereo stream.
fn stereo(mono: &[i32]) -> Vec<i32> {
    mono.iter().flat_map(|&x| [x, x]).collect()
}

/// A stereo sequence of 1 kHz sines: `(seconds, dBFS)` segments, phase continuous.
fn tone_sequence(segments: &[(f64, f64)]) -> Vec<i32> {
    let mut out = Vec::new();
    let mut n0 = 0usize;
    for &(seconds, dbfs) in segments {
        let frames = (seconds * f64::from(RATE)).round() as usize;
        let amplitude = 10f64.powf(dbfs / 20.0) * f64::from(i32::MAX);
        for n in n0..n0 + frames {
            let v = (amplitude * (2.0 * PI * 1_000.0 * n as f64 / f64::from(RATE)).sin()) as i32;
            out.push(v);
            out.push(v);
        }
        n0 += frames;
    }
    out
}

/// Feeds interleaved `frames` in 1 ms blocks with the block's injected time; returns every
/// event.
fn feed(monitor: &mut Monitor, frames: &[i32], start_frame: u64) -> Vec<MonitorEvent> {
    let channels = usize::from(monitor.channels());
    let mut events = Vec::new();
    for (k, block) in frames.chunks(BLOCK * channels).enumerate() {
        let frame = start_frame + (k * BLOCK) as u64;
        let now = MonoTime::from_nanos(frame * 1_000_000_000 / u64::from(RATE));
        events.extend_from_slice(monitor.process(now, block));
    }
    events
}

fn meter_only() -> MonitorConfig {
    MonitorConfig::meters_only()
}

fn snapshot_after(config: MonitorConfig, frames: &[i32], channels: u16) -> MeterSnapshot {
    let mut m = Monitor::new(channels, RATE, config).expect("valid config");
    feed(&mut m, frames, 0);
    m.snapshot()
}

fn assert_db(what: &str, measured: f64, expected: f64, tolerance: f64) {
    println!("{what}: measured {measured:.3}, expected {expected:.3}");
    assert!(
        (measured - expected).abs() <= tolerance,
        "{what}: measured {measured}, expected {expected} ± {tolerance}"
    );
}

#[test]
fn full_scale_sine_is_0_dbfs_peak_and_minus_3_01_rms() {
    let s = snapshot_after(meter_only(), &sine(1.0, 1_000.0, 0.0, 0.0), 1);
    let c = s.channels[0];
    assert_db("peak", c.peak, 0.0, 0.1);
    assert_db("rms", c.rms, -3.0103, 0.1);
    assert_db("true peak", c.true_peak, 0.0, 0.1);
    assert_db("peak max", c.peak_max, 0.0, 0.1);
}

#[test]
fn sines_at_known_levels_read_their_level() {
    for dbfs in [-6.0, -20.0, -40.0, -60.0] {
        // 997 Hz (not a divisor of the rate) so the samples walk over the whole waveform.
        let s = snapshot_after(meter_only(), &sine(1.0, 997.0, dbfs, 0.3), 1);
        let c = s.channels[0];
        assert_db("peak", c.peak, dbfs, 0.1);
        assert_db("rms", c.rms, dbfs - 3.0103, 0.1);
        assert_db("true peak", c.true_peak, dbfs, 0.1);
    }
}

#[test]
fn quarter_rate_sine_at_45_degrees_has_a_true_peak_3_db_above_its_samples() {
    // fs/4 with a 45° phase: every sample is ±0.7071 (−3.01 dBFS) while the waveform
    // between them reaches full scale (BS.1770-4 Annex 2 is there to see this).
    // 3 s, read through the peak-hold: the onset from silence is a real step whose
    // interpolated overshoot (+0.08 dB, in `true_peak_max`) has decayed from the display by
    // then, leaving the steady-state reading.
    let s = snapshot_after(meter_only(), &sine(3.0, 12_000.0, 0.0, PI / 4.0), 1);
    let c = s.channels[0];
    assert_db("sample peak", c.peak, -3.0103, 0.1);
    assert_db("true peak", c.true_peak, 0.0, 0.1);
    assert_db("true peak max (onset)", c.true_peak_max, 0.0, 0.1);
}

#[test]
fn peak_hold_holds_1_5_s_then_falls_20_db_per_second() {
    let mut m = Monitor::new(1, RATE, meter_only()).expect("valid config");
    feed(&mut m, &sine(1.0, 1_000.0, -6.0, 0.0), 0);
    // Digital silence from t = 1 s: the held −6 dB stays for 1.5 s, then falls.
    let silence = vec![0; RATE as usize / 2];
    let mut at = u64::from(RATE);
    let mut displayed = Vec::new();
    for _ in 0..6 {
        feed(&mut m, &silence, at);
        at += silence.len() as u64;
        displayed.push(m.snapshot().channels[0].peak);
    }
    // At 1.5, 2.0, 2.5 (hold ends), 3.0, 3.5, 4.0 s.
    let expected = [-6.0, -6.0, -6.0, -16.0, -26.0, -36.0];
    for (d, e) in displayed.iter().zip(expected) {
        assert_db("held peak", *d, e, 0.1);
    }
    assert_eq!(m.snapshot().channels[0].rms, f64::NEG_INFINITY);
}

fn loudness_of(segments: &[(f64, f64)]) -> estuary_engine::monitor::loudness::LoudnessLevels {
    let config = MonitorConfig {
        loudness: LoudnessGrouping::Pairs,
        ..meter_only()
    };
    snapshot_after(config, &tone_sequence(segments), 2).loudness[0].levels
}

#[test]
fn tech_3341_case_1_and_2_steady_sines() {
    for level in [-23.0, -33.0] {
        let l = loudness_of(&[(20.0, level)]);
        assert_db("momentary", l.momentary, level, 0.1);
        assert_db("short-term", l.short_term, level, 0.1);
        assert_db("integrated", l.integrated, level, 0.1);
    }
}

#[test]
fn tech_3341_case_3_and_4_relative_and_absolute_gates() {
    let l = loudness_of(&[(10.0, -36.0), (60.0, -23.0), (10.0, -36.0)]);
    assert_db("integrated (case 3)", l.integrated, -23.0, 0.1);
    let l = loudness_of(&[
        (10.0, -72.0),
        (10.0, -36.0),
        (60.0, -23.0),
        (10.0, -36.0),
        (10.0, -72.0),
    ]);
    assert_db("integrated (case 4)", l.integrated, -23.0, 0.1);
}

#[test]
fn tech_3341_case_5_alternating_levels() {
    let l = loudness_of(&[(20.0, -26.0), (20.1, -20.0), (20.0, -26.0)]);
    assert_db("integrated (case 5)", l.integrated, -23.0, 0.1);
}

#[test]
fn tech_3342_loudness_range_cases() {
    let cases: [(&[(f64, f64)], f64); 4] = [
        (&[(20.0, -20.0), (20.0, -30.0)], 10.0),
        (&[(20.0, -20.0), (20.0, -15.0)], 5.0),
        (&[(20.0, -40.0), (20.0, -20.0)], 20.0),
        (
            &[
                (20.0, -50.0),
                (20.0, -35.0),
                (20.0, -20.0),
                (20.0, -35.0),
                (20.0, -50.0),
            ],
            15.0,
        ),
    ];
    for (segments, lra) in cases {
        let l = loudness_of(segments);
        assert_db("LRA", l.range, lra, 0.1);
    }
}

#[test]
fn loudness_groups_are_independent() {
    // Four channels: pair (0,1) at −23 dBFS, pair (2,3) at −33 dBFS.
    let a = sine(5.0, 1_000.0, -23.0, 0.0);
    let b = sine(5.0, 1_000.0, -33.0, 0.0);
    let frames: Vec<i32> = a.iter().zip(&b).flat_map(|(&x, &y)| [x, x, y, y]).collect();
    let s = snapshot_after(meter_only(), &frames, 4);
    assert_eq!(s.loudness.len(), 2);
    assert_eq!(
        (s.loudness[1].first_channel, s.loudness[1].channels),
        (2, 2)
    );
    assert_db("pair 0", s.loudness[0].levels.short_term, -23.0, 0.1);
    assert_db("pair 1", s.loudness[1].levels.short_term, -33.0, 0.1);
    assert_db("ch 3 rms", s.channels[3].rms, -36.01, 0.1);
}

#[test]
fn digital_silence_reads_minus_infinity() {
    let s = snapshot_after(meter_only(), &vec![0; 2 * RATE as usize], 2);
    assert_eq!(s.channels[0].peak, f64::NEG_INFINITY);
    assert_eq!(s.channels[0].rms, f64::NEG_INFINITY);
    assert_eq!(s.loudness[0].levels.integrated, f64::NEG_INFINITY);
    assert_eq!(s.frames, u64::from(RATE));
}

#[test]
fn block_size_does_not_change_the_readings() {
    let frames = stereo(&sine(2.0, 997.0, -12.0, 0.0));
    let mut a = Monitor::new(2, RATE, MonitorConfig::default()).expect("valid config");
    let mut b = Monitor::new(2, RATE, MonitorConfig::default()).expect("valid config");
    a.process(MonoTime::ZERO, &frames);
    for block in frames.chunks(2 * 37) {
        b.process(MonoTime::ZERO, block);
    }
    let (a, b) = (a.snapshot(), b.snapshot());
    assert_eq!(a.channels[0].peak, b.channels[0].peak);
    assert!((a.channels[0].rms - b.channels[0].rms).abs() < 1e-9);
    assert!((a.loudness[0].levels.momentary - b.loudness[0].levels.momentary).abs() < 1e-9);
    let _ = Duration::ZERO;
}

/// Not a test of speed (no timing is asserted): prints the cost per frame per channel.
#[test]
#[ignore = "micro-benchmark; run with --ignored --nocapture in release"]
fn bench_monitor_ns_per_frame_per_channel() {
    for channels in [2u16, 8] {
        let mono = sine(1.0, 997.0, -12.0, 0.0);
        let frames: Vec<i32> = mono
            .iter()
            .flat_map(|&x| std::iter::repeat_n(x, usize::from(channels)))
            .collect();
        let mut m = Monitor::new(channels, RATE, MonitorConfig::default()).expect("valid config");
        let rounds = 10;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            feed(&mut m, &frames, 0);
        }
        let ns = start.elapsed().as_nanos() as f64
            / (rounds as f64 * mono.len() as f64 * f64::from(channels));
        println!("{channels} channels: {ns:.1} ns per frame per channel");
    }
}

#[test]
fn other_sample_rates_read_the_same_levels() {
    // 44.1 kHz (441-frame windows, 4× true peak) and 96 kHz (2× true peak).
    for rate in [44_100u32, 96_000] {
        let amplitude = 10f64.powf(-10.0 / 20.0) * f64::from(i32::MAX);
        let at = |n: u32, freq: f64, phase: f64| {
            (amplitude * (2.0 * PI * freq * f64::from(n) / f64::from(rate) + phase).sin()).round()
                as i32
        };
        let tone: Vec<i32> = (0..rate).map(|n| at(n, 997.0, 0.3)).collect();
        let mut m = Monitor::new(1, rate, meter_only()).expect("valid config");
        m.process(MonoTime::ZERO, &tone);
        let c = m.snapshot().channels[0];
        assert_db("peak", c.peak, -10.0, 0.1);
        assert_db("rms", c.rms, -13.0103, 0.1);
        assert_db("true peak", c.true_peak, -10.0, 0.1);
        // fs/4 at 45°: samples 3 dB under the true peak, read through the peak-hold as above.
        let quarter: Vec<i32> = (0..3 * rate)
            .map(|n| at(n, f64::from(rate) / 4.0, PI / 4.0))
            .collect();
        let mut m = Monitor::new(1, rate, meter_only()).expect("valid config");
        m.process(MonoTime::ZERO, &quarter);
        let c = m.snapshot().channels[0];
        assert_db("fs/4 sample peak", c.peak, -13.0103, 0.1);
        assert_db("fs/4 true peak", c.true_peak, -10.0, 0.1);
    }
}
