//! A receiver's side of Dante routing: turns the device's subscriptions (RX channel ←
//! `channel@device`) into unicast flows requested from the transmitters, keeps them alive
//! and reports each RX channel's status.
//!
//! Driven by the daemon: it tells the subscriber what the subscriptions are, what mDNS
//! resolved, what the transmitters answered and when audio arrived; the subscriber answers
//! with [`Action`]s (look up a name, open or close a flow socket, send a request or a
//! keepalive) and keeps the statuses the device reports to controllers.

use std::collections::BTreeMap;
use std::net::SocketAddrV4;
use std::time::Duration;

use estuary_wire::dante::Message;
use estuary_wire::dante::arc::{Source, SubscriptionStatus};
use estuary_wire::dante::flow::{FlowHandle, FlowMessage, FlowRequest, parse_granted};

use crate::time::MonoTime;

/// Retry a name that did not resolve after this long.
pub const RESOLVE_RETRY: Duration = Duration::from_secs(9);
/// A request with no answer after this long is sent again.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// Keepalives keep a transmitter's flow open.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(250);
/// A flow with no audio for this long is requested again.
pub const AUDIO_TIMEOUT: Duration = Duration::from_secs(2);

/// What mDNS says of a TX channel (`_netaudio-chan` SRV, TXT and A records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The transmitter's flow-control address (its IP and the SRV port, 4455).
    pub control: SocketAddrV4,
    /// The TX channel number (`id`).
    pub channel: u16,
    pub sample_rate: u32,
    /// Bits per sample (`enc`).
    pub bits: u16,
    /// Most channels per flow (`nchan`).
    pub max_channels: u16,
    /// Largest frames per packet (`fpp` maximum).
    pub max_fpp: u16,
    /// The multicast bundle carrying the channel, when its record has `b.<id>=<pos>`.
    pub bundle: Option<BundleSlot>,
}

/// A TX channel's place in a multicast bundle, and (once its `_netaudio-bund` record is
/// resolved) where the bundle is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSlot {
    /// The bundle number (`<id>` of `<id>@<device>._netaudio-bund`).
    pub id: u16,
    /// 1-based position of the channel in the bundle's frames.
    pub position: u16,
    /// The bundle's group and port (`a.0`, `p.0`) and channel count (`nchan`).
    pub group: Option<(SocketAddrV4, u16)>,
}

impl BundleSlot {
    /// Reads `b.<id>=<pos>` among a channel record's TXT keys.
    pub fn from_txt<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<BundleSlot> {
        pairs.into_iter().find_map(|(k, v)| {
            let id = k
                .strip_prefix("b.")?
                .parse::<u16>()
                .ok()
                .filter(|&n| n > 0)?;
            let position = v.trim().parse::<u16>().ok().filter(|&p| p > 0)?;
            Some(BundleSlot {
                id,
                position,
                group: None,
            })
        })
    }

    /// Reads a `_netaudio-bund` record's TXT: the group (`a.0`), port (`p.0`) and channel
    /// count (`nchan`). `None` when one is missing or the group is not multicast.
    pub fn group_from_record<'a>(
        txt: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<(SocketAddrV4, u16)> {
        let group = txt("a.0")?
            .trim()
            .parse::<std::net::Ipv4Addr>()
            .ok()
            .filter(std::net::Ipv4Addr::is_multicast)?;
        let port = txt("p.0")?.trim().parse::<u16>().ok().filter(|&p| p > 0)?;
        let nchan = txt("nchan")?
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|&n| n > 0)?;
        Some((SocketAddrV4::new(group, port), nchan))
    }
}

impl ChannelInfo {
    /// Reads a `_netaudio-chan` record: the transmitter's IPv4 address, the SRV port and the
    /// TXT values (`id`, `rate`, `enc`, `nchan`, `fpp`). `None` when a needed value is
    /// missing or out of range (the record is then ignored, as a receiver must).
    pub fn from_record<'a>(
        address: std::net::Ipv4Addr,
        port: u16,
        txt: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<ChannelInfo> {
        let number = |key: &str| txt(key)?.trim().parse::<u32>().ok();
        let channel = u16::try_from(number("id")?).ok().filter(|&c| c > 0)?;
        let sample_rate = number("rate").filter(|r| (8_000..=384_000).contains(r))?;
        let bits = number("enc")
            .or_else(|| number("en"))
            .filter(|b| matches!(b, 16 | 24 | 32))? as u16;
        let max_channels = number("nchan")
            .map_or(Some(8), |n| u16::try_from(n).ok())?
            .max(1);
        // `fpp=<max>,<min>`.
        let max_fpp = txt("fpp")
            .and_then(|f| f.split(',').next()?.trim().parse::<u16>().ok())
            .unwrap_or(32)
            .max(1);
        Some(ChannelInfo {
            control: SocketAddrV4::new(address, port),
            channel,
            sample_rate,
            bits,
            max_channels,
            max_fpp,
            bundle: None,
        })
    }
}

