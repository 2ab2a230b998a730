//! The `[clock]` section end to end: the `estuary` daemon as PTP follower of linuxptp's
//! `ptp4l` (software timestamps) and as grandmaster that `ptp4l -s` follows, across a veth
//! pair between two network namespaces. The follower's AES67 output must carry PTP time
//! in its RTP timestamps and name ptp4l's grandmaster in its SDP.

mod common;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::*;
use estuary_io::clock::realtime_now_ns;
use estuary_io::netns::PeerNamespace;
use estuary_io::ptp4l::{Ptp4l, Ptp4lOptions};

const API: &str = "http://127.0.0.1:8480";
const RATE: i64 = 48_000;

fn get_json(path: &str) -> serde_json::Value {
    api_json(API, path)
}

fn wait_for_clock(
    what: &str,
    timeout: Duration,
    estuary: &Proc,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for_json((API, "/api/clock"), what, timeout, estuary, check)
}

#[test]
fn follows_ptp4l_and_stamps_aes67_with_ptp_time() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ns, _gm) = ptp4l_grandmaster("estf", dir.path());
    let gm = peer_identity(&ns);
    let rx = UdpSocket::bind("127.0.0.1:5008").expect("RTP receiver");
    rx.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let sdp = dir.path().join("tx.sdp");
    let estuary = start_estuary(
        dir.path(),
        &format!(
            "[api]\nbind = \"127.0.0.1:8480\"\n[discovery]\nsap = false\nravenna = false\n\n\
             [clock]\nmode = \"follower\"\ninterface = \"{}\"\ndomain = 0\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = 2\nmeters = false\n\n\
             [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gen\"\n\
             address = \"127.0.0.1:5008\"\nsap = false\nsdp_file = \"{}\"\n",
            PeerNamespace::LOCAL_INTERFACE,
            sdp.display()
        ),
    );
    let clock = wait_for_clock("the PTP lock", Duration::from_secs(60), &estuary, |c| {
        c["ptp"]["state"] == "locked"
    });
    assert_eq!(clock["source"], "ptp-follower", "{clock}");
    assert_eq!(clock["ptp_locked"], true, "{clock}");
    assert_eq!(clock["ptp"]["grandmaster"], gm.as_str(), "{clock}");
    assert_eq!(clock["ptp"]["port_state"], "slave", "{clock}");

    // ptp4l stamps from the host clock we read too: PTP time − host UTC, less its whole
    // seconds (the TAI−UTC offset of the timescale), is the follower's error.
    let mut errors = Vec::new();
    let mut whole_s = 0;
    for _ in 0..20 {
        let c = get_json("/api/clock");
        let d = c["ptp"]["ptp_minus_utc_ns"]
            .as_f64()
            .expect("ptp_minus_utc_ns") as i64;
        whole_s = (d + 500_000_000).div_euclid(1_000_000_000);
        errors.push(d - whole_s * 1_000_000_000);
        std::thread::sleep(Duration::from_millis(100));
    }
    errors.sort_by_key(|e| e.abs());
    let clock = get_json("/api/clock");
    println!(
        "Estuary following ptp4l: PTP − host clock error p50 {} ns, max {} ns; servo jitter {}; \
         path delay {} ns",
        errors[errors.len() / 2],
        errors[errors.len() - 1],
        clock["ptp"]["jitter"],
        clock["ptp"]["mean_path_delay_ns"]
    );
    assert!(
        errors[errors.len() - 1].abs() < 250_000,
        "PTP time off ptp4l's by {errors:?} ns"
    );

    // The SDP names ptp4l's grandmaster once the output rebased onto PTP time.
    let refclk = format!("a=ts-refclk:ptp=IEEE1588-2008:{gm}:0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&sdp).is_ok_and(|t| t.contains(&refclk)) {
        assert!(
            Instant::now() < deadline,
            "the SDP never named the grandmaster: {:?}",
            std::fs::read_to_string(&sdp)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Let packets of the old (system clock) timeline drain.
    std::thread::sleep(Duration::from_millis(200));
    let mut buf = [0u8; 1500];
    while rx.set_nonblocking(true).is_ok() && rx.recv(&mut buf).is_ok() {}
    rx.set_nonblocking(false).expect("blocking");

    // RTP time = PTP time × rate: each packet's timestamp against the PTP time it arrived.
    let mut lags = Vec::new();
    let mut last: Option<u32> = None;
    for _ in 0..500 {
        let n = rx.recv(&mut buf).expect("RTP packet");
        let arrived = realtime_now_ns() as i64 + whole_s * 1_000_000_000;
        assert!(n > 12, "short packet");
        let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let expected = (i128::from(arrived) * i128::from(RATE) / 1_000_000_000) as u32;
        lags.push(i64::from(expected.wrapping_sub(ts) as i32));
        if let Some(prev) = last {
            assert_eq!(
                ts.wrapping_sub(prev),
                48,
                "RTP time must advance 48 per 1 ms packet"
            );
        }
        last = Some(ts);
    }
    lags.sort_unstable();
    println!(
        "RTP timestamp behind PTP time at arrival, frames: min {} p50 {} max {}",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    // Packets leave when PTP time reaches their timestamp: they arrive 0 to a few ms later.
    assert!(
        lags[0] >= -2,
        "a packet arrived before its media time: {lags:?}"
    );
    assert!(lags[lags.len() / 2] <= 96, "median lag over 2 ms: {lags:?}");
    let output = &get_json("/api/status")["outputs"][0];
    assert!(
        output["counters"]["clock_rebases"].as_u64() >= Some(1),
        "{output}"
    );
}

#[test]
fn ptp4l_follows_estuary_as_grandmaster() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = PeerNamespace::create("estg").expect("veth pair");
    let estuary = start_estuary(
        dir.path(),
        &format!(
            "[api]\nbind = \"127.0.0.1:8480\"\n[discovery]\nsap = false\nravenna = false\n\n\
             [clock]\nmode = \"grandmaster\"\ninterface = \"{}\"\npriority1 = 100\n\
             priority2 = 110\ndscp = \"EF\"\n",
            PeerNamespace::LOCAL_INTERFACE
        ),
    );
    let mut follower = Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        Ptp4lOptions {
            follower: true,
            ..Ptp4lOptions::default()
        },
        dir.path(),
    )
    .expect("ptp4l");
    let clock = wait_for_clock(
        "the grandmaster role",
        Duration::from_secs(30),
        &estuary,
        |c| c["ptp"]["state"] == "grandmaster",
    );
    let ours = clock["ptp"]["clock_identity"]
        .as_str()
        .expect("identity")
        .to_owned();
    assert_eq!(clock["ptp"]["grandmaster"], ours.as_str(), "{clock}");
    assert_eq!(clock["ptp"]["grandmaster_priority1"], 100, "{clock}");
    assert_eq!(clock["ptp"]["grandmaster_priority2"], 110, "{clock}");
    // ptp4l's first measurements come before it knows the path delay.
    let deadline = Instant::now() + Duration::from_secs(60);
    while follower.master_offsets_ns().len() < 48 {
        assert!(
            Instant::now() < deadline,
            "ptp4l did not follow Estuary: {}\n{}",
            follower.log().join("\n"),
            estuary.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    follower.kill();
    let log = follower.log();
    // ptp4l writes identities as aabbcc.fffe.ddeeff.
    let hex = ours.replace('-', "").to_lowercase();
    let ptp4l_id = format!("{}.{}.{}", &hex[..6], &hex[6..10], &hex[10..]);
    assert!(
        log.iter()
            .any(|l| l.contains("new foreign master") && l.contains(&ptp4l_id)),
        "ptp4l never selected {ptp4l_id}:\n{}",
        log.join("\n")
    );
    let mut offsets = follower.master_offsets_ns().split_off(8);
    offsets.sort_by_key(|o| o.abs());
    println!(
        "ptp4l following Estuary: {} offsets, |offset| p50 {} ns, max {} ns",
        offsets.len(),
        offsets[offsets.len() / 2],
        offsets[offsets.len() - 1]
    );
    assert!(
        offsets[offsets.len() - 1].abs() < 250_000,
        "ptp4l's offset to Estuary: {offsets:?}"
    );
}
