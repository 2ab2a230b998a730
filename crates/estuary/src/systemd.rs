//! Telling systemd how the daemon is doing (`Type=notify`): READY=1 once every socket listens,
//! a one-line STATUS= (what `systemctl status` shows) when it changes, and WATCHDOG=1 from the
//! supervisor loop, so a supervisor that hangs is restarted by `WatchdogSec=`. Outside systemd
//! (no `$NOTIFY_SOCKET`) every call does nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use estuary_io::sd_notify::{self, Notifier};
use tracing::{debug, info};

use crate::status::Status;

/// STATUS= is re-sent at most this often, so a flickering counter does not flood the journal.
const STATUS_PERIOD: Duration = Duration::from_secs(2);

/// The supervisor's link to systemd.
#[derive(Debug)]
pub struct Supervision {
    notifier: Option<Notifier>,
    /// Half the watchdog timeout, as `sd_watchdog_enabled(3)` recommends.
    watchdog_every: Option<Duration>,
    next_watchdog: Instant,
    next_status: Instant,
    last_status: String,
}

impl Supervision {
    pub fn from_env() -> Self {
        let notifier = Notifier::from_env();
        let watchdog_every = notifier
            .as_ref()
            .and(sd_notify::watchdog_timeout())
            .map(|t| t / 2);
        if let Some(every) = watchdog_every {
            info!(every = ?every, "systemd watchdog enabled");
        }
        Supervision {
            notifier,
            watchdog_every,
            next_watchdog: Instant::now(),
            next_status: Instant::now(),
            last_status: String::new(),
        }
    }

    /// Every socket listens: the unit becomes active.
    pub fn ready(&mut self, status: &Status) {
        let line = status_line(status);
        self.send(&format!("READY=1\nSTATUS={line}"));
        self.last_status = line;
    }

    /// Called from each turn of the supervisor loop: the watchdog ping proves that loop runs.
    pub fn tick(&mut self, now: Instant, status: impl FnOnce() -> Arc<Status>) {
        if self.notifier.is_none() {
            return;
        }
        if let Some(every) = self.watchdog_every
            && now >= self.next_watchdog
        {
            self.next_watchdog = now + every;
            self.send("WATCHDOG=1");
        }
        if now >= self.next_status {
            self.next_status = now + STATUS_PERIOD;
            let line = status_line(&status());
            if line != self.last_status {
                self.send(&format!("STATUS={line}"));
                self.last_status = line;
            }
        }
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping");
    }

    fn send(&self, state: &str) {
        if let Some(n) = &self.notifier
            && let Err(e) = n.notify(state)
        {
            // systemd may be restarting itself; the next tick tries again.
            debug!(error = %e, "sd_notify failed");
        }
    }
}

/// What `systemctl status` shows: inputs receiving, outputs connected, raised alarms.
pub fn status_line(s: &Status) -> String {
    let receiving = s.inputs.iter().filter(|i| i.state == "receiving").count();
    let connected = s.outputs.iter().filter(|o| o.state == "connected").count();
    let mut line = format!(
        "inputs {receiving}/{} receiving, outputs {connected}/{} connected",
        s.inputs.len(),
        s.outputs.len()
    );
    let alarms = s.alarms.len();
    if alarms > 0 {
        line.push_str(&format!(", {alarms} alarm(s) raised"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{InputStatus, OutputStatus};

    #[test]
    fn status_line_counts_live_inputs_and_outputs() {
        let mut s = Status::default();
        assert_eq!(
            status_line(&s),
            "inputs 0/0 receiving, outputs 0/0 connected"
        );
        s.inputs = vec![
            InputStatus {
                state: "receiving".into(),
                ..Default::default()
            },
            InputStatus {
                state: "waiting".into(),
                ..Default::default()
            },
        ];
        s.outputs = vec![OutputStatus {
            state: "connected".into(),
            ..Default::default()
        }];
        assert_eq!(
            status_line(&s),
            "inputs 1/2 receiving, outputs 1/1 connected"
        );
    }
}
