//! The running gateway: sockets → jitter buffers → encoders → MPEG-TS → SRT.
//!
//! Threads (see docs/architecture.md):
//! - one *ingest* thread serves every input socket: it drains them with `recvmmsg`, writes the
//!   samples into each input's jitter buffer at their timestamp position, then pulls what is
//!   due and pushes it into one wait-free ring per output. It wakes when an output's next
//!   codec frame is due (at least every 5 ms). It never allocates,
//!   locks or blocks (statistics are published with `try_lock`, skipped when contended);
//! - one thread per *output* encodes (Opus or SMPTE 302M), muxes MPEG-TS and hands 1316-byte
//!   messages to its SRT sender, whose own thread connects, listens and reconnects;
//! - the calling thread reports and waits for the stop flag.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use estuary_engine::clock::PlayoutClock as _;
use estuary_engine::jitter::{JitterBuffer, JitterConfig};
use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;
use estuary_io::batch::BatchReceiver;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::mcast;
use estuary_io::opus::OpusEncoder;
use estuary_io::srt::{SrtConfig, SrtMode, SrtSender, SrtStatus};
use estuary_wire::s302m::{self, S302mFormat};
use estuary_wire::ts::{self, TsAudio, TsConfig, TsMuxer};

use crate::config::{
    CodecConfig, Config, InputConfig, OutputConfig, ResolvedStream, SrtModeConfig,
};
use crate::latency::LatencyHistogram;
use crate::shutdown::Stop;

/// The longest the ingest thread sleeps; it wakes earlier when an output's codec frame is due.
const MAX_TICK: Duration = Duration::from_millis(5);
/// The shortest, so a clock that says "already due" cannot make it spin.
const MIN_TICK: Duration = Duration::from_micros(200);
/// Audio each output ring holds; a stalled encoder loses audio (counted) after this long.
const OUTPUT_RING: Duration = Duration::from_millis(500);
/// 302M access units: 5 ms keeps the added latency small at 0.6 % TS overhead per PES.
const PCM_FRAME: usize = 240;
/// Packets drained per `recvmmsg` call.
const BATCH: usize = 64;

/// Where periodic status goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reporting {
    /// `tracing` lines every 10 s (the daemon).
    Log,
    /// A compact line on stdout every second (the demo).
    Console,
}

impl Reporting {
    fn emit(self, line: &str) {
        match self {
            Reporting::Log => info!("{line}"),
            Reporting::Console => println!("{line}"),
        }
    }
}

/// What the ingest thread publishes about one input.
#[derive(Debug, Clone, Copy, Default)]
pub struct InputSnapshot {
    pub stats: StreamStats,
    /// Frames an output ring had no room for (the encoder fell behind).
    pub ring_overruns: u64,
    /// How long after their playout time frames were pulled (the 1 ms tick's share).
    pub pull_lag: LatencyHistogram,
}

/// What an output thread publishes.
#[derive(Debug, Clone, Default)]
pub struct OutputSnapshot {
    pub frames_encoded: u64,
    pub access_units: u64,
    pub encode_errors: u64,
    /// From the ingest thread completing a codec frame in the ring to its last TS packet
    /// being handed to SRT: wake-up, encoding and muxing.
    pub handoff: LatencyHistogram,
}

/// The ingest side of one output: the samples, and marks saying when each push happened.
struct OutputFeed {
    samples: rtrb::Producer<i32>,
    /// (frames pushed so far, when): lets the output time each codec frame from the moment
    /// its last sample arrived, not from when the output thread woke up.
    marks: rtrb::Producer<(u64, MonoTime)>,
    frames_pushed: u64,
    /// The output's codec frame, in frames: the ingest wakes when one is complete.
    frame: u64,
    /// The output's thread, unparked when a codec frame is complete.
    thread: Option<thread::Thread>,
}

struct InputRuntime {
    name: String,
    socket: UdpSocket,
    jitter: JitterBuffer,
    channels: usize,
    rings: Vec<OutputFeed>,
    ring_overruns: u64,
    pull_lag: LatencyHistogram,
    shared: Arc<Mutex<InputSnapshot>>,
}

