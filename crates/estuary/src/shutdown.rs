//! Graceful shutdown on SIGTERM / SIGINT.
//!
//! The handler only sets a flag; every loop in the pipeline polls it at least every few
//! milliseconds, drains what it holds and returns. A second signal ends the process at once,
//! so an operator is never stuck with a daemon that will not stop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Shared "please stop" flag.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Installs the handlers and returns the flag they set.
pub fn install() -> anyhow::Result<Stop> {
    let stop = Stop::default();
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        // The first signal sets the flag; the second one (flag already set) exits with 1.
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop.0))?;
        signal_hook::flag::register(signal, Arc::clone(&stop.0))?;
    }
    Ok(stop)
}
