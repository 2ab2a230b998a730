//! `estuary selftest`: the platform check (what the AES67 Linux daemon's `run_test.sh` does,
//! without a kernel module) and the latency check.
//!
//! Both run one Estuary pipeline in this process on loopback: a generator input makes the
//! counting sequence ([`estuary_io::tx::sequence_sample`]), an AES67 output transmits it, an
//! AES67 input receives it through its jitter buffer and a second AES67 output transmits it
//! again to a checker socket here. The checker knows every sample that must arrive, so it
//! reports the first lost, corrupted or displaced one, with Estuary's own counters.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;

use estuary_io::clock::monotonic_now;
use estuary_io::mcast;
use estuary_io::tx::{MAX_RTP_PACKET, sequence_sample};
use estuary_wire::payload::{SampleFormat, decode_into};
use estuary_wire::rtp::RtpPacket;

use crate::config;
use crate::latency::LatencyHistogram;
use crate::pipeline::{Options, Running};

#[derive(Debug, clap::Args)]
pub struct SelftestArgs {
    #[command(subcommand)]
    pub test: Test,
}

#[derive(Debug, clap::Subcommand)]
pub enum Test {
    /// Transmit → receive → transmit a known sequence on loopback; OK or the first bad sample.
    Platform(PlatformArgs),
    /// End-to-end latency at a given receive buffer, and whether it ran without underrun.
    Latency(LatencyArgs),
}

#[derive(Debug, Clone, clap::Args)]
pub struct PlatformArgs {
    /// L16, L24 or L32.
    #[arg(long, default_value = "L24")]
    pub format: String,
    #[arg(long, default_value_t = 48_000)]
    pub rate: u32,
    #[arg(long, default_value_t = 8)]
    pub channels: u16,
    /// How long to run (e.g. 10s, 5m).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Packet time in ms; default: the longest AES67 packet time that fits one MTU.
    #[arg(long)]
    pub ptime: Option<f64>,
    /// Receive buffer (jitter buffer latency) of the receiving input.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
}

#[derive(Debug, Clone, clap::Args)]
pub struct LatencyArgs {
    /// Receive buffer in frames (48 = 1 ms at 48 kHz).
    #[arg(long, default_value_t = 48)]
    pub frames: u32,
    #[arg(long, default_value_t = 48_000)]
    pub rate: u32,
    #[arg(long, default_value_t = 2)]
    pub channels: u16,
    /// Packet time in ms.
    #[arg(long, default_value_t = 0.125)]
    pub ptime: f64,
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
}

pub fn run(args: SelftestArgs) -> anyhow::Result<bool> {
    match args.test {
        Test::Platform(p) => platform(&p),
        Test::Latency(l) => latency(&l),
    }
}

/// The AES67 packet time to use: 1 ms when the packet fits one MTU, else the longest
/// shorter one that does.
fn fitting_ptime(format: SampleFormat, rate: u32, channels: u16) -> anyhow::Result<f64> {
    let per_ms = if rate > 48_000 { 96.0 } else { 48.0 };
    [1.0, 0.25, 0.125]
        .into_iter()
        .find(|ptime| {
            let frames = (ptime * per_ms) as usize;
            12 + frames * usize::from(channels) * format.bytes_per_sample() <= MAX_RTP_PACKET
        })
        .with_context(|| format!("{channels} channels of {format:?} do not fit one MTU"))
}

/// The chain's configuration: generator → `tx` → `rx` (jitter buffer) → `loop` → checker.
fn chain_config(
    format: SampleFormat,
    rate: u32,
    channels: u16,
    ptime: f64,
    latency: Duration,
    (first_port, checker_port): (u16, u16),
) -> String {
    let format = format.encoding_name();
    format!(
        "[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n\
         [[inputs]]\nname = \"generator\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
         channels = {channels}\nsample_rate = {rate}\nmeters = false\n\n\
         [[inputs]]\nname = \"rx\"\nkind = \"aes67\"\naddress = \"127.0.0.1:{first_port}\"\n\
         format = \"{format}\"\nchannels = {channels}\nsample_rate = {rate}\n\
         latency = \"{}us\"\nmeters = false\n\n\
         [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"generator\"\n\
         address = \"127.0.0.1:{first_port}\"\nformat = \"{format}\"\nptime = {ptime}\nsap = false\n\n\
         [[outputs]]\nname = \"loop\"\nkind = \"aes67\"\ninput = \"rx\"\n\
         address = \"127.0.0.1:{checker_port}\"\nformat = \"{format}\"\nptime = {ptime}\nsap = false\n",
        latency.as_micros()
    )
}

