//! Failover on clock unlock, end to end: the `estuary` daemon follows linuxptp's `ptp4l`
//! (grandmaster in a second network namespace, across a veth pair) and receives a main
//! (997 Hz) and a backup (1500 Hz) GStreamer stream; its SRT output is decoded by FFmpeg.
//! Killing the grandmaster unlocks our PTP follower: after `clock_unlocked_after` the backup
//! goes on air; a new grandmaster relocks it, and the main returns after `return_after`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use estuary_io::netns::PeerNamespace;
use estuary_io::ptp4l::{Ptp4l, Ptp4lOptions};

const API: &str = "http://127.0.0.1:8480";

fn get_json(path: &str) -> serde_json::Value {
    api_json(API, path)
}

fn wait_for(what: &str, timeout: Duration, estuary: &Proc, check: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            estuary.stderr()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn clock_state() -> String {
    get_json("/api/clock")["ptp"]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn failover_on_clock_unlock_and_back_once_relocked() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = PeerNamespace::create("estr").expect("veth pair");
    let grandmaster = || {
        Ptp4l::spawn(
            ns.command("ptp4l"),
            PeerNamespace::PEER_INTERFACE,
            Ptp4lOptions::default(),
            dir.path(),
        )
        .expect("ptp4l")
    };
    let mut gm = grandmaster();
    let config = format!(
        "[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
         [api]\nbind = \"127.0.0.1:8480\"\n\n\
         [clock]\nmode = \"follower\"\ninterface = \"{}\"\n\n\
         [[inputs]]\nname = \"main\"\nkind = \"aes67\"\naddress = \"127.0.0.1:5004\"\n\
         format = \"L24\"\nchannels = 2\npayload_type = 98\nlatency = \"40ms\"\nmeters = false\n\
         failover = {{ backup = \"127.0.0.1:5006\", clock_unlocked_after = \"500ms\", \
         return_after = \"2s\", crossfade = \"10ms\" }}\n\n\
         [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"main\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"pcm\"\n",
        PeerNamespace::LOCAL_INTERFACE
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("failover chain", Duration::from_secs(10));
    wait_for(
        "the first PTP lock",
        Duration::from_secs(60),
        &estuary,
        || clock_state() == "locked",
    );
    let _main = gst_l24_sender(
        dir.path(),
        &GstTone {
            host: "127.0.0.1",
            ..GstTone::stereo("", 0.5, 90)
        },
        &dir.path().join("main.raw"),
    );
    // The backup starts once the main plays, so the main is on air from the start.
    wait_for("the main stream", Duration::from_secs(10), &estuary, || {
        get_json("/api/inputs/main")["status"]["counters"]["packets_received"]
            .as_u64()
            .is_some_and(|n| n > 100)
    });
    let _backup = gst_l24_sender(
        dir.path(),
        &GstTone {
            host: "127.0.0.1",
            port: 5006,
            freq: 1500.0,
            ..GstTone::stereo("", 0.5, 90)
        },
        &dir.path().join("backup.raw"),
    );
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 90, &out);
    std::thread::sleep(Duration::from_secs(3));

    // The grandmaster dies: the follower unlocks (announce timeout), then the rule switches.
    gm.kill();
    wait_for(
        "the follower to unlock",
        Duration::from_secs(20),
        &estuary,
        || clock_state() != "locked",
    );
    let unlocked = Instant::now();
    estuary.wait_for_stderr("reason=clock_unlocked", Duration::from_secs(5));
    let switched_after = unlocked.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    let during = get_json("/api/inputs/main");
    assert_eq!(during["status"]["failover"]["active"], "backup", "{during}");
    assert_eq!(
        during["status"]["failover"]["last_reason"], "clock_unlocked",
        "{during}"
    );
    assert_eq!(
        during["status"]["failover"]["main_clock"], "unlocked",
        "{during}"
    );

    // A grandmaster again: relock, then the main returns after the stable period.
    let _gm2 = grandmaster();
    wait_for("the PTP relock", Duration::from_secs(60), &estuary, || {
        clock_state() == "locked"
    });
    let relocked = Instant::now();
    estuary.wait_for_stderr("to=main reason=restored", Duration::from_secs(10));
    let returned_after = relocked.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    decoder.interrupt(Duration::from_secs(5));
    let input = get_json("/api/inputs/main");
    let log = estuary.stderr();
    eprintln!(
        "switched {switched_after:?} after the unlock was seen, returned {returned_after:?} \
         after the relock\n{input}"
    );
    // The API is polled every 100 ms: the switch comes `clock_unlocked_after` (500 ms) after
    // the lock is lost, give or take a poll and a status period.
    assert!(
        switched_after < Duration::from_millis(1500),
        "{switched_after:?}"
    );
    assert!(
        returned_after >= Duration::from_millis(1500) && returned_after < Duration::from_secs(5),
        "return_after is 2 s: {returned_after:?}"
    );

    // The decoded output: main, then backup, then main, never silent in between (both
    // streams kept flowing; the switches crossfade).
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    let windows: Vec<Window> = left.chunks_exact(960).map(classify).collect();
    // From the main's first steady half second (the start may stutter while the senders and
    // the buffer settle on a loaded machine).
    let mut runs: Vec<(Window, usize)> = Vec::new();
    for &w in &windows {
        match runs.last_mut() {
            Some((last, n)) if *last == w => *n += 1,
            _ => runs.push((w, 1)),
        }
    }
    eprintln!("runs of 20 ms windows: {runs:?}");
    let steady = runs
        .iter()
        .position(|&(w, n)| w == Window::Main && n >= 25)
        .expect("the main tone never played steadily");
    let after: Vec<(Window, usize)> = runs[steady..].to_vec();
    let on_air: Vec<Window> = after
        .iter()
        .map(|(w, _)| *w)
        .filter(|w| *w != Window::Other)
        .collect();
    assert_eq!(
        on_air,
        [Window::Main, Window::Backup, Window::Main],
        "{runs:?}"
    );
    assert!(
        after.iter().all(|(w, n)| *w != Window::Other || *n <= 2),
        "only the crossfades are neither tone: {runs:?}"
    );

    let failover = &input["status"]["failover"];
    assert_eq!(failover["active"], "main", "{input}");
    assert_eq!(failover["last_reason"], "restored", "{input}");
    assert_eq!(failover["switches"], 2, "{input}\n{log}");
    assert_eq!(failover["main_clock"], "locked", "{input}");
    let events = get_json("/api/events?limit=1000");
    let messages: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "failover")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "input main: main -> backup (clock_unlocked)",
            "input main: backup -> main (restored)"
        ],
        "{events}"
    );
    assert!(estuary.terminate(Duration::from_secs(5)).success());
}
