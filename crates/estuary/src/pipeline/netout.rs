//! Icecast and HTTP listen-in outputs: one thread per output takes the route's audio from its
//! ring, picks (or downmixes) the channels, resamples and encodes (`estuary_io::encode`), and
//! hands the bytes to the destination's own thread without ever waiting for it.
//!
//! Titles: from the config (`title`), from a watched file (`title_file`, its first line,
//! polled every second) or from the API. MP3/AAC titles go through Icecast's admin interface;
//! an Ogg stream carries its title in its comment header, so a new title ends the current
//! logical stream and chains a new one.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use estuary_io::encode::{EncoderConfig, StreamEncoder};
use estuary_io::http_listen::{HttpListen, HttpListenConfig};
use estuary_io::icecast::{PublishTarget, Publisher};

use super::{OutputSnapshot, lock};
use crate::config::{CodecConfig, OutputConfig, OutputKind, ResolvedStream};
use crate::gateway::TitleError;
use crate::shutdown::Stop;
use crate::status::{Health, OutputCounters, OutputStatus};

/// 20 ms at 48 kHz: small enough for low latency, large enough to keep per-chunk costs low.
const BLOCK: Duration = Duration::from_millis(20);
/// Chunks are handed over when at least this much audio is encoded.
const CHUNK_BYTES: usize = 1024;
const TITLE_POLL: Duration = Duration::from_secs(1);

/// Where a network output's bytes go; lives as long as the output's configuration.
pub(super) struct NetSink {
    pub target: NetTarget,
    /// A title set through the API, taken by the worker.
    pub title: Mutex<Option<String>>,
}

pub(super) enum NetTarget {
    /// An Icecast source or an RTMP publisher.
    Icecast(Publisher),
    Http(HttpListen),
}

impl NetSink {
    pub fn start(output: &OutputConfig) -> anyhow::Result<Self> {
        let name = output.name.get_ref();
        let codec = output
            .net_codec()
            .map_err(|(_, field, msg)| anyhow::anyhow!("{field}: {msg}"))?;
        let target = match output.kind {
            OutputKind::Icecast => {
                let config = output.icecast_config().map_err(anyhow::Error::msg)?;
                NetTarget::Icecast(Publisher::start(PublishTarget::Icecast(config), name)?)
            }
            OutputKind::Rtmp => {
                let config = output.rtmp_config().map_err(anyhow::Error::msg)?;
                NetTarget::Icecast(Publisher::start(PublishTarget::Rtmp(config), name)?)
            }
            _ => NetTarget::Http(
                HttpListen::start(
                    HttpListenConfig {
                        bind: output.address,
                        path: output.path.as_ref().map_or("/", |p| p.get_ref()).to_owned(),
                        content_type: codec.content_type(),
                        max_listeners: output.max_listeners() as usize,
                        token: output.token.as_ref().map(|t| t.get_ref().clone()),
                    },
                    name,
                )
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", output.address))?,
            ),
        };
        Ok(Self {
            target,
            title: Mutex::new(None),
        })
    }

    /// The destination's stream generation; 0 while nothing would receive the bytes.
    fn generation(&self) -> u64 {
        match &self.target {
            NetTarget::Icecast(ice) if ice.connected() => ice.generation(),
            NetTarget::Icecast(_) => 0,
            // Encoded always: a listener joining gets audio at once.
            NetTarget::Http(_) => 1,
        }
    }

    fn send_header(&self, generation: u64, bytes: Vec<u8>) {
        match &self.target {
            NetTarget::Icecast(ice) => ice.send(generation, bytes),
            NetTarget::Http(http) => http.send_header(bytes),
        }
    }

    fn send(&self, generation: u64, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        match &self.target {
            NetTarget::Icecast(ice) => ice.send(generation, bytes),
            NetTarget::Http(http) => http.send(bytes),
        }
    }

    fn set_admin_title(&self, title: &str) {
        if let NetTarget::Icecast(ice) = &self.target {
            ice.set_title(title);
        }
    }
}

/// The running stream: its encoder and the destination generation it was started for.
struct Live {
    generation: u64,
    encoder: StreamEncoder,
}

