//! `estuary soak`: a long run of the whole gateway under impairment, checking what must not
//! drift: the daemon's memory, its counters against the impairer's own report, and the
//! content of what it sends and records.
//!
//! The sender of a known sequence ([`sender`], 64 channels at 125 µs) and the impairment
//! relay run in this process; the gateway is `estuary run` in its own process (so its RSS
//! and CPU are its own), with an SRT listener (302M PCM, 8 channels, pulled by
//! `srt-live-transmit` and decoded here as it arrives) and a recorder (8 other channels). At
//! the end every decoded frame and every recorded frame must be the sequence, except exactly
//! the packets the relay dropped (and any counted late), which must be silence of their exact
//! length, listed in the recorder's sidecar. Exit status 0 when every check passes.

mod daemon;
mod files;
mod sender;
mod sequence;

use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use estuary_engine::impair::{ImpairConfig, Impairer};
use estuary_wire::s302m;
use estuary_wire::ts::{TsAudioKind, TsDemuxer};

use self::daemon::{Daemon, usage};
use self::sequence::{StreamCheck, missing_in};
use crate::impair;

/// Time after the start before the first memory sample (buffers, threads and SRT settle;
/// the bounded histories of events and log lines, and the allocator's arenas, fill during the
/// first minutes): a quarter of the run, from 10 s to 5 minutes.
fn warm_up(duration: Duration) -> Duration {
    (duration / 4)
        .clamp(Duration::from_secs(10), Duration::from_secs(300))
        .min(duration / 2)
}
/// Largest RSS growth accepted over the measured part of the run (the trend's).
const MAX_RSS_GROWTH: f64 = 0.01;

/// The daemon's RSS over the measured part of the run, as a least-squares line through one
/// sample a second: a trend is what a leak is, and one sample at each end is not (the
/// allocator's heap moves in steps of its own).
#[derive(Debug, Clone, Copy, PartialEq)]
struct RssTrend {
    /// The fitted line at the first and the last sample, KiB.
    start_kib: f64,
    end_kib: f64,
    /// Fitted growth, KiB per hour.
    per_hour_kib: f64,
}

impl RssTrend {
    /// `samples`: (seconds since the start, RSS KiB). `None` with fewer than two.
    fn fit(samples: &[(f64, u64)]) -> Option<Self> {
        let (first, last) = (samples.first()?.0, samples.last()?.0);
        if samples.len() < 2 || last <= first {
            return None;
        }
        let n = samples.len() as f64;
        let mean_t = samples.iter().map(|s| s.0).sum::<f64>() / n;
        let mean_r = samples.iter().map(|s| s.1 as f64).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(t, r) in samples {
            sxy += (t - mean_t) * (r as f64 - mean_r);
            sxx += (t - mean_t) * (t - mean_t);
        }
        let slope = sxy / sxx;
        let at = |t: f64| mean_r + slope * (t - mean_t);
        Some(RssTrend {
            start_kib: at(first),
            end_kib: at(last),
            per_hour_kib: slope * 3600.0,
        })
    }

    fn growth(&self) -> f64 {
        (self.end_kib - self.start_kib) / self.start_kib.max(1.0)
    }
}
/// Channels of the SRT output (302M carries up to 8) and of the recorder.
const OUT_CHANNELS: usize = 8;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to run (`2m`, `1h`).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Channels of the input stream (L24, 48 kHz; 1 ms packets up to 8 channels, 125 µs for
    /// 64); at least 16 (8 go out over SRT, the last 8 are recorded).
    #[arg(long, default_value_t = 64)]
    channels: u16,
    /// Independent loss applied by the relay.
    #[arg(long, default_value = "0.5%")]
    loss: String,
    /// Reordering (depth 3) applied by the relay.
    #[arg(long, default_value = "2%")]
    reorder: String,
    /// Duplicates applied by the relay.
    #[arg(long, default_value = "0.2%")]
    duplicate: String,
    /// Seed of the relay.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Jitter-buffer latency of the input: enough that a busy host's scheduling does not
    /// make packets late (late packets are counted, but they are audio lost).
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// First of the four loopback ports used (RTP in, RTP impaired, SRT, API).
    #[arg(long, default_value_t = 15_004)]
    base_port: u16,
    /// Keep the config, the daemon's log and the recordings in this directory (default: a
    /// temporary directory, removed at the end). 8 channels of 24-bit audio take 4.1 GB an
    /// hour.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Start a new recording take this often (on media-clock multiples).
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    rotate_every: Duration,
    /// Print the daemon's RSS and counters this often.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    progress: Duration,
}

