//! Paced AES67 RTP tone sender, for `estuary demo`, `estuary send` and benchmarks.
//!
//! - [`ToneGenerator`] is pure: it fills interleaved MSB-aligned `i32` samples of a sine
//!   from a 64-bit sample counter, so the phase never drifts however long it runs.
//! - [`ToneSender`] owns one thread that sends packet `k` of every stream at
//!   `start + k × ptime` with an absolute sleep ([`crate::clock::sleep_until`]), so the
//!   rate is exact on average whatever the scheduling jitter; a late thread catches up
//!   with a burst instead of slipping.
//!
//! One thread can serve many streams ([`ToneSender::spawn_multi`]); the packet path
//! allocates nothing after setup.

use std::f64::consts::TAU;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use estuary_engine::time::MonoTime;
use estuary_wire::payload::{SampleFormat, encode_into};
use estuary_wire::rtp::{RTP_FIXED_HEADER_LEN, RtpPacketBuilder};
use estuary_wire::units::{RtpTimestamp, SeqNum};

use crate::clock::{monotonic_now, sleep_until};
use crate::mcast::{Interface, open_send_socket};

/// Largest RTP packet the sender will build: an Ethernet MTU minus IPv4 and UDP
/// headers (AES67-2018 §7.2 keeps packets within one MTU, no fragmentation).
pub const MAX_RTP_PACKET: usize = 1500 - 20 - 8;

/// DSCP AF41 (34), the AES67 default for media (AES67-2018 Annex B / §6.5).
pub const DEFAULT_DSCP: u8 = 34;

/// One tone stream to send.
#[derive(Debug, Clone)]
pub struct ToneConfig {
    /// Destination (multicast group or unicast host) and port.
    pub dest: SocketAddr,
    /// Outgoing interface; `None` lets the routing table decide.
    pub iface: Option<Interface>,
    /// Multicast TTL / hop limit (and unicast TTL).
    pub ttl: u32,
    /// DSCP code point (default [`DEFAULT_DSCP`]).
    pub dscp: u8,
    /// Payload sample format.
    pub format: SampleFormat,
    /// Channels per frame, at least 1.
    pub channels: u16,
    /// Sample rate = RTP clock rate, Hz.
    pub sample_rate: u32,
    /// Frames per packet: 48 at 48 kHz is the AES67 1 ms packet time.
    pub frames_per_packet: u32,
    /// Tone frequency of channel 0, Hz.
    pub frequency_hz: f64,
    /// Channel `n` plays `frequency_hz + n × channel_step_hz` (0 = all the same).
    pub channel_step_hz: f64,
    /// Peak level in dBFS (0 = full scale sine).
    pub level_dbfs: f64,
    /// RTP payload type (dynamic; default 98).
    pub payload_type: u8,
    /// RTP SSRC.
    pub ssrc: u32,
    /// RTP timestamp of the first packet.
    pub initial_timestamp: u32,
    /// RTP sequence number of the first packet.
    pub initial_sequence: u16,
}

impl ToneConfig {
    /// A 1 kHz, −18 dBFS, L24 stereo, 1 ms stream to `dest` with TTL 16, DSCP AF41 and
    /// payload type 98. SSRC, first timestamp and first sequence number are derived
    /// from the clock and process id (RFC 3550 §5.1 wants them unpredictable); set
    /// them explicitly for reproducible output.
    pub fn new(dest: SocketAddr) -> Self {
        let seed = monotonic_now().as_nanos() ^ (u64::from(std::process::id()) << 32);
        let mix = splitmix64(seed ^ u64::from(dest.port()));
        Self {
            dest,
            iface: None,
            ttl: 16,
            dscp: DEFAULT_DSCP,
            format: SampleFormat::L24,
            channels: 2,
            sample_rate: 48_000,
            frames_per_packet: 48,
            frequency_hz: 1000.0,
            channel_step_hz: 0.0,
            level_dbfs: -18.0,
            payload_type: 98,
            ssrc: mix as u32,
            initial_timestamp: (mix >> 32) as u32,
            initial_sequence: splitmix64(mix) as u16,
        }
    }

    /// RTP packet size in bytes (header + payload).
    pub fn packet_bytes(&self) -> usize {
        RTP_FIXED_HEADER_LEN
            + self.frames_per_packet as usize
                * usize::from(self.channels)
                * self.format.bytes_per_sample()
    }

