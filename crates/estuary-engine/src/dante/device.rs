//! A Dante device's control state (unofficial implementation): its names, channels and
//! subscriptions, and the answers to what controllers ask over ARC. Pure: the daemon feeds
//! it datagrams and sends back what it returns, and persists [`DeviceState`].

use estuary_wire::dante::arc::{
    self, ChannelCounts, DeviceNames, Format, Request, RxChannel, Source, SubscriptionStatus,
    TxChannel,
};
use estuary_wire::dante::{Message, RESULT_FAILURE, RESULT_OK, valid_name};

/// Result code of a refused rename (an invalid name).
const RESULT_BAD_NAME: u16 = 0x0302;

/// What a device is when it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    /// The name the device falls back to when a controller resets it.
    pub factory_name: String,
    pub tx_channels: u16,
    pub rx_channels: u16,
    pub format: Format,
    /// Most channels per unicast flow (the `nchan` the device advertises).
    pub max_channels_per_flow: u16,
    pub board: String,
}

/// What a device keeps across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceState {
    /// The friendly name, when it differs from the factory name.
    pub name: Option<String>,
    /// Friendly names of TX channels (channel number, name).
    pub tx_names: Vec<(u16, String)>,
    /// Friendly names of RX channels (channel number, name).
    pub rx_names: Vec<(u16, String)>,
    /// RX channel number → the TX channel it listens to.
    pub subscriptions: Vec<(u16, Source)>,
}

/// What a request changed, so the daemon re-publishes mDNS records, re-routes audio and
/// saves the state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub device_name: bool,
    pub tx_names: bool,
    /// RX channels whose subscription or name changed.
    pub rx_channels: Vec<u16>,
}

impl Changes {
    pub fn any(&self) -> bool {
        self.device_name || self.tx_names || !self.rx_channels.is_empty()
    }
}

#[derive(Debug, Clone)]
struct Rx {
    friendly: Option<String>,
    source: Option<Source>,
    status: SubscriptionStatus,
}

/// One device.
#[derive(Debug, Clone)]
pub struct Device {
    spec: DeviceSpec,
    name: Option<String>,
    tx_names: Vec<Option<String>>,
    rx: Vec<Rx>,
    /// Counts changes of names, subscriptions and statuses, so readers copy the state only
    /// when it moved.
    generation: u64,
}

/// The default name of channel `n`: two digits, as Dante devices name them.
pub fn factory_channel_name(n: u16) -> String {
    format!("{n:02}")
}

impl Device {
    /// A device in `state` (names and subscriptions that are out of range are dropped).
    pub fn new(spec: DeviceSpec, state: &DeviceState) -> Device {
        let mut device = Device {
            name: None,
            tx_names: vec![None; usize::from(spec.tx_channels)],
            rx: (0..spec.rx_channels)
                .map(|_| Rx {
                    friendly: None,
                    source: None,
                    status: SubscriptionStatus::None,
                })
                .collect(),
            spec,
            generation: 0,
        };
        device.name = state
            .name
            .clone()
            .filter(|n| valid_name(n) && *n != device.spec.factory_name);
        for (n, name) in &state.tx_names {
            if let Some(slot) = device.tx_names.get_mut(usize::from(n.wrapping_sub(1))) {
                *slot = Some(name.clone());
            }
        }
        for (n, name) in &state.rx_names {
            if let Some(rx) = device.rx_mut(*n) {
                rx.friendly = Some(name.clone());
            }
        }
        for (n, source) in &state.subscriptions {
            if let Some(rx) = device.rx_mut(*n) {
                rx.source = Some(source.clone());
                rx.status = SubscriptionStatus::Unresolved;
            }
        }
        device
    }

    fn rx_mut(&mut self, channel: u16) -> Option<&mut Rx> {
        self.rx.get_mut(usize::from(channel.checked_sub(1)?))
    }

