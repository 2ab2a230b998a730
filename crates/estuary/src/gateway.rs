//! The daemon's control plane: the supervisor loop that owns the running pipeline, and the
//! [`Gateway`] handle through which the API, the alarm service and the CLI see and change it.
//!
//! Only the supervisor thread touches [`Running`]. Everyone else reads the views it publishes
//! (status and meters, ~20 Hz) or sends it a [`Request`] and waits for the answer, so a slow
//! HTTP client can never hold a lock the pipeline needs, and config changes are applied one at
//! a time in the order they arrive.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;
use tracing::{info, warn};

use crate::config::Config;
use crate::pipeline::{ApplyReport, Options, Reporting, Running};
use crate::shutdown::Stop;
use crate::status::{AlarmStatus, Event, InputMeters, NotifierStatus, Status};
use crate::sysinfo::SystemSampler;

/// How often the views are republished (meters at this rate too).
pub const PUBLISH_PERIOD: Duration = Duration::from_millis(50);
/// Events kept for the API's history.
pub const EVENT_HISTORY: usize = 1_000;
/// How long a caller waits for the supervisor to apply a change.
const APPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// What is watched when a condition changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Input,
    Output,
    /// The media clock (`[clock]`); its subject is `clock`.
    Clock,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Input => "input",
            Scope::Output => "output",
            Scope::Clock => "clock",
        }
    }
}

/// A condition a detector can raise; see `estuary_engine::monitor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Condition {
    Silence,
    Clipping,
    Stuck,
    DcOffset,
    Discontinuity,
    PhaseInverted,
    Loss,
    Late,
    Duplicates,
    Reordered,
    Jitter,
    StreamChanged,
    NoPackets,
    Drift,
    /// An output has no connected peer.
    Disconnected,
    /// A route cannot receive its stream.
    RouteFailed,
    /// A recorder cannot write (disk full, I/O error); it retries.
    RecordFailed,
    /// The PTP follower is not locked to a grandmaster.
    ClockUnlocked,
    /// A failover input is off its main source (on its backup or fallback).
    FailoverActive,
}

impl Condition {
    pub const ALL: [Condition; 19] = [
        Condition::Silence,
        Condition::Clipping,
        Condition::Stuck,
        Condition::DcOffset,
        Condition::Discontinuity,
        Condition::PhaseInverted,
        Condition::Loss,
        Condition::Late,
        Condition::Duplicates,
        Condition::Reordered,
        Condition::Jitter,
        Condition::StreamChanged,
        Condition::NoPackets,
        Condition::Drift,
        Condition::Disconnected,
        Condition::RouteFailed,
        Condition::RecordFailed,
        Condition::ClockUnlocked,
        Condition::FailoverActive,
    ];

    /// The name used in config, the API and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Condition::Silence => "silence",
            Condition::Clipping => "clipping",
            Condition::Stuck => "stuck",
            Condition::DcOffset => "dc_offset",
            Condition::Discontinuity => "discontinuity",
            Condition::PhaseInverted => "phase_inverted",
            Condition::Loss => "loss",
            Condition::Late => "late",
            Condition::Duplicates => "duplicates",
            Condition::Reordered => "reordered",
            Condition::Jitter => "jitter",
            Condition::StreamChanged => "stream_changed",
            Condition::NoPackets => "no_packets",
            Condition::Drift => "drift",
            Condition::Disconnected => "disconnected",
            Condition::RouteFailed => "route_failed",
            Condition::RecordFailed => "record_failed",
            Condition::ClockUnlocked => "clock_unlocked",
            Condition::FailoverActive => "failover_active",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Condition::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A detector's condition raised or cleared: what the alarm service turns into alarms.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub scope: Scope,
    /// Input or output name.
    pub subject: String,
    /// 1-based channel (first of the pair for phase), for per-channel conditions.
    pub channel: Option<u16>,
    pub condition: Condition,
    pub raised: bool,
    /// The measured value that decided it (see `estuary_engine::monitor::AlarmKind` and
    /// `HealthKind`).
    pub value: f64,
    pub at: SystemTime,
}

/// Why a change was not applied. The running state is what it was before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApplyError {
    /// The offending field, e.g. `outputs[1].address`, when one is to blame.
    pub field: Option<String>,
    pub message: String,
}

/// Why a title was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TitleError {
    #[error("no running output of that name")]
    NoSuchOutput,
    /// The output's kind carries no title.
    #[error("a {0} output carries no title")]
    NoTitles(&'static str),
    #[error("{0}")]
    Unavailable(String),
}

/// What the supervisor is asked to do.
#[derive(Debug)]
pub enum Request {
    /// Set the title of an Icecast or HTTP output (until the next title from its config).
    SetTitle {
        output: String,
        title: String,
        reply: Sender<Result<(), TitleError>>,
    },
    /// Make the running state match this configuration, changing only what differs.
    Apply {
        config: Box<Config>,
        reply: Sender<Result<ApplyReport, ApplyError>>,
    },
}

