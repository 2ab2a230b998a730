//! The receive jitter buffer: RTP datagrams in, due audio frames out.
//!
//! [`JitterBuffer::push`] parses a datagram, decodes its payload and stores the samples in a
//! ring at the packet's *position*: its 64-bit extended RTP timestamp (wrap-safe at 2^32,
//! extended relative to the furthest packet stored, in the spirit of RFC 3550 §A.1; the
//! sequence number is extended the same way). [`JitterBuffer::pull`] writes every frame that
//! the [`PlayoutClock`] says is due, in position order, with silence of exactly the missing
//! length where nothing arrived. So the output never shifts in time: a recording of it keeps
//! sample-accurate timing across loss.
//!
//! Classification of a valid packet of the current stream, whose first frame is at `p`, with
//! the playout position `r` (next frame to be pulled) and the ring size `C` frames:
//! - `p` more than `C` before `r`, or the packet ending more than `C` after `r`: the
//!   timestamp jumped (sender restart) → resync;
//! - `p < r`: some of its frames were already played → late, dropped (if every packet has
//!   been late for at least the latency, the path delay grew → resync);
//! - a frame of its span already buffered → duplicate, dropped;
//! - otherwise stored (and counted reordered if its extended sequence number is below the
//!   highest stored).
//!
//! A resync (SSRC change or any of the above) discards whatever is buffered, restarts the
//! clock mapping and the sequence and timestamp extension at the new packet, and keeps the
//! output continuous in time: the next pull first fills with silence from where the previous
//! pull ended (in the new stream's positions) up to the new packet.
//!
//! After [`JitterBuffer::new`], neither `push` nor `pull` allocates, locks or blocks; their
//! cost is linear in the frames of the packet or the frames pulled (a resync also clears the
//! ring's per-frame tags once).

use core::fmt;
use core::time::Duration;

use estuary_wire::payload::{SampleFormat, decode_into};
use estuary_wire::rtp::RtpPacket;

use crate::clock::{PacketClock, PlayoutClock};
use crate::stats::{InterarrivalJitter, StreamStats};
use crate::time::MonoTime;

/// Most channels a stream may have (ST 2110-30 level C allows 64).
pub const MAX_CHANNELS: u16 = 64;
/// Sample rates accepted, in Hz.
pub const SAMPLE_RATES: core::ops::RangeInclusive<u32> = 8_000..=384_000;
/// Largest ring allowed.
pub const MAX_CAPACITY: Duration = Duration::from_secs(10);
/// Samples in the largest UDP payload (65 535 bytes of 16-bit samples), which bounds the
/// decode scratch buffer.
const MAX_DATAGRAM_SAMPLES: usize = 32_768;
/// Consecutive late packets needed (besides a latency's worth of time) before deciding the
/// path delay grew.
const MIN_LATE_RUN: u32 = 4;

/// What to receive and how much to buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// Channels per frame (1..=[`MAX_CHANNELS`]).
    pub channels: u16,
    /// Media clock rate in Hz, which is also the frame rate ([`SAMPLE_RATES`]).
    pub sample_rate: u32,
    /// Payload encoding.
    pub format: SampleFormat,
    /// If set, packets with another payload type are counted `wrong_payload_type` and dropped.
    pub payload_type: Option<u8>,
    /// Playout delay after the earliest arrivals (non-zero).
    pub latency: Duration,
    /// Ring size: at least twice the latency (four times or more, and ≥ 200 ms, is
    /// recommended), at most [`MAX_CAPACITY`].
    pub capacity: Duration,
}

/// Why a [`JitterConfig`] was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `channels` is 0 or above [`MAX_CHANNELS`].
    #[error("channel count {channels} is outside 1..={MAX_CHANNELS}")]
    Channels {
        /// The value given.
        channels: u16,
    },
    /// `sample_rate` is outside [`SAMPLE_RATES`].
    #[error("sample rate {sample_rate} Hz is outside 8000..=384000")]
    SampleRate {
        /// The value given.
        sample_rate: u32,
    },
    /// `latency` is shorter than one frame.
    #[error("latency {latency:?} is shorter than one frame")]
    Latency {
        /// The value given.
        latency: Duration,
    },
    /// `capacity` is below twice the latency or above [`MAX_CAPACITY`].
    #[error("capacity {capacity:?} must be between twice the latency ({latency:?}) and 10 s")]
    Capacity {
        /// The value given.
        capacity: Duration,
        /// The latency given.
        latency: Duration,
    },
}

