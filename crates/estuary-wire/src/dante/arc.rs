//! ARC, "audio routing control" (UDP 4440): a controller asks a device for its names and
//! channels and sets the device's subscriptions. The legacy dialect (`arcp_vers=2.7.41`),
//! which netaudio and Dante Controller speak to devices that advertise it.
//!
//! [`Request::parse`] reads what a controller sends; the `write_*` functions build the
//! device's answers, and the `parse_*` functions read those answers back (a controller's
//! view, used by our own tests and tools).

use super::{DanteError, Header, Message, RESULT_MORE, RESULT_OK, Reader, Writer};

pub const OP_CHANNEL_COUNTS: u16 = 0x1000;
pub const OP_SET_DEVICE_NAME: u16 = 0x1001;
pub const OP_DEVICE_NAME: u16 = 0x1002;
pub const OP_DEVICE_NAMES: u16 = 0x1003;
pub const OP_SETTINGS: u16 = 0x1100;
pub const OP_1102: u16 = 0x1102;
pub const OP_TX_CHANNELS: u16 = 0x2000;
pub const OP_TX_NAMES: u16 = 0x2010;
pub const OP_RENAME_TX: u16 = 0x2013;
pub const OP_TX_FLOWS: u16 = 0x2200;
pub const OP_RX_CHANNELS: u16 = 0x3000;
pub const OP_RENAME_RX: u16 = 0x3001;
pub const OP_SUBSCRIBE: u16 = 0x3010;
pub const OP_UNSUBSCRIBE: u16 = 0x3014;
pub const OP_RX_FLOWS: u16 = 0x3200;
pub const OP_CLOCK_DOMAIN: u16 = 0x3300;

/// Records per page of the RX channel list (what netaudio 0.2.4 asks for).
pub const RX_PAGE: usize = 16;
/// Records per page of the TX channel lists.
pub const TX_PAGE: usize = 32;
/// Most subscriptions one 0x3010 request may carry.
pub const MAX_SUBSCRIPTIONS: usize = 16;
/// Most channels one 0x3014 request may remove (far above any device's RX count).
pub const MAX_UNSUBSCRIBE: usize = 1024;

/// PCM type of the format descriptor on current devices.
const PCM_TYPE: u16 = 0x000E;

/// What a controller asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    ChannelCounts,
    DeviceName,
    /// `None` resets the name to the factory name.
    SetDeviceName(Option<String>),
    DeviceNames,
    /// Lists start at a 1-based index.
    TxChannels {
        first: u16,
    },
    TxNames {
        first: u16,
    },
    RxChannels {
        first: u16,
    },
    TxFlows {
        first: u16,
    },
    RxFlows {
        first: u16,
    },
    RenameTx(Vec<Rename>),
    RenameRx(Vec<Rename>),
    Subscribe(Vec<Subscription>),
    Unsubscribe(Vec<u16>),
    /// Opcodes Dante Controller sends whose meaning is unknown; answered with what real
    /// devices answer.
    Settings,
    Unknown1102,
    ClockDomain,
    /// Anything else: answered with a failure.
    Other(u16),
}

/// A channel rename; `None` resets to the factory name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    pub channel: u16,
    pub name: Option<String>,
}

/// One RX channel's subscription; `None` removes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub rx_channel: u16,
    pub source: Option<Source>,
}

/// A TX channel of some device: `channel@device`. The device `.` means this device.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Source {
    pub channel: String,
    pub device: String,
}

