//! One delivery worker per notifier: a bounded queue, retries with exponential backoff and
//! jitter, and counters. Enqueueing never blocks, so a dead receiver can slow nothing but its
//! own worker.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::engine::Notice;
use super::notify::Notifier;
use crate::status::NotifierStatus;

/// How long a stopping worker may still spend delivering what is queued (no retries).
const DRAIN: Duration = Duration::from_secs(2);

/// Retry policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
}

impl Retry {
    /// The wait before retry `n` (1-based): base·2ⁿ⁻¹ capped at max, then scaled by a random
    /// 50–100 % so that many gateways failing together do not retry in step.
    pub fn delay(&self, n: u32, random: u64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(n.saturating_sub(1)).unwrap_or(u32::MAX))
            .min(self.max);
        let fraction = 0.5 + (random % 1_000) as f64 / 2_000.0;
        exp.mul_f64(fraction)
    }
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dropped: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Notice>,
    /// Set when stopping: the worker delivers until then, without retrying.
    closing: Option<Instant>,
    last_error: Option<String>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    kind: &'static str,
    capacity: usize,
    state: Mutex<State>,
    wake: Condvar,
    counters: Counters,
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Worker {
    pub fn start(notifier: Notifier, capacity: usize, retry: Retry, host: String) -> Self {
        let shared = Arc::new(Shared {
            name: notifier.name().to_owned(),
            kind: notifier.kind(),
            capacity: capacity.max(1),
            state: Mutex::default(),
            wake: Condvar::new(),
            counters: Counters::default(),
        });
        let worker_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("notify-{}", shared.name))
            .spawn(move || run(&worker_shared, &notifier, retry, &host))
            .map_err(|e| warn!(error = %e, "cannot start a notification worker"))
            .ok();
        Worker { shared, thread }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Queues `notice`; a full queue loses its oldest entry.
    pub fn enqueue(&self, notice: Notice) {
        let mut state = lock(&self.shared.state);
        if state.queue.len() >= self.shared.capacity {
            state.queue.pop_front();
            let dropped = self.shared.counters.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            warn!(
                notifier = %self.shared.name,
                dropped,
                "notification queue full: the oldest notification was dropped"
            );
        }
        state.queue.push_back(notice);
        self.shared.wake.notify_one();
    }

    pub fn status(&self) -> NotifierStatus {
        let c = &self.shared.counters;
        let state = lock(&self.shared.state);
        NotifierStatus {
            name: self.shared.name.clone(),
            kind: self.shared.kind.to_owned(),
            sent: c.sent.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            queued: state.queue.len() as u64,
            last_error: state.last_error.clone(),
        }
    }

    /// Stops the worker after it has delivered what it can within [`DRAIN`].
    pub fn stop(mut self) {
        lock(&self.shared.state).closing = Some(Instant::now() + DRAIN);
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(shared: &Shared, notifier: &Notifier, retry: Retry, host: &str) {
    while let Some(notice) = next(shared) {
        deliver(shared, notifier, retry, host, &notice);
    }
}

/// The next notice, or None once stopping and empty (or out of time).
fn next(shared: &Shared) -> Option<Notice> {
    let mut state = lock(&shared.state);
    loop {
        if let Some(deadline) = state.closing
            && (state.queue.is_empty() || Instant::now() >= deadline)
        {
            if !state.queue.is_empty() {
                warn!(notifier = %shared.name, lost = state.queue.len(),
                      "stopping: queued notifications were not delivered");
            }
            return None;
        }
        if let Some(n) = state.queue.pop_front() {
            return Some(n);
        }
        state = shared.wake.wait(state).unwrap_or_else(|e| e.into_inner());
    }
}

fn deliver(shared: &Shared, notifier: &Notifier, retry: Retry, host: &str, notice: &Notice) {
    let c = &shared.counters;
    let mut attempt = 0;
    loop {
        match notifier.deliver(notice, host) {
            Ok(()) => {
                c.sent.fetch_add(1, Ordering::Relaxed);
                info!(notifier = %shared.name, alarm = %notice.key, state = notice.state(),
                      "notification delivered");
                return;
            }
            Err(e) => {
                lock(&shared.state).last_error = Some(e.clone());
                if attempt >= retry.attempts || lock(&shared.state).closing.is_some() {
                    let failed = c.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(notifier = %shared.name, alarm = %notice.key, error = %e, failed,
                          "notification failed; giving up");
                    return;
                }
                attempt += 1;
                let retries = c.retries.fetch_add(1, Ordering::Relaxed) + 1;
                let wait = retry.delay(attempt, random());
                warn!(notifier = %shared.name, alarm = %notice.key, error = %e, attempt,
                      retries, retry_in = ?wait, "notification failed; retrying");
                if !sleep_unless_closing(shared, wait) {
                    let failed = c.failed.fetch_add(1, Ordering::Relaxed) + 1;
                    warn!(notifier = %shared.name, alarm = %notice.key, failed,
                          "stopping: notification abandoned");
                    return;
                }
            }
        }
    }
}

/// Waits `d`; false if the worker is told to stop meanwhile.
fn sleep_unless_closing(shared: &Shared, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    let mut state = lock(&shared.state);
    loop {
        if state.closing.is_some() {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        state = shared
            .wake
            .wait_timeout(state, deadline - now)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Randomness for jitter only: the std hasher's per-instance random keys.
fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter_in_the_upper_half() {
        let r = Retry {
            attempts: 5,
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        assert_eq!(
            r.delay(1, 999),
            Duration::from_millis(1_000).mul_f64(0.9995)
        );
        assert_eq!(r.delay(1, 0), Duration::from_millis(500));
        assert_eq!(r.delay(3, 0), Duration::from_secs(2));
        assert_eq!(r.delay(20, 0), Duration::from_secs(5));
        assert_eq!(r.delay(u32::MAX, 0), Duration::from_secs(5));
    }
}
