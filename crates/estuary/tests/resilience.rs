//! Never off air: a real AES67 sender (GStreamer) goes through `estuary impair` into Estuary,
//! out over SRT as SMPTE 302M PCM, decoded by FFmpeg. The output must be the sent audio
//! bit for bit, except each lost packet, which is silence of exactly its length; and the
//! API must count every loss, reorder and duplicate exactly as the impairer reports them.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECOND: usize = 48_000;
/// Frames per packet of the GStreamer sender (1 ms).
const PACKET: usize = 48;
const API: &str = "http://127.0.0.1:8480";

/// These tests measure real-time behaviour at 10 ms of latency: they run one at a time, so
/// they do not steal each other's CPU on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn curl_json(path: &str) -> serde_json::Value {
    let (status, out, err) = run_with_timeout(
        Command::new("curl").args(["-s", "-f", &format!("{API}{path}")]),
        Duration::from_secs(10),
    );
    assert!(status.success(), "GET {path}: {err}");
    serde_json::from_slice(&out).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Starts `estuary impair` with `args`; its JSON report goes to `dir/<name>.json`.
fn start_impair(dir: &Path, name: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new(ESTUARY);
    cmd.arg("impair")
        .args(args)
        .arg("--report")
        .arg(dir.join(format!("{name}.json")))
        .stdout(std::fs::File::create(dir.join(format!("{name}.stdout"))).expect("stdout file"));
    Proc::spawn(name, &mut cmd, dir)
}

