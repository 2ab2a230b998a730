//! AES67 transmit outputs: each takes the routed input's frames from its ring and sends
//! packet `k` at `start + k × ptime`; one thread serves every output (`aes67_tx`: absolute
//! `clock_nanosleep` to the earliest deadline, then one `sendmmsg` per socket, so
//! scheduling jitter never accumulates into rate error). RTP timestamps count the media
//! clock: `CLOCK_TAI × rate` at the first packet, then exactly `frames_per_packet` per
//! packet, so the SDP says `mediaclk:direct=0`.
//!
//! With a synchronized PTP clock (`[clock]`, see `crate::clock`) the media clock is PTP
//! time instead: packet `k` carries RTP time `(F0 + k × frames) mod 2³²`, where `F0` is
//! the PTP time of the first packet in frames, and leaves when PTP time reaches it, so
//! the stream runs at the grandmaster's rate. The SDP then names the grandmaster
//! (`a=ts-refclk:ptp=IEEE1588-2008:<gm>:<domain>`). When the clock locks, unlocks or
//! changes grandmaster the timeline is rebased and the SDP re-announced.
//!
//! The ingest thread fills the ring at the input's playout times, in bursts of its 1 ms
//! tick; the sender starts once a prefill of two ticks is buffered, so a burst arriving a
//! little late never starves a packet. If it does (the ingest thread stalled), the slot is
//! skipped and counted as an underrun; if the ring grows beyond the prefill by more than a
//! few milliseconds (the input's clock runs faster than ours), the oldest frames are
//! dropped and counted, so latency stays bounded.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use tracing::{info, warn};

use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, tai_now_ns};
use estuary_io::mcast::{self, Interface};
use estuary_io::sendbatch::SockAddr;
use estuary_wire::payload::encode_into;
use estuary_wire::rtp::RtpPacketBuilder;
use estuary_wire::sdp;
use estuary_wire::units::{RtpTimestamp, SeqNum};

use super::OutputSnapshot;
use super::TRANSMIT_SLACK as SLACK;
use super::aes67_tx::{Batch, Leg};
use crate::announce::{self, Announcement, RavennaAnnouncement};
use crate::clock::{MediaClock, MediaReference};
use crate::config::{Aes67Plan, OutputConfig, ResolvedStream};
use crate::shutdown::Stop;

/// Buffered ahead of the first packet: two ingest ticks.
const PREFILL: Duration = Duration::from_millis(2);
/// How long past its deadline a packet waits for audio before its slot is given up.
const UNDERRUN_GRACE: Duration = Duration::from_millis(5);
/// How often an empty ring is looked at again within the grace.
const RETRY: Duration = Duration::from_micros(100);
/// How often the counters are published.
const PUBLISH_EVERY: Duration = Duration::from_millis(20);
/// Packets due this soon after a wake-up go with it: a few µs early costs nothing, a
/// separate wake-up costs a context switch.
const COALESCE: Duration = Duration::from_micros(20);
/// How often an output waiting for its prefill is looked at.
const PREFILL_POLL: Duration = Duration::from_millis(1);

/// What an AES67 output keeps across route restarts: its RTP identity and the SDP it
/// announces (re-announced only when it changes).
pub(super) struct Aes67Sender {
    pub ssrc: u32,
    pub initial_sequence: u16,
    published: Mutex<Option<Published>>,
}

struct Published {
    sdp: String,
    _sap: Option<Announcement>,
    _ravenna: Option<RavennaAnnouncement>,
}

impl Aes67Sender {
    pub fn new(output: &OutputConfig) -> Self {
        let seed = monotonic_now().as_nanos()
            ^ (u64::from(std::process::id()) << 32)
            ^ u64::from(output.address.port());
        let mix = splitmix64(seed);
        Self {
            ssrc: mix as u32,
            initial_sequence: (mix >> 32) as u16,
            published: Mutex::new(None),
        }
    }

    /// The SDP being announced, once the route has started.
    pub fn sdp(&self) -> Option<String> {
        super::lock(&self.published).as_ref().map(|p| p.sdp.clone())
    }

