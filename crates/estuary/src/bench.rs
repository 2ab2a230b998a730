//! `estuary bench`: figures measured against real peers in the same run.
//!
//! `bench ingest` sends N AES67 streams (L24, 1 ms) on loopback from one in-process sender
//! thread, then lets each receiver take them in turn as a child process: Estuary's own ingest
//! path (the daemon's code: sockets, `recvmmsg`, jitter buffers), a GStreamer
//! `udpsrc ! rtpjitterbuffer ! rtpL24depay ! fakesink` pipeline and `ffmpeg -i stream.sdp -f
//! null -`. Each receiver's CPU time is read from /proc over the same window, so the ratio
//! between them holds even on a busy, shared machine where absolute figures wander.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use estuary_io::tx::{ToneConfig, ToneSender};

use crate::config;
use crate::pipeline::Running;
use crate::send;
use crate::shutdown::Stop;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// N AES67 streams received and jitter-buffered: Estuary vs GStreamer vs FFmpeg.
    Ingest(IngestArgs),
    /// (internal) Estuary's side of `bench ingest`, run as a child process.
    #[command(hide = true)]
    IngestWorker(IngestArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct IngestArgs {
    /// Number of streams.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Channels per stream.
    #[arg(long, default_value_t = 8)]
    channels: u16,
    /// Measured seconds per receiver (after a one-second warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// First UDP port on 127.0.0.1; stream i uses base_port + 2i.
    #[arg(long, default_value_t = 21_000)]
    base_port: u16,
    /// Measure only Estuary (e.g. for 128 streams, which the peers cannot keep up with).
    #[arg(long)]
    no_peers: bool,
}

const FRAMES_PER_PACKET: u32 = 48;
const PAYLOAD_TYPE: u8 = 98;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Ingest(a) => ingest(&a),
        BenchWhat::IngestWorker(a) => ingest_worker(&a),
    }
}

fn destination(args: &IngestArgs, i: usize) -> SocketAddr {
    let port = args.base_port + 2 * u16::try_from(i).unwrap_or(u16::MAX / 4);
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn stream_sdp(args: &IngestArgs, i: usize) -> String {
    let spec = send::ToneSpec {
        destination: destination(args, i),
        channels: args.channels,
        frames_per_packet: FRAMES_PER_PACKET,
        payload_type: PAYLOAD_TYPE,
        name: format!("bench {i}"),
        ..send::ToneSpec::default()
    };
    send::describe(&spec, spec.destination.ip(), i as u64 + 1, 0)
}

/// One receiver's figures.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    cpu: Duration,
    stream_seconds: f64,
    note: String,
}

impl Measured {
    fn ms_per_stream_second(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.stream_seconds
    }
}

fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    let configs = (0..args.streams)
        .map(|i| ToneConfig {
            ttl: 1,
            channels: args.channels,
            frames_per_packet: FRAMES_PER_PACKET,
            frequency_hz: 997.0,
            level_dbfs: -20.0,
            payload_type: PAYLOAD_TYPE,
            ..ToneConfig::new(destination(args, i))
        })
        .collect();
    let sender = ToneSender::spawn_multi(configs).context("starting the sender")?;
    println!(
        "bench ingest: {} streams x {} ch L24/48000, 1 ms packets ({} packets/s), {} s per receiver",
        args.streams,
        args.channels,
        args.streams * 1000,
        args.seconds
    );
    let dir = tempfile::tempdir()?;
    let mut results = vec![measure_estuary(args)?];
    if !args.no_peers {
        match measure_gstreamer(args) {
            Ok(m) => results.push(m),
            Err(e) => println!("  gstreamer: not measured: {e:#}"),
        }
        match measure_ffmpeg(args, dir.path()) {
            Ok(m) => results.push(m),
            Err(e) => println!("  ffmpeg: not measured: {e:#}"),
        }
    }
    drop(sender);
    let base = results[0].ms_per_stream_second();
    println!();
    println!(
        "{:<10} {:>10} {:>22} {:>12}  notes",
        "receiver", "CPU s", "CPU ms/stream-second", "vs Estuary"
    );
    for m in &results {
        println!(
            "{:<10} {:>10.3} {:>22.3} {:>11.1}x  {}",
            m.name,
            m.cpu.as_secs_f64(),
            m.ms_per_stream_second(),
            m.ms_per_stream_second() / base,
            m.note
        );
    }
    Ok(())
}

fn measure_estuary(args: &IngestArgs) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["bench", "ingest-worker"])
        .args(["--streams", &args.streams.to_string()])
        .args(["--channels", &args.channels.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--base-port", &args.base_port.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let cpu = sample_cpu(&[child.id()], args.seconds)?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let mut note = String::new();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        if let Some(rest) = line.strip_prefix("result ") {
            note = rest.to_owned();
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("estuary worker failed: {status}");
    }
    Ok(Measured {
        name: "estuary",
        cpu,
        stream_seconds: args.streams as f64 * args.seconds as f64,
        note,
    })
}