impl Request {
    /// Reads a request. A response (non-zero result field) is `Invalid`.
    pub fn parse(message: &Message<'_>) -> Result<Request, DanteError> {
        if !message.header.is_request() {
            return Err(DanteError::Invalid {
                field: "result",
                value: u64::from(message.header.result),
            });
        }
        let r = message.reader();
        let first = || r.u16(12);
        Ok(match message.header.opcode {
            OP_CHANNEL_COUNTS => Request::ChannelCounts,
            OP_DEVICE_NAME => Request::DeviceName,
            OP_DEVICE_NAMES => Request::DeviceNames,
            OP_SET_DEVICE_NAME => {
                if message.bytes().len() <= super::HEADER_LEN {
                    Request::SetDeviceName(None)
                } else {
                    let name = r.string(super::HEADER_LEN)?;
                    Request::SetDeviceName((!name.is_empty()).then(|| name.to_owned()))
                }
            }
            OP_TX_CHANNELS => Request::TxChannels { first: first()? },
            OP_TX_NAMES => Request::TxNames { first: first()? },
            OP_RX_CHANNELS => Request::RxChannels { first: first()? },
            OP_TX_FLOWS => Request::TxFlows { first: first()? },
            OP_RX_FLOWS => Request::RxFlows { first: first()? },
            OP_RENAME_TX => Request::RenameTx(renames(r, 6, 2)?),
            OP_RENAME_RX => Request::RenameRx(renames(r, 4, 0)?),
            OP_SUBSCRIBE => Request::Subscribe(subscriptions(r)?),
            OP_UNSUBSCRIBE => Request::Unsubscribe(unsubscriptions(r)?),
            OP_SETTINGS => Request::Settings,
            OP_1102 => Request::Unknown1102,
            OP_CLOCK_DOMAIN => Request::ClockDomain,
            other => Request::Other(other),
        })
    }
}

/// Count at abs 11, then records of `size` bytes from 12 with the channel at `channel_at`
/// and the name offset after it.
fn renames(r: Reader<'_>, size: usize, channel_at: usize) -> Result<Vec<Rename>, DanteError> {
    let count = usize::from(r.u8(11)?);
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = 12 + size * i;
        let channel = r.u16(at + channel_at)?;
        let name = r.string_field(at + channel_at + 2)?;
        out.push(Rename {
            channel,
            name: name.filter(|n| !n.is_empty()).map(str::to_owned),
        });
    }
    Ok(out)
}

fn subscriptions(r: Reader<'_>) -> Result<Vec<Subscription>, DanteError> {
    let count = usize::from(r.u8(11)?);
    if count > MAX_SUBSCRIPTIONS {
        return Err(DanteError::Invalid {
            field: "subscription count",
            value: count as u64,
        });
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = 12 + 6 * i;
        let rx_channel = r.u16(at)?;
        let channel = r.string_field(at + 2)?.filter(|s| !s.is_empty());
        let device = r.string_field(at + 4)?.filter(|s| !s.is_empty());
        let source = match (channel, device) {
            (None, None) => None,
            (Some(channel), Some(device)) => Some(Source {
                channel: channel.to_owned(),
                device: device.to_owned(),
            }),
            _ => {
                return Err(DanteError::Invalid {
                    field: "subscription source",
                    value: u64::from(rx_channel),
                });
            }
        };
        out.push(Subscription { rx_channel, source });
    }
    Ok(out)
}

/// 0x3014: the u32 at abs 8 is the count (its upper half doubles as the request's zero
/// result field), then that many u32 channel numbers.
fn unsubscriptions(r: Reader<'_>) -> Result<Vec<u16>, DanteError> {
    let count = usize::from(r.u16(10)?);
    if count > MAX_UNSUBSCRIBE {
        return Err(DanteError::Invalid {
            field: "unsubscribe count",
            value: count as u64,
        });
    }
    (0..count)
        .map(|i| {
            let v = r.u32(12 + 4 * i)?;
            u16::try_from(v).map_err(|_| DanteError::Invalid {
                field: "rx channel",
                value: u64::from(v),
            })
        })
        .collect()
}