fn free_udp_port() -> anyhow::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What the checker saw.
#[derive(Debug, Default, Clone)]
struct CheckReport {
    packets: u64,
    /// Packets before the first one carrying the sequence (the receiver starting up).
    warmup_packets: u64,
    frames_checked: u64,
    /// RTP sequence numbers that never arrived at the checker.
    lost_packets: u64,
    corrupted_samples: u64,
    /// Places where the sequence jumped (frames skipped or repeated).
    discontinuities: u64,
    first_error: Option<String>,
    /// Arrival at the checker minus when the generator made the frame.
    latency: LatencyHistogram,
}

/// Checks every sample of the stream on `socket` against the counting sequence.
struct Checker {
    format: SampleFormat,
    channels: u16,
    mask: i32,
    expected: Option<u64>,
    last_sequence: Option<u16>,
    samples: Vec<i32>,
    report: CheckReport,
}

impl Checker {
    fn new(format: SampleFormat, channels: u16) -> Self {
        let mask = match format {
            SampleFormat::L16 => !0xffff,
            SampleFormat::L24 => !0xff,
            _ => !0,
        };
        Self {
            format,
            channels,
            mask,
            expected: None,
            last_sequence: None,
            samples: vec![0; MAX_RTP_PACKET],
            report: CheckReport::default(),
        }
    }

    /// Which frame index (modulo the counter's period) a packet starts with, if its every
    /// sample is the sequence's.
    fn identify(&self, frames: usize) -> Option<u64> {
        let first = ((self.samples[0] as u32) >> 8) as u64 / 64;
        // L16 keeps only the counter's top 16 bits: four frames share a value.
        let candidates = if self.format == SampleFormat::L16 {
            (first & !3)..(first & !3) + 4
        } else {
            first..first + 1
        };
        candidates
            .into_iter()
            .find(|&n| self.matches(n, frames) == 0)
    }

    /// How many samples of the packet differ from the sequence starting at frame `n`.
    fn matches(&self, n: u64, frames: usize) -> usize {
        let ch = usize::from(self.channels);
        self.samples[..frames * ch]
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                let want = sequence_sample(n + (*i / ch) as u64, i % ch) & self.mask;
                **s & self.mask != want
            })
            .count()
    }

    fn packet(&mut self, data: &[u8], generated_frame_at: &dyn Fn(u64) -> Option<Duration>) {
        let Ok(packet) = RtpPacket::parse(data) else {
            self.error("a datagram that is not RTP".into());
            return;
        };
        self.report.packets += 1;
        let sequence = packet.sequence().0;
        if let Some(last) = self.last_sequence {
            let gap = sequence.wrapping_sub(last).wrapping_sub(1);
            if gap != 0 && gap < 0x8000 {
                self.report.lost_packets += u64::from(gap);
                self.error(format!(
                    "{gap} packet(s) lost before RTP sequence number {sequence}"
                ));
            }
        }
        self.last_sequence = Some(sequence);
        let frames = match decode_into(
            self.format,
            self.channels,
            packet.payload(),
            &mut self.samples,
        ) {
            Ok(frames) if frames > 0 => frames,
            _ => {
                self.error(format!(
                    "packet {sequence}: payload is not {} frames",
                    self.format.encoding_name()
                ));
                return;
            }
        };
        let Some(expected) = self.expected else {
            match self.identify(frames) {
                Some(n) => self.expected = Some(n + frames as u64),
                None => self.report.warmup_packets += 1,
            }
            return;
        };
        let bad = self.matches(expected, frames);
        if bad == 0 {
            self.report.frames_checked += frames as u64;
            if let Some(lag) = generated_frame_at(expected) {
                self.report.latency.record(lag);
            }
            self.expected = Some(expected + frames as u64);
            return;
        }
        match self.identify(frames) {
            Some(n) => {
                self.report.discontinuities += 1;
                self.error(format!(
                    "packet {sequence}: the sequence jumped from frame {expected} to frame {n} \
                     ({} frames)",
                    i128::from(n) - i128::from(expected)
                ));
                self.expected = Some(n + frames as u64);
            }
            None => {
                let ch = usize::from(self.channels);
                if let Some(i) = (0..frames * ch).find(|&i| {
                    self.samples[i] & self.mask
                        != sequence_sample(expected + (i / ch) as u64, i % ch) & self.mask
                }) {
                    self.error(format!(
                        "packet {sequence}: frame {}, channel {}: expected {:#010x}, got {:#010x}",
                        expected + (i / ch) as u64,
                        i % ch + 1,
                        sequence_sample(expected + (i / ch) as u64, i % ch) & self.mask,
                        self.samples[i] & self.mask
                    ));
                }
                self.report.corrupted_samples += bad as u64;
                self.report.frames_checked += frames as u64;
                self.expected = Some(expected + frames as u64);
            }
        }
    }

    fn error(&mut self, message: String) {
        if self.report.first_error.is_none() {
            self.report.first_error = Some(message);
        }
    }
}

