//! Flow control (UDP 4455, protocol id 0x1102): a receiving device asks a transmitter for a
//! unicast flow of some of its channels, keeps it alive, changes and stops it.

use std::net::{Ipv4Addr, SocketAddrV4};

use super::{DanteError, Header, Message, RESULT_OK, Writer};

/// The protocol id of flow-control messages (TXT `dbcp1=0x1102`).
pub const PROTOCOL: u16 = 0x1102;
pub const OP_REQUEST: u16 = 0x0100;
pub const OP_STOP: u16 = 0x0101;
pub const OP_UPDATE: u16 = 0x0102;

/// The most channel slots a request may carry (far above any device's `nchan`).
pub const MAX_SLOTS: usize = 64;
/// Socket descriptor tag of an IPv4 address.
const SOCKET_TAG: u16 = 0x0802;

/// The opaque handle a transmitter gives a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowHandle(pub [u8; 6]);

/// A receiver's request for a unicast flow (0x0100).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowRequest {
    pub sample_rate: u32,
    /// 16, 24 or 32.
    pub bits: u32,
    /// TX channel number per slot of the flow, in order; 0 is an empty slot.
    pub slots: Vec<u16>,
    /// Frames per packet.
    pub fpp: u16,
    pub rx_device: String,
    pub flow_name: String,
    /// Where the audio goes.
    pub destination: SocketAddrV4,
}

/// What a flow-control datagram asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowMessage {
    Request(FlowRequest),
    Stop(FlowHandle),
    Update { handle: FlowHandle, slots: Vec<u16> },
    Other(u16),
}

impl FlowMessage {
    /// Reads a request (a transmitter's side).
    pub fn parse(message: &Message<'_>) -> Result<FlowMessage, DanteError> {
        if !message.header.is_request() {
            return Err(DanteError::Invalid {
                field: "result",
                value: u64::from(message.header.result),
            });
        }
        let r = message.reader();
        Ok(match message.header.opcode {
            OP_REQUEST => {
                let n = usize::from(r.u16(22)?);
                if n == 0 || n > MAX_SLOTS {
                    return Err(DanteError::Invalid {
                        field: "slot count",
                        value: n as u64,
                    });
                }
                let slots = (0..n)
                    .map(|i| r.u16(26 + 2 * i))
                    .collect::<Result<Vec<_>, _>>()?;
                let socket = usize::from(r.u16(24)?);
                let tag = r.u16(socket)?;
                if tag != SOCKET_TAG {
                    return Err(DanteError::Invalid {
                        field: "socket descriptor",
                        value: u64::from(tag),
                    });
                }
                let bits = r.u32(16)?;
                if !matches!(bits, 16 | 24 | 32) {
                    return Err(DanteError::Invalid {
                        field: "bit depth",
                        value: u64::from(bits),
                    });
                }
                FlowMessage::Request(FlowRequest {
                    sample_rate: r.u32(12)?,
                    bits,
                    fpp: r.u16(32 + 2 * n)?,
                    rx_device: r.string_field(10)?.unwrap_or_default().to_owned(),
                    flow_name: r.string_field(34 + 2 * n)?.unwrap_or_default().to_owned(),
                    destination: SocketAddrV4::new(
                        Ipv4Addr::from(r.array::<4>(socket + 4)?),
                        r.u16(socket + 2)?,
                    ),
                    slots,
                })
            }
            OP_STOP => FlowMessage::Stop(FlowHandle(r.array(10)?)),
            OP_UPDATE => {
                let n = usize::from(r.u16(16)?);
                if n > MAX_SLOTS {
                    return Err(DanteError::Invalid {
                        field: "slot count",
                        value: n as u64,
                    });
                }
                FlowMessage::Update {
                    handle: FlowHandle(r.array(10)?),
                    slots: (0..n)
                        .map(|i| r.u16(18 + 2 * i))
                        .collect::<Result<Vec<_>, _>>()?,
                }
            }
            other => FlowMessage::Other(other),
        })
    }

    /// Writes a request (a receiver's side).
    pub fn write(&self, transaction: u16) -> Result<Vec<u8>, DanteError> {
        let opcode = match self {
            FlowMessage::Request(_) => OP_REQUEST,
            FlowMessage::Stop(_) => OP_STOP,
            FlowMessage::Update { .. } => OP_UPDATE,
            FlowMessage::Other(op) => *op,
        };
        let mut w = Writer::new(Header {
            protocol: PROTOCOL,
            length: 0,
            transaction,
            opcode,
            result: 0,
        });
        match self {
            FlowMessage::Request(req) => write_request(&mut w, req)?,
            FlowMessage::Stop(handle) => {
                w.bytes(&handle.0);
            }
            FlowMessage::Update { handle, slots } => {
                w.bytes(&handle.0).u16(slot_count(slots.len())?);
                for &s in slots {
                    w.u16(s);
                }
            }
            FlowMessage::Other(_) => {}
        }
        w.finish()
    }
}

