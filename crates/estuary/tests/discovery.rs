//! Discovery end to end, as a user runs it: FFmpeg's SAP muxer announces and `estuary discover`
//! lists the stream; an input follows a SAP announcement by name (and its SDP changes) to an
//! SRT output whose decoded audio is checked; Estuary's transmitter announces and FFmpeg's SAP
//! demuxer finds and plays it. Each test runs in its own network namespace.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SECOND: usize = 48_000;

fn discover_json(wait: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--no-ravenna"];
    args.extend_from_slice(extra);
    discover_json_with(wait, &args)
}

fn discover_json_with(wait: &str, extra: &[&str]) -> serde_json::Value {
    let (status, out, err) = run_with_timeout(
        Command::new(ESTUARY)
            .args(["discover", "--json", "--wait", wait])
            .args(extra),
        Duration::from_secs(60),
    );
    assert!(status.success(), "discover failed: {err}");
    serde_json::from_slice(&out).unwrap_or_else(|e| {
        panic!(
            "discover --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out)
        )
    })
}

#[test]
fn discover_lists_an_ffmpeg_sap_announcement_with_its_format() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let discover = std::thread::spawn(|| discover_json("4s", &[]));
    std::thread::sleep(Duration::from_millis(500));
    let mut ffmpeg = Proc::spawn(
        "ffmpeg-sap",
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-re"])
            .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
            .args(["-ac", "2", "-c:a", "pcm_s24be", "-t", "8"])
            .args(["-metadata", "title=FFmpeg Studio Feed"])
            .args([
                "-f",
                "sap",
                "sap://239.69.7.7:5004?announce_addr=224.2.127.254&ttl=1",
            ]),
        dir.path(),
    );
    let rows = discover.join().expect("discover thread");
    ffmpeg.kill();
    let rows = rows.as_array().expect("array");
    let row = rows
        .iter()
        .find(|r| r["name"] == "FFmpeg Studio Feed")
        .unwrap_or_else(|| panic!("FFmpeg's stream not listed: {rows:#?}"));
    assert_eq!(row["protocol"], "sap");
    assert_eq!(row["source"], "sap:FFmpeg Studio Feed");
    assert_eq!(row["address"], "239.69.7.7");
    assert_eq!(row["port"], 5004);
    assert_eq!(row["format"], "L24");
    assert_eq!(row["sample_rate"], 48_000);
    assert_eq!(row["channels"], 2);
    assert_eq!(row["state"], "active");
    assert!(
        row["sdp"]
            .as_str()
            .expect("sdp")
            .contains("a=rtpmap:96 L24/48000/2")
    );
}

