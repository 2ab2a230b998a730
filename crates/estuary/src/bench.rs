//! `estuary bench`: figures measured against real peers in the same run.
//!
//! Both benchmarks send AES67 (L24, 1 ms) on loopback from one in-process sender thread. Each
//! receiver then takes the streams in turn as a child process, and the bench reads its CPU
//! time (and resident memory) from /proc over the same window. The ratio between receivers
//! therefore holds even on a busy, shared machine where absolute figures wander.
//!
//! - `bench ingest`: N streams received and jitter-buffered. The receivers are Estuary's ingest
//!   path (the daemon's own code: sockets, `recvmmsg`, jitter buffers), GStreamer
//!   `udpsrc ! rtpjitterbuffer ! rtpL24depay ! fakesink`, and `ffmpeg -i s.sdp -f null -`.
//! - `bench bridge`: one stream bridged to an SRT listener as Opus in MPEG-TS, with
//!   srt-live-transmit pulling it. It compares CPU and memory with GStreamer and FFmpeg doing
//!   the same job, and reports Estuary's added latency: the playout lag of the 1 ms tick, plus
//!   the hand-off from the completed codec frame to the SRT send.
//! - `bench encode`: the network outputs' encoders (MP3, AAC-LC, Opus, FLAC) against the
//!   `ffmpeg` command line on the same program (bench_encode.rs).
//! - `bench meters`: in one thread of one process, the engine's ingest path (jitter-buffer push
//!   of L24 packets and pull) against `Monitor::process` (meters, loudness, detectors) on the
//!   same audio, in alternating rounds, as thread CPU per channel-second, so the metering cost
//!   is stated as a fraction of the ingest cost measured under the same conditions.

use std::io::{BufRead as _, BufReader};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use estuary_io::clock::clock_ticks_per_second;
use estuary_io::tx::{ToneConfig, ToneSender};

use crate::config;
use crate::pipeline::Running;
use crate::send;

#[path = "bench_tx.rs"]
mod transmit;

#[path = "bench_ptp.rs"]
mod ptp;

#[path = "bench_encode.rs"]
mod encode;

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// N AES67 streams received and jitter-buffered: Estuary vs GStreamer vs FFmpeg.
    Ingest(IngestArgs),
    /// One AES67 stream bridged to SRT (Opus): CPU, memory and added latency vs the peers.
    Bridge(BridgeArgs),
    /// Metering (`Monitor::process`) vs the ingest engine path, in-process, same run.
    Meters(MetersArgs),
    /// Recording every channel to its own mono file vs ingest alone, same streams, same run.
    Record(IngestArgs),
    /// (internal) Estuary's side of `bench ingest`, run as a child process.
    #[command(hide = true)]
    IngestWorker(IngestArgs),
    /// (internal) The file writes alone of `bench record`: prebuilt blocks, run as a child.
    #[command(hide = true)]
    RecordFloor(IngestArgs),
    /// (internal) Estuary's side of `bench bridge`, run as a child process.
    #[command(hide = true)]
    BridgeWorker(BridgeArgs),
    /// N AES67 streams transmitted: CPU and pacing, Estuary vs GStreamer.
    Transmit(transmit::TransmitArgs),
    /// (internal) Estuary's side of `bench transmit`, run as a child process.
    #[command(hide = true)]
    TransmitWorker(transmit::TransmitArgs),
    /// (internal) The kernel's share of `bench transmit`: prebuilt packets, run as a child.
    #[command(hide = true)]
    TransmitFloor(transmit::TransmitArgs),
    /// PTP follower error to a ptp4l grandmaster on a veth pair, vs ptp4l's own follower.
    Ptp(ptp::PtpBenchArgs),
    /// MP3, AAC, Opus and FLAC encoding of one stereo program: CPU vs FFmpeg, same run.
    Encode(encode::EncodeArgs),
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
    /// Measure only Estuary (e.g. for 128 streams, more than the peers keep up with here).
    #[arg(long)]
    no_peers: bool,
    /// Jitter-buffer latency of Estuary's inputs (GStreamer's rtpjitterbuffer gets 10 ms).
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// `bench ingest`: also run Estuary with every input metered (meters, loudness,
    /// detectors, health: the daemon's default) and report what metering adds; the worker:
    /// meter every input.
    #[arg(long)]
    meters: bool,
    /// The worker (with `--meters` or `--record-dir`): meters or recorders paused and running
    /// in turns of this long, the process's CPU timed in each turn (see [`interleaved`]).
    #[arg(long, value_parser = humantime::parse_duration)]
    interleave: Option<Duration>,
    /// `bench record` and `bench ingest --meters`: pairs of runs (ingest alone, then with
    /// recording or meters, in alternating order); the figure is the median of the pairs'
    /// ratios, which a noisy machine moves less than any one pair. `--rounds 0`: only the
    /// measurement in turns inside one worker.
    #[arg(long, default_value_t = 1)]
    rounds: usize,
    /// `bench record`: where the recordings go (a temporary directory inside it, deleted
    /// after); the worker: record every channel to a mono file here.
    #[arg(long)]
    record_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, clap::Args)]
