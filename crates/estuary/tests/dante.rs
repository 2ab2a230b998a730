//! Estuary as a Dante device (unofficial implementation), driven by netaudio 0.4.2, an
//! independent Dante controller (installed by `scripts/deps.sh test` into
//! /opt/estuary-venv). Two Estuary devices on one host (the second on another ARC port), in
//! a private network namespace.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Proc, isolate, run_with_timeout};

const NETAUDIO: &str = "/opt/estuary-venv/bin/netaudio";

fn device_config(dir: &Path, name: &str, arc_port: u16, api_port: u16) -> String {
    format!(
        "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:{api_port}\"\n\n\
         [dante]\nname = \"{name}\"\naddress = \"127.0.0.1\"\ntx_channels = 4\nrx_channels = 6\n\
         arc_port = {arc_port}\nstate_file = \"{}\"\n",
        dir.join(format!("{name}.json")).display()
    )
}

fn start_device(dir: &Path, name: &str, arc_port: u16, api_port: u16) -> Proc {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, device_config(dir, name, arc_port, api_port)).expect("config");
    let mut cmd = Command::new(common::ESTUARY);
    cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "info");
    let mut p = Proc::spawn(name, &mut cmd, dir);
    p.wait_for_stderr("Dante device published", Duration::from_secs(20));
    p
}

/// Runs netaudio with JSON output; returns the parsed document (panics with its stderr).
fn netaudio(args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(NETAUDIO);
    cmd.args(["--timeout", "2", "-o", "json"]).args(args);
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(status.success(), "netaudio {args:?} failed: {stderr}");
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "netaudio {args:?} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

fn netaudio_ok(args: &[&str]) {
    let mut cmd = Command::new(NETAUDIO);
    cmd.args(["--timeout", "2"]).args(args);
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(
        status.success(),
        "netaudio {args:?} failed: {}{stderr}",
        String::from_utf8_lossy(&stdout)
    );
}

/// The subscriptions netaudio lists as (rx channel, rx device, tx channel, tx device,
/// state), waiting until `done` holds (controllers see changes within a few seconds).
fn subscriptions_until(
    done: impl Fn(&[(u64, String, String, String, String)]) -> bool,
) -> Vec<(u64, String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = netaudio(&["subscription", "list"]);
        let rows: Vec<_> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["rx_channel_number"].as_u64().unwrap_or(0),
                            s["rx_device"].as_str().unwrap_or("").to_owned(),
                            s["tx_channel"].as_str().unwrap_or("").to_owned(),
                            s["tx_device"].as_str().unwrap_or("").to_owned(),
                            s["status"]["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn netaudio_lists_routes_and_unroutes_estuary_devices_and_routes_survive_a_restart() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let _a = start_device(dir.path(), "Estuary-A", 4440, 18480);
    let mut b = start_device(dir.path(), "Estuary-B", 4441, 18481);

    // Both devices, with their channel counts and names, as a controller sees them (mDNS
    // answers may take a moment after start).
    let deadline = Instant::now() + Duration::from_secs(30);
    let channels = loop {
        let channels = netaudio(&["channel", "list"]);
        let found = ["Estuary-A", "Estuary-B"]
            .iter()
            .all(|d| channels[format!("{d}.local.")].is_object());
        if found || Instant::now() > deadline {
            break channels;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for device in ["Estuary-A", "Estuary-B"] {
        let d = &channels[format!("{device}.local.")];
        assert_eq!(d["name"], device, "{channels:#}");
        let tx = d["tx_channels"].as_object().expect("tx channels");
        let rx = d["rx_channels"].as_object().expect("rx channels");
        assert_eq!(tx.len(), 4, "{d:#}");
        assert_eq!(rx.len(), 6, "{d:#}");
        assert_eq!(tx["02"]["number"], 2);
        assert_eq!(rx["06"]["number"], 6);
    }

    // Route A's TX 02 to B's RX 1: B reports it (unresolved: no audio flows yet).
    netaudio_ok(&[
        "subscription",
        "add",
        "--tx",
        "2@Estuary-A",
        "--rx",
        "1@Estuary-B",
    ]);
    let rows = subscriptions_until(|r| !r.is_empty());
    assert_eq!(
        rows,
        [(
            1,
            "Estuary-B".to_owned(),
            "02".to_owned(),
            "Estuary-A".to_owned(),
            "unresolved".to_owned()
        )]
    );

    // The route is kept across a restart of B.
    b.terminate(Duration::from_secs(10));
    let saved = std::fs::read_to_string(dir.path().join("Estuary-B.json")).expect("state file");
    assert!(saved.contains("Estuary-A"), "{saved}");
    let _b = start_device(dir.path(), "Estuary-B", 4441, 18481);
    let rows = subscriptions_until(|r| r.len() == 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].2.as_str()), (1, "02"));

    // Removing it clears B's RX 1.
    netaudio_ok(&["subscription", "remove", "--rx", "1@Estuary-B"]);
    let rows = subscriptions_until(<[_]>::is_empty);
    assert!(rows.is_empty(), "{rows:?}");
}

#[test]
fn a_bad_dante_name_is_refused_with_its_field_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[dante]\naddress = \"127.0.0.1\"\nname = \"has spaces\"\n",
    )
    .expect("config");
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(common::ESTUARY).arg("check-config").arg(&path),
        Duration::from_secs(20),
    );
    let text = format!("{}{stderr}", String::from_utf8_lossy(&stdout));
    assert_eq!(status.code(), Some(3), "{text}");
    assert!(text.contains("bad.toml:3: dante.name"), "{text}");
}