/// Stops an impairer (SIGINT) and reads its report.
fn stop_impair(dir: &Path, name: &str, mut proc: Proc) -> serde_json::Value {
    proc.interrupt(Duration::from_secs(5));
    let path = dir.join(format!("{name}.json"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !path.exists() {
        assert!(Instant::now() < deadline, "no report:\n{}", proc.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    serde_json::from_str(&std::fs::read_to_string(&path).expect("report")).expect("json")
}

/// How the decoded audio compares with what was sent, packet by packet.
#[derive(Debug, Default, PartialEq)]
struct Comparison {
    /// Packets bit-exact.
    exact: usize,
    /// Packets that are silence of exactly their length where audio was sent.
    silent: usize,
    /// Packets neither (the failures), with the first few positions.
    wrong: usize,
    first_wrong: Vec<usize>,
}

/// Aligns `decoded` (stereo) on `sent` with a clean stretch after the start of the tone, then
/// classifies every whole sent packet the decoded audio covers.
fn compare_packets(decoded: &[i32], sent: &[i32], channels: usize) -> Comparison {
    let start = first_active(decoded, 1 << 12).expect("decoded audio is silent") / channels;
    // 100 ms into the tone, still inside the unimpaired lead-in.
    let probe = start + SECOND / 10;
    let needle = &decoded[probe * channels..(probe + SECOND / 20) * channels];
    let found = find_exact(sent, needle).expect("a clean stretch is not in the sent audio");
    assert_eq!(found % channels, 0);
    let offset = found / channels;
    // decoded frame d is sent frame d - probe + offset.
    let shift = offset as i64 - probe as i64;
    let mut result = Comparison::default();
    let frames_sent = sent.len() / channels;
    let frames_decoded = decoded.len() / channels;
    for packet in 0..frames_sent / PACKET {
        let first = (packet * PACKET) as i64 - shift;
        if first < 0 || first as usize + PACKET > frames_decoded {
            continue;
        }
        let d = &decoded[first as usize * channels..(first as usize + PACKET) * channels];
        let s = &sent[packet * PACKET * channels..(packet + 1) * PACKET * channels];
        if d == s {
            result.exact += 1;
        } else if d.iter().all(|&x| x == 0) {
            result.silent += 1;
        } else {
            result.wrong += 1;
            if result.first_wrong.len() < 5 {
                result.first_wrong.push(packet);
            }
        }
    }
    result
}

fn config(address: &str) -> String {
    format!(
        "[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
         [api]\nbind = \"127.0.0.1:8480\"\n\n\
         [[inputs]]\nname = \"main\"\nkind = \"aes67\"\naddress = \"{address}\"\nformat = \"L24\"\n\
         channels = 2\npayload_type = 98\ninterface = \"lo\"\nlatency = \"10ms\"\n\n\
         [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"main\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"pcm\"\n"
    )
}

fn counter(input: &serde_json::Value, name: &str) -> u64 {
    input["status"]["counters"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no counter {name} in {input}"))
}

/// 1 % loss, 10 % reorder (depth ≤ 5), 0.5 % duplicates, 10 ms latency: bit-exact except the
/// lost packets, each counted exactly.
#[test]
fn impaired_rtp_is_bit_exact_except_lost_packets_and_every_impairment_is_counted() {
    let _serial = serial();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut estuary = start_estuary(dir.path(), &config("239.69.10.1:5004"));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    // 8 s of tone = 8000 packets; packets 500..4500 are impaired: the receiver locks first,
    // the last impaired loss is followed by packets that reveal it, and the 6 s decoded
    // (from just before the tone starts) cover the whole impaired stretch.
    let impair = start_impair(
        dir.path(),
        "impair",
        &[
            "--listen",
            "127.0.0.1:6004",
            "--to",
            "239.69.10.1:5004",
            "--to-interface",
            "lo",
            "--loss",
            "1%",
            "--reorder",
            "10%",
            "--reorder-depth",
            "5",
            "--duplicate",
            "0.5%",
            "--seed",
            "20261121",
            "--skip",
            "500",
            "--count",
            "4000",
        ],
    );
    std::thread::sleep(Duration::from_millis(200));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 6, &out);
    std::thread::sleep(Duration::from_millis(300));
    let sent = dir.path().join("sent.raw");
    let tone = GstTone {
        port: 6004,
        ..GstTone::stereo("127.0.0.1", 0.5, 8)
    };
    let mut sender = gst_l24_sender(dir.path(), &tone, &sent);
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
    assert!(sender.wait_exit(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(300));
    let report = stop_impair(dir.path(), "impair", impair);
    let input = curl_json("/api/inputs/main");

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    let comparison = compare_packets(&decoded, &sent, 2);
    let lost = report["lost"].as_u64().expect("lost");
    eprintln!("impairer: {report}\ncomparison: {comparison:?}\ninput: {input}");
    let imp = |name: &str| {
        report[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: {report}"))
    };
    let est = |name: &str| counter(&input, name);
    assert_eq!(
        imp("received"),
        8000,
        "the sender's packets all reached the impairer"
    );
    assert!(lost >= 20, "the seed should lose some packets: {report}");
    assert!(imp("reordered") >= 300, "{report}");
    assert!(imp("duplicated") >= 10, "{report}");
    // The output: bit-exact, or silence of exactly one packet where a packet is missing.
    assert_eq!(comparison.wrong, 0, "{comparison:?}");
    assert!(
        comparison.exact + comparison.silent >= 5000,
        "decoded too little: {comparison:?}"
    );
    assert_eq!(
        comparison.silent as u64,
        est("packets_lost"),
        "{comparison:?}"
    );
    // The API counts exactly what the impairer did. A packet that arrives after its playout
    // time (a reordered one held past the 10 ms latency by the sender's own scheduling jitter
    // on a busy machine) is counted late *and* lost (it was played as silence); its duplicate
    // copy, if any, is late rather than duplicate. So, exactly:
    //   lost + duplicate (Estuary) = lost + duplicated (impairer) + late (Estuary)
    // and with no late packet each pair is equal.
    assert_eq!(est("packets_received"), imp("sent"));
    assert_eq!(
        est("packets_lost") + imp("duplicated"),
        lost + est("packets_duplicate") + est("packets_late"),
        "{report}\n{input}"
    );
    assert!(est("packets_lost") >= lost);
    assert!(est("packets_reordered") <= imp("reordered"));
    assert!(imp("reordered") - est("packets_reordered") <= est("packets_late"));
    // Late packets are the exception (scheduling jitter), not the rule.
    assert!(
        est("packets_late") * 3 <= imp("reordered"),
        "too many late packets: {input}"
    );
    assert!(estuary.terminate(Duration::from_secs(5)).success());
}

fn dropped(report: &serde_json::Value) -> std::collections::BTreeSet<u64> {
    report["dropped"]
        .as_array()
        .expect("dropped list")
        .iter()
        .map(|v| v.as_u64().expect("index"))
        .collect()
}

/// ST 2022-7: one GStreamer sender, two paths through two impairers with 5 % independent
/// loss each (the second also 2 ms behind). The merged output loses exactly the packets lost
/// on both paths, and nothing else; each path's counters equal its impairer's report.
#[test]
fn st2022_7_two_lossy_paths_merge_to_lose_only_what_both_lost() {
    let _serial = serial();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("239.69.12.1:5004").replace(
        "latency = \"10ms\"\n",
        "latency = \"10ms\"\nredundant = { address = \"239.69.13.1:5004\", interface = \"lo\" }\n\
         max_skew = \"20ms\"\n",
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("ST 2022-7 second path", Duration::from_secs(10));
    let path = |name: &str, to: &str, seed: &str, delay: &str| {
        start_impair(
            dir.path(),
            name,
            &[
                "--listen",
                "239.69.11.1:6000",
                "--listen-interface",
                "lo",
                "--to",
                to,
                "--to-interface",
                "lo",
                "--loss",
                "5%",
                "--delay",
                delay,
                "--seed",
                seed,
                "--skip",
                "500",
                "--count",
                "4000",
                "--record-drops",
            ],
        )
    };
    let a = path("path0", "239.69.12.1:5004", "1", "0ms");
    let b = path("path1", "239.69.13.1:5004", "2", "2ms");
    std::thread::sleep(Duration::from_millis(200));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 6, &out);
    std::thread::sleep(Duration::from_millis(300));
    let sent = dir.path().join("sent.raw");
    let tone = GstTone {
        port: 6000,
        ..GstTone::stereo("239.69.11.1", 0.5, 8)
    };
    let mut sender = gst_l24_sender(dir.path(), &tone, &sent);
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
    assert!(sender.wait_exit(Duration::from_secs(30)).success());
    std::thread::sleep(Duration::from_millis(300));
    let report_a = stop_impair(dir.path(), "path0", a);
    let report_b = stop_impair(dir.path(), "path1", b);
    let input = curl_json("/api/inputs/main");

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    let comparison = compare_packets(&decoded, &sent, 2);
    let both: Vec<u64> = dropped(&report_a)
        .intersection(&dropped(&report_b))
        .copied()
        .collect();
    let status = &input["status"];
    eprintln!(
        "path 0: {report_a}\npath 1: {report_b}\nlost on both: {both:?}\ncomparison: {comparison:?}\ninput: {input}"
    );
    for report in [&report_a, &report_b] {
        assert_eq!(report["received"], 8000, "{report}");
        assert!(report["lost"].as_u64().expect("lost") >= 120, "{report}");
    }
    assert_eq!(comparison.wrong, 0, "{comparison:?}");
    assert!(
        comparison.exact + comparison.silent >= 5000,
        "{comparison:?}"
    );
    assert_eq!(comparison.silent, both.len(), "{comparison:?}");
    assert_eq!(counter(&input, "packets_lost"), both.len() as u64);
    assert_eq!(counter(&input, "packets_duplicate"), 0);
    assert_eq!(counter(&input, "packets_late"), 0);
    // Copies from path 1 filling path 0's gaps are not reordering.
    assert_eq!(counter(&input, "packets_reordered"), 0);
    let paths = status["redundancy"]["paths"].as_array().expect("paths");
    for (p, report) in paths.iter().zip([&report_a, &report_b]) {
        assert_eq!(p["received"], report["sent"], "{p} vs {report}");
        assert_eq!(p["lost"], report["lost"], "{p} vs {report}");
    }
    let used = paths[0]["used"].as_u64().expect("used") + paths[1]["used"].as_u64().expect("used");
    assert_eq!(used, 8000 - both.len() as u64);
    let skew = status["redundancy"]["skew_us"].as_f64().expect("skew");
    // 2 ms of delay, plus the impairers' own scheduling on a busy machine, within the limit.
    assert!(
        (1500.0..20_000.0).contains(&skew),
        "path 1 is 2 ms behind: {skew} us"
    );
    assert!(estuary.terminate(Duration::from_secs(5)).success());
}

/// The soak as CI runs it (2 minutes): 64 channels of a known sequence at 125 µs through the
/// relay's impairments into `estuary run` (its own process), out over SRT (302M, decoded) and
/// to a recorder (rotating every minute); the command checks the daemon's RSS growth, its API
/// counters against the relay's report, and both outputs bit-exact except exactly the
/// dropped packets (silent, listed in the sidecar).
#[test]
fn soak_64_channels_two_minutes_passes_its_checks() {
    let _serial = serial();
    isolate();
    let (status, out, err) = run_with_timeout(
        Command::new(ESTUARY).args(["soak", "--duration", "2m"]),
        Duration::from_secs(240),
    );
    let out = String::from_utf8_lossy(&out);
    // The figures (RSS trend, counters) in the test log, pass or fail.
    eprintln!("{out}");
    assert!(
        status.success() && out.contains("soak: PASS"),
        "{out}\n{err}"
    );
    for line in [
        "64 ch",
        "[ ok ] RSS growth",
        "[ ok ] recording bit-exact",
        "[ ok ] every packet the relay dropped is silent in the recording",
        "[ ok ] SRT stream bit-exact",
        "[ ok ] lost + duplicate (input) = lost + duplicated (relay) + late (input)",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
}

/// Failover: the main sender stops → the backup is on air within the configured time, with no
/// gap longer than that; the main sender comes back → the output returns to it after the
/// stable period. Each switch is logged and shown in the API.
#[test]
fn failover_to_backup_when_main_stops_and_back_after_stable_period() {
    let _serial = serial();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("239.69.16.1:5004").replace(
        "latency = \"10ms\"\n",
        "latency = \"10ms\"\nfailover = { backup = \"239.69.17.1:5004\", fallback = \"tone\", \
         switch_after = \"250ms\", return_after = \"1s\", crossfade = \"10ms\" }\n",
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("failover chain", Duration::from_secs(10));
    // The live feed (SSE), as the dashboard reads it.
    let live_path = dir.path().join("live.txt");
    let mut live = Proc::spawn(
        "curl-live",
        Command::new("curl")
            .args(["-sN", &format!("{API}/api/live")])
            .stdout(std::fs::File::create(&live_path).expect("live file")),
        dir.path(),
    );
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 8, &out);
    std::thread::sleep(Duration::from_millis(300));
    let backup = GstTone {
        freq: 1500.0,
        ..GstTone::stereo("239.69.17.1", 0.5, 20)
    };
    let _backup = gst_l24_sender(dir.path(), &backup, &dir.path().join("backup.raw"));
    let mut main = gst_l24_sender(
        dir.path(),
        &GstTone::stereo("239.69.16.1", 0.5, 3),
        &dir.path().join("main1.raw"),
    );
    assert!(main.wait_exit(Duration::from_secs(20)).success());
    let main_stopped = Instant::now();
    estuary.wait_for_stderr("to=backup reason=no_packets", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500));
    // A new process: a new SSRC and new timestamps, as after a real sender restart.
    let _main2 = gst_l24_sender(
        dir.path(),
        &GstTone::stereo("239.69.16.1", 0.5, 15),
        &dir.path().join("main2.raw"),
    );
    let main_back = main_stopped.elapsed();
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
    let input = curl_json("/api/inputs/main");
    let log = estuary.stderr();

    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    let windows: Vec<Window> = left.chunks_exact(960).map(classify).collect();
    // Runs of equal windows, after the first tone.
    let first = windows
        .iter()
        .position(|w| *w == Window::Main)
        .expect("the main tone never played");
    let mut runs: Vec<(Window, usize)> = Vec::new();
    for &w in &windows[first..] {
        match runs.last_mut() {
            Some((last, n)) if *last == w => *n += 1,
            _ => runs.push((w, 1)),
        }
    }
    eprintln!("runs of 20 ms windows: {runs:?}\nmain back after {main_back:?}\n{input}");
    let sequence: Vec<Window> = runs
        .iter()
        .filter(|(w, n)| *w != Window::Other && (*w != Window::Silent || *n > 1))
        .map(|(w, _)| *w)
        .collect();
    let mut on_air: Vec<Window> = sequence
        .iter()
        .copied()
        .filter(|w| *w != Window::Silent)
        .collect();
    on_air.dedup();
    assert!(
        on_air.starts_with(&[Window::Main, Window::Backup, Window::Main]),
        "expected main, backup, main: {runs:?}"
    );
    // No gap (silence or anything that is neither tone) longer than the 500 ms promised.
    let longest_gap = runs
        .iter()
        .filter(|(w, _)| matches!(w, Window::Silent | Window::Other))
        .map(|(_, n)| n * 20)
        .max()
        .unwrap_or(0);
    assert!(longest_gap < 500, "a {longest_gap} ms gap: {runs:?}");
    // The backup stayed on air at least the return period after the main came back.
    let backup_ms: usize = runs
        .iter()
        .skip_while(|(w, _)| *w != Window::Backup)
        .take_while(|(w, _)| *w != Window::Main)
        .map(|(_, n)| n * 20)
        .sum();
    assert!(
        backup_ms as u128 >= main_back.as_millis() + 1000 - 300,
        "backup on air {backup_ms} ms, main back after {main_back:?}: {runs:?}"
    );
    let failover = &input["status"]["failover"];
    assert_eq!(failover["active"], "main", "{input}");
    assert_eq!(failover["last_reason"], "restored", "{input}");
    assert!(
        failover["backup"]["packets_received"]
            .as_u64()
            .expect("backup counters")
            > 2000,
        "{input}"
    );
    // Before the first sender, the fallback tone may have been on air (nothing else was).
    assert_eq!(
        log.matches("to=backup reason=no_packets").count(),
        1,
        "{log}"
    );
    let switches = log.matches("failover: switched").count() as u64;
    assert_eq!(failover["switches"], switches, "{input}\n{log}");
    assert!(
        log.trim_end()
            .lines()
            .rev()
            .find(|l| l.contains("failover: switched"))
            .is_some_and(|l| l.contains("to=main reason=restored")),
        "{log}"
    );
    // Every switch is an event (history and live feed) and drives the `failover` alarm.
    let events = curl_json("/api/events?limit=1000");
    let events = events.as_array().expect("events");
    let failover_events: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "failover" && e["subject"] == "input/main")
        .filter_map(|e| e["message"].as_str())
        .collect();
    eprintln!("failover events: {failover_events:?}");
    let to_backup = failover_events
        .iter()
        .position(|m| m.ends_with("-> backup (no_packets)"))
        .unwrap_or_else(|| panic!("no switch to backup: {failover_events:?}"));
    assert!(
        failover_events[to_backup].contains("main -> backup"),
        "{failover_events:?}"
    );
    assert_eq!(
        failover_events.last().copied(),
        Some("input main: backup -> main (restored)"),
        "{failover_events:?}"
    );
    assert_eq!(
        failover_events.len() as u64,
        switches + u64::from(!failover_events[0].starts_with("input main: main ->")),
        "one event per switch: {failover_events:?}"
    );
    let alarm = |kind: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["subject"] == "input/main/failover_active")
            .count()
    };
    assert!(alarm("alarm_raised") >= 1, "{events:?}");
    assert_eq!(alarm("alarm_raised"), alarm("alarm_cleared"), "{events:?}");
    let raised_now = curl_json("/api/alarms");
    assert!(
        !raised_now.to_string().contains("failover_active"),
        "the failover alarm cleared once main was back: {raised_now}"
    );
    live.kill();
    let live = std::fs::read_to_string(&live_path).expect("live feed");
    assert!(
        live.contains("main -> backup (no_packets)") && live.contains("backup -> main (restored)"),
        "the live feed carries the switches"
    );
    assert!(estuary.terminate(Duration::from_secs(5)).success());
}

/// A WAV file as the fallback: when the main stream stops, the file plays in a loop, sample
/// for sample (24-bit PCM out), and the switch is an event.
#[test]
fn failover_to_a_wav_file_plays_it_bit_exact_in_a_loop() {
    use estuary_wire::wav;
    let _serial = serial();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    // 0.5 s of 440 Hz (left) and 660 Hz (right) at −12 dBFS, 24-bit: a loop point every 0.5 s.
    let frames = SECOND / 2;
    let amplitude = f64::from(1 << 23) * 10f64.powf(-12.0 / 20.0);
    let file_samples: Vec<i32> = (0..frames)
        .flat_map(|n| {
            [440.0, 660.0].map(|f: f64| {
                let v = amplitude * (std::f64::consts::TAU * f * n as f64 / SECOND as f64).sin();
                (v.round() as i32) << 8
            })
        })
        .collect();
    let header = wav::Header {
        spec: wav::Spec {
            channels: 2,
            sample_rate: 48_000,
            bits: 24,
        },
        bext: None,
        ixml: None,
        cue_slots: 0,
    };
    let mut data = Vec::new();
    wav::pack(&file_samples, 24, &mut data);
    let mut bytes = header.encode(data.len() as u64);
    bytes.extend_from_slice(&data);
    let file = dir.path().join("fallback.wav");
    std::fs::write(&file, bytes).expect("write the fallback");

    let config = config("239.69.18.1:5004")
        .replace(
            "latency = \"10ms\"\n",
            &format!(
                "latency = \"10ms\"\nfailover = {{ fallback = {{ file = \"{}\" }}, \
                 switch_after = \"250ms\", return_after = \"200ms\", crossfade = \"10ms\" }}\n",
                file.display()
            ),
        )
        .replace("codec = \"pcm\"\n", "codec = \"pcm\"\nbits = 24\n");
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("failover chain", Duration::from_secs(10));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 5, &out);
    std::thread::sleep(Duration::from_millis(300));
    let mut main = gst_l24_sender(
        dir.path(),
        &GstTone::stereo("239.69.18.1", 0.5, 2),
        &dir.path().join("main.raw"),
    );
    assert!(main.wait_exit(Duration::from_secs(20)).success());
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
    let input = curl_json("/api/inputs/main");
    let events = curl_json("/api/events?limit=1000");
    assert!(estuary.terminate(Duration::from_secs(5)).success());

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let total = decoded.len() / 2;
    assert!(total > SECOND * 4, "{total} frames decoded");
    // The main tone played, then the file: 100 ms windows of the last second are each found,
    // sample for sample, in the file looped twice (a window may straddle the loop point).
    let left = channel(&decoded, 2, 0);
    assert!(
        left.chunks_exact(SECOND / 10)
            .any(|w| (frequency(&to_f64(w), 48_000.0) - 997.0).abs() < 5.0),
        "the main stream never played"
    );
    let looped: Vec<i32> = file_samples.iter().chain(&file_samples).copied().collect();
    for k in 1..=10 {
        let start = total - k * SECOND / 10;
        let window = &decoded[start * 2..(start + SECOND / 10) * 2];
        assert!(
            find_exact(&looped, window).is_some_and(|i| i % 2 == 0),
            "window {k} of the last second is not the file's audio"
        );
    }
    assert_eq!(input["status"]["failover"]["active"], "fallback", "{input}");
    assert_eq!(input["status"]["failover"]["last_reason"], "no_packets");
    assert!(
        events
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "failover"
                && e["message"] == "input main: main -> fallback (no_packets)"),
        "{events}"
    );
}

/// A chain of two backups: the main stops → the first backup; it stops too → the second.
#[test]
fn failover_chain_of_two_backups_in_priority_order() {
    let _serial = serial();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config("239.69.19.1:5004").replace(
        "latency = \"10ms\"\n",
        "latency = \"10ms\"\nfailover = { backup = [\"239.69.20.1:5004\", \"239.69.21.1:5004\"], \
         switch_after = \"250ms\", return_after = \"1s\", crossfade = \"10ms\" }\n",
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("failover chain", Duration::from_secs(10));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 8, &out);
    std::thread::sleep(Duration::from_millis(300));
    let tone = |host: &'static str, freq: f64, seconds: u32| GstTone {
        freq,
        ..GstTone::stereo(host, 0.5, seconds)
    };
    let _backup2 = gst_l24_sender(
        dir.path(),
        &tone("239.69.21.1", 2500.0, 12),
        &dir.path().join("b2.raw"),
    );
    let _backup = gst_l24_sender(
        dir.path(),
        &tone("239.69.20.1", 1500.0, 5),
        &dir.path().join("b1.raw"),
    );
    let _main = gst_l24_sender(
        dir.path(),
        &tone("239.69.19.1", 997.0, 2),
        &dir.path().join("main.raw"),
    );
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
    let input = curl_json("/api/inputs/main");
    let events = curl_json("/api/events?limit=1000");
    assert!(estuary.terminate(Duration::from_secs(5)).success());

    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    // 20 ms windows: which tone (by frequency), or silence.
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for w in left.chunks_exact(960) {
        let rising = w.windows(2).filter(|p| p[0] < 0 && p[1] >= 0).count();
        let kind = if w.iter().all(|&s| s == 0) {
            0
        } else if rising < 4 {
            // Mostly silence (a switch or a crossfade inside the window).
            1
        } else {
            let f = frequency(&to_f64(w), 48_000.0);
            [997, 1500, 2500]
                .into_iter()
                .find(|&t| (f - f64::from(t)).abs() < 30.0)
                .unwrap_or(1)
        };
        match runs.last_mut() {
            Some((k, n)) if *k == kind => *n += 1,
            _ => runs.push((kind, 1)),
        }
    }
    eprintln!("runs of 20 ms windows (Hz, count): {runs:?}\n{input}");
    let mut on_air: Vec<u32> = runs
        .iter()
        .filter(|(k, n)| *k > 1 && *n > 2)
        .map(|(k, _)| *k)
        .collect();
    on_air.dedup();
    // Whatever played while the senders started up, the chain ends main, backup, backup2.
    assert!(on_air.ends_with(&[997, 1500, 2500]), "{runs:?}");
    let first = runs.iter().position(|(k, _)| *k == 997).expect("main");
    let longest_gap = runs[first..]
        .iter()
        .filter(|(k, _)| *k <= 1)
        .map(|(_, n)| n * 20)
        .max()
        .unwrap_or(0);
    assert!(longest_gap < 500, "a {longest_gap} ms gap: {runs:?}");
    let failover = &input["status"]["failover"];
    assert_eq!(failover["active"], "backup2", "{input}");
    assert_eq!(
        failover["backups"].as_array().map(Vec::len),
        Some(2),
        "{input}"
    );
    let messages: Vec<&str> = events
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "failover")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        messages.ends_with(&[
            "input main: main -> backup (no_packets)",
            "input main: backup -> backup2 (no_packets)"
        ]),
        "{messages:?}"
    );
}
