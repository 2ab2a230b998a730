//! The running gateway: sockets → jitter buffers → encoders → MPEG-TS → SRT.
//!
//! Threads (see docs/architecture.md):
//! - one *ingest* thread serves every input socket ([`ingest`]): it drains them with
//!   `recvmmsg`, writes the samples into each input's jitter buffer at their timestamp
//!   position, then pulls what is due and pushes it into one wait-free ring per output. It
//!   never allocates, locks or blocks on the audio path;
//! - one thread per *output* ([`output`]) encodes and muxes, and hands messages to its SRT
//!   sender, whose own thread connects, listens and reconnects;
//! - the calling thread supervises: it follows discovered streams (restarting a route when its
//!   SDP changes), reports, and waits for the stop flag.
//!
//! A *route* is one input with the outputs it feeds. Routes start, stop and restart on their
//! own; the SRT senders live as long as the daemon, so a listener keeps its caller connected
//! while the route behind it restarts.

mod aes67;
mod aes67_tx;
mod apply;
mod clock_rule;
mod dante_in;
mod failover;
mod generator;
mod ingest;
pub(crate) mod meter;
mod netout;
mod output;
mod recorder_feed;
mod redundant;
mod report;
mod srt_in;
mod view;

use estuary_engine::monitor::MonitorConfig;
use estuary_engine::monitor::health::HealthConfig;
use estuary_engine::time::MonoTime;
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tracing::{info, warn};

use estuary_engine::catalog::StreamSelector;
use estuary_engine::jitter::{JitterBuffer, JitterConfig};
use estuary_engine::stats::StreamStats;
use estuary_io::srt::{SrtConfig, SrtMode, SrtSender, SrtStatus};
use estuary_io::{mcast, sched};

use crate::config::{
    Config, InputConfig, InputKind, InputPlan, OutputConfig, OutputKind, ResolvedStream,
    SrtModeConfig,
};
use crate::discovery::Discovery;
use crate::gateway::Signal;
use crate::latency::LatencyHistogram;
use crate::shutdown::Stop;
pub use apply::ApplyReport;
pub use clock_rule::ClockRules;
pub use failover::MAX_BACKUPS;
use ingest::{Command, InputRuntime, OutputFeed};
use meter::MeterShared;
use output::OutputWorker;
pub use report::Reporter;

/// Audio each output ring holds; a stalled encoder loses audio (counted) after this long.
/// How far beyond its prefill a transmitter's ring (AES67, Dante) may grow before the oldest
/// frames are dropped: a generator's two ticks of swing (it delivers a tick at a time, one
/// tick ahead) plus a tick of scheduling stall on a busy host (5 ms dropped audio under CI
/// load), so only a source that really runs fast loses audio there.
pub(crate) const TRANSMIT_SLACK: Duration = generator::TICK.saturating_mul(3);
const OUTPUT_RING: Duration = Duration::from_millis(500);
/// How long a route waits for the ingest thread to release its socket.
const DETACH_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// How long after their playout time frames were pulled (the wake period's share).
    pub pull_lag: LatencyHistogram,
    /// Arrival and media position of the latest packet stored.
    pub last_packet: Option<(MonoTime, u64)>,
    /// Generator inputs: when frame 0 was due (frame `n` is due `n / rate` later).
    pub generator_start: Option<MonoTime>,
    /// ST 2022-7 inputs: per-path counters and skew.
    pub redundancy: Option<RedundancySnapshot>,
    /// Failover inputs: the source on air.
    pub failover: Option<failover::FailoverSnapshot>,
}

/// What an ST 2022-7 input publishes about its two paths.
#[derive(Debug, Clone, Copy)]
pub struct RedundancySnapshot {
    pub paths: [estuary_engine::redundancy::PathCounters; 2],
    pub skew: estuary_engine::redundancy::Skew,
    pub max_skew: Duration,
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
    /// AES67: packet slots with no audio in the ring (the ingest thread stalled).
    pub underrun_packets: u64,
    /// AES67: frames dropped because the ring ran ahead (the input's clock is faster).
    pub frames_dropped: u64,
    /// AES67: sends the kernel refused.
    pub send_errors: u64,
    /// AES67: RTP timelines restarted because the PTP clock locked, unlocked or changed
    /// grandmaster.
    pub clock_rebases: u64,
    /// Icecast/HTTP: streams started (container header sent): connections, title chains.
    pub streams_started: u64,
    /// Icecast/HTTP: the title on air, when one was set.
    pub title: Option<String>,
    pub title_updates: u64,
}