    /// Packet time in nanoseconds (may be fractional at 44.1 kHz; pacing uses exact
    /// integer arithmetic per packet index, see [`ToneSender`]).
    pub fn ptime_ns(&self) -> f64 {
        f64::from(self.frames_per_packet) * 1e9 / f64::from(self.sample_rate)
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |m: String| Err(io::Error::new(io::ErrorKind::InvalidInput, m));
        if self.channels == 0 || self.sample_rate == 0 || self.frames_per_packet == 0 {
            return bad(format!(
                "tone to {}: channels ({}), sample rate ({}) and frames per packet ({}) must be non-zero",
                self.dest, self.channels, self.sample_rate, self.frames_per_packet
            ));
        }
        if self.packet_bytes() > MAX_RTP_PACKET {
            return bad(format!(
                "tone to {}: {} frames × {} channels of {} make a {}-byte RTP packet, over the \
                 {MAX_RTP_PACKET}-byte MTU limit; use fewer frames per packet",
                self.dest,
                self.frames_per_packet,
                self.channels,
                self.format.encoding_name(),
                self.packet_bytes()
            ));
        }
        if self.payload_type > 0x7f {
            return bad(format!("payload type {} above 127", self.payload_type));
        }
        Ok(())
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Pure sine generator: interleaved, MSB-aligned `i32` samples.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    sample_rate: u32,
    frequencies: Vec<f64>,
    amplitude: f64,
    /// Index of the next frame to generate.
    position: u64,
    /// One period of the tone when every channel plays the same integer frequency: a
    /// lookup per frame instead of a `sin` (most of a generated stream's CPU otherwise).
    period: Option<Arc<[i32]>>,
}

/// Periods already computed, shared by every generator of the same tone (a 997 Hz period
/// at 48 kHz is 48,000 frames, 188 KiB): key (rate, frequency bits, amplitude bits).
type PeriodKey = (u32, u64, u64);
static PERIODS: Mutex<Vec<(PeriodKey, Weak<[i32]>)>> = Mutex::new(Vec::new());

/// The tone's period in frames, when it is a whole number of frames within one second:
/// an integer frequency repeats every `rate / gcd(rate, f)` frames.
fn period_frames(sample_rate: u32, frequency_hz: f64) -> Option<u32> {
    if !(0.0..f64::from(sample_rate)).contains(&frequency_hz) || frequency_hz.fract() != 0.0 {
        return None;
    }
    let (mut a, mut b) = (sample_rate, frequency_hz as u32);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Some(sample_rate / a.max(1))
}

impl ToneGenerator {
    /// `channels` sines; channel `n` at `frequency_hz + n × channel_step_hz`, peak at
    /// `level_dbfs` relative to `i32` full scale.
    pub fn new(
        sample_rate: u32,
        channels: u16,
        frequency_hz: f64,
        channel_step_hz: f64,
        level_dbfs: f64,
    ) -> Self {
        let frequencies = (0..channels)
            .map(|n| frequency_hz + f64::from(n) * channel_step_hz)
            .collect();
        let mut tone = Self {
            sample_rate: sample_rate.max(1),
            frequencies,
            amplitude: f64::from(i32::MAX) * 10f64.powf(level_dbfs.min(0.0) / 20.0),
            position: 0,
            period: None,
        };
        if channel_step_hz == 0.0 || channels <= 1 {
            tone.period = tone.shared_period(frequency_hz);
        }
        tone
    }

    /// One period of `f` from the shared cache, computed on first use.
    fn shared_period(&self, f: f64) -> Option<Arc<[i32]>> {
        let frames = period_frames(self.sample_rate, f)?;
        let key = (self.sample_rate, f.to_bits(), self.amplitude.to_bits());
        let mut cache = PERIODS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(period) = cache
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Some(period);
        }
        let period: Arc<[i32]> = (0..u64::from(frames)).map(|n| self.sample(n, f)).collect();
        cache.push((key, Arc::downgrade(&period)));
        Some(period)
    }

    /// The generator for `cfg`'s tone.
    pub fn from_config(cfg: &ToneConfig) -> Self {
        Self::new(
            cfg.sample_rate,
            cfg.channels,
            cfg.frequency_hz,
            cfg.channel_step_hz,
            cfg.level_dbfs,
        )
    }

