//! Recorders end to end: a real daemon records an AES67 stream sent with scripted packet loss;
//! the files are read back and checked sample by sample against what was sent, the gaps
//! against the sidecar and the WAV cue points, and the files with `ffprobe` and `sox`. Then kill -9 and
//! `estuary repair`, and a tmpfs that fills up.

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use estuary_wire::payload::{SampleFormat, encode_into};
use estuary_wire::rtp::RtpPacketBuilder;
use estuary_wire::units::{RtpTimestamp, SeqNum};
use estuary_wire::{flac, wav};

const RATE: u64 = 48_000;
/// Frames per 1 ms packet.
const FPP: u64 = 48;
const TS0: u32 = 1_234_567_000;

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: network namespaces need root");
    }
    root
}

/// The sent sample at media position `pos`, channel `c` (left-justified 24 bits, never 0).
fn signal(pos: u64, c: usize) -> i32 {
    let v = (pos.wrapping_mul(2_654_435_761) >> 5) as i32 ^ ((c as i32 + 1) << 21);
    (v & !0xFF) | 0x100
}

/// Sends `packets` 1 ms L24 packets of `channels` to `port`, paced, skipping `drop`.
fn send(port: u16, channels: usize, packets: u64, drop: &[u64]) {
    send_span(port, channels, (0..packets, 0x1234_5678), drop);
}

/// Sends packets `span` (packet i holds media positions TS0 + 48 i…) with `ssrc`; packet
/// `span.start` leaves now, the others 1 ms apart, as a sender on the same clock would.
fn send_span(port: u16, channels: usize, (span, ssrc): (std::ops::Range<u64>, u32), drop: &[u64]) {
    send_from(port, channels, (span, ssrc), u64::from(TS0), drop);
}

/// [`send_span`] with packet i holding media positions `ts0` + 48 i.
fn send_from(
    port: u16,
    channels: usize,
    (span, ssrc): (std::ops::Range<u64>, u32),
    ts0: u64,
    drop: &[u64],
) {
    let first = span.start;
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let start = Instant::now();
    let mut samples = vec![0i32; FPP as usize * channels];
    let mut payload = vec![0u8; samples.len() * 3];
    let mut bytes = vec![0u8; 1500];
    for i in span {
        let position = ts0 + i * FPP;
        for (k, frame) in samples.chunks_exact_mut(channels).enumerate() {
            for (c, s) in frame.iter_mut().enumerate() {
                *s = signal(position + k as u64, c);
            }
        }
        let n = encode_into(SampleFormat::L24, &samples, &mut payload).expect("encode");
        let builder = RtpPacketBuilder {
            payload_type: 97,
            sequence: SeqNum((i as u16).wrapping_add(500)),
            timestamp: RtpTimestamp(position as u32),
            ssrc,
            payload: &payload[..n],
            ..RtpPacketBuilder::default()
        };
        let size = builder.wire_size();
        builder.write_into(&mut bytes[..size]).expect("rtp");
        if let Some(wait) =
            (start + Duration::from_millis(i - first)).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
        if !drop.contains(&i) {
            socket
                .send_to(&bytes[..size], ("127.0.0.1", port))
                .expect("send");
        }
    }
}

/// A 2-channel L24 input on `port` with a 100 ms buffer: a loaded CI host may hold the test's
/// sender thread for tens of milliseconds, and a late packet is silence the check would flag.
fn config(port: u16, channels: usize, api: u16, recorders: &str) -> String {
    format!(
        "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:{api}\"\n\n\
         [[inputs]]\nname = \"stage\"\nkind = \"aes67\"\naddress = \"127.0.0.1:{port}\"\n\
         format = \"L24\"\nchannels = {channels}\nsample_rate = 48000\npayload_type = 97\n\
         latency = \"100ms\"\nmeters = false\n\n{recorders}"
    )
}

/// A recording read back.
#[derive(Debug)]
struct Recording {
    path: PathBuf,
    info: wav::Info,
    samples: Vec<i32>,
}

impl Recording {
    fn frames(&self) -> u64 {
        self.samples.len() as u64 / u64::from(self.info.spec.channels)
    }
}

fn read_wav(path: &Path) -> Recording {
    let bytes = std::fs::read(path).expect("read recording");
    let info = wav::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = info.data_offset as usize;
    let end = start + info.data_size as usize;
    assert!(end <= bytes.len(), "{}: data past the end", path.display());
    Recording {
        path: path.to_owned(),
        samples: wav::unpack(&bytes[start..end], info.spec.bits),
        info,
    }
}

fn wav_files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, "wav")
}

fn files_ending(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    out.sort();
    out
}

