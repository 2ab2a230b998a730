//! Cost of `Monitor::process` on a realistic 64-channel input (tone plus noise per channel),
//! with every detector on and with `MonitorConfig::meters_only()`. Not a test of speed (no
//! timing is asserted); run with
//! `cargo test --release -p estuary-engine --test meters_cost -- --ignored --nocapture`.

use core::f64::consts::PI;
use std::time::Instant;

use estuary_engine::monitor::{Monitor, MonitorConfig};
use estuary_engine::time::MonoTime;

const RATE: u32 = 48_000;
const BLOCK: usize = 48;

/// `seconds` of `channels` interleaved: each channel a sine (its own frequency and level)
/// plus white noise at −50 dBFS from a small xorshift generator.
fn programme(channels: usize, seconds: usize) -> Vec<i32> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let frames = seconds * RATE as usize;
    let mut out = Vec::with_capacity(frames * channels);
    for n in 0..frames {
        let t = n as f64 / f64::from(RATE);
        for c in 0..channels {
            let freq = 200.0 + 97.0 * c as f64;
            let level = 10f64.powf((-12.0 - (c % 8) as f64 * 2.0) / 20.0);
            let v = level * (2.0 * PI * freq * t).sin() + 0.003 * noise();
            out.push((v * f64::from(i32::MAX)) as i32);
        }
    }
    out
}

fn ns_per_channel_frame(config: MonitorConfig, channels: u16, audio: &[i32]) -> f64 {
    let ch = usize::from(channels);
    let mut m = Monitor::new(channels, RATE, config).expect("valid config");
    // Warm-up: one pass, so every window ring and gate is in its steady state.
    for block in audio.chunks(BLOCK * ch) {
        std::hint::black_box(m.process(MonoTime::ZERO, block));
    }
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        for block in audio.chunks(BLOCK * ch) {
            std::hint::black_box(m.process(MonoTime::ZERO, block));
        }
        let ns = start.elapsed().as_nanos() as f64 / (audio.len() as f64);
        best = best.min(ns);
    }
    best
}

#[test]
#[ignore = "micro-benchmark; run with --ignored --nocapture in release"]
fn cost_64_channels() {
    let channels = 64u16;
    let audio = programme(usize::from(channels), 2);
    let default = ns_per_channel_frame(MonitorConfig::default(), channels, &audio);
    let meters = ns_per_channel_frame(MonitorConfig::meters_only(), channels, &audio);
    println!("64 ch default: {default:.2} ns per channel-frame");
    println!("64 ch meters_only: {meters:.2} ns per channel-frame");
}