struct Outcome {
    report: CheckReport,
    ok: bool,
    lines: Vec<String>,
}

/// Runs the chain for `duration` and checks it.
fn run_chain(
    format: SampleFormat,
    rate: u32,
    channels: u16,
    ptime: f64,
    latency: Duration,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let checker_port = free_udp_port()?;
    // Estuary's receive socket: the large kernel buffer a 64-channel stream needs.
    let checker_socket =
        mcast::open_receive_socket(SocketAddr::from(([127, 0, 0, 1], checker_port)), None, None)
            .context("checker socket")?;
    checker_socket.set_nonblocking(false)?;
    checker_socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let text = chain_config(
        format,
        rate,
        channels,
        ptime,
        latency,
        (free_udp_port()?, checker_port),
    );
    let config = config::parse(&text, Path::new(".")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let running = Running::start_with(&config, Options::default())?;
    let generator_start = || {
        running
            .input_stats()
            .iter()
            .find_map(|(_, snap)| snap.generator_start)
    };
    let wait_until = Instant::now() + Duration::from_secs(2);
    let started = loop {
        if let Some(start) = generator_start() {
            break start;
        }
        anyhow::ensure!(Instant::now() < wait_until, "the generator did not start");
        std::thread::sleep(Duration::from_millis(5));
    };
    let stop = Arc::new(AtomicBool::new(false));
    let checker = std::thread::Builder::new().name("checker".into()).spawn({
        let stop = Arc::clone(&stop);
        move || {
            let mut checker = Checker::new(format, channels);
            let mut buf = vec![0u8; 2048];
            // The generator makes frame n at `started + n / rate`; the counter wraps every
            // 2^18 frames.
            let made_at = |n: u64| -> Option<Duration> {
                let now = monotonic_now().duration_since(started);
                let period = 1u64 << 18;
                let now_frames = (now.as_nanos() * u128::from(rate) / 1_000_000_000) as u64;
                let base = now_frames - now_frames % period;
                let full = [base + n % period, (base + n % period).wrapping_sub(period)]
                    .into_iter()
                    .filter(|&f| f <= now_frames)
                    .max()?;
                Some(now.saturating_sub(Duration::from_nanos(
                    (u128::from(full) * 1_000_000_000 / u128::from(rate)) as u64,
                )))
            };
            while !stop.load(Ordering::Relaxed) {
                if let Ok(n) = checker_socket.recv(&mut buf) {
                    checker.packet(&buf[..n], &made_at);
                }
            }
            checker.report
        }
    })?;
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100).min(deadline - Instant::now()));
    }
    let inputs = running.input_stats();
    let outputs = running.output_status();
    // Stop the pipeline first: the checker reads what is still in flight.
    running.shutdown();
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    let report = checker
        .join()
        .map_err(|_| anyhow::anyhow!("the checker panicked"))?;

    let mut lines = Vec::new();
    let mut estuary_faults = 0;
    for (name, snap) in &inputs {
        let s = &snap.stats;
        if name == "rx" {
            lines.push(format!(
                "receiver: {} packets, {} lost, {} late, {} duplicate, {} reordered, {} frames concealed, {} ring overruns",
                s.packets_received,
                s.packets_lost,
                s.packets_late,
                s.packets_duplicate,
                s.packets_reordered,
                s.frames_concealed,
                snap.ring_overruns
            ));
            estuary_faults += s.packets_lost + s.packets_late + snap.ring_overruns;
        } else {
            estuary_faults += snap.ring_overruns;
        }
    }
    for (name, snap, _) in &outputs {
        lines.push(format!(
            "transmitter {name}: {} packets, {} underruns, {} frames dropped, {} send errors, send time behind deadline p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            snap.access_units,
            snap.underrun_packets,
            snap.frames_dropped,
            snap.send_errors,
            snap.handoff.quantile(0.5).as_secs_f64() * 1e3,
            snap.handoff.quantile(0.99).as_secs_f64() * 1e3,
            snap.handoff.max().as_secs_f64() * 1e3,
        ));
        estuary_faults += snap.underrun_packets + snap.frames_dropped + snap.send_errors;
    }
    // Startup and shutdown leave the edges unchecked; most of the run must be.
    let wanted = (duration.as_secs_f64() * f64::from(rate) * 0.9) as u64;
    let enough = report.frames_checked + 2 * u64::from(rate) >= wanted;
    let ok = enough
        && report.lost_packets == 0
        && report.corrupted_samples == 0
        && report.discontinuities == 0
        && estuary_faults == 0;
    if !enough {
        lines.push(format!(
            "only {} of about {} frames were checked",
            report.frames_checked,
            (duration.as_secs_f64() * f64::from(rate)) as u64
        ));
    }
    Ok(Outcome { report, ok, lines })
}