/// Where a route stands.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteState {
    /// Following a discovered stream that has not been announced yet.
    Waiting { selector: StreamSelector },
    Receiving {
        stream: ResolvedStream,
        /// The announced SDP it was started from, when it follows one.
        sdp: Option<String>,
        since: Instant,
    },
    /// The stream cannot be received as described; the reason is shown until it changes.
    Failed { reason: String },
}

/// How a [`Running`] is started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Where meters' and health detectors' condition changes go.
    pub signals: Option<Sender<Signal>>,
    /// Run stream discovery even when no input follows a discovered stream (the daemon does,
    /// so its API can list the streams on the network).
    pub always_discover: bool,
    /// Measure every input (meters, loudness, detectors, health).
    pub meters: bool,
}

/// An output worker's body, run on its own thread until the halt.
type WorkerRun = Box<dyn FnOnce(&Stop) + Send>;

/// One recorder of a route; its status outlives route restarts.
struct RecorderSlot {
    config: crate::record::RecorderConfig,
    status: Arc<Mutex<crate::status::RecorderStatus>>,
}

/// One output of a route; its SRT sender (or AES67 identity) outlives route restarts.
struct OutputSlot {
    config: OutputConfig,
    sink: Sink,
    snapshot: Arc<Mutex<OutputSnapshot>>,
}

/// Where an output's audio goes.
enum Sink {
    Srt(Arc<SrtSender>),
    Aes67(Arc<aes67::Aes67Sender>),
    /// Icecast source or HTTP listen-in.
    Net(Arc<netout::NetSink>),
}

impl Sink {
    fn srt(&self) -> Option<&Arc<SrtSender>> {
        match self {
            Sink::Srt(srt) => Some(srt),
            Sink::Aes67(_) | Sink::Net(_) => None,
        }
    }
}

/// Counters carried over from an input's earlier streams.
#[derive(Debug, Clone, Copy, Default)]
struct Carried {
    stats: StreamStats,
    ring_overruns: u64,
}

impl Carried {
    fn add(&mut self, snapshot: &InputSnapshot) {
        self.stats.add_counters(&snapshot.stats);
        self.ring_overruns += snapshot.ring_overruns;
    }
}

/// Asks for real-time scheduling for the calling audio thread; says once if it is refused.
fn realtime(priority: i32) {
    static REFUSED: std::sync::Once = std::sync::Once::new();
    if let Err(e) = sched::promote_current_thread(priority) {
        REFUSED.call_once(|| {
            info!(error = %e, "audio threads run without real-time priority (grant CAP_SYS_NICE for it)");
        });
    }
}

/// Detector settings of one input.
type Detectors = (MonitorConfig, HealthConfig);

/// One input and the outputs it feeds.
struct Route {
    config: InputConfig,
    /// The configured SDP (inline or its file, read once when the route is made), for the
    /// status's `ts-refclk` check.
    configured_sdp: Option<String>,
    selector: Option<StreamSelector>,
    state: RouteState,
    snapshot: Arc<Mutex<InputSnapshot>>,
    outputs: Vec<OutputSlot>,
    recorders: Vec<RecorderSlot>,
    /// Metering settings, `None` when the input is not measured.
    detectors: Option<Detectors>,
    /// Hands new detector settings to the running meter thread.
    retune: Option<Sender<Detectors>>,
    signals: Option<Sender<Signal>>,
    meter: Arc<Mutex<MeterShared>>,
    /// Counters of the streams this input had before the current one (route restarts), so
    /// the totals it shows never go back.
    carried: Carried,
    /// Stops this route's output and meter threads (not the daemon's).
    halt: Stop,
    workers: Vec<JoinHandle<()>>,
    /// AES67 outputs and generators handed to the transmit thread, meters to the meter thread.
    adopted: Vec<Registration>,
    attached: bool,
    /// This input feeds the Dante device's TX channels (`dante.tx_input`).
    dante_tx: bool,
    /// Attached to the Dante device (as its RX input or its TX source).
    dante_attached: bool,
    /// SRT inputs: the connection and the decoder's counters, for the status.
    srt: Option<Arc<srt_in::SrtInputShared>>,
    /// Failover's clock rule: the main stream's clock, judged by the supervisor.
    clock_gate: Arc<clock_rule::ClockGate>,
}