/// Writes a request (a controller's side; our tests and tools use it).
pub fn write_request(
    protocol: u16,
    transaction: u16,
    request: &Request,
) -> Result<Vec<u8>, DanteError> {
    let opcode = match request {
        Request::ChannelCounts => OP_CHANNEL_COUNTS,
        Request::DeviceName => OP_DEVICE_NAME,
        Request::SetDeviceName(_) => OP_SET_DEVICE_NAME,
        Request::DeviceNames => OP_DEVICE_NAMES,
        Request::TxChannels { .. } => OP_TX_CHANNELS,
        Request::TxNames { .. } => OP_TX_NAMES,
        Request::RxChannels { .. } => OP_RX_CHANNELS,
        Request::TxFlows { .. } => OP_TX_FLOWS,
        Request::RxFlows { .. } => OP_RX_FLOWS,
        Request::RenameTx(_) => OP_RENAME_TX,
        Request::RenameRx(_) => OP_RENAME_RX,
        Request::Subscribe(_) => OP_SUBSCRIBE,
        Request::Unsubscribe(_) => OP_UNSUBSCRIBE,
        Request::Settings => OP_SETTINGS,
        Request::Unknown1102 => OP_1102,
        Request::ClockDomain => OP_CLOCK_DOMAIN,
        Request::Other(op) => *op,
    };
    let mut w = Writer::new(Header {
        protocol,
        length: 0,
        transaction,
        opcode,
        result: 0,
    });
    match request {
        Request::SetDeviceName(Some(name)) => {
            w.string(name)?;
        }
        Request::TxChannels { first }
        | Request::TxNames { first }
        | Request::RxChannels { first }
        | Request::TxFlows { first }
        | Request::RxFlows { first } => {
            w.u16(1).u16(*first).u16(0);
        }
        Request::RenameTx(list) => write_renames(&mut w, list, true)?,
        Request::RenameRx(list) => write_renames(&mut w, list, false)?,
        Request::Subscribe(list) => {
            if list.len() > MAX_SUBSCRIPTIONS {
                return Err(DanteError::Invalid {
                    field: "subscription count",
                    value: list.len() as u64,
                });
            }
            w.u8(2).u8(list.len() as u8);
            let slots: Vec<usize> = list
                .iter()
                .map(|s| {
                    let at = w.position();
                    w.u16(s.rx_channel).u16(0).u16(0);
                    at
                })
                .collect();
            for (s, at) in list.iter().zip(slots) {
                if let Some(source) = &s.source {
                    let channel = w.string(&source.channel)?;
                    let device = w.string(&source.device)?;
                    w.patch_u16(at + 2, channel);
                    w.patch_u16(at + 4, device);
                }
            }
        }
        Request::Unsubscribe(channels) => {
            // The count's upper half is the request's zero result field, already written.
            w.u16(
                u16::try_from(channels.len()).map_err(|_| DanteError::Invalid {
                    field: "unsubscribe count",
                    value: channels.len() as u64,
                })?,
            );
            for &c in channels {
                w.u32(u32::from(c));
            }
        }
        _ => {}
    }
    w.finish()
}

fn write_renames(w: &mut Writer, list: &[Rename], tx: bool) -> Result<(), DanteError> {
    let count = u8::try_from(list.len()).map_err(|_| DanteError::Invalid {
        field: "rename count",
        value: list.len() as u64,
    })?;
    w.u8(2).u8(count);
    let slots: Vec<usize> = list
        .iter()
        .map(|r| {
            if tx {
                w.u16(0);
            }
            let at = w.position();
            w.u16(r.channel).u16(0);
            at
        })
        .collect();
    for (r, at) in list.iter().zip(slots) {
        let offset = w.string(r.name.as_deref().unwrap_or(""))?;
        w.patch_u16(at + 2, offset);
    }
    Ok(())
}

/// The answer with no body (OK, or an error code).
pub fn write_status(request: &Header, result: u16) -> Result<Vec<u8>, DanteError> {
    Writer::new(request.response(result)).finish()
}

/// What a device says of its channels and flows (0x1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelCounts {
    pub tx: u16,
    pub rx: u16,
    pub max_channels_per_flow: u16,
    pub max_tx_flows: u16,
    pub max_rx_flows: u16,
    pub tx_renamable: bool,
    pub tx_multicast: bool,
}

pub fn write_channel_counts(request: &Header, c: &ChannelCounts) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(RESULT_OK));
    let caps = if c.tx_renamable { 0x10 } else { 0 } | if c.tx_multicast { 0x20 } else { 0 };
    w.u8(0).u8(caps).u16(c.tx).u16(c.rx).u16(4);
    w.u16(c.max_channels_per_flow).u16(8);
    w.u16(c.max_tx_flows).u16(c.max_rx_flows);
    w.u16(c.tx.saturating_add(c.rx)).u16(1);
    // Must be 1, or Dante Controller ignores the RX channels.
    w.u16(1);
    w.zeros(12);
    w.finish()
}