    /// Writes and announces `sdp` unless it is the one already out.
    fn publish(&self, output: &OutputConfig, sdp: String, iface: Option<&Interface>) {
        let mut published = super::lock(&self.published);
        if published.as_ref().is_some_and(|p| p.sdp == sdp) {
            return;
        }
        // Dropping the old announcements sends their deletions before the new ones start.
        *published = None;
        let name = output.name.get_ref();
        if let Some(file) = &output.sdp_file
            && let Err(e) = std::fs::write(file.get_ref(), &sdp)
        {
            warn!(output = %name, file = %file.get_ref().display(), error = %e, "cannot write the SDP");
        }
        let sap = if output.sap.unwrap_or(true) {
            let destination = announce::default_sap_destination(output.address.ip());
            let ttl = output.ttl.as_ref().map_or(32, |t| *t.get_ref());
            Announcement::start(
                &sdp,
                destination,
                iface.cloned(),
                ttl,
                None,
                Duration::from_secs(30),
            )
            .inspect_err(|e| warn!(output = %name, error = %format!("{e:#}"), "SAP announcement"))
            .ok()
        } else {
            None
        };
        let ravenna = if output.ravenna.unwrap_or(false) {
            RavennaAnnouncement::start(
                &session_name(output),
                &sdp,
                SocketAddr::from(([0, 0, 0, 0], 0)),
                iface,
            )
            .inspect_err(
                |e| warn!(output = %name, error = %format!("{e:#}"), "RAVENNA announcement"),
            )
            .ok()
        } else {
            None
        };
        *published = Some(Published {
            sdp,
            _sap: sap,
            _ravenna: ravenna,
        });
    }
}