/// A FLAC recording checked by the reference decoder (`flac -t`: every frame's CRC and,
/// when set, the MD5 of all samples) and decoded by it; the time reference comes from the
/// Vorbis comment the recorder wrote.
fn read_flac(path: &Path) -> Recording {
    let (status, _, err) = run_with_timeout(
        Command::new("flac").args(["-t", "-s"]).arg(path),
        Duration::from_secs(20),
    );
    assert!(status.success(), "flac -t {}: {err}", path.display());
    let decoded = path.with_extension("decoded.wav");
    let (status, _, err) = run_with_timeout(
        Command::new("flac")
            .args(["-d", "-s", "-f", "-o"])
            .arg(&decoded)
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(status.success(), "flac -d {}: {err}", path.display());
    let mut rec = read_wav(&decoded);
    std::fs::remove_file(&decoded).expect("rm decoded");
    let header = std::fs::read(path).expect("read flac");
    let info = flac::parse(&header).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let time_reference = info
        .comments
        .iter()
        .find_map(|c| c.strip_prefix("TIME_REFERENCE="))
        .and_then(|v| v.parse().ok())
        .expect("TIME_REFERENCE comment");
    rec.info.bext = Some(wav::Bext {
        time_reference,
        ..wav::Bext::default()
    });
    rec.path = path.to_owned();
    rec
}

/// Checks every frame against the signal: equal (to the file's bit depth) where it was sent,
/// silent where `silent(position)`; returns the positions that were silent, as runs.
fn check_content(
    rec: &Recording,
    input_channels: &[usize],
    silent: impl Fn(u64) -> bool,
) -> Vec<(u64, u64)> {
    let bits = u32::from(rec.info.spec.bits);
    let mask = if bits == 32 { -1 } else { -1i32 << (32 - bits) };
    let tr = rec.info.bext.as_ref().expect("bext").time_reference;
    let channels = input_channels.len();
    let mut runs: Vec<(u64, u64)> = Vec::new();
    for (k, frame) in rec.samples.chunks_exact(channels).enumerate() {
        let pos = tr + k as u64;
        if silent(pos) {
            assert!(
                frame.iter().all(|&s| s == 0),
                "{}: frame {k} (position {pos}) should be silent",
                rec.path.display()
            );
            match runs.last_mut() {
                Some((p, n)) if *p + *n == pos => *n += 1,
                _ => runs.push((pos, 1)),
            }
        } else {
            for (i, &c) in input_channels.iter().enumerate() {
                assert_eq!(
                    frame[i],
                    signal(pos, c) & mask,
                    "{}: frame {k} (position {pos}) channel {c}",
                    rec.path.display()
                );
            }
        }
    }
    runs
}

/// (sample rate, channels, frames) as ffprobe and sox read them.
fn probe(path: &Path) -> [(u64, u64, u64); 2] {
    let (status, out, err) = run_with_timeout(
        Command::new("ffprobe")
            .args(["-v", "error", "-show_entries"])
            .args([
                "stream=sample_rate,channels,duration_ts",
                "-of",
                "default=nw=1",
            ])
            .arg(path),
        Duration::from_secs(20),
    );
    assert!(status.success(), "ffprobe {}: {err}", path.display());
    let text = String::from_utf8_lossy(&out);
    let field = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("ffprobe {}: no {name} in {text}", path.display()))
    };
    let ffprobe = (
        field("sample_rate"),
        field("channels"),
        field("duration_ts"),
    );
    let sox = |flag: &str| -> u64 {
        let (status, out, err) = run_with_timeout(
            Command::new("sox").args(["--i", flag]).arg(path),
            Duration::from_secs(20),
        );
        assert!(status.success(), "sox --i {flag} {}: {err}", path.display());
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("sox --i {flag}: {}", String::from_utf8_lossy(&out)))
    };
    [ffprobe, (sox("-r"), sox("-c"), sox("-s"))]
}

fn api_status(api: u16) -> serde_json::Value {
    let (status, out, err) = run_with_timeout(
        Command::new("curl").args(["-s", "-f", &format!("http://127.0.0.1:{api}/api/status")]),
        Duration::from_secs(10),
    );
    assert!(status.success(), "GET /api/status: {err}");
    serde_json::from_slice(&out).expect("status JSON")
}

