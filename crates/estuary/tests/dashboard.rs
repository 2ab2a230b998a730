//! The dashboard in a real browser: Debian's Chromium, driven by playwright-core
//! (`tests/dashboard/e2e.mjs`), against `estuary run` and an `estuary send` tone announced over
//! SAP, in a private network namespace. The script adds the discovered stream with one click,
//! reads the meters, adds an SRT output through the form, sees a receiver connect, trips an
//! alarm by stopping the tone, and saves screenshots of every page (desktop and 375 px) to
//! `<target>/dashboard-screenshots/`.
//!
//! Skipped (with a message) when not root or when the browser tooling is missing:
//! `scripts/deps.sh test` installs it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const API: &str = "127.0.0.1:8480";
const STREAM: &str = "E2E Studio Tone";
const TONE_PEAK_DBFS: &str = "-18";

fn e2e_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/dashboard")
}

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root for a private network namespace".into());
    }
    // The test command installs these; a machine without them must not pass silently.
    for tool in ["node", "chromium", "srt-live-transmit"] {
        assert!(
            have(tool),
            "{tool} is not installed: run scripts/deps.sh test"
        );
    }
    assert!(
        e2e_dir().join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/deps.sh test"
    );
    None
}

fn wait_for_port(addr: &str, estuary: &mut Proc) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = estuary.child.try_wait() {
            panic!("estuary exited ({status}):\n{}", estuary.stderr());
        }
        assert!(
            Instant::now() < deadline,
            "the API did not listen on {addr}:\n{}",
            estuary.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a free UDP port")
        .port()
}

#[test]
fn the_dashboard_runs_the_gateway_in_chromium() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skipping the dashboard browser test: {why}");
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);

    // Nothing configured: the stream is found and added from the browser. SAP arrives by
    // unicast on loopback, as in `estuary demo`.
    // A silence rule short enough for a test: stopping the tone must raise it.
    let config = format!(
        "[api]\nbind = \"{API}\"\n\n[discovery]\nsap_groups = []\nravenna = false\n\n\
         [[alarms.rules]]\nname = \"programme silent\"\ncondition = \"silence\"\n\
         threshold = -60.0\nraise_after = \"2s\"\nseverity = \"warning\"\n\n\
         [[alarms.rules]]\nname = \"no packets\"\ncondition = \"no_packets\"\nseverity = \"critical\"\n"
    );
    let mut estuary = start_estuary(dir.path(), &config);
    wait_for_port(API, &mut estuary);

    let mut cmd = Command::new(ESTUARY);
    cmd.args(["send", "--to", "127.0.0.1:5004", "--no-ravenna"])
        .args(["--sap-dest", "127.0.0.1:9875", "--sap-interval", "1s"])
        .args([
            "--name",
            STREAM,
            "--frequency",
            "1000",
            "--level",
            TONE_PEAK_DBFS,
        ]);
    let sender = Proc::spawn("send", &mut cmd, dir.path());

    let srt_port = free_udp_port();
    let (status, out, err) = run_with_timeout(
        Command::new("node")
            .arg(e2e_dir().join("e2e.mjs"))
            .arg(format!("http://{API}/"))
            .env("E2E_STREAM", STREAM)
            .env("E2E_TONE_PEAK", TONE_PEAK_DBFS)
            .env("E2E_SRT_PORT", srt_port.to_string())
            .env("E2E_SENDER_PID", sender.child.id().to_string())
            .env("E2E_OUT", &shots),
        Duration::from_secs(300),
    );
    let out = String::from_utf8_lossy(&out);
    eprintln!("{out}{err}");
    assert!(
        status.success(),
        "the dashboard browser test failed ({status}):\n{out}{err}\n--- estuary ---\n{}",
        estuary.stderr()
    );
    for page in [
        "overview", "streams", "inputs", "outputs", "routing", "alarms",
    ] {
        for width in ["desktop", "phone"] {
            let png = shots.join(format!("{page}-{width}.png"));
            assert!(png.is_file(), "no screenshot {}", png.display());
        }
    }
    estuary.terminate(Duration::from_secs(10));
}
