//! The `dante-conmon` thread: answers CMC registrations (port 8800) and conmon settings
//! requests (port 8700) with multicast replies to 224.0.0.231:8702, announces make/model at
//! start, multicasts a heartbeat every second to 224.0.0.233:8708, and a change notice to
//! 224.0.0.231:8702 whenever the RX channels (subscriptions, statuses, names) or the TX
//! channel names change, so controllers query again.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::debug;

use estuary_engine::dante::Device;
use estuary_io::clock::monotonic_now;
use estuary_wire::dante::Message;
use estuary_wire::dante::arc::RxChannel;
use estuary_wire::dante::conmon::{
    self, CLASS_REPLY, ClockRole, ClockStatus, ConmonHeader, ConmonMessage, DanteModel, MakeModel,
    NetworkStatus, START_CONMON, START_HEARTBEAT, Version, cmc,
};

use super::lock;
use crate::shutdown::Stop;

/// Where replies and notices go.
pub const INFO_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 231), 8702);
/// Where heartbeats go.
pub const HEARTBEAT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(224, 0, 0, 233), 8708);
const HEARTBEAT_PERIOD: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(50);

pub(super) struct Conmon {
    device: Arc<Mutex<Device>>,
    address: Ipv4Addr,
    cmc: UdpSocket,
    requests: UdpSocket,
    info: UdpSocket,
    heartbeat: UdpSocket,
    conmon_port: u16,
    arc_port: u16,
    sequence: u16,
    rx: Vec<RxChannel>,
    tx_names: Vec<Option<String>>,
}

impl Conmon {
    pub fn new(
        device: Arc<Mutex<Device>>,
        address: Ipv4Addr,
        (arc_port, cmc_port, conmon_port): (u16, u16, u16),
    ) -> anyhow::Result<Conmon> {
        let bind = |port: u16| -> anyhow::Result<UdpSocket> {
            let s = UdpSocket::bind((address, port))
                .map_err(|e| anyhow::anyhow!("cannot bind the Dante port {address}:{port}: {e}"))?;
            s.set_nonblocking(true)?;
            Ok(s)
        };
        let iface = estuary_io::mcast::resolve_interface(&address.to_string()).ok();
        let send = |group: SocketAddrV4| {
            estuary_io::mcast::open_send_socket(SocketAddr::V4(group), iface.as_ref(), 1, 0)
        };
        let (rx, tx_names) = snapshot(&lock(&device));
        Ok(Conmon {
            cmc: bind(cmc_port)?,
            requests: bind(conmon_port)?,
            info: send(INFO_GROUP)?,
            heartbeat: send(HEARTBEAT_GROUP)?,
            device,
            address,
            conmon_port,
            arc_port,
            sequence: 0,
            rx,
            tx_names,
        })
    }

    fn device_id(&self) -> [u8; 8] {
        estuary_io::dante::device_id(self.address, self.arc_port)
    }

    pub fn run(mut self, halt: &Stop) {
        // Controllers learn make and model without asking.
        self.reply(conmon::TYPE_DANTE_MODEL);
        self.reply(conmon::TYPE_MAKE_MODEL);
        let mut next_heartbeat = monotonic_now();
        let mut buf = [0u8; 1500];
        while !halt.requested() {
            while let Ok((n, from)) = self.cmc.recv_from(&mut buf) {
                self.answer_cmc(&buf[..n], from);
            }
            while let Ok((n, _)) = self.requests.recv_from(&mut buf) {
                if let Ok(m) = ConmonMessage::parse(&buf[..n])
                    && m.header.start == START_CONMON
                {
                    let asked = m.header.message_type;
                    match asked {
                        conmon::TYPE_MAKE_MODEL_REQUEST
                        | conmon::TYPE_DANTE_MODEL_REQUEST
                        | conmon::TYPE_CLOCK_REQUEST
                        | conmon::TYPE_NETWORK_REQUEST
                        | conmon::TYPE_0077_REQUEST => self.reply(asked),
                        other => debug!(message_type = other, "conmon request not answered"),
                    }
                }
            }
            self.notify_changes();
            let now = monotonic_now();
            if now >= next_heartbeat {
                next_heartbeat = now.saturating_add(HEARTBEAT_PERIOD);
                self.send_heartbeat();
            }
            std::thread::sleep(POLL);
        }
    }

    fn answer_cmc(&self, datagram: &[u8], from: SocketAddr) {
        let Ok(m) = Message::parse(datagram) else {
            return;
        };
        if cmc::parse_register(&m).is_err() {
            return;
        }
        let answer = cmc::Registered {
            process: 0,
            device_id: self.device_id(),
            address: self.address,
            conmon_port: self.conmon_port,
        };
        if let Ok(bytes) = answer.write(&m.header) {
            let _ = self.cmc.send_to(&bytes, from);
        }
    }

