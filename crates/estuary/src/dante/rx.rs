//! The Dante receiver thread: turns the device's subscriptions into flows (the engine's
//! [`Subscriber`] decides; this thread resolves names, opens sockets and sends), writes the
//! flows' audio into the engine's [`RxBuffer`] by media time, and plays it out into the
//! attached `kind = "dante"` inputs every millisecond.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tracing::{debug, info, warn};

use estuary_engine::dante::rx::RxGap;
use estuary_engine::dante::rx::{RxBuffer, RxConfig};
use estuary_engine::dante::subscriber::{Action, FlowId, Subscriber};
use estuary_engine::dante::{Device, DeviceSpec};
use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::dante::{ChannelDirectory, DanteServer};
use estuary_wire::dante::arc::Source;

use super::status::RxFlowView;
use super::{Hub, RxBlock, RxCommand, RxSink, lock, media_now};
use crate::shutdown::Stop;

const TICK: Duration = Duration::from_millis(1);
/// How often subscriptions, name look-ups and statuses are looked at.
const CONTROL_PERIOD: Duration = Duration::from_millis(100);
/// Frames played out per pull (a late tick loops).
const PULL_FRAMES: usize = 480;
/// Frames per packet asked of transmitters.
const FRAMES_PER_PACKET: u16 = 32;
/// How often attached inputs get their counters.
const SINK_PUBLISH_PERIOD: Duration = Duration::from_millis(20);
/// What receivers send back on a flow's socket to keep it open; its content is arbitrary.
const KEEPALIVE: [u8; 2] = [0x13, 0x37];

struct FlowSocket {
    socket: UdpSocket,
    /// Where its audio comes from (keepalives go there).
    source: Option<SocketAddr>,
}

/// An attached `kind = "dante"` input.
struct Sink {
    sink: Box<dyn RxSink>,
    /// Counters of the flows that fed its channels and have stopped.
    retired: StreamStats,
}

pub(super) struct Receiver {
    hub: Arc<Hub>,
    commands: mpsc::Receiver<RxCommand>,
    sinks: Vec<Sink>,
    /// The device's generation when its subscriptions were last read.
    seen_generation: Option<u64>,
    next_publish: MonoTime,
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
    gaps: Vec<RxGap>,
    packet: Vec<u8>,
    /// Per flow: its latest packet's (arrival, media time).
    last_packets: HashMap<FlowId, (MonoTime, u64)>,
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
        commands: mpsc::Receiver<RxCommand>,
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
            commands,
            sinks: Vec::new(),
            seen_generation: None,
            next_publish: monotonic_now(),
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
            last_packets: HashMap::new(),
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
            self.take_commands();
            if now >= next_control {
                next_control = now.saturating_add(CONTROL_PERIOD);
                self.follow_subscriptions(now);
                self.publish_view();
            }
            self.read_control(now);
            for action in self.subscriber.tick(now) {
                self.act(action, now);
            }
            self.read_audio(now);
            self.play_out(now);
            if now >= self.next_publish {
                self.next_publish = now.saturating_add(SINK_PUBLISH_PERIOD);
                self.publish_sinks();
            }
            // A stalled thread catches up without a burst of ticks.
            if now.duration_since(next) > CONTROL_PERIOD {
                next = now;
            }
        }
    }

    /// Picks up subscription changes, name look-ups that succeeded, and reports statuses.
    fn follow_subscriptions(&mut self, now: MonoTime) {
        let subscriptions = {
            let device = lock(&self.device);
            let generation = device.generation();
            if self.seen_generation == Some(generation) {
                None
            } else {
                self.seen_generation = Some(generation);
                Some(device.state().subscriptions)
            }
        };
        if let Some(subscriptions) = subscriptions
            && subscriptions != self.subscriptions
        {
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
                self.last_packets.remove(&id);
                for sink in &mut self.sinks {
                    if self.buffer.flow_feeds(id, sink.sink.channels())
                        && let Some(stats) = self.buffer.flow_stats(id)
                    {
                        sink.retired.add_counters(&stats);
                    }
                }
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
                    self.last_packets.insert(id, (now, position));
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
            let pulled = self.buffer.pull(media, &mut self.scratch, |g| gaps.push(g));
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
            for sink in &mut self.sinks {
                sink.sink.feed(&block);
            }
            if pulled.frames < PULL_FRAMES {
                break;
            }
        }
    }
}

impl Receiver {
    /// Attaches and detaches inputs as their routes start and stop.
    fn take_commands(&mut self) {
        while let Ok(command) = self.commands.try_recv() {
            match command {
                RxCommand::Attach(sink) => {
                    self.sinks.retain(|s| s.sink.name() != sink.name());
                    self.sinks.push(Sink {
                        sink,
                        retired: StreamStats::default(),
                    });
                }
                RxCommand::Detach(name) => self.sinks.retain(|s| s.sink.name() != name),
            }
        }
    }

    /// Gives each input the counters of the flows feeding its channels (stopped ones
    /// included) and the latest of their packets.
    fn publish_sinks(&mut self) {
        for sink in &mut self.sinks {
            let channels = sink.sink.channels();
            let mut stats = sink.retired;
            let mut last: Option<(MonoTime, u64)> = None;
            for &id in self.flows.keys() {
                if !self.buffer.flow_feeds(id, channels) {
                    continue;
                }
                if let Some(flow) = self.buffer.flow_stats(id) {
                    stats.add_counters(&flow);
                    stats.buffer_fill_frames =
                        stats.buffer_fill_frames.max(flow.buffer_fill_frames);
                }
                if let Some(&packet) = self.last_packets.get(&id)
                    && last.is_none_or(|l| packet.0 > l.0)
                {
                    last = Some(packet);
                }
            }
            sink.sink.publish(&stats, last);
        }
    }

    /// The flows and counters for the API (skipped when the status builder holds the lock).
    fn publish_view(&mut self) {
        let Ok(mut view) = self.hub.views.rx.try_lock() else {
            return;
        };
        view.stats = *self.buffer.stats();
        view.flows.clear();
        for (&id, flow) in &self.flows {
            view.flows.push(RxFlowView {
                id,
                channels: self.subscriber.slot_channels(id).unwrap_or_default(),
                multicast_group: self.subscriber.multicast_group(id).map(|g| g.to_string()),
                from: flow.source.map(|s| s.to_string()),
                stats: self.buffer.flow_stats(id).unwrap_or_default(),
            });
        }
        view.flows.sort_by_key(|f| f.id);
    }
}
