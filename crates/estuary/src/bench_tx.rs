//! `estuary bench transmit`: N AES67 streams transmitted (L24, 1 ms packets, a tone made in
//! the sender) by Estuary (generator inputs → AES67 outputs, the daemon's own code in a child
//! process) and by GStreamer (`audiotestsrc ! rtpL24pay ! udpsink`, N chains in one process),
//! measured in the same run: CPU per stream-second from /proc, and pacing. Pacing is read by
//! the bench on the receiving side: each packet's arrival against the ideal grid
//! `t0 + k × 1 ms` (t0 fitted to the earliest packet), so both senders are judged by the same
//! probe, on the same host clock. A third sender, the floor (`transmit-floor`), sends the
//! same packets prebuilt: what the kernel alone costs, which bounds any sender's ratio.

use std::net::UdpSocket;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context as _;

use estuary_io::batch::BatchReceiver;
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
    thread: JoinHandle<(Vec<i64>, f64)>,
}

/// How often the probe collects what arrived. The kernel stamps each packet on arrival, so
/// the probe need not be awake then; blocking on every socket would instead make each
/// packet wake a probe thread, a cost that loopback charges to the sender (its `sendmsg`
/// runs the receive path) and that a sender on a real network never pays.
const PROBE_EVERY: Duration = Duration::from_millis(5);

impl PacingProbe {
    fn start(args: &TransmitArgs) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut streams = Vec::new();
        for i in 0..args.streams {
            let port = args.base_port + i as u16;
            // Kernel receive timestamps: the probe's own scheduling does not count.
            let socket = mcast::open_receive_socket(
                std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                None,
                None,
            )
            .with_context(|| format!("probe port {port}"))?;
            streams.push((socket, Grid::default()));
        }
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || probe(streams, &stop))
        };
        Ok(Self { stop, thread })
    }

    /// Deviations from the ideal grid in µs, all streams together, and the packet rate
    /// achieved as a fraction of real time.
    fn finish(self) -> (Vec<i64>, f64) {
        self.stop.store(true, Ordering::Relaxed);
        let (mut all, rate) = self.thread.join().unwrap_or_default();
        all.sort_unstable();
        (all, rate)
    }
}

/// One stream's packets against its grid: arrival − `t0 + k × 1 ms`, in ns.
#[derive(Default)]
struct Grid {
    t0: Option<u64>,
    unwrapped: i64,
    last_seq: u16,
    offsets: Vec<i64>,
    last_arrival: u64,
}

impl Grid {
    /// Packets per packet time from the first arrival to the last: 1.0 when the sender
    /// keeps real time, less when it falls behind (and so does less work per second).
    fn rate(&self) -> Option<f64> {
        let span = self.last_arrival.checked_sub(self.t0?)?;
        (span > 0).then(|| self.offsets.len() as f64 * PTIME_NS as f64 / span as f64)
    }

    fn add(&mut self, seq: u16, at: u64) {
        self.last_arrival = at;
        match self.t0 {
            None => self.t0 = Some(at),
            Some(t0) => {
                self.unwrapped += i64::from(seq.wrapping_sub(self.last_seq) as i16);
                let ideal = t0 as i64 + self.unwrapped * PTIME_NS as i64;
                self.offsets.push(at as i64 - ideal);
            }
        }
        self.last_seq = seq;
    }

    /// |deviation| in µs, with the grid aligned on the median packet: a start-up burst must
    /// not shift every other one.
    fn deviations(self) -> impl Iterator<Item = i64> {
        let mut sorted = self.offsets.clone();
        sorted.sort_unstable();
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(0);
        self.offsets
            .into_iter()
            .map(move |o| (o - median).abs() / 1000)
    }
}

/// For each packet `k` of each stream (from its RTP sequence number): how far its kernel
/// arrival time is from its stream's grid.
fn probe(mut streams: Vec<(UdpSocket, Grid)>, stop: &AtomicBool) -> (Vec<i64>, f64) {
    let mut rx = BatchReceiver::new(64);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(PROBE_EVERY);
        for (socket, grid) in &mut streams {
            while rx.recv(socket).unwrap_or(0) > 0 {
                for received in rx.packets() {
                    if let Ok(packet) = RtpPacket::parse(received.data) {
                        grid.add(packet.sequence().0, received.arrival.as_nanos());
                    }
                }
            }
        }
    }
    let rates: Vec<f64> = streams.iter().filter_map(|(_, g)| g.rate()).collect();
    let rate = rates.iter().sum::<f64>() / rates.len().max(1) as f64;
    let deviations = streams
        .into_iter()
        .flat_map(|(_, grid)| grid.deviations())
        .collect();
    (deviations, rate)
}