/// Runs the configured gateway until `stop` is requested.
pub fn run(config: &Config, stop: &Stop, reporting: Reporting) -> anyhow::Result<()> {
    let running = Running::start(config)?;
    running.wait(stop, reporting);
    Ok(())
}

/// The started threads of a configuration.
pub struct Running {
    inputs: Vec<(String, Arc<Mutex<InputSnapshot>>)>,
    outputs: Vec<(String, Arc<Mutex<OutputSnapshot>>, Arc<SrtSender>)>,
    halt: Stop,
    threads: Vec<JoinHandle<()>>,
}

impl Running {
    /// Opens every socket and starts every thread; fails without starting anything half-way.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let halt = Stop::default();
        let mut inputs = Vec::new();
        let mut input_info = Vec::new();
        for input in &config.inputs {
            let stream = input.resolve().map_err(|(_, field, msg)| {
                anyhow::anyhow!("input {}: {field}: {msg}", *input.name.get_ref())
            })?;
            inputs.push(open_input(input, &stream)?);
            input_info.push(stream);
        }
        let mut outputs = Vec::new();
        let mut workers = Vec::new();
        let mut feeds = Vec::new();
        for output in &config.outputs {
            let index = config
                .inputs
                .iter()
                .position(|i| i.name.get_ref() == output.input.get_ref())
                .context("output names an unknown input")?;
            let stream = &input_info[index];
            let frames = (OUTPUT_RING.as_secs_f64() * f64::from(stream.sample_rate)) as usize;
            let (samples, consumer) = rtrb::RingBuffer::new(frames * usize::from(stream.channels));
            let (marks, mark_consumer) = rtrb::RingBuffer::new(1024);
            let srt = Arc::new(
                SrtSender::start(srt_config(output))
                    .with_context(|| format!("output {}", output.name.get_ref()))?,
            );
            info!(output = %output.name.get_ref(), kind = ?output.kind, mode = ?output.mode, address = %output.address, codec = ?output.codec, "starting");
            let shared = Arc::new(Mutex::new(OutputSnapshot::default()));
            let worker = OutputWorker::new(
                output,
                stream,
                (consumer, mark_consumer),
                Arc::clone(&srt),
                Arc::clone(&shared),
            )
            .with_context(|| format!("output {}", output.name.get_ref()))?;
            inputs[index].rings.push(OutputFeed {
                samples,
                marks,
                frames_pushed: 0,
                frame: worker.frame as u64,
                thread: None,
            });
            feeds.push((index, inputs[index].rings.len() - 1));
            outputs.push((output.name.get_ref().clone(), shared, srt));
            workers.push(worker);
        }

        let mut threads = Vec::new();
        for (worker, (input, feed)) in workers.into_iter().zip(feeds) {
            let halt = halt.clone();
            let name = format!("out-{}", worker.name);
            let handle = thread::Builder::new()
                .name(name)
                .spawn(move || worker.run(&halt))?;
            inputs[input].rings[feed].thread = Some(handle.thread().clone());
            threads.push(handle);
        }
        let snapshots = inputs
            .iter()
            .map(|i| (i.name.clone(), Arc::clone(&i.shared)))
            .collect();
        {
            let halt = halt.clone();
            threads.push(
                thread::Builder::new()
                    .name("ingest".into())
                    .spawn(move || ingest(inputs, &halt))?,
            );
        }
        Ok(Self {
            inputs: snapshots,
            outputs,
            halt,
            threads,
        })
    }

    /// Reports until `stop` is requested, then stops every thread.
    pub fn wait(self, stop: &Stop, reporting: Reporting) {
        self.report_until(stop, reporting);
        self.shutdown();
    }

    /// Reports status until `stop` is requested.
    pub fn report_until(&self, stop: &Stop, reporting: Reporting) {
        let period = match reporting {
            Reporting::Log => Duration::from_secs(10),
            Reporting::Console => Duration::from_secs(1),
        };
        let mut reporter = Reporter::default();
        let mut next = Instant::now() + period;
        while !stop.requested() {
            thread::sleep(Duration::from_millis(50));
            reporter.watch_causes(self);
            if Instant::now() >= next {
                next += period;
                reporter.report(self, reporting);
            }
        }
    }

    /// Stops every thread, outputs last.
    pub fn shutdown(self) {
        info!("stopping");
        self.halt.request();
        for t in self.threads {
            let _ = t.join();
        }
        // The output threads held the other references: this drop stops each SRT sender.
        drop(self.outputs);
    }

    pub fn input_stats(&self) -> Vec<(String, InputSnapshot)> {
        self.inputs
            .iter()
            .map(|(n, s)| (n.clone(), *s.lock().unwrap_or_else(|e| e.into_inner())))
            .collect()
    }

    pub fn output_status(&self) -> Vec<(String, OutputSnapshot, SrtStatus)> {
        self.outputs
            .iter()
            .map(|(n, s, srt)| {
                (
                    n.clone(),
                    s.lock().unwrap_or_else(|e| e.into_inner()).clone(),
                    srt.status(),
                )
            })
            .collect()
    }
}

