//! SRT input → AES67, end to end against real peers: FFmpeg (and `srt-live-transmit`) send
//! MPEG-TS over SRT, Estuary decodes it and transmits AES67, and GStreamer's `rtpL24depay`
//! receives. 302M must arrive bit-exact; AAC (at 44.1 kHz, so resampled), MP2 and Opus must
//! arrive at the right frequency and level; a wrong passphrase must show in the status. Each
//! test runs in its own network namespace.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const RATE: usize = 48_000;
const API: &str = "127.0.0.1:8480";
const GROUP: &str = "239.69.5.1";

/// Estuary with one SRT input (`input` holds its mode, address and the rest) feeding one
/// AES67 output to `GROUP`, API on [`API`].
fn config(input: &str) -> String {
    format!(
        "[api]\nbind = \"{API}\"\n[discovery]\nsap = false\nravenna = false\n\n\
         [[inputs]]\nname = \"remote\"\nkind = \"srt\"\nchannels = 2\nmeters = false\n{input}\n\n\
         [[outputs]]\nname = \"studio\"\nkind = \"aes67\"\ninput = \"remote\"\n\
         address = \"{GROUP}:5004\"\ninterface = \"lo\"\nttl = 1\nsap = false\n"
    )
}

/// GStreamer receiving Estuary's AES67 output for `seconds` into `out` (L24 big-endian).
fn gst_receiver(dir: &Path, seconds: u32, out: &Path) -> Proc {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec timeout -s INT {seconds} gst-launch-1.0 -q -e udpsrc address={GROUP} port=5004 \
         multicast-iface=lo caps=\"application/x-rtp,media=audio,clock-rate=48000,\
         encoding-name=L24,channels=2,payload=98\" ! rtpjitterbuffer latency=100 \
         ! rtpL24depay ! filesink location={}",
        out.display()
    ));
    Proc::spawn("gst-receiver", &mut cmd, dir)
}

/// FFmpeg sending `seconds` of a stereo 1 kHz sine at 0.25 (−15.05 dBFS RMS) as `codec`
/// (FFmpeg arguments) in MPEG-TS to `url`, in real time.
fn ffmpeg_tone(dir: &Path, codec: &[&str], seconds: u32, url: &str) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-re",
        "-f",
        "lavfi",
    ])
    .arg("-i")
    .arg(format!(
        "aevalsrc=0.25*sin(2*PI*1000*t)|0.25*sin(2*PI*1000*t):s=48000:d={seconds}"
    ))
    .args(codec)
    .args(["-f", "mpegts", url]);
    Proc::spawn("ffmpeg", &mut cmd, dir)
}