/// Identifies a flow (and its socket) between the subscriber and the daemon.
pub type FlowId = u32;

/// What the daemon must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Look up `channel@device` and call [`Subscriber::resolved`].
    Resolve(Source),
    /// Open a UDP socket for the flow's audio and call [`Subscriber::opened`].
    Open(FlowId),
    /// Close the flow's socket.
    Close(FlowId),
    /// Send `bytes` to a transmitter's flow-control port (from any socket; answers go to
    /// [`Subscriber::reply`]).
    Send { to: SocketAddrV4, bytes: Vec<u8> },
    /// Send a keepalive from the flow's socket to where its audio comes from.
    Keepalive(FlowId),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FlowState {
    /// Waiting for the daemon to open the socket.
    Opening,
    Requested {
        transaction: u16,
        at: MonoTime,
    },
    Running {
        handle: FlowHandle,
        last_audio: MonoTime,
    },
    /// A multicast bundle's group joined: nothing to ask or keep alive.
    Joined,
    /// Refused by the transmitter; asked again later.
    Refused {
        code: u16,
        at: MonoTime,
    },
}

/// (TX channel, RX channel) of each slot of a flow.
type Slots = Vec<(u16, u16)>;

/// One unicast flow from one transmitter.
#[derive(Debug, Clone)]
struct Flow {
    device: String,
    info: ChannelInfo,
    slots: Slots,
    socket: Option<SocketAddrV4>,
    state: FlowState,
    last_keepalive: MonoTime,
    /// The bundle's group for a multicast flow (its slots are the bundle's positions).
    multicast: Option<SocketAddrV4>,
}

/// The receiver.
#[derive(Debug, Clone)]
pub struct Subscriber {
    rx_device: String,
    sample_rate: u32,
    fpp: u16,
    /// RX channel → its subscription.
    wanted: BTreeMap<u16, Source>,
    /// Resolution results (None: not found) and when they were asked.
    resolved: BTreeMap<Source, (Option<ChannelInfo>, MonoTime)>,
    flows: BTreeMap<FlowId, Flow>,
    next_flow: FlowId,
    next_transaction: u16,
    actions: Vec<Action>,
}

impl Subscriber {
    pub fn new(rx_device: &str, sample_rate: u32, fpp: u16) -> Subscriber {
        Subscriber {
            rx_device: rx_device.to_owned(),
            sample_rate,
            fpp,
            wanted: BTreeMap::new(),
            resolved: BTreeMap::new(),
            flows: BTreeMap::new(),
            next_flow: 1,
            next_transaction: 1,
            actions: Vec::new(),
        }
    }

    /// The subscriptions the device holds now (after a controller changed them).
    pub fn set_subscriptions(&mut self, subscriptions: &[(u16, Source)], now: MonoTime) {
        self.wanted = subscriptions.iter().cloned().collect();
        self.resolved
            .retain(|source, _| self.wanted.values().any(|s| s == source));
        for source in self.wanted.values() {
            if !self.resolved.contains_key(source) {
                self.resolved.insert(source.clone(), (None, now));
                self.actions.push(Action::Resolve(source.clone()));
            }
        }
        self.rebuild(now);
    }

    /// What mDNS found for `source` (None: nothing).
    pub fn resolved(&mut self, source: &Source, info: Option<ChannelInfo>, now: MonoTime) {
        if let Some(entry) = self.resolved.get_mut(source) {
            *entry = (info, now);
            self.rebuild(now);
        }
    }

    /// The daemon opened the flow's socket at `local` (the address the audio must go to).
    pub fn opened(&mut self, flow: FlowId, local: SocketAddrV4, now: MonoTime) {
        if let Some(f) = self.flows.get_mut(&flow) {
            f.socket = Some(local);
            if f.multicast.is_some() {
                f.state = FlowState::Joined;
            } else {
                self.request(flow, now);
            }
        }
    }