/// The status once `settled` holds for it, or the last one read after 5 s (the asserts that
/// follow then say what is missing). Recorders publish at their wake-ups, up to
/// `record::WAKE` (250 ms) apart, later on a loaded machine.
fn status_when(api: u16, settled: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = api_status(api);
        if settled(&status) || Instant::now() >= deadline {
            return status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every one of the three recorders of the gap tests lists `gaps` gaps.
/// Whether every recorder lists `gaps` gaps.
fn all_list_gaps(status: &serde_json::Value, gaps: u64) -> bool {
    status["recorders"]
        .as_array()
        .is_some_and(|all| all.iter().all(|r| r["gaps"] == gaps))
}

fn recorder(status: &serde_json::Value, name: &str) -> serde_json::Value {
    status["recorders"]
        .as_array()
        .expect("recorders")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no recorder {name} in {status}"))
        .clone()
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_api(api: u16) {
    wait_for("the API", Duration::from_secs(10), || {
        run_with_timeout(
            Command::new("curl").args(["-s", "-f", &format!("http://127.0.0.1:{api}/api/status")]),
            Duration::from_secs(5),
        )
        .0
        .success()
    });
}

/// Three recorders of one 4-channel stream with scripted loss: interleaved 24-bit, named
/// groups 32-bit, mono 16-bit. Every sample is what was sent, except exactly the lost
/// packets (and the silence after the sender stopped), and the sidecar lists exactly those.
#[test]
fn records_every_sample_and_exactly_the_gaps() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let recorders = format!(
        "[[recorders]]\nname = \"all\"\ninput = \"stage\"\ndirectory = \"{d}\"\nbits = 24\n\
         channel_names = [\"Kick\", \"Snare\", \"Vox\", \"Bass\"]\n\n\
         [[recorders]]\nname = \"groups\"\ninput = \"stage\"\ndirectory = \"{d}\"\nbits = 32\n\
         groups = {{ drums = \"1-2\", rest = \"3,4\" }}\n\n\
         [[recorders]]\nname = \"mono\"\ninput = \"stage\"\ndirectory = \"{d}\"\nbits = 16\n\
         layout = \"mono\"\n\n\
         [[recorders]]\nname = \"mono24\"\ninput = \"stage\"\ndirectory = \"{d}\"\nbits = 24\n\
         layout = \"mono\"\n",
        d = out.display()
    );
    let mut estuary = start_estuary(dir.path(), &config(5004, 4, 8481, &recorders));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    wait_for_api(8481);
    let packets = 2_500;
    let dropped = [500, 501, 1_200, 2_000, 2_001, 2_002, 2_003, 2_004, 2_005];
    send(5004, 4, packets, &dropped);
    let status = status_when(8481, |s| all_list_gaps(s, 4));
    for name in ["all", "groups", "mono", "mono24"] {
        let r = recorder(&status, name);
        assert_eq!(r["state"], "recording", "{r}");
        // Three runs of lost packets, and the silence since the sender stopped.
        assert_eq!(r["gaps"], 4, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }
    assert!(estuary.terminate(Duration::from_secs(10)).success());

    let end = u64::from(TS0) + packets * FPP;
    let lost = |pos: u64| {
        pos >= end || {
            let packet = (pos - u64::from(TS0)) / FPP;
            dropped.contains(&packet)
        }
    };
    let files = wav_files(&out);
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 1 + 2 + 4 + 4, "{names:?}");
    let expected_gaps: Vec<(u64, u64)> = [(500, 2), (1_200, 1), (2_000, 6)]
        .iter()
        .map(|&(p, n)| (u64::from(TS0) + p * FPP, n * FPP))
        .collect();
    for path in &files {
        let rec = read_wav(path);
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (channels, bits): (Vec<usize>, u8) = if name.starts_with("all-") {
            (vec![0, 1, 2, 3], 24)
        } else if name.contains("-drums") {
            (vec![0, 1], 32)
        } else if name.contains("-rest") {
            (vec![2, 3], 32)
        } else {
            let index = (1..=4)
                .find(|i| name.ends_with(&format!("-ch{i}.wav")))
                .unwrap_or_else(|| panic!("unexpected file {name}"));
            // The 24-bit mono files take the vector packer's path.
            (
                vec![index - 1],
                if name.starts_with("mono24") { 24 } else { 16 },
            )
        };
        assert_eq!(rec.info.spec.bits, bits, "{name}");
        assert_eq!(
            usize::from(rec.info.spec.channels),
            channels.len(),
            "{name}"
        );
        // BWF TimeReference: the media clock (RTP timestamp) of the first sample.
        let bext = rec.info.bext.clone().expect("bext");
        assert_eq!(bext.time_reference, u64::from(TS0), "{name}");
        assert_eq!(bext.originator, "Estuary");
        let silent = check_content(&rec, &channels, lost);
        let tail = silent
            .last()
            .copied()
            .expect("silence after the sender stopped");
        assert_eq!(tail.0, end, "{name}");
        assert_eq!(silent[..silent.len() - 1], expected_gaps[..], "{name}");
        // The same gaps as cue points with a length and a label, for DAWs.
        let cues: Vec<(u64, u64)> = rec
            .info
            .cues
            .iter()
            .map(|c| (u64::from(TS0) + u64::from(c.offset), u64::from(c.frames)))
            .collect();
        assert_eq!(cues.len(), 4, "{name}: {:?}", rec.info.cues);
        assert_eq!(cues[..3], expected_gaps[..], "{name}");
        assert_eq!(cues[3].0, end, "{name}");
        assert!(
            rec.info.cues.iter().all(|c| c.label == "gap: lost"),
            "{:?}",
            rec.info.cues
        );
        assert!(
            rec.frames() > packets * FPP,
            "{name}: {} frames",
            rec.frames()
        );
        // The tools users have read the same thing.
        let want = (RATE, channels.len() as u64, rec.frames());
        assert_eq!(probe(path), [want, want], "{name}");
        // iXML names the tracks.
        let ixml = rec.info.ixml.clone().expect("iXML");
        if name.starts_with("all-") {
            for track in ["Kick", "Snare", "Vox", "Bass"] {
                assert!(ixml.contains(&format!("<NAME>{track}</NAME>")), "{ixml}");
            }
        }
    }
    // Each take's sidecar lists the same gaps, with their cause.
    let sidecars: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".json"))
        .collect();
    assert_eq!(sidecars.len(), 4, "{sidecars:?}");
    for sidecar in sidecars {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&sidecar).expect("sidecar"))
                .expect("sidecar JSON");
        assert_eq!(json["time_reference"], u64::from(TS0));
        let gaps = json["gaps"].as_array().expect("gaps");
        let listed: Vec<(u64, u64)> = gaps
            .iter()
            .map(|g| {
                assert_eq!(g["cause"], "lost", "{g}");
                assert_eq!(
                    g["offset"].as_u64(),
                    g["position"].as_u64().map(|p| p - u64::from(TS0))
                );
                (
                    g["position"].as_u64().expect("position"),
                    g["frames"].as_u64().expect("frames"),
                )
            })
            .collect();
        assert_eq!(listed[..3], expected_gaps[..], "{}", sidecar.display());
        assert_eq!(listed[3].0, end);
    }
}

