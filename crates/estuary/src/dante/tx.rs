//! The Dante transmitter thread: answers flow requests on the flow-control port (the
//! engine's [`TxFlows`] decides), takes the TX channels' audio from the attached input's
//! ring, stamps it with the media clock, and sends each flow its slots every
//! `frames per packet`. Keepalives come back to the audio socket and hold the flows open.
//!
//! The audio is *staged* by media time: every millisecond the frames up to the media clock's
//! "now" are taken from the ring (silence, counted, when the input falls short; excess,
//! counted, is dropped when it runs ahead), and a flow's packet `[T, T + fpp)` goes out as
//! soon as its last frame is staged.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use estuary_engine::dante::DeviceSpec;
use estuary_engine::dante::flows::{TxFlows, TxLimits};
use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::dante::TxBundle;
use estuary_wire::dante::audio::{AudioHeader, write};
use estuary_wire::dante::flow::FlowHandle;

use super::status::{DanteTxCounters, DanteTxFlow};
use super::{Hub, lock, media_now};
use crate::pipeline::TRANSMIT_SLACK as SLACK;
use crate::shutdown::Stop;

const TICK: Duration = Duration::from_millis(1);
/// Frames the stage keeps (a power of two above any packet and tick).
const STAGE_FRAMES: u64 = 4096;
/// Audio buffered in the ring before sending starts, so the 1 ms bursts of the ingest
/// thread never leave a tick short.
const PREFILL: Duration = Duration::from_millis(3);
/// How often the flows and counters are published for the API.
const VIEW_PERIOD: Duration = Duration::from_millis(100);
/// Flows each transmitter serves.
const MAX_FLOWS: usize = 32;
/// Multicast audio stays within a site's routers.
const MULTICAST_TTL: u32 = 32;
/// AF41, the media class AES67 recommends.
const MEDIA_DSCP: u8 = 34;
/// Bundles are sent as 24-bit samples (the TX channels' `enc`).
const BUNDLE_BYTES: usize = 3;

pub(super) struct Transmitter {
    hub: Arc<Hub>,
    flows: TxFlows,
    control: UdpSocket,
    audio: UdpSocket,
    sample_rate: u32,
    channels: usize,
    stage: Vec<i32>,
    /// Media time after the last staged frame.
    staged_end: Option<u64>,
    /// Whether the ring had its prefill (sending audio rather than silence).
    flowing: bool,
    /// The source ran dry after flowing and is refilling to its prefill: the silence sent
    /// meanwhile is counted as underrun.
    refilling: bool,
    /// Next media time each flow sends.
    next: HashMap<FlowHandle, u64>,
    samples: Vec<i32>,
    datagram: Vec<u8>,
    packet: Vec<u8>,
    counters: Counters,
    bundles: Vec<Bundle>,
}

/// A multicast bundle being sent.
struct Bundle {
    /// Connected to the group.
    socket: UdpSocket,
    slots: Vec<u16>,
    fpp: u16,
    /// Media time of its next packet.
    next: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    packets_sent: u64,
    send_errors: u64,
    underrun_frames: u64,
    dropped_frames: u64,
    packets_skipped: u64,
}

