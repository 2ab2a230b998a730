//! The ingest thread: drains every input socket into its jitter buffer and pulls what is due
//! into the output rings. Inputs come and go through a command channel, checked once per
//! wake, so routes can be (re)started while everything else keeps running.

use std::net::UdpSocket;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use estuary_engine::clock::PlayoutClock as _;
use estuary_engine::jitter::{JitterBuffer, PushOutcome};
use estuary_engine::redundancy::PathMerger;
use estuary_engine::time::MonoTime;
use estuary_io::batch::BatchReceiver;
use estuary_io::clock::{monotonic_now, sleep_until};

use super::recorder_feed::RecorderEvents;
use super::{InputSnapshot, RedundancySnapshot};
use crate::latency::LatencyHistogram;
use crate::record::FeedEvent;
use crate::shutdown::Stop;

/// The longest the ingest thread sleeps; it wakes earlier when an output's codec frame is due.
const MAX_TICK: Duration = Duration::from_millis(5);
/// How long the thread waits for a command when it has no input (and so how late it may
/// notice the halt then).
const IDLE: Duration = Duration::from_millis(50);
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
    /// The output's codec frame, in frames: the ingest wakes it when one is complete.
    /// `u64::MAX` for a feed that is never woken (a meter's, a recorder's).
    pub frame: u64,
    /// The output's thread, unparked when a codec frame is complete.
    pub thread: thread::Thread,
    /// A recorder's: where each block starts and where audio was concealed.
    pub events: Option<RecorderEvents>,
    /// The input's meters, run here on each block instead of copying it to a ring.
    pub meter: Option<Box<super::meter::InlineMeter>>,
    /// A gap event did not fit the recorder's event ring: the block it belongs to is dropped
    /// too (the recorder then fills it with counted silence), so no silence goes unlisted.
    pub gap_lost: bool,
}

impl OutputFeed {
    /// Tells a recorder that `frames` frames from `position` were concealed.
    pub fn gap(&mut self, position: u64, frames: usize) {
        if let Some(events) = &mut self.events
            && !events.push(FeedEvent::Gap {
                position,
                frames: frames as u32,
            })
        {
            self.gap_lost = true;
        }
    }
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
    /// ST 2022-7: the second path, merged into the same jitter buffer.
    pub redundant: Option<RedundantPath>,
    /// Source failover: the backup stream and the fallback (see `pipeline/failover.rs`).
    pub failover: Option<Box<super::failover::FailoverRuntime>>,
}