/// kill -9 while recording: the file plays to within a second of the kill (its header was
/// rewritten every second), and `estuary repair` makes its sizes match what it holds.
#[test]
fn kill_9_leaves_a_playable_file_and_repair_fixes_it() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let recorders = format!(
        "[[recorders]]\nname = \"crash\"\ninput = \"stage\"\ndirectory = \"{d}\"\n\
         fsync = \"never\"\n\n\
         [[recorders]]\nname = \"crashflac\"\ninput = \"stage\"\ndirectory = \"{d}\"\n\
         format = \"flac\"\nfsync = \"never\"\n",
        d = out.display()
    );
    let mut estuary = start_estuary(dir.path(), &config(5006, 2, 8482, &recorders));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    // No audio can be older than the sender; the log line saying the take began may be read
    // late (a loaded machine), so it only bounds the audio from below.
    let sending = Instant::now();
    let sender = std::thread::spawn(|| send(5006, 2, 4_000, &[]));
    estuary.wait_for_stderr("recording", Duration::from_secs(10));
    let started = Instant::now();
    std::thread::sleep(Duration::from_millis(2_600));
    estuary.kill();
    let recorded = started.elapsed().as_secs_f64();
    let sent = sending.elapsed().as_secs_f64();
    sender.join().expect("sender");

    let files = wav_files(&out);
    assert_eq!(files.len(), 1, "{files:?}");
    let path = &files[0];
    let [ffprobe, sox] = probe(path);
    let playable = ffprobe.2 as f64 / RATE as f64;
    assert!(
        playable > recorded - 1.2 && playable <= sent + 0.1,
        "plays {playable:.3} s of {recorded:.3} s recorded ({sent:.3} s sent)"
    );
    assert_eq!(sox.2, ffprobe.2);
    check_content(&read_wav(path), &[0, 1], |_| false);

    let len = std::fs::metadata(path).expect("meta").len();
    let (status, stdout, err) = run_with_timeout(
        Command::new(ESTUARY).arg("repair").arg(path),
        Duration::from_secs(10),
    );
    assert!(status.success(), "repair: {err}");
    let said = String::from_utf8_lossy(&stdout);
    assert!(
        said.contains("fixed") || said.contains("consistent"),
        "{said}"
    );
    let rec = read_wav(path);
    let header_len = rec.info.data_offset;
    // The space allocated ahead of the audio (zeros, read by ffprobe and sox above) is cut:
    // the file ends with the last frame written, and every frame is what was sent.
    let repaired = std::fs::metadata(path).expect("meta").len();
    assert!(repaired <= len, "{repaired} > {len}");
    assert_eq!(rec.info.data_size, (repaired - header_len) / 6 * 6);
    assert_eq!(rec.info.riff_size, header_len + rec.info.data_size - 8);
    assert!(rec.frames() >= ffprobe.2, "repair lost audio");
    assert_eq!(probe(path)[0].2, rec.frames());
    check_content(&rec, &[0, 1], |_| false);
    // A second repair has nothing to do.
    let (_, stdout, _) = run_with_timeout(
        Command::new(ESTUARY).arg("repair").arg(path),
        Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&stdout).contains("already consistent"));

    // FLAC: STREAMINFO still says "length unknown", every frame on disk is whole, and the
    // reference decoder plays it to within a header interval and a block of the kill.
    let flacs = files_ending(&out, "flac");
    assert_eq!(flacs.len(), 1, "{flacs:?}");
    let path = &flacs[0];
    let before = read_flac(path);
    let playable = before.frames() as f64 / RATE as f64;
    assert!(
        playable > recorded - 1.2 && playable <= sent + 0.1,
        "FLAC plays {playable:.3} s of {recorded:.3} s recorded ({sent:.3} s sent)"
    );
    check_content(&before, &[0, 1], |_| false);
    // A power cut could also leave the start of a frame (here: of the first one) and
    // zeros: repair cuts them and sets the length.
    let mut bytes = std::fs::read(path).expect("read");
    let whole = bytes.len() as u64;
    let start = flac::parse(&bytes).expect("FLAC").audio_start as usize;
    let partial = bytes[start..start + 100].to_vec();
    bytes.extend_from_slice(&partial);
    std::fs::write(path, &bytes).expect("write");
    let (status, stdout, err) = run_with_timeout(
        Command::new(ESTUARY).arg("repair").arg(path),
        Duration::from_secs(10),
    );
    assert!(status.success(), "repair: {err}");
    let said = String::from_utf8_lossy(&stdout);
    assert!(
        said.contains("fixed") && said.contains(", 100 trailing bytes cut"),
        "{said}"
    );
    assert_eq!(std::fs::metadata(path).expect("meta").len(), whole);
    let header = std::fs::read(path).expect("read");
    let info = flac::parse(&header).expect("FLAC");
    assert_eq!(info.stream.total_samples, before.frames());
    let after = read_flac(path);
    assert_eq!(after.samples, before.samples);
    let [ffprobe, sox] = probe(path);
    assert_eq!(ffprobe, (RATE, 2, before.frames()));
    assert_eq!(sox, ffprobe);
    let (_, stdout, _) = run_with_timeout(
        Command::new(ESTUARY).arg("repair").arg(path),
        Duration::from_secs(10),
    );
    assert!(String::from_utf8_lossy(&stdout).contains("already consistent"));
}