    /// Index of the next frame [`fill`](Self::fill) will produce.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.frequencies.len()
    }

    /// Fills `out` with whole frames (trailing samples of a partial frame are zeroed)
    /// and advances the position. Returns the number of frames written.
    pub fn fill(&mut self, out: &mut [i32]) -> usize {
        let ch = self.frequencies.len().max(1);
        let frames = out.len() / ch;
        if let Some(period) = &self.period {
            let mut at = (self.position % period.len() as u64) as usize;
            for frame in out.chunks_exact_mut(ch) {
                frame.fill(period[at]);
                at += 1;
                if at == period.len() {
                    at = 0;
                }
            }
            for s in &mut out[frames * ch..] {
                *s = 0;
            }
            self.position += frames as u64;
            return frames;
        }
        for (i, frame) in out.chunks_exact_mut(ch).enumerate() {
            let n = self.position + i as u64;
            // Channels on the same frequency share one sine: the benchmark's 128 × 8
            // channel sender would otherwise spend a whole core in `sin`.
            let mut previous: Option<(f64, i32)> = None;
            for (s, &f) in frame.iter_mut().zip(&self.frequencies) {
                let v = match previous {
                    Some((pf, pv)) if pf == f => pv,
                    _ => self.sample(n, f),
                };
                previous = Some((f, v));
                *s = v;
            }
        }
        for s in &mut out[frames * ch..] {
            *s = 0;
        }
        self.position += frames as u64;
        frames
    }

    /// Sample of frequency `f` at frame `n`. The phase is computed from the counter,
    /// split as `n = q·fs + r` so that `q·f` stays exact for integer frequencies and
    /// the fractional cycle count keeps full precision after days of running.
    fn sample(&self, n: u64, f: f64) -> i32 {
        let fs = u64::from(self.sample_rate);
        let (q, r) = (n / fs, n % fs);
        let cycles = (q as f64 * f).fract() + (r as f64 * f / fs as f64).fract();
        let v = self.amplitude * (TAU * cycles).sin();
        v.round() as i32
    }
}

/// What a generator input plays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignalKind {
    /// A sine at `frequency_hz` on every channel.
    Tone { frequency_hz: f64 },
    /// A logarithmic sweep from 20 Hz to 20 kHz every `period_s` seconds, then again.
    Sweep { period_s: f64 },
    /// A known counting sequence (see [`sequence_sample`]), for bit-exact checks.
    Sequence,
}

/// Frame `n`, channel `ch` of the counting sequence: a 24-bit counter of `n × 64 + ch`
/// (so every sample of every channel is distinct within 4.3 minutes at 48 kHz, and a
/// receiver can tell which frame and channel any sample is), MSB-aligned in an `i32`
/// with the low 8 bits zero, so it survives L24 and L32 exactly.
pub fn sequence_sample(n: u64, ch: usize) -> i32 {
    let v = (n.wrapping_mul(64).wrapping_add(ch as u64) & 0x00ff_ffff) as u32;
    (v << 8) as i32
}

/// A generator input's signal: interleaved MSB-aligned `i32`, computed from a 64-bit
/// frame counter, so it never drifts in phase however long it runs.
#[derive(Debug, Clone)]
pub struct SignalGenerator {
    kind: SignalKind,
    tone: ToneGenerator,
    sample_rate: u32,
    amplitude: f64,
    /// Sweep phase in cycles (the sweep's frequency changes, so it is accumulated).
    sweep_phase: f64,
}

impl SignalGenerator {
    pub fn new(kind: SignalKind, sample_rate: u32, channels: u16, level_dbfs: f64) -> Self {
        let frequency = match kind {
            SignalKind::Tone { frequency_hz } => frequency_hz,
            _ => 1000.0,
        };
        Self {
            kind,
            tone: ToneGenerator::new(sample_rate, channels, frequency, 0.0, level_dbfs),
            sample_rate: sample_rate.max(1),
            amplitude: f64::from(i32::MAX) * 10f64.powf(level_dbfs.min(0.0) / 20.0),
            sweep_phase: 0.0,
        }
    }

    /// Index of the next frame.
    pub fn position(&self) -> u64 {
        self.tone.position
    }