/// The second socket of an ST 2022-7 input and the per-path bookkeeping of both.
pub(super) struct RedundantPath {
    pub socket: UdpSocket,
    pub merger: PathMerger,
    pub max_skew: Duration,
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
        if inputs.is_empty() {
            // Nothing to drain (a daemon of generators only): wait for an input instead of
            // ticking 200 times a second.
            match commands.recv_timeout(IDLE) {
                Ok(command) => apply_command(command, &mut inputs, &mut scratch),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            }
            next_wake = monotonic_now();
        }
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
        for i in 0..inputs.len() {
            prefetch_meters_ahead(&inputs, i);
            if let Some(input) = inputs.get_mut(i) {
                pull_into_rings(input, now, &mut scratch);
            }
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

/// Brings the meter state of the inputs after input `i` into the caches while `i` is pulled
/// and metered. By its input's turn that state has left the caches (a hundred inputs went
/// by), and waiting for it there cost the meters as much as their work. Each step reads only
/// what the step before brought in, so none waits: the rings of input `i + 3` (where its
/// meter is), the meter of `i + 2` (where its state is), the state of `i + 1`.
fn prefetch_meters_ahead(inputs: &[InputRuntime], i: usize) {
    if super::meter::PAUSED.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Some(input) = inputs.get(i + 3) {
        let rings = input.rings.as_slice();
        estuary_io::memory::prefetch(rings.as_ptr().cast(), std::mem::size_of_val(rings));
    }
    for meter in inputs.get(i + 2).into_iter().flat_map(InputRuntime::meters) {
        meter.prefetch_meter();
    }
    for meter in inputs.get(i + 1).into_iter().flat_map(InputRuntime::meters) {
        meter.prefetch_state();
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
            Ok(command) => apply_command(command, inputs, scratch),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
}

fn apply_command(command: Command, inputs: &mut Vec<InputRuntime>, scratch: &mut Vec<i32>) {
    match command {
        Command::Attach(input) => {
            let wanted = PULL_FRAMES * input.channels;
            if scratch.len() < wanted {
                scratch.resize(wanted, 0);
            }
            inputs.push(*input);
        }
        Command::Detach { name, done } => {
            if let Some(i) = inputs.iter().position(|input| input.name == name) {
                let input = inputs.swap_remove(i);
                input.publish();
                drop(input);
            }
            let _ = done.send(());
        }
    }
}

impl InputRuntime {
    /// Publishes counters; skipped when the reader holds the lock (it reads again soon).
    fn publish(&self) {
        if let Ok(mut shared) = self.shared.try_lock() {
            shared.stats = *self.jitter.stats();
            shared.redundancy = self.redundant.as_ref().map(|r| {
                r.merger.correct(&mut shared.stats);
                RedundancySnapshot {
                    paths: r.merger.paths(),
                    skew: r.merger.skew(),
                    max_skew: r.max_skew,
                }
            });
            shared.failover = self.failover.as_ref().map(|f| f.snapshot());
            shared.ring_overruns = self.ring_overruns;
            shared.pull_lag = self.pull_lag;
            shared.last_packet = self.last_stored;
        }
    }

    fn meters(&self) -> impl Iterator<Item = &super::meter::InlineMeter> {
        self.rings.iter().filter_map(|feed| feed.meter.as_deref())
    }

    /// When the last frame of some output's next codec frame becomes due.
    fn next_frame_due(&self) -> Option<MonoTime> {
        let next = self.jitter.position()?;
        let last_needed = self
            .rings
            .iter()
            .filter(|f| f.frame != u64::MAX)
            .map(|f| next + (f.frame - f.frames_pushed % f.frame) - 1)
            .min()?;
        self.jitter.clock().due_time(last_needed)
    }
}

/// Reads everything the input's socket(s) hold into its jitter buffer.
fn drain_socket(rx: &mut BatchReceiver, input: &mut InputRuntime) {
    drain_path(rx, input, 0);
    if input.redundant.is_some() {
        drain_path(rx, input, 1);
    }
    if input.failover.is_some() {
        super::failover::drain_backup(rx, input);
    }
}

/// RTP sequence number, if the datagram looks like RTP (the jitter buffer validates the rest).
fn rtp_seq(data: &[u8]) -> Option<u16> {
    (data.len() >= 12 && data[0] >> 6 == 2).then(|| u16::from_be_bytes([data[2], data[3]]))
}

/// Drains path 0 (the input's socket) or path 1 (the ST 2022-7 second socket).
fn drain_path(rx: &mut BatchReceiver, input: &mut InputRuntime, path: usize) {
    let (socket, mut merger) = match (input.redundant.as_mut(), path) {
        (Some(RedundantPath { socket, merger, .. }), 1) => (&*socket, Some(merger)),
        (r, _) => (&input.socket, r.map(|r| &mut r.merger)),
    };
    let jitter = &mut input.jitter;
    let last_stored = &mut input.last_stored;
    let rings = &mut input.rings;
    drain_into(rx, socket, jitter, |arrival, data, outcome| {
        if let Some(position) = stored_position(outcome) {
            *last_stored = Some((arrival, position));
        }
        if outcome == PushOutcome::Late {
            // Recorders tell a late packet's gap from a lost one.
            for events in rings.iter_mut().filter_map(|f| f.events.as_mut()) {
                events.push(FeedEvent::Late);
            }
        }
        if let Some(m) = &mut merger {
            m.record(path, arrival, rtp_seq(data), outcome);
        }
    });
}

/// Where a stored packet's first frame is; `None` when it was not stored.
pub(super) fn stored_position(outcome: PushOutcome) -> Option<u64> {
    match outcome {
        PushOutcome::Started { position, .. }
        | PushOutcome::Stored { position, .. }
        | PushOutcome::Reordered { position, .. }
        | PushOutcome::Resynced { position, .. } => Some(position),
        _ => None,
    }
}

/// Reads everything `socket` holds into `jitter`, telling `on` what became of each datagram.
pub(super) fn drain_into(
    rx: &mut BatchReceiver,
    socket: &UdpSocket,
    jitter: &mut JitterBuffer,
    mut on: impl FnMut(MonoTime, &[u8], PushOutcome),
) {
    while let Ok(n) = rx.recv(socket) {
        for packet in rx.packets() {
            // The outcome is also counted in the buffer's statistics.
            let outcome = jitter.push(packet.arrival, packet.data);
            on(packet.arrival, packet.data, outcome);
        }
        // A short batch means the socket is empty: skip the call that would say EAGAIN.
        if n < rx.capacity() {
            break;
        }
    }
}

fn pull_into_rings(input: &mut InputRuntime, now: MonoTime, scratch: &mut [i32]) {
    if input.failover.is_some() {
        super::failover::pull(input, now, scratch);
        return;
    }
    let usable = scratch.len() / input.channels * input.channels;
    loop {
        let rings = &mut input.rings;
        let pulled =
            input
                .jitter
                .pull_with_gaps(now, &mut scratch[..usable], |position, frames| {
                    for feed in rings.iter_mut() {
                        feed.gap(position, frames);
                    }
                });
        if pulled.frames == 0 {
            break;
        }
        let last = pulled.position + pulled.frames as u64 - 1;
        if let Some(due) = input.jitter.clock().due_time(last) {
            input.pull_lag.record(now.duration_since(due));
        }
        push_to_rings(
            input,
            &scratch[..pulled.frames * input.channels],
            now,
            Some(pulled.position),
        );
        if pulled.frames * input.channels < usable {
            break;
        }
    }
}

/// Copies interleaved frames into every output's (and the meter's and recorders') ring.
/// `position` is the media position of the first frame (a recorder's time reference);
/// `None` for audio with no media clock of its own (a failover's mix), which recorders
/// then number continuously.
pub(super) fn push_to_rings(
    input: &mut InputRuntime,
    samples: &[i32],
    now: MonoTime,
    position: Option<u64>,
) {
    input.ring_overruns += feed_rings(&mut input.rings, samples, input.channels, now, position);
}

/// [`push_to_rings`] for any source of frames (the ingest thread, a generator); returns the
/// frames that did not fit some ring (counted, never waited for).
pub(super) fn feed_rings(
    rings: &mut [OutputFeed],
    samples: &[i32],
    channels: usize,
    now: MonoTime,
    position: Option<u64>,
) -> u64 {
    let frames = samples.len() / channels;
    let mut overruns = 0;
    let recorders_paused = crate::record::PAUSED.load(std::sync::atomic::Ordering::Relaxed);
    for feed in rings {
        if let Some(meter) = &mut feed.meter {
            meter.process(samples, now);
            continue;
        }
        if recorders_paused && feed.events.is_some() {
            continue;
        }
        let at = position.unwrap_or(feed.frames_pushed);
        let no_event = feed
            .events
            .as_mut()
            .is_some_and(|e| !e.ready_for(at, frames as u32));
        if !has_room(&feed.samples, samples.len()) || no_event || feed.gap_lost {
            feed.gap_lost = false;
            // A recorder fills what it missed with counted silence, from the positions.
            overruns += frames as u64;
            continue;
        }
        // One copy into the free slots (`write_chunk` would first fill them with zeros). A
        // recorder reads its ring a quarter of a second later: its copy bypasses the caches.
        let pushed = if feed.events.is_some() {
            estuary_io::memory::push_streaming(&mut feed.samples, samples)
        } else {
            feed.samples.push_entire_slice(samples)
        };
        if pushed.is_ok() {
            if let Some(events) = &mut feed.events {
                events.pushed(at, frames as u32);
            } else {
                // A full mark ring only costs the output one latency sample. (A recorder
                // times nothing by them.)
                let _ = feed.marks.push((feed.frames_pushed + frames as u64, now));
            }
            let frames_before = feed.frames_pushed;
            feed.frames_pushed += frames as u64;
            if feed.frames_pushed / feed.frame > frames_before / feed.frame {
                feed.thread.unpark();
            }
        }
    }
    overruns
}

/// Whether `n` slots are free, reading the consumer's position (a cache line the other
/// thread writes, and with many rings one the cache no longer holds) only when the position
/// last read does not show room already.
pub(super) fn has_room<T>(ring: &rtrb::Producer<T>, n: usize) -> bool {
    ring.cached_slots() >= n || ring.slots() >= n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gap event that does not fit the recorder's event ring takes its block with it: the
    /// block is counted as an overrun (and filled as counted silence), never written as
    /// silence the sidecar does not list.
    #[test]
    fn a_gap_event_that_does_not_fit_drops_its_block_counted() {
        let (samples, samples_rx) = rtrb::RingBuffer::new(64);
        let (marks, _marks_rx) = rtrb::RingBuffer::new(8);
        let (events, mut events_rx) = rtrb::RingBuffer::new(1);
        let mut feeds = vec![OutputFeed {
            samples,
            marks,
            frames_pushed: 0,
            frame: 48,
            thread: thread::current(),
            events: Some(RecorderEvents::new(events)),
            meter: None,
            gap_lost: false,
        }];
        let block = [0i32; 8];
        let now = MonoTime::from_nanos(0);
        feeds[0].gap(100, 2);
        feeds[0].gap(102, 2);
        // The ring held the first gap; the recorder takes it before the block comes.
        assert!(events_rx.pop().is_ok());
        assert_eq!(feed_rings(&mut feeds, &block, 2, now, Some(100)), 4);
        assert_eq!(samples_rx.slots(), 0);
        // The next block goes through.
        assert_eq!(feed_rings(&mut feeds, &block, 2, now, Some(104)), 0);
        assert_eq!(samples_rx.slots(), 8);
        feeds[0].events.as_mut().expect("a recorder's").flush();
        assert!(matches!(
            events_rx.pop(),
            Ok(FeedEvent::Chunk {
                position: 104,
                frames: 4
            })
        ));
    }
}