    /// An answer from a transmitter's flow-control port.
    pub fn reply(&mut self, datagram: &[u8], now: MonoTime) {
        let Ok(message) = Message::parse(datagram) else {
            return;
        };
        let Ok(result) = parse_granted(&message) else {
            return;
        };
        let transaction = message.header.transaction;
        let Some(flow) = self.flows.values_mut().find(
            |f| matches!(f.state, FlowState::Requested { transaction: t, .. } if t == transaction),
        ) else {
            return;
        };
        flow.state = match result {
            // Audio has not arrived yet: it counts from now.
            Ok(handle) => FlowState::Running {
                handle,
                last_audio: now,
            },
            Err(code) => FlowState::Refused { code, at: now },
        };
    }

    /// Audio arrived on the flow's socket.
    pub fn audio(&mut self, flow: FlowId, now: MonoTime) {
        if let Some(Flow {
            state: FlowState::Running { last_audio, .. },
            ..
        }) = self.flows.get_mut(&flow)
        {
            *last_audio = now;
        }
    }

    /// Timers: retries, keepalives, dead flows. Returns what to do.
    pub fn tick(&mut self, now: MonoTime) -> Vec<Action> {
        let retry: Vec<Source> = self
            .resolved
            .iter()
            .filter(|(_, (info, at))| info.is_none() && now.duration_since(*at) >= RESOLVE_RETRY)
            .map(|(s, _)| s.clone())
            .collect();
        for source in retry {
            self.resolved.insert(source.clone(), (None, now));
            self.actions.push(Action::Resolve(source));
        }
        let ids: Vec<FlowId> = self.flows.keys().copied().collect();
        for id in ids {
            let Some(f) = self.flows.get_mut(&id) else {
                continue;
            };
            match f.state {
                FlowState::Requested { at, .. } if now.duration_since(at) >= REQUEST_TIMEOUT => {
                    self.request(id, now);
                }
                FlowState::Refused { at, .. } if now.duration_since(at) >= RESOLVE_RETRY => {
                    self.request(id, now);
                }
                FlowState::Running { last_audio, .. }
                    if now.duration_since(last_audio) >= AUDIO_TIMEOUT =>
                {
                    self.request(id, now);
                }
                FlowState::Running { .. }
                    if now.duration_since(f.last_keepalive) >= KEEPALIVE_INTERVAL =>
                {
                    f.last_keepalive = now;
                    self.actions.push(Action::Keepalive(id));
                }
                _ => {}
            }
        }
        std::mem::take(&mut self.actions)
    }

    /// Each RX channel's status, for the device's channel list.
    pub fn statuses(&self) -> Vec<(u16, SubscriptionStatus)> {
        self.wanted
            .iter()
            .map(|(&rx, source)| {
                let status = match self.flow_of(rx) {
                    Some(f) => match &f.state {
                        FlowState::Running { .. } => SubscriptionStatus::Unicast,
                        FlowState::Joined => SubscriptionStatus::Multicast,
                        FlowState::Refused { code, .. } => refusal_status(*code),
                        FlowState::Opening | FlowState::Requested { .. } => {
                            SubscriptionStatus::InProgress
                        }
                    },
                    None => match self.resolved.get(source) {
                        Some((Some(_), _)) => SubscriptionStatus::Resolved,
                        _ => SubscriptionStatus::Unresolved,
                    },
                };
                (rx, status)
            })
            .collect()
    }

    /// Where each slot of a flow's audio goes: RX channel per slot.
    pub fn slot_channels(&self, flow: FlowId) -> Option<Vec<u16>> {
        self.flows
            .get(&flow)
            .map(|f| f.slots.iter().map(|&(_, rx)| rx).collect())
    }

    /// The flow's wire format: channels per packet frame and bytes per sample.
    pub fn flow_format(&self, flow: FlowId) -> Option<(usize, usize)> {
        self.flows
            .get(&flow)
            .map(|f| (f.slots.len(), usize::from(f.info.bits / 8)))
    }

    /// The group a multicast flow's socket joins (`None` for a unicast flow).
    pub fn multicast_group(&self, flow: FlowId) -> Option<SocketAddrV4> {
        self.flows.get(&flow).and_then(|f| f.multicast)
    }

    fn flow_of(&self, rx: u16) -> Option<&Flow> {
        self.flows
            .values()
            .find(|f| f.slots.iter().any(|&(_, r)| r == rx))
    }