/// FLAC recorders (interleaved 24-bit, groups 24-bit, mono 16-bit) of a stream with
/// scripted loss: `flac -t` accepts every file (CRCs and MD5), the decoded samples equal
/// what was sent except exactly the lost packets, which the sidecar lists; ffprobe and sox
/// read the right rate, channels and length.
#[test]
fn flac_records_every_sample_and_exactly_the_gaps() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let recorders = format!(
        "[[recorders]]\nname = \"all\"\ninput = \"stage\"\ndirectory = \"{d}\"\nformat = \"flac\"\n\n\
         [[recorders]]\nname = \"groups\"\ninput = \"stage\"\ndirectory = \"{d}\"\nformat = \"flac\"\n\
         groups = {{ drums = \"1-2\", rest = \"3,4\" }}\n\n\
         [[recorders]]\nname = \"mono\"\ninput = \"stage\"\ndirectory = \"{d}\"\nformat = \"flac\"\n\
         bits = 16\nlayout = \"mono\"\n",
        d = out.display()
    );
    let mut estuary = start_estuary(dir.path(), &config(5018, 4, 8488, &recorders));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    wait_for_api(8488);
    let packets = 2_000;
    let dropped = [300, 301, 1_100, 1_500, 1_501, 1_502];
    send(5018, 4, packets, &dropped);
    let status = status_when(8488, |s| all_list_gaps(s, 4));
    for name in ["all", "groups", "mono"] {
        let r = recorder(&status, name);
        assert_eq!(r["state"], "recording", "{r}");
        assert_eq!(r["gaps"], 4, "{r}");
        assert_eq!(r["errors"], 0, "{r}");
    }
    assert!(estuary.terminate(Duration::from_secs(10)).success());

    let end = u64::from(TS0) + packets * FPP;
    let lost = |pos: u64| pos >= end || dropped.contains(&((pos - u64::from(TS0)) / FPP));
    let expected_gaps: Vec<(u64, u64)> = [(300, 2), (1_100, 1), (1_500, 3)]
        .iter()
        .map(|&(p, n)| (u64::from(TS0) + p * FPP, n * FPP))
        .collect();
    let files = files_ending(&out, "flac");
    assert_eq!(files.len(), 1 + 2 + 4, "{files:?}");
    for path in &files {
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let (channels, bits): (Vec<usize>, u8) = if name.starts_with("all-") {
            (vec![0, 1, 2, 3], 24)
        } else if name.contains("-drums") {
            (vec![0, 1], 24)
        } else if name.contains("-rest") {
            (vec![2, 3], 24)
        } else {
            let index = (1..=4)
                .find(|i| name.ends_with(&format!("-ch{i}.flac")))
                .unwrap_or_else(|| panic!("unexpected file {name}"));
            (vec![index - 1], 16)
        };
        let header = std::fs::read(path).expect("read");
        let info = flac::parse(&header).expect("FLAC").stream;
        assert_eq!(
            (info.bits, usize::from(info.channels)),
            (bits, channels.len()),
            "{name}"
        );
        assert_ne!(info.md5, [0; 16], "{name}: MD5 set at close");
        let rec = read_flac(path);
        assert_eq!(
            rec.info.bext.as_ref().map(|b| b.time_reference),
            Some(u64::from(TS0))
        );
        assert_eq!(info.total_samples, rec.frames(), "{name}");
        let silent = check_content(&rec, &channels, lost);
        let tail = silent
            .last()
            .copied()
            .expect("silence after the sender stopped");
        assert_eq!(tail.0, end, "{name}");
        assert_eq!(silent[..silent.len() - 1], expected_gaps[..], "{name}");
        let want = (RATE, channels.len() as u64, rec.frames());
        assert_eq!(probe(path), [want, want], "{name}");
    }
    let sidecars: Vec<PathBuf> = files_ending(&out, "json");
    assert_eq!(sidecars.len(), 3, "{sidecars:?}");
    for sidecar in sidecars {
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&sidecar).expect("sidecar"))
                .expect("sidecar JSON");
        assert!(
            json["files"][0]
                .as_str()
                .is_some_and(|f| f.ends_with(".flac")),
            "{json}"
        );
        let listed: Vec<(u64, u64)> = json["gaps"]
            .as_array()
            .expect("gaps")
            .iter()
            .map(|g| {
                (
                    g["position"].as_u64().expect("position"),
                    g["frames"].as_u64().expect("frames"),
                )
            })
            .collect();
        assert_eq!(listed[..3], expected_gaps[..], "{}", sidecar.display());
        assert_eq!(listed[3].0, end);
    }
}