pub(super) struct NetWorker {
    pub name: String,
    consumer: rtrb::Consumer<i32>,
    in_channels: usize,
    map: Vec<usize>,
    mono: bool,
    pub frame: usize,
    input_block: Vec<i32>,
    out_block: Vec<i32>,
    encoder_config: EncoderConfig,
    live: Option<Live>,
    pending: Vec<u8>,
    sink: Arc<NetSink>,
    title_file: Option<PathBuf>,
    title_seen: Option<SystemTime>,
    title_polled: Instant,
    shared: Arc<Mutex<OutputSnapshot>>,
    snapshot: OutputSnapshot,
}

impl NetWorker {
    pub fn new(
        output: &OutputConfig,
        stream: &ResolvedStream,
        consumer: rtrb::Consumer<i32>,
        sink: Arc<NetSink>,
        shared: Arc<Mutex<OutputSnapshot>>,
    ) -> anyhow::Result<Self> {
        let plan = output
            .net_plan(stream)
            .map_err(|(_, field, msg)| anyhow::anyhow!("{field}: {msg}"))?;
        let snapshot = lock(&shared).clone();
        let frame = (BLOCK.as_secs_f64() * f64::from(stream.sample_rate)) as usize;
        let map = output.channel_map(stream.channels);
        let encoder_config = EncoderConfig {
            codec: plan.codec,
            bitrate: plan.bitrate,
            input_rate: stream.sample_rate,
            output_rate: plan.sample_rate,
            channels: plan.channels,
            input_bits: if stream.format == estuary_wire::payload::SampleFormat::L16 {
                16
            } else {
                24
            },
            title: output.title.clone(),
        };
        // Check the chain can be built now, so a bad combination fails the route's start.
        StreamEncoder::new(encoder_config.clone(), &mut Vec::new())
            .map_err(|e| anyhow::anyhow!("encoder: {e}"))?;
        if let Some(title) = &output.title
            && !plan.codec.is_ogg()
        {
            sink.set_admin_title(title);
        }
        Ok(Self {
            name: output.name.get_ref().clone(),
            consumer,
            in_channels: usize::from(stream.channels),
            mono: plan.mono,
            frame,
            input_block: vec![0; frame * usize::from(stream.channels)],
            out_block: vec![0; frame * usize::from(plan.channels)],
            map,
            encoder_config,
            live: None,
            pending: Vec::with_capacity(16 * 1024),
            sink,
            title_file: output.title_file.as_ref().map(|p| p.get_ref().clone()),
            title_seen: None,
            title_polled: Instant::now() - TITLE_POLL,
            shared,
            snapshot,
        })
    }

    pub fn run(mut self, halt: &Stop) {
        while !halt.requested() {
            self.poll_title();
            let mut worked = false;
            while self.encode_one() {
                worked = true;
            }
            if worked && let Ok(mut shared) = self.shared.try_lock() {
                *shared = self.snapshot.clone();
            }
            thread::park_timeout(Duration::from_millis(50));
        }
        // Ogg: the end-of-stream page, so a listener or Icecast sees a clean end.
        if let Some(live) = self.live.take() {
            let mut out = Vec::new();
            if live.encoder.finish(&mut out).is_ok() {
                self.sink.send(live.generation, out);
            }
        }
        *lock(&self.shared) = self.snapshot.clone();
    }

    /// Encodes one block if the ring holds one; returns whether it did.
    fn encode_one(&mut self) -> bool {
        let need = self.frame * self.in_channels;
        let Ok(chunk) = self.consumer.read_chunk(need) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        self.input_block[..a.len()].copy_from_slice(a);
        self.input_block[a.len()..].copy_from_slice(b);
        chunk.commit_all();
        let generation = self.sink.generation();
        if generation == 0 {
            // Nobody to send to (Icecast down): the audio is not encoded, the next
            // connection starts a fresh stream.
            self.live = None;
            self.snapshot.frames_dropped += self.frame as u64;
            return true;
        }
        self.mix();
        if self
            .live
            .as_ref()
            .is_none_or(|l| l.generation != generation)
            && !self.start_stream(generation)
        {
            return true;
        }
        let Some(live) = &mut self.live else {
            return true;
        };
        match live.encoder.push(&self.out_block, &mut self.pending) {
            Ok(()) => {
                self.snapshot.frames_encoded += self.frame as u64;
                self.snapshot.access_units += 1;
            }
            Err(_) => {
                self.snapshot.encode_errors += 1;
                self.live = None;
                return true;
            }
        }
        if self.pending.len() >= CHUNK_BYTES {
            let bytes = std::mem::replace(&mut self.pending, Vec::with_capacity(16 * 1024));
            self.sink.send(generation, bytes);
        }
        true
    }