fn platform(args: &PlatformArgs) -> anyhow::Result<bool> {
    let format = SampleFormat::from_encoding_name(&args.format)
        .filter(|f| matches!(f, SampleFormat::L16 | SampleFormat::L24 | SampleFormat::L32))
        .with_context(|| format!("--format {:?}: use L16, L24 or L32", args.format))?;
    let ptime = match args.ptime {
        Some(p) => p,
        None => fitting_ptime(format, args.rate, args.channels)?,
    };
    println!(
        "selftest platform: {} {} Hz {} ch, ptime {ptime} ms, receive buffer {:?}, {:?} on loopback",
        format.encoding_name(),
        args.rate,
        args.channels,
        args.latency,
        args.duration
    );
    println!(
        "chain: generator (counting sequence) -> AES67 transmit -> AES67 receive -> AES67 transmit -> checker"
    );
    println!("clock: system (CLOCK_TAI media clock)");
    let outcome = run_chain(
        format,
        args.rate,
        args.channels,
        ptime,
        args.latency,
        args.duration,
    )?;
    let r = &outcome.report;
    println!(
        "checker: {} packets ({} while starting), {} frames checked, {} packets lost, {} samples corrupted, {} discontinuities",
        r.packets,
        r.warmup_packets,
        r.frames_checked,
        r.lost_packets,
        r.corrupted_samples,
        r.discontinuities
    );
    for line in &outcome.lines {
        println!("{line}");
    }
    if outcome.ok {
        println!("OK");
    } else {
        println!(
            "FAILED: {}",
            r.first_error
                .as_deref()
                .unwrap_or("Estuary counted faults (see above)")
        );
    }
    Ok(outcome.ok)
}

