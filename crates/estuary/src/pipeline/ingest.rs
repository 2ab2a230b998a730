//! The ingest thread: drains every input socket into its jitter buffer and pulls what is due
//! into the output rings. Inputs come and go through a command channel, checked once per
//! wake, so routes can be (re)started while everything else keeps running.

use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use estuary_engine::clock::PlayoutClock as _;
use estuary_engine::jitter::{JitterBuffer, PushOutcome};
use estuary_engine::time::MonoTime;
use estuary_io::batch::BatchReceiver;
use estuary_io::clock::{monotonic_now, sleep_until};

use super::InputSnapshot;
use crate::latency::LatencyHistogram;
use crate::record::FeedEvent;
use crate::shutdown::Stop;

/// The longest the ingest thread sleeps; it wakes earlier when an output's codec frame is due.
const MAX_TICK: Duration = Duration::from_millis(5);
/// The shortest, so a clock that says "already due" cannot make it spin.
const MIN_TICK: Duration = Duration::from_micros(200);
/// Packets drained per `recvmmsg` call.
const BATCH: usize = 64;
/// Frames per pull: 100 ms at 48 kHz; a pull that has more due simply loops.
const PULL_FRAMES: usize = 4_800;
/// How often counters are copied out for the supervisor and the health monitor (which
/// needs this resolution to tell "no packets for 100 ms").
const PUBLISH_PERIOD: Duration = Duration::from_millis(20);

/// The ingest side of one output: the samples, and marks saying when each push happened.
pub(super) struct OutputFeed {
    pub samples: rtrb::Producer<i32>,
    /// (frames pushed so far, when): lets the output time each codec frame from the moment
    /// its last sample arrived, not from when the output thread woke up.
    pub marks: rtrb::Producer<(u64, MonoTime)>,
    pub frames_pushed: u64,
    /// The output's codec frame, in frames: the ingest wakes when one is complete.
    pub frame: u64,
    /// The output's thread, unparked when a codec frame is complete.
    pub thread: thread::Thread,
    /// A recorder's: where each block starts and where audio was concealed.
    pub events: Option<rtrb::Producer<FeedEvent>>,
}

/// One receiving input, owned by the ingest thread while attached.
pub(super) struct InputRuntime {
    pub name: String,
    pub socket: UdpSocket,
    pub jitter: JitterBuffer,
    pub channels: usize,
    pub rings: Vec<OutputFeed>,
    pub ring_overruns: u64,
    pub pull_lag: LatencyHistogram,
    /// Arrival and media position of the latest packet stored, for drift measurement.
    pub last_stored: Option<(MonoTime, u64)>,
    pub shared: Arc<Mutex<InputSnapshot>>,
}

/// What the routes ask of the ingest thread.
pub(super) enum Command {
    Attach(Box<InputRuntime>),
    /// Drops the named input (closing its socket) and then says so, so the route can reopen
    /// the same port.
    Detach {
        name: String,
        done: Sender<()>,
    },
}

/// The ingest loop (see the module doc). Allocates nothing between commands.
pub(super) fn run(commands: &Receiver<Command>, halt: &Stop) {
    let mut inputs: Vec<InputRuntime> = Vec::new();
    let mut rx = BatchReceiver::new(BATCH);
    let mut scratch = vec![0i32; PULL_FRAMES * 2];
    let mut next_wake = monotonic_now();
    let mut next_publish = next_wake;
    while !halt.requested() {
        sleep_until(next_wake);
        if !apply_commands(commands, &mut inputs, &mut scratch) {
            return;
        }
        // Sockets are drained when the thread wakes, not on readiness: waking per packet
        // costs about three system calls per packet, and the kernel's receive timestamps keep
        // arrival times exact however late we read them. Every pull follows a drain, so no
        // packet that arrived before its playout time can miss it, whatever the wake period.
        for input in &mut inputs {
            drain_socket(&mut rx, input);
        }
        let now = monotonic_now();
        for input in &mut inputs {
            pull_into_rings(input, now, &mut scratch);
        }
        // Wake when the next codec frame of any output is due, so no tick adds latency.
        next_wake = inputs
            .iter()
            .filter_map(InputRuntime::next_frame_due)
            .fold(now.saturating_add(MAX_TICK), MonoTime::min)
            .max(now.saturating_add(MIN_TICK));
        if now >= next_publish {
            next_publish = now.saturating_add(PUBLISH_PERIOD);
            for input in &inputs {
                input.publish();
            }
        }
    }
}

