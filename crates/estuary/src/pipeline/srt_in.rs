//! SRT inputs: one thread per input reads its SRT connection, demuxes the transport stream,
//! decodes the first audio stream it can, and re-clocks the audio through a drift buffer
//! (`estuary_engine::drift`) into the route's output rings, exactly like a generator: on a
//! 1 ms tick of our monotonic clock, `k ms × rate` frames by tick `k`. So the AES67 outputs,
//! paced by the same clock, neither starve nor overflow whatever the sender's clock does.
//!
//! Audio missing between access units (SRT dropped packets it could not recover) is found by
//! the PTS and replaced by silence of exactly its length, so the buffer does not take the
//! hole for clock drift. While no peer is connected the outputs get silence.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use estuary_engine::drift::{Conversion, DriftBuffer, DriftStats};
use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::decode::{DecodeStats, EsDecoder, PcmFormat};
use estuary_io::srt::{SrtReceived, SrtReceiver, SrtState};
use estuary_wire::ts::{AccessUnit, CLOCK_90K, PTS_MODULO, TsDemuxStats, TsDemuxer};

use super::InputSnapshot;
use super::ingest::OutputFeed;
use crate::config::{InputConfig, ResolvedStream};
use crate::shutdown::Stop;
use crate::status::SrtInputStatus;

const TICK: Duration = Duration::from_millis(1);
/// Messages read per tick at most, so a flood cannot hold up the outputs' audio.
const MAX_MESSAGES_PER_TICK: usize = 2_000;
/// A PTS gap up to this long is concealed with silence; a longer jump is a discontinuity.
const MAX_CONCEALED_90K: u64 = CLOCK_90K;
/// Gaps shorter than this (rounding in senders' PTS) are ignored: 1 ms.
const MIN_GAP_90K: u64 = 90;

/// What the input thread publishes; read by the status view.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SrtInputCounters {
    pub messages: u64,
    pub demux: TsDemuxStats,
    pub codec: Option<&'static str>,
    pub format: Option<PcmFormat>,
    pub decode: DecodeStats,
    pub unsupported_streams: u64,
    pub concealed_frames: u64,
    pub pts_discontinuities: u64,
    pub conversion: Option<Conversion>,
    pub drift: DriftStats,
    /// Counters of the connections before the current one.
    pub drift_before: DriftStats,
    pub demux_before: TsDemuxStats,
    pub decode_before: DecodeStats,
}

/// Shared between the input thread and the status view.
#[derive(Debug)]
pub(super) struct SrtInputShared {
    pub receiver: Mutex<SrtReceiver>,
    pub counters: Mutex<SrtInputCounters>,
}

/// One SRT input's thread state.
pub(super) struct SrtInput {
    name: String,
    shared: Arc<SrtInputShared>,
    snapshot: Arc<Mutex<InputSnapshot>>,
    rings: Vec<OutputFeed>,
    channels: usize,
    rate: u32,
    buffer: Duration,
    stream: Option<StreamState>,
    connections: u64,
    counters: SrtInputCounters,
    message: Vec<u8>,
    scratch: Vec<i32>,
    ring_overruns: u64,
}

/// The transport stream of the current connection.
struct StreamState {
    demux: TsDemuxer,
    /// The elementary stream decoded, once one was found.
    decoder: Option<(u16, EsDecoder)>,
    /// PIDs that cannot be decoded (counted once each).
    unsupported: Vec<u16>,
    drift: Option<DriftBuffer>,
    /// Where the next access unit should start (90 kHz).
    expected_pts: Option<u64>,
    mapped: Vec<i32>,
}

impl SrtInput {
    /// Starts the SRT connection of `input` (listening or calling at once) and returns the
    /// thread's state and what the status view reads.
    pub fn start(
        input: &InputConfig,
        stream: &ResolvedStream,
        rings: Vec<OutputFeed>,
        snapshot: Arc<Mutex<InputSnapshot>>,
    ) -> anyhow::Result<(Self, Arc<SrtInputShared>)> {
        let name = input.name.get_ref().clone();
        let link = input.srt_link(stream.destination);
        let receiver =
            SrtReceiver::start(link).map_err(|e| anyhow::anyhow!("input {name}: {e}"))?;
        let shared = Arc::new(SrtInputShared {
            receiver: Mutex::new(receiver),
            counters: Mutex::new(SrtInputCounters::default()),
        });
        *super::lock(&snapshot) = InputSnapshot::default();
        let channels = usize::from(stream.channels);
        let this = Self {
            name,
            shared: Arc::clone(&shared),
            snapshot,
            rings,
            channels,
            rate: stream.sample_rate,
            buffer: input.srt_buffer(),
            stream: None,
            connections: 0,
            counters: SrtInputCounters::default(),
            message: vec![0; 1500],
            // A late tick makes several ticks' frames at once; 50 ms of room covers a stall.
            scratch: vec![0; (stream.sample_rate as usize / 20 + 1) * channels],
            ring_overruns: 0,
        };
        Ok((this, shared))
    }