/// What [`JitterBuffer::push`] did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PushOutcome {
    /// First packet ever: stored, and the stream's mapping starts here.
    Started {
        /// Position of its first frame.
        position: u64,
        /// Frames stored.
        frames: usize,
    },
    /// Stored in sequence order.
    Stored {
        /// Position of its first frame.
        position: u64,
        /// Frames stored.
        frames: usize,
    },
    /// Stored, although a packet with a higher sequence number was stored before it.
    Reordered {
        /// Position of its first frame.
        position: u64,
        /// Frames stored.
        frames: usize,
    },
    /// Started a new stream (buffer discarded, mapping restarted) and stored.
    Resynced {
        /// Why.
        reason: ResyncReason,
        /// Position of its first frame (in the new stream).
        position: u64,
        /// Frames stored.
        frames: usize,
    },
    /// Its position is already buffered: dropped.
    Duplicate,
    /// Some of its frames were already played out: dropped.
    Late,
    /// Not RTP, or the payload is not whole frames of the configured format: dropped.
    Malformed,
    /// Payload type differs from the configured one: dropped.
    WrongPayloadType,
}

/// Why the buffer restarted on a new stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResyncReason {
    /// The SSRC changed.
    SsrcChange,
    /// The timestamp is further than the capacity from the playout position.
    TimestampJump,
    /// Every packet arrived late for at least the latency: the path delay grew.
    PersistentlyLate,
}

/// What [`JitterBuffer::pull`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Frames written to the start of `out` (`frames × channels` samples).
    pub frames: usize,
    /// Extended RTP timestamp (position) of the first frame written; the next pull continues
    /// at `position + frames` unless a resync happened in between. 0 before the first packet.
    pub position: u64,
}

/// State of the stream being played out.
#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    /// Highest extended sequence number stored.
    max_seq: u64,
    /// Position of the furthest packet stored (reference for timestamp extension).
    max_start: u64,
    /// End of the furthest packet stored.
    end: u64,
    /// Next position to be pulled.
    read: u64,
    /// Extended sequence number of the last frame played from a packet.
    last_played_seq: Option<u64>,
    /// Playout is inside a run of concealed frames.
    in_gap: bool,
    /// Arrival of the first of the current run of late packets.
    late_since: Option<MonoTime>,
    late_run: u32,
    /// Time of the last pull.
    last_pull: Option<MonoTime>,
}

/// The receive jitter buffer of one RTP stream; see the module docs.
pub struct JitterBuffer<C: PlayoutClock = PacketClock> {
    config: JitterConfig,
    clock: C,
    channels: usize,
    /// Ring size in frames.
    capacity: u64,
    latency: Duration,
    /// `capacity × channels` samples, frame `p` at `(p mod capacity) × channels`.
    ring: Vec<i32>,
    /// Per ring frame: 0 if empty, else the extended sequence number of its packet + 1.
    tags: Vec<u64>,
    scratch: Vec<i32>,
    stream: Option<Stream>,
    jitter: InterarrivalJitter,
    stats: StreamStats,
}

impl<C: PlayoutClock + fmt::Debug> fmt::Debug for JitterBuffer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JitterBuffer")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .field("capacity_frames", &self.capacity)
            .field("stream", &self.stream)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl JitterBuffer<PacketClock> {
    /// A buffer clocked by its own packets ([`PacketClock`]); allocates the ring.
    pub fn new(config: JitterConfig) -> Result<Self, ConfigError> {
        let clock = PacketClock::new(config.sample_rate, config.latency);
        JitterBuffer::with_clock(config, clock)
    }
}

