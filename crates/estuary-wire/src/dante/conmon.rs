//! Conmon ("control and monitoring"): settings requests a controller sends to a device's
//! port 8700, the replies and change notices the device multicasts to 224.0.0.231:8702, and
//! the heartbeat it multicasts every second to 224.0.0.233:8708; plus the CMC registration
//! exchange on port 8800, which tells a controller where the conmon port is.
//!
//! Every conmon datagram starts with a 32-byte big-endian header ([`ConmonHeader`]); its
//! body layout depends on the message type. After the length checks of [`ConmonMessage::parse`]
//! no accessor indexes unchecked bytes.

use std::net::Ipv4Addr;

use super::{DanteError, Header, Message, RESULT_OK, Reader, Writer};

/// Bytes of the conmon header.
pub const CONMON_HEADER_LEN: usize = 32;
/// Start code of requests, replies and notices.
pub const START_CONMON: u16 = 0xFFFF;
/// Start code of heartbeats.
pub const START_HEARTBEAT: u16 = 0xFFFE;
/// The vendor tag at bytes 16..24.
pub const VENDOR: [u8; 8] = *b"Audinate";
/// Class/version of the replies a device sends.
pub const CLASS_REPLY: u16 = 0x072A;

/// Message types (bytes 26..28).
pub const TYPE_NETWORK_REQUEST: u16 = 0x0013;
pub const TYPE_NETWORK: u16 = 0x0011;
pub const TYPE_CLOCK_REQUEST: u16 = 0x0021;
pub const TYPE_CLOCK: u16 = 0x0020;
pub const TYPE_DANTE_MODEL_REQUEST: u16 = 0x0061;
pub const TYPE_DANTE_MODEL: u16 = 0x0060;
pub const TYPE_0077_REQUEST: u16 = 0x0077;
pub const TYPE_0078: u16 = 0x0078;
pub const TYPE_MAKE_MODEL_REQUEST: u16 = 0x00C1;
pub const TYPE_MAKE_MODEL: u16 = 0x00C0;
/// Notice: TX channels changed.
pub const TYPE_TX_CHANNELS_CHANGED: u16 = 0x0101;
/// Notice: RX channels (subscriptions, names, statuses) changed.
pub const TYPE_RX_CHANNELS_CHANGED: u16 = 0x0102;
/// Notice: TX channel labels changed.
pub const TYPE_TX_LABELS_CHANGED: u16 = 0x0103;

/// Body sizes of the replies (what controllers read fields from).
pub const MAKE_MODEL_BODY: usize = 336;
pub const DANTE_MODEL_BODY: usize = 200;
pub const CLOCK_BODY: usize = 64;
pub const NETWORK_BODY: usize = 48;

/// Heartbeat sub-block carrying the clock's frequency offset.
pub const BLOCK_CLOCK: u16 = 0x8001;

/// Most channels a change notice may name (the bitmask length is a u16 of bytes).
pub const MAX_NOTICE_CHANNELS: usize = 4096;

/// The 32-byte conmon header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConmonHeader {
    /// [`START_CONMON`] or [`START_HEARTBEAT`].
    pub start: u16,
    /// Per sender, wrapping.
    pub sequence: u16,
    /// 0: controllers (netaudio 0.4.2) drop replies with another value here.
    pub process: u16,
    /// The sender's id (a MAC and two zero bytes); requests may carry anything.
    pub device_id: [u8; 8],
    pub class: u16,
    pub message_type: u16,
    pub flags: u32,
}

/// A parsed conmon datagram: its header and its body (cut to the length field).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConmonMessage<'a> {
    pub header: ConmonHeader,
    pub body: &'a [u8],
}