    fn header(&mut self, start: u16, class: u16, message_type: u16, flags: u32) -> ConmonHeader {
        self.sequence = self.sequence.wrapping_add(1);
        ConmonHeader {
            start,
            sequence: self.sequence,
            process: 0,
            device_id: self.device_id(),
            class,
            message_type,
            flags,
        }
    }

    /// Multicasts the reply to a request of type `asked`.
    fn reply(&mut self, asked: u16) {
        let board = lock(&self.device).spec().board.clone();
        let version = crate_version();
        let (message_type, body) = match asked {
            conmon::TYPE_MAKE_MODEL_REQUEST | conmon::TYPE_MAKE_MODEL => (
                conmon::TYPE_MAKE_MODEL,
                MakeModel {
                    manufacturer: "Estuary".into(),
                    product: "Estuary".into(),
                    version,
                    firmware: version,
                }
                .body(),
            ),
            conmon::TYPE_DANTE_MODEL_REQUEST | conmon::TYPE_DANTE_MODEL => (
                conmon::TYPE_DANTE_MODEL,
                DanteModel {
                    software: version,
                    hardware: Version::default(),
                    model_id: *b"ESTUARY\0",
                    board,
                }
                .body(),
            ),
            // The media clock follows the host's clock or a PTP leader, never leads the network.
            conmon::TYPE_CLOCK_REQUEST => (
                conmon::TYPE_CLOCK,
                ClockStatus {
                    role: ClockRole::Follower,
                }
                .body(),
            ),
            conmon::TYPE_NETWORK_REQUEST => (
                conmon::TYPE_NETWORK,
                NetworkStatus {
                    mac: [0; 6],
                    address: self.address,
                    netmask: Ipv4Addr::UNSPECIFIED,
                    gateway: Ipv4Addr::UNSPECIFIED,
                }
                .body(),
            ),
            _ => (conmon::TYPE_0078, conmon::body_0078()),
        };
        let header = self.header(START_CONMON, CLASS_REPLY, message_type, 0);
        self.send_info(&header, &body);
    }

    fn send_info(&self, header: &ConmonHeader, body: &[u8]) {
        match conmon::write(header, body) {
            Ok(bytes) => {
                if let Err(e) = self.info.send(&bytes) {
                    debug!(error = %e, "conmon multicast not sent");
                }
            }
            Err(e) => debug!(error = %e, "conmon message not written"),
        }
    }

    fn send_heartbeat(&mut self) {
        let header = self.header(
            START_HEARTBEAT,
            conmon::HEARTBEAT_CLASS,
            conmon::TYPE_HEARTBEAT,
            conmon::HEARTBEAT_FLAGS,
        );
        let ppb = super::media_clock_ppb();
        if let Ok(bytes) = conmon::write(&header, &conmon::heartbeat_body(ppb)) {
            let _ = self.heartbeat.send(&bytes);
        }
    }

    /// Sends 0x0102 for RX channels and 0x0101 + 0x0103 for TX names that changed.
    fn notify_changes(&mut self) {
        let (rx, tx_names) = snapshot(&lock(&self.device));
        let changed_rx: Vec<u16> = rx
            .iter()
            .zip(&self.rx)
            .filter(|(a, b)| a != b)
            .map(|(a, _)| a.number)
            .collect();
        let changed_tx: Vec<u16> = tx_names
            .iter()
            .zip(&self.tx_names)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u16 + 1)
            .collect();
        self.rx = rx;
        self.tx_names = tx_names;
        let mut notices = Vec::new();
        if !changed_rx.is_empty() {
            notices.push((conmon::TYPE_RX_CHANNELS_CHANGED, changed_rx));
        }
        if !changed_tx.is_empty() {
            notices.push((conmon::TYPE_TX_CHANNELS_CHANGED, changed_tx.clone()));
            notices.push((conmon::TYPE_TX_LABELS_CHANGED, changed_tx));
        }
        for (message_type, channels) in notices {
            if let Ok(body) = conmon::channels_changed_body(&channels) {
                debug!(message_type, ?channels, "Dante change notice");
                let header = self.header(START_CONMON, CLASS_REPLY, message_type, 0);
                self.send_info(&header, &body);
            }
        }
    }
}

fn snapshot(device: &Device) -> (Vec<RxChannel>, Vec<Option<String>>) {
    (
        device.rx_channels(),
        device
            .tx_channels()
            .map(|(_, _, friendly)| friendly.map(str::to_owned))
            .collect(),
    )
}

/// Estuary's version as Dante writes versions.
fn crate_version() -> Version {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split(['.', '-'])
        .map(|p| p.parse::<u16>().unwrap_or(0));
    Version {
        major: parts.next().unwrap_or(0).min(255) as u8,
        minor: parts.next().unwrap_or(0).min(255) as u8,
        patch: parts.next().unwrap_or(0),
    }
}