fn slot_count(n: usize) -> Result<u16, DanteError> {
    if n > MAX_SLOTS {
        return Err(DanteError::Invalid {
            field: "slot count",
            value: n as u64,
        });
    }
    Ok(n as u16)
}

fn write_request(w: &mut Writer, req: &FlowRequest) -> Result<(), DanteError> {
    let n = slot_count(req.slots.len())?;
    let name_at = w.position();
    w.u16(0).u32(req.sample_rate).u32(req.bits).u16(1).u16(n);
    let socket_at = w.position();
    w.u16(0);
    for &s in &req.slots {
        w.u16(s);
    }
    // Constants whose meaning is unknown; real receivers send these.
    w.u16(0x001C + 2 * n).u16(0x0A00).u16(0x0002).u16(req.fpp);
    let flow_name_at = w.position();
    w.u16(0).zeros(12);
    let rx_device = w.string(&req.rx_device)?;
    let flow_name = w.string(&req.flow_name)?;
    w.align(8);
    let socket = w.offset()?;
    w.u16(SOCKET_TAG)
        .u16(req.destination.port())
        .bytes(&req.destination.ip().octets());
    w.patch_u16(name_at, rx_device);
    w.patch_u16(socket_at, socket);
    w.patch_u16(flow_name_at, flow_name);
    Ok(())
}

/// The transmitter's answer to a granted request: the flow's handle.
pub fn write_granted(request: &Header, handle: FlowHandle) -> Result<Vec<u8>, DanteError> {
    let mut w = Writer::new(request.response(RESULT_OK));
    w.bytes(&handle.0);
    w.finish()
}

/// Reads a transmitter's answer to a request: the handle, or the result code.
pub fn parse_granted(message: &Message<'_>) -> Result<Result<FlowHandle, u16>, DanteError> {
    if message.header.result != RESULT_OK {
        return Ok(Err(message.header.result));
    }
    Ok(Ok(FlowHandle(message.reader().array(10)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> FlowRequest {
        FlowRequest {
            sample_rate: 48_000,
            bits: 24,
            slots: vec![1, 2, 0, 4],
            fpp: 16,
            rx_device: "stage".into(),
            flow_name: "1_42".into(),
            destination: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 14336),
        }
    }

    #[test]
    fn request_layout_matches_the_spec() {
        let req = FlowMessage::Request(sample());
        let bytes = req.write(3).expect("writes");
        let n = 4;
        // The RX device name sits right after the fixed part, at 48 + 2N.
        assert_eq!(u16::from_be_bytes([bytes[10], bytes[11]]), 48 + 2 * n);
        // The socket descriptor is 8-byte aligned.
        let socket = u16::from_be_bytes([bytes[24], bytes[25]]);
        assert_eq!(socket % 8, 0);
        let m = Message::parse(&bytes).expect("header");
        assert_eq!(FlowMessage::parse(&m), Ok(req));
    }

    #[test]
    fn answers_round_trip() {
        let bytes = FlowMessage::Request(sample()).write(3).expect("writes");
        let m = Message::parse(&bytes).expect("header");
        let handle = FlowHandle([0, 0, 0, 1, 0xab, 0xcd]);
        let ok = write_granted(&m.header, handle).expect("w");
        assert_eq!(
            parse_granted(&Message::parse(&ok).expect("h")),
            Ok(Ok(handle))
        );
        let refused =
            super::super::arc::write_status(&m.header, super::super::RESULT_RATE_MISMATCH)
                .expect("w");
        assert_eq!(
            parse_granted(&Message::parse(&refused).expect("h")),
            Ok(Err(0x0301))
        );
        for msg in [
            FlowMessage::Stop(handle),
            FlowMessage::Update {
                handle,
                slots: vec![3, 4],
            },
        ] {
            let bytes = msg.write(9).expect("writes");
            assert_eq!(
                FlowMessage::parse(&Message::parse(&bytes).expect("h")),
                Ok(msg)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(m) = Message::parse(&bytes) {
                let _ = FlowMessage::parse(&m);
                let _ = parse_granted(&m);
            }
        }

        #[test]
        fn requests_round_trip(
            slots in proptest::collection::vec(0u16..64, 1..=MAX_SLOTS),
            fpp in 1u16..256,
            bits in prop_oneof![Just(16u32), Just(24), Just(32)],
            name in "[0-9A-Za-z-]{1,31}",
            port in any::<u16>(),
            ip in any::<u32>(),
        ) {
            let req = FlowMessage::Request(FlowRequest {
                sample_rate: 48_000,
                bits,
                slots,
                fpp,
                rx_device: name.clone(),
                flow_name: format!("{name}_1"),
                destination: SocketAddrV4::new(Ipv4Addr::from(ip), port),
            });
            let bytes = req.write(1).expect("writes");
            prop_assert_eq!(FlowMessage::parse(&Message::parse(&bytes).expect("h")), Ok(req));
        }
    }
}
