//! `[clock] mode = "external"` against real linuxptp: a `ptp4l` grandmaster on one end of a
//! veth pair, a `ptp4l -s` follower on the other end with its management socket, and the
//! `estuary` daemon reading that follower's state. Checked: the lock, the grandmaster's
//! identity (API and AES67 SDP), offsets that are ptp4l's own (found in its log), and the
//! unlock plus `clock_unlocked` alarm when the grandmaster is killed; and an input whose SDP
//! `ts-refclk` names another grandmaster is flagged, one naming ptp4l's is not.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use estuary_io::netns::PeerNamespace;
use estuary_io::ptp4l::{Ptp4l, Ptp4lOptions, identity_from_mac};

const API: &str = "http://127.0.0.1:8482";

fn get_json(path: &str) -> serde_json::Value {
    api_json(API, path)
}

fn wait_for(
    what: &str,
    timeout: Duration,
    estuary: &Proc,
    path: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for_json((API, path), what, timeout, estuary, check)
}

#[test]
fn follows_the_hosts_ptp4l_and_alarms_when_its_grandmaster_goes() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = PeerNamespace::create("estx").expect("veth pair");
    let mut gm = Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        Ptp4lOptions::default(),
        dir.path(),
    )
    .expect("ptp4l grandmaster");
    let follower = Ptp4l::spawn(
        Command::new("ptp4l"),
        PeerNamespace::LOCAL_INTERFACE,
        Ptp4lOptions {
            follower: true,
            declare_slave: true,
            ..Ptp4lOptions::default()
        },
        dir.path(),
    )
    .expect("ptp4l follower");
    let mac = ns
        .command("cat")
        .arg(format!(
            "/sys/class/net/{}/address",
            PeerNamespace::PEER_INTERFACE
        ))
        .output()
        .expect("the grandmaster's MAC");
    let gm_id = estuary_io::ptp::format_identity(
        &identity_from_mac(&String::from_utf8_lossy(&mac.stdout)).expect("MAC"),
    );
    let sdp = dir.path().join("tx.sdp");
    let input_sdp = |name: &str, port: u16, gm: &str| {
        format!(
            "[[inputs]]\nname = \"{name}\"\nkind = \"aes67\"\nmeters = false\nsdp = '''\n\
             v=0\no=- {port} 1 IN IP4 127.0.0.1\ns={name}\nc=IN IP4 127.0.0.1\nt=0 0\n\
             m=audio {port} RTP/AVP 96\na=rtpmap:96 L24/48000/2\na=ptime:1\n\
             a=ts-refclk:ptp=IEEE1588-2008:{gm}:0\na=mediaclk:direct=0\n'''\n\n"
        )
    };
    let inputs =
        input_sdp("foreign", 5020, "00-1D-C1-FF-FE-99-99-99") + &input_sdp("ours", 5022, &gm_id);
    let estuary = start_estuary(
        dir.path(),
        &format!(
            "[api]\nbind = \"127.0.0.1:8482\"\n[discovery]\nsap = false\nravenna = false\n\n\
             [clock]\nmode = \"external\"\nptp4l_socket = \"{}\"\n\n\
             [alarms]\n[[alarms.rules]]\nname = \"clock\"\ncondition = \"clock_unlocked\"\n\
             raise_after = \"1s\"\nseverity = \"critical\"\nnotify = []\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = 2\nmeters = false\n\n{inputs}\
             [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gen\"\n\
             address = \"127.0.0.1:5010\"\nsap = false\nsdp_file = \"{}\"\n",
            follower.uds_path().display(),
            sdp.display()
        ),
    );

    let clock = wait_for(
        "the lock",
        Duration::from_secs(60),
        &estuary,
        "/api/clock",
        |c| c["ptp"]["state"] == "locked",
    );
    assert_eq!(clock["source"], "ptp-external", "{clock}");
    assert_eq!(clock["ptp_locked"], true, "{clock}");
    assert_eq!(clock["ptp"]["port_state"], "slave", "{clock}");
    assert_eq!(clock["ptp"]["grandmaster"], gm_id.as_str(), "{clock}");
    assert_eq!(clock["ptp"]["steps_removed"], 1, "{clock}");

    // The offsets Estuary reports are ptp4l's own measurements: each one is in its log.
    let mut reported = Vec::new();
    for _ in 0..12 {
        let c = get_json("/api/clock");
        if let Some(o) = c["ptp"]["offset_ns"].as_f64() {
            reported.push(o as i64);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_millis(300));
    let logged = follower.master_offsets_ns();
    assert!(reported.len() >= 10, "offsets: {reported:?}");
    for o in &reported {
        assert!(
            logged.contains(o),
            "Estuary reported an offset ptp4l never logged: {o} not in {logged:?}"
        );
    }
    let clock = get_json("/api/clock");
    let jitter = &clock["ptp"]["jitter"];
    let max_logged = logged.iter().map(|o| o.abs()).max().unwrap_or(0) as f64;
    assert!(
        jitter["samples"].as_u64() >= Some(8)
            && jitter["max_abs_ns"]
                .as_f64()
                .is_some_and(|m| m <= max_logged),
        "jitter {jitter} against ptp4l's largest |offset| {max_logged}"
    );
    let delay = clock["ptp"]["mean_path_delay_ns"].as_f64().expect("delay");
    assert!(delay > 0.0 && delay < 1_000_000.0, "path delay {delay}");
    println!(
        "external mode: {} offsets, all in ptp4l's log; jitter {jitter}; path delay {delay} ns",
        reported.len()
    );

    // Inputs timed by another grandmaster are flagged; the one on ptp4l's is not.
    let status = get_json("/api/status");
    let input = |name: &str| {
        status["inputs"]
            .as_array()
            .and_then(|a| a.iter().find(|i| i["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("input {name}: {status}"))
    };
    assert!(
        input("foreign")["clock_mismatch"]
            .as_str()
            .is_some_and(|m| m.contains("00-1D-C1-FF-FE-99-99-99") && m.contains(&gm_id)),
        "{}",
        input("foreign")
    );
    assert!(
        input("ours")["clock_mismatch"].is_null(),
        "{}",
        input("ours")
    );
    let refs = &status["clock"]["stream_references"];
    assert_eq!(
        refs.as_array().map(|r| r
            .iter()
            .map(|x| (x["input"].as_str(), x["mismatch"].as_bool()))
            .collect::<Vec<_>>()),
        Some(vec![
            (Some("foreign"), Some(true)),
            (Some("ours"), Some(false))
        ]),
        "{refs}"
    );

    // PTP-timed AES67 output: the SDP names ptp4l's grandmaster.
    let refclk = format!("a=ts-refclk:ptp=IEEE1588-2008:{gm_id}:0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&sdp).is_ok_and(|t| t.contains(&refclk)) {
        assert!(
            Instant::now() < deadline,
            "the SDP never named the grandmaster: {:?}",
            std::fs::read_to_string(&sdp)
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The grandmaster goes: ptp4l's slave-only port listens again after its announce
    // timeout (3 s), Estuary unlocks and raises the alarm.
    gm.kill();
    let clock = wait_for(
        "the unlock",
        Duration::from_secs(20),
        &estuary,
        "/api/clock",
        |c| c["ptp"]["state"] != "locked",
    );
    assert_eq!(clock["ptp_locked"], false, "{clock}");
    assert!(clock["ptp"]["lock_losses"].as_u64() >= Some(1), "{clock}");
    let status = wait_for(
        "the clock_unlocked alarm",
        Duration::from_secs(15),
        &estuary,
        "/api/status",
        |s| {
            s["alarms"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["condition"] == "clock_unlocked"))
        },
    );
    assert!(
        status["clock"]["ptp"]["bmca_changes"].as_u64() >= Some(1),
        "{}",
        status["clock"]
    );
}
