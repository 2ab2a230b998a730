//! `estuary bench transmit`: N AES67 streams transmitted (L24, 1 ms packets, a tone made in
//! the sender) by Estuary (generator inputs → AES67 outputs, the daemon's own code in a child
//! process) and by GStreamer (`audiotestsrc ! rtpL24pay ! udpsink`, N chains in one process),
//! measured in the same run: CPU per stream-second from /proc, and pacing. Pacing is read by
//! the bench on the receiving side: each packet's arrival against the ideal grid
//! `t0 + k × 1 ms` (t0 fitted to the earliest packet), so both senders are judged by the same
//! probe, on the same host clock.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use std::os::fd::AsRawFd as _;

use estuary_io::batch::{BatchReceiver, wait_readable};
use estuary_io::mcast;
use estuary_wire::rtp::RtpPacket;

use super::{gst_launch, measure_peer, measure_worker, print_table, report};
use crate::config;
use crate::pipeline::Running;

#[derive(Debug, Clone, clap::Args)]
pub(super) struct TransmitArgs {
    /// Number of streams.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// Channels per stream.
    #[arg(long, default_value_t = 8)]
    channels: u16,
    /// Measured seconds per sender (after a warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// First UDP port on 127.0.0.1; stream i goes to base_port + i.
    #[arg(long, default_value_t = 22_000)]
    base_port: u16,
}

const PTIME_NS: u64 = 1_000_000;

/// Receives every stream and records how far each packet arrived from its ideal time.
struct PacingProbe {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Vec<i64>>>,
}

impl PacingProbe {
    fn start(args: &TransmitArgs) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..args.streams {
            let port = args.base_port + i as u16;
            // Kernel receive timestamps: the probe's own scheduling does not count.
            let socket = mcast::open_receive_socket(
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                None,
                None,
            )
            .with_context(|| format!("probe port {port}"))?;
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || probe(&socket, &stop)));
        }
        Ok(Self { stop, threads })
    }

    /// Deviations from the ideal grid in µs, all streams together.
    fn finish(self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.threads {
            all.extend(t.join().unwrap_or_default());
        }
        all.sort_unstable();
        all
    }
}

/// For each packet `k` (from its RTP sequence number): how far its kernel arrival time is
/// from `t0 + k × 1 ms`, with the grid aligned on the median packet, in µs.
fn probe(socket: &UdpSocket, stop: &AtomicBool) -> Vec<i64> {
    let mut rx = BatchReceiver::new(64);
    let mut offsets = Vec::new();
    let mut t0: Option<u64> = None;
    let mut unwrapped = 0i64;
    let mut last_seq = 0u16;
    while !stop.load(Ordering::Relaxed) {
        if !wait_readable(socket.as_raw_fd(), Duration::from_millis(100)).unwrap_or(false)
            || rx.recv(socket).is_err()
        {
            continue;
        }
        for received in rx.packets() {
            let Ok(packet) = RtpPacket::parse(received.data) else {
                continue;
            };
            let seq = packet.sequence().0;
            let at = received.arrival.as_nanos();
            match t0 {
                None => t0 = Some(at),
                Some(t0) => {
                    unwrapped += i64::from(seq.wrapping_sub(last_seq) as i16);
                    let ideal = t0 as i64 + unwrapped * PTIME_NS as i64;
                    offsets.push(at as i64 - ideal);
                }
            }
            last_seq = seq;
        }
    }
    // Align the grid on the median packet: a start-up burst must not shift every other one.
    let mut sorted = offsets.clone();
    sorted.sort_unstable();
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
    offsets.iter().map(|o| (o - median).abs() / 1000).collect()
}

fn quantiles(v: &[i64]) -> String {
    if v.is_empty() {
        return "no packets".into();
    }
    let q = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    format!(
        "pacing |deviation| from the ideal grid: p50 {} us, p99 {} us, max {} us ({} packets)",
        q(0.5),
        q(0.99),
        v[v.len() - 1],
        v.len()
    )
}

pub(super) fn transmit(args: &TransmitArgs) -> anyhow::Result<()> {
    println!(
        "bench transmit: {} streams x {} ch L24/48000, 1 ms packets, tone made by the sender; {} s per sender",
        args.streams, args.channels, args.seconds
    );
    let stream_seconds = args.seconds as f64 * args.streams as f64;
    let exe = std::env::current_exe()?;
    let mut worker = Command::new(exe);
    worker
        .args(["bench", "transmit-worker"])
        .args(["--streams", &args.streams.to_string()])
        .args(["--channels", &args.channels.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--base-port", &args.base_port.to_string()]);
    let probe = PacingProbe::start(args)?;
    let measured = measure_worker("estuary", worker, args.seconds, stream_seconds);
    let estuary_pacing = quantiles(&probe.finish());
    let mut results = Vec::new();
    report(
        &mut results,
        measured.map(|mut m| {
            m.note = format!("{estuary_pacing}; {}", m.note);
            m
        }),
    );

    let chains: Vec<String> = (0..args.streams)
        .map(|i| {
            format!(
                "audiotestsrc wave=sine freq=997 volume=0.125 samplesperbuffer=48 is-live=true \
                 ! audio/x-raw,format=S32LE,rate=48000,channels={ch} ! audioconvert \
                 ! audio/x-raw,format=S24BE,rate=48000,channels={ch} \
                 ! rtpL24pay pt=98 mtu=1500 min-ptime=1000000 max-ptime=1000000 \
                 ! udpsink host=127.0.0.1 port={port} sync=true async=false",
                ch = args.channels,
                port = args.base_port + i as u16
            )
        })
        .collect();
    let probe = PacingProbe::start(args)?;
    let measured = measure_peer(
        "gstreamer",
        (vec![gst_launch(&chains.join("  "))], Vec::new()),
        args.seconds,
        stream_seconds,
        "audiotestsrc ! audioconvert ! rtpL24pay ! udpsink",
    );
    let gst_pacing = quantiles(&probe.finish());
    report(
        &mut results,
        measured.map(|mut m| {
            m.note = format!("{gst_pacing}; {}", m.note);
            m
        }),
    );
    print_table(&results);
    Ok(())
}

/// Estuary's side: N generator inputs, each into an AES67 output, until the window ends.
pub(super) fn transmit_worker(args: &TransmitArgs) -> anyhow::Result<()> {
    let mut text =
        String::from("[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n");
    for i in 0..args.streams {
        text += &format!(
            "[[inputs]]\nname = \"gen{i}\"\nkind = \"generator\"\nfrequency = 997\n\
             channels = {}\nmeters = false\n\n\
             [[outputs]]\nname = \"tx{i}\"\nkind = \"aes67\"\ninput = \"gen{i}\"\n\
             address = \"127.0.0.1:{}\"\nptime = 1\nsap = false\n\n",
            args.channels,
            args.base_port + i as u16
        );
    }
    let config =
        config::parse(&text, std::path::Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = Running::start(&config)?;
    std::thread::sleep(Duration::from_secs(args.seconds + 3));
    let outputs = running.output_status();
    running.shutdown();
    let (mut underruns, mut worst) = (0, Duration::ZERO);
    let mut behind = crate::latency::LatencyHistogram::default();
    for (_, snap, _) in &outputs {
        underruns += snap.underrun_packets + snap.frames_dropped;
        worst = worst.max(snap.handoff.max());
        behind = snap.handoff;
    }
    println!(
        "result send time behind deadline (stream 1): p99 {:.3} ms, max (all) {:.3} ms; {underruns} underruns/drops",
        behind.quantile(0.99).as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
    Ok(())
}