    pub fn run(mut self, halt: &Stop) {
        let start = monotonic_now();
        let mut tick = 0u64;
        let mut made = 0u64;
        let mut last_message: Option<(MonoTime, u64)> = None;
        while !halt.requested() {
            tick += 1;
            let elapsed = TICK.as_nanos() as u64 * tick;
            sleep_until(MonoTime::from_nanos(start.as_nanos() + elapsed));
            let now = monotonic_now();
            if self.drain() {
                last_message = Some((now, made));
            }
            let due = u64::try_from(u128::from(elapsed) * u128::from(self.rate) / 1_000_000_000)
                .unwrap_or(u64::MAX);
            while made < due {
                let frames = (due - made).min((self.scratch.len() / self.channels) as u64);
                let samples = frames as usize * self.channels;
                match self.stream.as_mut().and_then(|s| s.drift.as_mut()) {
                    Some(drift) => {
                        drift.pull(&mut self.scratch[..samples]);
                    }
                    None => self.scratch[..samples].fill(0),
                }
                self.ring_overruns += super::ingest::feed_rings(
                    &mut self.rings,
                    &self.scratch[..samples],
                    self.channels,
                    now,
                    Some(made),
                );
                made += frames;
            }
            if tick.is_multiple_of(20) {
                self.publish(last_message);
            }
        }
        self.publish(last_message);
    }

    /// Reads what the connection holds; true when anything came.
    fn drain(&mut self) -> bool {
        let mut got = false;
        for _ in 0..MAX_MESSAGES_PER_TICK {
            let received = {
                // The status view holds this lock only to read the state; the audio waits
                // for the next tick rather than for it.
                let Ok(mut receiver) = self.shared.receiver.try_lock() else {
                    break;
                };
                (receiver.recv(&mut self.message), receiver.connections())
            };
            let (received, connections) = received;
            if connections != self.connections {
                self.connections = connections;
                self.new_connection();
            }
            let SrtReceived::Message(n) = received else {
                break;
            };
            got = true;
            self.counters.messages += 1;
            let Some(stream) = self.stream.as_mut() else {
                continue;
            };
            let counters = &mut self.counters;
            let (channels, rate, buffer, name) =
                (self.channels, self.rate, self.buffer, &self.name);
            let StreamState {
                demux,
                decoder,
                unsupported,
                drift,
                expected_pts,
                mapped,
            } = stream;
            demux.push_with(&self.message[..n], |unit| {
                on_unit(
                    unit,
                    (decoder, unsupported, drift, expected_pts, mapped),
                    (channels, rate, buffer, name),
                    counters,
                );
            });
        }
        got
    }

    /// A new connection: a new transport stream, decoder and buffer.
    fn new_connection(&mut self) {
        if let Some(old) = self.stream.take() {
            let c = &mut self.counters;
            c.demux_before = add_demux(c.demux_before, old.demux.stats());
            if let Some((_, decoder)) = &old.decoder {
                c.decode_before.frames += decoder.stats().frames;
                c.decode_before.errors += decoder.stats().errors;
            }
            if let Some(drift) = &old.drift {
                add_drift(&mut c.drift_before, &drift.stats());
            }
        }
        info!(input = %self.name, "SRT input: new connection; waiting for PAT/PMT");
        self.stream = Some(StreamState {
            demux: TsDemuxer::new(),
            decoder: None,
            unsupported: Vec::new(),
            drift: None,
            expected_pts: None,
            mapped: Vec::new(),
        });
    }

