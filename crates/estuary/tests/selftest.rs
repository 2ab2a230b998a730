//! `estuary selftest platform` as CI runs it: 8 channels, a few seconds, in a private
//! network namespace. It must say OK and exit 0, with every sample checked.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

#[test]
fn platform_selftest_passes_with_8_channels() {
    isolate();
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(ESTUARY).args([
            "selftest",
            "platform",
            "--format",
            "L24",
            "--rate",
            "48000",
            "--channels",
            "8",
            "--duration",
            "4s",
            "--latency",
            "20ms",
        ]),
        Duration::from_secs(60),
    );
    let out = String::from_utf8_lossy(&stdout);
    assert!(status.success(), "selftest failed:\n{out}\n{stderr}");
    assert!(out.lines().any(|l| l == "OK"), "{out}");
    let checked: u64 = out
        .split(" frames checked")
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame count in:\n{out}"));
    // 4 s at 48 kHz, less the start and the end.
    assert!(checked > 150_000, "only {checked} frames checked:\n{out}");
}