/// The worker: the daemon's ingest path with one input per stream and no outputs.
fn ingest_worker(args: &IngestArgs) -> anyhow::Result<()> {
    let mut text = String::new();
    for i in 0..args.streams {
        text.push_str(&format!(
            "[[inputs]]\nname = \"s{i}\"\nkind = \"aes67\"\nlatency = \"10ms\"\nsdp = '''\n{}'''\n\n",
            stream_sdp(args, i)
        ));
    }
    let cfg = config::parse(&text, Path::new("."))?;
    let running = Running::start(&cfg)?;
    // One second of warm-up, the measured window, and a little slack for the driver.
    std::thread::sleep(Duration::from_secs(args.seconds + 2));
    let stats = running.input_stats();
    let stop = Stop::default();
    stop.request();
    running.wait(&stop, crate::pipeline::Reporting::Log);
    let received: u64 = stats.iter().map(|(_, s)| s.stats.packets_received).sum();
    let lost: u64 = stats.iter().map(|(_, s)| s.stats.packets_lost).sum();
    let late: u64 = stats.iter().map(|(_, s)| s.stats.packets_late).sum();
    let elapsed = (args.seconds + 2) as f64;
    println!(
        "result {:.0} packets/s received, {lost} lost, {late} late",
        received as f64 / elapsed
    );
    Ok(())
}

fn measure_gstreamer(args: &IngestArgs) -> anyhow::Result<Measured> {
    let mut pipeline = String::new();
    for i in 0..args.streams {
        let port = destination(args, i).port();
        pipeline.push_str(&format!(
            "udpsrc address=127.0.0.1 port={port} caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=L24,channels={},payload={PAYLOAD_TYPE}\" ! rtpjitterbuffer latency=10 ! rtpL24depay ! fakesink sync=false ",
            args.channels
        ));
    }
    let child = Command::new("sh")
        .arg("-c")
        .arg(format!("exec gst-launch-1.0 -q {pipeline}"))
        .stdout(Stdio::null())
        .spawn()
        .context("gst-launch-1.0")?;
    let mut guard = Reaper(vec![child]);
    let cpu = sample_cpu(&guard.pids(), args.seconds)?;
    guard.check_alive("gst-launch-1.0")?;
    Ok(Measured {
        name: "gstreamer",
        cpu,
        stream_seconds: args.streams as f64 * args.seconds as f64,
        note: "udpsrc ! rtpjitterbuffer latency=10 ! rtpL24depay ! fakesink".into(),
    })
}

fn measure_ffmpeg(args: &IngestArgs, dir: &Path) -> anyhow::Result<Measured> {
    let mut children = Vec::new();
    for i in 0..args.streams {
        let path = dir.join(format!("s{i}.sdp"));
        std::fs::write(&path, stream_sdp(args, i))?;
        children.push(
            Command::new("ffmpeg")
                .args(["-nostdin", "-loglevel", "error", "-protocol_whitelist"])
                .args(["file,udp,rtp", "-i"])
                .arg(&path)
                .args(["-f", "null", "-"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("ffmpeg")?,
        );
    }
    let mut guard = Reaper(children);
    let cpu = sample_cpu(&guard.pids(), args.seconds)?;
    guard.check_alive("ffmpeg")?;
    Ok(Measured {
        name: "ffmpeg",
        cpu,
        stream_seconds: args.streams as f64 * args.seconds as f64,
        note: "one `ffmpeg -i s.sdp -f null -` per stream".into(),
    })
}

/// Kills its children when dropped, so a failed measurement leaves nothing running.
struct Reaper(Vec<Child>);

impl Reaper {
    fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }

    fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        for child in &mut self.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{what} exited early: {status}");
            }
        }
        Ok(())
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// CPU (user + system) the processes use during `seconds`, after one second of warm-up.
fn sample_cpu(pids: &[u32], seconds: u64) -> anyhow::Result<Duration> {
    std::thread::sleep(Duration::from_secs(1));
    let start = total_cpu(pids)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let end = total_cpu(pids)?;
    let wall = t0.elapsed().as_secs_f64();
    // Normalise to exactly `seconds` of wall time so sleeps that overshoot don't bias it.
    Ok((end.saturating_sub(start)).mul_f64(seconds as f64 / wall))
}

fn total_cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut total = 0.0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("process {pid} is gone"))?;
        // Fields after the parenthesised command name; utime and stime are the 14th and 15th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        let stime: f64 = fields.get(12).and_then(|f| f.parse().ok()).unwrap_or(0.0);
        total += (utime + stime) / ticks;
    }
    Ok(Duration::from_secs_f64(total))
}