pub fn parse_channel_counts(message: &Message<'_>) -> Result<ChannelCounts, DanteError> {
    let r = message.reader();
    let caps = r.u8(11)?;
    Ok(ChannelCounts {
        tx: r.u16(12)?,
        rx: r.u16(14)?,
        max_channels_per_flow: r.u16(18)?,
        max_tx_flows: r.u16(22)?,
        max_rx_flows: r.u16(24)?,
        tx_renamable: caps & 0x10 != 0,
        tx_multicast: caps & 0x20 != 0,
    })
}

/// The device's friendly name (0x1002).
pub fn write_device_name(request: &Header, name: &str) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(RESULT_OK));
    w.string(name)?;
    w.finish()
}

pub fn parse_device_name<'a>(message: &Message<'a>) -> Result<&'a str, DanteError> {
    message.reader().string(super::HEADER_LEN)
}

/// The names a device reports of itself (0x1003).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNames {
    pub board: String,
    pub revision: String,
    pub friendly: String,
    pub factory: String,
}

pub fn write_device_names(request: &Header, n: &DeviceNames) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(RESULT_OK));
    w.u16(0).u16(0).u16(0);
    let offsets_at = w.position();
    w.zeros(12).zeros(12);
    w.u16(0x2729).u16(0).u16(0x1102).u16(0);
    let board = w.string(&n.board)?;
    let revision = w.string(&n.revision)?;
    let friendly = w.string(&n.friendly)?;
    let factory = w.string(&n.factory)?;
    for (i, v) in [board, revision, 0, friendly, factory, friendly]
        .into_iter()
        .enumerate()
    {
        w.patch_u16(offsets_at + 2 * i, v);
    }
    w.finish()
}

pub fn parse_device_names(message: &Message<'_>) -> Result<DeviceNames, DanteError> {
    let r = message.reader();
    let text = |at| -> Result<String, DanteError> {
        Ok(r.string_field(at)?.unwrap_or_default().to_owned())
    };
    Ok(DeviceNames {
        board: text(16)?,
        revision: text(18)?,
        friendly: text(22)?,
        factory: text(24)?,
    })
}

/// The audio format every channel of a list shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    pub sample_rate: u32,
    pub bits: u16,
}

fn write_format(w: &mut Writer, f: Format) -> Result<u16, DanteError> {
    let at = w.offset()?;
    w.u32(f.sample_rate).u8(1).u8(1).u16(f.bits).u16(0x0400);
    w.u16(f.bits).u16(f.bits).u16(PCM_TYPE);
    Ok(at)
}

fn read_format(r: Reader<'_>, at: usize) -> Result<Format, DanteError> {
    Ok(Format {
        sample_rate: r.u32(at)?,
        bits: r.u16(at + 6)?,
    })
}

/// The part of `items` a page starting at the 1-based `first` shows, and whether more
/// follow.
pub fn page<T>(items: &[T], first: u16, size: usize) -> (&[T], bool) {
    let start = usize::from(first.max(1) - 1).min(items.len());
    let end = (start + size).min(items.len());
    (&items[start..end], end < items.len())
}

/// Starts a paged answer: the record count twice, and `records × size` zero bytes to fill
/// in; returns where the records start. (Byte 10 is sometimes described as the page's
/// capacity, but netaudio 0.4.2 rejects a page where it differs from the record count.)
fn start_page(w: &mut Writer, records: usize, size: usize) -> usize {
    let count = records.min(255) as u8;
    w.u8(count).u8(count);
    let at = w.position();
    w.zeros(records * size);
    at
}

/// One TX channel and its factory name (0x2000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxChannel {
    pub number: u16,
    pub name: String,
}

/// A page of the TX channel list with factory names (0x2000).
pub fn write_tx_channels(
    request: &Header,
    format: Format,
    channels: &[TxChannel],
    more: bool,
) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(if more { RESULT_MORE } else { RESULT_OK }));
    let records = start_page(&mut w, channels.len(), 8);
    let descriptor = write_format(&mut w, format)?;
    for (i, c) in channels.iter().enumerate() {
        let at = records + 8 * i;
        let name = w.string(&c.name)?;
        w.patch_u16(at, c.number);
        w.patch_u16(at + 2, 0x0007);
        w.patch_u16(at + 4, descriptor);
        w.patch_u16(at + 6, name);
    }
    w.finish()
}