    /// Fills `out` with whole frames and advances; returns the frames written.
    pub fn fill(&mut self, out: &mut [i32]) -> usize {
        match self.kind {
            SignalKind::Tone { .. } => self.tone.fill(out),
            SignalKind::Sequence => {
                let ch = self.tone.channels().max(1);
                let start = self.tone.position;
                for (i, frame) in out.chunks_exact_mut(ch).enumerate() {
                    for (c, s) in frame.iter_mut().enumerate() {
                        *s = sequence_sample(start + i as u64, c);
                    }
                }
                self.advance(out, ch)
            }
            SignalKind::Sweep { period_s } => {
                let ch = self.tone.channels().max(1);
                let fs = f64::from(self.sample_rate);
                let period = (period_s.max(0.1) * fs) as u64;
                let start = self.tone.position;
                for (i, frame) in out.chunks_exact_mut(ch).enumerate() {
                    let t = ((start + i as u64) % period) as f64 / period as f64;
                    let f = 20.0 * 1000f64.powf(t);
                    self.sweep_phase = (self.sweep_phase + f / fs).fract();
                    let v = (self.amplitude * (std::f64::consts::TAU * self.sweep_phase).sin())
                        .round() as i32;
                    frame.fill(v);
                }
                self.advance(out, ch)
            }
        }
    }

    fn advance(&mut self, out: &mut [i32], ch: usize) -> usize {
        let frames = out.len() / ch;
        for s in &mut out[frames * ch..] {
            *s = 0;
        }
        self.tone.position += frames as u64;
        frames
    }
}

/// Per-stream state inside the sender thread; every buffer allocated at setup.
#[derive(Debug)]
struct Stream {
    socket: UdpSocket,
    generator: ToneGenerator,
    format: SampleFormat,
    payload_type: u8,
    ssrc: u32,
    sequence: SeqNum,
    timestamp: RtpTimestamp,
    frames_per_packet: u32,
    sample_rate: u32,
    /// Index of the next packet.
    k: u64,
    samples: Vec<i32>,
    payload: Vec<u8>,
    packet: Vec<u8>,
}

impl Stream {
    fn open(cfg: &ToneConfig) -> io::Result<Self> {
        cfg.validate()?;
        let socket = open_send_socket(cfg.dest, cfg.iface.as_ref(), cfg.ttl, cfg.dscp)?;
        let samples = cfg.frames_per_packet as usize * usize::from(cfg.channels);
        Ok(Self {
            socket,
            generator: ToneGenerator::from_config(cfg),
            format: cfg.format,
            payload_type: cfg.payload_type,
            ssrc: cfg.ssrc,
            sequence: SeqNum(cfg.initial_sequence),
            timestamp: RtpTimestamp(cfg.initial_timestamp),
            frames_per_packet: cfg.frames_per_packet,
            sample_rate: cfg.sample_rate,
            k: 0,
            samples: vec![0; samples],
            payload: vec![0; samples * cfg.format.bytes_per_sample()],
            packet: vec![0; cfg.packet_bytes()],
        })
    }

    /// Deadline of packet `k`, as an offset from the start in ns: exact integer
    /// arithmetic, so 44.1 kHz packet times (1000/1000 ms ≠ 48 frames) never drift.
    fn offset_ns(&self, k: u64) -> u64 {
        let ns = u128::from(k) * u128::from(self.frames_per_packet) * 1_000_000_000
            / u128::from(self.sample_rate);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Builds and sends the next packet. Returns whether the send succeeded.
    fn send_next(&mut self) -> io::Result<()> {
        self.generator.fill(&mut self.samples);
        let len =
            encode_into(self.format, &self.samples, &mut self.payload).map_err(io::Error::other)?;
        let builder = RtpPacketBuilder {
            marker: self.k == 0,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: &[],
            extension: None,
            payload: &self.payload[..len],
            padding: 0,
        };
        let n = builder
            .write_into(&mut self.packet)
            .map_err(io::Error::other)?;
        self.sequence = self.sequence.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.frames_per_packet);
        self.k += 1;
        self.socket.send(&self.packet[..n]).map(|_| ())
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    errors: AtomicU64,
    /// Worst delay of a send behind its schedule, in nanoseconds.
    max_lateness_ns: AtomicU64,
}

/// A thread sending one or more paced tone streams. Stopped and joined on
/// [`stop`](Self::stop) or drop.
#[derive(Debug)]
pub struct ToneSender {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl ToneSender {
    /// Opens the socket for `cfg` (errors come back here) and starts its sender thread.
    ///
    /// The thread is spawned from the calling thread, so it inherits that thread's
    /// network namespace (see [`crate::netns`]).
    pub fn spawn(cfg: ToneConfig) -> io::Result<Self> {
        Self::spawn_multi(vec![cfg])
    }

