//! The Dante receiver thread: turns the device's subscriptions into flows (the engine's
//! [`Subscriber`] decides; this thread resolves names, opens sockets and sends), writes the
//! flows' audio into the engine's [`RxBuffer`] by media time, and plays it out into the
//! attached `kind = "dante"` inputs every millisecond.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{debug, info, warn};

use estuary_engine::dante::rx::{RxBuffer, RxConfig};
use estuary_engine::dante::subscriber::{Action, FlowId, Subscriber};
use estuary_engine::dante::{Device, DeviceSpec};
use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::dante::{ChannelDirectory, DanteServer};
use estuary_wire::dante::arc::Source;

use super::{Hub, RxBlock, lock, media_now};
use crate::shutdown::Stop;

const TICK: Duration = Duration::from_millis(1);
/// How often subscriptions, name look-ups and statuses are looked at.
const CONTROL_PERIOD: Duration = Duration::from_millis(100);
/// Frames played out per pull (a late tick loops).
const PULL_FRAMES: usize = 480;
/// Frames per packet asked of transmitters.
const FRAMES_PER_PACKET: u16 = 32;
/// What receivers send back on a flow's socket to keep it open; its content is arbitrary.
const KEEPALIVE: [u8; 2] = [0x13, 0x37];

struct FlowSocket {
    socket: UdpSocket,
    /// Where its audio comes from (keepalives go there).
    source: Option<SocketAddr>,
}

pub(super) struct Receiver {
    hub: Arc<Hub>,
    device: Arc<Mutex<Device>>,
    directory: ChannelDirectory,
    subscriber: Subscriber,
    buffer: RxBuffer,
    control: UdpSocket,
    address: Ipv4Addr,
    flows: HashMap<FlowId, FlowSocket>,
    /// Names asked for and not found yet.
    pending: Vec<Source>,
    subscriptions: Vec<(u16, Source)>,
    sample_rate: u32,
    scratch: Vec<i32>,
    gaps: Vec<(u64, usize)>,
    packet: Vec<u8>,
    last_packet: Option<(MonoTime, u64)>,
    /// Published bundle group → the group joined instead (`rx_group_remap`).
    remap: Vec<(SocketAddrV4, SocketAddrV4)>,
}

impl Receiver {
    pub fn new(
        server: &DanteServer,
        address: Ipv4Addr,
        spec: &DeviceSpec,
        latency: Duration,
        remap: Vec<(SocketAddrV4, SocketAddrV4)>,
        hub: Arc<Hub>,
    ) -> anyhow::Result<Receiver> {
        let control = UdpSocket::bind((address, 0))?;
        control.set_nonblocking(true)?;
        let sample_rate = spec.format.sample_rate;
        let channels = usize::from(spec.rx_channels);
        let buffer = RxBuffer::new(
            RxConfig {
                channels,
                sample_rate,
                latency,
                capacity: (latency * 8).max(Duration::from_millis(400)),
            },
            media_now(sample_rate),
        )?;
        let name = server.device().name().to_owned();
        Ok(Receiver {
            hub,
            device: server.shared_device(),
            directory: server.browse_channels()?,
            subscriber: Subscriber::new(&name, sample_rate, FRAMES_PER_PACKET),
            buffer,
            control,
            address,
            flows: HashMap::new(),
            pending: Vec::new(),
            subscriptions: Vec::new(),
            sample_rate,
            scratch: vec![0; PULL_FRAMES * channels],
            gaps: Vec::new(),
            packet: vec![0; 2048],
            last_packet: None,
            remap,
        })
    }

    pub fn run(mut self, halt: &Stop) {
        let mut next = monotonic_now();
        let mut next_control = next;
        while !halt.requested() {
            next = next.saturating_add(TICK);
            sleep_until(next);
            let now = monotonic_now();
            if now >= next_control {
                next_control = now.saturating_add(CONTROL_PERIOD);
                self.follow_subscriptions(now);
            }
            self.read_control(now);
            for action in self.subscriber.tick(now) {
                self.act(action, now);
            }
            self.read_audio(now);
            self.play_out(now);
            // A stalled thread catches up without a burst of ticks.
            if now.duration_since(next) > CONTROL_PERIOD {
                next = now;
            }
        }
    }

    /// Picks up subscription changes, name look-ups that succeeded, and reports statuses.
    fn follow_subscriptions(&mut self, now: MonoTime) {
        let subscriptions = lock(&self.device).state().subscriptions;
        if subscriptions != self.subscriptions {
            info!(count = subscriptions.len(), "Dante subscriptions changed");
            self.subscriber.set_subscriptions(&subscriptions, now);
            self.subscriptions = subscriptions;
        }
        let found: Vec<_> = self
            .pending
            .iter()
            .filter_map(|s| Some((s.clone(), self.directory.lookup(&s.channel, &s.device)?)))
            .collect();
        for (source, info) in found {
            info!(channel = %source.channel, device = %source.device, at = %info.control, "Dante channel resolved");
            self.pending.retain(|s| *s != source);
            self.subscriber.resolved(&source, Some(info), now);
        }
        let statuses = self.subscriber.statuses();
        let mut device = lock(&self.device);
        for (channel, status) in statuses {
            device.set_status(channel, status);
        }
    }