/// Applies pending commands; false when every route handle is gone.
fn apply_commands(
    commands: &Receiver<Command>,
    inputs: &mut Vec<InputRuntime>,
    scratch: &mut Vec<i32>,
) -> bool {
    loop {
        match commands.try_recv() {
            Ok(Command::Attach(input)) => {
                let wanted = PULL_FRAMES * input.channels;
                if scratch.len() < wanted {
                    scratch.resize(wanted, 0);
                }
                inputs.push(*input);
            }
            Ok(Command::Detach { name, done }) => {
                if let Some(i) = inputs.iter().position(|input| input.name == name) {
                    let input = inputs.swap_remove(i);
                    input.publish();
                    drop(input);
                }
                let _ = done.send(());
            }
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

impl InputRuntime {
    /// Publishes counters; skipped when the reader holds the lock (it reads again soon).
    fn publish(&self) {
        if let Ok(mut shared) = self.shared.try_lock() {
            shared.stats = *self.jitter.stats();
            shared.ring_overruns = self.ring_overruns;
            shared.pull_lag = self.pull_lag;
            shared.last_packet = self.last_stored;
        }
    }

    /// When the last frame of some output's next codec frame becomes due.
    fn next_frame_due(&self) -> Option<MonoTime> {
        let next = self.jitter.position()?;
        let last_needed = self
            .rings
            .iter()
            .map(|f| next + (f.frame - f.frames_pushed % f.frame) - 1)
            .min()?;
        self.jitter.clock().due_time(last_needed)
    }
}

/// Reads everything the socket holds into the input's jitter buffer.
fn drain_socket(rx: &mut BatchReceiver, input: &mut InputRuntime) {
    while let Ok(n) = rx.recv(&input.socket) {
        for packet in rx.packets() {
            // The outcome is also counted in the buffer's statistics.
            match input.jitter.push(packet.arrival, packet.data) {
                PushOutcome::Started { position, .. }
                | PushOutcome::Stored { position, .. }
                | PushOutcome::Reordered { position, .. }
                | PushOutcome::Resynced { position, .. } => {
                    input.last_stored = Some((packet.arrival, position));
                }
                PushOutcome::Late => {
                    for events in input.rings.iter_mut().filter_map(|f| f.events.as_mut()) {
                        let _ = events.push(FeedEvent::Late);
                    }
                }
                _ => {}
            }
        }
        // A short batch means the socket is empty: skip the call that would say EAGAIN.
        if n < rx.capacity() {
            break;
        }
    }
}

fn pull_into_rings(input: &mut InputRuntime, now: MonoTime, scratch: &mut [i32]) {
    let usable = scratch.len() / input.channels * input.channels;
    loop {
        let rings = &mut input.rings;
        let pulled =
            input
                .jitter
                .pull_with_gaps(now, &mut scratch[..usable], |position, frames| {
                    for events in rings.iter_mut().filter_map(|f| f.events.as_mut()) {
                        let _ = events.push(FeedEvent::Gap {
                            position,
                            frames: frames as u32,
                        });
                    }
                });
        if pulled.frames == 0 {
            break;
        }
        let last = pulled.position + pulled.frames as u64 - 1;
        if let Some(due) = input.jitter.clock().due_time(last) {
            input.pull_lag.record(now.duration_since(due));
        }
        let samples = &scratch[..pulled.frames * input.channels];
        for feed in &mut input.rings {
            let no_event = feed.events.as_ref().is_some_and(|e| e.slots() == 0);
            if feed.samples.slots() < samples.len() || no_event {
                // A recorder fills what it missed with counted silence, from the positions.
                input.ring_overruns += pulled.frames as u64;
                continue;
            }
            if let Ok(mut chunk) = feed.samples.write_chunk(samples.len()) {
                let (a, b) = chunk.as_mut_slices();
                a.copy_from_slice(&samples[..a.len()]);
                b.copy_from_slice(&samples[a.len()..]);
                chunk.commit_all();
                if let Some(events) = &mut feed.events {
                    let _ = events.push(FeedEvent::Chunk {
                        position: pulled.position,
                        frames: pulled.frames as u32,
                    });
                }
                let frames_before = feed.frames_pushed;
                feed.frames_pushed += pulled.frames as u64;
                // A full mark ring only costs the output one latency sample.
                let _ = feed.marks.push((feed.frames_pushed, now));
                if feed.frames_pushed / feed.frame > frames_before / feed.frame {
                    feed.thread.unpark();
                }
            }
        }
        if pulled.frames * input.channels < usable {
            break;
        }
    }
}