/// Charges `m`'s CPU to the stream-seconds actually delivered (a sender that falls behind
/// real time sends fewer packets in the window), and notes its pacing.
fn delivered(m: &mut super::Measured, (pacing, rate): (Vec<i64>, f64)) {
    if rate > 0.0 {
        m.stream_seconds *= rate.min(1.0);
    }
    m.note = format!(
        "{}; {:.1} % of real time delivered; {}",
        quantiles(&pacing),
        rate * 100.0,
        m.note
    );
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
    let mut results = Vec::new();
    probed(args, &mut results, || {
        measure_worker(
            "estuary",
            child("transmit-worker", args)?,
            args.seconds,
            stream_seconds,
        )
    })?;
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
    probed(args, &mut results, || {
        measure_peer(
            "gstreamer",
            (vec![gst_launch(&chains.join("  "))], Vec::new()),
            args.seconds,
            stream_seconds,
            "audiotestsrc ! audioconvert ! rtpL24pay ! udpsink",
        )
    })?;
    probed(args, &mut results, || {
        let mut m = measure_worker(
            "floor",
            child("transmit-floor", args)?,
            args.seconds,
            stream_seconds,
        )?;
        m.note = format!(
            "the same packets prebuilt, one sendmmsg per tick: the kernel's share; {}",
            m.note
        );
        Ok(m)
    })?;
    print_table(&results);
    let per = |name: &str| {
        results
            .iter()
            .find(|m| m.name == name)
            .map(super::Measured::ms_per_stream_second)
    };
    if let (Some(gst), Some(floor)) = (per("gstreamer"), per("floor"))
        && floor > 0.0
    {
        println!(
            "no sender can be more than {:.1}x cheaper than GStreamer here: the kernel's send and loopback delivery alone cost {floor:.2} ms per stream-second",
            gst / floor
        );
    }
    Ok(())
}

/// Runs `measure` while a pacing probe receives what the sender sends, and adds the result,
/// with what the probe saw, to `results` (a failed measurement is reported, not returned).
fn probed(
    args: &TransmitArgs,
    results: &mut Vec<super::Measured>,
    measure: impl FnOnce() -> anyhow::Result<super::Measured>,
) -> anyhow::Result<()> {
    let probe = PacingProbe::start(args)?;
    let measured = measure();
    let seen = probe.finish();
    report(
        results,
        measured.map(|mut m| {
            delivered(&mut m, seen);
            m
        }),
    );
    Ok(())
}

/// This binary as the child process `bench <what>` with `args`.
fn child(what: &str, args: &TransmitArgs) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench", what])
        .args(["--streams", &args.streams.to_string()])
        .args(["--channels", &args.channels.to_string()])
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--base-port", &args.base_port.to_string()]);
    Ok(cmd)
}

/// The floor: the packets Estuary sends (same size, ports and tick), built once, with only
/// the RTP sequence number and timestamp written per tick, sent from a real-time thread
/// with one `sendmmsg` per tick as Estuary's transmit thread does. All that is left is the
/// kernel's UDP send and the loopback delivery that loopback charges to the sender.
pub(super) fn transmit_floor(args: &TransmitArgs) -> anyhow::Result<()> {
    use estuary_engine::time::MonoTime;
    use estuary_io::clock::{monotonic_now, set_timer_slack, sleep_until};
    use estuary_io::sendbatch::{SendBatch, SockAddr};

    let _ = estuary_io::sched::promote_current_thread(estuary_io::sched::OUTPUT_PRIORITY);
    let _ = set_timer_slack(Duration::from_nanos(1));
    let first = std::net::SocketAddr::from(([127, 0, 0, 1], args.base_port));
    let socket = mcast::open_shared_send_socket(first, None, 32, 34)?;
    let payload = usize::from(args.channels) * 48 * 3;
    let mut streams: Vec<(SockAddr, Vec<u8>)> = (0..args.streams)
        .map(|i| {
            let dest = std::net::SocketAddr::from(([127, 0, 0, 1], args.base_port + i as u16));
            let mut packet = vec![0u8; 12 + payload];
            packet[0] = 0x80;
            packet[1] = 98;
            packet[8..12].copy_from_slice(&(0x5eed_0000 + i as u32).to_be_bytes());
            // Not silence: some payload bytes, as a tone would have.
            for (k, b) in packet[12..].iter_mut().enumerate() {
                *b = (k * 37 + i) as u8;
            }
            (SockAddr::from(dest), packet)
        })
        .collect();
    let mut batch = SendBatch::new(args.streams.max(1), 12 + payload);
    let start = monotonic_now().as_nanos();
    let ticks = (args.seconds + 3) * 1_000_000_000 / PTIME_NS;
    let mut failed = 0usize;
    for k in 0..ticks {
        sleep_until(MonoTime::from_nanos(start + k * PTIME_NS));
        for (dest, packet) in &mut streams {
            packet[2..4].copy_from_slice(&(k as u16).to_be_bytes());
            packet[4..8].copy_from_slice(&((k * 48) as u32).to_be_bytes());
            batch.push(dest, packet);
        }
        failed += batch.flush(&socket, |_, _| {}).failed;
    }
    println!("result {failed} sends refused");
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
