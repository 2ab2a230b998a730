//! Generator inputs: the signal (tone, sweep, counting sequence) is made on the transmit
//! thread (`aes67_tx`) and fed to the route's output rings every few milliseconds, exactly
//! like the ingest thread feeds a received input's, so every output kind and the meters work
//! on it unchanged. Frames are produced by the monotonic clock, one tick ahead: at tick `k`
//! the generator has made `(k + 1) × TICK × rate` frames (integer arithmetic, so 44.1 kHz
//! does not drift either). Being ahead means a consumer never waits for a frame whose time
//! has come, so the tick can be coarse, and it rides on the transmit thread's own wake-ups:
//! a generated AES67 stream costs no thread and no wake-up of its own.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use estuary_engine::time::MonoTime;
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
    halt: Stop,
    /// When tick 0 was due; `None` until the first step.
    start: Option<MonoTime>,
    tick: u64,
    made: u64,
}

/// A tick due this soon is taken with the wake-up at hand: the generator is a whole tick
/// ahead, so 1 ms early costs nothing, and a separate wake-up costs a context switch.
const EARLY: Duration = Duration::from_millis(1);

impl Generator {
    pub fn new(
        kind: SignalKind,
        stream: &ResolvedStream,
        level_dbfs: f64,
        rings: Vec<OutputFeed>,
        (shared, halt): (Arc<Mutex<InputSnapshot>>, Stop),
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
            halt,
            start: None,
            tick: 0,
            made: 0,
        }
    }

    /// Whether the route asked this generator to stop.
    pub fn halted(&self) -> bool {
        self.halt.requested()
    }

    /// Makes the frames of every tick due by `now` (one tick ahead); returns when the next
    /// tick is due.
    pub fn step(&mut self, now: MonoTime) -> MonoTime {
        let tick_ns = TICK.as_nanos() as u64;
        let start = *self.start.get_or_insert_with(|| {
            super::lock(&self.shared).generator_start = Some(now);
            now
        });
        let early = now.as_nanos() + EARLY.as_nanos() as u64;
        let mut ticked = false;
        while start.as_nanos() + tick_ns * self.tick <= early {
            ticked = true;
            self.tick += 1;
        }
        if ticked {
            let ahead = tick_ns * self.tick;
            let due =
                u64::try_from(u128::from(ahead) * u128::from(self.sample_rate) / 1_000_000_000)
                    .unwrap_or(u64::MAX);
            while self.made < due {
                let frames = (due - self.made).min((self.scratch.len() / self.channels) as u64);
                let samples = frames as usize * self.channels;
                self.signal.fill(&mut self.scratch[..samples]);
                self.push(samples, self.made, now);
                self.made += frames;
            }
            if self.tick.is_multiple_of(5)
                && let Ok(mut shared) = self.shared.try_lock()
            {
                shared.ring_overruns = self.ring_overruns;
                // The stream health monitor judges inputs by their packets: a generator's
                // ticks are its packets (so it is never "no packets", and its drift is 0).
                shared.last_packet = Some((now, self.made));
            }
        }
        MonoTime::from_nanos(start.as_nanos() + tick_ns * self.tick)
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