/// The started threads of a configuration.
pub struct Running {
    routes: Vec<Route>,
    commands: Sender<Command>,
    ingest_halt: Stop,
    ingest: Option<JoinHandle<()>>,
    discovery: Option<Discovery>,
    /// The catalog generation the routes were last reconciled against.
    seen_generation: u64,
    options: Options,
    /// What is running, for [`Running::apply`] to compare against and fall back to.
    config: Config,
    /// Output connection states last seen, for disconnect signals.
    output_watch: Vec<(String, bool, bool)>,
}

impl Running {
    /// Opens every socket and starts every thread; fails without leaving anything running
    /// (dropping what was started stops it). Inputs that follow a discovered stream start
    /// when it is announced.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        Self::start_with(config, Options::default())
    }

    /// [`Running::start`] with options.
    pub fn start_with(config: &Config, options: Options) -> anyhow::Result<Self> {
        let (commands, command_rx) = mpsc::channel();
        let ingest_halt = Stop::default();
        let ingest = {
            let halt = ingest_halt.clone();
            thread::Builder::new()
                .name("ingest".into())
                .spawn(move || {
                    realtime(sched::INGEST_PRIORITY);
                    ingest::run(&command_rx, &halt);
                })?
        };
        let mut running = Self {
            routes: Vec::new(),
            commands,
            ingest_halt,
            ingest: Some(ingest),
            discovery: None,
            seen_generation: 0,
            options,
            config: config.clone(),
            output_watch: Vec::new(),
        };
        if running.wants_discovery(config) {
            running.discovery = Some(Discovery::start(&config.discovery)?);
        }
        for input in &config.inputs {
            let route = running.start_route(input, config, Vec::new())?;
            running.routes.push(route);
        }
        running.reconcile();
        Ok(running)
    }

    fn wants_discovery(&self, config: &Config) -> bool {
        let follows = config
            .inputs
            .iter()
            .any(|i| matches!(i.plan(), Ok(InputPlan::Follow(_))));
        let enabled = config.discovery.sap || config.discovery.ravenna;
        follows || (self.options.always_discover && enabled)
    }

    /// Builds the route of `input`, reusing the SRT senders in `reuse` whose configuration is
    /// unchanged (their callers stay connected).
    fn start_route(
        &self,
        input: &InputConfig,
        config: &Config,
        mut reuse: Vec<OutputSlot>,
    ) -> anyhow::Result<Route> {
        let name = input.name.get_ref().clone();
        let plan = input
            .plan()
            .map_err(|(_, field, msg)| anyhow::anyhow!("input {name}: {field}: {msg}"))?;
        let mut outputs = Vec::new();
        for output in config.outputs.iter().filter(|o| o.input.get_ref() == &name) {
            if let Some(i) = reuse.iter().position(|slot| &slot.config == output) {
                outputs.push(reuse.swap_remove(i));
                continue;
            }
            let sink = match output.kind {
                OutputKind::Srt => {
                    let srt = SrtSender::start(srt_config(output))
                        .with_context(|| format!("output {}", output.name.get_ref()))?;
                    Sink::Srt(Arc::new(srt))
                }
                OutputKind::Aes67 => Sink::Aes67(Arc::new(aes67::Aes67Sender::new(output))),
                OutputKind::Icecast | OutputKind::Http | OutputKind::Rtmp => Sink::Net(Arc::new(
                    netout::NetSink::start(output)
                        .with_context(|| format!("output {}", output.name.get_ref()))?,
                )),
            };
            info!(output = %output.name.get_ref(), kind = ?output.kind, mode = ?output.mode, address = %output.address, codec = ?output.codec, "starting");
            outputs.push(OutputSlot {
                config: output.clone(),
                sink,
                snapshot: Arc::default(),
            });
        }
        drop(reuse);
        let recorders = config
            .recorders
            .iter()
            .filter(|r| r.input.get_ref() == &name)
            .map(|r| {
                let (i, _) = config
                    .recorders
                    .iter()
                    .enumerate()
                    .find(|(_, c)| c.name == r.name)
                    .unwrap_or((0, r));
                crate::record::config::check_directory(r.directory.get_ref())
                    .map_err(|m| anyhow::anyhow!("recorders[{i}].directory: {m}"))?;
                Ok(RecorderSlot {
                    config: r.clone(),
                    status: Arc::default(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let mut route = Route {
            config: input.clone(),
            configured_sdp: crate::clock::configured_sdp(input),
            selector: None,
            state: RouteState::Failed {
                reason: "not started".into(),
            },
            snapshot: Arc::default(),
            clock_gate: Arc::default(),
            outputs,
            recorders,
            detectors: (self.options.meters && input.meters).then(|| detectors(config, &name)),
            signals: self.options.signals.clone(),
            meter: Arc::default(),
            carried: Carried::default(),
            retune: None,
            halt: Stop::default(),
            workers: Vec::new(),
            adopted: Vec::new(),
            attached: false,
            dante_tx: config
                .dante
                .as_ref()
                .and_then(|d| d.tx_input.as_ref())
                .is_some_and(|t| t.get_ref() == &name),
            dante_attached: false,
            srt: None,
        };
        match plan {
            InputPlan::Fixed(stream) => route.activate(stream, None, &self.commands)?,
            InputPlan::Follow(selector) => {
                info!(input = %name, stream = %selector, "waiting for the stream to be announced");
                route.state = RouteState::Waiting {
                    selector: selector.clone(),
                };
                route.selector = Some(selector);
            }
        }
        Ok(route)
    }

    /// Starts, restarts or keeps each route that follows a discovered stream, when the
    /// catalog changed since the last call.
    pub fn reconcile(&mut self) {
        let Some(discovery) = &self.discovery else {
            return;
        };
        let generation = discovery.generation();
        if generation == self.seen_generation {
            return;
        }
        self.seen_generation = generation;
        // Copy what each route needs and let go of the catalog at once: restarting a route
        // opens sockets and joins threads, and the SAP thread must not wait for that.
        let announced: Vec<Option<Announced>> = {
            let catalog = discovery.catalog();
            self.routes
                .iter()
                .map(|route| {
                    let entry = catalog.find(route.selector.as_ref()?)?;
                    Some(Announced {
                        sdp: entry.sdp.clone(),
                        version: entry.version(),
                        announcer: entry.announcer.clone(),
                    })
                })
                .collect()
        };
        for (route, announced) in self.routes.iter_mut().zip(announced) {
            if let (Some(selector), Some(announced)) = (route.selector.clone(), announced) {
                route.follow(&selector, announced, &self.commands);
            }
        }
    }

    /// Stops every thread, outputs last.
    pub fn shutdown(mut self) {
        info!("stopping");
        self.stop_all();
    }

    fn stop_all(&mut self) {
        // The ingest first: once it has stopped, no block arrives after a worker's last drain.
        self.ingest_halt.request();
        if let Some(ingest) = self.ingest.take() {
            let _ = ingest.join();
        }
        for route in &mut self.routes {
            route.halt.request();
        }
        for route in &mut self.routes {
            for worker in route.workers.drain(..) {
                // Recorders sleep up to a `record::WAKE` between drains.
                worker.thread().unpark();
                let _ = worker.join();
            }
            for adopted in route.adopted.drain(..) {
                adopted.wait();
            }
        }
        // The output threads held the other references: dropping the routes stops each SRT
        // sender.
        self.routes.clear();
        self.discovery = None;
    }

    pub fn input_stats(&self) -> Vec<(String, InputSnapshot)> {
        self.routes
            .iter()
            .map(|r| (r.config.name.get_ref().clone(), *lock(&r.snapshot)))
            .collect()
    }

    /// Each input's state, for status displays.
    pub fn route_states(&self) -> Vec<(String, RouteState)> {
        self.routes
            .iter()
            .map(|r| (r.config.name.get_ref().clone(), r.state.clone()))
            .collect()
    }

    /// Each output's counters, with its SRT sender's status (none for AES67 outputs).
    pub fn output_status(&self) -> Vec<(String, OutputSnapshot, Option<SrtStatus>)> {
        self.routes
            .iter()
            .flat_map(|r| &r.outputs)
            .map(|o| {
                (
                    o.config.name.get_ref().clone(),
                    lock(&o.snapshot).clone(),
                    o.sink.srt().map(|s| s.status()),
                )
            })
            .collect()
    }

    /// Each recorder's status.
    pub fn recorder_status(&self) -> Vec<crate::status::RecorderStatus> {
        self.routes
            .iter()
            .flat_map(|r| &r.recorders)
            .map(|slot| {
                let mut status = lock(&slot.status).clone();
                if status.name.is_empty() {
                    status.name = slot.config.name.get_ref().clone();
                    status.input = slot.config.input.get_ref().clone();
                    status.state = "waiting".into();
                }
                status
            })
            .collect()
    }

    /// The discovery service, when it runs.
    pub fn discovery(&self) -> Option<&Discovery> {
        self.discovery.as_ref()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Starts a thread shared by every route (the AES67 transmitter, the meters): it outlives
/// them all and naps when idle, like the ingest thread. Returns the thread to unpark (the
/// caller's own if it could not start: unparking that is harmless).
fn spawn_shared(name: &str, run: fn()) -> thread::Thread {
    match thread::Builder::new().name(name.to_owned()).spawn(run) {
        Ok(handle) => handle.thread().clone(),
        Err(e) => {
            tracing::error!(thread = name, error = %e, "cannot start thread");
            thread::current()
        }
    }
}

/// A worker handed to a thread shared by every route (the AES67 transmitter, the meters):
/// answers once that thread has let go of it, after the route's halt was requested.
pub(super) struct Registration {
    released: mpsc::Receiver<()>,
    thread: thread::Thread,
}

impl Registration {
    /// How long a route waits for the shared thread to let go.
    const TIMEOUT: Duration = Duration::from_secs(2);

    /// The sender the shared thread answers on, and the registration waiting for it.
    fn new(thread: thread::Thread) -> (Sender<()>, Self) {
        let (released, answer) = mpsc::channel();
        (
            released,
            Registration {
                released: answer,
                thread,
            },
        )
    }

    /// Waits until the worker has been let go (wakes the thread so that it looks now).
    pub fn wait(self) {
        self.thread.unpark();
        let _ = self.released.recv_timeout(Self::TIMEOUT);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The detector settings of input `name`.
fn detectors(config: &Config, name: &str) -> Detectors {
    // Only the detectors an alarm rule asks for run, with the rule's thresholds.
    crate::alarm::detectors(&config.alarms, name)
}

/// What a route takes from the catalog entry it follows.
struct Announced {
    sdp: String,
    version: u64,
    announcer: String,
}

impl Route {
    /// Starts or restarts on an announced SDP, unless it is the one already running.
    fn follow(
        &mut self,
        selector: &StreamSelector,
        announced: Announced,
        commands: &Sender<Command>,
    ) {
        let current = match &self.state {
            RouteState::Receiving { sdp, .. } => sdp.as_deref(),
            _ => None,
        };
        if current == Some(announced.sdp.as_str()) {
            return;
        }
        let restarting = current.is_some();
        let name = self.config.name.get_ref().clone();
        let stream = match self.config.resolve_discovered(&announced.sdp) {
            Ok(stream) => stream,
            Err(reason) => {
                warn!(input = %name, stream = %selector, %reason, "announced stream cannot be used");
                self.deactivate(commands);
                self.state = RouteState::Failed { reason };
                return;
            }
        };
        if restarting {
            info!(input = %name, stream = %selector, version = announced.version, "announcement changed; restarting the route");
        } else {
            info!(input = %name, stream = %selector, announcer = %announced.announcer, "stream discovered");
        }
        if let Err(e) = self.activate(stream, Some(announced.sdp), commands) {
            let reason = format!("{e:#}");
            warn!(input = %name, %reason, "cannot receive the announced stream");
            self.state = RouteState::Failed { reason };
        }
    }

    /// (Re)starts receiving `stream`: opens the socket, starts the output and meter threads
    /// and hands the input to the ingest thread. On error nothing of the new stream is left
    /// running.
    fn activate(
        &mut self,
        stream: ResolvedStream,
        sdp: Option<String>,
        commands: &Sender<Command>,
    ) -> anyhow::Result<()> {
        self.deactivate(commands);
        let name = self.config.name.get_ref().clone();
        for slot in &self.outputs {
            slot.config.check(&stream).map_err(|(_, field, msg)| {
                anyhow::anyhow!("output {}: {field}: {msg}", slot.config.name.get_ref())
            })?;
        }
        // Opening resets the published counters; keep what they had counted.
        let previous = *lock(&self.snapshot);
        self.carried.add(&previous);
        let signal = self
            .config
            .signal()
            .map_err(|(_, field, msg)| anyhow::anyhow!("input {name}: {field}: {msg}"))?;
        let srt_input = self.config.kind == crate::config::InputKind::Srt;
        let input = match signal {
            None if !srt_input && self.config.kind != InputKind::Dante => Some(open_input(
                &self.config,
                &stream,
                sdp.as_deref(),
                Arc::clone(&self.snapshot),
                Arc::clone(&self.clock_gate),
            )?),
            _ => {
                *lock(&self.snapshot) = InputSnapshot::default();
                None
            }
        };
        let mut rings = Vec::new();
        self.halt = Stop::default();
        let ring_frames = (OUTPUT_RING.as_secs_f64() * f64::from(stream.sample_rate)) as usize;
        let ring_samples = ring_frames * usize::from(stream.channels);
        for slot in &self.outputs {
            let (samples, consumer) = rtrb::RingBuffer::new(ring_samples);
            let (marks, mark_consumer) = rtrb::RingBuffer::new(1024);
            let name = slot.config.name.get_ref();
            // Each kind of output is one real-time thread fed by its ring.
            if let Sink::Aes67(sender) = &slot.sink {
                // Every AES67 output is served by the one transmit thread.
                let worker = aes67::Aes67Worker::new(
                    &slot.config,
                    &stream,
                    consumer,
                    sender,
                    (Arc::clone(&slot.snapshot), self.halt.clone()),
                )
                .with_context(|| format!("output {name}"))?;
                let frame = worker.frame as u64;
                let (registration, thread) = aes67_tx::register(worker);
                self.adopted.push(registration);
                rings.push(OutputFeed {
                    samples,
                    marks,
                    frames_pushed: 0,
                    frame,
                    thread,
                    events: None,
                    meter: None,
                    gap_lost: false,
                });
                continue;
            }
            let (thread, frame, run): (String, u64, WorkerRun) = match &slot.sink {
                Sink::Aes67(_) => continue,
                Sink::Net(sink) => {
                    let worker = netout::NetWorker::new(
                        &slot.config,
                        &stream,
                        consumer,
                        Arc::clone(sink),
                        Arc::clone(&slot.snapshot),
                    )
                    .with_context(|| format!("output {name}"))?;
                    let frame = worker.frame as u64;
                    (
                        format!("net-{}", worker.name),
                        frame,
                        Box::new(move |halt| worker.run(halt)),
                    )
                }
                Sink::Srt(srt) => {
                    let worker = OutputWorker::new(
                        &slot.config,
                        &stream,
                        (consumer, mark_consumer),
                        Arc::clone(srt),
                        Arc::clone(&slot.snapshot),
                    )
                    .with_context(|| format!("output {name}"))?;
                    let frame = worker.frame as u64;
                    (
                        format!("out-{}", worker.name),
                        frame,
                        Box::new(move |halt| worker.run(halt)),
                    )
                }
            };
            let halt = self.halt.clone();
            let feed = Self::spawn_fed(
                &mut self.workers,
                thread,
                (samples, marks),
                frame,
                move || {
                    realtime(sched::OUTPUT_PRIORITY);
                    run(&halt);
                },
            )?;
            rings.push(feed);
        }
        for slot in &self.recorders {
            let frames =
                (crate::record::SAMPLE_RING.as_secs_f64() * f64::from(stream.sample_rate)) as usize;
            let (samples, consumer) = rtrb::RingBuffer::new(frames * usize::from(stream.channels));
            let (events, event_consumer) = rtrb::RingBuffer::new(crate::record::EVENT_RING);
            let (marks, _) = rtrb::RingBuffer::new(1);
            let worker = crate::record::RecorderWorker::new(
                &slot.config,
                (stream.channels, stream.sample_rate),
                (consumer, event_consumer),
                Arc::clone(&slot.status),
                self.signals.clone(),
            )?;
            let halt = self.halt.clone();
            let thread = format!("rec-{}", worker.name());
            // Never woken by the ingest (each unpark cost it an interrupt to the other CPU):
            // it wakes on its own every [`record::WAKE`], and hears of its audio every 20 ms
            // (`recorder_feed::SPAN`).
            let mut feed = Self::spawn_fed(
                &mut self.workers,
                thread,
                (samples, marks),
                u64::MAX,
                move || worker.run(&halt),
            )?;
            feed.events = Some(recorder_feed::RecorderEvents::new(events));
            rings.push(feed);
        }
        *lock(&self.meter) = MeterShared::default();
        if let Some(detectors) = self.detectors {
            let (retune, retune_rx) = mpsc::channel();
            self.retune = Some(retune);
            let (inline, worker) = meter::start(
                &name,
                (stream.channels, stream.sample_rate),
                detectors,
                Arc::clone(&self.snapshot),
                Arc::clone(&self.meter),
                (self.signals.clone(), retune_rx),
            )
            .with_context(|| format!("input {name}: meters"))?;
            let registration = meter::register(worker, self.halt.clone());
            let thread = registration.thread.clone();
            self.adopted.push(registration);
            // The feeding thread meters each block itself (see `meter.rs`): this feed has
            // no ring and never wakes the meter thread, which runs on its own period.
            let mut feed = OutputFeed {
                samples: rtrb::RingBuffer::new(1).0,
                marks: rtrb::RingBuffer::new(1).0,
                frames_pushed: 0,
                frame: u64::MAX,
                thread,
                events: None,
                meter: None,
                gap_lost: false,
            };
            feed.meter = Some(Box::new(inline));
            rings.push(feed);
        }
        if self.dante_tx {
            let (samples, consumer) = rtrb::RingBuffer::new(ring_samples);
            let (marks, _) = rtrb::RingBuffer::new(1);
            let thread = crate::dante::attach_tx(crate::dante::TxSource {
                name: name.clone(),
                samples: consumer,
                channels: usize::from(stream.channels),
            })
            .with_context(|| format!("input {name}: dante.tx_input"))?;
            self.dante_attached = true;
            rings.push(OutputFeed {
                samples,
                marks,
                frames_pushed: 0,
                // The transmitter wakes every millisecond by itself; this only paces the
                // ingest thread's wake-ups as any 1 ms consumer would.
                frame: u64::from(stream.sample_rate / 1000).max(1),
                thread,
                events: None,
                meter: None,
                gap_lost: false,
            });
        }
        match (input, signal) {
            (Some(mut input), _) => {
                input.rings = rings;
                commands
                    .send(Command::Attach(Box::new(input)))
                    .map_err(|_| anyhow::anyhow!("input {name}: the ingest thread has stopped"))?;
                self.attached = true;
            }
            (None, Some(signal)) => {
                let generator = generator::Generator::new(
                    signal,
                    &stream,
                    self.config.level.as_ref().map_or(-18.0, |l| *l.get_ref()),
                    rings,
                    (Arc::clone(&self.snapshot), self.halt.clone()),
                );
                info!(input = %name, signal = stream.label.as_deref().unwrap_or("-"), channels = stream.channels, rate = stream.sample_rate, "generating");
                // Made on the transmit thread, on its own wake-ups.
                self.adopted.push(aes67_tx::register_generator(generator));
            }
            (None, None) if self.config.kind == InputKind::Dante => {
                crate::dante::attach_rx(Box::new(dante_in::DanteInput::new(
                    name.clone(),
                    usize::from(stream.channels),
                    rings,
                    Arc::clone(&self.snapshot),
                )))
                .with_context(|| format!("input {name}"))?;
                self.dante_attached = true;
                info!(input = %name, channels = stream.channels, "receiving the Dante device's RX channels");
            }
            (None, None) if srt_input => {
                let (srt, shared) = srt_in::SrtInput::start(
                    &self.config,
                    &stream,
                    rings,
                    Arc::clone(&self.snapshot),
                )?;
                self.srt = Some(shared);
                info!(input = %name, address = %stream.destination, channels = stream.channels, rate = stream.sample_rate, "SRT input starting");
                let halt = self.halt.clone();
                let handle =
                    thread::Builder::new()
                        .name(format!("srtin-{name}"))
                        .spawn(move || {
                            realtime(sched::OUTPUT_PRIORITY);
                            srt.run(&halt);
                        })?;
                self.workers.push(handle);
            }
            (None, None) => anyhow::bail!("input {name}: neither received nor generated"),
        }
        self.state = RouteState::Receiving {
            stream,
            sdp,
            since: Instant::now(),
        };
        Ok(())
    }

    /// Starts a thread consuming a ring the ingest thread fills, woken every `frame` frames.
    fn spawn_fed(
        workers: &mut Vec<JoinHandle<()>>,
        thread_name: String,
        (samples, marks): (rtrb::Producer<i32>, rtrb::Producer<(u64, MonoTime)>),
        frame: u64,
        run: impl FnOnce() + Send + 'static,
    ) -> anyhow::Result<OutputFeed> {
        let handle = thread::Builder::new().name(thread_name).spawn(run)?;
        let feed = OutputFeed {
            samples,
            marks,
            frames_pushed: 0,
            frame,
            thread: handle.thread().clone(),
            events: None,
            meter: None,
            gap_lost: false,
        };
        workers.push(handle);
        Ok(feed)
    }

    /// Stops receiving: the ingest thread lets go of the socket, then the output threads end.
    /// Takes new detector settings without touching audio; false when that is not possible
    /// (metering switched on or off), and the route must restart.
    fn retune(&mut self, wanted: Option<Detectors>) -> bool {
        let (Some(_), Some(settings)) = (self.detectors, wanted) else {
            return false;
        };
        if self.attached
            && let Some(retune) = &self.retune
            && retune.send(settings).is_err()
        {
            return false;
        }
        self.detectors = wanted;
        true
    }

    fn deactivate(&mut self, commands: &Sender<Command>) {
        if self.dante_attached {
            let name = self.config.name.get_ref();
            crate::dante::detach_rx(name);
            crate::dante::detach_tx(name);
            self.dante_attached = false;
        }
        if self.attached {
            let (done, wait) = mpsc::channel();
            let name = self.config.name.get_ref().clone();
            if commands.send(Command::Detach { name, done }).is_ok() {
                let _ = wait.recv_timeout(DETACH_TIMEOUT);
            }
            self.attached = false;
        }
        self.halt.request();
        for worker in self.workers.drain(..) {
            worker.thread().unpark();
            let _ = worker.join();
        }
        for output in self.adopted.drain(..) {
            output.wait();
        }
        // Closes an SRT input's connection (and its listening port) before a restart reopens it.
        self.srt = None;
    }
}

fn open_input(
    input: &InputConfig,
    stream: &ResolvedStream,
    sdp: Option<&str>,
    shared: Arc<Mutex<InputSnapshot>>,
    clock_gate: Arc<clock_rule::ClockGate>,
) -> anyhow::Result<InputRuntime> {
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
    let redundant = redundant::open_second_path(input, sdp)?;
    // The slower path's copies must still arrive before playout to fill the other's gaps.
    let latency = input.latency + input.skew_allowance(redundant.is_some());
    let jitter = JitterBuffer::new(JitterConfig {
        channels: stream.channels,
        sample_rate: stream.sample_rate,
        format: stream.format,
        payload_type: stream.payload_type,
        latency,
        capacity: (latency * 8).max(Duration::from_millis(400)),
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
    // A new stream starts its counters afresh; the old ones stay in the log line above.
    *lock(&shared) = InputSnapshot::default();
    Ok(InputRuntime {
        name,
        socket,
        jitter,
        channels: usize::from(stream.channels),
        rings: Vec::new(),
        ring_overruns: 0,
        pull_lag: LatencyHistogram::default(),
        last_stored: None,
        shared,
        redundant,
        failover: failover::open(input, stream, latency, clock_gate)?,
    })
}

fn srt_config(output: &OutputConfig) -> SrtConfig {
    SrtConfig {
        mode: match output.mode.unwrap_or(SrtModeConfig::Listener) {
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

#[allow(dead_code)]
fn _assert_send() {
    fn is_send<T: Send>() {}
    is_send::<InputRuntime>();
    is_send::<OutputWorker>();
}

#[cfg(test)]
mod tests;