fn session_name(output: &OutputConfig) -> String {
    output
        .session_name
        .clone()
        .unwrap_or_else(|| output.name.get_ref().clone())
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The sender's own address for the SDP `o=` line.
fn origin_address(iface: Option<&Interface>, destination: IpAddr) -> IpAddr {
    if let Some(ip) = iface.and_then(|i| i.ipv4) {
        return IpAddr::V4(ip);
    }
    if destination.is_loopback() {
        return destination;
    }
    mcast::list_interfaces()
        .ok()
        .and_then(|all| {
            all.into_iter()
                .filter(|i| i.up && i.multicast)
                .find_map(|i| i.ipv4.filter(|a| !a.is_loopback()))
        })
        .map_or(IpAddr::from([127, 0, 0, 1]), IpAddr::V4)
}

/// One AES67 output, stepped by the transmit thread ([`super::aes67_tx`]).
pub(super) struct Aes67Worker {
    pub name: String,
    pub frame: usize,
    consumer: rtrb::Consumer<i32>,
    in_channels: usize,
    map: Vec<usize>,
    plan: Aes67Plan,
    sample_rate: u32,
    /// Where each packet goes: one leg, or two for ST 2022-7.
    legs: Vec<Leg>,
    /// ST 2022-7: the second leg's destination, for the SDP.
    second: Option<SocketAddr>,
    ssrc: u32,
    sequence: SeqNum,
    /// The output sends every input channel in order (no reordering copy).
    identity: bool,
    input_block: Vec<i32>,
    frame_block: Vec<i32>,
    packet: Vec<u8>,
    shared: Arc<Mutex<OutputSnapshot>>,
    snapshot: OutputSnapshot,
    /// For re-announcing when the media clock's reference changes.
    sender: Arc<Aes67Sender>,
    output: OutputConfig,
    sdp_base: sdp::SenderSdp,
    iface: Option<Interface>,
    clock: Option<Arc<MediaClock>>,
    halt: Stop,
    /// `None` until the prefill is buffered.
    live: Option<Live>,
}

/// A started output's place on its timeline.
struct Live {
    timeline: Timeline,
    /// RTP time of packet `k`.
    timestamp: RtpTimestamp,
    k: u64,
    high_water: usize,
    last_publish: MonoTime,
}

/// What packet deadlines and RTP time follow.
enum Timeline {
    /// `start + k × ptime` on the monotonic clock; RTP time from `CLOCK_TAI` at the start.
    System { start: MonoTime },
    /// Packet `k` leaves when PTP time reaches frame `first_frame + k × frames`.
    Ptp {
        first_frame: u128,
        reference: MediaReference,
    },
}

impl Aes67Worker {
    /// Opens (or shares) the sockets, writes and announces the SDP. The worker stops when
    /// `halt` is requested.
    pub fn new(
        output: &OutputConfig,
        stream: &ResolvedStream,
        consumer: rtrb::Consumer<i32>,
        sender: &Arc<Aes67Sender>,
        (shared, halt): (Arc<Mutex<OutputSnapshot>>, Stop),
    ) -> anyhow::Result<Self> {
        let map = output.channel_map(stream.channels);
        let plan = output
            .aes67_plan(stream.sample_rate, map.len())
            .map_err(|(_, field, message)| anyhow::anyhow!("{field}: {message}"))?;
        let iface = match &output.interface {
            Some(spec) => Some(mcast::resolve_interface(spec.get_ref()).context("interface")?),
            None => None,
        };
        let mut legs = vec![open_leg(output.address, iface.as_ref(), &plan)?];
        let second = output
            .redundant_leg()
            .map_err(|(_, field, message)| anyhow::anyhow!("{field}: {message}"))?;
        if let Some(leg) = &second {
            // The second path's interface defaults to the first's, like an input's.
            let iface2 = match &leg.interface {
                Some(spec) => Some(mcast::resolve_interface(spec).context("redundant.interface")?),
                None => iface.clone(),
            };
            legs.push(open_leg(leg.address, iface2.as_ref(), &plan)?);
        }
        let second = second.map(|leg| leg.address);
        let snapshot = super::lock(&shared).clone();
        let channels = u16::try_from(map.len())?;
        let sdp_base = sdp::SenderSdp {
            session_id: u64::from(sender.ssrc),
            session_version: tai_now_ns() / 1_000_000_000,
            origin_address: origin_address(iface.as_ref(), output.address.ip()),
            name: session_name(output),
            info: Some(format!(
                "Estuary: {}",
                stream.label.as_deref().unwrap_or("-")
            )),
            destination: output.address.ip(),
            ttl: u8::try_from(plan.ttl).unwrap_or(u8::MAX),
            port: output.address.port(),
            payload_type: plan.payload_type,
            format: plan.format,
            sample_rate: stream.sample_rate,
            channels,
            ptime_ms: f64::from(plan.frames_per_packet) * 1000.0 / f64::from(stream.sample_rate),
            framecount: Some(plan.frames_per_packet),
            media_clock_offset: 0,
            ..sdp::SenderSdp::default()
        };
        let clock = crate::clock::current();
        let reference = clock.as_ref().and_then(|c| c.reference());
        sender.publish(
            output,
            sdp_with_reference(&sdp_base, reference.as_ref(), second),
            iface.as_ref(),
        );
        let frame = plan.frames_per_packet as usize;
        let samples = frame * map.len();
        info!(
            output = %output.name.get_ref(),
            destination = %output.address,
            format = plan.format.encoding_name(),
            channels,
            rate = stream.sample_rate,
            frames_per_packet = plan.frames_per_packet,
            dscp = plan.dscp,
            "transmitting AES67"
        );
        Ok(Self {
            name: output.name.get_ref().clone(),
            frame,
            consumer,
            in_channels: usize::from(stream.channels),
            sample_rate: stream.sample_rate,
            legs,
            second,
            ssrc: sender.ssrc,
            // A restarted route continues the sequence, so receivers count no loss for it.
            sequence: SeqNum(sender.initial_sequence).wrapping_add(snapshot.access_units as u16),
            identity: map.len() == usize::from(stream.channels)
                && map.iter().enumerate().all(|(i, &ch)| i == ch),
            input_block: vec![0; frame * usize::from(stream.channels)],
            frame_block: vec![0; samples],
            packet: vec![0; 12 + samples * plan.format.bytes_per_sample()],
            map,
            plan,
            shared,
            snapshot,
            sender: Arc::clone(sender),
            output: output.clone(),
            sdp_base,
            iface,
            clock,
            halt,
            live: None,
        })
    }

    /// Whether the route asked this output to stop.
    pub fn halted(&self) -> bool {
        self.halt.requested()
    }

    pub fn legs_mut(&mut self) -> &mut [Leg] {
        &mut self.legs
    }

    /// The kernel refused one of this output's datagrams.
    pub fn count_send_error(&mut self) {
        self.snapshot.send_errors += 1;
    }

    /// Publishes the final counters; the transmit thread is letting go.
    pub fn finish(&mut self) {
        *super::lock(&self.shared) = self.snapshot.clone();
    }

    /// Queues every packet due by `now` (output `me` of the transmit thread) into
    /// `batches`; returns when this output next needs the thread.
    pub fn step(&mut self, now: MonoTime, me: usize, batches: &mut [Batch]) -> MonoTime {
        let mut live = match self.live.take() {
            Some(live) => live,
            None if self.frames_buffered() < self.prefill() => return after(now, PREFILL_POLL),
            None => self.begin(now),
        };
        let next = self.queue_due(&mut live, now, me, batches);
        if now.duration_since(live.last_publish) >= PUBLISH_EVERY {
            if self.reference_changed(&live.timeline) {
                // Locked, unlocked or a new grandmaster: RTP time jumps to the new
                // reference (the sequence continues), and receivers get the new SDP.
                self.snapshot.clock_rebases += 1;
                live = Live {
                    last_publish: live.last_publish,
                    ..self.begin(now)
                };
            }
            if let Ok(mut shared) = self.shared.try_lock() {
                *shared = self.snapshot.clone();
                live.last_publish = now;
            }
        }
        self.live = Some(live);
        next
    }

    /// Frames buffered before the first packet: one packet and two ingest ticks.
    fn prefill(&self) -> usize {
        self.frame + self.frames_in(PREFILL)
    }

    /// Starts a timeline at the next packet-time boundary after `now`, and announces it.
    fn begin(&self, now: MonoTime) -> Live {
        let (timeline, timestamp) = self.timeline(now);
        self.announce(&timeline);
        Live {
            timeline,
            timestamp,
            k: 0,
            // A feed that comes in bursts (a generator's ticks) starts with more than the
            // prefill; the slack counts from whichever is larger.
            high_water: self.prefill().max(self.frames_buffered()) + self.frames_in(SLACK),
            last_publish: now,
        }
    }

    /// Queues the packets due by `now`; returns the next deadline.
    fn queue_due(
        &mut self,
        live: &mut Live,
        now: MonoTime,
        me: usize,
        batches: &mut [Batch],
    ) -> MonoTime {
        let horizon = after(now, COALESCE);
        let period = self.offset_ns(1).max(1);
        loop {
            let Some(due) = self.due(&live.timeline, live.k) else {
                // The PTP clock went away under us: continue on the system clock.
                *live = self.begin(now);
                if self.due(&live.timeline, 0).is_none() {
                    return after(now, PREFILL_POLL);
                }
                continue;
            };
            if due > horizon {
                return due;
            }
            let late = Duration::from_nanos(now.as_nanos().saturating_sub(due.as_nanos()));
            // Frames owed to packets already due are not excess: a sender woken late must
            // not drop the audio it is about to catch up with.
            let owed = (late.as_nanos() as u64 / period) as usize * self.frame;
            self.trim(live.high_water + owed);
            if self.queue_one(live.timestamp, live.k == 0, me, batches) {
                self.snapshot.handoff.record(late);
            } else if late < UNDERRUN_GRACE {
                // The feeding thread was held up (a stalled machine): look again shortly
                // rather than leave a hole in the stream.
                return after(now, RETRY);
            } else {
                if self.snapshot.underrun_packets == 0 {
                    warn!(output = %self.name, "no audio for a packet slot (underrun; further ones are counted)");
                }
                self.snapshot.underrun_packets += 1;
            }
            live.timestamp = live.timestamp.wrapping_add(self.plan.frames_per_packet);
            live.k += 1;
        }
    }

    /// A timeline whose first packet is due at the next packet-time boundary after `now`
    /// (of PTP time, or of the monotonic clock), so outputs of one packet time share their
    /// deadlines. Returns it with the RTP timestamp of its first packet.
    fn timeline(&self, now: MonoTime) -> (Timeline, RtpTimestamp) {
        let rate = u128::from(self.sample_rate);
        let frames = u128::from(self.plan.frames_per_packet).max(1);
        if let Some(clock) = &self.clock
            && let Some(reference) = clock.reference()
            && let Some(ptp_now) = clock.ptp_time_at(now)
        {
            // A little ahead, so the first deadline is not already past.
            let ahead = (u128::from(ptp_now) + 1_000_000) * rate / 1_000_000_000 + 1;
            let first_frame = ahead.div_ceil(frames) * frames;
            let timeline = Timeline::Ptp {
                first_frame,
                reference,
            };
            return (timeline, RtpTimestamp(first_frame as u32));
        }
        let period = self.offset_ns(1).max(1);
        let start = (now.as_nanos() / period + 1) * period;
        // The media clock at the first packet: TAI seconds × rate, wrapped to 32 bits.
        let tai = u128::from(tai_now_ns()) + u128::from(start - now.as_nanos());
        let first = (tai * rate / 1_000_000_000) as u32;
        (
            Timeline::System {
                start: MonoTime::from_nanos(start),
            },
            RtpTimestamp(first),
        )
    }

    /// Deadline of packet `k` of `timeline` (None: the PTP clock is gone).
    fn due(&self, timeline: &Timeline, k: u64) -> Option<MonoTime> {
        match timeline {
            Timeline::System { start } => {
                Some(MonoTime::from_nanos(start.as_nanos() + self.offset_ns(k)))
            }
            Timeline::Ptp { first_frame, .. } => {
                let frame = first_frame + u128::from(k) * u128::from(self.plan.frames_per_packet);
                let ptp_ns = frame * 1_000_000_000 / u128::from(self.sample_rate);
                self.clock.as_ref()?.mono_at(u64::try_from(ptp_ns).ok()?)
            }
        }
    }

    /// Whether the clock's reference differs from the one `timeline` follows.
    fn reference_changed(&self, timeline: &Timeline) -> bool {
        let now = self.clock.as_ref().and_then(|c| c.reference());
        match timeline {
            Timeline::System { .. } => now.is_some(),
            Timeline::Ptp { reference, .. } => now.as_ref() != Some(reference),
        }
    }

    /// Announces the SDP of `timeline`'s reference.
    fn announce(&self, timeline: &Timeline) {
        let reference = match timeline {
            Timeline::System { .. } => None,
            Timeline::Ptp { reference, .. } => Some(reference),
        };
        info!(
            output = %self.name,
            reference = reference.map_or("local", |r| r.ts_refclk.as_str()),
            "AES67 media clock"
        );
        self.sender.publish(
            &self.output,
            sdp_with_reference(&self.sdp_base, reference, self.second),
            self.iface.as_ref(),
        );
    }

    fn frames_buffered(&self) -> usize {
        self.consumer.slots() / self.in_channels
    }

    fn frames_in(&self, d: Duration) -> usize {
        (d.as_nanos() * u128::from(self.sample_rate) / 1_000_000_000) as usize
    }

    /// Deadline of packet `k` after the start, in ns: integer arithmetic, no drift.
    fn offset_ns(&self, k: u64) -> u64 {
        let ns = u128::from(k) * u128::from(self.plan.frames_per_packet) * 1_000_000_000
            / u128::from(self.sample_rate);
        u64::try_from(ns).unwrap_or(u64::MAX)
    }

    /// Drops the oldest frames beyond `high_water`.
    fn trim(&mut self, high_water: usize) {
        let buffered = self.frames_buffered();
        if buffered <= high_water {
            return;
        }
        let excess = buffered - (high_water - self.frames_in(SLACK) / 2);
        if let Ok(chunk) = self.consumer.read_chunk(excess * self.in_channels) {
            chunk.commit_all();
            if self.snapshot.frames_dropped == 0 {
                warn!(output = %self.name, frames = excess, buffered, "the input ran ahead of the media clock; frames dropped (further drops are counted)");
            }
            self.snapshot.frames_dropped += excess as u64;
        }
    }

    /// Queues the next packet from the ring on every leg; false when the ring does not
    /// hold one.
    fn queue_one(
        &mut self,
        timestamp: RtpTimestamp,
        first: bool,
        me: usize,
        batches: &mut [Batch],
    ) -> bool {
        let Ok(chunk) = self.consumer.read_chunk(self.frame * self.in_channels) else {
            return false;
        };
        let bytes = self.plan.format.bytes_per_sample();
        let header = RtpPacketBuilder {
            marker: first,
            payload_type: self.plan.payload_type,
            sequence: self.sequence,
            timestamp,
            ssrc: self.ssrc,
            csrcs: &[],
            extension: None,
            payload: &[],
            padding: 0,
        }
        .write_into(&mut self.packet)
        .ok();
        let (a, b) = chunk.as_slices();
        let body = &mut self.packet[header.unwrap_or(0)..];
        let encoded = if self.identity {
            // Every channel in order: encoded straight from the ring into the packet.
            encode_into(self.plan.format, a, body).ok().and_then(|n| {
                Some(n + encode_into(self.plan.format, b, body.get_mut(a.len() * bytes..)?).ok()?)
            })
        } else {
            self.input_block[..a.len()].copy_from_slice(a);
            self.input_block[a.len()..].copy_from_slice(b);
            let out_channels = self.map.len();
            for (frame_in, frame_out) in self
                .input_block
                .chunks_exact(self.in_channels)
                .zip(self.frame_block.chunks_exact_mut(out_channels))
            {
                for (slot, &ch) in frame_out.iter_mut().zip(&self.map) {
                    *slot = frame_in[ch];
                }
            }
            encode_into(self.plan.format, &self.frame_block, body).ok()
        };
        chunk.commit_all();
        let built = header.zip(encoded).map(|(h, n)| h + n);
        let Some(n) = built else {
            self.snapshot.encode_errors += 1;
            return true;
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.snapshot.access_units += 1;
        self.snapshot.frames_encoded += self.frame as u64;
        // ST 2022-7: the same datagram, byte for byte, on every leg.
        for leg in &self.legs {
            if let Some(batch) = batches.get_mut(leg.batch)
                && batch.push(me, &leg.dest, &self.packet[..n])
            {
                continue;
            }
            self.snapshot.send_errors += 1;
        }
        true
    }
}

/// One leg of an output: a shared socket with `plan`'s TTL and DSCP, to `dest`.
fn open_leg(dest: SocketAddr, iface: Option<&Interface>, plan: &Aes67Plan) -> anyhow::Result<Leg> {
    let socket = super::aes67_tx::shared_socket(dest, iface, plan.ttl, plan.dscp)
        .with_context(|| format!("cannot send to {dest}"))?;
    Ok(Leg {
        socket,
        dest: SockAddr::from(dest),
        batch: 0,
    })
}

fn after(t: MonoTime, d: Duration) -> MonoTime {
    MonoTime::from_nanos(t.as_nanos().saturating_add(d.as_nanos() as u64))
}

/// The SDP for a media clock reference: PTP grandmaster and domain, or the local clock.
/// With a second path (ST 2022-7) it describes both streams, grouped as duplicates
/// (`a=group:DUP 1 2`, RFC 7104).
fn sdp_with_reference(
    base: &sdp::SenderSdp,
    reference: Option<&MediaReference>,
    second: Option<SocketAddr>,
) -> String {
    let mut s = base.clone();
    s.ptp = reference.and_then(|r| {
        let (gm, domain) = crate::clock::refclk_grandmaster(&r.ts_refclk)?;
        let mut gmid = [0u8; 8];
        for (b, hex) in gmid.iter_mut().zip(gm.split('-')) {
            *b = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(sdp::PtpRef {
            gmid,
            domain: domain.unwrap_or(0),
        })
    });
    let Some(second) = second else {
        return sdp::write_aes67_sdp(&s);
    };
    let mut session = s.to_session();
    let Some(mut other) = session.streams.first().cloned() else {
        return sdp::write_aes67_sdp(&s);
    };
    other.port = second.port();
    other.connection = Some(sdp::Connection {
        address: second.ip(),
        ttl: matches!(second.ip(), IpAddr::V4(a) if a.is_multicast()).then_some(s.ttl),
        count: None,
    });
    other.mid = Some("2".into());
    session.streams[0].mid = Some("1".into());
    session.streams.push(other);
    session.groups.push(sdp::Group {
        semantics: "DUP".into(),
        mids: vec!["1".into(), "2".into()],
    });
    sdp::write(&session)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_redundant_output_announces_both_paths_as_duplicates() {
        let base = sdp::SenderSdp {
            destination: IpAddr::from([239, 69, 1, 1]),
            port: 5004,
            ..sdp::SenderSdp::default()
        };
        let text = sdp_with_reference(&base, None, "239.69.2.1:5006".parse().ok());
        assert!(text.contains("a=group:DUP 1 2\r\n"), "{text}");
        let parsed = sdp::parse(&text).expect("our SDP parses");
        assert_eq!(parsed.dup_pairs(), [(0, 1)]);
        let [a, b] = parsed.streams.as_slice() else {
            panic!("two media sections: {text}");
        };
        assert_eq!(
            a.connection.as_ref().map(|c| c.address),
            Some(base.destination)
        );
        assert_eq!(
            b.connection.as_ref().map(|c| c.address),
            Some(IpAddr::from([239, 69, 2, 1]))
        );
        assert_eq!((a.port, b.port), (5004, 5006));
        assert_eq!((a.format, a.channels), (b.format, b.channels));
        let single = sdp::parse(&sdp_with_reference(&base, None, None)).expect("parses");
        assert!(single.groups.is_empty() && single.streams.len() == 1);
    }
}