/// `estuary send` without announcing, its SDP written to `dir/<name>.sdp`.
fn tone(dir: &std::path::Path, name: &str, to: &str, frequency: u32) -> Proc {
    let sdp = dir.join(format!("{name}.sdp"));
    let mut cmd = Command::new(ESTUARY);
    cmd.args(["send", "--no-announce", "--to", to, "--interface", "lo"])
        .args(["--frequency", &frequency.to_string(), "--level", "-12"])
        .arg("--sdp-out")
        .arg(&sdp);
    let mut p = Proc::spawn(name, &mut cmd, dir);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sdp.exists() {
        assert!(std::time::Instant::now() < deadline, "{}", p.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = &mut p;
    p
}

/// The SDP a device would announce for the stream in `sdp_file`, under `name`, as version
/// `version` of session 4242.
fn announced_sdp(
    dir: &std::path::Path,
    sdp_file: &str,
    name: &str,
    version: u32,
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(dir.join(sdp_file)).expect("sdp");
    let rewritten: String = text
        .lines()
        .map(|l| {
            if l.starts_with("o=") {
                format!("o=- 4242 {version} IN IP4 127.0.0.1")
            } else if l.starts_with("s=") {
                format!("s={name}")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n")
        + "\r\n";
    let path = dir.join(format!("announce-v{version}.sdp"));
    std::fs::write(&path, rewritten).expect("write sdp");
    path
}

fn announce(dir: &std::path::Path, sdp: &std::path::Path, label: &str) -> Proc {
    let mut cmd = Command::new(ESTUARY);
    cmd.args(["announce", "--interval", "1s", "--interface", "lo", "--sdp"])
        .arg(sdp);
    Proc::spawn(label, &mut cmd, dir)
}

#[test]
fn an_input_follows_a_sap_announcement_and_its_new_version() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let _a = tone(dir.path(), "tone-a", "239.69.10.1:5004", 1_000);
    let _b = tone(dir.path(), "tone-b", "239.69.10.2:5006", 1_500);
    let v1 = announced_sdp(dir.path(), "tone-a.sdp", "Studio Follow", 1);
    let v2 = announced_sdp(dir.path(), "tone-b.sdp", "Studio Follow", 2);

    let config = "[discovery]\ninterface = \"lo\"\n\n\
        [[inputs]]\nname = \"follow\"\nkind = \"aes67\"\nsource = \"sap:Studio Follow\"\n\
        interface = \"lo\"\nlatency = \"20ms\"\n\n\
        [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"follow\"\nmode = \"listener\"\n\
        address = \"127.0.0.1:9410\"\ncodec = \"pcm\"\n";
    let mut estuary = start_estuary(dir.path(), config);
    estuary.wait_for_stderr(
        "waiting for the stream to be announced",
        Duration::from_secs(10),
    );
    let mut first = announce(dir.path(), &v1, "announce-v1");
    estuary.wait_for_stderr("stream discovered", Duration::from_secs(10));

    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9410", 6, &out);
    std::thread::sleep(Duration::from_secs(3));
    // The sender changes its stream: a new SDP version under the same session id. SIGKILL, so
    // no deletion is sent and only the version change can move the input.
    first.kill();
    let _second = announce(dir.path(), &v2, "announce-v2");
    estuary.wait_for_stderr(
        "announcement changed; restarting the route",
        Duration::from_secs(10),
    );
    assert!(
        decoder.wait_exit(Duration::from_secs(30)).success(),
        "{}",
        decoder.stderr()
    );
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    assert!(
        left.len() >= 5 * SECOND,
        "only {} frames decoded",
        left.len()
    );
    let early = frequency(&to_f64(&left[SECOND / 2..SECOND / 2 + SECOND]), 48_000.0);
    let late = frequency(&to_f64(&left[left.len() - SECOND..]), 48_000.0);
    assert!(
        (early - 1_000.0).abs() < 2.0,
        "before the change: {early:.1} Hz"
    );
    assert!(
        (late - 1_500.0).abs() < 2.0,
        "after the change: {late:.1} Hz"
    );
    let level = rms_dbfs(&to_f64(&left[left.len() - SECOND..]));
    assert!(
        (level - (-15.01)).abs() < 0.5,
        "after the change: {level:.2} dB"
    );
    let log = estuary.stderr();
    assert!(log.contains("version=2"), "{log}");
    estuary.terminate(Duration::from_secs(10));
}

#[test]
fn ffmpeg_finds_and_plays_what_estuary_send_announces() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(ESTUARY);
    cmd.args(["send", "--to", "239.69.20.1:5004", "--interface", "lo"])
        .args(["--sap-dest", "224.2.127.254", "--sap-interval", "1s"])
        .args(["--frequency", "750", "--level", "-20"]);
    let mut sender = Proc::spawn("send", &mut cmd, dir.path());
    let out = dir.path().join("sap.raw");
    let (status, _, err) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
            .args(["-i", "sap://224.2.127.254", "-t", "1"])
            .args(["-f", "s32le", "-acodec", "pcm_s32le"])
            .arg(&out),
        Duration::from_secs(30),
    );
    assert!(status.success(), "ffmpeg -i sap:// failed: {err}");
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    assert!(left.len() >= SECOND * 9 / 10, "{} frames", left.len());
    let window = to_f64(&left[left.len() - SECOND / 2..]);
    let f = frequency(&window, 48_000.0);
    assert!((f - 750.0).abs() < 2.0, "{f:.1} Hz");
    let level = rms_dbfs(&window);
    assert!((level - (-23.01)).abs() < 0.5, "{level:.2} dB");
    sender.interrupt(Duration::from_secs(10));
    assert!(
        sender.stderr().contains("1 deletion"),
        "{}",
        sender.stderr()
    );
}

#[test]
fn a_ravenna_session_is_discovered_over_mdns_and_followed_by_name() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(ESTUARY);
    cmd.args([
        "send",
        "--no-sap",
        "--to",
        "239.69.30.1:5004",
        "--interface",
        "lo",
    ])
    .args([
        "--name",
        "Stage Box 3",
        "--frequency",
        "880",
        "--level",
        "-12",
    ]);
    let mut sender = Proc::spawn("send", &mut cmd, dir.path());
    sender.wait_for_stderr("published over mDNS", Duration::from_secs(10));

    let rows = discover_json_with("3s", &["--no-sap", "--interface", "lo"]);
    let rows = rows.as_array().expect("array");
    let row = rows
        .iter()
        .find(|r| r["name"] == "Stage Box 3")
        .unwrap_or_else(|| panic!("RAVENNA session not listed: {rows:#?}"));
    assert_eq!(row["protocol"], "ravenna");
    assert_eq!(row["source"], "ravenna:Stage Box 3");
    assert_eq!(row["address"], "239.69.30.1");
    assert_eq!(row["format"], "L24");
    assert_eq!(row["channels"], 2);

    let config = "[discovery]\nsap = false\ninterface = \"lo\"\n\n\
        [[inputs]]\nname = \"box3\"\nkind = \"aes67\"\nsource = \"ravenna:Stage Box 3\"\n\
        interface = \"lo\"\n\n\
        [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"box3\"\nmode = \"listener\"\n\
        address = \"127.0.0.1:9420\"\ncodec = \"pcm\"\n";
    let mut estuary = start_estuary(dir.path(), config);
    estuary.wait_for_stderr("stream discovered", Duration::from_secs(15));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9420", 2, &out);
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        decoder.stderr()
    );
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    assert!(left.len() >= SECOND, "only {} frames decoded", left.len());
    let window = to_f64(&left[left.len() - SECOND..]);
    let f = frequency(&window, 48_000.0);
    assert!((f - 880.0).abs() < 2.0, "{f:.1} Hz");
    let level = rms_dbfs(&window);
    assert!((level - (-15.01)).abs() < 0.5, "{level:.2} dB");
    estuary.terminate(Duration::from_secs(10));
}