/// A tmpfs that fills up: the alarm is raised, the files stay valid, recording resumes
/// once space is freed, and every file still holds exactly the sent samples at its
/// TimeReference.
#[test]
fn disk_full_raises_the_alarm_keeps_files_valid_and_resumes() {
    if !root() {
        return;
    }
    isolate();
    // SAFETY: unshare only changes the calling thread's namespaces (the spawned daemon
    // inherits them); CLONE_NEWNS is allowed in a multithreaded process.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNS) }, 0, "unshare -m");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    std::fs::create_dir_all(&out).expect("mkdir");
    for args in [
        vec!["--make-rprivate", "/"],
        vec![
            "-t",
            "tmpfs",
            "-o",
            "size=1m",
            "tmpfs",
            out.to_str().expect("path"),
        ],
    ] {
        let (status, _, err) =
            run_with_timeout(Command::new("mount").args(&args), Duration::from_secs(10));
        assert!(status.success(), "mount {args:?}: {err}");
    }
    let filler = out.join("filler.bin");
    std::fs::write(&filler, vec![1u8; 700 * 1024]).expect("filler");
    let recorders = format!(
        "[[recorders]]\nname = \"full\"\ninput = \"stage\"\ndirectory = \"{}\"\n",
        out.display()
    );
    let mut estuary = start_estuary(dir.path(), &config(5008, 2, 8483, &recorders));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    wait_for_api(8483);
    let sender = std::thread::spawn(|| send(5008, 2, 9_000, &[]));
    wait_for("disk_full", Duration::from_secs(6), || {
        let s = api_status(8483);
        recorder(&s, "full")["state"] == "disk_full"
            && s["alarms"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["condition"] == "record_failed"))
    });
    // The rest of the daemon keeps going.
    let s = api_status(8483);
    assert_eq!(s["inputs"][0]["state"], "receiving", "{}", s["inputs"][0]);
    std::fs::remove_file(&filler).expect("free space");
    wait_for("recording again", Duration::from_secs(6), || {
        let s = api_status(8483);
        recorder(&s, "full")["state"] == "recording"
            && !s["alarms"]
                .as_array()
                .is_some_and(|a| a.iter().any(|a| a["condition"] == "record_failed"))
    });
    sender.join().expect("sender");
    let r = recorder(&api_status(8483), "full");
    assert!(r["frames_dropped"].as_u64() > Some(0), "{r}");
    assert!(estuary.terminate(Duration::from_secs(10)).success());
    let files = wav_files(&out);
    assert!(files.len() >= 2, "{files:?}");
    let end = u64::from(TS0) + 9_000 * FPP;
    for path in &files {
        let bytes = std::fs::read(path).expect("read");
        let plan = wav::repair(&bytes, bytes.len() as u64).expect("valid");
        assert!(
            plan.is_noop(bytes.len() as u64),
            "{}: {plan:?}",
            path.display()
        );
        let rec = read_wav(path);
        assert!(rec.frames() > 0, "{}", path.display());
        let [ffprobe, sox] = probe(path);
        assert_eq!(ffprobe, (RATE, 2, rec.frames()));
        assert_eq!(sox, ffprobe);
        check_content(&rec, &[0, 1], |pos| pos >= end);
    }
}

/// Two senders on the same media clock, started 137 ms apart, recorded by two recorders with
/// `align = "1s"`: both takes start on the same media-clock sample, which holds what each
/// sender sent there.
#[test]
fn two_streams_start_on_the_same_media_clock_sample() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let text = format!(
        "{}\n[[inputs]]\nname = \"second\"\nkind = \"aes67\"\naddress = \"127.0.0.1:5012\"\n\
         format = \"L24\"\nchannels = 2\nsample_rate = 48000\npayload_type = 97\n\
         latency = \"40ms\"\nmeters = false\n\n\
         [[recorders]]\nname = \"a\"\ninput = \"stage\"\ndirectory = \"{d}\"\nalign = \"1s\"\n\n\
         [[recorders]]\nname = \"b\"\ninput = \"second\"\ndirectory = \"{d}\"\nalign = \"1s\"\n",
        config(5010, 2, 8484, ""),
        d = out.display()
    );
    let mut estuary = start_estuary(dir.path(), &text);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    let a = std::thread::spawn(|| send_span(5010, 2, (0..2_600, 0xA), &[]));
    std::thread::sleep(Duration::from_millis(137));
    let b = std::thread::spawn(|| send_span(5012, 2, (137..2_600, 0xB), &[]));
    a.join().expect("a");
    b.join().expect("b");
    assert!(estuary.terminate(Duration::from_secs(10)).success());
    let files = wav_files(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    let a = read_wav(&files[0]);
    let b = read_wav(&files[1]);
    let start = |r: &Recording| r.info.bext.as_ref().expect("bext").time_reference;
    assert_eq!(start(&a), start(&b));
    assert_eq!(start(&a) % RATE, 0, "a whole second of the media clock");
    assert!(start(&a) > u64::from(TS0) + 137 * FPP);
    let end = u64::from(TS0) + 2_600 * FPP;
    for rec in [&a, &b] {
        check_content(rec, &[0, 1], |pos| pos >= end);
        assert!(rec.frames() > RATE, "{} frames", rec.frames());
    }
}