    /// Serves every stream of `streams` from ONE thread: each stream's packet `k` is
    /// sent at `start + k × its ptime`. Streams may have different packet times.
    pub fn spawn_multi(streams: Vec<ToneConfig>) -> io::Result<Self> {
        if streams.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "spawn_multi needs at least one stream",
            ));
        }
        let mut opened = Vec::with_capacity(streams.len());
        for cfg in &streams {
            opened.push(Stream::open(cfg)?);
        }
        let local_addrs = opened
            .iter()
            .map(|s| s.socket.local_addr())
            .collect::<io::Result<Vec<_>>>()?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let thread = std::thread::Builder::new()
            .name("estuary-tone".to_owned())
            .spawn({
                let stop = Arc::clone(&stop);
                let counters = Arc::clone(&counters);
                move || run(opened, &stop, &counters)
            })?;
        Ok(Self {
            stop,
            counters,
            thread: Some(thread),
            local_addrs,
        })
    }

    /// Packets sent so far, all streams together.
    pub fn packets_sent(&self) -> u64 {
        self.counters.sent.load(Ordering::Relaxed)
    }

    /// Sends that failed (e.g. `ECONNREFUSED` for unicast with no listener).
    pub fn send_errors(&self) -> u64 {
        self.counters.errors.load(Ordering::Relaxed)
    }

    /// The longest any packet left behind its schedule: a receiver with less jitter-buffer
    /// latency than this sees late packets that are the sender's doing, not the network's.
    pub fn max_lateness(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.counters.max_lateness_ns.load(Ordering::Relaxed))
    }

    /// Local (source) address of each stream's socket, in `streams` order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Stops the thread and waits for it (at most about one packet time).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("tone sender thread panicked");
        }
    }
}

