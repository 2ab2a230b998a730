//! Recent log lines for the API: a `tracing` layer that keeps the last [`LOG_HISTORY`] lines in
//! a ring and broadcasts each new one (the `log` events of `/api/live`).
//!
//! The ring is process-wide because logging is: `init_logging` installs the layer once, and
//! the API server (started later) reads it.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;

/// Lines kept for `/api/logs`.
pub const LOG_HISTORY: usize = 1_000;

/// One formatted log line.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// RFC 3339 UTC.
    pub at: String,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: String,
    /// The module that logged it.
    pub target: String,
    /// The message followed by its fields (`key=value`).
    pub message: String,
}

#[derive(Debug)]
struct Ring {
    lines: Mutex<VecDeque<LogLine>>,
    feed: broadcast::Sender<LogLine>,
}

fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(|| Ring {
        lines: Mutex::new(VecDeque::with_capacity(LOG_HISTORY)),
        feed: broadcast::channel(256).0,
    })
}

/// The last `n` lines, oldest first.
pub fn recent(n: usize) -> Vec<LogLine> {
    let lines = ring().lines.lock().unwrap_or_else(|e| e.into_inner());
    lines
        .iter()
        .skip(lines.len().saturating_sub(n))
        .cloned()
        .collect()
}

/// New lines as they are logged.
pub fn subscribe() -> broadcast::Receiver<LogLine> {
    ring().feed.subscribe()
}

/// The layer to add to the subscriber.
#[derive(Debug, Default)]
pub struct RingLayer;

impl<S: Subscriber> Layer<S> for RingLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let meta = event.metadata();
        let line = LogLine {
            at: crate::gateway::rfc3339(std::time::SystemTime::now()),
            level: meta.level().to_string(),
            target: meta.target().to_owned(),
            message: visitor.finish(),
        };
        push(line);
    }
}

fn push(line: LogLine) {
    let r = ring();
    {
        let mut lines = r.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == LOG_HISTORY {
            lines.pop_front();
        }
        lines.push_back(line.clone());
    }
    // Nobody listening is fine.
    let _ = r.feed.send(line);
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl LineVisitor {
    fn finish(self) -> String {
        match (self.message.is_empty(), self.fields.is_empty()) {
            (_, true) => self.message,
            (true, false) => self.fields,
            (false, false) => format!("{} {}", self.message, self.fields),
        }
    }
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.add(field, format_args!("{value}"));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.add(field, format_args!("{value:?}"));
        }
    }
}

impl LineVisitor {
    fn add(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if !self.fields.is_empty() {
            self.fields.push(' ');
        }
        let _ = write!(self.fields, "{}={value}", field.name());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_keeps_the_last_lines() {
        for i in 0..(LOG_HISTORY + 5) {
            push(LogLine {
                at: String::new(),
                level: "INFO".into(),
                target: "t".into(),
                message: format!("ring-test {i}"),
            });
        }
        let last = recent(2);
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].message, format!("ring-test {}", LOG_HISTORY + 4));
        assert!(recent(usize::MAX).len() <= LOG_HISTORY);
    }
}
