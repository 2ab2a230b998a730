//! `estuary soak`: a long run of the whole gateway under impairment, checking what must not
//! drift: memory (RSS growth), and the input counters against the impairer's own report.
//!
//! In one process: a 64-channel AES67 tone sender → the impairment relay (loss, reordering,
//! duplicates) → the gateway (one input, an SRT listener with 302M PCM pulled by
//! `srt-live-transmit`). Exit status 0 when every check passes, 1 otherwise.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use estuary_engine::impair::{ImpairConfig, Impairer};
use estuary_io::tx::{ToneConfig, ToneSender};

use crate::pipeline::Running;
use crate::{config, impair, send};

/// Time after the start before the first memory sample (buffers, threads and SRT settle).
const WARM_UP: Duration = Duration::from_secs(10);
/// Largest RSS growth accepted between the first sample and the end.
const MAX_RSS_GROWTH: f64 = 0.01;

#[derive(Debug, clap::Args)]
pub struct SoakArgs {
    /// How long to run (`2m`, `1h`).
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Channels of the input stream (L24, 48 kHz; 1 ms packets up to 8 channels, 125 µs for
    /// 64).
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
    /// Jitter-buffer latency of the input.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// First of the three loopback ports used (RTP in, RTP impaired, SRT).
    #[arg(long, default_value_t = 15_004)]
    base_port: u16,
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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// One check of the final report.
struct Check {
    name: String,
    ok: bool,
}

fn check(checks: &mut Vec<Check>, name: String, ok: bool) {
    println!("  [{}] {name}", if ok { " ok " } else { "FAIL" });
    checks.push(Check { name, ok });
}

pub fn run(args: &SoakArgs) -> anyhow::Result<bool> {
    let config = ImpairConfig {
        loss: probability(&args.loss, "loss")?,
        reorder: probability(&args.reorder, "reorder")?,
        reorder_depth: 3,
        duplicate: probability(&args.duplicate, "duplicate")?,
        ..ImpairConfig::default()
    };
    let mut impairer = Impairer::new(config, args.seed)?;
    let localhost = |port: u16| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let (rtp_in, rtp_out, srt_port) = (
        localhost(args.base_port),
        localhost(args.base_port + 1),
        args.base_port + 2,
    );
    let channels: Vec<String> = (1..=8).map(|c| c.to_string()).collect();
    let text = format!(
        "[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
         [[inputs]]\nname = \"soak\"\nkind = \"aes67\"\naddress = \"{rtp_out}\"\nformat = \"L24\"\n\
         channels = {}\npayload_type = 98\nlatency = \"{}\"\n\n\
         [[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"soak\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:{srt_port}\"\ncodec = \"pcm\"\nchannels = [{}]\n",
        args.channels,
        humantime::format_duration(args.latency),
        channels.join(", ")
    );
    let running = Running::start(&config::parse(&text, Path::new("."))?)?;
    let mut puller = Command::new("srt-live-transmit")
        .args(["-q", &format!("srt://127.0.0.1:{srt_port}"), "file://con"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("srt-live-transmit (srt-tools) is needed to pull the SRT output")?;

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
                let result = impair::relay(&input, &output, &mut impairer, || {
                    relaying.load(Ordering::Relaxed)
                });
                (impairer, result)
            })?
    };
    let spec = send::ToneSpec {
        destination: rtp_in,
        channels: args.channels,
        frames_per_packet: frames_per_packet(args.channels),
        payload_type: 98,
        frequency_hz: 997.0,
        level_dbfs: -20.0,
        ttl: 1,
        name: "soak".into(),
        ..send::ToneSpec::default()
    };
    let mut sender = ToneSender::spawn_multi(vec![ToneConfig {
        ttl: spec.ttl,
        channels: spec.channels,
        frames_per_packet: spec.frames_per_packet,
        frequency_hz: spec.frequency_hz,
        level_dbfs: spec.level_dbfs,
        payload_type: spec.payload_type,
        ..ToneConfig::new(spec.destination)
    }])
    .context("starting the sender")?;
    println!(
        "soak: {} s, {} ch L24/48000 {} frames/packet -> impair (loss {}, reorder {} depth 3, duplicate {}, seed {}) -> \
         gateway ({} latency) -> SRT 302M (8 ch) -> srt-live-transmit",
        args.duration.as_secs(),
        args.channels,
        spec.frames_per_packet,
        args.loss,
        args.reorder,
        args.duplicate,
        args.seed,
        humantime::format_duration(args.latency)
    );

    let start = Instant::now();
    let warm_up = WARM_UP.min(args.duration / 5);
    std::thread::sleep(warm_up);
    let rss_start = rss_kib();
    let mut rss_peak = rss_start;
    while start.elapsed() < args.duration {
        std::thread::sleep(
            Duration::from_secs(1).min(args.duration.saturating_sub(start.elapsed())),
        );
        rss_peak = rss_peak.max(rss_kib());
    }
    let rss_end = rss_kib();
    sender.stop();
    let sender_elapsed = start.elapsed();
    // Let the last packets through the relay and the buffer.
    std::thread::sleep(Duration::from_millis(300));
    relaying.store(false, Ordering::Relaxed);
    let (impairer, result) = relay
        .join()
        .map_err(|_| anyhow::anyhow!("the relay thread panicked"))?;
    result?;
    std::thread::sleep(Duration::from_millis(200));
    let inputs = running.input_stats();
    let outputs = running.output_status();
    running.shutdown();
    let _ = puller.kill();
    let _ = puller.wait();

    let report = impairer.report();
    let expected_packets =
        (sender_elapsed.as_secs_f64() * 48_000.0 / f64::from(spec.frames_per_packet)) as u64;
    let stats = inputs.first().map(|(_, s)| s.stats).context("no input")?;
    let (_, out, srt) = outputs.first().context("no output")?;
    let growth = (rss_end as f64 - rss_start as f64) / rss_start.max(1) as f64;
    println!(
        "impairer: received {}, sent {}, lost {}, reordered {}, duplicated {}\n\
         input:    received {}, lost {}, late {}, reordered {}, duplicate {}, concealed {} frames\n\
         output:   {} frames encoded, {} SRT messages sent\n\
         memory:   RSS {rss_start} KiB after {} s, {rss_end} KiB at the end ({:+.2} %), peak {rss_peak} KiB",
        report.received,
        report.sent,
        report.lost(),
        report.reordered,
        report.duplicated,
        stats.packets_received,
        stats.packets_lost,
        stats.packets_late,
        stats.packets_reordered,
        stats.packets_duplicate,
        stats.frames_concealed,
        out.frames_encoded,
        srt.as_ref().map_or(0, |s| s.messages_sent),
        warm_up.as_secs(),
        growth * 100.0
    );
    let mut checks = Vec::new();
    check(
        &mut checks,
        format!(
            "RSS growth {:+.2} % < {} %",
            growth * 100.0,
            MAX_RSS_GROWTH * 100.0
        ),
        growth < MAX_RSS_GROWTH,
    );
    // Packets dropped before the relay (its socket overflowing) would be invisible to the
    // impairer's report; the sender's own count is approximate (timing), hence the margin.
    check(
        &mut checks,
        format!(
            "the relay received the sender's packets ({} of about {expected_packets})",
            report.received
        ),
        report.received + 10 >= expected_packets.saturating_sub(expected_packets / 1000),
    );
    check(
        &mut checks,
        "every datagram the relay sent was received".into(),
        stats.packets_received == report.sent,
    );
    // A packet later than the latency is counted late and lost; see docs/redundancy.md.
    check(
        &mut checks,
        "lost + duplicate (input) = lost + duplicated (relay) + late (input)".into(),
        stats.packets_lost + report.duplicated
            == report.lost() + stats.packets_duplicate + stats.packets_late,
    );
    check(
        &mut checks,
        "reordered (input) = reordered (relay) − reordered ones that came late".into(),
        stats.packets_reordered <= report.reordered
            && report.reordered - stats.packets_reordered <= stats.packets_late,
    );
    check(
        &mut checks,
        format!(
            "no resync, no malformed packet ({} / {})",
            stats.resyncs, stats.malformed
        ),
        stats.resyncs == 0 && stats.malformed == 0,
    );
    check(
        &mut checks,
        "the SRT output ran all along".into(),
        out.frames_encoded as f64 >= 48_000.0 * (args.duration.as_secs_f64() - 2.0),
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
    }
    Ok(failed.is_empty())
}