    fn act(&mut self, action: Action, now: MonoTime) {
        match action {
            Action::Resolve(source) => {
                if !self.pending.contains(&source) {
                    self.pending.push(source);
                }
            }
            Action::Open(id) => match self.open(id) {
                Ok(local) => {
                    self.subscriber.opened(id, local, now);
                }
                Err(e) => warn!(flow = id, error = %e, "cannot open a Dante flow socket"),
            },
            Action::Close(id) => {
                self.flows.remove(&id);
                self.buffer.remove_flow(id);
                info!(flow = id, "Dante flow closed");
            }
            Action::Send { to, bytes } => {
                if let Err(e) = self.control.send_to(&bytes, to) {
                    debug!(%to, error = %e, "Dante flow request not sent");
                }
            }
            Action::Keepalive(id) => {
                if let Some(FlowSocket {
                    socket,
                    source: Some(source),
                }) = self.flows.get(&id)
                {
                    let _ = socket.send_to(&KEEPALIVE, source);
                }
            }
        }
    }

    /// Opens flow `id`'s socket and tells the buffer where its slots go.
    fn open(&mut self, id: FlowId) -> io::Result<SocketAddrV4> {
        let socket = match self.subscriber.multicast_group(id) {
            Some(published) => {
                let group = self
                    .remap
                    .iter()
                    .find(|(from, _)| *from == published)
                    .map_or(published, |&(_, to)| to);
                info!(flow = id, %published, %group, "Dante bundle: joining");
                let iface = estuary_io::mcast::resolve_interface(&self.address.to_string()).ok();
                estuary_io::mcast::open_receive_socket(SocketAddr::V4(group), None, iface.as_ref())?
            }
            None => UdpSocket::bind((self.address, 0))?,
        };
        socket.set_nonblocking(true)?;
        let local = match socket.local_addr()? {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => return Err(io::Error::other("IPv6 flow socket")),
        };
        let slots = self
            .subscriber
            .slot_channels(id)
            .unwrap_or_default()
            .into_iter()
            .map(|rx| usize::from(rx).checked_sub(1))
            .collect();
        let (_, width) = self.subscriber.flow_format(id).unwrap_or((0, 3));
        self.buffer.set_flow(id, slots, width);
        self.flows.insert(
            id,
            FlowSocket {
                socket,
                source: None,
            },
        );
        info!(flow = id, %local, "Dante flow socket open");
        Ok(local)
    }

    fn read_control(&mut self, now: MonoTime) {
        while let Ok((n, _)) = self.control.recv_from(&mut self.packet) {
            self.subscriber.reply(&self.packet[..n], now);
        }
    }

    fn read_audio(&mut self, now: MonoTime) {
        for (&id, flow) in &mut self.flows {
            let mut got = false;
            while let Ok((n, from)) = flow.socket.recv_from(&mut self.packet) {
                if let estuary_engine::dante::rx::PushOutcome::Stored { position, .. }
                | estuary_engine::dante::rx::PushOutcome::Reordered { position, .. } =
                    self.buffer.push(id, &self.packet[..n])
                {
                    self.last_packet = Some((now, position));
                }
                if flow.source != Some(from) {
                    info!(flow = id, %from, "Dante audio arriving");
                    flow.source = Some(from);
                }
                got = true;
            }
            if got {
                self.subscriber.audio(id, now);
            }
        }
    }

    /// Plays out what is due into every attached input.
    fn play_out(&mut self, now: MonoTime) {
        let media = media_now(self.sample_rate);
        let channels = self.buffer.config().channels;
        loop {
            self.gaps.clear();
            let gaps = &mut self.gaps;
            let pulled = self
                .buffer
                .pull(media, &mut self.scratch, |at, n| gaps.push((at, n)));
            if pulled.frames == 0 {
                break;
            }
            let block = RxBlock {
                samples: &self.scratch[..pulled.frames * channels],
                channels,
                position: pulled.position,
                gaps: &self.gaps,
                now,
            };
            let mut sinks = lock(&self.hub.rx);
            for sink in sinks.iter_mut() {
                sink.feed(&block);
                sink.publish(self.buffer.stats(), self.last_packet);
            }
            if pulled.frames < PULL_FRAMES {
                break;
            }
        }
    }
}