fn probability(text: &str, what: &str) -> anyhow::Result<f64> {
    let t = text.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .with_context(|| format!("--{what} {text:?}"))?;
    anyhow::ensure!(
        (0.0..=1.0).contains(&v),
        "--{what} {text:?} is outside 0..=100 %"
    );
    Ok(v)
}

/// AES67 packet times that fit an Ethernet MTU: 1 ms (48 frames) up to 8 channels of L24,
/// then 250 µs and 125 µs (ST 2110-30 level C: 64 channels at 125 µs).
fn frames_per_packet(channels: u16) -> u32 {
    [48, 12, 6]
        .into_iter()
        .find(|&f| f * 3 * u32::from(channels) <= 1440)
        .unwrap_or(1)
}

/// The default alarm rules but clipping: the known sequence is a full-scale ramp, so the
/// clipping detector would raise and clear on every channel every 5.46 s.
const ALARM_RULES: &str = "[[alarms.rules]]\nname = \"silence\"\ncondition = \"silence\"\n\
    threshold = -60.0\nraise_after = \"10s\"\n\n\
    [[alarms.rules]]\nname = \"no-packets\"\ncondition = \"no_packets\"\nthreshold = 500.0\n\
    severity = \"critical\"\n\n\
    [[alarms.rules]]\nname = \"loss\"\ncondition = \"loss\"\n\n\
    [[alarms.rules]]\nname = \"route-failed\"\ncondition = \"route_failed\"\nseverity = \"critical\"\n\n\
    [[alarms.rules]]\nname = \"disconnected\"\ncondition = \"disconnected\"\n\n\
    [[alarms.rules]]\nname = \"record-failed\"\ncondition = \"record_failed\"\nseverity = \"critical\"\n";

/// One check of the final report.
struct Check {
    name: String,
    ok: bool,
}

fn check(checks: &mut Vec<Check>, name: String, ok: bool) {
    println!("  [{}] {name}", if ok { " ok " } else { "FAIL" });
    checks.push(Check { name, ok });
}

fn config_text(args: &SoakArgs, rtp_out: SocketAddr, recordings: &Path) -> String {
    let srt: Vec<String> = (1..=OUT_CHANNELS).map(|c| c.to_string()).collect();
    let first_recorded = usize::from(args.channels) - OUT_CHANNELS + 1;
    format!(
        "[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
         [api]\nbind = \"127.0.0.1:{api}\"\n\n\
         {ALARM_RULES}\n\
         [[inputs]]\nname = \"soak\"\nkind = \"aes67\"\naddress = \"{rtp_out}\"\nformat = \"L24\"\n\
         channels = {channels}\npayload_type = {pt}\nlatency = \"{latency}\"\n\n\
         [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"soak\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:{srt}\"\ncodec = \"pcm\"\nbits = 24\nchannels = [{srt_channels}]\n\n\
         [[recorders]]\nname = \"soak\"\ninput = \"soak\"\ndirectory = \"{dir}\"\nbits = 24\n\
         groups = {{ tail = \"{first_recorded}-{last}\" }}\nrotate_every = \"{rotate}\"\n",
        api = args.base_port + 3,
        channels = args.channels,
        pt = sender::PAYLOAD_TYPE,
        latency = humantime::format_duration(args.latency),
        srt = args.base_port + 2,
        srt_channels = srt.join(", "),
        dir = recordings.display(),
        last = args.channels,
        rotate = humantime::format_duration(args.rotate_every),
    )
}

/// Pulls the SRT output with `srt-live-transmit` and checks the 302M audio as it arrives.
struct Puller {
    child: std::process::Child,
    reader: std::thread::JoinHandle<anyhow::Result<(StreamCheck, u64)>>,
}