/// Reads a TX channel page: the channels and their shared format.
pub fn parse_tx_channels(
    message: &Message<'_>,
) -> Result<(Vec<TxChannel>, Option<Format>), DanteError> {
    let r = message.reader();
    let count = usize::from(r.u8(11)?);
    let mut format = None;
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let at = 12 + 8 * i;
        let descriptor = usize::from(r.u16(at + 4)?);
        if format.is_none() {
            format = Some(read_format(r, descriptor)?);
        }
        out.push(TxChannel {
            number: r.u16(at)?,
            name: r.string_field(at + 6)?.unwrap_or_default().to_owned(),
        });
    }
    Ok((out, format))
}

/// A page of TX friendly names (0x2010): channels listed with their user-given names.
pub fn write_tx_names(
    request: &Header,
    names: &[TxChannel],
    more: bool,
) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(if more { RESULT_MORE } else { RESULT_OK }));
    let records = start_page(&mut w, names.len(), 6);
    w.zeros(4);
    for (i, c) in names.iter().enumerate() {
        let at = records + 6 * i;
        let name = w.string(&c.name)?;
        w.patch_u16(at, c.number);
        w.patch_u16(at + 2, c.number);
        w.patch_u16(at + 4, name);
    }
    w.finish()
}

pub fn parse_tx_names(message: &Message<'_>) -> Result<Vec<TxChannel>, DanteError> {
    let r = message.reader();
    let count = usize::from(r.u8(11)?);
    (0..count)
        .map(|i| {
            let at = 12 + 6 * i;
            Ok(TxChannel {
                number: r.u16(at)?,
                name: r.string_field(at + 4)?.unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// Where an RX channel's subscription stands, as 0x3000 reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SubscriptionStatus {
    None,
    Unresolved,
    Resolved,
    ResolveFailed,
    ConnectedToSelf,
    Idle,
    InProgress,
    Unicast,
    Multicast,
    FormatMismatch,
    NoRxFlows,
    RxFail,
    NoTxFlows,
    TxFail,
    /// Any other value devices report.
    Other(u16),
}

impl SubscriptionStatus {
    pub fn code(self) -> u16 {
        match self {
            SubscriptionStatus::None => 0,
            SubscriptionStatus::Unresolved => 1,
            SubscriptionStatus::Resolved => 2,
            SubscriptionStatus::ResolveFailed => 3,
            SubscriptionStatus::ConnectedToSelf => 4,
            SubscriptionStatus::Idle => 7,
            SubscriptionStatus::InProgress => 8,
            SubscriptionStatus::Unicast => 9,
            SubscriptionStatus::Multicast => 10,
            SubscriptionStatus::FormatMismatch => 16,
            SubscriptionStatus::NoRxFlows => 18,
            SubscriptionStatus::RxFail => 19,
            SubscriptionStatus::NoTxFlows => 20,
            SubscriptionStatus::TxFail => 21,
            SubscriptionStatus::Other(code) => code,
        }
    }

    pub fn from_code(code: u16) -> SubscriptionStatus {
        match code {
            0 => SubscriptionStatus::None,
            1 => SubscriptionStatus::Unresolved,
            2 => SubscriptionStatus::Resolved,
            3 => SubscriptionStatus::ResolveFailed,
            4 => SubscriptionStatus::ConnectedToSelf,
            7 => SubscriptionStatus::Idle,
            8 => SubscriptionStatus::InProgress,
            9 => SubscriptionStatus::Unicast,
            10 => SubscriptionStatus::Multicast,
            16 => SubscriptionStatus::FormatMismatch,
            18 => SubscriptionStatus::NoRxFlows,
            19 => SubscriptionStatus::RxFail,
            20 => SubscriptionStatus::NoTxFlows,
            21 => SubscriptionStatus::TxFail,
            other => SubscriptionStatus::Other(other),
        }
    }

    /// Audio is flowing (the channel status half reads 0x0101).
    pub fn receiving(self) -> bool {
        matches!(
            self,
            SubscriptionStatus::Unicast | SubscriptionStatus::Multicast
        )
    }
}

/// One RX channel as 0x3000 lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxChannel {
    pub number: u16,
    pub name: String,
    pub source: Option<Source>,
    pub status: SubscriptionStatus,
}

/// A page of the RX channel list (0x3000).
pub fn write_rx_channels(
    request: &Header,
    format: Format,
    channels: &[RxChannel],
    more: bool,
) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(if more { RESULT_MORE } else { RESULT_OK }));
    let records = start_page(&mut w, channels.len(), 20);
    let descriptor = write_format(&mut w, format)?;
    for (i, c) in channels.iter().enumerate() {
        let at = records + 20 * i;
        let (channel, device) = match &c.source {
            Some(s) => (w.string(&s.channel)?, w.string(&s.device)?),
            None => (0, 0),
        };
        let name = w.string(&c.name)?;
        w.patch_u16(at, c.number);
        w.patch_u16(at + 2, 0x0006);
        w.patch_u16(at + 4, descriptor);
        w.patch_u16(at + 6, channel);
        w.patch_u16(at + 8, device);
        w.patch_u16(at + 10, name);
        w.patch_u16(at + 12, if c.status.receiving() { 0x0101 } else { 0 });
        w.patch_u16(at + 14, c.status.code());
    }
    w.finish()
}

pub fn parse_rx_channels(message: &Message<'_>) -> Result<Vec<RxChannel>, DanteError> {
    let r = message.reader();
    let count = usize::from(r.u8(11)?);
    (0..count)
        .map(|i| {
            let at = 12 + 20 * i;
            let channel = r.string_field(at + 6)?;
            let device = r.string_field(at + 8)?;
            Ok(RxChannel {
                number: r.u16(at)?,
                name: r.string_field(at + 10)?.unwrap_or_default().to_owned(),
                source: channel.zip(device).map(|(c, d)| Source {
                    channel: c.to_owned(),
                    device: d.to_owned(),
                }),
                status: SubscriptionStatus::from_code(r.u16(at + 14)?),
            })
        })
        .collect()
}

/// What real devices answer to the requests whose meaning is unknown (Dante Controller
/// expects an answer).
pub fn write_opaque(request: &Header) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(RESULT_OK));
    match request.opcode {
        OP_SETTINGS => {
            w.zeros(110);
        }
        OP_1102 => {
            w.zeros(94);
        }
        OP_CLOCK_DOMAIN => {
            // Without it, Dante Controller reports a clock domain mismatch.
            w.bytes(&[0x38, 0x00, 0x38, 0xfd, 0x38, 0xfe, 0x38, 0xff]);
        }
        _ => {}
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(opcode: u16) -> Header {
        Header {
            protocol: 0x27FF,
            length: 0,
            transaction: 7,
            opcode,
            result: 0,
        }
    }

    fn round_trip(request: &Request) -> Request {
        let bytes = write_request(0x27FF, 9, request).expect("writes");
        Request::parse(&Message::parse(&bytes).expect("header")).expect("parses")
    }

    #[test]
    fn netaudio_unsubscribe_bytes_parse() {
        let bytes = [
            0x27, 0xff, 0x00, 0x10, 0x00, 0x0e, 0x30, 0x14, 0, 0, 0, 1, 0, 0, 0, 1,
        ];
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(Request::parse(&m), Ok(Request::Unsubscribe(vec![1])));
        // The reply the spec shows: the header with result OK, no body.
        assert_eq!(
            write_status(&m.header, RESULT_OK).expect("writes"),
            [0x27, 0xff, 0x00, 0x0a, 0x00, 0x0e, 0x30, 0x14, 0x00, 0x01]
        );
    }

    #[test]
    fn requests_round_trip() {
        let cases = [
            Request::ChannelCounts,
            Request::SetDeviceName(Some("Stage-Box".into())),
            Request::SetDeviceName(None),
            Request::RxChannels { first: 17 },
            Request::RenameTx(vec![Rename {
                channel: 2,
                name: Some("Vox".into()),
            }]),
            Request::RenameRx(vec![Rename {
                channel: 3,
                name: None,
            }]),
            Request::Subscribe(vec![
                Subscription {
                    rx_channel: 1,
                    source: Some(Source {
                        channel: "01".into(),
                        device: "desk".into(),
                    }),
                },
                Subscription {
                    rx_channel: 2,
                    source: None,
                },
            ]),
            Request::Unsubscribe(vec![1, 2, 64]),
        ];
        for case in cases {
            assert_eq!(round_trip(&case), case);
        }
    }

    #[test]
    fn lists_round_trip_with_paging() {
        let format = Format {
            sample_rate: 48_000,
            bits: 24,
        };
        let all: Vec<RxChannel> = (1..=40)
            .map(|n| RxChannel {
                number: n,
                name: format!("{n:02}"),
                source: (n % 2 == 0).then(|| Source {
                    channel: format!("{n:02}"),
                    device: "desk".into(),
                }),
                status: if n % 2 == 0 {
                    SubscriptionStatus::Unicast
                } else {
                    SubscriptionStatus::None
                },
            })
            .collect();
        let (shown, more) = page(&all, 33, RX_PAGE);
        assert!(!more);
        assert_eq!(shown.len(), 8);
        let (shown, more) = page(&all, 17, RX_PAGE);
        assert!(more);
        let bytes = write_rx_channels(&req(OP_RX_CHANNELS), format, shown, more).expect("w");
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(m.header.result, RESULT_MORE);
        assert_eq!(parse_rx_channels(&m).expect("parses"), shown);

        let tx: Vec<TxChannel> = (1..=4)
            .map(|n| TxChannel {
                number: n,
                name: format!("{n:02}"),
            })
            .collect();
        let bytes = write_tx_channels(&req(OP_TX_CHANNELS), format, &tx, false).expect("w");
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(
            parse_tx_channels(&m).expect("p"),
            (tx.clone(), Some(format))
        );
        let bytes = write_tx_names(&req(OP_TX_NAMES), &tx, false).expect("w");
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(parse_tx_names(&m).expect("p"), tx);
    }

    #[test]
    fn device_answers_round_trip() {
        let counts = ChannelCounts {
            tx: 8,
            rx: 16,
            max_channels_per_flow: 8,
            max_tx_flows: 32,
            max_rx_flows: 32,
            tx_renamable: true,
            tx_multicast: true,
        };
        let bytes = write_channel_counts(&req(OP_CHANNEL_COUNTS), &counts).expect("w");
        assert_eq!(bytes.len(), 44);
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(parse_channel_counts(&m), Ok(counts));

        let bytes = write_device_name(&req(OP_DEVICE_NAME), "estuary").expect("w");
        assert_eq!(
            parse_device_name(&Message::parse(&bytes).expect("h")),
            Ok("estuary")
        );

        let names = DeviceNames {
            board: "Estuary".into(),
            revision: ":1".into(),
            friendly: "stage".into(),
            factory: "estuary-0a0b".into(),
        };
        let bytes = write_device_names(&req(OP_DEVICE_NAMES), &names).expect("w");
        assert_eq!(
            parse_device_names(&Message::parse(&bytes).expect("h")),
            Ok(names)
        );
    }

    #[test]
    fn a_half_given_source_is_invalid() {
        let mut bytes = write_request(
            0x27FF,
            1,
            &Request::Subscribe(vec![Subscription {
                rx_channel: 1,
                source: Some(Source {
                    channel: "a".into(),
                    device: "b".into(),
                }),
            }]),
        )
        .expect("writes");
        // Zero the device offset.
        bytes[16] = 0;
        bytes[17] = 0;
        let m = Message::parse(&bytes).expect("header");
        assert!(matches!(
            Request::parse(&m),
            Err(DanteError::Invalid { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = Message::parse(&bytes) {
                let _ = Request::parse(&m);
                let _ = parse_rx_channels(&m);
                let _ = parse_tx_channels(&m);
                let _ = parse_tx_names(&m);
                let _ = parse_device_names(&m);
                let _ = parse_channel_counts(&m);
            }
        }

        #[test]
        fn subscriptions_round_trip(
            subs in proptest::collection::vec(
                (1u16..512, proptest::option::of(("[0-9A-Za-z]{1,31}", "[0-9A-Za-z-]{1,31}"))),
                0..=MAX_SUBSCRIPTIONS,
            )
        ) {
            let request = Request::Subscribe(subs.into_iter().map(|(rx_channel, source)| Subscription {
                rx_channel,
                source: source.map(|(channel, device)| Source { channel, device }),
            }).collect());
            prop_assert_eq!(round_trip(&request), request);
        }
    }
}