impl<C: PlayoutClock> JitterBuffer<C> {
    /// A buffer played out by `clock`; allocates the ring (the only allocation).
    pub fn with_clock(config: JitterConfig, clock: C) -> Result<Self, ConfigError> {
        if config.channels == 0 || config.channels > MAX_CHANNELS {
            return Err(ConfigError::Channels {
                channels: config.channels,
            });
        }
        if !SAMPLE_RATES.contains(&config.sample_rate) {
            return Err(ConfigError::SampleRate {
                sample_rate: config.sample_rate,
            });
        }
        let rate = u128::from(config.sample_rate);
        if config.latency.as_nanos() * rate < 1_000_000_000 {
            return Err(ConfigError::Latency {
                latency: config.latency,
            });
        }
        if config.capacity < config.latency.saturating_mul(2) || config.capacity > MAX_CAPACITY {
            return Err(ConfigError::Capacity {
                capacity: config.capacity,
                latency: config.latency,
            });
        }
        // Both bounded above: at most 10 s × 384 kHz frames of 64 channels.
        let capacity = (config.capacity.as_nanos() * rate / 1_000_000_000) as u64;
        let channels = usize::from(config.channels);
        let samples = capacity as usize * channels;
        Ok(JitterBuffer {
            config,
            clock,
            channels,
            capacity,
            latency: config.latency,
            ring: vec![0; samples],
            tags: vec![0; capacity as usize],
            scratch: vec![0; samples.min(MAX_DATAGRAM_SAMPLES)],
            stream: None,
            jitter: InterarrivalJitter::new(),
            stats: StreamStats::default(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &JitterConfig {
        &self.config
    }

    /// The playout clock.
    pub fn clock(&self) -> &C {
        &self.clock
    }

    /// The counters.
    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Ring size in frames.
    pub fn capacity_frames(&self) -> u64 {
        self.capacity
    }

    /// Position of the next frame to be pulled; `None` before the first packet.
    pub fn position(&self) -> Option<u64> {
        self.stream.map(|s| s.read)
    }

    /// When the next frame becomes due (possibly already past); `None` before the first
    /// packet. The engine may simply pull on its block tick instead.
    pub fn next_deadline(&self) -> Option<MonoTime> {
        self.clock.due_time(self.stream?.read)
    }

    /// Takes one datagram that arrived at `now`.
    pub fn push(&mut self, now: MonoTime, datagram: &[u8]) -> PushOutcome {
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        let Ok(packet) = RtpPacket::parse(datagram) else {
            self.stats.malformed += 1;
            return PushOutcome::Malformed;
        };
        let payload_type = packet.payload_type();
        self.stats.payload_type = Some(payload_type);
        if self
            .config
            .payload_type
            .is_some_and(|pt| pt != payload_type)
        {
            self.stats.wrong_payload_type += 1;
            return PushOutcome::WrongPayloadType;
        }
        let frames = match decode_into(
            self.config.format,
            self.config.channels,
            packet.payload(),
            &mut self.scratch,
        ) {
            Ok(frames) if frames > 0 => frames,
            _ => {
                self.stats.malformed += 1;
                return PushOutcome::Malformed;
            }
        };
        let ssrc = packet.ssrc();
        let seq = packet.sequence().0;
        let timestamp = packet.timestamp().0;

        let Some(mut stream) = self.stream else {
            let position = u64::from(timestamp);
            self.begin(now, None, ssrc, seq, timestamp, frames);
            self.store(now, position, seq_start(seq), frames);
            return PushOutcome::Started { position, frames };
        };
        if stream.ssrc != ssrc {
            self.stats.ssrc_changes += 1;
            return self.resync(now, ResyncReason::SsrcChange, ssrc, seq, timestamp, frames);
        }
        self.jitter.update(now, timestamp, self.config.sample_rate);
        self.stats.jitter = self.jitter.jitter();

        // RFC 3550 §A.1-style extension: the nearest value to the reference with the same
        // low bits (exact while packets are less than half the number space apart).
        let seq_ext = stream
            .max_seq
            .saturating_add_signed(i64::from(seq.wrapping_sub(stream.max_seq as u16) as i16));
        let position = i128::from(stream.max_start)
            + i128::from(timestamp.wrapping_sub(stream.max_start as u32) as i32);
        let capacity = i128::from(self.capacity);
        let relative = position - i128::from(stream.read);
        if relative < -capacity || relative + frames as i128 > capacity {
            return self.resync(
                now,
                ResyncReason::TimestampJump,
                ssrc,
                seq,
                timestamp,
                frames,
            );
        }
        if relative < 0 {
            let since = *stream.late_since.get_or_insert(now);
            stream.late_run += 1;
            if stream.late_run > MIN_LATE_RUN && now.duration_since(since) >= self.latency {
                return self.resync(
                    now,
                    ResyncReason::PersistentlyLate,
                    ssrc,
                    seq,
                    timestamp,
                    frames,
                );
            }
            self.stream = Some(stream);
            self.stats.packets_late += 1;
            return PushOutcome::Late;
        }
        // In range: 0 ≤ position < read + capacity.
        let position = position as u64;
        if (position..position + frames as u64).any(|p| self.tags[self.index(p)] != 0) {
            self.stats.packets_duplicate += 1;
            return PushOutcome::Duplicate;
        }
        let reordered = seq_ext < stream.max_seq;
        self.store(now, position, seq_ext, frames);
        if reordered {
            self.stats.packets_reordered += 1;
            PushOutcome::Reordered { position, frames }
        } else {
            PushOutcome::Stored { position, frames }
        }
    }

    /// Writes the frames due at `now` (as many as fit in `out`, interleaved) and advances the
    /// playout position past them.
    pub fn pull(&mut self, now: MonoTime, out: &mut [i32]) -> Pulled {
        self.pull_with_gaps(now, out, |_, _| {})
    }

    /// [`JitterBuffer::pull`], calling `on_gap(position, frames)` for each run of concealed
    /// frames it wrote (a run that continues into the next pull is reported again there, from
    /// that pull's first frame), so a recorder can say where its silence came from.
    pub fn pull_with_gaps(
        &mut self,
        now: MonoTime,
        out: &mut [i32],
        mut on_gap: impl FnMut(u64, usize),
    ) -> Pulled {
        let Some(mut stream) = self.stream else {
            return Pulled {
                frames: 0,
                position: 0,
            };
        };
        stream.last_pull = Some(now);
        let due = self.clock.due_end(now).unwrap_or(stream.read);
        let room = (out.len() / self.channels) as u64;
        let frames = due.saturating_sub(stream.read).min(room) as usize;
        let start = stream.read;
        let ch = self.channels;
        let mut run: Option<(u64, usize)> = None;
        for (k, frame) in out.chunks_exact_mut(ch).take(frames).enumerate() {
            let index = self.index(start + k as u64);
            let tag = self.tags[index];
            if tag == 0 {
                frame.fill(0);
                self.stats.frames_concealed += 1;
                stream.in_gap = true;
                match &mut run {
                    Some((_, n)) => *n += 1,
                    None => run = Some((start + k as u64, 1)),
                }
                continue;
            }
            if let Some((at, n)) = run.take() {
                on_gap(at, n);
            }
            let seq = tag - 1;
            if stream.in_gap {
                if let Some(previous) = stream.last_played_seq {
                    self.stats.packets_lost += seq.saturating_sub(previous + 1);
                }
                stream.in_gap = false;
            }
            stream.last_played_seq = Some(seq);
            frame.copy_from_slice(&self.ring[index * ch..(index + 1) * ch]);
            self.tags[index] = 0;
        }
        if let Some((at, n)) = run {
            on_gap(at, n);
        }
        stream.read = start + frames as u64;
        self.stats.buffer_fill_frames = stream.end.saturating_sub(stream.read);
        self.stream = Some(stream);
        Pulled {
            frames,
            position: start,
        }
    }

    fn index(&self, position: u64) -> usize {
        (position % self.capacity) as usize
    }

    /// Starts the stream state at a packet; `previous` is the stream it replaces.
    fn begin(
        &mut self,
        now: MonoTime,
        previous: Option<Stream>,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        frames: usize,
    ) {
        let position = u64::from(timestamp);
        self.clock.start(now, position);
        // Keep the output continuous in time: resume the new stream where the previous pull
        // ended, mapped into the new positions (within the ring).
        let read = previous
            .and_then(|p| p.last_pull)
            .and_then(|t| self.clock.due_end(t))
            .map_or(position, |due| {
                due.min(position)
                    .max((position + frames as u64).saturating_sub(self.capacity))
            });
        self.jitter = InterarrivalJitter::new();
        self.jitter.update(now, timestamp, self.config.sample_rate);
        self.stats.jitter = self.jitter.jitter();
        self.stats.ssrc = Some(ssrc);
        self.stream = Some(Stream {
            ssrc,
            max_seq: seq_start(seq),
            max_start: position,
            end: position,
            read,
            last_played_seq: None,
            in_gap: false,
            late_since: None,
            late_run: 0,
            last_pull: previous.and_then(|p| p.last_pull),
        });
    }

    fn resync(
        &mut self,
        now: MonoTime,
        reason: ResyncReason,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        frames: usize,
    ) -> PushOutcome {
        self.stats.resyncs += 1;
        self.tags.fill(0);
        let previous = self.stream;
        if let Some(p) = &previous {
            self.stats.frames_discarded += p.end.saturating_sub(p.read);
        }
        self.begin(now, previous, ssrc, seq, timestamp, frames);
        let position = u64::from(timestamp);
        self.store(now, position, seq_start(seq), frames);
        PushOutcome::Resynced {
            reason,
            position,
            frames,
        }
    }

    /// Copies `frames` decoded frames from the scratch buffer into the ring at `position`.
    /// The caller checked that the span lies within `[read, read + capacity)`.
    fn store(&mut self, now: MonoTime, position: u64, seq_ext: u64, frames: usize) {
        let ch = self.channels;
        let first = self.index(position);
        let until_wrap = (self.capacity as usize - first).min(frames);
        let (head, tail) = self.scratch[..frames * ch].split_at(until_wrap * ch);
        self.ring[first * ch..(first + until_wrap) * ch].copy_from_slice(head);
        self.ring[..tail.len()].copy_from_slice(tail);
        self.tags[first..first + until_wrap].fill(seq_ext + 1);
        self.tags[..frames - until_wrap].fill(seq_ext + 1);
        if let Some(stream) = &mut self.stream {
            stream.max_seq = stream.max_seq.max(seq_ext);
            stream.max_start = stream.max_start.max(position);
            stream.end = stream.end.max(position + frames as u64);
            stream.late_since = None;
            stream.late_run = 0;
            self.stats.buffer_fill_frames = stream.end.saturating_sub(stream.read);
        }
        self.clock.on_arrival(now, position);
    }
}

/// Extended sequence number of a stream's first packet: cycle 1 of RFC 3550 §A.1, so that
/// packets reordered before it never go below zero.
fn seq_start(seq: u16) -> u64 {
    (1 << 16) | u64::from(seq)
}