impl Puller {
    fn start(port: u16, fpp: u64) -> anyhow::Result<Self> {
        let mut child = Command::new("srt-live-transmit")
            .args(["-q", &format!("srt://127.0.0.1:{port}"), "file://con"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("srt-live-transmit (srt-tools) is needed to pull the SRT output")?;
        let mut stdout = child.stdout.take().context("no stdout")?;
        let reader = std::thread::Builder::new()
            .name("soak-srt".into())
            .spawn(move || {
                let mut demux = TsDemuxer::new();
                let mut check = StreamCheck::new((0..OUT_CHANNELS).collect(), fpp);
                let mut samples = Vec::new();
                let mut bad_units = 0u64;
                let mut buf = vec![0u8; 1316 * 16];
                loop {
                    let n = stdout.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    demux.push_with(&buf[..n], |unit| {
                        if unit.stream != TsAudioKind::S302m {
                            return;
                        }
                        samples.clear();
                        match s302m::unpack_into(&unit.data, &mut samples) {
                            Ok(f) if usize::from(f.channels) == OUT_CHANNELS => {
                                check.push(&samples);
                            }
                            _ => bad_units += 1,
                        }
                    });
                }
                check.gaps.close();
                Ok((check, bad_units + demux.stats().malformed))
            })?;
        Ok(Self { child, reader })
    }

    fn finish(mut self) -> anyhow::Result<(StreamCheck, u64)> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader
            .join()
            .map_err(|_| anyhow::anyhow!("the SRT reader panicked"))?
    }
}

fn counter(json: &serde_json::Value, name: &str) -> u64 {
    json[name].as_u64().unwrap_or(0)
}

pub fn run(args: &SoakArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        usize::from(args.channels) >= 2 * OUT_CHANNELS,
        "--channels must be at least {}",
        2 * OUT_CHANNELS
    );
    let fpp = frames_per_packet(args.channels);
    // Clean first half second (the receiver locks on) and last second: a packet held back
    // for reordering when the flow stops would leave after its playout time, an artifact of
    // the end of the run, not of the gateway.
    let per_second = 48_000 / u64::from(fpp);
    let config = ImpairConfig {
        loss: probability(&args.loss, "loss")?,
        reorder: probability(&args.reorder, "reorder")?,
        reorder_depth: 3,
        duplicate: probability(&args.duplicate, "duplicate")?,
        impair_from: per_second / 2,
        impair_until: Some((args.duration.as_secs().saturating_sub(1)) * per_second),
        ..ImpairConfig::default()
    };
    let mut impairer = Impairer::new(config, args.seed)?;
    impairer.record_drops();
    let localhost = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (rtp_in, rtp_out, srt_port) = (
        localhost(args.base_port),
        localhost(args.base_port + 1),
        args.base_port + 2,
    );
    let temp;
    let dir = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_owned()
        }
    };
    let recordings = dir.join("recordings");
    if recordings.exists() {
        std::fs::remove_dir_all(&recordings)?;
    }
    std::fs::create_dir_all(&recordings)?;
    let config_path = dir.join("soak.toml");
    std::fs::write(&config_path, config_text(args, rtp_out, &recordings))?;
    let daemon = Daemon::start(&config_path, &dir.join("daemon.log"), args.base_port + 3)?;
    let puller = Puller::start(srt_port, u64::from(fpp))?;
    // The sequence names its frames modulo 5.46 s: the SRT reader must see the first one.
    wait_for_srt_client(&daemon)?;

    // The daemon's own socket setup: a receive buffer large enough that the relay does not
    // drop packets the impairer would never know about.
    let input = estuary_io::mcast::open_receive_socket(rtp_in, None, None)
        .with_context(|| format!("bind {rtp_in}"))?;
    input.set_nonblocking(false)?;
    let output = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    output.connect(rtp_out)?;
    let relaying = Arc::new(AtomicBool::new(true));
    let relay = {
        let relaying = Arc::clone(&relaying);
        std::thread::Builder::new()
            .name("soak-impair".into())
            .spawn(move || {
                let _ = estuary_io::sched::promote_current_thread(sender::PRIORITY);
                let result = impair::relay(&input, &output, &mut impairer, || {
                    relaying.load(Ordering::Relaxed)
                });
                (impairer, result)
            })?
    };
    let mut sender = sender::SequenceSender::spawn(rtp_in, args.channels, fpp)?;
    println!(
        "soak: {} s, {} ch L24/48000 {fpp} frames/packet (a known sequence) -> impair (loss {}, \
         reorder {} depth 3, duplicate {}, seed {}) -> estuary run (pid {}, {} latency) -> \
         SRT 302M (ch 1-8) -> srt-live-transmit, and a recorder (ch {}-{})",
        args.duration.as_secs(),
        args.channels,
        args.loss,
        args.reorder,
        args.duplicate,
        args.seed,
        daemon.pid(),
        humantime::format_duration(args.latency),
        usize::from(args.channels) - OUT_CHANNELS + 1,
        args.channels,
    );

    let start = Instant::now();
    let warm_up = warm_up(args.duration);
    std::thread::sleep(warm_up);
    let (first, self_first) = (usage(Some(daemon.pid())), usage(None));
    let mut rss_peak = first.rss_kib;
    let mut rss_samples = vec![(start.elapsed().as_secs_f64(), first.rss_kib)];
    // The first progress line after the warm-up, on the period's grid.
    let progress = args.progress.max(Duration::from_secs(1));
    let mut next_progress = progress;
    while next_progress <= warm_up {
        next_progress += progress;
    }
    while start.elapsed() < args.duration {
        std::thread::sleep(
            Duration::from_secs(1).min(args.duration.saturating_sub(start.elapsed())),
        );
        let rss = usage(Some(daemon.pid())).rss_kib;
        rss_peak = rss_peak.max(rss);
        rss_samples.push((start.elapsed().as_secs_f64(), rss));
        if start.elapsed() >= next_progress {
            next_progress += progress;
            // Also what a dashboard does all along: the API is part of what must not leak.
            let c = &daemon.get("/api/inputs/soak")?["status"]["counters"];
            println!(
                "  {:>5} s: RSS {} KiB, received {}, lost {}, late {}, reordered {}, duplicate {}, resyncs {}",
                start.elapsed().as_secs(),
                usage(Some(daemon.pid())).rss_kib,
                counter(c, "packets_received"),
                counter(c, "packets_lost"),
                counter(c, "packets_late"),
                counter(c, "packets_reordered"),
                counter(c, "packets_duplicate"),
                counter(c, "resyncs"),
            );
        }
    }
    let (last, self_last) = (usage(Some(daemon.pid())), usage(None));
    let measured = start.elapsed() - warm_up;
    let sender_late = sender.max_lateness();
    let sent = sender.stop()?;
    // Let the last packets through the relay (held ones leave within 100 ms) and the buffer.
    std::thread::sleep(Duration::from_millis(300) + args.latency);
    relaying.store(false, Ordering::Relaxed);
    let (impairer, result) = relay
        .join()
        .map_err(|_| anyhow::anyhow!("the relay thread panicked"))?;
    result?;
    std::thread::sleep(Duration::from_millis(200));
    let input = daemon.get("/api/inputs/soak")?;
    let status = daemon.get("/api/status")?;
    let clean_exit = daemon.terminate()?;
    let (stream, bad_units) = puller.finish()?;

    let report = impairer.report();
    let drops: Vec<u64> = impairer.drops().unwrap_or_default().to_vec();
    let c = &input["status"]["counters"];
    let (received, lost, late, reordered, duplicate) = (
        counter(c, "packets_received"),
        counter(c, "packets_lost"),
        counter(c, "packets_late"),
        counter(c, "packets_reordered"),
        counter(c, "packets_duplicate"),
    );
    let recorder = status["recorders"]
        .as_array()
        .and_then(|r| r.first())
        .cloned()
        .unwrap_or_default();
    let sources: Vec<usize> =
        (usize::from(args.channels) - OUT_CHANNELS..usize::from(args.channels)).collect();
    let sent_frames = sent * u64::from(fpp);
    let recorded = files::check_dir(
        &recordings,
        &sources,
        u64::from(fpp),
        u64::from(sender::FIRST_TIMESTAMP),
        sent_frames,
    )?;
    let trend = RssTrend::fit(&rss_samples);
    let growth = trend.map_or(f64::INFINITY, |t| t.growth());
    let cpu = |a: daemon::Usage, b: daemon::Usage| {
        (b.cpu_s - a.cpu_s) / measured.as_secs_f64().max(1e-3) * 100.0
    };
    println!(
        "sender:   {sent} packets, at most {:.1} ms behind schedule\n\
         impairer: received {}, sent {}, lost {}, reordered {}, duplicated {}\n\
         input:    received {received}, lost {lost} (of which late {late}), reordered {reordered}, \
         duplicate {duplicate}, resyncs {}, malformed {}\n\
         srt:      {} frames exact, {} silent packets, {} faults, {bad_units} bad units\n\
         files:    {} file(s), {} frames exact, {} silent packets; sidecar gaps: {} lost, {} late, {} dropped frames; {} faults\n\
         memory:   daemon RSS {} KiB after {} s, {} KiB at the end, peak {rss_peak} KiB; trend of \
         {} samples: {:.0} -> {:.0} KiB ({:+.2} %, {:+.0} KiB/h)\n\
         cpu:      daemon {:.1} % of one core, sender + impairer {:.1} %",
        sender_late.as_secs_f64() * 1e3,
        report.received,
        report.sent,
        report.lost(),
        report.reordered,
        report.duplicated,
        counter(c, "resyncs"),
        counter(c, "malformed"),
        stream.exact,
        stream.gaps.packets.len(),
        stream.faults.count + stream.gaps.faults.count,
        recorded.files.len(),
        recorded.exact,
        recorded.gap_packets.len(),
        recorded.sidecar_lost_frames,
        recorded.sidecar_late_frames,
        recorded.sidecar_dropped_frames,
        recorded.faults.count,
        first.rss_kib,
        warm_up.as_secs(),
        last.rss_kib,
        rss_samples.len(),
        trend.map_or(0.0, |t| t.start_kib),
        trend.map_or(0.0, |t| t.end_kib),
        growth * 100.0,
        trend.map_or(0.0, |t| t.per_hour_kib),
        cpu(first, last),
        cpu(self_first, self_last),
    );
    for f in stream
        .faults
        .first
        .iter()
        .chain(&stream.gaps.faults.first)
        .chain(&recorded.faults.first)
    {
        println!("  fault: {f}");
    }

    let mut checks = Vec::new();
    check(
        &mut checks,
        format!(
            "RSS growth {:+.2} % < {} % (the daemon process, trend after the warm-up)",
            growth * 100.0,
            MAX_RSS_GROWTH * 100.0
        ),
        growth < MAX_RSS_GROWTH,
    );
    check(
        &mut checks,
        format!(
            "the relay received every packet sent ({} of {sent})",
            report.received
        ),
        report.received == sent,
    );
    check(
        &mut checks,
        "the input received every datagram the relay sent".into(),
        received == report.sent,
    );
    // A packet later than the latency is counted late and lost (played as silence); its
    // duplicate, if any, late rather than duplicate. See docs/redundancy.md.
    check(
        &mut checks,
        format!(
            "lost + duplicate (input) = lost + duplicated (relay) + late (input): \
             {lost} + {duplicate} = {} + {} + {late}",
            report.lost(),
            report.duplicated
        ),
        lost + report.duplicated == report.lost() + duplicate + late,
    );
    check(
        &mut checks,
        "reordered (input) = reordered (relay) − reordered ones that came late".into(),
        reordered <= report.reordered && report.reordered - reordered <= late,
    );
    check(
        &mut checks,
        format!(
            "no resync, no malformed packet ({} / {})",
            counter(c, "resyncs"),
            counter(c, "malformed")
        ),
        counter(c, "resyncs") == 0 && counter(c, "malformed") == 0,
    );
    // Content: the files first (they carry positions), then the stream against them.
    let covered = recorded.covered.clone().unwrap_or(0..0);
    let packets = covered.start.div_ceil(u64::from(fpp))..covered.end / u64::from(fpp);
    // Packets the recorder dropped (counted in its sidecar) are not judged against the relay.
    let fpp64 = u64::from(fpp);
    let judged = |k: &u64| {
        !files::in_ranges(&recorded.dropped, k * fpp64)
            && !files::in_ranges(&recorded.dropped, k * fpp64 + fpp64 - 1)
    };
    let drops_judged: Vec<u64> = drops.iter().copied().filter(judged).collect();
    let not_silent = missing_in(&drops_judged, &recorded.gap_packets, packets.clone());
    let extra = missing_in(&recorded.gap_packets, &drops, packets.clone());
    check(
        &mut checks,
        format!(
            "recording bit-exact over {} s except exactly the silent packets the sidecar lists \
             ({} faults)",
            (covered.end - covered.start) / 48_000,
            recorded.faults.count
        ),
        recorded.faults.count == 0
            && recorded.gap_packets == recorded.sidecar_packets
            && covered.end - covered.start >= sent_frames.saturating_sub(5 * 48_000),
    );
    check(
        &mut checks,
        format!(
            "every packet the relay dropped is silent in the recording ({} not), and only \
             those or late ones ({} others, late {late})",
            not_silent.len(),
            extra.len()
        ),
        not_silent.is_empty() && extra.len() as u64 <= late,
    );
    let (s_first, s_last) = (
        stream.first_frame.unwrap_or(0),
        stream.last_frame().unwrap_or(0),
    );
    let common = s_first.max(covered.start).div_ceil(u64::from(fpp))
        ..s_last.min(covered.end) / u64::from(fpp);
    let stream_judged: Vec<u64> = stream.gaps.packets.iter().copied().filter(judged).collect();
    let differ = missing_in(&stream_judged, &recorded.gap_packets, common.clone()).len()
        + missing_in(&recorded.gap_packets, &stream.gaps.packets, common.clone()).len();
    check(
        &mut checks,
        format!(
            "SRT stream bit-exact over {} s except whole silent packets, the same as the \
             recording's ({differ} differ, {} faults)",
            (s_last - s_first) / 48_000,
            stream.faults.count + stream.gaps.faults.count + bad_units
        ),
        stream.faults.count + stream.gaps.faults.count + bad_units == 0
            && differ == 0
            && s_last.saturating_sub(s_first) >= sent_frames.saturating_sub(5 * 48_000),
    );
    check(
        &mut checks,
        format!(
            "recorder: nothing dropped, no error (sidecars: {} frames dropped; API: {} / {})",
            recorded.sidecar_dropped_frames,
            counter(&recorder, "frames_dropped"),
            counter(&recorder, "errors")
        ),
        recorder.is_object()
            && recorded.sidecar_dropped_frames == 0
            && counter(&recorder, "frames_dropped") == 0
            && counter(&recorder, "errors") == 0,
    );
    check(
        &mut checks,
        "the daemon exited cleanly on SIGTERM".into(),
        clean_exit,
    );
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    if failed.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL ({})", failed.join("; "));
        if args.dir.is_none() {
            println!("(run with --dir DIR to keep the daemon's log and the recordings)");
        }
    }
    Ok(failed.is_empty())
}