fn open_input(input: &InputConfig, stream: &ResolvedStream) -> anyhow::Result<InputRuntime> {
    let name = input.name.get_ref().clone();
    let iface = match &input.interface {
        Some(spec) => Some(
            mcast::resolve_interface(spec.get_ref())
                .with_context(|| format!("input {name}: interface"))?,
        ),
        None => None,
    };
    let socket = mcast::open_receive_socket(stream.destination, stream.source, iface.as_ref())
        .with_context(|| format!("input {name}: cannot receive on {}", stream.destination))?;
    let jitter = JitterBuffer::new(JitterConfig {
        channels: stream.channels,
        sample_rate: stream.sample_rate,
        format: stream.format,
        payload_type: stream.payload_type,
        latency: input.latency,
        capacity: (input.latency * 8).max(Duration::from_millis(400)),
    })
    .map_err(|e| anyhow::anyhow!("input {name}: {e}"))?;
    info!(
        input = %name,
        kind = ?input.kind,
        destination = %stream.destination,
        source = ?stream.source,
        format = stream.format.encoding_name(),
        channels = stream.channels,
        rate = stream.sample_rate,
        latency_ms = input.latency.as_millis() as u64,
        "receiving"
    );
    Ok(InputRuntime {
        name,
        socket,
        jitter,
        channels: usize::from(stream.channels),
        rings: Vec::new(),
        ring_overruns: 0,
        pull_lag: LatencyHistogram::default(),
        shared: Arc::new(Mutex::new(InputSnapshot::default())),
    })
}

fn srt_config(output: &OutputConfig) -> SrtConfig {
    SrtConfig {
        mode: match output.mode {
            SrtModeConfig::Caller => SrtMode::Caller {
                remote: output.address,
            },
            SrtModeConfig::Listener => SrtMode::Listener {
                bind: output.address,
            },
        },
        passphrase: output.passphrase.as_ref().map(|p| p.get_ref().clone()),
        key_length: output.key_length.as_ref().map(|k| *k.get_ref()),
        latency: output.latency,
        stream_id: output.stream_id.clone(),
        connect_timeout: Duration::from_secs(3),
    }
}

