//! Generator inputs: a thread makes the signal (tone, sweep, counting sequence) and feeds
//! the route's output rings every few milliseconds, exactly like the ingest thread feeds a
//! received input's, so every output kind and the meters work on it unchanged. Frames are
//! produced by the monotonic clock, one tick ahead: at tick `k` the generator has made
//! `(k + 1) × TICK × rate` frames (integer arithmetic, so 44.1 kHz does not drift either).
//! Being ahead means a consumer never waits for a frame whose time has come, so the tick
//! can be coarse: a wake-up per 4 ms instead of per ms is most of what a generated AES67
//! stream costs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::tx::{SignalGenerator, SignalKind};

use super::ingest::OutputFeed;
use super::{InputSnapshot, ResolvedStream};
use crate::shutdown::Stop;

/// Generators deliver this much audio at a time, one tick ahead.
pub(super) const TICK: Duration = Duration::from_millis(4);

pub(super) struct Generator {
    signal: SignalGenerator,
    channels: usize,
    sample_rate: u32,
    rings: Vec<OutputFeed>,
    shared: Arc<Mutex<InputSnapshot>>,
    scratch: Vec<i32>,
    ring_overruns: u64,
}

impl Generator {
    pub fn new(
        kind: SignalKind,
        stream: &ResolvedStream,
        level_dbfs: f64,
        rings: Vec<OutputFeed>,
        shared: Arc<Mutex<InputSnapshot>>,
    ) -> Self {
        let channels = usize::from(stream.channels);
        // A late tick makes several ticks' frames at once; 50 ms of room covers a long stall.
        let scratch = vec![0; (stream.sample_rate as usize / 20 + 1) * channels];
        Self {
            signal: SignalGenerator::new(kind, stream.sample_rate, stream.channels, level_dbfs),
            channels,
            sample_rate: stream.sample_rate,
            rings,
            shared,
            scratch,
            ring_overruns: 0,
        }
    }

    pub fn run(mut self, halt: &Stop) {
        let start = monotonic_now();
        super::lock(&self.shared).generator_start = Some(start);
        let mut tick = 0u64;
        let mut made = 0u64;
        while !halt.requested() {
            tick += 1;
            let elapsed = TICK.as_nanos() as u64 * tick;
            sleep_until(MonoTime::from_nanos(start.as_nanos() + elapsed));
            let ahead = elapsed + TICK.as_nanos() as u64;
            let due =
                u64::try_from(u128::from(ahead) * u128::from(self.sample_rate) / 1_000_000_000)
                    .unwrap_or(u64::MAX);
            let now = monotonic_now();
            while made < due {
                let frames = (due - made).min((self.scratch.len() / self.channels) as u64);
                let samples = frames as usize * self.channels;
                self.signal.fill(&mut self.scratch[..samples]);
                self.push(samples, made, now);
                made += frames;
            }
            if tick.is_multiple_of(5)
                && let Ok(mut shared) = self.shared.try_lock()
            {
                shared.ring_overruns = self.ring_overruns;
                // The stream health monitor judges inputs by their packets: a generator's
                // ticks are its packets (so it is never "no packets", and its drift is 0).
                shared.last_packet = Some((now, made));
            }
        }
    }

    /// Hands `samples` of the scratch block, starting at frame `position`, to every ring.
    fn push(&mut self, samples: usize, position: u64, now: MonoTime) {
        self.ring_overruns += super::ingest::feed_rings(
            &mut self.rings,
            &self.scratch[..samples],
            self.channels,
            now,
            Some(position),
        );
    }
}