    fn publish(&mut self, last_message: Option<(MonoTime, u64)>) {
        if let Some(stream) = &self.stream {
            let c = &mut self.counters;
            c.demux = add_demux(c.demux_before, stream.demux.stats());
            if let Some((_, decoder)) = &stream.decoder {
                c.decode = decoder.stats();
                c.decode.frames += c.decode_before.frames;
                c.decode.errors += c.decode_before.errors;
            }
            if let Some(drift) = &stream.drift {
                self.counters.drift = drift.stats();
            }
        }
        if let Ok(mut shared) = self.shared.counters.try_lock() {
            *shared = self.counters;
        }
        if let Ok(mut snapshot) = self.snapshot.try_lock() {
            snapshot.ring_overruns = self.ring_overruns;
            // The health monitor judges "no packets" by the last message.
            snapshot.last_packet = last_message;
        }
    }
}

fn add_demux(a: TsDemuxStats, b: TsDemuxStats) -> TsDemuxStats {
    TsDemuxStats {
        packets: a.packets + b.packets,
        skipped_bytes: a.skipped_bytes + b.skipped_bytes,
        continuity_errors: a.continuity_errors + b.continuity_errors,
        malformed: a.malformed + b.malformed,
        access_units: a.access_units + b.access_units,
    }
}

fn add_drift(total: &mut DriftStats, s: &DriftStats) {
    total.underruns += s.underruns;
    total.underrun_frames += s.underrun_frames;
    total.overruns += s.overruns;
    total.overrun_frames += s.overrun_frames;
    total.frames_played += s.frames_played;
    total.steered_pulls += s.steered_pulls;
    total.start_skipped_frames += s.start_skipped_frames;
}

type UnitState<'a> = (
    &'a mut Option<(u16, EsDecoder)>,
    &'a mut Vec<u16>,
    &'a mut Option<DriftBuffer>,
    &'a mut Option<u64>,
    &'a mut Vec<i32>,
);

/// One access unit: pick the stream, conceal a gap before it, decode it into the buffer.
fn on_unit(
    unit: AccessUnit,
    (decoder, unsupported, drift, expected_pts, mapped): UnitState<'_>,
    (channels, rate, buffer, name): (usize, u32, Duration, &str),
    counters: &mut SrtInputCounters,
) {
    if decoder.is_none() && !unsupported.contains(&unit.pid) {
        match EsDecoder::new(unit.stream) {
            Ok(made) => {
                info!(input = %name, pid = unit.pid, codec = made.name(), "SRT input: decoding");
                counters.codec = Some(made.name());
                *decoder = Some((unit.pid, made));
            }
            Err(e) => {
                warn!(input = %name, pid = unit.pid, error = %e, "SRT input: stream not decodable");
                unsupported.push(unit.pid);
                counters.unsupported_streams += 1;
            }
        }
    }
    let Some((pid, es)) = decoder.as_mut() else {
        return;
    };
    if *pid != unit.pid {
        return;
    }
    // A gap before this unit (lost packets): silence of its length, at the input rate.
    if let (Some(pts), Some(expected), Some(buf)) = (unit.pts, *expected_pts, drift.as_mut()) {
        let ahead = pts.wrapping_sub(expected) % PTS_MODULO;
        if (MIN_GAP_90K..MAX_CONCEALED_90K).contains(&ahead) {
            let frames = (ahead * u64::from(buf.in_rate()) / CLOCK_90K) as usize;
            mapped.clear();
            mapped.resize(frames * channels, 0);
            buf.push(mapped);
            counters.concealed_frames += frames as u64;
            es.reset();
        } else if ahead >= MAX_CONCEALED_90K && PTS_MODULO - ahead > MAX_CONCEALED_90K {
            counters.pts_discontinuities += 1;
        }
    }
    let mut decoded_frames = 0u64;
    let mut unit_rate = 0u32;
    let lossless = es.lossless();
    es.decode(&unit.data, |samples, format| {
        if format.channels == 0 {
            return;
        }
        counters.format = Some(format);
        let stale = drift
            .as_ref()
            .is_none_or(|d| d.in_rate() != format.sample_rate);
        if stale {
            let conversion = if lossless {
                Conversion::Lossless
            } else {
                Conversion::Resample
            };
            match DriftBuffer::new(channels, format.sample_rate, rate, buffer, conversion) {
                Ok(made) => {
                    counters.conversion = Some(made.conversion());
                    *drift = Some(made);
                }
                Err(e) => {
                    warn!(input = %name, error = %e, "SRT input: cannot buffer decoded audio");
                    return;
                }
            }
        }
        let Some(buf) = drift.as_mut() else {
            return;
        };
        map_channels(samples, format.channels, channels, mapped);
        buf.push(mapped);
        decoded_frames += (samples.len() / format.channels) as u64;
        unit_rate = format.sample_rate;
    });
    if let Some(pts) = unit.pts
        && unit_rate > 0
    {
        *expected_pts =
            Some((pts + decoded_frames * CLOCK_90K / u64::from(unit_rate)) % PTS_MODULO);
    }
}

