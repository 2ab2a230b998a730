//! `[dante] clock = "ptpv1"`: a PTPv1 (IEEE 1588-2002) follower on the Dante network, the
//! clock Dante devices run natively. This thread only moves bytes: it reads Sync and
//! Follow_Up (event port 319, general port 320, group 224.0.1.129, subdomain `_DFLT`),
//! sends a Delay_Req after each followed Sync and reads the Delay_Resp, and feeds the
//! engine's [`LeaderChoice`] and [`Servo`]. While the servo is locked its overlay (leader
//! time as a function of CLOCK_TAI) is the device's media clock; before that, and when the
//! leader goes quiet, the media clock is CLOCK_TAI (`local`).
//!
//! Local times are CLOCK_TAI read as soon as a blocking read of the event socket returns
//! (software timestamps: scheduling delay adds to them, which the path-delay minimum and
//! the fitted line smooth but do not remove).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::{Arc, Mutex};

use super::Hub;
use std::time::Duration;

use tracing::{info, warn};

use estuary_engine::dante::ptpv1::{LeaderChoice, LeaderRank, Overlay, Servo};
use estuary_io::clock::{monotonic_now, tai_now_ns};
use estuary_wire::dante::ptpv1::{
    self, Control, DEFAULT_SUBDOMAIN, PortIdentity, SyncBody, Timestamp, V1Body, V1Header,
    V1Message,
};

use super::status::DanteClockStatus;
use crate::shutdown::Stop;

/// Longest wait for an event message, so the general port and the view are served.
const WAIT: Duration = Duration::from_millis(5);
/// EF, the class PTP event messages get.
const PTP_DSCP: u8 = 46;
/// How often the clock state is published for the API.
const VIEW_PERIOD: Duration = Duration::from_millis(100);

/// The overlay the media clock follows, while locked.
pub(super) static OVERLAY: Mutex<Option<Overlay>> = Mutex::new(None);

pub(super) struct Follower {
    event: UdpSocket,
    general: UdpSocket,
    send: UdpSocket,
    identity: PortIdentity,
    choice: LeaderChoice,
    servo: Servo,
    leader: Option<[u8; 6]>,
    delay_sequence: u16,
    hub: Arc<Hub>,
    state: DanteClockStatus,
}

impl Follower {
    pub fn new(address: Ipv4Addr, device_id: [u8; 8], hub: Arc<Hub>) -> anyhow::Result<Follower> {
        let iface = estuary_io::mcast::resolve_interface(&address.to_string()).ok();
        let group = Ipv4Addr::from(ptpv1::MULTICAST);
        let open = |port: u16| -> anyhow::Result<UdpSocket> {
            let socket = estuary_io::mcast::open_receive_socket(
                SocketAddr::V4(SocketAddrV4::new(group, port)),
                None,
                iface.as_ref(),
            )
            .map_err(|e| anyhow::anyhow!("PTPv1 port {port}: {e}"))?;
            Ok(socket)
        };
        let event = open(ptpv1::EVENT_PORT)?;
        event.set_read_timeout(Some(WAIT))?;
        let general = open(ptpv1::GENERAL_PORT)?;
        general.set_nonblocking(true)?;
        // Delay_Reqs leave from the Dante interface (the leader answers to the group).
        let send = estuary_io::mcast::open_send_socket(
            SocketAddr::V4(SocketAddrV4::new(group, ptpv1::EVENT_PORT)),
            iface.as_ref(),
            1,
            PTP_DSCP,
        )
        .map_err(|e| anyhow::anyhow!("PTPv1 send socket: {e}"))?;
        let mut uuid = [0u8; 6];
        uuid.copy_from_slice(&device_id[..6]);
        Ok(Follower {
            event,
            general,
            send,
            identity: PortIdentity {
                technology: 1,
                uuid,
                port: 1,
            },
            choice: LeaderChoice::default(),
            servo: Servo::new(),
            leader: None,
            delay_sequence: 0,
            hub,
            state: DanteClockStatus {
                source: "ptpv1".into(),
                ..Default::default()
            },
        })
    }