/// The ingest loop (see the module doc). Allocates nothing after the first iteration.
fn ingest(mut inputs: Vec<InputRuntime>, halt: &Stop) {
    let mut rx = BatchReceiver::new(BATCH);
    let max_channels = inputs.iter().map(|i| i.channels).max().unwrap_or(1);
    // 100 ms of the widest input per pull; a pull that has more due simply loops.
    let mut scratch = vec![0i32; max_channels * 4_800];
    let mut next_wake = monotonic_now();
    let mut next_publish = next_wake;
    while !halt.requested() {
        // Sockets are drained when the thread wakes, not on readiness: waking per packet
        // costs about three system calls per packet, and the kernel's receive timestamps keep
        // arrival times exact however late we read them. Every pull follows a drain, so no
        // packet that arrived before its playout time can miss it, whatever the wake period.
        sleep_until(next_wake);
        for input in &mut inputs {
            drain_socket(&mut rx, input);
        }
        let now = monotonic_now();
        for input in &mut inputs {
            pull_into_rings(input, now, &mut scratch);
        }
        // Wake when the next codec frame of any output is due, so no tick adds latency.
        next_wake = inputs
            .iter()
            .filter_map(InputRuntime::next_frame_due)
            .fold(now.saturating_add(MAX_TICK), MonoTime::min)
            .max(now.saturating_add(MIN_TICK));
        if now >= next_publish {
            next_publish = now.saturating_add(Duration::from_millis(100));
            for input in &inputs {
                if let Ok(mut shared) = input.shared.try_lock() {
                    shared.stats = *input.jitter.stats();
                    shared.ring_overruns = input.ring_overruns;
                    shared.pull_lag = input.pull_lag;
                }
            }
        }
    }
}

impl InputRuntime {
    /// When the last frame of some output's next codec frame becomes due.
    fn next_frame_due(&self) -> Option<MonoTime> {
        let next = self.jitter.position()?;
        let last_needed = self
            .rings
            .iter()
            .map(|f| next + (f.frame - f.frames_pushed % f.frame) - 1)
            .min()?;
        self.jitter.clock().due_time(last_needed)
    }
}

/// Reads everything the socket holds into the input's jitter buffer.
fn drain_socket(rx: &mut BatchReceiver, input: &mut InputRuntime) {
    while let Ok(n) = rx.recv(&input.socket) {
        for packet in rx.packets() {
            // The outcome is also counted in the buffer's statistics.
            let _ = input.jitter.push(packet.arrival, packet.data);
        }
        // A short batch means the socket is empty: skip the call that would say EAGAIN.
        if n < rx.capacity() {
            break;
        }
    }
}

fn pull_into_rings(input: &mut InputRuntime, now: MonoTime, scratch: &mut [i32]) {
    let usable = scratch.len() / input.channels * input.channels;
    loop {
        let pulled = input.jitter.pull(now, &mut scratch[..usable]);
        if pulled.frames == 0 {
            break;
        }
        let last = pulled.position + pulled.frames as u64 - 1;
        if let Some(due) = input.jitter.clock().due_time(last) {
            input.pull_lag.record(now.duration_since(due));
        }
        let samples = &scratch[..pulled.frames * input.channels];
        for feed in &mut input.rings {
            if feed.samples.slots() < samples.len() {
                input.ring_overruns += pulled.frames as u64;
                continue;
            }
            if let Ok(mut chunk) = feed.samples.write_chunk(samples.len()) {
                let (a, b) = chunk.as_mut_slices();
                a.copy_from_slice(&samples[..a.len()]);
                b.copy_from_slice(&samples[a.len()..]);
                chunk.commit_all();
                let frames_before = feed.frames_pushed;
                feed.frames_pushed += pulled.frames as u64;
                // A full mark ring only costs the output one latency sample.
                let _ = feed.marks.push((feed.frames_pushed, now));
                if feed.frames_pushed / feed.frame > frames_before / feed.frame
                    && let Some(t) = &feed.thread
                {
                    t.unpark();
                }
            }
        }
        if pulled.frames * input.channels < usable {
            break;
        }
    }
}

enum Encoder {
    Opus(OpusEncoder),
    Pcm(S302mFormat),
}

struct OutputWorker {
    name: String,
    consumer: rtrb::Consumer<i32>,
    marks: rtrb::Consumer<(u64, MonoTime)>,
    in_channels: usize,
    map: Vec<usize>,
    /// Channels sent (302M needs an even count: a silent channel pads an odd map).
    out_channels: usize,
    frame: usize,
    encoder: Encoder,
    muxer: TsMuxer,
    input_block: Vec<i32>,
    frame_block: Vec<i32>,
    access_unit: Vec<u8>,
    ts_out: Vec<u8>,
    frames_done: u64,
    srt: Arc<SrtSender>,
    shared: Arc<Mutex<OutputSnapshot>>,
    snapshot: OutputSnapshot,
}