impl Transmitter {
    pub fn new(
        address: Ipv4Addr,
        flow_port: u16,
        spec: &DeviceSpec,
        bundles: &[TxBundle],
        hub: Arc<Hub>,
    ) -> anyhow::Result<Transmitter> {
        // The interface holding our address: the groups are sent there.
        let iface = estuary_io::mcast::resolve_interface(&address.to_string()).ok();
        let bundles = bundles
            .iter()
            .map(|b| {
                let socket = estuary_io::mcast::open_send_socket(
                    SocketAddr::V4(b.group),
                    iface.as_ref(),
                    MULTICAST_TTL,
                    MEDIA_DSCP,
                )
                .map_err(|e| anyhow::anyhow!("cannot send Dante bundle {} to {}: {e}", b.id, b.group))?;
                socket.set_nonblocking(true)?;
                info!(bundle = b.id, group = %b.group, channels = ?b.channels, "Dante multicast bundle");
                Ok(Bundle {
                    socket,
                    slots: b.channels.clone(),
                    fpp: b.fpp,
                    next: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let control = UdpSocket::bind((address, flow_port)).map_err(|e| {
            anyhow::anyhow!("cannot bind the Dante flow-control port {address}:{flow_port}: {e}")
        })?;
        control.set_nonblocking(true)?;
        let audio = UdpSocket::bind((address, 0))?;
        audio.set_nonblocking(true)?;
        let channels = usize::from(spec.tx_channels);
        let cookie = (monotonic_now().as_nanos() & 0xffff) as u16;
        Ok(Transmitter {
            hub,
            flows: TxFlows::new(
                TxLimits {
                    sample_rate: spec.format.sample_rate,
                    tx_channels: spec.tx_channels,
                    max_channels_per_flow: spec.max_channels_per_flow,
                    max_fpp: 64,
                    max_flows: MAX_FLOWS,
                },
                cookie,
            ),
            control,
            audio,
            sample_rate: spec.format.sample_rate,
            channels,
            stage: vec![0; STAGE_FRAMES as usize * channels],
            staged_end: None,
            flowing: false,
            refilling: false,
            next: HashMap::new(),
            samples: Vec::new(),
            datagram: Vec::new(),
            packet: vec![0; 2048],
            counters: Counters::default(),
            bundles,
        })
    }

    fn frames_in(&self, d: Duration) -> usize {
        (d.as_nanos() * u128::from(self.sample_rate) / 1_000_000_000) as usize
    }

    pub fn run(mut self, halt: &Stop) {
        let mut next = monotonic_now();
        let mut last_report = next;
        let mut last_view = next;
        while !halt.requested() {
            next = next.saturating_add(TICK);
            sleep_until(next);
            let now = monotonic_now();
            self.serve_control(now);
            self.read_keepalives(now);
            for flow in self.flows.expire(now) {
                info!(to = %flow.destination, rx = %flow.rx_device, "Dante flow expired (no keepalive)");
                self.next.remove(&flow.handle);
            }
            self.stage_audio();
            self.send_packets();
            if now.duration_since(last_view) >= VIEW_PERIOD {
                last_view = now;
                self.publish_view();
            }
            if now.duration_since(last_report) >= Duration::from_secs(10) {
                last_report = now;
                if !self.flows.flows().is_empty() || !self.bundles.is_empty() {
                    info!(
                        flows = self.flows.flows().len(),
                        bundles = self.bundles.len(),
                        packets = self.counters.packets_sent,
                        send_errors = self.counters.send_errors,
                        underrun_frames = self.counters.underrun_frames,
                        dropped_frames = self.counters.dropped_frames,
                        "Dante transmit"
                    );
                }
            }
            if now.duration_since(next) > Duration::from_millis(100) {
                next = now;
            }
        }
    }

    /// Skipped when the status builder holds the lock.
    fn publish_view(&self) {
        let Ok(mut view) = self.hub.views.tx.try_lock() else {
            return;
        };
        view.flows = self
            .flows
            .flows()
            .iter()
            .map(|f| DanteTxFlow {
                destination: f.destination.to_string(),
                rx_device: f.rx_device.clone(),
                flow_name: f.flow_name.clone(),
                channels: f.slots.clone(),
                frames_per_packet: f.fpp,
            })
            .collect();
        view.counters = DanteTxCounters {
            packets_sent: self.counters.packets_sent,
            send_errors: self.counters.send_errors,
            underrun_frames: self.counters.underrun_frames,
            dropped_frames: self.counters.dropped_frames,
            packets_skipped: self.counters.packets_skipped,
            flows_expired: self.flows.expired,
        };
    }

    fn serve_control(&mut self, now: MonoTime) {
        while let Ok((n, from)) = self.control.recv_from(&mut self.packet) {
            let before = self.flows.flows().len();
            if let Some(reply) = self.flows.handle(now, &self.packet[..n]) {
                let _ = self.control.send_to(&reply, from);
            }
            if self.flows.flows().len() != before {
                info!(%from, flows = self.flows.flows().len(), "Dante flow table changed");
            }
            // Flows that stopped lose their send position.
            let live: Vec<FlowHandle> = self.flows.flows().iter().map(|f| f.handle).collect();
            self.next.retain(|h, _| live.contains(h));
        }
    }

    fn read_keepalives(&mut self, now: MonoTime) {
        while let Ok((_, from)) = self.audio.recv_from(&mut self.packet) {
            if let SocketAddr::V4(from) = from {
                self.flows.keepalive(now, from);
            }
        }
    }

    /// Stages the frames up to the media clock's now.
    fn stage_audio(&mut self) {
        let media = media_now(self.sample_rate);
        let Some(end) = self.staged_end else {
            self.staged_end = Some(media);
            return;
        };
        if media <= end {
            return;
        }
        let mut end = end;
        // Stalled for longer than the stage: restart from now.
        if media - end > STAGE_FRAMES / 2 {
            self.counters.underrun_frames += media - end;
            end = media - STAGE_FRAMES / 4;
        }
        let need = (media - end) as usize;
        let prefill = self.frames_in(PREFILL);
        let high_water = prefill + self.frames_in(SLACK);
        let mut taken = 0;
        let hub = Arc::clone(&self.hub);
        let mut source = lock(&hub.tx);
        if let Some(src) = source.as_mut() {
            let in_channels = src.channels.max(1);
            let mut available = src.samples.slots() / in_channels;
            if !self.flowing && available >= prefill {
                self.flowing = true;
                self.refilling = false;
            }
            if self.refilling {
                // The source ran dry while flowing: the silence sent until it has a prefill
                // again stands in for its audio, which then follows late (a delay, counted).
                self.counters.underrun_frames += need as u64;
            }
            if self.flowing {
                if available > high_water + need {
                    let excess = available - high_water - need;
                    if let Ok(chunk) = src.samples.read_chunk(excess * in_channels) {
                        chunk.commit_all();
                        self.counters.dropped_frames += excess as u64;
                        available -= excess;
                    }
                }
                taken = need.min(available);
                if let Ok(chunk) = src.samples.read_chunk(taken * in_channels) {
                    let (a, b) = chunk.as_slices();
                    for (k, frame) in a
                        .chunks_exact(in_channels)
                        .chain(b.chunks_exact(in_channels))
                        .enumerate()
                    {
                        let row = ((end + k as u64) % STAGE_FRAMES) as usize * self.channels;
                        let out = &mut self.stage[row..row + self.channels];
                        let n = in_channels.min(self.channels);
                        out[..n].copy_from_slice(&frame[..n]);
                        out[n..].fill(0);
                    }
                    chunk.commit_all();
                } else {
                    taken = 0;
                }
                if taken < need {
                    self.counters.underrun_frames += (need - taken) as u64;
                    if taken == 0 && available == 0 {
                        // The input stopped or starved: wait for a prefill again.
                        self.flowing = false;
                        self.refilling = true;
                    }
                }
            }
        } else {
            // No source (its route stopped): silence is what there is to send.
            self.flowing = false;
            self.refilling = false;
        }
        drop(source);
        for k in taken..need {
            let row = ((end + k as u64) % STAGE_FRAMES) as usize * self.channels;
            self.stage[row..row + self.channels].fill(0);
        }
        self.staged_end = Some(media);
    }

    /// Sends every flow and bundle the packets whose frames are all staged.
    fn send_packets(&mut self) {
        let Some(end) = self.staged_end else {
            return;
        };
        let mut packer = Packer {
            stage: &self.stage,
            channels: self.channels,
            sample_rate: self.sample_rate,
            samples: &mut self.samples,
            datagram: &mut self.datagram,
            counters: &mut self.counters,
            end,
        };
        for flow in self.flows.flows() {
            let fpp = u64::from(flow.fpp.max(1));
            let next = self
                .next
                .entry(flow.handle)
                .or_insert_with(|| end - end % fpp);
            packer.send(&flow.slots, fpp, flow.bytes_per_sample, next, |d| {
                self.audio.send_to(d, flow.destination)
            });
        }
        for bundle in &mut self.bundles {
            let fpp = u64::from(bundle.fpp.max(1));
            let next = bundle.next.get_or_insert(end - end % fpp);
            packer.send(&bundle.slots, fpp, BUNDLE_BYTES, next, |d| {
                bundle.socket.send(d)
            });
        }
    }
}

/// Cuts staged audio into packets.
struct Packer<'a> {
    stage: &'a [i32],
    channels: usize,
    sample_rate: u32,
    samples: &'a mut Vec<i32>,
    datagram: &'a mut Vec<u8>,
    counters: &'a mut Counters,
    /// Media time after the last staged frame.
    end: u64,
}

impl Packer<'_> {
    /// Sends the packets from `*next` whose frames are staged, `slots` (TX channel per
    /// slot, 0 silent) in each frame; advances `*next`.
    fn send(
        &mut self,
        slots: &[u16],
        fpp: u64,
        bytes_per_sample: usize,
        next: &mut u64,
        mut send: impl FnMut(&[u8]) -> std::io::Result<usize>,
    ) {
        let end = self.end;
        if *next + STAGE_FRAMES / 2 < end {
            // Behind by more than the stage holds (a stalled thread): skip to now. Packets
            // that late would only be late at the receivers; each one not sent is counted.
            let now = end - end % fpp;
            self.counters.packets_skipped += now.saturating_sub(*next) / fpp;
            *next = now;
        }
        while *next + fpp <= end {
            self.samples.clear();
            for t in *next..*next + fpp {
                let row = (t % STAGE_FRAMES) as usize * self.channels;
                let frame = &self.stage[row..row + self.channels];
                self.samples.extend(slots.iter().map(|&c| match c {
                    0 => 0,
                    c => frame.get(usize::from(c) - 1).copied().unwrap_or(0),
                }));
            }
            self.datagram.clear();
            let header = AudioHeader::from_media_time(*next, self.sample_rate);
            if write(header, self.samples, bytes_per_sample, self.datagram).is_ok() {
                match send(self.datagram) {
                    Ok(_) => self.counters.packets_sent += 1,
                    Err(e) => {
                        if self.counters.send_errors == 0 {
                            warn!(error = %e, "Dante audio not sent (further errors are counted)");
                        }
                        self.counters.send_errors += 1;
                    }
                }
            }
            *next += fpp;
        }
    }
}
