//! The `dante` section of `/api/status`: the device as controllers see it (names, channels,
//! subscriptions and their status) and its audio flows with their counters.
//!
//! The audio threads publish their part ([`RxView`], [`TxView`]) with `try_lock` a few times
//! a second; the supervisor's status builder reads those and the device's names here.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use estuary_engine::stats::StreamStats;
use estuary_wire::dante::arc::SubscriptionStatus;

use super::{HUB, lock};
use crate::status::InputCounters;

/// The Dante device (`[dante]`), when one runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DanteStatus {
    /// The name controllers show (the factory name unless renamed).
    pub name: String,
    pub factory_name: String,
    /// The IPv4 address published.
    pub address: String,
    pub sample_rate: u32,
    pub ports: DantePorts,
    /// The media clock the device stamps and plays audio by.
    pub clock: DanteClockStatus,
    pub tx_channels: Vec<DanteTxChannel>,
    pub rx_channels: Vec<DanteRxChannel>,
    /// Flows received (one per transmitter, or per multicast bundle joined).
    pub rx_flows: Vec<DanteRxFlow>,
    /// Every RX flow's counters together (a frame is concealed once whichever flow missed it).
    pub rx_counters: InputCounters,
    /// Unicast flows transmitted, on receivers' requests.
    pub tx_flows: Vec<DanteTxFlow>,
    /// Multicast bundles transmitted (`[[dante.multicast]]`).
    pub tx_bundles: Vec<DanteBundle>,
    pub tx_counters: DanteTxCounters,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DantePorts {
    pub arc: u16,
    pub flow_control: u16,
    pub cmc: u16,
    pub conmon: u16,
}

/// The media clock: `local` (the host's CLOCK_TAI), `ptpv1` (a Dante leader followed) or
/// `ptpv2` (the `[clock]` section's PTP, as `/api/clock` details it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteClockStatus {
    pub source: String,
    /// PTPv1: the servo has a delay and a steady offset line; PTPv2: the PTP clock is
    /// locked to its grandmaster.
    pub locked: bool,
    /// PTPv1: the leader's UUID (MAC); PTPv2: the grandmaster's clock identity.
    pub leader: Option<String>,
    /// PTPv1: leader time − local time, nanoseconds (at the last Sync); PTPv2: the
    /// servo's offset from its master.
    pub offset_ns: Option<i64>,
    /// The leader's rate against ours, parts per billion.
    pub drift_ppb: Option<f64>,
    /// The one-way path delay, nanoseconds.
    pub path_delay_ns: Option<i64>,
    /// Syncs measured.
    pub syncs_received: u64,
    /// PTPv1 only.
    pub delay_responses_received: u64,
    /// PTPv1 datagrams that did not parse.
    pub malformed: u64,
}

