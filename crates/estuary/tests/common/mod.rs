//! Support for the end-to-end tests: the real `estuary` binary and real peers (GStreamer,
//! FFmpeg, srt-live-transmit), each test in its own network namespace, results checked by
//! content (decoded samples, frequency, level).
#![allow(dead_code)]

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ESTUARY: &str = env!("CARGO_BIN_EXE_estuary");

/// Puts the calling test thread (and every process it spawns) in a private loopback network.
pub fn isolate() {
    estuary_io::netns::isolate_thread_network().expect("private network namespace (needs root)");
}

/// A child process killed (SIGTERM, then SIGKILL) when the guard is dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    pub stderr_path: Option<PathBuf>,
}

impl Proc {
    /// Spawns `cmd` with stderr captured to `dir/<name>.stderr`.
    pub fn spawn(name: &str, cmd: &mut Command, dir: &Path) -> Proc {
        let path = dir.join(format!("{name}.stderr"));
        let file = std::fs::File::create(&path).expect("stderr file");
        let child = cmd
            .stdin(Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            child,
            name: name.to_owned(),
            stderr_path: Some(path),
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr_path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default()
    }

    /// Waits until stderr contains `needle`, or panics with what it did print.
    pub fn wait_for_stderr(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before printing {needle:?}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "{} did not print {needle:?} within {timeout:?}:\n{}",
            self.name,
            self.stderr()
        );
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "{} still running after {timeout:?}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits up to `timeout` for a graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.wait_exit(timeout)
    }

    /// SIGINT (Ctrl-C), so a tool like srt-live-transmit flushes its output, then waits;
    /// kills it if it has not exited by `timeout`.
    pub fn interrupt(&mut self, timeout: Duration) {
        let pid = self.child.id() as i32;
        // SAFETY: plain kill(2) of our own child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as i32;
            // SAFETY: plain kill(2) of our own child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(100));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `estuary run -c <config>` with the config text written into `dir`.
pub fn start_estuary(dir: &Path, config: &str) -> Proc {
    let path = dir.join("estuary.toml");
    std::fs::write(&path, config).expect("write config");
    let mut cmd = Command::new(ESTUARY);
    cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "info");
    Proc::spawn("estuary", &mut cmd, dir)
}

/// Runs a command to completion with a timeout; returns (status, stdout, stderr).
pub fn run_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        out_thread.join().unwrap_or_default(),
        err_thread.join().unwrap_or_default(),
    )
}