impl<'a> ConmonMessage<'a> {
    /// Reads the header; the length field must cover it and not exceed the datagram.
    pub fn parse(bytes: &'a [u8]) -> Result<ConmonMessage<'a>, DanteError> {
        let r = Reader(bytes);
        let start = r.u16(0)?;
        if start != START_CONMON && start != START_HEARTBEAT {
            return Err(DanteError::Invalid {
                field: "conmon start code",
                value: u64::from(start),
            });
        }
        let length = usize::from(r.u16(2)?);
        if length < CONMON_HEADER_LEN || length > bytes.len() {
            return Err(DanteError::Length {
                field: length,
                actual: bytes.len(),
            });
        }
        let header = ConmonHeader {
            start,
            sequence: r.u16(4)?,
            process: r.u16(6)?,
            device_id: r.array(8)?,
            class: r.u16(24)?,
            message_type: r.u16(26)?,
            flags: r.u32(28)?,
        };
        Ok(ConmonMessage {
            header,
            body: r.slice(CONMON_HEADER_LEN, length - CONMON_HEADER_LEN)?,
        })
    }

    /// What a request asks, or what a reply or notice says.
    pub fn decode(&self) -> Result<Conmon, DanteError> {
        let b = Reader(self.body);
        Ok(match self.header.message_type {
            TYPE_MAKE_MODEL if self.header.start == START_CONMON => Conmon::MakeModel(MakeModel {
                manufacturer: fixed_string(b.slice(0x2C, 0x80)?),
                product: fixed_string(b.slice(0xAC, 0x80)?),
                version: Version::read(&b, 0x12C)?,
                firmware: Version::read(&b, 0x1C)?,
            }),
            TYPE_DANTE_MODEL => Conmon::DanteModel(DanteModel {
                software: Version::read(&b, 0)?,
                hardware: Version::read(&b, 4)?,
                model_id: b.array(0x0C)?,
                board: fixed_string(b.slice(0x38, 0x40)?),
            }),
            TYPE_CLOCK => Conmon::Clock(ClockStatus {
                role: ClockRole::from_code(b.u8(0x48 - CONMON_HEADER_LEN)?),
            }),
            TYPE_NETWORK => Conmon::Network(NetworkStatus {
                mac: b.array(6)?,
                address: Ipv4Addr::from(b.array::<4>(12)?),
                netmask: Ipv4Addr::from(b.array::<4>(16)?),
                gateway: Ipv4Addr::from(b.array::<4>(24)?),
            }),
            t @ (TYPE_TX_CHANNELS_CHANGED | TYPE_RX_CHANNELS_CHANGED | TYPE_TX_LABELS_CHANGED) => {
                let len = usize::from(b.u16(0)?);
                let mask = b.slice(2, len)?;
                Conmon::ChannelsChanged {
                    message_type: t,
                    channels: mask_channels(mask),
                }
            }
            t if self.header.start == START_HEARTBEAT => Conmon::Heartbeat(Heartbeat {
                blocks: heartbeat_blocks(self.body)?,
                kind: t,
            }),
            other => Conmon::Other(other),
        })
    }
}

/// A NUL-padded string field: the bytes up to the first NUL, lossily UTF-8.
fn fixed_string(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|&c| c == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

/// Channel numbers (1-based) of the set bits: bit 0 of byte 0 is channel 1.
fn mask_channels(mask: &[u8]) -> Vec<u16> {
    let mut out = Vec::new();
    for (i, &byte) in mask.iter().enumerate().take(MAX_NOTICE_CHANNELS / 8) {
        for bit in 0..8 {
            if byte & (1 << bit) != 0 {
                out.push((i * 8 + bit + 1) as u16);
            }
        }
    }
    out
}

/// A firmware or product version as devices write it: u8 major, u8 minor, u16 patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Version {
    pub major: u8,
    pub minor: u8,
    pub patch: u16,
}

impl Version {
    fn read(r: &Reader<'_>, at: usize) -> Result<Version, DanteError> {
        Ok(Version {
            major: r.u8(at)?,
            minor: r.u8(at + 1)?,
            patch: r.u16(at + 2)?,
        })
    }