#[test]
fn estuary_announce_builds_the_sdp_from_its_options() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let discover = std::thread::spawn(|| discover_json("3s", &["--interface", "lo"]));
    std::thread::sleep(Duration::from_millis(300));
    let mut cmd = Command::new(ESTUARY);
    cmd.args(["announce", "--name", "Desk 8ch", "--info", "FOH split"])
        .args(["--addr", "239.69.40.1", "--port", "5010", "--channels", "8"])
        .args([
            "--channel-config",
            "71",
            "--encoding",
            "L24",
            "--ptime",
            "0.125",
        ])
        .args(["--ptp-gm", "00-1D-C1-FF-FE-12-34-56", "--ptp-domain", "3"])
        .args([
            "--origin",
            "127.0.0.1",
            "--interval",
            "1s",
            "--interface",
            "lo",
        ])
        .args(["--duration", "5s"]);
    let mut announce = Proc::spawn("announce", &mut cmd, dir.path());
    let rows = discover.join().expect("discover thread");
    let rows = rows.as_array().expect("array");
    let row = rows
        .iter()
        .find(|r| r["name"] == "Desk 8ch")
        .unwrap_or_else(|| panic!("announced stream not listed: {rows:#?}"));
    assert_eq!(row["address"], "239.69.40.1");
    assert_eq!(row["port"], 5010);
    assert_eq!(row["channels"], 8);
    assert_eq!(row["ptime_ms"], 0.125);
    assert_eq!(row["channel_order"], "SMPTE2110.(71)");
    assert_eq!(row["channel_labels"][3], "LFE");
    assert_eq!(row["ptp_gm"], "00-1D-C1-FF-FE-12-34-56");
    assert_eq!(row["ptp_domain"], 3);
    assert_eq!(row["origin"], "127.0.0.1");
    assert_eq!(row["level"], "B");
    assert!(
        announce.wait_exit(Duration::from_secs(15)).success(),
        "{}",
        announce.stderr()
    );
    assert!(
        announce.stderr().contains("1 deletion(s)"),
        "{}",
        announce.stderr()
    );
}