/// `estuary record ADDRESS --duration`: a one-off recording with a progress line, bit-exact.
#[test]
fn record_cli_records_a_stream_for_a_duration() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let sender = std::thread::spawn(|| send(5014, 2, 3_000, &[]));
    let (status, _, err) = run_with_timeout(
        Command::new(ESTUARY)
            .args([
                "record",
                "127.0.0.1:5014",
                "--duration",
                "2s",
                "--bits",
                "32",
                // Enough that a loaded CI host's sender thread never makes a packet late.
                "--latency",
                "200ms",
                "-o",
            ])
            .arg(dir.path()),
        Duration::from_secs(20),
    );
    sender.join().expect("sender");
    assert!(status.success(), "estuary record: {err}");
    assert!(
        err.contains("recording") && err.contains("1 file(s)"),
        "{err}"
    );
    let files = wav_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let rec = read_wav(&files[0]);
    assert_eq!(rec.info.spec.bits, 32);
    assert!(rec.info.rf64 || rec.info.ds64_offset.is_some());
    let seconds = rec.frames() as f64 / RATE as f64;
    assert!((1.5..=2.1).contains(&seconds), "{seconds} s");
    check_content(&rec, &[0, 1], |_| false);
    let [ffprobe, sox] = probe(&files[0]);
    assert_eq!(ffprobe, (RATE, 2, rec.frames()));
    assert_eq!(sox, ffprobe);
}

/// VOX: quiet (concealed) audio, then 500 ms of signal, then quiet again: one take that starts
/// exactly `pre_roll` before the first loud sample and ends `hang` after the last.
#[test]
fn vox_records_only_around_the_loud_part_with_pre_roll_and_hang() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let recorders = format!(
        "[[recorders]]\nname = \"vox\"\ninput = \"stage\"\ndirectory = \"{}\"\n\
         vox = {{ threshold = -40.0, hang = \"300ms\", pre_roll = \"200ms\" }}\n",
        out.display()
    );
    let mut estuary = start_estuary(dir.path(), &config(5016, 2, 8486, &recorders));
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    // Packets 0..100 start the stream; 100..1000 and 1500.. are never sent (silence).
    let quiet: Vec<u64> = (100..1_000).chain(1_500..2_200).collect();
    send(5016, 2, 2_200, &quiet);
    std::thread::sleep(Duration::from_millis(500));
    assert!(estuary.terminate(Duration::from_secs(10)).success());
    // Two takes: the stream's first 100 ms (no audio before it for a pre-roll), and the
    // loud half second with 200 ms of pre-roll; each ends 300 ms after its last loud sample.
    let files = wav_files(&out);
    assert_eq!(files.len(), 2, "{files:?}");
    let ts0 = u64::from(TS0);
    let takes = [
        (ts0, ts0..ts0 + 100 * FPP),
        (
            ts0 + 1_000 * FPP - RATE / 5,
            ts0 + 1_000 * FPP..ts0 + 1_500 * FPP,
        ),
    ];
    // In media-clock order: two takes in the same second are named `…` and `…-2`.
    let mut recs: Vec<Recording> = files.iter().map(|p| read_wav(p)).collect();
    recs.sort_by_key(|r| r.info.bext.as_ref().map(|b| b.time_reference));
    for (rec, (start, loud)) in recs.iter().zip(takes) {
        let path = &rec.path;
        let tr = rec.info.bext.as_ref().expect("bext").time_reference;
        assert_eq!(tr, start, "{}", path.display());
        let hang = tr + rec.frames() - loud.end;
        assert!(
            (RATE * 3 / 10..RATE * 3 / 10 + 10 * FPP).contains(&hang),
            "hang {hang} frames"
        );
        check_content(rec, &[0, 1], |pos| !loud.contains(&pos));
    }
}

/// The files of a recorder's takes, by TimeReference.
fn takes(dir: &Path) -> Vec<Recording> {
    let mut takes: Vec<Recording> = wav_files(dir).iter().map(|p| read_wav(p)).collect();
    takes.sort_by_key(|r| r.info.bext.as_ref().expect("bext").time_reference);
    takes
}

fn time_reference(r: &Recording) -> u64 {
    r.info.bext.as_ref().expect("bext").time_reference
}

/// Each take starts exactly where the one before ended.
fn assert_contiguous(takes: &[Recording]) {
    for w in takes.windows(2) {
        assert_eq!(
            time_reference(&w[1]),
            time_reference(&w[0]) + w[0].frames(),
            "{} follows {}",
            w[1].path.display(),
            w[0].path.display()
        );
    }
}