impl OutputWorker {
    fn new(
        output: &OutputConfig,
        stream: &ResolvedStream,
        (consumer, marks): (rtrb::Consumer<i32>, rtrb::Consumer<(u64, MonoTime)>),
        srt: Arc<SrtSender>,
        shared: Arc<Mutex<OutputSnapshot>>,
    ) -> anyhow::Result<Self> {
        let map = output.channel_map(stream.channels);
        let (encoder, out_channels, frame, audio) = match output.codec {
            CodecConfig::Opus => {
                let channels = map.len();
                let enc = OpusEncoder::new(
                    stream.sample_rate,
                    u16::try_from(channels)?,
                    *output.bitrate.get_ref(),
                )?;
                let frame = enc.frame_samples();
                (
                    Encoder::Opus(enc),
                    channels,
                    frame,
                    TsAudio::Opus {
                        channels: u8::try_from(channels)?,
                    },
                )
            }
            CodecConfig::Pcm => {
                let channels = map.len().next_multiple_of(2);
                let format = S302mFormat {
                    channels: u8::try_from(channels)?,
                    bits: *output.bits.get_ref(),
                };
                (
                    Encoder::Pcm(format),
                    channels,
                    PCM_FRAME,
                    TsAudio::S302m { format },
                )
            }
        };
        let max_au = match &encoder {
            Encoder::Opus(_) => 4_000,
            Encoder::Pcm(format) => s302m::packed_len(*format, frame),
        };
        Ok(Self {
            name: output.name.get_ref().clone(),
            consumer,
            marks,
            in_channels: usize::from(stream.channels),
            map,
            out_channels,
            frame,
            encoder,
            muxer: TsMuxer::new(TsConfig::new(audio))?,
            input_block: vec![0; frame * usize::from(stream.channels)],
            frame_block: vec![0; frame * out_channels],
            access_unit: vec![0; max_au],
            ts_out: Vec::with_capacity(64 * 188),
            frames_done: 0,
            srt,
            shared,
            snapshot: OutputSnapshot::default(),
        })
    }

    fn run(mut self, halt: &Stop) {
        while !halt.requested() {
            let mut worked = false;
            while self.encode_one() {
                worked = true;
            }
            if worked && let Ok(mut shared) = self.shared.try_lock() {
                *shared = self.snapshot.clone();
            }
            // The ingest thread unparks us when a codec frame is complete; the timeout only
            // bounds how long a stop request waits.
            thread::park_timeout(Duration::from_millis(50));
        }
    }

    /// Encodes one frame if the ring holds one; returns whether it did.
    fn encode_one(&mut self) -> bool {
        let need = self.frame * self.in_channels;
        let Ok(chunk) = self.consumer.read_chunk(need) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        self.input_block[..a.len()].copy_from_slice(a);
        self.input_block[a.len()..].copy_from_slice(b);
        chunk.commit_all();

        for (frame_in, frame_out) in self
            .input_block
            .chunks_exact(self.in_channels)
            .zip(self.frame_block.chunks_exact_mut(self.out_channels))
        {
            for (slot, &ch) in frame_out.iter_mut().zip(&self.map) {
                *slot = frame_in[ch];
            }
        }
        let encoded = match &mut self.encoder {
            Encoder::Opus(enc) => enc
                .encode(&self.frame_block, &mut self.access_unit)
                .map_err(|e| e.to_string()),
            // The frame index keeps the AES3 192-frame block phase continuous across units.
            Encoder::Pcm(format) => s302m::pack_into_at(
                *format,
                self.frames_done,
                &self.frame_block,
                &mut self.access_unit,
            )
            .map_err(|e| e.to_string()),
        };
        let len = match encoded {
            Ok(len) => len,
            Err(_) => {
                self.snapshot.encode_errors += 1;
                return true;
            }
        };
        // PTS in 90 kHz units from the output's own sample count: concealment keeps the
        // input continuous, so the count is the media time.
        let pts = self.frames_done * 90_000 / 48_000;
        if self
            .muxer
            .write_access_unit(pts, &self.access_unit[..len], &mut self.ts_out)
            .is_err()
        {
            self.snapshot.encode_errors += 1;
        }
        let srt = &self.srt;
        ts::drain_messages(&mut self.ts_out, |message| srt.send(message));
        self.frames_done += self.frame as u64;
        if let Some(completed) = self.frame_completed_at() {
            self.snapshot
                .handoff
                .record(monotonic_now().duration_since(completed));
        }
        self.snapshot.frames_encoded = self.frames_done;
        self.snapshot.access_units += 1;
        true
    }
}