    fn bytes(self) -> [u8; 4] {
        let [a, b] = self.patch.to_be_bytes();
        [self.major, self.minor, a, b]
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// 0x00C0: who made the device (controllers show manufacturer, product and version).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MakeModel {
    pub manufacturer: String,
    pub product: String,
    pub version: Version,
    pub firmware: Version,
}

/// 0x0060: the Dante platform the device is built on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DanteModel {
    pub software: Version,
    pub hardware: Version,
    /// An 8-byte model code (printable, NUL-padded).
    pub model_id: [u8; 8],
    pub board: String,
}

/// The device's role on the PTP network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClockRole {
    Leader,
    Follower,
    Other(u8),
}

impl ClockRole {
    fn code(self) -> u8 {
        match self {
            ClockRole::Leader => 6,
            ClockRole::Follower => 9,
            ClockRole::Other(c) => c,
        }
    }

    fn from_code(code: u8) -> ClockRole {
        match code {
            6 => ClockRole::Leader,
            9 => ClockRole::Follower,
            c => ClockRole::Other(c),
        }
    }
}

/// 0x0020: the clock's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClockStatus {
    pub role: ClockRole,
}

/// 0x0011: the (single) network interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkStatus {
    pub mac: [u8; 6],
    pub address: Ipv4Addr,
    pub netmask: Ipv4Addr,
    pub gateway: Ipv4Addr,
}

/// A heartbeat: a chain of sub-blocks `{u16 size (whole block), u16 type, data}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    /// The message type of the header.
    pub kind: u16,
    pub blocks: Vec<(u16, Vec<u8>)>,
}

impl Heartbeat {
    /// The clock block's frequency offset in parts per billion, if present.
    pub fn frequency_offset_ppb(&self) -> Option<i32> {
        self.blocks
            .iter()
            .find(|(t, _)| *t == BLOCK_CLOCK)
            .and_then(|(_, d)| Some(i32::from_be_bytes(d.get(..4)?.try_into().ok()?)))
    }
}

/// Most sub-blocks read from one heartbeat.
const MAX_BLOCKS: usize = 64;

fn heartbeat_blocks(mut bytes: &[u8]) -> Result<Vec<(u16, Vec<u8>)>, DanteError> {
    let mut blocks = Vec::new();
    while !bytes.is_empty() && blocks.len() < MAX_BLOCKS {
        let r = Reader(bytes);
        let size = usize::from(r.u16(0)?);
        if size < 4 || size > bytes.len() {
            return Err(DanteError::Length {
                field: size,
                actual: bytes.len(),
            });
        }
        blocks.push((r.u16(2)?, r.slice(4, size - 4)?.to_vec()));
        bytes = &bytes[size..];
    }
    Ok(blocks)
}

/// What a conmon datagram carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conmon {
    MakeModel(MakeModel),
    DanteModel(DanteModel),
    Clock(ClockStatus),
    Network(NetworkStatus),
    ChannelsChanged {
        message_type: u16,
        /// 1-based channel numbers.
        channels: Vec<u16>,
    },
    Heartbeat(Heartbeat),
    /// A request, or a message type not decoded here.
    Other(u16),
}

/// Writes a conmon datagram: `header` (its length filled in) and `body`.
pub fn write(header: &ConmonHeader, body: &[u8]) -> Result<Vec<u8>, DanteError> {
    let length =
        u16::try_from(CONMON_HEADER_LEN + body.len()).map_err(|_| DanteError::Invalid {
            field: "length",
            value: (CONMON_HEADER_LEN + body.len()) as u64,
        })?;
    let mut out = Vec::with_capacity(usize::from(length));
    out.extend_from_slice(&header.start.to_be_bytes());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(&header.sequence.to_be_bytes());
    out.extend_from_slice(&header.process.to_be_bytes());
    out.extend_from_slice(&header.device_id);
    out.extend_from_slice(&VENDOR);
    out.extend_from_slice(&header.class.to_be_bytes());
    out.extend_from_slice(&header.message_type.to_be_bytes());
    out.extend_from_slice(&header.flags.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Copies `s` into `field` (cut, NUL-padded, at least one NUL kept).
fn put_string(field: &mut [u8], s: &str) {
    let n = s.len().min(field.len().saturating_sub(1));
    field[..n].copy_from_slice(&s.as_bytes()[..n]);
}

impl MakeModel {
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![0u8; MAKE_MODEL_BODY];
        b[0x1C..0x20].copy_from_slice(&self.firmware.bytes());
        put_string(&mut b[0x2C..0xAC], &self.manufacturer);
        put_string(&mut b[0xAC..0x12C], &self.product);
        b[0x12C..0x130].copy_from_slice(&self.version.bytes());
        b
    }
}

impl DanteModel {
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![0u8; DANTE_MODEL_BODY];
        b[0..4].copy_from_slice(&self.software.bytes());
        b[4..8].copy_from_slice(&self.hardware.bytes());
        b[0x0C..0x14].copy_from_slice(&self.model_id);
        // Capability flag: the device has a manufacturer name (answers 0x00C1).
        b[0x16] = 0x10;
        put_string(&mut b[0x38..0x78], &self.board);
        // Zero here makes controllers ask again and again (reference notes §3.5).
        b[0xBB] = 0x1F;
        b
    }
}