/// The shared handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    status: RwLock<Arc<Status>>,
    meters: RwLock<Arc<Vec<InputMeters>>>,
    config: RwLock<Arc<Config>>,
    requests: Mutex<Sender<Request>>,
    signals: Mutex<Option<Sender<Signal>>>,
    alarms: RwLock<Vec<AlarmStatus>>,
    notifications: RwLock<Vec<NotifierStatus>>,
    events: Mutex<EventLog>,
    event_feed: broadcast::Sender<Event>,
    started: SystemTime,
    config_path: Option<String>,
}

#[derive(Debug, Default)]
struct EventLog {
    next_id: u64,
    history: VecDeque<Event>,
}

/// The other end of a [`Gateway`]: what the supervisor consumes.
#[derive(Debug)]
pub struct SupervisorInbox {
    requests: Receiver<Request>,
}

impl Gateway {
    /// A gateway for `config`, read from `config_path` (None: embedded). The supervisor takes
    /// the inbox.
    pub fn new(config: &Config, config_path: Option<String>) -> (Self, SupervisorInbox) {
        let (requests, inbox) = mpsc::channel();
        let (event_feed, _) = broadcast::channel(256);
        let gateway = Gateway {
            shared: Arc::new(Shared {
                status: RwLock::default(),
                meters: RwLock::default(),
                config: RwLock::new(Arc::new(config.clone())),
                requests: Mutex::new(requests),
                signals: Mutex::new(None),
                alarms: RwLock::default(),
                notifications: RwLock::default(),
                events: Mutex::new(EventLog {
                    next_id: 1,
                    history: VecDeque::new(),
                }),
                event_feed,
                started: SystemTime::now(),
                config_path,
            }),
        };
        (gateway, SupervisorInbox { requests: inbox })
    }

    /// The latest published status.
    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&read(&self.shared.status))
    }

    /// The latest published meters, one entry per receiving input.
    #[allow(dead_code, reason = "for the API")]
    pub fn meters(&self) -> Arc<Vec<InputMeters>> {
        Arc::clone(&read(&self.shared.meters))
    }

    /// The configuration that is running.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&read(&self.shared.config))
    }

    /// The file changes are persisted to, if any.
    pub fn config_path(&self) -> Option<&str> {
        self.shared.config_path.as_deref()
    }

    pub fn started(&self) -> SystemTime {
        self.shared.started
    }

    /// Asks the supervisor to run `config` and waits for the outcome. Blocking: call it from
    /// a thread that may block (`spawn_blocking` in async code).
    pub fn apply(&self, config: Config) -> Result<ApplyReport, ApplyError> {
        let (reply, answer) = mpsc::channel();
        let sent = lock(&self.shared.requests).send(Request::Apply {
            config: Box::new(config),
            reply,
        });
        let unavailable = |message: &str| ApplyError {
            field: None,
            message: message.to_owned(),
        };
        if sent.is_err() {
            return Err(unavailable("the daemon is stopping"));
        }
        match answer.recv_timeout(APPLY_TIMEOUT) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(unavailable("timed out applying the change")),
            Err(RecvTimeoutError::Disconnected) => Err(unavailable("the daemon is stopping")),
        }
    }

    /// Asks the supervisor to put `title` on the air of output `output`. Blocking, briefly.
    pub fn set_title(&self, output: &str, title: &str) -> Result<(), TitleError> {
        let (reply, answer) = mpsc::channel();
        let sent = lock(&self.shared.requests).send(Request::SetTitle {
            output: output.to_owned(),
            title: title.to_owned(),
            reply,
        });
        let stopping = || TitleError::Unavailable("the daemon is stopping".into());
        if sent.is_err() {
            return Err(stopping());
        }
        match answer.recv_timeout(APPLY_TIMEOUT) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(TitleError::Unavailable(
                "timed out setting the title".into(),
            )),
            Err(RecvTimeoutError::Disconnected) => Err(stopping()),
        }
    }

    /// Where detectors' condition changes go (the alarm service's inbox).
    pub fn set_signal_sink(&self, sink: Sender<Signal>) {
        *lock(&self.shared.signals) = Some(sink);
    }

    /// Hands a condition change to the alarm service, if one runs. Never blocks.
    pub fn signal(&self, signal: Signal) {
        if let Some(sink) = lock(&self.shared.signals).as_ref() {
            let _ = sink.send(signal);
        }
    }

    /// A sender the audio-side threads can own, so they do not take the gateway's lock per
    /// signal.
    pub fn signal_sender(&self) -> Option<Sender<Signal>> {
        lock(&self.shared.signals).clone()
    }

    /// Replaces the list of raised alarms (the alarm service owns it).
    pub fn set_alarms(&self, alarms: Vec<AlarmStatus>) {
        *write(&self.shared.alarms) = alarms;
    }

    pub fn alarms(&self) -> Vec<AlarmStatus> {
        read(&self.shared.alarms).clone()
    }

    /// Replaces the notifiers' delivery counters (the alarm service owns them).
    pub fn set_notifications(&self, notifications: Vec<NotifierStatus>) {
        *write(&self.shared.notifications) = notifications;
    }

    /// Adds an event to the history and to the live feed.
    pub fn record(&self, kind: &str, severity: &str, subject: &str, message: &str) -> Event {
        let event = {
            let mut log = lock(&self.shared.events);
            let event = Event {
                id: log.next_id,
                at: rfc3339(SystemTime::now()),
                kind: kind.to_owned(),
                severity: severity.to_owned(),
                subject: subject.to_owned(),
                message: message.to_owned(),
            };
            log.next_id += 1;
            if log.history.len() == EVENT_HISTORY {
                log.history.pop_front();
            }
            log.history.push_back(event.clone());
            event
        };
        // No subscriber is fine.
        let _ = self.shared.event_feed.send(event.clone());
        event
    }

    /// Events with an id above `after`, oldest first, at most `limit`.
    #[allow(dead_code, reason = "for the API")]
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<Event> {
        let log = lock(&self.shared.events);
        let newer: Vec<&Event> = log.history.iter().filter(|e| e.id > after).collect();
        let skip = newer.len().saturating_sub(limit);
        newer.into_iter().skip(skip).cloned().collect()
    }

    /// The live event feed (lagging receivers lose the oldest, and are told so).
    #[allow(dead_code, reason = "for the API")]
    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.shared.event_feed.subscribe()
    }

    fn publish(&self, mut status: Status, meters: Vec<InputMeters>) {
        status.alarms = self.alarms();
        status.notifications = read(&self.shared.notifications).clone();
        *write(&self.shared.status) = Arc::new(status);
        *write(&self.shared.meters) = Arc::new(meters);
    }

    fn set_config(&self, config: &Config) {
        *write(&self.shared.config) = Arc::new(config.clone());
    }
}