/// Interleaved little-endian s32 (FFmpeg `-f s32le`) to samples.
pub fn s32le(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Interleaved big-endian 24-bit (RTP L24) to MSB-aligned i32.
pub fn s24be(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(3)
        .map(|c| i32::from_be_bytes([c[0], c[1], c[2], 0]))
        .collect()
}

/// Interleaved big-endian 16-bit to MSB-aligned i32.
pub fn s16be(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(2)
        .map(|c| i32::from_be_bytes([c[0], c[1], 0, 0]))
        .collect()
}

/// One channel out of interleaved samples.
pub fn channel(samples: &[i32], channels: usize, index: usize) -> Vec<i32> {
    samples
        .iter()
        .skip(index)
        .step_by(channels)
        .copied()
        .collect()
}

/// Index of the first sample whose magnitude exceeds `threshold` (skips leading silence).
pub fn first_active(samples: &[i32], threshold: i32) -> Option<usize> {
    samples
        .iter()
        .position(|s| s.unsigned_abs() > threshold.unsigned_abs())
}

/// Finds where `needle` (a run of decoded samples) starts inside `haystack` (what was sent),
/// comparing exactly. Returns the offset in `haystack`.
pub fn find_exact(haystack: &[i32], needle: &[i32]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    (0..=haystack.len() - needle.len()).find(|&k| haystack[k..k + needle.len()] == *needle)
}

/// A stretch shorter than this (10 ms of stereo) is not trusted to locate itself in `sent`.
pub const ANCHOR: usize = 2 * 480;
/// More breaks than this in a few seconds is not a loaded machine but a broken transmitter.
pub const MAX_BREAKS: usize = 8;

/// Walks interleaved stereo `run` as stretches that each copy a run of `sent` exactly, with
/// only all-zero frames between them; returns the number of breaks.
pub fn exact_stretches(run: &[i32], sent: &[i32]) -> Result<usize, String> {
    let mut pos = 0;
    let mut breaks = 0;
    while pos < run.len() {
        while pos + 1 < run.len() && run[pos] == 0 && run[pos + 1] == 0 {
            pos += 2;
        }
        let window = &run[pos..(pos + ANCHOR).min(run.len())];
        if window.len() < ANCHOR && pos > 0 {
            // The tail after a break is too short to place; it is not counted as checked.
            break;
        }
        // A second break within the window: a packet's worth still places itself.
        let anchor = find_exact(sent, window)
            .or_else(|| find_exact(sent, &window[..window.len().min(2 * 48)]));
        let anchor = anchor.ok_or_else(|| {
            format!(
                "received frame {} (of {}) starts {} frames that were never sent: {:?}",
                pos / 2,
                run.len() / 2,
                window.len() / 2,
                &window[..8.min(window.len())]
            )
        })?;
        let same = run[pos..]
            .iter()
            .zip(&sent[anchor..])
            .take_while(|(r, s)| r == s)
            .count()
            / 2
            * 2;
        pos += same;
        if pos < run.len() {
            breaks += 1;
            if breaks > MAX_BREAKS {
                return Err(format!(
                    "the received audio breaks more than {MAX_BREAKS} times; the last at \
                     frame {} of {}",
                    pos / 2,
                    run.len() / 2
                ));
            }
        }
    }
    Ok(breaks)
}

/// Breaks in a transmitted run are only acceptable when the AES67 output counted them:
/// `counters` is the output's `counters` object from `/api/status`.
pub fn assert_breaks_counted(breaks: usize, counters: &serde_json::Value, estuary: &Proc) {
    if breaks == 0 {
        return;
    }
    let counted = ["underrun_packets", "frames_dropped"].map(|k| counters[k].as_u64().unwrap_or(0));
    assert!(
        counted.iter().sum::<u64>() > 0,
        "the received audio breaks {breaks} times, yet the transmitter counted no underrun or \
         dropped frame: {counters}\n{}",
        estuary.stderr()
    );
    eprintln!("{breaks} counted transmit glitches: {counters}");
}

/// Frequency of a tone from its positive-going zero crossings, interpolated between samples.
pub fn frequency(samples: &[f64], rate: f64) -> f64 {
    let mut crossings = Vec::new();
    for i in 1..samples.len() {
        let (a, b) = (samples[i - 1], samples[i]);
        if a < 0.0 && b >= 0.0 {
            crossings.push((i - 1) as f64 + a / (a - b));
        }
    }
    assert!(
        crossings.len() >= 3,
        "no tone: {} crossings",
        crossings.len()
    );
    // Periods that straddle a concealed gap (counted silence on a loaded machine) or a
    // switch of source are not the tone's: keep only those near the median period.
    let periods: Vec<f64> = crossings.windows(2).map(|w| w[1] - w[0]).collect();
    let mut sorted = periods.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let steady: Vec<f64> = periods
        .into_iter()
        .filter(|p| (p - median).abs() < median * 0.05)
        .collect();
    rate * steady.len() as f64 / steady.iter().sum::<f64>()
}

/// RMS level in dBFS (a full-scale sine reads −3.01 dBFS).
pub fn rms_dbfs(samples: &[f64]) -> f64 {
    let mean_sq = samples.iter().map(|s| s * s).sum::<f64>() / samples.len() as f64;
    10.0 * mean_sq.log10()
}

/// MSB-aligned i32 to floating point full scale ±1.
pub fn to_f64(samples: &[i32]) -> Vec<f64> {
    samples
        .iter()
        .map(|&s| f64::from(s) / 2f64.powi(31))
        .collect()
}

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A tone for [`gst_l24_sender`]: a multicast group, stereo L24, 1 ms packets.
pub struct GstTone<'a> {
    pub host: &'a str,
    pub port: u16,
    pub channels: u16,
    pub freq: f64,
    /// Linear amplitude, 1.0 = full scale.
    pub volume: f64,
    pub seconds: u32,
}

impl GstTone<'_> {
    pub fn stereo(host: &str, volume: f64, seconds: u32) -> GstTone<'_> {
        GstTone {
            host,
            port: 5004,
            channels: 2,
            freq: 997.0,
            volume,
            seconds,
        }
    }
}

