//! What the io integration tests share: a private network per test, and child processes that
//! never outlive their test.
#![allow(dead_code)]

use std::process::Child;

use estuary_io::netns::isolate_thread_network;

/// Kills and reaps the child when the test ends, however it ends.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Puts the calling test thread (and what it spawns) in its own network namespace.
pub fn isolate() {
    isolate_thread_network().expect("private network namespace (tests need root / CAP_SYS_ADMIN)");
}

/// Frequency from linearly interpolated rising zero crossings, and peak level in dBFS
/// from the RMS over the whole cycles between the first and last crossing.
pub fn analyse(x: &[f64], fs: f64) -> (f64, f64) {
    let crossings: Vec<f64> = x
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, w)| i as f64 + w[0] / (w[0] - w[1]))
        .collect();
    assert!(
        crossings.len() > 10,
        "no tone: {} crossings",
        crossings.len()
    );
    let (first, last) = (crossings[0], crossings[crossings.len() - 1]);
    let freq = (crossings.len() - 1) as f64 * fs / (last - first);
    let seg = &x[first.ceil() as usize..last.floor() as usize];
    let rms = (seg.iter().map(|v| v * v).sum::<f64>() / seg.len() as f64).sqrt();
    (freq, 20.0 * (rms * 2f64.sqrt()).log10())
}