/// The daemon's status as JSON, straight from its API.
fn status() -> serde_json::Value {
    // The API comes up a moment after the daemon starts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(API) {
            Ok(stream) => break stream,
            Err(e) if Instant::now() > deadline => panic!("API: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET /api/status HTTP/1.1\r\nHost: {API}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("status is not JSON ({e}): {response}"))
}

fn srt_status() -> serde_json::Value {
    status()["inputs"][0]["srt"].clone()
}

/// Waits until the SRT input's status satisfies `ok`; returns it.
fn wait_for_srt(
    what: &str,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let srt = srt_status();
        if ok(&srt) {
            return srt;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {srt:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Checks the left channel of what GStreamer received: a 1 kHz tone at `level_db` RMS.
fn assert_tone(received: &Path, level_db: f64, tolerance_db: f64, estuary: &Proc) {
    let samples = s24be(&std::fs::read(received).expect("received"));
    let left = channel(&samples, 2, 0);
    let start = first_active(&left, 1 << 24).unwrap_or_else(|| {
        panic!(
            "received audio is silent ({} frames)\n{}",
            left.len(),
            estuary.stderr()
        )
    });
    // Skip the codec's fade-in and the buffer's start, then measure one second.
    let from = start + RATE * 2;
    assert!(
        left.len() >= from + RATE,
        "only {} frames of tone received\n{}",
        left.len() - start,
        estuary.stderr()
    );
    let tone = to_f64(&left[from..from + RATE]);
    let f = frequency(&tone, RATE as f64);
    let level = rms_dbfs(&tone);
    // The drift loop may steer by up to its ±0.2 % clamp while it settles (3.5 cents).
    assert!((f - 1000.0).abs() < 2.5, "frequency {f} Hz, expected 1000");
    assert!(
        (level - level_db).abs() < tolerance_db,
        "level {level:.2} dBFS RMS, expected {level_db:.2}"
    );
    // No dropout: the tone never falls silent for 2 ms inside the measured second.
    let quiet = tone.windows(96).any(|w| w.iter().all(|s| s.abs() < 1e-3));
    assert!(!quiet, "the tone has a dropout");
}

/// 302M (24-bit, from a sox-made noise file) through FFmpeg → SRT → Estuary → AES67 L24 →
/// GStreamer: every received sample is the one sox wrote.
#[test]
fn s302m_from_ffmpeg_reaches_aes67_bit_exact() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let noise = dir.path().join("noise.wav");
    let sent = dir.path().join("sent.raw");
    let (status, _, err) = run_with_timeout(
        Command::new("sox")
            .args([
                "-n",
                "-r",
                "48000",
                "-c",
                "2",
                "-b",
                "24",
                "-e",
                "signed-integer",
            ])
            .arg(&noise)
            .args(["synth", "4", "whitenoise", "vol", "0.5"]),
        Duration::from_secs(20),
    );
    assert!(status.success(), "sox: {err}");
    let (status, _, err) = run_with_timeout(
        Command::new("sox")
            .arg(&noise)
            .args(["-t", "raw", "-e", "signed-integer", "-b", "24", "-B"])
            .arg(&sent),
        Duration::from_secs(20),
    );
    assert!(status.success(), "sox: {err}");

    let mut estuary = start_estuary(
        dir.path(),
        &config("mode = \"listener\"\naddress = \"127.0.0.1:9000\""),
    );
    estuary.wait_for_stderr("SRT listener waiting", Duration::from_secs(10));
    let received = dir.path().join("received.raw");
    let mut receiver = gst_receiver(dir.path(), 8, &received);
    std::thread::sleep(Duration::from_millis(300));
    let mut ffmpeg = Command::new("ffmpeg");
    ffmpeg
        .args([
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(&noise)
        .args(["-c:a", "s302m", "-strict", "-2", "-f", "mpegts"])
        .arg("srt://127.0.0.1:9000?mode=caller");
    let mut ffmpeg = Proc::spawn("ffmpeg", &mut ffmpeg, dir.path());
    let srt = wait_for_srt("302M decoding", Duration::from_secs(10), |s| {
        s["codec"] == "s302m" && s["frames_decoded"].as_u64() > Some(10)
    });
    assert_eq!(srt["conversion"], "lossless", "{srt:#}");
    ffmpeg.wait_exit(Duration::from_secs(20));
    let srt = srt_status();
    receiver.wait_exit(Duration::from_secs(20));

    let received = s24be(&std::fs::read(&received).expect("received"));
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    let start = first_active(&received, 1 << 12).expect("received audio is silent") / 2 * 2;
    let run = &received[start..];
    let anchor =
        find_exact(&sent, &run[..960]).expect("the first received samples were never sent");
    // The sender's last few packets may be discarded when it closes (no linger in live mode).
    let len = (sent.len() - anchor)
        .min(run.len())
        .saturating_sub(RATE / 5 * 2);
    assert!(
        len >= 3 * RATE * 2,
        "only {} frames compared\n{}",
        len / 2,
        estuary.stderr()
    );
    // Only glitches the AES67 output counted (a transmitter starved on a loaded machine) may
    // break the copy; the SRT leg itself must be lossless (the counters below).
    let breaks = exact_stretches(&run[..len], &sent[anchor..])
        .unwrap_or_else(|e| panic!("{e}\nstatus: {srt:#}\n{}", estuary.stderr()));
    let counters = &crate::status()["outputs"][0]["counters"];
    assert_breaks_counted(breaks, counters, &estuary);
    assert_eq!(srt["underruns"], 0, "{srt:#}");
    assert_eq!(srt["steered_ticks"], 0, "{srt:#}");
    assert_eq!(srt["decode_errors"], 0, "{srt:#}");
}

/// AAC-LC at 44.1 kHz (FFmpeg's encoder, ADTS in TS): resampled to 48 kHz, the tone keeps its
/// frequency and level, and the status shows the codec, the rate conversion and no underrun.
#[test]
fn aac_44k1_from_ffmpeg_arrives_at_the_right_frequency_and_level() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut estuary = start_estuary(
        dir.path(),
        &config("mode = \"listener\"\naddress = \"127.0.0.1:9000\""),
    );
    estuary.wait_for_stderr("SRT listener waiting", Duration::from_secs(10));
    let received = dir.path().join("received.raw");
    let mut receiver = gst_receiver(dir.path(), 9, &received);
    std::thread::sleep(Duration::from_millis(300));
    let mut ffmpeg = ffmpeg_tone(
        dir.path(),
        &["-c:a", "aac", "-b:a", "160k", "-ar", "44100"],
        6,
        "srt://127.0.0.1:9000?mode=caller",
    );
    ffmpeg.wait_exit(Duration::from_secs(20));
    let srt = srt_status();
    receiver.wait_exit(Duration::from_secs(20));
    assert_eq!(srt["codec"], "aac", "{srt:#}");
    assert_eq!(srt["codec_sample_rate"], 44_100, "{srt:#}");
    assert_eq!(srt["conversion"], "resample", "{srt:#}");
    assert_eq!(srt["underruns"], 0, "{srt:#}");
    assert_eq!(srt["decode_errors"], 0, "{srt:#}");
    assert!(srt["packets"].as_u64() > Some(50), "{srt:#}");
    assert_tone(&received, -15.05, 0.5, &estuary);
}

/// Opus in TS (FFmpeg's libopus, ETSI TS 102 366 mapping) decodes to the tone.
#[test]
fn opus_from_ffmpeg_arrives_at_the_right_frequency_and_level() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut estuary = start_estuary(
        dir.path(),
        &config("mode = \"listener\"\naddress = \"127.0.0.1:9000\"\nbuffer = \"40ms\""),
    );
    estuary.wait_for_stderr("SRT listener waiting", Duration::from_secs(10));
    let received = dir.path().join("received.raw");
    let mut receiver = gst_receiver(dir.path(), 9, &received);
    std::thread::sleep(Duration::from_millis(300));
    let mut ffmpeg = ffmpeg_tone(
        dir.path(),
        &["-c:a", "libopus", "-b:a", "128k"],
        6,
        "srt://127.0.0.1:9000?mode=caller",
    );
    ffmpeg.wait_exit(Duration::from_secs(20));
    let srt = srt_status();
    receiver.wait_exit(Duration::from_secs(20));
    assert_eq!(srt["codec"], "opus", "{srt:#}");
    assert_eq!(srt["underruns"], 0, "{srt:#}");
    assert_tone(&received, -15.05, 0.5, &estuary);
}

/// Estuary as the caller: FFmpeg sends MP2 in TS over UDP to `srt-live-transmit`, which
/// listens for SRT; Estuary calls it, decodes the MP2 and transmits AES67.
#[test]
fn mp2_from_srt_live_transmit_listener_with_estuary_calling() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut slt = Command::new("srt-live-transmit");
    slt.args([
        "-q",
        "udp://127.0.0.1:5555",
        "srt://127.0.0.1:9001?mode=listener",
    ]);
    let _slt = Proc::spawn("srt-live-transmit", &mut slt, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let estuary = start_estuary(
        dir.path(),
        &config("mode = \"caller\"\naddress = \"127.0.0.1:9001\"\nstream_id = \"studio-a\""),
    );
    wait_for_srt("the SRT connection", Duration::from_secs(10), |s| {
        s["state"] == "connected"
    });
    let received = dir.path().join("received.raw");
    let mut receiver = gst_receiver(dir.path(), 9, &received);
    std::thread::sleep(Duration::from_millis(300));
    let mut ffmpeg = ffmpeg_tone(
        dir.path(),
        &["-c:a", "mp2", "-b:a", "256k"],
        6,
        "udp://127.0.0.1:5555?pkt_size=1316",
    );
    ffmpeg.wait_exit(Duration::from_secs(20));
    let srt = srt_status();
    receiver.wait_exit(Duration::from_secs(20));
    assert_eq!(srt["codec"], "mp2", "{srt:#}");
    assert_eq!(srt["underruns"], 0, "{srt:#}");
    assert_tone(&received, -15.05, 0.5, &estuary);
}

/// A wrong passphrase is refused by the listener, and the status says why.
#[test]
fn wrong_passphrase_shows_in_the_status() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut slt = Command::new("srt-live-transmit");
    slt.args([
        "-q",
        "udp://127.0.0.1:5555",
        "srt://127.0.0.1:9001?mode=listener&passphrase=correct-horse-battery",
    ]);
    let _slt = Proc::spawn("srt-live-transmit", &mut slt, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let _estuary = start_estuary(
        dir.path(),
        &config(
            "mode = \"caller\"\naddress = \"127.0.0.1:9001\"\npassphrase = \"wrong-passphrase\"",
        ),
    );
    let srt = wait_for_srt("a rejection", Duration::from_secs(15), |s| {
        s["connect_failures"].as_u64() > Some(0)
    });
    let error = srt["last_error"].as_str().unwrap_or_default();
    assert!(error.contains("bad passphrase"), "{srt:#}");
    assert_ne!(srt["state"], "connected", "{srt:#}");
}