    /// Groups resolved subscriptions into flows (per transmitter, at most `nchan` slots
    /// each). Flows whose slots are unchanged keep running; others are closed and opened
    /// anew.
    fn rebuild(&mut self, now: MonoTime) {
        // (device, control address) → slots, in RX channel order.
        let mut wanted: BTreeMap<(String, SocketAddrV4), (ChannelInfo, Slots)> = BTreeMap::new();
        // (device, group) → one slot per bundle position.
        let mut bundles: BTreeMap<(String, SocketAddrV4), (ChannelInfo, Slots)> = BTreeMap::new();
        for (&rx, source) in &self.wanted {
            let Some((Some(info), _)) = self.resolved.get(source) else {
                continue;
            };
            if info.sample_rate != self.sample_rate {
                continue;
            }
            if let Some(BundleSlot {
                position,
                group: Some((group, nchan)),
                ..
            }) = info.bundle
            {
                let entry = bundles
                    .entry((source.device.clone(), group))
                    .or_insert_with(|| (info.clone(), vec![(0, 0); usize::from(nchan)]));
                // One RX channel per position: a second subscriber of the same TX channel
                // waits (the bundle's packet slot feeds one channel).
                if let Some(slot) = entry.1.get_mut(usize::from(position) - 1)
                    && slot.1 == 0
                {
                    *slot = (info.channel, rx);
                }
                continue;
            }
            let entry = wanted
                .entry((source.device.clone(), info.control))
                .or_insert_with(|| (info.clone(), Vec::new()));
            entry.1.push((info.channel, rx));
        }
        let mut desired: Vec<(String, ChannelInfo, Slots, Option<SocketAddrV4>)> = Vec::new();
        for ((device, _), (info, slots)) in wanted {
            let per_flow = usize::from(info.max_channels.max(1));
            for chunk in slots.chunks(per_flow) {
                desired.push((device.clone(), info.clone(), chunk.to_vec(), None));
            }
        }
        for ((device, group), (info, slots)) in bundles {
            desired.push((device, info, slots, Some(group)));
        }
        // Keep flows that are exactly wanted; close the rest.
        let mut keep = Vec::new();
        let ids: Vec<FlowId> = self.flows.keys().copied().collect();
        for id in ids {
            let f = &self.flows[&id];
            match desired.iter().position(|(d, i, s, m)| {
                *d == f.device && i.control == f.info.control && *s == f.slots && *m == f.multicast
            }) {
                Some(pos) => {
                    desired.remove(pos);
                    keep.push(id);
                }
                None => {
                    if let FlowState::Running { handle, .. } = f.state {
                        let bytes = FlowMessage::Stop(handle).write(self.next_transaction);
                        self.next_transaction = self.next_transaction.wrapping_add(1);
                        if let Ok(bytes) = bytes {
                            self.actions.push(Action::Send {
                                to: f.info.control,
                                bytes,
                            });
                        }
                    }
                    self.flows.remove(&id);
                    self.actions.push(Action::Close(id));
                }
            }
        }
        for (device, info, slots, multicast) in desired {
            let id = self.next_flow;
            self.next_flow = self.next_flow.wrapping_add(1).max(1);
            self.flows.insert(
                id,
                Flow {
                    device,
                    info,
                    slots,
                    socket: None,
                    state: FlowState::Opening,
                    last_keepalive: now,
                    multicast,
                },
            );
            self.actions.push(Action::Open(id));
        }
    }

    fn request(&mut self, id: FlowId, now: MonoTime) {
        let transaction = self.next_transaction;
        let Some(f) = self.flows.get_mut(&id) else {
            return;
        };
        let Some(socket) = f.socket else {
            return;
        };
        self.next_transaction = self.next_transaction.wrapping_add(1);
        let request = FlowMessage::Request(FlowRequest {
            sample_rate: self.sample_rate,
            bits: u32::from(f.info.bits),
            slots: f.slots.iter().map(|&(tx, _)| tx).collect(),
            fpp: self.fpp.min(f.info.max_fpp.max(1)),
            rx_device: self.rx_device.clone(),
            flow_name: format!("{id}_{}", self.rx_device),
            destination: socket,
        });
        f.state = FlowState::Requested {
            transaction,
            at: now,
        };
        if let Ok(bytes) = request.write(transaction) {
            self.actions.push(Action::Send {
                to: f.info.control,
                bytes,
            });
        }
    }
}