    /// The friendly name (the factory name unless renamed).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.spec.factory_name)
    }

    pub fn spec(&self) -> &DeviceSpec {
        &self.spec
    }

    /// Changes every time names, subscriptions or statuses change.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What to persist.
    pub fn state(&self) -> DeviceState {
        let numbered = |i: usize| (i + 1) as u16;
        DeviceState {
            name: self.name.clone(),
            tx_names: self
                .tx_names
                .iter()
                .enumerate()
                .filter_map(|(i, n)| Some((numbered(i), n.clone()?)))
                .collect(),
            rx_names: self
                .rx
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((numbered(i), r.friendly.clone()?)))
                .collect(),
            subscriptions: self
                .rx
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((numbered(i), r.source.clone()?)))
                .collect(),
        }
    }

    /// TX channels: number, factory name, friendly name if any.
    pub fn tx_channels(&self) -> impl Iterator<Item = (u16, String, Option<&str>)> + '_ {
        self.tx_names.iter().enumerate().map(|(i, n)| {
            (
                (i + 1) as u16,
                factory_channel_name((i + 1) as u16),
                n.as_deref(),
            )
        })
    }

    /// The TX channel a subscription names (by friendly or factory name), if it is ours.
    pub fn tx_channel_named(&self, name: &str) -> Option<u16> {
        self.tx_channels()
            .find(|(_, factory, friendly)| *friendly == Some(name) || factory == name)
            .map(|(n, _, _)| n)
    }

    /// RX channels as 0x3000 lists them.
    pub fn rx_channels(&self) -> Vec<RxChannel> {
        self.rx
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let number = (i + 1) as u16;
                RxChannel {
                    number,
                    name: r
                        .friendly
                        .clone()
                        .unwrap_or_else(|| factory_channel_name(number)),
                    source: r.source.clone(),
                    status: r.status,
                }
            })
            .collect()
    }

    /// Sets the status the subscriber reached for RX channel `channel`.
    pub fn set_status(&mut self, channel: u16, status: SubscriptionStatus) -> bool {
        match self.rx_mut(channel) {
            Some(rx) if rx.source.is_some() && rx.status != status => {
                rx.status = status;
                self.generation += 1;
                true
            }
            _ => false,
        }
    }

    /// Answers one ARC datagram. Responses and unparsable bytes get no answer.
    pub fn handle_arc(&mut self, datagram: &[u8]) -> (Option<Vec<u8>>, Changes) {
        let mut changes = Changes::default();
        let Ok(message) = Message::parse(datagram) else {
            return (None, changes);
        };
        if !message.header.is_request() {
            return (None, changes);
        }
        let h = message.header;
        let reply = match Request::parse(&message) {
            Ok(request) => self.answer(&h, request, &mut changes),
            Err(_) => arc::write_status(&h, RESULT_FAILURE),
        };
        if changes.any() {
            self.generation += 1;
        }
        (reply.ok(), changes)
    }

    fn answer(
        &mut self,
        h: &estuary_wire::dante::Header,
        request: Request,
        changes: &mut Changes,
    ) -> Result<Vec<u8>, estuary_wire::dante::DanteError> {
        let format = self.spec.format;
        match request {
            Request::ChannelCounts => arc::write_channel_counts(
                h,
                &ChannelCounts {
                    tx: self.spec.tx_channels,
                    rx: self.spec.rx_channels,
                    max_channels_per_flow: self.spec.max_channels_per_flow,
                    max_tx_flows: 32,
                    max_rx_flows: 32,
                    tx_renamable: true,
                    tx_multicast: false,
                },
            ),
            Request::DeviceName => arc::write_device_name(h, self.name()),
            Request::DeviceNames => arc::write_device_names(
                h,
                &DeviceNames {
                    board: self.spec.board.clone(),
                    revision: ":1".into(),
                    friendly: self.name().to_owned(),
                    factory: self.spec.factory_name.clone(),
                },
            ),
            Request::SetDeviceName(name) => {
                match name {
                    None => self.name = None,
                    Some(n) if valid_name(&n) => {
                        self.name = (n != self.spec.factory_name).then_some(n)
                    }
                    Some(_) => return arc::write_status(h, RESULT_BAD_NAME),
                }
                changes.device_name = true;
                arc::write_status(h, RESULT_OK)
            }
            Request::TxChannels { first } => {
                let all: Vec<TxChannel> = self
                    .tx_channels()
                    .map(|(number, name, _)| TxChannel { number, name })
                    .collect();
                let (shown, more) = arc::page(&all, first, arc::TX_PAGE);
                arc::write_tx_channels(h, format, shown, more)
            }
            Request::TxNames { first } => {
                // Devices list every channel here, with its friendly name or else its
                // factory name, so controllers can subscribe by either.
                let all: Vec<TxChannel> = self
                    .tx_channels()
                    .map(|(number, factory, friendly)| TxChannel {
                        number,
                        name: friendly.map_or(factory, str::to_owned),
                    })
                    .collect();
                let (shown, more) = arc::page(&all, first, arc::TX_PAGE);
                arc::write_tx_names(h, shown, more)
            }
            Request::RxChannels { first } => {
                let all = self.rx_channels();
                let (shown, more) = arc::page(&all, first, arc::RX_PAGE);
                arc::write_rx_channels(h, format, shown, more)
            }
            Request::RenameTx(list) => {
                if list
                    .iter()
                    .any(|r| r.name.as_deref().is_some_and(|n| !valid_name(n)))
                {
                    return arc::write_status(h, RESULT_BAD_NAME);
                }
                for r in list {
                    if let Some(slot) = self
                        .tx_names
                        .get_mut(usize::from(r.channel.wrapping_sub(1)))
                    {
                        *slot = r.name;
                        changes.tx_names = true;
                    }
                }
                let mut w = estuary_wire::dante::Writer::new(h.response(RESULT_OK));
                w.u16(0);
                w.finish()
            }
            Request::RenameRx(list) => {
                if list
                    .iter()
                    .any(|r| r.name.as_deref().is_some_and(|n| !valid_name(n)))
                {
                    return arc::write_status(h, RESULT_BAD_NAME);
                }
                for r in list {
                    if let Some(rx) = self.rx_mut(r.channel) {
                        rx.friendly = r.name;
                        changes.rx_channels.push(r.channel);
                    }
                }
                arc::write_status(h, RESULT_OK)
            }
            Request::Subscribe(list) => {
                for s in list {
                    if let Some(rx) = self.rx_mut(s.rx_channel) {
                        rx.status = if s.source.is_some() {
                            SubscriptionStatus::Unresolved
                        } else {
                            SubscriptionStatus::None
                        };
                        rx.source = s.source;
                        changes.rx_channels.push(s.rx_channel);
                    }
                }
                arc::write_status(h, RESULT_OK)
            }
            Request::Unsubscribe(channels) => {
                for c in channels {
                    if let Some(rx) = self.rx_mut(c) {
                        rx.source = None;
                        rx.status = SubscriptionStatus::None;
                        changes.rx_channels.push(c);
                    }
                }
                arc::write_status(h, RESULT_OK)
            }
            Request::Settings | Request::Unknown1102 | Request::ClockDomain => arc::write_opaque(h),
            Request::TxFlows { .. } | Request::RxFlows { .. } | Request::Other(_) => {
                arc::write_status(h, RESULT_FAILURE)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_wire::dante::arc::{Subscription, write_request};

    fn device() -> Device {
        Device::new(
            DeviceSpec {
                factory_name: "estuary-0001".into(),
                tx_channels: 4,
                rx_channels: 20,
                format: Format {
                    sample_rate: 48_000,
                    bits: 24,
                },
                max_channels_per_flow: 4,
                board: "Estuary".into(),
            },
            &DeviceState::default(),
        )
    }

    fn ask(d: &mut Device, request: &Request) -> (Vec<u8>, Changes) {
        let bytes = write_request(0x27FF, 1, request).expect("writes");
        let (reply, changes) = d.handle_arc(&bytes);
        (reply.expect("an answer"), changes)
    }

    #[test]
    fn subscriptions_show_in_the_rx_list_and_persist() {
        let mut d = device();
        let source = Source {
            channel: "02".into(),
            device: "desk".into(),
        };
        let before = d.generation();
        let (_, changes) = ask(
            &mut d,
            &Request::Subscribe(vec![Subscription {
                rx_channel: 18,
                source: Some(source.clone()),
            }]),
        );
        assert_eq!(changes.rx_channels, [18]);
        let subscribed = d.generation();
        assert_ne!(subscribed, before, "a subscription is a change");
        ask(&mut d, &Request::RxChannels { first: 1 });
        assert_eq!(d.generation(), subscribed, "a read is not a change");
        // Channel 18 is on the second page.
        let (page2, _) = ask(&mut d, &Request::RxChannels { first: 17 });
        let list = arc::parse_rx_channels(&Message::parse(&page2).expect("h")).expect("p");
        assert_eq!(list[1].number, 18);
        assert_eq!(list[1].source.as_ref(), Some(&source));
        assert_eq!(list[1].status, SubscriptionStatus::Unresolved);

        let restarted = Device::new(d.spec().clone(), &d.state());
        assert_eq!(restarted.rx_channels(), d.rx_channels());
        assert!(d.set_status(18, SubscriptionStatus::InProgress));
        assert!(!d.set_status(18, SubscriptionStatus::InProgress));
        assert_eq!(d.generation(), subscribed + 1, "only a new status counts");

        ask(&mut d, &Request::Unsubscribe(vec![18]));
        assert_eq!(d.state().subscriptions, []);
    }

    #[test]
    fn renames_are_checked_and_kept() {
        let mut d = device();
        let (reply, changes) = ask(&mut d, &Request::SetDeviceName(Some("Stage-Left".into())));
        assert_eq!(Message::parse(&reply).expect("h").header.result, RESULT_OK);
        assert!(changes.device_name);
        assert_eq!(d.name(), "Stage-Left");
        let (reply, _) = ask(&mut d, &Request::SetDeviceName(Some("no spaces".into())));
        assert_eq!(
            Message::parse(&reply).expect("h").header.result,
            RESULT_BAD_NAME
        );
        assert_eq!(d.name(), "Stage-Left");
        ask(
            &mut d,
            &Request::RenameTx(vec![arc::Rename {
                channel: 2,
                name: Some("Vox".into()),
            }]),
        );
        assert_eq!(d.tx_channel_named("Vox"), Some(2));
        assert_eq!(d.tx_channel_named("02"), Some(2));
        let state = d.state();
        let again = Device::new(d.spec().clone(), &state);
        assert_eq!(again.name(), "Stage-Left");
        assert_eq!(again.tx_channel_named("Vox"), Some(2));
        ask(&mut d, &Request::SetDeviceName(None));
        assert_eq!(d.name(), "estuary-0001");
    }

    #[test]
    fn counts_and_names_answer() {
        let mut d = device();
        let (reply, _) = ask(&mut d, &Request::ChannelCounts);
        let counts = arc::parse_channel_counts(&Message::parse(&reply).expect("h")).expect("p");
        assert_eq!((counts.tx, counts.rx), (4, 20));
        let (reply, _) = ask(&mut d, &Request::TxChannels { first: 1 });
        let (tx, format) = arc::parse_tx_channels(&Message::parse(&reply).expect("h")).expect("p");
        assert_eq!(tx.len(), 4);
        assert_eq!(format.map(|f| f.sample_rate), Some(48_000));
        // Garbage gets no answer; an unknown opcode gets a failure.
        assert_eq!(d.handle_arc(&[1, 2, 3]).0, None);
        let (reply, _) = ask(&mut d, &Request::Other(0x7777));
        assert_eq!(
            Message::parse(&reply).expect("h").header.result,
            RESULT_FAILURE
        );
    }
}