    /// Channel selection, or their average for a mono downmix.
    fn mix(&mut self) {
        for (frame_in, frame_out) in self.input_block.chunks_exact(self.in_channels).zip(
            self.out_block
                .chunks_exact_mut(if self.mono { 1 } else { self.map.len() }),
        ) {
            if self.mono {
                let sum: i64 = self.map.iter().map(|&ch| i64::from(frame_in[ch])).sum();
                frame_out[0] = (sum / self.map.len().max(1) as i64) as i32;
            } else {
                for (slot, &ch) in frame_out.iter_mut().zip(&self.map) {
                    *slot = frame_in[ch];
                }
            }
        }
    }

    /// Starts a new stream (header first) for `generation`; false when it cannot be built.
    fn start_stream(&mut self, generation: u64) -> bool {
        self.pending.clear();
        let mut header = Vec::new();
        match StreamEncoder::new(self.encoder_config.clone(), &mut header) {
            Ok(encoder) => {
                self.sink.send_header(generation, header);
                self.live = Some(Live {
                    generation,
                    encoder,
                });
                self.snapshot.streams_started += 1;
                true
            }
            Err(_) => {
                self.snapshot.encode_errors += 1;
                false
            }
        }
    }

    /// Takes a title from the API or the watched file, when it changed.
    fn poll_title(&mut self) {
        let mut title = lock(&self.sink.title).take();
        if title.is_none()
            && let Some(path) = &self.title_file
            && self.title_polled.elapsed() >= TITLE_POLL
        {
            self.title_polled = Instant::now();
            let modified = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if modified.is_some() && modified != self.title_seen {
                self.title_seen = modified;
                title = std::fs::read_to_string(path)
                    .ok()
                    .and_then(|t| t.lines().next().map(|l| l.trim().to_owned()));
            }
        }
        let Some(title) = title else {
            return;
        };
        if self.encoder_config.title.as_deref() == Some(title.as_str()) {
            return;
        }
        self.encoder_config.title = Some(title.clone());
        self.snapshot.title = Some(title.clone());
        self.snapshot.title_updates += 1;
        if !self.encoder_config.codec.is_ogg() {
            self.sink.set_admin_title(&title);
            return;
        }
        // Ogg: end this logical stream and chain one with the new comment header.
        if let Some(live) = self.live.take() {
            let generation = live.generation;
            let _ = live.encoder.finish(&mut self.pending);
            let bytes = std::mem::take(&mut self.pending);
            self.sink.send(generation, bytes);
            self.start_stream(generation);
        }
    }
}