fn refusal_status(code: u16) -> SubscriptionStatus {
    match code {
        estuary_wire::dante::RESULT_RATE_MISMATCH | estuary_wire::dante::RESULT_BAD_FLOW => {
            SubscriptionStatus::FormatMismatch
        }
        estuary_wire::dante::RESULT_NO_FLOWS_LEFT => SubscriptionStatus::NoTxFlows,
        _ => SubscriptionStatus::TxFail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dante::flows::{TxFlows, TxLimits};
    use std::net::Ipv4Addr;

    #[test]
    fn channel_records_are_read_from_their_txt() {
        let txt = |k: &str| match k {
            "id" => Some("2"),
            "rate" => Some("48000"),
            "enc" => Some("24"),
            "nchan" => Some("4"),
            "fpp" => Some("32,2"),
            _ => None,
        };
        let info = ChannelInfo::from_record(Ipv4Addr::LOCALHOST, 4455, txt).expect("valid");
        assert_eq!(
            (
                info.channel,
                info.sample_rate,
                info.bits,
                info.max_channels,
                info.max_fpp
            ),
            (2, 48_000, 24, 4, 32)
        );
        assert_eq!(info.control.port(), 4455);
        let bad = |k: &str| if k == "id" { Some("0") } else { txt(k) };
        assert_eq!(ChannelInfo::from_record(Ipv4Addr::LOCALHOST, 1, bad), None);
        let no_rate = |k: &str| if k == "rate" { None } else { txt(k) };
        assert_eq!(
            ChannelInfo::from_record(Ipv4Addr::LOCALHOST, 1, no_rate),
            None
        );
    }

    fn source(channel: &str) -> Source {
        Source {
            channel: channel.into(),
            device: "desk".into(),
        }
    }

    fn info(channel: u16) -> ChannelInfo {
        ChannelInfo {
            control: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 4455),
            channel,
            sample_rate: 48_000,
            bits: 24,
            max_channels: 2,
            max_fpp: 32,
            bundle: None,
        }
    }

    fn at(ms: u64) -> MonoTime {
        MonoTime::from_nanos(ms * 1_000_000)
    }

    /// Plays the daemon: opens sockets and carries requests to a real flow table.
    fn drive(s: &mut Subscriber, tx: &mut TxFlows, now: MonoTime) -> Vec<Action> {
        let mut seen = Vec::new();
        let mut actions = s.tick(now);
        while !actions.is_empty() {
            for a in std::mem::take(&mut actions) {
                match &a {
                    Action::Open(id) => {
                        let port = 14_000 + *id as u16;
                        s.opened(
                            *id,
                            SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port),
                            now,
                        );
                    }
                    Action::Send { bytes, .. } => {
                        if let Some(reply) = tx.handle(now, bytes) {
                            s.reply(&reply, now);
                        }
                    }
                    _ => {}
                }
                seen.push(a);
            }
            actions = s.tick(now);
        }
        seen
    }

    #[test]
    fn subscriptions_become_flows_grouped_by_transmitter() {
        let mut s = Subscriber::new("stage", 48_000, 16);
        let mut tx = TxFlows::new(
            TxLimits {
                sample_rate: 48_000,
                tx_channels: 8,
                max_channels_per_flow: 2,
                max_fpp: 32,
                max_flows: 4,
            },
            7,
        );
        let subs = [(1, source("01")), (2, source("02")), (3, source("05"))];
        s.set_subscriptions(&subs, at(0));
        let actions = drive(&mut s, &mut tx, at(0));
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Resolve(_)))
                .count(),
            3
        );
        assert!(
            s.statuses()
                .iter()
                .all(|(_, st)| *st == SubscriptionStatus::Unresolved)
        );

        for (rx, src) in &subs {
            let n = src.channel.parse().expect("number");
            s.resolved(src, Some(info(n)), at(10));
            let _ = rx;
        }
        drive(&mut s, &mut tx, at(10));
        // Three channels, two per flow: two flows granted by the transmitter.
        assert_eq!(tx.flows().len(), 2);
        assert_eq!(tx.flows()[0].slots, [1, 2]);
        assert_eq!(tx.flows()[1].slots, [5]);
        assert!(
            s.statuses()
                .iter()
                .all(|(_, st)| *st == SubscriptionStatus::Unicast)
        );

        // Keepalives every 250 ms while audio flows.
        for ms in (20..1000).step_by(10) {
            for id in 1..10 {
                s.audio(id, at(ms));
            }
        }
        let actions = drive(&mut s, &mut tx, at(1000));
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::Keepalive(_)))
                .count(),
            2
        );

        // No audio for 2 s: asked again.
        let actions = drive(&mut s, &mut tx, at(3100));
        assert!(actions.iter().any(|a| matches!(a, Action::Send { .. })));

        // Unsubscribing channel 3 closes its flow and stops it at the transmitter.
        let third = (1..10)
            .find(|&id| s.slot_channels(id) == Some(vec![3]))
            .expect("a flow carries RX 3");
        assert_eq!(s.flow_format(third), Some((1, 3)));
        s.set_subscriptions(&subs[..2], at(3200));
        let actions = drive(&mut s, &mut tx, at(3200));
        assert!(actions.contains(&Action::Close(third)));
        assert_eq!(tx.flows().len(), 1);
    }

    #[test]
    fn refusals_and_missing_names_are_reported_and_retried() {
        let mut s = Subscriber::new("stage", 48_000, 16);
        let mut tx = TxFlows::new(
            TxLimits {
                sample_rate: 96_000,
                tx_channels: 8,
                max_channels_per_flow: 8,
                max_fpp: 32,
                max_flows: 4,
            },
            7,
        );
        s.set_subscriptions(&[(1, source("01")), (2, source("gone"))], at(0));
        drive(&mut s, &mut tx, at(0));
        s.resolved(&source("01"), Some(info(1)), at(5));
        s.resolved(&source("gone"), None, at(5));
        drive(&mut s, &mut tx, at(5));
        assert_eq!(
            s.statuses(),
            [
                (1, SubscriptionStatus::FormatMismatch),
                (2, SubscriptionStatus::Unresolved)
            ]
        );
        // The missing name is looked up again after the retry interval.
        let actions = drive(&mut s, &mut tx, at(5) + RESOLVE_RETRY);
        assert!(actions.contains(&Action::Resolve(source("gone"))));
    }

    #[test]
    fn bundled_channels_join_the_group_without_asking_the_transmitter() {
        let slot = BundleSlot::from_txt([("id", "3"), ("b.2", "2")]).expect("b.2");
        assert_eq!((slot.id, slot.position), (2, 2));
        assert_eq!(BundleSlot::from_txt([("b.x", "1"), ("b.1", "0")]), None);
        let bund = |k: &str| match k {
            "a.0" => Some("239.255.7.1"),
            "p.0" => Some("4321"),
            "nchan" => Some("2"),
            _ => None,
        };
        let group = BundleSlot::group_from_record(bund).expect("bundle record");
        assert_eq!(
            group,
            (SocketAddrV4::new(Ipv4Addr::new(239, 255, 7, 1), 4321), 2)
        );
        let unicast_group = |k: &str| {
            if k == "a.0" {
                Some("10.0.0.1")
            } else {
                bund(k)
            }
        };
        assert_eq!(BundleSlot::group_from_record(unicast_group), None);

        let mut s = Subscriber::new("stage", 48_000, 32);
        let mut tx = TxFlows::new(
            TxLimits {
                sample_rate: 48_000,
                tx_channels: 8,
                max_channels_per_flow: 2,
                max_fpp: 32,
                max_flows: 4,
            },
            7,
        );
        // RX 5 ← TX 02 (bundle position 2), RX 6 ← TX 01 (position 1).
        s.set_subscriptions(&[(5, source("02")), (6, source("01"))], at(0));
        drive(&mut s, &mut tx, at(0));
        for (name, position) in [("02", 2), ("01", 1)] {
            let mut i = info(position);
            i.bundle = Some(BundleSlot {
                id: 1,
                position,
                group: Some(group),
            });
            s.resolved(&source(name), Some(i), at(5));
        }
        let actions = drive(&mut s, &mut tx, at(5));
        assert!(
            !actions.iter().any(|a| matches!(a, Action::Send { .. })),
            "{actions:?}"
        );
        assert!(tx.flows().is_empty());
        let id = (1..10)
            .find(|&id| s.multicast_group(id).is_some())
            .expect("a multicast flow");
        assert_eq!(s.multicast_group(id), Some(group.0));
        // Packet slots in bundle order: position 1 → RX 6, position 2 → RX 5.
        assert_eq!(s.slot_channels(id), Some(vec![6, 5]));
        assert_eq!(
            s.statuses(),
            [
                (5, SubscriptionStatus::Multicast),
                (6, SubscriptionStatus::Multicast)
            ]
        );
        // No keepalives and no requests while it runs, audio or not.
        let actions = drive(&mut s, &mut tx, at(5000));
        assert!(actions.is_empty(), "{actions:?}");
        // Unsubscribing closes the socket; there is no flow to stop at the transmitter.
        s.set_subscriptions(&[], at(5100));
        let actions = drive(&mut s, &mut tx, at(5100));
        assert_eq!(actions, [Action::Close(id)]);
    }
}