fn latency(args: &LatencyArgs) -> anyhow::Result<bool> {
    let buffer =
        Duration::from_nanos(u64::from(args.frames) * 1_000_000_000 / u64::from(args.rate.max(1)));
    println!(
        "selftest latency: L24 {} Hz {} ch, ptime {} ms, receive buffer {} frames ({:?}), {:?}",
        args.rate, args.channels, args.ptime, args.frames, buffer, args.duration
    );
    let outcome = run_chain(
        SampleFormat::L24,
        args.rate,
        args.channels,
        args.ptime,
        buffer.max(Duration::from_millis(1)),
        args.duration,
    )?;
    let r = &outcome.report;
    for line in &outcome.lines {
        println!("{line}");
    }
    println!(
        "end-to-end latency (generator -> transmit -> receive buffer -> transmit -> checker): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} packets",
        r.latency.quantile(0.5).as_secs_f64() * 1e3,
        r.latency.quantile(0.99).as_secs_f64() * 1e3,
        r.latency.max().as_secs_f64() * 1e3,
        r.latency.count()
    );
    if outcome.ok {
        println!(
            "OK: ran without underrun, loss or corruption with a {}-frame receive buffer",
            args.frames
        );
    } else {
        println!(
            "FAILED with a {}-frame receive buffer: {}; try more --frames",
            args.frames,
            r.first_error
                .as_deref()
                .unwrap_or("Estuary counted late packets or underruns (see above)")
        );
    }
    Ok(outcome.ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_wire::payload::encode_into;
    use estuary_wire::rtp::RtpPacketBuilder;
    use estuary_wire::units::{RtpTimestamp, SeqNum};

    /// An RTP packet of `frames` sequence frames from frame `n`, with `alter` applied.
    fn packet(seq: u16, n: u64, frames: usize, alter: impl Fn(&mut [i32])) -> Vec<u8> {
        let mut samples: Vec<i32> = (0..frames * 2)
            .map(|i| sequence_sample(n + (i / 2) as u64, i % 2))
            .collect();
        alter(&mut samples);
        let mut payload = vec![0; samples.len() * 3];
        encode_into(SampleFormat::L24, &samples, &mut payload).expect("encode");
        let mut out = vec![0; 12 + payload.len()];
        let len = RtpPacketBuilder {
            marker: false,
            payload_type: 98,
            sequence: SeqNum(seq),
            timestamp: RtpTimestamp(n as u32),
            ssrc: 1,
            csrcs: &[],
            extension: None,
            payload: &payload,
            padding: 0,
        }
        .write_into(&mut out)
        .expect("rtp");
        out.truncate(len);
        out
    }

    fn check(packets: &[Vec<u8>]) -> CheckReport {
        let mut checker = Checker::new(SampleFormat::L24, 2);
        for p in packets {
            checker.packet(p, &|_| None);
        }
        checker.report
    }

    #[test]
    fn a_clean_stream_passes_after_a_silent_start() {
        let mut packets = vec![packet(9, 0, 48, |s| s.fill(0))];
        packets.extend((0..10).map(|k| packet(10 + k, 1000 + u64::from(k) * 48, 48, |_| ())));
        let r = check(&packets);
        // The first sequence packet locks the checker; the nine after it are checked.
        assert_eq!((r.warmup_packets, r.frames_checked), (1, 9 * 48));
        assert_eq!(
            (r.lost_packets, r.corrupted_samples, r.discontinuities),
            (0, 0, 0)
        );
        assert!(r.first_error.is_none());
    }

    #[test]
    fn a_lost_packet_a_wrong_sample_and_a_jump_are_each_reported() {
        let lost = check(&[packet(1, 0, 48, |_| ()), packet(3, 96, 48, |_| ())]);
        assert_eq!((lost.lost_packets, lost.discontinuities), (1, 1));
        assert!(lost.first_error.expect("error").contains("lost"));

        let wrong = check(&[
            packet(1, 0, 48, |_| ()),
            packet(2, 48, 48, |s| s[7] ^= 1 << 8),
        ]);
        assert_eq!(wrong.corrupted_samples, 1);
        let message = wrong.first_error.expect("error");
        assert!(message.contains("frame 51, channel 2"), "{message}");

        let jump = check(&[packet(1, 0, 48, |_| ()), packet(2, 60, 48, |_| ())]);
        assert_eq!((jump.lost_packets, jump.discontinuities), (0, 1));
        assert!(jump.first_error.expect("error").contains("12 frames"));
    }
}