impl OutputWorker {
    /// When the ingest thread pushed the last sample of the frame just encoded.
    fn frame_completed_at(&mut self) -> Option<MonoTime> {
        let done = self.frames_done;
        while let Ok(&(pushed, at)) = self.marks.peek() {
            if pushed >= done {
                return Some(at);
            }
            let _ = self.marks.pop();
        }
        None
    }
}

/// Logs each cause of trouble once when it first appears, and periodic summaries.
#[derive(Debug, Default)]
struct Reporter {
    seen: Vec<(String, StreamStats)>,
}

impl Reporter {
    fn watch_causes(&mut self, running: &Running) {
        for (name, snap) in running.input_stats() {
            let previous = match self.seen.iter_mut().find(|(n, _)| *n == name) {
                Some((_, prev)) => prev,
                None => {
                    self.seen.push((name.clone(), StreamStats::default()));
                    &mut self.seen.last_mut().expect("just pushed").1
                }
            };
            let s = snap.stats;
            let causes = [
                (
                    "malformed packets (truncated or not RTP)",
                    previous.malformed,
                    s.malformed,
                ),
                (
                    "packets with an unexpected payload type",
                    previous.wrong_payload_type,
                    s.wrong_payload_type,
                ),
                (
                    "SSRC changes (a different sender)",
                    previous.ssrc_changes,
                    s.ssrc_changes,
                ),
                (
                    "stream restarts (timestamp jump)",
                    previous.resyncs,
                    s.resyncs,
                ),
                ("lost packets", previous.packets_lost, s.packets_lost),
                (
                    "late packets (arrived after playout)",
                    previous.packets_late,
                    s.packets_late,
                ),
            ];
            for (what, before, now) in causes {
                if before == 0 && now > 0 {
                    warn!(input = %name, count = now, "{what}; further ones are counted in the status");
                }
            }
            *previous = s;
        }
    }

    fn report(&self, running: &Running, reporting: Reporting) {
        for (name, snap) in running.input_stats() {
            let s = snap.stats;
            let line = format!(
                "input {name}: {} packets, {} lost, {} late, {} duplicate, {} reordered, {} malformed, {} wrong payload type, {} concealed frames, {} discarded frames, {} restarts, jitter {} samples, fill {} frames, playout lag p99 {:.2} ms",
                s.packets_received,
                s.packets_lost,
                s.packets_late,
                s.packets_duplicate,
                s.packets_reordered,
                s.malformed,
                s.wrong_payload_type,
                s.frames_concealed,
                s.frames_discarded,
                s.resyncs,
                s.jitter,
                s.buffer_fill_frames,
                snap.pull_lag.quantile(0.99).as_secs_f64() * 1000.0
            );
            reporting.emit(&line);
        }
        for (name, snap, srt) in running.output_status() {
            let line = format!(
                "output {name}: {}, {} frames encoded, {} messages sent, {} dropped while not connected, rtt {:.1} ms, {} retransmitted, hand-off p99 {:.2} ms",
                srt.state,
                snap.frames_encoded,
                srt.messages_sent,
                srt.messages_dropped_not_connected,
                srt.rtt_ms,
                srt.retransmitted_packets,
                snap.handoff.quantile(0.99).as_secs_f64() * 1000.0
            );
            reporting.emit(&line);
        }
    }
}

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<InputRuntime>();
    is_send::<OutputWorker>();
}