struct MetersArgs {
    /// Number of streams.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Channels per stream (1..=64).
    #[arg(long, default_value_t = 64)]
    channels: u16,
    /// Seconds of audio per stream in each measurement.
    #[arg(long, default_value_t = 2)]
    seconds: u64,
    /// Rounds (each measures ingest and each meter configuration once); medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Debug, Clone, clap::Args)]
struct BridgeArgs {
    /// Channels of the AES67 stream (Opus carries the first two).
    #[arg(long, default_value_t = 2)]
    channels: u16,
    /// Measured seconds per bridge (after a two-second warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// UDP port of the AES67 stream on 127.0.0.1.
    #[arg(long, default_value_t = 21_500)]
    rtp_port: u16,
    /// SRT listener port on 127.0.0.1.
    #[arg(long, default_value_t = 21_600)]
    srt_port: u16,
}

const FRAMES_PER_PACKET: u32 = 48;
const PAYLOAD_TYPE: u8 = 98;
const OPUS_BITRATE: u32 = 128_000;

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    match args.what {
        BenchWhat::Ingest(a) => ingest(&a),
        BenchWhat::Bridge(a) => bridge(&a),
        BenchWhat::Meters(a) => meters(&a),
        BenchWhat::Record(a) => record(&a),
        BenchWhat::IngestWorker(a) => ingest_worker(&a),
        BenchWhat::RecordFloor(a) => record_floor(&a),
        BenchWhat::BridgeWorker(a) => bridge_worker(&a),
        BenchWhat::Transmit(a) => transmit::transmit(&a),
        BenchWhat::TransmitWorker(a) => transmit::transmit_worker(&a),
        BenchWhat::TransmitFloor(a) => transmit::transmit_floor(&a),
        BenchWhat::Ptp(a) => ptp::ptp(&a),
        BenchWhat::Encode(a) => encode::encode(&a),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn tone_spec(destination: SocketAddr, channels: u16, name: String) -> send::ToneSpec {
    send::ToneSpec {
        destination,
        channels,
        frames_per_packet: FRAMES_PER_PACKET,
        payload_type: PAYLOAD_TYPE,
        frequency_hz: 997.0,
        level_dbfs: -20.0,
        ttl: 1,
        name,
        ..send::ToneSpec::default()
    }
}

fn start_senders(specs: &[send::ToneSpec]) -> anyhow::Result<ToneSender> {
    let configs = specs
        .iter()
        .map(|s| ToneConfig {
            ttl: s.ttl,
            channels: s.channels,
            frames_per_packet: s.frames_per_packet,
            frequency_hz: s.frequency_hz,
            level_dbfs: s.level_dbfs,
            payload_type: s.payload_type,
            ..ToneConfig::new(s.destination)
        })
        .collect();
    ToneSender::spawn_multi(configs).context("starting the sender")
}

fn sdp_of(spec: &send::ToneSpec, session_id: u64) -> String {
    send::describe(spec, spec.destination.ip(), session_id, 0)
}

/// One receiver's figures.
#[derive(Debug)]
struct Measured {
    name: &'static str,
    cpu: Duration,
    stream_seconds: f64,
    /// Resident set at the end of the window and its peak (VmRSS, VmHWM), summed over processes.
    rss_kib: u64,
    peak_kib: u64,
    note: String,
}

impl Measured {
    fn ms_per_stream_second(&self) -> f64 {
        self.cpu.as_secs_f64() * 1000.0 / self.stream_seconds
    }

    /// The worker reported lost or late packets: the sender (sharing this machine) fell
    /// behind, and the receiver spent the run concealing rather than receiving.
    fn starved(&self) -> bool {
        let count = |what: &str| {
            self.note.split([',', ';']).any(|part| {
                part.trim()
                    .strip_suffix(what)
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .is_some_and(|n| n > 0)
            })
        };
        count(" lost") || count(" late")
    }
}

fn print_table(results: &[Measured]) {
    let Some(base) = results.first().map(Measured::ms_per_stream_second) else {
        return;
    };
    println!();
    println!(
        "{:<10} {:>8} {:>14} {:>8} {:>10} {:>10}  notes",
        "receiver", "CPU s", "CPU ms/strm-s", "ratio", "RSS MiB", "peak MiB"
    );
    for m in results {
        println!(
            "{:<10} {:>8.3} {:>14.3} {:>7.1}x {:>10.1} {:>10.1}  {}",
            m.name,
            m.cpu.as_secs_f64(),
            m.ms_per_stream_second(),
            m.ms_per_stream_second() / base,
            m.rss_kib as f64 / 1024.0,
            m.peak_kib as f64 / 1024.0,
            m.note
        );
    }
}

fn ingest(args: &IngestArgs) -> anyhow::Result<()> {
    let specs = ingest_specs(args);
    let sender = start_senders(&specs)?;
    println!(
        "bench ingest: {} streams x {} ch L24/48000, 1 ms packets ({} packets/s), {} s per receiver",
        args.streams,
        args.channels,
        args.streams * 1000,
        args.seconds
    );
    let stream_seconds = args.streams as f64 * args.seconds as f64;
    let exe = std::env::current_exe()?;
    let mut worker = Command::new(exe);
    worker
        .args(["bench", "ingest-worker"])
        .args(["--streams", &args.streams.to_string()])
        .args(["--channels", &args.channels.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--base-port", &args.base_port.to_string()])
        .args([
            "--latency",
            &humantime::format_duration(args.latency).to_string(),
        ]);
    // The worker's command line plus `extra`.
    let worker_with = |extra: &[&str]| {
        let mut cmd = Command::new(worker.get_program());
        cmd.args(worker.get_args()).args(extra);
        cmd
    };
    let mut results = if args.meters && args.rounds == 0 {
        // Only the measurement in turns, below.
        Vec::new()
    } else if args.meters {
        let metered = || {
            measure_worker(
                "estuary+meters",
                worker_with(&["--meters"]),
                args.seconds,
                stream_seconds,
            )
        };
        let bare = || measure_worker("estuary", worker_with(&[]), args.seconds, stream_seconds);
        paired_rounds(
            args.rounds,
            "metering (every channel: peak, true peak, RMS, R128, detectors, health)",
            bare,
            metered,
        )?
    } else {
        vec![measure_worker(
            "estuary",
            worker_with(&[]),
            args.seconds,
            stream_seconds,
        )?]
    };
    let sender_lateness = sender.max_lateness();
    if !args.no_peers {
        let pipeline: String = specs
            .iter()
            .map(|s| {
                format!(
                    "{} ! rtpjitterbuffer latency=10 ! rtpL24depay ! fakesink sync=false ",
                    l24_udpsrc(s.destination.port(), args.channels)
                )
            })
            .collect();
        report(
            &mut results,
            measure_peer(
                "gstreamer",
                (vec![gst_launch(&pipeline)], vec![]),
                args.seconds,
                stream_seconds,
                "udpsrc ! rtpjitterbuffer latency=10 ! rtpL24depay ! fakesink",
            ),
        );
        let dir = tempfile::tempdir()?;
        let ffmpegs = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let path = dir.path().join(format!("s{i}.sdp"));
                std::fs::write(&path, sdp_of(spec, i as u64 + 1))?;
                let mut cmd = ffmpeg_reading(&path);
                cmd.args(["-f", "null", "-"]);
                Ok(cmd)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        report(
            &mut results,
            measure_peer(
                "ffmpeg",
                (ffmpegs, vec![]),
                args.seconds,
                stream_seconds,
                "one `ffmpeg -i s.sdp -f null -` per stream",
            ),
        );
    }
    print_table(&results);
    println!(
        "sender: worst delay behind schedule while Estuary measured: {:.2} ms (packets later than the {} ms latency are the sender's, not the receiver's)",
        sender_lateness.as_secs_f64() * 1000.0,
        args.latency.as_millis()
    );
    if args.meters {
        // The same comparison inside one worker, in turns (see `interleaved`).
        let turns = worker_with(&["--meters", "--interleave", "200ms"]);
        measure_turns(turns, args.seconds, stream_seconds)?;
    }
    Ok(())
}

/// Runs a worker measuring in turns (see [`interleaved`]) and prints its figure, with a
/// word when the sender fell behind somewhere in the run (the figure itself counts only
/// the pairs of turns where it did not).
fn measure_turns(worker: Command, seconds: u64, stream_seconds: f64) -> anyhow::Result<()> {
    let measured = measure_worker("interleaved", worker, seconds, stream_seconds)?;
    let flag = if measured.starved() {
        " (not clean: the sender fell behind and packets were lost or late; the pairs of turns where they were are left out of the figure)"
    } else {
        ""
    };
    println!("{}{flag}", measured.note);
    Ok(())
}

/// `rounds` pairs of runs, `bare` and `with` in alternating order, each pair printed; then
/// the median of the pairs' ratios, which a noisy machine moves less than any one pair.
/// A pair where either run lost or received late packets is shown but not counted. Returns
/// the last pair.
fn paired_rounds(
    rounds: usize,
    what: &str,
    bare: impl Fn() -> anyhow::Result<Measured>,
    with: impl Fn() -> anyhow::Result<Measured>,
) -> anyhow::Result<Vec<Measured>> {
    let rounds = rounds.max(1);
    let mut ratios = Vec::with_capacity(rounds);
    let mut last = Vec::new();
    for round in 0..rounds {
        // Alternating which goes first keeps a drift in the machine's load out of the ratio.
        let results = if round % 2 == 0 {
            vec![bare()?, with()?]
        } else {
            let w = with()?;
            vec![bare()?, w]
        };
        print_table(&results);
        if let [a, b] = &results[..] {
            let ratio = b.cpu.as_secs_f64() / a.cpu.as_secs_f64();
            let starved = a.starved() || b.starved();
            println!(
                "round {}: {what} adds {:.0} % to the ingest CPU{}",
                round + 1,
                (ratio - 1.0) * 100.0,
                if starved {
                    " (not counted: packets were lost or late, the sender fell behind)"
                } else {
                    ""
                }
            );
            if !starved {
                ratios.push(ratio);
            }
        }
        last = results;
    }
    ratios.sort_by(f64::total_cmp);
    match median_of_sorted(&ratios) {
        Some(median) => println!(
            "{what} adds {:.0} % to the ingest CPU (median of {} clean rounds of {rounds}; range {:.0} to {:.0} %)",
            (median - 1.0) * 100.0,
            ratios.len(),
            (ratios[0] - 1.0) * 100.0,
            (ratios[ratios.len() - 1] - 1.0) * 100.0
        ),
        None => println!("{what}: no valid figure (every round lost or late packets)"),
    }
    Ok(last)
}

/// The median of sorted values (the mean of the middle two for an even count).
fn median_of_sorted(sorted: &[f64]) -> Option<f64> {
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(mid).copied(),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2.0),
    }
}

/// `bench record`: the ingest worker without and then with a recorder per stream writing
/// every channel to its own 24-bit mono file, against the same senders.
fn record(args: &IngestArgs) -> anyhow::Result<()> {
    let specs = ingest_specs(args);
    let sender = start_senders(&specs)?;
    let parent = args.record_dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::tempdir_in(&parent)?;
    println!(
        "bench record: {} streams x {} ch L24/48000 ({} channels), each channel to its own 24-bit mono BWF in {}, {} s per run",
        args.streams,
        args.channels,
        args.streams * usize::from(args.channels),
        parent.display(),
        args.seconds
    );
    let stream_seconds = args.streams as f64 * args.seconds as f64;
    // This binary as `bench <what>` (the ingest worker, or the floor) with the run's args.
    let child = |what: &str, record: Option<&Path>| {
        let mut cmd = Command::new(std::env::current_exe().unwrap_or_else(|_| "estuary".into()));
        cmd.args(["bench", what])
            .args(["--streams", &args.streams.to_string()])
            .args(["--channels", &args.channels.to_string()])
            .args(["--seconds", &args.seconds.to_string()])
            .args(["--base-port", &args.base_port.to_string()])
            .args([
                "--latency",
                &humantime::format_duration(args.latency).to_string(),
            ]);
        if let Some(dir) = record {
            cmd.arg("--record-dir").arg(dir);
        }
        cmd
    };
    let worker = |record: Option<&Path>| child("ingest-worker", record);
    let bare = || measure_worker("ingest", worker(None), args.seconds, stream_seconds);
    let recorded = || {
        measure_worker(
            "+record",
            worker(Some(dir.path())),
            args.seconds,
            stream_seconds,
        )
    };
    let last = if args.rounds == 0 {
        Vec::new()
    } else {
        paired_rounds(args.rounds, "recording", bare, recorded)?
    };
    // The same comparison inside one worker, in turns (see `interleaved`). A turn is longer
    // than the recorders' header interval (1 s), so each write carries a second of audio as
    // when recording without turns: shorter turns cut the writes short and, with a cost per
    // write that dwarfs the cost per byte, read up to twice the figure (500 ms: +100 %
    // where 2 s read +51 %).
    let mut turns = worker(Some(dir.path()));
    turns.args(["--interleave", "2s"]);
    measure_turns(turns, args.seconds, stream_seconds)?;
    println!(
        "sender: worst delay behind schedule: {:.2} ms",
        sender.max_lateness().as_secs_f64() * 1000.0
    );
    // The floor: the same bytes into the same number of files, nothing else.
    let floor_dir = tempfile::tempdir_in(&parent)?;
    let floor = measure_worker(
        "floor",
        child("record-floor", Some(floor_dir.path())),
        args.seconds,
        stream_seconds,
    )?;
    print_table(std::slice::from_ref(&floor));
    let share = last.first().map_or(String::new(), |ingest| {
        format!(
            ", {:.0} % of the last ingest run's CPU",
            floor.cpu.as_secs_f64() / ingest.cpu.as_secs_f64() * 100.0
        )
    });
    println!(
        "the file writes alone (the same bytes, prebuilt, into as many files, direct) cost {:.0} ms of CPU per second{share}",
        floor.cpu.as_secs_f64() * 1000.0 / args.seconds as f64
    );
    Ok(())
}

/// The floor of `bench record`: what writing the recorders' bytes costs with nothing else.
/// Every second, one block of a second of 24-bit mono audio (rounded up to whole 4 KiB
/// blocks, as the recorders' direct writes are) is appended to each of streams × channels
/// files, opened with `O_DIRECT` as the recorders open theirs, from one buffer built once.
fn record_floor(args: &IngestArgs) -> anyhow::Result<()> {
    use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
    let dir = args
        .record_dir
        .as_deref()
        .context("--record-dir is needed")?;
    let count = args.streams * usize::from(args.channels);
    let block = (48_000usize * 3).div_ceil(4096) * 4096;
    let mut buffer = vec![0u8; block + 4096];
    let at = buffer.as_ptr().align_offset(4096);
    let data = &mut buffer[at..at + block];
    for (k, b) in data.iter_mut().enumerate() {
        *b = (k * 37) as u8;
    }
    let open = |i: usize, direct: bool| {
        let mut options = std::fs::OpenOptions::new();
        options.create(true).write(true).truncate(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options.open(dir.join(format!("floor-{i}.raw")))
    };
    let files = (0..count)
        .map(|i| open(i, true).or_else(|_| open(i, false)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let start = Instant::now();
    let mut written = 0u64;
    // As long as an ingest worker runs, and a second more: the bench reads its memory at the end.
    for second in 0..args.seconds + 3 {
        let due = start + Duration::from_secs(second);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let offset = second * block as u64;
        for file in &files {
            file.write_all_at(data, offset)?;
            written += block as u64;
        }
    }
    println!(
        "result {count} files, {:.1} MB/s written",
        written as f64 / 1e6 / start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One second of a stream's audio and the same audio as 1 ms L24 RTP packets.
struct MeterSource {
    audio: Vec<i32>,
    packets: Vec<Vec<u8>>,
}

/// A tone per channel (its own frequency and level, −12…−26 dBFS) plus white noise at about
/// −50 dBFS, quantised to 24 bits as the wire carries it.
fn meter_source(channels: u16) -> anyhow::Result<MeterSource> {
    use estuary_wire::payload::{SampleFormat, encode_into};
    use estuary_wire::rtp::RtpPacketBuilder;
    use estuary_wire::units::{RtpTimestamp, SeqNum};
    let ch = usize::from(channels);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    };
    let mut audio = Vec::with_capacity(48_000 * ch);
    for n in 0..48_000u32 {
        let t = f64::from(n) / 48_000.0;
        for c in 0..ch {
            let freq = 200.0 + 97.0 * c as f64;
            let level = 10f64.powf((-12.0 - (c % 8) as f64 * 2.0) / 20.0);
            let v = level * (2.0 * std::f64::consts::PI * freq * t).sin() + 0.003 * noise();
            audio.push(((v * f64::from(i32::MAX)) as i32) & !0xff);
        }
    }
    let samples = FRAMES_PER_PACKET as usize * ch;
    let mut payload = vec![0u8; samples * 3];
    let packets = audio
        .chunks_exact(samples)
        .enumerate()
        .map(|(k, block)| {
            let n = encode_into(SampleFormat::L24, block, &mut payload)?;
            let builder = RtpPacketBuilder {
                payload_type: PAYLOAD_TYPE,
                sequence: SeqNum(k as u16),
                timestamp: RtpTimestamp(k as u32 * FRAMES_PER_PACKET),
                ssrc: 0x4553_5455,
                payload: &payload[..n],
                ..RtpPacketBuilder::default()
            };
            let mut bytes = vec![0u8; builder.wire_size()];
            builder.write_into(&mut bytes)?;
            Ok(bytes)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(MeterSource { audio, packets })
}

/// Thread CPU time of `f`.
fn thread_cpu(f: impl FnOnce()) -> Duration {
    let start = estuary_io::clock::thread_cpu_time();
    f();
    estuary_io::clock::thread_cpu_time().saturating_sub(start)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    median_of_sorted(&v).unwrap_or(f64::NAN)
}

fn meters(args: &MetersArgs) -> anyhow::Result<()> {
    use estuary_engine::jitter::{JitterBuffer, JitterConfig};
    use estuary_engine::monitor::{Monitor, MonitorConfig};
    use estuary_engine::time::MonoTime;
    use estuary_wire::payload::SampleFormat;
    if args.streams == 0 || args.seconds == 0 || args.rounds == 0 {
        bail!("--streams, --seconds and --rounds must be at least 1");
    }
    let ch = usize::from(args.channels);
    let source = meter_source(args.channels)?;
    let config = JitterConfig {
        channels: args.channels,
        sample_rate: 48_000,
        format: SampleFormat::L24,
        payload_type: Some(PAYLOAD_TYPE),
        latency: Duration::from_millis(10),
        capacity: Duration::from_millis(200),
    };
    let mut buffers = (0..args.streams)
        .map(|_| JitterBuffer::new(config))
        .collect::<Result<Vec<_>, _>>()?;
    let monitors = |c: MonitorConfig| {
        (0..args.streams)
            .map(|_| Monitor::new(args.channels, 48_000, c))
            .collect::<Result<Vec<_>, _>>()
    };
    let mut full = monitors(MonitorConfig::default())?;
    let mut bare = monitors(MonitorConfig::meters_only())?;
    // What `estuary run` measures under the default alarm rules.
    let mut daemon = monitors(MonitorConfig {
        silence: MonitorConfig::default().silence,
        clipping: MonitorConfig::default().clipping,
        ..MonitorConfig::meters_only()
    })?;
    let mut packets = source.packets.clone();
    let mut out = vec![0i32; FRAMES_PER_PACKET as usize * ch];
    let ms = args.seconds * 1000;
    let mut sent = 0u64;
    // Packet k is sent at k ms and arrives 1 ms later; each stream is pulled every 1 ms, as
    // the ingest thread does. Headers are patched in place (sequence, timestamp) so the
    // second of audio repeats as one continuous stream.
    let mut ingest = |buffers: &mut [JitterBuffer]| {
        thread_cpu(|| {
            for _ in 0..ms {
                let k = sent;
                let packet = &mut packets[(k % 1000) as usize];
                packet[2..4].copy_from_slice(&(k as u16).to_be_bytes());
                packet[4..8].copy_from_slice(&((k * 48) as u32).to_be_bytes());
                let now = MonoTime::from_nanos((k + 1) * 1_000_000);
                for jb in buffers.iter_mut() {
                    std::hint::black_box(jb.push(now, packet));
                    std::hint::black_box(jb.pull(now, &mut out));
                }
                sent += 1;
            }
        })
    };
    let block = FRAMES_PER_PACKET as usize * ch;
    let mut metered = 0u64;
    let meter = |monitors: &mut [Monitor], at: &mut u64| {
        thread_cpu(|| {
            for _ in 0..ms {
                let k = *at;
                let start = (k % 1000) as usize * block;
                let frames = &source.audio[start..start + block];
                let now = MonoTime::from_nanos(k * 1_000_000);
                for m in monitors.iter_mut() {
                    std::hint::black_box(m.process(now, frames));
                }
                *at += 1;
            }
        })
    };
    let channel_seconds = (args.streams * ch) as f64 * args.seconds as f64;
    let per = |d: Duration| d.as_secs_f64() / channel_seconds;
    println!(
        "bench meters: {} streams x {} ch L24/48000, 1 ms packets; {} s of audio per measurement, {} rounds (ingest, meters: default, meters-only, daemon rules; interleaved), thread CPU",
        args.streams, args.channels, args.seconds, args.rounds
    );
    // Warm-up: fills the jitter buffers and brings every meter past its first windows.
    ingest(&mut buffers);
    let (mut bare_at, mut daemon_at) = (0u64, 0u64);
    meter(&mut full, &mut metered);
    meter(&mut bare, &mut bare_at);
    meter(&mut daemon, &mut daemon_at);
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        a.push(per(ingest(&mut buffers)));
        b.push(per(meter(&mut full, &mut metered)));
        c.push(per(meter(&mut bare, &mut bare_at)));
        d.push(per(meter(&mut daemon, &mut daemon_at)));
    }
    let lost: u64 = buffers.iter().map(|jb| jb.stats().packets_lost).sum();
    let (a, b, c, d) = (median(a), median(b), median(c), median(d));
    println!();
    println!(
        "{:<28} {:>16} {:>14} {:>10}",
        "path", "CPU us/ch-s", "ns/ch-frame", "vs ingest"
    );
    for (name, v) in [
        ("ingest (push + pull)", a),
        ("meters, default config", b),
        ("meters, meters_only()", c),
        ("meters, daemon default rules", d),
    ] {
        println!(
            "{:<28} {:>16.2} {:>14.2} {:>9.1}%",
            name,
            v * 1e6,
            v * 1e9 / 48_000.0,
            v / a * 100.0
        );
    }
    println!(
        "{} channels: ingest {:.1} ms CPU per second, meters {:.1} ms (default), {:.1} ms (meters only); {lost} packets lost",
        args.streams * ch,
        a * 1e3 * (args.streams * ch) as f64,
        b * 1e3 * (args.streams * ch) as f64,
        c * 1e3 * (args.streams * ch) as f64,
    );
    Ok(())
}

fn ingest_specs(args: &IngestArgs) -> Vec<send::ToneSpec> {
    (0..args.streams)
        .map(|i| {
            let port = args.base_port + 2 * u16::try_from(i).unwrap_or(u16::MAX / 4);
            tone_spec(loopback(port), args.channels, format!("bench {i}"))
        })
        .collect()
}

/// The worker: the daemon's ingest path with one input per stream and no outputs.
fn ingest_worker(args: &IngestArgs) -> anyhow::Result<()> {
    let mut text = String::new();
    for (i, spec) in ingest_specs(args).iter().enumerate() {
        text.push_str(&format!(
            "[[inputs]]\nname = \"s{i}\"\nkind = \"aes67\"\nlatency = \"{}\"\nsdp = '''\n{}'''\n\n",
            humantime::format_duration(args.latency),
            sdp_of(spec, i as u64 + 1)
        ));
    }
    if let Some(dir) = &args.record_dir {
        for i in 0..args.streams {
            text.push_str(&format!(
                "[[recorders]]\nname = \"r{i}\"\ninput = \"s{i}\"\ndirectory = '{}'\n\
                 layout = \"mono\"\nbits = 24\nfsync = \"never\"\n\n",
                dir.join(format!("s{i}")).display()
            ));
        }
    }
    let options = crate::pipeline::Options {
        meters: args.meters,
        ..Default::default()
    };
    let running = Running::start_with(&config::parse(&text, Path::new("."))?, options)?;
    // The driver's warm-up, its measured window, and a little slack.
    let elapsed = args.seconds + 2;
    let length = Duration::from_secs(elapsed);
    match args.interleave {
        Some(turn) if args.meters => interleaved(
            "metering",
            turn,
            length,
            |paused| crate::pipeline::meter::PAUSED.store(paused, Ordering::Relaxed),
            || disturbed(&running),
        ),
        Some(turn) if args.record_dir.is_some() => {
            crate::record::IN_TURNS.store(true, Ordering::Relaxed);
            interleaved(
                "recording",
                turn,
                length,
                |paused| crate::record::PAUSED.store(paused, Ordering::Relaxed),
                || disturbed(&running),
            );
        }
        _ => std::thread::sleep(length),
    }
    let stats = running.input_stats();
    let recorders = running.recorder_status();
    running.shutdown();
    if !recorders.is_empty() {
        let sum =
            |f: fn(&crate::status::RecorderStatus) -> u64| -> u64 { recorders.iter().map(f).sum() };
        println!(
            "result {} files, {:.1} MB/s written, {} gaps, {} frames dropped, {} errors",
            sum(|r| r.files),
            (sum(|r| r.bytes) + sum(|r| r.bytes_closed)) as f64 / 1e6 / elapsed as f64,
            sum(|r| r.gaps),
            sum(|r| r.frames_dropped),
            sum(|r| r.errors),
        );
    }
    let sum = |f: fn(&estuary_engine::stats::StreamStats) -> u64| -> u64 {
        stats.iter().map(|(_, s)| f(&s.stats)).sum()
    };
    println!(
        "result {:.0} packets/s received, {} lost, {} late, {} concealed frames",
        sum(|s| s.packets_received) as f64 / elapsed as f64,
        sum(|s| s.packets_lost),
        sum(|s| s.packets_late),
        sum(|s| s.frames_concealed),
    );
    Ok(())
}

/// Packets the inputs lost or received late, and frames they concealed, so far.
fn disturbed(running: &Running) -> u64 {
    running
        .input_stats()
        .iter()
        .map(|(_, s)| s.stats.packets_lost + s.stats.packets_late + s.stats.frames_concealed)
        .sum()
}

/// Times metering (or recording) against none inside one worker: for `length` (after a
/// second's warm-up), paused for one `turn`, then running for the next, the process's CPU
/// read at each change. Whatever else loads the machine loads both kinds of turn alike,
/// minutes apart in no case, so the figure moves much less than between separate runs. A
/// pair's figure is its running turn's CPU over its paused turn's; the median of the pairs is
/// reported, and the ratio of the means (the figure for recording, whose work of one running
/// turn can fall partly in the next: see `record::PAUSED`).
///
/// A turn in which the inputs lost, received late or concealed anything is not clean: the
/// sender, sharing the machine, fell behind, and the receiver spent the turn on bursts and
/// concealment (and the recorders on gaps) instead of the work measured. Its pair is left
/// out, as `paired_rounds` leaves out such runs; the count left out is printed.
fn interleaved(
    what: &str,
    turn: Duration,
    length: Duration,
    pause: impl Fn(bool),
    disturbed: impl Fn() -> u64,
) {
    use estuary_io::clock::{kernel_threads_cpu_time, process_cpu_time};
    let warm_up = Duration::from_secs(1);
    std::thread::sleep(warm_up);
    let mut turns: Vec<Turn> = Vec::new();
    let end = Instant::now() + length.saturating_sub(warm_up);
    let mut running = false;
    while Instant::now() + turn <= end {
        pause(!running);
        let (t0, c0, k0, d0) = (
            Instant::now(),
            process_cpu_time(),
            kernel_threads_cpu_time(),
            disturbed(),
        );
        std::thread::sleep(turn);
        let cpu = process_cpu_time().saturating_sub(c0).as_secs_f64();
        let kernel = kernel_threads_cpu_time().saturating_sub(k0).as_secs_f64();
        let seconds = t0.elapsed().as_secs_f64();
        turns.push(Turn {
            running,
            cpu: cpu / seconds,
            kernel: kernel / seconds,
            clean: disturbed() == d0,
        });
        running = !running;
    }
    pause(false);
    let pairs = clean_pairs(&turns);
    let left_out = (turns.len() / 2).saturating_sub(1 + pairs.len());
    let ratios: Vec<f64> = pairs
        .iter()
        .map(|(off, on)| on.cpu / off.cpu - 1.0)
        .collect();
    let n = pairs.len().max(1) as f64;
    let off = pairs.iter().map(|p| p.0.cpu).sum::<f64>() / n;
    let on = pairs.iter().map(|p| p.1.cpu).sum::<f64>() / n;
    // The kernel's own threads (block-layer dispatch, the completion of direct writes) work
    // for the process without being charged to it: their extra CPU in running turns counts
    // too. (Also whatever else they do more of on a busier machine: an upper bound.)
    let with_kernel: Vec<f64> = pairs
        .iter()
        .map(|(off, on)| (on.cpu + on.kernel - off.cpu - off.kernel) / off.cpu)
        .collect();
    println!(
        "result interleaved in this process ({what} paused and running in turns of {} ms): {what} adds {:.1} % (median of {} clean pairs, {left_out} left out; {:.1} % from the means: CPU {:.0} ms/s running, {:.0} ms/s paused); with the kernel threads' extra CPU: {what} adds {:.1} %",
        turn.as_millis(),
        median(ratios) * 100.0,
        pairs.len(),
        (on / off.max(f64::MIN_POSITIVE) - 1.0) * 100.0,
        on * 1000.0,
        off * 1000.0,
        median(with_kernel) * 100.0,
    );
}

/// One turn of [`interleaved`]: the CPU rates of the process and of the kernel's threads,
/// and whether the inputs lost nothing in it.
struct Turn {
    running: bool,
    cpu: f64,
    kernel: f64,
    clean: bool,
}

/// The (paused, running) turns of each clean pair of `turns` (the first turn paused), the
/// first pair left out as a warm-up.
fn clean_pairs(turns: &[Turn]) -> Vec<(&Turn, &Turn)> {
    turns
        .chunks_exact(2)
        .skip(1)
        .filter_map(|p| match p {
            [off, on] if !off.running && on.running && off.clean && on.clean && off.cpu > 0.0 => {
                Some((off, on))
            }
            _ => None,
        })
        .collect()
}

fn bridge(args: &BridgeArgs) -> anyhow::Result<()> {
    let spec = tone_spec(
        loopback(args.rtp_port),
        args.channels,
        "bench bridge".into(),
    );
    let _sender = start_senders(std::slice::from_ref(&spec))?;
    println!(
        "bench bridge: 1 stream L24/48000/{} 1 ms -> SRT listener, Opus {} kb/s in MPEG-TS, pulled by srt-live-transmit; {} s each",
        args.channels,
        OPUS_BITRATE / 1000,
        args.seconds
    );
    let stream_seconds = args.seconds as f64;
    let srt_url = format!("srt://127.0.0.1:{}?mode=listener", args.srt_port);
    let exe = std::env::current_exe()?;
    let mut worker = Command::new(exe);
    worker
        .args(["bench", "bridge-worker"])
        .args(["--channels", &args.channels.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--rtp-port", &args.rtp_port.to_string()])
        .args(["--srt-port", &args.srt_port.to_string()]);
    let pull = || srt_pull(args.srt_port);
    let mut results = vec![measure_worker_with(
        "estuary",
        worker,
        args.seconds,
        stream_seconds,
        pull,
    )?];

    let pipeline = format!(
        "{} ! rtpjitterbuffer latency=10 ! rtpL24depay ! audioconvert ! audio/x-raw,channels=2 \
         ! opusenc bitrate={OPUS_BITRATE} ! mpegtsmux ! srtsink uri=\"{srt_url}\" wait-for-connection=false",
        l24_udpsrc(args.rtp_port, args.channels)
    );
    report(
        &mut results,
        measure_peer(
            "gstreamer",
            (vec![gst_launch(&pipeline)], vec![pull()]),
            args.seconds,
            stream_seconds,
            "udpsrc ! rtpjitterbuffer ! rtpL24depay ! opusenc ! mpegtsmux ! srtsink",
        ),
    );
    let dir = tempfile::tempdir()?;
    let sdp_path = dir.path().join("bridge.sdp");
    std::fs::write(&sdp_path, sdp_of(&spec, 1))?;
    let mut ffmpeg = ffmpeg_reading(&sdp_path);
    ffmpeg
        .args([
            "-ac",
            "2",
            "-c:a",
            "libopus",
            "-b:a",
            &OPUS_BITRATE.to_string(),
        ])
        .args(["-f", "mpegts", &srt_url]);
    report(
        &mut results,
        measure_peer(
            "ffmpeg",
            (vec![ffmpeg], vec![pull()]),
            args.seconds,
            stream_seconds,
            "ffmpeg -i s.sdp -c:a libopus -f mpegts srt://",
        ),
    );
    print_table(&results);
    Ok(())
}

/// srt-live-transmit pulling the bridge's SRT stream and throwing it away.
fn srt_pull(port: u16) -> Command {
    let mut cmd = Command::new("srt-live-transmit");
    cmd.args(["-q", &format!("srt://127.0.0.1:{port}"), "file://con"])
        .stdout(Stdio::null());
    cmd
}

fn bridge_worker(args: &BridgeArgs) -> anyhow::Result<()> {
    let spec = tone_spec(
        loopback(args.rtp_port),
        args.channels,
        "bench bridge".into(),
    );
    let text = format!(
        "[[inputs]]\nname = \"in\"\nkind = \"aes67\"\nlatency = \"10ms\"\nsdp = '''\n{}'''\n\n\
         [[outputs]]\nname = \"out\"\nkind = \"srt\"\ninput = \"in\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:{}\"\ncodec = \"opus\"\nbitrate = {OPUS_BITRATE}\n",
        sdp_of(&spec, 1),
        args.srt_port
    );
    let running = Running::start(&config::parse(&text, Path::new("."))?)?;
    std::thread::sleep(Duration::from_secs(args.seconds + 3));
    let inputs = running.input_stats();
    let outputs = running.output_status();
    running.shutdown();
    if let Some((_, input)) = inputs.first() {
        println!(
            "result playout lag (tick): {}; lost {}",
            input.pull_lag.summary(),
            input.stats.packets_lost
        );
    }
    if let Some((_, output, Some(srt))) = outputs.first() {
        println!(
            "result hand-off to SRT: {}; {} messages sent, state {}",
            output.handoff.summary(),
            srt.messages_sent,
            srt.state
        );
    }
    Ok(())
}

/// A GStreamer source for one of the bench's L24 streams on 127.0.0.1.
fn l24_udpsrc(port: u16, channels: u16) -> String {
    format!(
        "udpsrc address=127.0.0.1 port={port} caps=\"application/x-rtp,media=audio,clock-rate=48000,encoding-name=L24,channels={channels},payload={PAYLOAD_TYPE}\""
    )
}

fn gst_launch(pipeline: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("exec gst-launch-1.0 -q {pipeline}"))
        .stdout(Stdio::null());
    cmd
}

fn ffmpeg_reading(sdp: &Path) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-loglevel", "error", "-protocol_whitelist"])
        .args(["file,udp,rtp", "-i"])
        .arg(sdp)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn report(results: &mut Vec<Measured>, measured: anyhow::Result<Measured>) {
    match measured {
        Ok(m) => results.push(m),
        Err(e) => println!("  not measured: {e:#}"),
    }
}

fn measure_worker(
    name: &'static str,
    worker: Command,
    seconds: u64,
    stream_seconds: f64,
) -> anyhow::Result<Measured> {
    measure_worker_with(name, worker, seconds, stream_seconds, || {
        let mut none = Command::new("true");
        none.stdout(Stdio::null());
        none
    })
}

/// Runs an Estuary worker (plus a helper process that is not measured) and collects the
/// worker's `result ...` lines as notes.
fn measure_worker_with(
    name: &'static str,
    mut worker: Command,
    seconds: u64,
    stream_seconds: f64,
    helper: impl Fn() -> Command,
) -> anyhow::Result<Measured> {
    let mut child = worker.stdout(Stdio::piped()).spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    let _helper = Reaper(vec![helper().spawn().context("helper process")?]);
    let (cpu, rss_kib, peak_kib) = sample(&[child.id()], seconds)?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let notes: Vec<String> = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| l.strip_prefix("result ").map(str::to_owned))
        .collect();
    let status = child.wait()?;
    if !status.success() {
        bail!("estuary worker failed: {status}");
    }
    Ok(Measured {
        name,
        cpu,
        stream_seconds,
        rss_kib,
        peak_kib,
        note: notes.join("; "),
    })
}

/// Measures `commands`; `helpers` (e.g. the SRT puller) run beside them unmeasured.
fn measure_peer(
    name: &'static str,
    (commands, helpers): (Vec<Command>, Vec<Command>),
    seconds: u64,
    stream_seconds: f64,
    note: &str,
) -> anyhow::Result<Measured> {
    let mut children = Reaper(Vec::new());
    for mut cmd in commands {
        children.0.push(
            cmd.spawn()
                .with_context(|| format!("{name}: cannot start {cmd:?}"))?,
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut unmeasured = Reaper(Vec::new());
    for mut cmd in helpers {
        unmeasured.0.push(
            cmd.spawn()
                .with_context(|| format!("{name}: cannot start {cmd:?}"))?,
        );
    }
    let (cpu, rss_kib, peak_kib) = sample(&children.pids(), seconds)?;
    children.check_alive(name)?;
    unmeasured.check_alive(name)?;
    Ok(Measured {
        name,
        cpu,
        stream_seconds,
        rss_kib,
        peak_kib,
        note: note.into(),
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

/// CPU (user + system) the processes use during `seconds` after a warm-up, and their
/// resident memory at the end (current and peak, KiB).
fn sample(pids: &[u32], seconds: u64) -> anyhow::Result<(Duration, u64, u64)> {
    std::thread::sleep(Duration::from_millis(1500));
    let start = total_cpu(pids)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let end = total_cpu(pids)?;
    let wall = t0.elapsed().as_secs_f64();
    let (mut rss, mut peak) = (0, 0);
    for pid in pids {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        rss += status_kib(&status, "VmRSS:");
        peak += status_kib(&status, "VmHWM:");
    }
    // Normalise to exactly `seconds` of wall time so sleeps that overshoot don't bias it.
    let cpu = end.saturating_sub(start).mul_f64(seconds as f64 / wall);
    Ok((cpu, rss, peak))
}

fn status_kib(status: &str, key: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn total_cpu(pids: &[u32]) -> anyhow::Result<Duration> {
    let ticks = clock_ticks_per_second() as f64;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_pairs_pair_each_running_turn_with_the_paused_one_before() {
        let turn = |running, cpu, clean| Turn {
            running,
            cpu,
            kernel: 0.0,
            clean,
        };
        let cpus = |pairs: Vec<(&Turn, &Turn)>| -> Vec<(f64, f64)> {
            pairs.iter().map(|(off, on)| (off.cpu, on.cpu)).collect()
        };
        let turns = [
            turn(false, 9.0, true),
            turn(true, 1.0, true),
            turn(false, 0.2, true),
            turn(true, 0.25, true),
            turn(false, 0.4, true),
            turn(true, 0.3, true),
            turn(false, 0.6, true),
            turn(true, 0.9, false),
            turn(false, 0.5, true),
        ];
        // The warm-up pair, the pair with a disturbed turn and the unpaired last turn are
        // left out.
        assert_eq!(cpus(clean_pairs(&turns)), vec![(0.2, 0.25), (0.4, 0.3)]);
        let idle = [true, true, true, true].map(|r| turn(r, 0.0, true));
        assert!(clean_pairs(&idle).is_empty());
        let no_cpu = [false, true, false, true].map(|r| turn(r, if r { 1.0 } else { 0.0 }, true));
        assert!(clean_pairs(&no_cpu).is_empty());
    }

    fn measured(note: &str) -> Measured {
        Measured {
            name: "estuary",
            cpu: Duration::from_secs(1),
            stream_seconds: 1.0,
            rss_kib: 0,
            peak_kib: 0,
            note: note.to_owned(),
        }
    }

    #[test]
    fn a_run_with_lost_or_late_packets_is_starved() {
        let clean = "128037 packets/s received, 0 lost, 0 late, 0 concealed frames";
        assert!(!measured(clean).starved());
        let lost = "127838 packets/s received, 5377 lost, 0 late, 737760 concealed frames";
        assert!(measured(lost).starved());
        let late = "1 files, 2.0 MB/s written, 0 gaps; 31958 packets/s received, 0 lost, 3 late, 0 concealed frames";
        assert!(measured(late).starved());
        assert!(!measured("").starved());
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median_of_sorted(&[]), None);
        assert_eq!(median_of_sorted(&[1.2]), Some(1.2));
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0]), Some(2.0));
        assert_eq!(median_of_sorted(&[1.0, 2.0, 4.0, 8.0]), Some(3.0));
    }
}
