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
/// Bytes of message text kept: the lines' text lives in one ring of this size, allocated
/// and written once at start-up, so the history never grows the process as it fills (a
/// daemon's status lines are about 300 bytes: this holds the last 1000 of them or more).
const LOG_TEXT_BYTES: usize = 320 * 1024;
/// Longer messages are cut (at a character boundary) and end with "…".
const MAX_MESSAGE: usize = 4 * 1024;

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

/// A line of the history: its text is `len` bytes from `start` in the text ring.
#[derive(Debug, Clone, Copy)]
struct Entry {
    at: std::time::SystemTime,
    level: tracing::Level,
    target: &'static str,
    start: usize,
    len: usize,
}

/// The last lines, in memory of a fixed size: [`LOG_HISTORY`] entries and [`LOG_TEXT_BYTES`]
/// of text, both allocated and touched when created; the oldest lines make room.
#[derive(Debug)]
struct History {
    text: Box<[u8]>,
    /// Where the next line's text goes.
    head: usize,
    /// Text bytes held (from the oldest entry's start to `head`, around the ring).
    used: usize,
    entries: VecDeque<Entry>,
}

impl History {
    fn new() -> Self {
        // Written, not just reserved (a zeroed allocation would only become resident as the
        // history fills): the process's memory is steady from the start.
        let text = vec![b' '; LOG_TEXT_BYTES].into_boxed_slice();
        let mut entries = VecDeque::with_capacity(LOG_HISTORY);
        let blank = Entry {
            at: std::time::UNIX_EPOCH,
            level: tracing::Level::INFO,
            target: "",
            start: 0,
            len: 0,
        };
        entries.extend(std::iter::repeat_n(blank, LOG_HISTORY));
        entries.clear();
        History {
            text,
            head: 0,
            used: 0,
            entries,
        }
    }

    fn push(
        &mut self,
        at: std::time::SystemTime,
        level: tracing::Level,
        target: &'static str,
        message: &str,
    ) {
        let message = cut(message, MAX_MESSAGE.min(LOG_TEXT_BYTES));
        while self.entries.len() >= LOG_HISTORY || LOG_TEXT_BYTES - self.used < message.len() {
            let Some(old) = self.entries.pop_front() else {
                break;
            };
            self.used -= old.len;
        }
        let start = self.head;
        for (i, &b) in message.as_bytes().iter().enumerate() {
            self.text[(start + i) % LOG_TEXT_BYTES] = b;
        }
        self.head = (start + message.len()) % LOG_TEXT_BYTES;
        self.used += message.len();
        self.entries.push_back(Entry {
            at,
            level,
            target,
            start,
            len: message.len(),
        });
    }

    fn line(&self, e: &Entry) -> LogLine {
        let mut bytes = Vec::with_capacity(e.len);
        let first = e.len.min(LOG_TEXT_BYTES - e.start);
        bytes.extend_from_slice(&self.text[e.start..e.start + first]);
        bytes.extend_from_slice(&self.text[..e.len - first]);
        LogLine {
            at: crate::gateway::rfc3339(e.at),
            level: e.level.to_string(),
            target: e.target.to_owned(),
            message: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }
}

/// `text` if it fits in `max` bytes, else its start and "…" within `max` bytes.
fn cut(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end]).into()
}

#[derive(Debug)]
struct Ring {
    history: Mutex<History>,
    feed: broadcast::Sender<LogLine>,
}

fn ring() -> &'static Ring {
    static RING: OnceLock<Ring> = OnceLock::new();
    RING.get_or_init(|| Ring {
        history: Mutex::new(History::new()),
        feed: broadcast::channel(256).0,
    })
}

/// The last `n` lines, oldest first.
pub fn recent(n: usize) -> Vec<LogLine> {
    let history = ring().history.lock().unwrap_or_else(|e| e.into_inner());
    history
        .entries
        .iter()
        .skip(history.entries.len().saturating_sub(n))
        .map(|e| history.line(e))
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
        push(
            std::time::SystemTime::now(),
            *meta.level(),
            meta.target(),
            &visitor.finish(),
        );
    }
}

fn push(at: std::time::SystemTime, level: tracing::Level, target: &'static str, message: &str) {
    let r = ring();
    r.history
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(at, level, target, message);
    // Nobody listening (no live feed open) is the usual case: nothing to build then.
    if r.feed.receiver_count() > 0 {
        let line = LogLine {
            at: crate::gateway::rfc3339(at),
            level: level.to_string(),
            target: target.to_owned(),
            message: cut(message, MAX_MESSAGE).into_owned(),
        };
        let _ = r.feed.send(line);
    }
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
            push(
                std::time::SystemTime::now(),
                tracing::Level::INFO,
                "t",
                &format!("ring-test {i}"),
            );
        }
        let last = recent(2);
        assert_eq!(last.len(), 2);
        assert_eq!(last[1].message, format!("ring-test {}", LOG_HISTORY + 4));
        assert_eq!(last[1].level, "INFO");
        assert!(recent(usize::MAX).len() <= LOG_HISTORY);
    }

    #[test]
    fn history_text_wraps_and_evicts_by_bytes_and_count() {
        let mut h = History::new();
        let capacity = h.text.as_ptr();
        // Lines of 1000 bytes: the text ring holds 327 of them; then each new one evicts.
        let mut pushed = Vec::new();
        for i in 0..2_000 {
            let message = format!("{i:04}{}", "é".repeat(498));
            h.push(std::time::UNIX_EPOCH, tracing::Level::WARN, "x", &message);
            pushed.push(message);
            assert!(h.used <= LOG_TEXT_BYTES);
            assert!(h.entries.len() <= LOG_HISTORY);
        }
        assert_eq!(h.entries.len(), LOG_TEXT_BYTES / 1000);
        let kept: Vec<String> = h.entries.iter().map(|e| h.line(e).message).collect();
        assert_eq!(kept, pushed[pushed.len() - kept.len()..]);
        // Nothing was reallocated.
        assert_eq!(h.text.as_ptr(), capacity);
        assert!(h.entries.capacity() >= LOG_HISTORY);
        // Short lines: the count bounds it.
        for i in 0..3_000 {
            h.push(
                std::time::UNIX_EPOCH,
                tracing::Level::INFO,
                "x",
                &format!("{i}"),
            );
        }
        assert_eq!(h.entries.len(), LOG_HISTORY);
        assert_eq!(h.line(h.entries.back().expect("a line")).message, "2999");
        // A huge message is cut at a character boundary.
        h.push(
            std::time::UNIX_EPOCH,
            tracing::Level::INFO,
            "x",
            &"é".repeat(10_000),
        );
        let last = h.line(h.entries.back().expect("a line")).message;
        assert!(
            last.len() <= MAX_MESSAGE && last.ends_with('…'),
            "{}",
            last.len()
        );
    }
}