/// Two senders whose RTP clock is PTP time (TAI: UTC + 37 s) × 48 kHz, started 137 ms apart,
/// recorded with `rotate_every = "2s"`: both recorders cut on the same media-clock samples,
/// which are whole 2 s of UTC; each take's TimeReference is the last one's plus its length,
/// and every sample across the cuts is what was sent there.
#[test]
fn rotation_cuts_on_media_clock_boundaries() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    let text = format!(
        "{}\n[[inputs]]\nname = \"second\"\nkind = \"aes67\"\naddress = \"127.0.0.1:5022\"\n\
         format = \"L24\"\nchannels = 2\nsample_rate = 48000\npayload_type = 97\n\
         latency = \"40ms\"\nmeters = false\n\n\
         [[recorders]]\nname = \"a\"\ninput = \"stage\"\ndirectory = \"{}\"\nrotate_every = \"2s\"\n\n\
         [[recorders]]\nname = \"b\"\ninput = \"second\"\ndirectory = \"{}\"\nrotate_every = \"2s\"\n",
        config(5020, 2, 8486, ""),
        a_dir.display(),
        b_dir.display()
    );
    let mut estuary = start_estuary(dir.path(), &text);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    // Stay clear of the 32-bit wrap (every 24.9 h) so positions are plain numbers here.
    let ptp_frames = |now: std::time::SystemTime| {
        let utc = now
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        (utc + 37_000_000_000) * u128::from(RATE) / 1_000_000_000
    };
    let mut full = ptp_frames(std::time::SystemTime::now());
    while full % (1 << 32) > (1 << 32) - 30 * u128::from(RATE) {
        std::thread::sleep(Duration::from_secs(1));
        full = ptp_frames(std::time::SystemTime::now());
    }
    let ts0 = (full % (1 << 32)) as u64;
    let packets = 5_500;
    let a = std::thread::spawn(move || send_from(5020, 2, (0..packets, 0xA), ts0, &[]));
    std::thread::sleep(Duration::from_millis(137));
    let b = std::thread::spawn(move || send_from(5022, 2, (137..packets, 0xB), ts0, &[]));
    a.join().expect("a");
    b.join().expect("b");
    assert!(estuary.terminate(Duration::from_secs(20)).success());
    let end = ts0 + packets * FPP;
    let mut cuts = Vec::new();
    for dir in [&a_dir, &b_dir] {
        let takes = takes(dir);
        assert!(
            takes.len() >= 3,
            "{} takes in {}",
            takes.len(),
            dir.display()
        );
        assert_contiguous(&takes);
        for take in &takes {
            check_content(take, &[0, 1], |pos| pos >= end);
        }
        let starts: Vec<u64> = takes[1..].iter().map(time_reference).collect();
        for &start in &starts {
            // UTC of that sample: PTP frames − 37 s, a whole multiple of 2 s.
            let utc = full + u128::from(start - ts0) - 37 * u128::from(RATE);
            assert_eq!(
                utc % (2 * u128::from(RATE)),
                0,
                "cut at {start} (ts0 {ts0}); takes {:?}",
                takes
                    .iter()
                    .map(|t| (time_reference(t), t.frames()))
                    .collect::<Vec<_>>()
            );
        }
        let last = takes.last().expect("a take");
        cuts.push((
            time_reference(&takes[0]),
            starts,
            time_reference(last) + last.frames(),
        ));
    }
    // Both recorders cut on the same samples (b's first take started 137 ms later, maybe
    // after a's first cut), where both recorded: the stop loses what each input's jitter
    // buffer still held (100 ms for a, 40 ms for b), so a cut in between is b's alone.
    let (b_first, b_cuts, b_end) = cuts.pop().expect("b");
    let (_, a_cuts, a_end) = cuts.pop().expect("a");
    let both_end = a_end.min(b_end);
    let a_after: Vec<u64> = a_cuts
        .into_iter()
        .filter(|&c| c > b_first && c < both_end)
        .collect();
    let b_cuts: Vec<u64> = b_cuts.into_iter().filter(|&c| c < both_end).collect();
    assert_eq!(a_after, b_cuts);
    assert!(b_cuts.len() >= 2, "{b_cuts:?}");
}

/// Closing takes is slow (each close delayed 2.5 s, longer than the recorder's 2 s ring) and
/// takes rotate every second: the writer never waits for a close, so not a frame is dropped,
/// every take starts where the last ended, and every sample is what was sent.
#[test]
fn slow_closes_at_rotation_drop_nothing() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("rec");
    let text = config(
        5030,
        2,
        8488,
        &format!(
            "[[recorders]]\nname = \"slow\"\ninput = \"stage\"\ndirectory = \"{}\"\n\
             rotate_every = \"1s\"\n",
            out.display()
        ),
    );
    let path = dir.path().join("estuary.toml");
    std::fs::write(&path, text).expect("write config");
    let mut cmd = Command::new(ESTUARY);
    cmd.arg("run")
        .arg("-c")
        .arg(&path)
        .env("RUST_LOG", "info")
        .env("ESTUARY_TEST_CLOSE_DELAY", "2500ms");
    let mut estuary = Proc::spawn("estuary", &mut cmd, dir.path());
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    wait_for_api(8488);
    let packets = 4_500;
    send(5030, 2, packets, &[]);
    let wanted = packets * FPP;
    let status = recorder(
        &status_when(8488, |s| {
            recorder(s, "slow")["frames"].as_u64() >= Some(wanted)
        }),
        "slow",
    );
    assert_eq!(status["frames_dropped"], 0, "{status}");
    assert!(
        status["frames"].as_u64().expect("frames") >= packets * FPP,
        "{status}"
    );
    // Four takes or more are still being closed, one after the other.
    let closing = Instant::now();
    assert!(estuary.terminate(Duration::from_secs(30)).success());
    assert!(
        closing.elapsed() >= Duration::from_secs(5),
        "the closes were not delayed: {:?}",
        closing.elapsed()
    );
    let takes = takes(&out);
    assert!(takes.len() >= 4, "{} takes", takes.len());
    assert_contiguous(&takes);
    let end = u64::from(TS0) + packets * FPP;
    for take in &takes {
        check_content(take, &[0, 1], |pos| pos >= end);
    }
    assert_eq!(time_reference(&takes[0]), u64::from(TS0));
    let last = takes.last().expect("a take");
    assert!(time_reference(last) + last.frames() >= end);
}