/// Runs the pipeline for `config` under a supervisor until `stop` is requested: applies the
/// requests that arrive through `inbox`, follows discovered streams, publishes the views and
/// reports. `ready` is called once everything listens.
pub fn supervise(
    config: &Config,
    gateway: &Gateway,
    inbox: &SupervisorInbox,
    stop: &Stop,
    reporting: Reporting,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let options = Options {
        signals: gateway.signal_sender(),
        always_discover: true,
        meters: true,
    };
    let mut running = Running::start_with(config, options)?;
    gateway.set_config(config);
    ready();
    let mut systemd = crate::systemd::Supervision::from_env();
    systemd.ready(&running.status());
    let mut sampler = SystemSampler::new(gateway.started(), gateway.config_path());
    let period = match reporting {
        Reporting::Log => Duration::from_secs(10),
        Reporting::Console => Duration::from_secs(1),
    };
    let mut next_report = Instant::now() + period;
    let mut next_publish = Instant::now();
    let mut clock_watch = crate::clock::ClockWatch::default();
    let mut reporter = crate::pipeline::Reporter::default();
    let mut switches = crate::failover::SwitchWatch::default();
    let mut clock_rules = crate::pipeline::ClockRules::default();
    while !stop.requested() {
        match inbox.requests.recv_timeout(Duration::from_millis(10)) {
            Ok(Request::Apply { config, reply }) => {
                let result = running.apply(&config);
                match &result {
                    Ok(report) => {
                        gateway.set_config(&config);
                        let message = report.to_string();
                        info!(changes = %message, "configuration applied");
                        gateway.record("config_applied", "info", "config", &message);
                    }
                    Err(e) => {
                        warn!(error = %e, "configuration change refused; the running one is kept");
                        gateway.record("config_rejected", "warning", "config", &e.to_string());
                    }
                }
                let _ = reply.send(result);
            }
            Ok(Request::SetTitle {
                output,
                title,
                reply,
            }) => {
                let result = running.set_title(&output, &title);
                if result.is_ok() {
                    gateway.record("title", "info", &format!("output/{output}"), &title);
                }
                let _ = reply.send(result);
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Every gateway handle is gone: nothing can change the config any more.
            Err(RecvTimeoutError::Disconnected) => thread::sleep(Duration::from_millis(10)),
        }
        running.reconcile();
        let now = Instant::now();
        if now >= next_publish {
            next_publish = now + PUBLISH_PERIOD;
            reporter.watch_causes(&running);
            for signal in running.watch_outputs() {
                gateway.signal(signal);
            }
            if let Some(signal) = clock_watch.poll() {
                gateway.signal(signal);
            }
            clock_rules.update(&running);
            let mut status = running.status();
            for switch in switches.watch(&status.inputs) {
                let subject = format!("input/{}", switch.input);
                gateway.record("failover", switch.severity(), &subject, &switch.message());
                gateway.signal(switch.signal());
            }
            status.system = sampler.sample();
            gateway.publish(status, running.meters());
        }
        if now >= next_report {
            next_report += period;
            reporter.report(&running, reporting);
        }
        systemd.tick(now, || gateway.status());
    }
    systemd.stopping();
    running.shutdown();
    Ok(())
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}
