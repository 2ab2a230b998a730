//! The monitor's K-weighting runs in `f32` sections across channel lanes; this checks it
//! against BS.1770's published 48 kHz coefficients run in `f64` direct form II (as `ebur128`
//! and libebur128 do), where `f32` would hurt most: low frequencies near the 38 Hz high-pass
//! and quiet signals.

use estuary_engine::monitor::{LoudnessGrouping, Monitor, MonitorConfig};
use estuary_engine::time::MonoTime;

/// Loudness of the last 400 ms of `x` (full scale 1.0) through the `f64` reference filter.
fn reference(x: &[f64]) -> f64 {
    let (b, a) = (
        [1.53512485958697, -2.69169618940638, 1.19839281085285],
        [1.0, -1.69065929318241, 0.73248077421585],
    );
    let (hb, ha) = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621]);
    let (mut s1, mut s2, mut t1, mut t2) = (0.0, 0.0, 0.0, 0.0);
    let mut e = 0.0;
    let n = x.len();
    for (i, &v) in x.iter().enumerate() {
        let w = v - a[1] * s1 - a[2] * s2;
        let y = b[0] * w + b[1] * s1 + b[2] * s2;
        s2 = s1;
        s1 = w;
        let w2 = y - ha[1] * t1 - ha[2] * t2;
        let z = hb[0] * w2 + hb[1] * t1 + hb[2] * t2;
        t2 = t1;
        t1 = w2;
        if i >= n - 19200 {
            e += z * z;
        }
    }
    10.0 * (e / 19200.0).log10() - 0.691
}

#[test]
fn f32_k_weighting_matches_the_f64_reference() {
    for (f, db) in [
        (997.0, -20.0),
        (40.0, -20.0),
        (20.0, -40.0),
        (10000.0, -60.0),
        (100.0, -80.0),
        (15.0, -10.0),
    ] {
        let amp = 10f64.powf(db / 20.0);
        let x: Vec<f64> = (0..96000)
            .map(|n| amp * (2.0 * std::f64::consts::PI * f * n as f64 / 48000.0).sin())
            .collect();
        let q: Vec<i32> = x
            .iter()
            .map(|v| ((v * i32::MAX as f64) as i32) & !0xff)
            .collect();
        let xq: Vec<f64> = q.iter().map(|&v| v as f64 / i32::MAX as f64).collect();
        let mut m = Monitor::new(
            1,
            48000,
            MonitorConfig {
                loudness: LoudnessGrouping::Mono,
                ..MonitorConfig::meters_only()
            },
        )
        .expect("valid config");
        m.process(MonoTime::ZERO, &q);
        let s = m.snapshot();
        let (got, want) = (s.loudness[0].levels.momentary, reference(&xq));
        assert!(
            (got - want).abs() < 0.001,
            "{f} Hz at {db} dBFS: momentary {got:.5} LUFS, reference {want:.5}"
        );
    }
}
