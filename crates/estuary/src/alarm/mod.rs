//! Alarms: the detectors' signals turned into raised and cleared alarms by the `[alarms]`
//! rules, shown in the status and event history, and sent to webhooks, e-mail and syslog.
//!
//! The service runs on its own thread and owns the rule [`engine::Engine`]; notifications go
//! to one [`delivery::Worker`] per notifier, so neither the audio threads nor the alarm thread
//! ever wait for a network peer.

pub mod config;
pub mod delivery;
pub mod engine;
pub mod notify;
pub mod rules;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use tracing::{info, warn};

pub use config::AlarmsConfig;
use config::Severity;
use delivery::{Retry, Worker};
use engine::{Engine, Notice};
use rules::Rules;

use crate::config::Config;
use crate::gateway::{Gateway, Signal};

/// How often the service looks at the clock (delayed changes) and the running config.
const TICK: Duration = Duration::from_millis(100);

pub use rules::detectors;

/// The running alarm service.
#[derive(Debug)]
pub struct AlarmService {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AlarmService {
    /// Becomes the gateway's signal sink and starts; call before the pipeline starts so no
    /// signal is missed.
    pub fn start(gateway: &Gateway) -> anyhow::Result<Self> {
        let (sink, signals) = mpsc::channel();
        gateway.set_signal_sink(sink);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (gateway, stop) = (gateway.clone(), Arc::clone(&stop));
            thread::Builder::new()
                .name("alarms".into())
                .spawn(move || run(&gateway, &signals, &stop))?
        };
        Ok(AlarmService {
            stop,
            thread: Some(thread),
        })
    }

    /// Handles what is left (the clears of stopped routes), then stops the notifiers after
    /// a short drain.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The notifiers in force and the settings they were built from.
struct Notifiers {
    from: AlarmsConfig,
    workers: Vec<Worker>,
}

impl Notifiers {
    fn start(alarms: &AlarmsConfig, host: &str) -> Self {
        let retry = Retry {
            attempts: alarms.retries,
            base: alarms.retry_base,
            max: alarms.retry_max,
        };
        let workers = notify::build_all(alarms)
            .into_iter()
            .filter_map(|built| match built {
                Ok(n) => Some(Worker::start(n, alarms.queue, retry, host.to_owned())),
                Err((name, e)) => {
                    warn!(notifier = %name, error = %e, "notifier not started");
                    None
                }
            })
            .collect();
        Notifiers {
            from: notifier_part(alarms),
            workers,
        }
    }

    fn enqueue(&self, notice: &Notice) {
        for w in self.workers.iter().filter(|w| notice.wants(w.name())) {
            w.enqueue(notice.clone());
        }
    }