    pub fn run(mut self, halt: &Stop) {
        let mut last_view = monotonic_now();
        let mut buf = [0u8; 512];
        while !halt.requested() {
            if let Ok(n) = self.event.recv(&mut buf) {
                let now = tai_now_ns();
                self.handle(&buf[..n], now);
            }
            while let Ok(n) = self.general.recv(&mut buf) {
                let now = tai_now_ns();
                self.handle(&buf[..n], now);
            }
            let now = monotonic_now();
            if now.duration_since(last_view) >= VIEW_PERIOD {
                last_view = now;
                self.publish();
            }
        }
        *super::lock(&OVERLAY) = None;
    }

    fn handle(&mut self, datagram: &[u8], now: u64) {
        let Ok(message) = ptpv1::parse(datagram) else {
            self.state.malformed += 1;
            return;
        };
        if message.header.subdomain_name() != DEFAULT_SUBDOMAIN
            || message.header.source.uuid == self.identity.uuid
        {
            return;
        }
        let sender = message.header.source.uuid;
        match message.body {
            V1Body::Sync(body) => {
                let follow = self
                    .choice
                    .observe(sender, LeaderRank::from_sync(&body), now);
                if !follow {
                    return;
                }
                if self.leader != Some(sender) {
                    info!(leader = %uuid_text(sender), "Dante PTPv1 leader followed");
                    self.servo.reset();
                    self.leader = Some(sender);
                }
                self.state.syncs_received += 1;
                let two_step = message.header.flags & ptpv1::FLAG_ASSIST != 0;
                self.servo.sync(
                    message.header.sequence,
                    now,
                    body.origin.as_nanos(),
                    two_step,
                );
                self.send_delay_request(body);
            }
            V1Body::FollowUp {
                associated_sequence,
                precise_origin,
            } if self.leader == Some(sender) => {
                self.servo
                    .follow_up(associated_sequence, precise_origin.as_nanos());
            }
            V1Body::DelayResp {
                receipt,
                requester,
                requester_sequence,
            } if self.leader == Some(sender) && requester == self.identity => {
                self.state.delay_responses_received += 1;
                self.servo
                    .delay_response(requester_sequence, receipt.as_nanos());
            }
            _ => {}
        }
        let overlay = self.servo.locked().then(|| self.servo.overlay()).flatten();
        *super::lock(&OVERLAY) = overlay;
    }

    /// Asks the leader when our Delay_Req reaches it (the body repeats the leader's
    /// best-master fields, as followers' Delay_Reqs do).
    fn send_delay_request(&mut self, sync: SyncBody) {
        self.delay_sequence = self.delay_sequence.wrapping_add(1);
        let t3 = tai_now_ns();
        let message = V1Message {
            header: V1Header {
                version_network: 1,
                subdomain: V1Header::subdomain_field(DEFAULT_SUBDOMAIN),
                message_type: 1,
                source: self.identity,
                sequence: self.delay_sequence,
                control: Control::DelayReq,
                flags: 0,
            },
            body: V1Body::DelayReq(SyncBody {
                origin: Timestamp {
                    seconds: (t3 / 1_000_000_000) as u32,
                    nanoseconds: (t3 % 1_000_000_000) as i32,
                },
                ..sync
            }),
        };
        let to = SocketAddrV4::new(Ipv4Addr::from(ptpv1::MULTICAST), ptpv1::EVENT_PORT);
        match self.send.send_to(&message.to_bytes(), to) {
            Ok(_) => self.servo.delay_request_sent(self.delay_sequence, t3),
            Err(e) => warn!(error = %e, "PTPv1 Delay_Req not sent"),
        }
    }

    fn publish(&mut self) {
        let now = tai_now_ns();
        if self.leader.is_some() && self.choice.best(now).is_none() {
            info!("Dante PTPv1 leader lost; the media clock is local");
            self.leader = None;
            self.servo.reset();
            *super::lock(&OVERLAY) = None;
        }
        let overlay = self.servo.overlay();
        self.state.locked = self.servo.locked();
        self.state.leader = self.leader.map(uuid_text);
        self.state.offset_ns =
            overlay.map(|o| i64::try_from(o.leader_ns(now) - i128::from(now)).unwrap_or(i64::MAX));
        self.state.drift_ppb = overlay.map(|o| o.drift * 1e9);
        self.state.path_delay_ns = self
            .servo
            .path_delay()
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        if let Ok(mut view) = self.hub.views.clock.try_lock() {
            *view = self.state.clone();
        }
    }
}

fn uuid_text(uuid: [u8; 6]) -> String {
    uuid.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}