/// Maps decoded channels onto the input's: mono feeds every channel; otherwise channel `i`
/// takes decoded channel `i`, and channels the stream lacks are silent.
fn map_channels(samples: &[i32], from: usize, to: usize, out: &mut Vec<i32>) {
    out.clear();
    for frame in samples.chunks_exact(from) {
        for i in 0..to {
            let src = if from == 1 {
                Some(0)
            } else {
                (i < from).then_some(i)
            };
            out.push(src.and_then(|s| frame.get(s).copied()).unwrap_or(0));
        }
    }
}

/// The status of an SRT input, from its connection and published counters.
pub(super) fn status(shared: &SrtInputShared, rate: u32) -> SrtInputStatus {
    let link = super::lock(&shared.receiver).status();
    let c = *super::lock(&shared.counters);
    let (state, peer) = match &link.state {
        SrtState::Connecting => ("connecting", None),
        SrtState::Listening => ("listening", None),
        SrtState::Connected { peer } => ("connected", Some(peer.to_string())),
        SrtState::Backoff { .. } => ("backoff", None),
        _ => ("stopped", None),
    };
    let mut drift = c.drift_before;
    add_drift(&mut drift, &c.drift);
    let ms = |frames: f64| frames * 1000.0 / f64::from(rate.max(1));
    SrtInputStatus {
        state: state.into(),
        peer,
        last_error: link.last_error.clone(),
        reconnects: link.reconnects,
        connect_failures: link.connect_failures,
        packets: link.received_packets,
        bytes: link.received_bytes,
        lost_packets: link.receive_loss_packets,
        retransmitted_packets: link.received_retransmitted_packets,
        dropped_packets: link.receive_dropped_packets,
        undecrypted_packets: link.undecrypted_packets,
        rtt_ms: link.rtt_ms,
        messages: c.messages,
        ts_packets: c.demux.packets,
        continuity_errors: c.demux.continuity_errors,
        ts_skipped_bytes: c.demux.skipped_bytes,
        ts_malformed: c.demux.malformed,
        codec: c.codec.map(str::to_owned),
        codec_sample_rate: c.format.map_or(0, |f| f.sample_rate),
        codec_channels: c.format.map_or(0, |f| f.channels as u32),
        frames_decoded: c.decode.frames,
        decode_errors: c.decode.errors,
        unsupported_streams: c.unsupported_streams,
        concealed_frames: c.concealed_frames,
        pts_discontinuities: c.pts_discontinuities,
        conversion: c.conversion.map(|conv| {
            match conv {
                Conversion::Resample => "resample",
                Conversion::Lossless => "lossless",
            }
            .to_owned()
        }),
        ratio: c.drift.ratio,
        correction_ppm: c.drift.correction_ppm,
        buffer_ms: ms(c.drift.fill_frames),
        buffer_target_ms: ms(c.drift.target_frames as f64),
        burst_ms: ms(c.drift.burst_frames as f64),
        underruns: drift.underruns,
        underrun_frames: drift.underrun_frames,
        overruns: drift.overruns,
        overrun_frames: drift.overrun_frames,
        steered_ticks: drift.steered_pulls,
        start_skipped_frames: drift.start_skipped_frames,
        frames_played: drift.frames_played,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_mapping() {
        let mut out = Vec::new();
        map_channels(&[1, 2], 1, 2, &mut out);
        assert_eq!(out, vec![1, 1, 2, 2]);
        map_channels(&[1, 2, 3, 4], 2, 4, &mut out);
        assert_eq!(out, vec![1, 2, 0, 0, 3, 4, 0, 0]);
        map_channels(&[1, 2, 3, 4, 5, 6], 6, 2, &mut out);
        assert_eq!(out, vec![1, 2]);
    }
}