/// A GStreamer AES67-style sender: `audiotestsrc` → L24 → RTP, with exactly what it sent also
/// written to `sent` (S24BE), so the test compares against the real bytes.
pub fn gst_l24_sender(dir: &Path, tone: &GstTone<'_>, sent: &Path) -> Proc {
    let GstTone {
        host,
        port,
        channels,
        freq,
        volume,
        seconds,
    } = *tone;
    let buffers = seconds * 1000;
    let pipeline = format!(
        "audiotestsrc wave=sine freq={freq} volume={volume} samplesperbuffer=48 num-buffers={buffers} is-live=true \
         ! audio/x-raw,format=S32LE,rate=48000,channels={channels} \
         ! audioconvert dithering=none noise-shaping=none ! audio/x-raw,format=S24BE,rate=48000,channels={channels} \
         ! tee name=t \
         t. ! queue ! rtpL24pay pt=98 mtu=1500 min-ptime=1000000 max-ptime=1000000 \
            ! udpsink host={host} port={port} auto-multicast=true multicast-iface=lo ttl-mc=1 sync=false async=false \
         t. ! queue ! filesink location={}",
        sent.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec gst-launch-1.0 -q {pipeline}"));
    Proc::spawn("gst-sender", &mut cmd, dir)
}

/// `ffmpeg` as an SRT caller that decodes what Estuary serves into raw s32le.
pub fn ffmpeg_srt_decoder(dir: &Path, url: &str, seconds: u32, out: &Path) -> Proc {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-i", url])
        .args(["-t", &seconds.to_string()])
        .args(["-f", "s32le", "-acodec", "pcm_s32le"])
        .arg(out);
    Proc::spawn("ffmpeg-decoder", &mut cmd, dir)
}

/// Decodes an MPEG-TS file (what an SRT peer received) with FFmpeg into s32 samples.
pub fn decode_ts_file(ts: &Path) -> Vec<i32> {
    let out = ts.with_extension("decoded.raw");
    let (status, _, stderr) = run_with_timeout(
        Command::new("ffmpeg")
            .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
            .arg(ts)
            .args(["-f", "s32le", "-acodec", "pcm_s32le"])
            .arg(&out),
        Duration::from_secs(20),
    );
    assert!(
        status.success(),
        "ffmpeg could not decode {}: {stderr}",
        ts.display()
    );
    s32le(&std::fs::read(&out).expect("decoded"))
}

/// What a 20 ms window of decoded audio is, in the failover tests: silence, the main tone (997 Hz),
/// the backup tone (1500 Hz), or a mix.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    Silent,
    Main,
    Backup,
    Other,
}

pub fn classify(window: &[i32]) -> Window {
    if window.iter().all(|&s| s == 0) {
        return Window::Silent;
    }
    let crossings = window
        .windows(2)
        .filter(|w| (w[0] < 0) != (w[1] < 0))
        .count();
    // 20 ms: 997 Hz crosses zero about 40 times, 1500 Hz about 60 times.
    match crossings {
        36..=44 => Window::Main,
        56..=64 => Window::Backup,
        _ => Window::Other,
    }
}

/// `GET {api}{path}` as JSON (`Null` while the daemon does not answer).
pub fn api_json(api: &str, path: &str) -> serde_json::Value {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "5", &format!("{api}{path}")]);
    let (_, out, _) = run_with_timeout(&mut cmd, Duration::from_secs(10));
    serde_json::from_slice(&out).unwrap_or(serde_json::Value::Null)
}

/// Polls `GET {api}{path}` until `check` holds; the daemon's log in the failure.
pub fn wait_for_json(
    (api, path): (&str, &str),
    what: &str,
    timeout: Duration,
    estuary: &Proc,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let v = api_json(api, path);
        if check(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {v}\n{}",
            estuary.stderr()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The clock identity of the veth peer's interface (a PTP peer running there, e.g. ptp4l) as
/// Estuary writes it (`AA-BB-CC-FF-FE-DD-EE-FF`).
pub fn peer_identity(ns: &estuary_io::netns::PeerNamespace) -> String {
    estuary_io::ptp::format_identity(&ns.peer_ptp_identity().expect("peer MAC"))
}

/// linuxptp's `ptp4l` as grandmaster (software timestamps, default options) in a fresh
/// peer namespace `tag` across a veth pair; both live while the pair is held.
pub fn ptp4l_grandmaster(
    tag: &str,
    dir: &Path,
) -> (estuary_io::netns::PeerNamespace, estuary_io::ptp4l::Ptp4l) {
    use estuary_io::netns::PeerNamespace;
    let ns = PeerNamespace::create(tag).expect("veth pair");
    let gm = estuary_io::ptp4l::Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        estuary_io::ptp4l::Ptp4lOptions::default(),
        dir,
    )
    .expect("ptp4l");
    (ns, gm)
}