/// Waits until the SRT output has a caller (srt-live-transmit connected).
fn wait_for_srt_client(daemon: &Daemon) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let outputs = daemon.get("/api/outputs/srt")?;
        if srt_connected(&outputs) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "srt-live-transmit did not connect within 10 s: {outputs}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn srt_connected(output: &serde_json::Value) -> bool {
    [&output["status"]["state"], &output["state"]]
        .iter()
        .any(|s| s.as_str() == Some("connected"))
}

#[cfg(test)]
mod tests {
    use super::RssTrend;

    #[test]
    fn the_rss_trend_ignores_a_step_that_comes_back_and_sees_a_slope() {
        // Flat at 60 000 KiB with one 2 MB excursion in the middle: no trend.
        let flat: Vec<(f64, u64)> = (0..600)
            .map(|t| {
                (
                    f64::from(t),
                    if (300..310).contains(&t) {
                        62_000
                    } else {
                        60_000
                    },
                )
            })
            .collect();
        let trend = RssTrend::fit(&flat).expect("a fit");
        assert!(trend.growth().abs() < 0.001, "{trend:?}");
        // 1 KiB a second over 600 s from 60 000 KiB: +1 %.
        let slope: Vec<(f64, u64)> = (0..=600)
            .map(|t| (f64::from(t), 60_000 + t as u64))
            .collect();
        let trend = RssTrend::fit(&slope).expect("a fit");
        assert!((trend.growth() - 0.01).abs() < 1e-9, "{trend:?}");
        assert!((trend.per_hour_kib - 3600.0).abs() < 1e-6, "{trend:?}");
        assert_eq!(RssTrend::fit(&[(1.0, 5)]), None);
    }
}
