//! The pure audio engine: jitter buffer, media clock and stream counters.
//!
//! Everything here is driven by an injected clock ([`time::MonoTime`]) and scripted input, so
//! whole scenarios (loss, reorder, duplicates, timestamp wrap, sender restart) run
//! deterministically in tests.
#![forbid(unsafe_code)]

pub mod catalog;
pub mod clock;
pub mod dante;
pub mod drift;
pub mod failover;
pub mod impair;
pub mod jitter;
pub mod monitor;
pub mod rate;
pub mod redundancy;
pub mod stats;
pub mod time;