    fn stop(self) {
        for w in self.workers {
            w.stop();
        }
    }
}

/// The part of `[alarms]` the notifiers are built from (rules excluded), so a rule edit does
/// not restart them and reset their counters.
fn notifier_part(alarms: &AlarmsConfig) -> AlarmsConfig {
    AlarmsConfig {
        rules: None,
        ..alarms.clone()
    }
}

fn run(gateway: &Gateway, signals: &Receiver<Signal>, stop: &AtomicBool) {
    let host = notify::hostname();
    let mut config: Arc<Config> = gateway.config();
    let mut engine = Engine::new(Rules::from_config(&config.alarms));
    let mut notifiers = Notifiers::start(&config.alarms, &host);
    loop {
        let stopping = stop.load(Ordering::Acquire);
        let first = match signals.recv_timeout(if stopping { Duration::ZERO } else { TICK }) {
            Ok(s) => Some(s),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut notices = Vec::new();
        let now = Instant::now();
        for signal in first.into_iter().chain(signals.try_iter()) {
            notices.extend(engine.on_signal(&signal, now));
        }
        notices.extend(engine.tick(now));
        let latest = gateway.config();
        if !Arc::ptr_eq(&latest, &config) {
            config = latest;
            notices.extend(engine.set_rules(Rules::from_config(&config.alarms), SystemTime::now()));
            if notifier_part(&config.alarms) != notifiers.from {
                info!("alarm notifiers reconfigured");
                std::mem::replace(&mut notifiers, Notifiers::start(&config.alarms, &host)).stop();
            }
        }
        if !notices.is_empty() {
            for n in &notices {
                announce(gateway, n);
                notifiers.enqueue(n);
            }
            gateway.set_alarms(engine.active());
        }
        gateway.set_notifications(notifiers.workers.iter().map(Worker::status).collect());
        // Stopping: what was queued has just been handled in one last round.
        if stopping {
            break;
        }
    }
    notifiers.stop();
}

/// Logs the change and adds it to the event history.
fn announce(gateway: &Gateway, n: &Notice) {
    let kind = if n.raised {
        "alarm_raised"
    } else {
        "alarm_cleared"
    };
    if n.raised {
        warn!(alarm = %n.key, rule = %n.rule, severity = n.severity.name(), "alarm raised: {}", n.message);
    } else {
        info!(alarm = %n.key, rule = %n.rule, "alarm cleared: {}", n.message);
    }
    gateway.record(kind, n.severity.name(), &n.key, &n.message);
}

/// `estuary alarm …`.
#[derive(Debug, clap::Args)]
pub struct AlarmArgs {
    #[command(subcommand)]
    command: AlarmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum AlarmCommand {
    /// Send a test alarm (raised, then cleared) through the configured notifiers, one after
    /// the other, and print each result. Exits 1 if any failed.
    Test {
        /// The TOML config file.
        #[arg(short, long, default_value = "/etc/estuary/estuary.toml")]
        config: PathBuf,
        /// Only this notifier (a webhook or e-mail name, or `syslog`).
        #[arg(long)]
        notifier: Option<String>,
        /// Severity of the test alarm: info, warning or critical.
        #[arg(long, default_value = "info", value_parser = parse_severity)]
        severity: Severity,
    },
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::from_name(s).ok_or_else(|| format!("{s:?}: expected info, warning or critical"))
}

/// Runs `estuary alarm …`; `bad_config` is the exit code for an invalid file.
pub fn run_cli(args: AlarmArgs, bad_config: u8) -> ExitCode {
    let AlarmCommand::Test {
        config: path,
        notifier,
        severity,
    } = args.command;
    let config = match crate::config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(bad_config);
        }
    };
    let built: Vec<_> = notify::build_all(&config.alarms)
        .into_iter()
        .filter(|b| {
            let name = match b {
                Ok(n) => n.name(),
                Err((name, _)) => name.as_str(),
            };
            notifier.as_deref().is_none_or(|want| want == name)
        })
        .collect();
    if built.is_empty() {
        match &notifier {
            Some(n) => eprintln!("error: no notifier named {n:?} in {}", path.display()),
            None => eprintln!("error: {} configures no notifier", path.display()),
        }
        return ExitCode::FAILURE;
    }
    let host = notify::hostname();
    let mut failures = 0;
    for b in built {
        failures += match b {
            Ok(n) => test_one(&n, severity, &host),
            Err((name, e)) => {
                println!("{name}: error: {e}");
                1
            }
        };
    }
    if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sends the raise and the clear; prints each outcome and returns how many failed.
fn test_one(n: &notify::Notifier, severity: Severity, host: &str) -> usize {
    let mut failures = 0;
    for raised in [true, false] {
        let notice = test_notice(severity, raised);
        let state = notice.state();
        match n.deliver(&notice, host) {
            Ok(()) => println!("{} ({}): {state}: ok", n.name(), n.kind()),
            Err(e) => {
                println!("{} ({}): {state}: error: {e}", n.name(), n.kind());
                failures += 1;
            }
        }
    }
    failures
}

fn test_notice(severity: Severity, raised: bool) -> Notice {
    let state = if raised { "raised" } else { "cleared" };
    Notice {
        key: "system/estuary/test".into(),
        rule: "test".into(),
        condition: "test".into(),
        severity,
        raised,
        scope: "system".into(),
        subject: "estuary".into(),
        channel: None,
        value: 0.0,
        message: format!("test alarm {state} by `estuary alarm test`"),
        at: SystemTime::now(),
        notify: None,
    }
}