impl Drop for ToneSender {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(mut streams: Vec<Stream>, stop: &AtomicBool, counters: &Counters) {
    // A test source stands for a device with its own CPU: on a loaded host (a benchmark's
    // recorder threads, a CI build) a normally scheduled sender falls behind and then
    // bursts, and the receiver's counters would measure the sender. Refused without
    // CAP_SYS_NICE, which only costs that independence.
    let _ = crate::sched::promote_current_thread(crate::sched::OUTPUT_PRIORITY);
    let start = monotonic_now().as_nanos();
    let mut logged_error = false;
    while !stop.load(Ordering::Relaxed) {
        // Next deadline over all streams (a linear scan: 128 streams cost ~100 ns).
        let next = streams.iter().map(|s| s.offset_ns(s.k)).min().unwrap_or(0);
        sleep_until(MonoTime::from_nanos(start.saturating_add(next)));
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = monotonic_now().as_nanos().saturating_sub(start);
        for s in &mut streams {
            // Send every packet already due; a thread woken late catches up in a burst
            // so the stream's average rate stays exact.
            if let Some(behind) = now.checked_sub(s.offset_ns(s.k)) {
                counters
                    .max_lateness_ns
                    .fetch_max(behind, Ordering::Relaxed);
            }
            while s.offset_ns(s.k) <= now {
                match s.send_next() {
                    Ok(()) => {
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Ordering::Relaxed);
                        if !logged_error {
                            tracing::warn!("tone send failed: {e} (further errors only counted)");
                            logged_error = true;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generator_is_phase_continuous_and_at_level() {
        let mut g = ToneGenerator::new(48_000, 2, 1000.0, 0.0, -6.0);
        let mut a = vec![0i32; 96];
        let mut b = vec![0i32; 96];
        g.fill(&mut a);
        g.fill(&mut b);
        // 1 kHz at 48 kHz has a 48-sample period: packet 2 repeats packet 1.
        assert_eq!(a, b);
        assert_eq!(g.position(), 96);
        let peak = a.iter().map(|v| v.unsigned_abs()).max().unwrap_or(0);
        let want = f64::from(i32::MAX) * 10f64.powf(-6.0 / 20.0);
        assert!((f64::from(peak) - want).abs() / want < 1e-6);
        // Channels equal when no step.
        assert!(a.chunks_exact(2).all(|f| f[0] == f[1]));
    }

    #[test]
    fn generator_far_position_matches_near() {
        let mut g = ToneGenerator::new(48_000, 1, 997.0, 0.0, 0.0);
        let mut near = vec![0i32; 48];
        g.fill(&mut near);
        // 997 Hz repeats every second (48000 frames) exactly.
        g.position = 48_000 * 86_400 * 30;
        let mut far = vec![0i32; 48];
        g.fill(&mut far);
        for (x, y) in near.iter().zip(&far) {
            assert!((i64::from(*x) - i64::from(*y)).abs() < 64, "{x} {y}");
        }
    }

    #[test]
    fn the_precomputed_period_matches_the_sine_within_one_lsb() {
        for (rate, f) in [(48_000, 997.0), (44_100, 1000.0), (96_000, 440.0)] {
            let mut g = ToneGenerator::new(rate, 2, f, 0.0, -18.0);
            let period = g.period.clone().expect("an integer frequency has a period");
            assert_eq!(period.len() as u32, period_frames(rate, f).expect("period"));
            // Across the period's wrap, and days into the stream.
            for start in [0, period.len() as u64 - 7, 48_000 * 86_400 * 3 + 5] {
                g.position = start;
                let mut out = vec![0i32; 2 * 30];
                assert_eq!(g.fill(&mut out), 30);
                for (i, frame) in out.chunks_exact(2).enumerate() {
                    let want = g.sample(start + i as u64, f);
                    assert!(
                        (i64::from(frame[0]) - i64::from(want)).abs() <= 1,
                        "{rate} {f} {start}+{i}"
                    );
                    assert_eq!(frame[0], frame[1]);
                }
            }
        }
        // Shared between generators of the same tone; none for a fractional frequency or
        // channels on different frequencies.
        let a = ToneGenerator::new(48_000, 8, 997.0, 0.0, -18.0);
        let b = ToneGenerator::new(48_000, 2, 997.0, 0.0, -18.0);
        assert!(Arc::ptr_eq(
            a.period.as_ref().expect("a"),
            b.period.as_ref().expect("b")
        ));
        assert!(
            ToneGenerator::new(48_000, 2, 997.5, 0.0, 0.0)
                .period
                .is_none()
        );
        assert!(
            ToneGenerator::new(48_000, 2, 997.0, 100.0, 0.0)
                .period
                .is_none()
        );
    }

    #[test]
    fn sequence_names_frame_and_channel_and_survives_l24() {
        let mut g = SignalGenerator::new(SignalKind::Sequence, 48_000, 3, 0.0);
        let mut a = vec![0i32; 3 * 4];
        assert_eq!(g.fill(&mut a), 4);
        assert_eq!(a[..4], [0, 1 << 8, 2 << 8, 64 << 8]);
        assert!(a.iter().all(|v| v & 0xff == 0));
        let mut b = vec![0i32; 3];
        g.fill(&mut b);
        assert_eq!(b[2], sequence_sample(4, 2));
        // The counter wraps at 24 bits.
        assert_eq!(sequence_sample(1 << 18, 0), 0);
    }

    #[test]
    fn sweep_stays_within_level() {
        let mut g = SignalGenerator::new(SignalKind::Sweep { period_s: 1.0 }, 48_000, 1, -6.0);
        let mut out = vec![0i32; 48_000];
        g.fill(&mut out);
        let limit = f64::from(i32::MAX) * 10f64.powf(-6.0 / 20.0) + 1.0;
        let peak = out
            .iter()
            .map(|v| f64::from(v.unsigned_abs()))
            .fold(0.0, f64::max);
        assert!(peak <= limit && peak > limit * 0.99, "{peak} vs {limit}");
    }

    #[test]
    fn rejects_oversized_packets() {
        let mut cfg = ToneConfig::new(SocketAddr::from(([239, 1, 1, 1], 5004)));
        cfg.channels = 16;
        let err = Stream::open(&cfg).expect_err("2316-byte packet");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