impl ClockStatus {
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![0u8; CLOCK_BODY];
        b[0x48 - CONMON_HEADER_LEN] = self.role.code();
        b
    }
}

impl NetworkStatus {
    pub fn body(&self) -> Vec<u8> {
        let mut b = vec![0u8; NETWORK_BODY];
        // One interface, link up.
        b[0..2].copy_from_slice(&1u16.to_be_bytes());
        b[2..4].copy_from_slice(&1u16.to_be_bytes());
        b[6..12].copy_from_slice(&self.mac);
        b[12..16].copy_from_slice(&self.address.octets());
        b[16..20].copy_from_slice(&self.netmask.octets());
        b[24..28].copy_from_slice(&self.gateway.octets());
        b
    }
}

/// The body of 0x0078 (its meaning is unknown; devices send this).
pub fn body_0078() -> Vec<u8> {
    vec![0, 0, 0, 3, 0, 0, 0, 0]
}

/// A change notice's body: u16 mask length in bytes, then the mask of 1-based `channels`.
pub fn channels_changed_body(channels: &[u16]) -> Result<Vec<u8>, DanteError> {
    let top = channels.iter().copied().max().unwrap_or(0);
    if usize::from(top) > MAX_NOTICE_CHANNELS || channels.contains(&0) {
        return Err(DanteError::Invalid {
            field: "notice channel",
            value: u64::from(top),
        });
    }
    let len = usize::from(top).div_ceil(8).max(1);
    let mut b = vec![0u8; 2 + len];
    b[0..2].copy_from_slice(&(len as u16).to_be_bytes());
    for &c in channels {
        let i = usize::from(c - 1);
        b[2 + i / 8] |= 1 << (i % 8);
    }
    Ok(b)
}

/// The body of a heartbeat: the clock block.
pub fn heartbeat_body(frequency_offset_ppb: i32) -> Vec<u8> {
    let mut b = Vec::with_capacity(8);
    b.extend_from_slice(&8u16.to_be_bytes());
    b.extend_from_slice(&BLOCK_CLOCK.to_be_bytes());
    b.extend_from_slice(&frequency_offset_ppb.to_be_bytes());
    b
}

/// Header bytes 24..32 of heartbeats (class, message type, flags) as devices send them.
pub const HEARTBEAT_CLASS: u16 = 0x0008;
pub const TYPE_HEARTBEAT: u16 = 0x0001;
pub const HEARTBEAT_FLAGS: u32 = 0x1000_0000;

/// CMC (port 8800): a controller's registration, and the device's answer.
pub mod cmc {
    use super::*;

    /// CMC's protocol id.
    pub const PROTOCOL: u16 = 0x1200;
    /// The registration opcode.
    pub const OP_REGISTER: u16 = 0x1001;

    /// A controller's registration (0x1001, 20 bytes): its MAC at byte 12.
    pub fn parse_register(message: &Message<'_>) -> Result<[u8; 6], DanteError> {
        if !message.header.is_request() || message.header.opcode != OP_REGISTER {
            return Err(DanteError::Invalid {
                field: "CMC opcode",
                value: u64::from(message.header.opcode),
            });
        }
        message.reader().array(12)
    }