/// The status view of an Icecast or HTTP output.
pub(super) fn status(
    route: &super::Route,
    c: &OutputConfig,
    snap: &OutputSnapshot,
    sink: &NetSink,
) -> OutputStatus {
    let receiving = matches!(route.state, super::RouteState::Receiving { .. });
    let mut counters = OutputCounters {
        frames_encoded: snap.frames_encoded,
        access_units: snap.access_units,
        encode_errors: snap.encode_errors,
        frames_dropped: snap.frames_dropped,
        streams_started: snap.streams_started,
        title_updates: snap.title_updates,
        ..OutputCounters::default()
    };
    let (kind, mode, address, state, peer, last_error) = match &sink.target {
        NetTarget::Icecast(ice) => {
            let s = ice.status();
            counters.reconnects = s.reconnects;
            counters.bytes_sent = s.bytes_sent;
            counters.queue_chunks = s.queued as u64;
            counters.chunks_dropped = s.chunks_dropped;
            counters.bytes_dropped = s.bytes_dropped;
            counters.bitrate_bps = s.bitrate;
            counters.metadata_errors = s.metadata_errors;
            counters.send_rate_mbps = s.bitrate as f64 / 1e6;
            counters.errors = s.errors;
            counters.last_error_unix_seconds = unix_seconds(s.last_error_at);
            let url = c
                .url
                .as_ref()
                .map_or(String::new(), |u| u.get_ref().clone());
            let peer = s.connected.then(|| url.clone());
            let kind = if c.kind == OutputKind::Rtmp {
                "rtmp"
            } else {
                "icecast"
            };
            (kind, "source", url, s.state, peer, s.last_error)
        }
        NetTarget::Http(http) => {
            let s = http.status();
            counters.bytes_sent = s.bytes_sent;
            counters.chunks_dropped = s.chunks_dropped;
            counters.listeners = s.listeners as u64;
            counters.bitrate_bps = s.bitrate;
            // Every listener gets the whole stream.
            counters.send_rate_mbps = s.bitrate as f64 * s.listeners as f64 / 1e6;
            counters.listeners_refused = s.refused;
            counters.listeners_too_slow = s.slow_disconnects;
            counters.errors = s.errors;
            counters.last_error_unix_seconds = unix_seconds(s.last_error_at);
            let path = c.path.as_ref().map_or("/", |p| p.get_ref());
            let state = if !receiving {
                "stopped"
            } else if s.listeners > 0 {
                "serving"
            } else {
                "listening"
            };
            (
                "http",
                "listen",
                format!("http://{}{path}", http.local_addr()),
                state,
                None,
                s.last_error,
            )
        }
    };
    let mut conditions = Vec::new();
    if receiving && !matches!(state, "connected" | "serving" | "listening") {
        conditions.push(state.to_owned());
    }
    if counters.chunks_dropped > 0 {
        conditions.push("dropped".to_owned());
    }
    let level = match (receiving, conditions.is_empty(), state) {
        (false, _, _) => "idle",
        (true, true, "listening") => "idle",
        (true, true, _) => "ok",
        (true, false, _) => "warning",
    };
    OutputStatus {
        name: c.name.get_ref().clone(),
        input: c.input.get_ref().clone(),
        kind: kind.into(),
        mode: mode.into(),
        address,
        codec: match c.kind {
            OutputKind::Rtmp => "aac",
            _ => c.codec.map_or("mp3", CodecConfig::name),
        }
        .into(),
        state: state.into(),
        peer,
        last_error,
        counters,
        health: Health {
            level: level.into(),
            conditions,
            drift_ppm: None,
        },
        sdp: None,
        title: snap.title.clone().or_else(|| c.title.clone()),
    }
}

fn unix_seconds(at: Option<SystemTime>) -> f64 {
    at.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64())
}

impl super::Running {
    /// Sets the title of the Icecast or HTTP output `name` (the API's title update); the
    /// output's worker takes it within its next wake-up (≤ 50 ms).
    pub fn set_title(&self, name: &str, title: &str) -> Result<(), TitleError> {
        let output = self
            .routes
            .iter()
            .flat_map(|r| &r.outputs)
            .find(|o| o.config.name.get_ref() == name)
            .ok_or(TitleError::NoSuchOutput)?;
        match &output.sink {
            super::Sink::Net(_) if output.config.kind == OutputKind::Rtmp => {
                Err(TitleError::NoTitles("rtmp"))
            }
            super::Sink::Net(sink) => {
                *lock(&sink.title) = Some(title.to_owned());
                Ok(())
            }
            super::Sink::Srt(_) => Err(TitleError::NoTitles("srt")),
            super::Sink::Aes67(_) => Err(TitleError::NoTitles("aes67")),
        }
    }

    /// Whether `name` is an Icecast or HTTP output.
    pub(super) fn is_net_output(&self, name: &str) -> bool {
        self.routes
            .iter()
            .flat_map(|r| &r.outputs)
            .any(|o| o.config.name.get_ref() == name && matches!(o.sink, super::Sink::Net(_)))
    }

    /// One periodic log line per Icecast or HTTP output.
    pub(super) fn net_report_lines(&self) -> Vec<String> {
        self.routes
            .iter()
            .flat_map(|route| route.outputs.iter().map(move |o| (route, o)))
            .filter_map(|(route, o)| {
                let super::Sink::Net(sink) = &o.sink else {
                    return None;
                };
                let snap = lock(&o.snapshot).clone();
                let s = status(route, &o.config, &snap, sink);
                let c = &s.counters;
                Some(format!(
                    "output {}: {} {}, {} frames encoded, {} bytes sent, {} reconnects, {} listeners, {} chunks dropped{}",
                    s.name,
                    s.kind,
                    s.state,
                    c.frames_encoded,
                    c.bytes_sent,
                    c.reconnects,
                    c.listeners,
                    c.chunks_dropped,
                    s.last_error.map(|e| format!(", last error: {e}")).unwrap_or_default()
                ))
            })
            .collect()
    }
}