impl DanteClockStatus {
    /// The device's view of the PTPv2 clock it follows.
    pub(super) fn fill_from_ptpv2(&mut self, ptp: &crate::clock::PtpStatus) {
        self.locked = ptp.locked;
        self.leader.clone_from(&ptp.grandmaster);
        self.offset_ns = ptp.offset_ns.map(|o| o.round() as i64);
        self.drift_ppb = Some(ptp.frequency_ppm * 1_000.0);
        self.path_delay_ns = ptp.mean_path_delay_ns.map(|d| d.round() as i64);
        self.syncs_received = ptp.measurements;
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteTxChannel {
    pub number: u16,
    /// The name receivers subscribe by (the friendly one when renamed).
    pub name: String,
    pub factory_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteRxChannel {
    pub number: u16,
    pub name: String,
    /// `channel@device` it listens to, if subscribed.
    pub subscription: Option<String>,
    /// `none`, `unresolved`, `resolved`, `in_progress`, `unicast`, `multicast`,
    /// `format_mismatch`, `no_tx_flows`, ... (what controllers are told).
    pub status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DanteRxFlow {
    pub id: u32,
    /// RX channels fed, one per slot (0: a slot nobody listens to).
    pub channels: Vec<u16>,
    /// What those channels are subscribed to (`channel@device`).
    pub sources: Vec<String>,
    /// The group joined, for a multicast bundle.
    pub multicast_group: Option<String>,
    /// Where its audio comes from, once some arrived.
    pub from: Option<String>,
    pub counters: InputCounters,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteTxFlow {
    pub destination: String,
    pub rx_device: String,
    pub flow_name: String,
    /// TX channel per slot (0: silent).
    pub channels: Vec<u16>,
    pub frames_per_packet: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteBundle {
    pub id: u16,
    pub group: String,
    pub channels: Vec<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DanteTxCounters {
    pub packets_sent: u64,
    pub send_errors: u64,
    /// Frames sent as silence because the `tx_input` fell short.
    pub underrun_frames: u64,
    /// Frames of the `tx_input` dropped because it ran ahead.
    pub dropped_frames: u64,
    /// Packets (of every flow and bundle) not sent because the transmitter was stalled
    /// past what it stages (about 40 ms): receivers count them lost.
    pub packets_skipped: u64,
    /// Unicast flows dropped after 4 s without a keepalive.
    pub flows_expired: u64,
}

/// What the receiver thread publishes.
#[derive(Debug, Clone, Default)]
pub(super) struct RxView {
    pub flows: Vec<RxFlowView>,
    pub stats: StreamStats,
}

#[derive(Debug, Clone, Default)]
pub(super) struct RxFlowView {
    pub id: u32,
    pub channels: Vec<u16>,
    pub multicast_group: Option<String>,
    pub from: Option<String>,
    pub stats: StreamStats,
}

/// What the transmitter thread publishes.
#[derive(Debug, Clone, Default)]
pub(super) struct TxView {
    pub flows: Vec<DanteTxFlow>,
    pub counters: DanteTxCounters,
}

/// The running device's status, if a device runs.
pub fn status() -> Option<DanteStatus> {
    let hub = lock(&HUB).clone()?;
    let info = &hub.info;
    let device = lock(&hub.device).clone();
    let rx_view = lock(&hub.views.rx).clone();
    let tx_view = lock(&hub.views.tx).clone();
    let mut clock = lock(&hub.views.clock).clone();
    if let Some(ptp) = super::ptpv2_clock() {
        clock.fill_from_ptpv2(&ptp.status());
    }
    let rate = info.sample_rate;
    let rx_channels: Vec<DanteRxChannel> = device
        .rx_channels()
        .into_iter()
        .map(|c| DanteRxChannel {
            number: c.number,
            name: c.name,
            subscription: c.source.map(|s| format!("{}@{}", s.channel, s.device)),
            status: status_name(c.status),
        })
        .collect();
    let rx_flows = rx_view
        .flows
        .iter()
        .map(|f| DanteRxFlow {
            id: f.id,
            channels: f.channels.clone(),
            sources: f
                .channels
                .iter()
                .filter_map(|&n| {
                    rx_channels
                        .iter()
                        .find(|c| c.number == n)
                        .and_then(|c| c.subscription.clone())
                })
                .collect(),
            multicast_group: f.multicast_group.clone(),
            from: f.from.clone(),
            counters: InputCounters::from_stats(&f.stats, rate, 0, 0.0),
        })
        .collect();
    Some(DanteStatus {
        name: device.name().to_owned(),
        factory_name: device.spec().factory_name.clone(),
        address: info.address.to_string(),
        sample_rate: rate,
        ports: info.ports.clone(),
        clock,
        tx_channels: device
            .tx_channels()
            .map(|(number, factory, friendly)| DanteTxChannel {
                number,
                name: friendly.map_or_else(|| factory.clone(), str::to_owned),
                factory_name: factory,
            })
            .collect(),
        rx_channels,
        rx_flows,
        rx_counters: InputCounters::from_stats(&rx_view.stats, rate, 0, 0.0),
        tx_flows: tx_view.flows,
        tx_bundles: info.bundles.clone(),
        tx_counters: tx_view.counters,
    })
}

/// A subscription status as the API names it.
fn status_name(s: SubscriptionStatus) -> String {
    match s {
        SubscriptionStatus::None => "none",
        SubscriptionStatus::Unresolved => "unresolved",
        SubscriptionStatus::Resolved => "resolved",
        SubscriptionStatus::ResolveFailed => "resolve_failed",
        SubscriptionStatus::ConnectedToSelf => "connected_to_self",
        SubscriptionStatus::Idle => "idle",
        SubscriptionStatus::InProgress => "in_progress",
        SubscriptionStatus::Unicast => "unicast",
        SubscriptionStatus::Multicast => "multicast",
        SubscriptionStatus::FormatMismatch => "format_mismatch",
        SubscriptionStatus::NoRxFlows => "no_rx_flows",
        SubscriptionStatus::RxFail => "rx_fail",
        SubscriptionStatus::NoTxFlows => "no_tx_flows",
        SubscriptionStatus::TxFail => "tx_fail",
        other => return format!("other_0x{:04x}", other.code()),
    }
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_have_stable_api_names() {
        assert_eq!(status_name(SubscriptionStatus::InProgress), "in_progress");
        assert_eq!(status_name(SubscriptionStatus::Multicast), "multicast");
        assert_eq!(
            status_name(SubscriptionStatus::Other(0x1234)),
            "other_0x1234"
        );
    }
}