    pub fn write_register(
        transaction: u16,
        controller_mac: [u8; 6],
    ) -> Result<Vec<u8>, DanteError> {
        let mut w = Writer::new(Header {
            protocol: PROTOCOL,
            length: 0,
            transaction,
            opcode: OP_REGISTER,
            result: 0,
        });
        w.u16(0).bytes(&controller_mac).u16(0);
        w.finish()
    }

    /// The device's answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Registered {
        pub process: u16,
        pub device_id: [u8; 8],
        pub address: Ipv4Addr,
        pub conmon_port: u16,
    }

    impl Registered {
        pub fn write(&self, request: &Header) -> Result<Vec<u8>, DanteError> {
            let mut w = Writer::new(request.response(RESULT_OK));
            w.u16(self.process)
                .bytes(&self.device_id)
                .u16(1)
                .u16(0)
                .bytes(&self.address.octets())
                .u16(self.conmon_port)
                .u16(0);
            w.finish()
        }

        pub fn parse(message: &Message<'_>) -> Result<Registered, DanteError> {
            let r = message.reader();
            Ok(Registered {
                process: r.u16(10)?,
                device_id: r.array(12)?,
                address: Ipv4Addr::from(r.array::<4>(24)?),
                conmon_port: r.u16(28)?,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(message_type: u16) -> ConmonHeader {
        ConmonHeader {
            start: START_CONMON,
            sequence: 7,
            process: 0,
            device_id: [0, 0x11, 0x22, 0x33, 0x44, 0x55, 0, 0],
            class: CLASS_REPLY,
            message_type,
            flags: 0,
        }
    }

    #[test]
    fn a_make_model_request_from_netaudio_parses() {
        // What netaudio 0.4.2 sends for `device list` (0x00C1, class 0x0731).
        let bytes = [
            0xff, 0xff, 0x00, 0x20, 0x0f, 0xdb, 0x00, 0x00, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
            0x00, 0x00, b'A', b'u', b'd', b'i', b'n', b'a', b't', b'e', 0x07, 0x31, 0x00, 0xc1, 0,
            0, 0, 0,
        ];
        let m = ConmonMessage::parse(&bytes).expect("parses");
        assert_eq!(m.header.message_type, TYPE_MAKE_MODEL_REQUEST);
        assert_eq!(m.header.sequence, 0x0fdb);
        assert!(m.body.is_empty());
        assert_eq!(m.decode(), Ok(Conmon::Other(TYPE_MAKE_MODEL_REQUEST)));
    }

    #[test]
    fn replies_round_trip_at_the_offsets_controllers_read() {
        let mm = MakeModel {
            manufacturer: "Estuary".into(),
            product: "Estuary gateway".into(),
            version: Version {
                major: 0,
                minor: 5,
                patch: 518,
            },
            firmware: Version {
                major: 1,
                minor: 2,
                patch: 3,
            },
        };
        let bytes = write(&header(TYPE_MAKE_MODEL), &mm.body()).expect("w");
        assert_eq!(bytes.len(), 32 + MAKE_MODEL_BODY);
        // Absolute offsets of the reference notes (§3.5).
        assert_eq!(&bytes[0x4C..0x53], b"Estuary");
        assert_eq!(&bytes[0xCC..0xD3], b"Estuary");
        assert_eq!(&bytes[0x14C..0x150], &[0, 5, 2, 6]);
        let m = ConmonMessage::parse(&bytes).expect("h");
        assert_eq!(m.decode(), Ok(Conmon::MakeModel(mm)));

        let dm = DanteModel {
            software: Version {
                major: 4,
                minor: 0,
                patch: 2,
            },
            hardware: Version::default(),
            model_id: *b"ESTUARY\0",
            board: "Estuary".into(),
        };
        let bytes = write(&header(TYPE_DANTE_MODEL), &dm.body()).expect("w");
        assert_eq!(bytes[32 + 0xBB], 0x1F);
        assert_eq!(
            ConmonMessage::parse(&bytes).expect("h").decode(),
            Ok(Conmon::DanteModel(dm))
        );
        let clock = ClockStatus {
            role: ClockRole::Follower,
        };
        let bytes = write(&header(TYPE_CLOCK), &clock.body()).expect("w");
        assert_eq!(bytes[0x48], 9);
        assert_eq!(
            ConmonMessage::parse(&bytes).expect("h").decode(),
            Ok(Conmon::Clock(clock))
        );
        let net = NetworkStatus {
            mac: [2, 0, 0, 0, 0, 1],
            address: Ipv4Addr::new(10, 0, 0, 5),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            gateway: Ipv4Addr::new(10, 0, 0, 1),
        };
        let bytes = write(&header(TYPE_NETWORK), &net.body()).expect("w");
        assert_eq!(
            ConmonMessage::parse(&bytes).expect("h").decode(),
            Ok(Conmon::Network(net))
        );
    }

    #[test]
    fn notices_and_heartbeats_round_trip() {
        // The hardware example of the notes: RX channel 1 changed.
        assert_eq!(channels_changed_body(&[1]).expect("b"), [0, 1, 1]);
        let body = channels_changed_body(&[2, 9]).expect("b");
        let bytes = write(&header(TYPE_RX_CHANNELS_CHANGED), &body).expect("w");
        assert_eq!(
            ConmonMessage::parse(&bytes).expect("h").decode(),
            Ok(Conmon::ChannelsChanged {
                message_type: TYPE_RX_CHANNELS_CHANGED,
                channels: vec![2, 9]
            })
        );
        assert!(channels_changed_body(&[0]).is_err());
        let hb = ConmonHeader {
            start: START_HEARTBEAT,
            class: HEARTBEAT_CLASS,
            flags: HEARTBEAT_FLAGS,
            ..header(TYPE_HEARTBEAT)
        };
        let bytes = write(&hb, &heartbeat_body(-1234)).expect("w");
        let Ok(Conmon::Heartbeat(h)) = ConmonMessage::parse(&bytes).expect("h").decode() else {
            panic!("not a heartbeat");
        };
        assert_eq!(h.frequency_offset_ppb(), Some(-1234));
    }

    #[test]
    fn cmc_registration_round_trips() {
        let req = cmc::write_register(5, [1, 2, 3, 4, 5, 6]).expect("w");
        assert_eq!(req.len(), 20);
        let m = Message::parse(&req).expect("h");
        assert_eq!(cmc::parse_register(&m), Ok([1, 2, 3, 4, 5, 6]));
        let answer = cmc::Registered {
            process: 1,
            device_id: [0, 0, 127, 0, 0, 1, 0, 1],
            address: Ipv4Addr::LOCALHOST,
            conmon_port: 8700,
        };
        let bytes = answer.write(&m.header).expect("w");
        assert_eq!(bytes.len(), 32);
        assert_eq!(
            cmc::Registered::parse(&Message::parse(&bytes).expect("h")),
            Ok(answer)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Ok(m) = ConmonMessage::parse(&bytes) {
                let _ = m.decode();
            }
            if let Ok(m) = Message::parse(&bytes) {
                let _ = cmc::parse_register(&m);
                let _ = cmc::Registered::parse(&m);
            }
        }

        #[test]
        fn notices_round_trip(channels in proptest::collection::btree_set(1u16..=512, 0..40)) {
            let channels: Vec<u16> = channels.into_iter().collect();
            let body = channels_changed_body(&channels).expect("body");
            let bytes = write(&header(TYPE_RX_CHANNELS_CHANGED), &body).expect("w");
            let decoded = ConmonMessage::parse(&bytes).expect("h").decode();
            prop_assert_eq!(decoded, Ok(Conmon::ChannelsChanged {
                message_type: TYPE_RX_CHANNELS_CHANGED,
                channels,
            }));
        }
    }
}
