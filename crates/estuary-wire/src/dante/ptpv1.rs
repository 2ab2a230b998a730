//! PTP version 1 (IEEE 1588-2002) messages: the clock of native Dante networks (multicast
//! 224.0.1.129, event port 319, general port 320, subdomain `_DFLT`).
//!
//! Version 1 has no Announce: the best-master data rides in every Sync. A follower needs
//! Sync, Follow_Up (two-step masters), Delay_Req and Delay_Resp; Management messages are
//! recognised and skipped.

use super::{DanteError, Reader};

pub const EVENT_PORT: u16 = 319;
pub const GENERAL_PORT: u16 = 320;
/// The default subdomain's multicast group.
pub const MULTICAST: [u8; 4] = [224, 0, 1, 129];
/// Dante's subdomain.
pub const DEFAULT_SUBDOMAIN: &str = "_DFLT";

pub const HEADER_LEN: usize = 40;
const SYNC_LEN: usize = HEADER_LEN + 84;
const FOLLOW_UP_LEN: usize = HEADER_LEN + 12;
const DELAY_RESP_LEN: usize = HEADER_LEN + 20;

/// The flag of a two-step master: the precise time comes in the Follow_Up.
pub const FLAG_ASSIST: u16 = 0x0008;

/// A version 1 timestamp: seconds and signed nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamp {
    pub seconds: u32,
    pub nanoseconds: i32,
}

impl Timestamp {
    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> i128 {
        i128::from(self.seconds) * 1_000_000_000 + i128::from(self.nanoseconds)
    }

    fn read(r: Reader<'_>, at: usize) -> Result<Timestamp, DanteError> {
        Ok(Timestamp {
            seconds: r.u32(at)?,
            nanoseconds: r.u32(at + 4)? as i32,
        })
    }

    fn write(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seconds.to_be_bytes());
        out.extend_from_slice(&self.nanoseconds.to_be_bytes());
    }
}

/// A clock's identity in version 1: its communication technology, UUID (a MAC) and port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PortIdentity {
    pub technology: u8,
    pub uuid: [u8; 6],
    pub port: u16,
}

/// The header every version 1 message starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Header {
    pub version_network: u16,
    /// NUL-padded subdomain name.
    pub subdomain: [u8; 16],
    /// 1 = event, 2 = general.
    pub message_type: u8,
    pub source: PortIdentity,
    pub sequence: u16,
    pub control: Control,
    pub flags: u16,
}

impl V1Header {
    /// The subdomain as text (up to its first NUL).
    pub fn subdomain_name(&self) -> &str {
        let end = self.subdomain.iter().position(|&b| b == 0).unwrap_or(16);
        std::str::from_utf8(&self.subdomain[..end]).unwrap_or("")
    }

    /// The NUL-padded field for `name` (cut to 16 bytes).
    pub fn subdomain_field(name: &str) -> [u8; 16] {
        let mut out = [0u8; 16];
        let n = name.len().min(16);
        out[..n].copy_from_slice(&name.as_bytes()[..n]);
        out
    }
}

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Control {
    Sync,
    DelayReq,
    FollowUp,
    DelayResp,
    Management,
    Other(u8),
}

impl Control {
    fn code(self) -> u8 {
        match self {
            Control::Sync => 0,
            Control::DelayReq => 1,
            Control::FollowUp => 2,
            Control::DelayResp => 3,
            Control::Management => 4,
            Control::Other(c) => c,
        }
    }

    fn from_code(code: u8) -> Control {
        match code {
            0 => Control::Sync,
            1 => Control::DelayReq,
            2 => Control::FollowUp,
            3 => Control::DelayResp,
            4 => Control::Management,
            c => Control::Other(c),
        }
    }
}

/// The body of a Sync or Delay_Req: the origin time and the best-master data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncBody {
    pub origin: Timestamp,
    pub epoch: u16,
    pub utc_offset: i16,
    pub grandmaster: PortIdentity,
    pub grandmaster_sequence: u16,
    pub grandmaster_stratum: u8,
    pub grandmaster_identifier: [u8; 4],
    pub grandmaster_variance: i16,
    pub grandmaster_preferred: bool,
    pub grandmaster_is_boundary: bool,
    /// log2 of the sync interval in seconds.
    pub sync_interval: i8,
    pub local_variance: i16,
    pub local_steps_removed: u16,
    pub local_stratum: u8,
    pub local_identifier: [u8; 4],
    pub parent: PortIdentity,
    pub estimated_master_variance: i16,
    pub estimated_master_drift: i32,
    pub utc_reasonable: bool,
}

/// A version 1 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V1Body {
    Sync(SyncBody),
    DelayReq(SyncBody),
    FollowUp {
        associated_sequence: u16,
        precise_origin: Timestamp,
    },
    DelayResp {
        receipt: Timestamp,
        requester: PortIdentity,
        requester_sequence: u16,
    },
    /// Management and unknown controls: recognised, not decoded.
    Other,
}

/// A parsed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V1Message {
    pub header: V1Header,
    pub body: V1Body,
}

/// Reads a message. Anything that is not version 1 is `Invalid` (version 2 shares the
/// ports: its first byte's low nibble is 2).
pub fn parse(bytes: &[u8]) -> Result<V1Message, DanteError> {
    let r = Reader(bytes);
    let version = r.u16(0)?;
    if version != 1 {
        return Err(DanteError::Invalid {
            field: "versionPTP",
            value: u64::from(version),
        });
    }
    let header = V1Header {
        version_network: r.u16(2)?,
        subdomain: r.array(4)?,
        message_type: r.u8(20)?,
        source: PortIdentity {
            technology: r.u8(21)?,
            uuid: r.array(22)?,
            port: r.u16(28)?,
        },
        sequence: r.u16(30)?,
        control: Control::from_code(r.u8(32)?),
        flags: r.u16(34)?,
    };
    // Check the whole body first so that no field read below can fail half-way.
    let need = match header.control {
        Control::Sync | Control::DelayReq => SYNC_LEN,
        Control::FollowUp => FOLLOW_UP_LEN,
        Control::DelayResp => DELAY_RESP_LEN,
        _ => HEADER_LEN,
    };
    r.slice(0, need)?;
    let body = match header.control {
        Control::Sync => V1Body::Sync(read_sync(r)?),
        Control::DelayReq => V1Body::DelayReq(read_sync(r)?),
        Control::FollowUp => V1Body::FollowUp {
            associated_sequence: r.u16(42)?,
            precise_origin: Timestamp::read(r, 44)?,
        },
        Control::DelayResp => V1Body::DelayResp {
            receipt: Timestamp::read(r, 40)?,
            requester: PortIdentity {
                technology: r.u8(49)?,
                uuid: r.array(50)?,
                port: r.u16(56)?,
            },
            requester_sequence: r.u16(58)?,
        },
        _ => V1Body::Other,
    };
    Ok(V1Message { header, body })
}

fn read_sync(r: Reader<'_>) -> Result<SyncBody, DanteError> {
    Ok(SyncBody {
        origin: Timestamp::read(r, 40)?,
        epoch: r.u16(48)?,
        utc_offset: r.u16(50)? as i16,
        grandmaster: PortIdentity {
            technology: r.u8(53)?,
            uuid: r.array(54)?,
            port: r.u16(60)?,
        },
        grandmaster_sequence: r.u16(62)?,
        grandmaster_stratum: r.u8(67)?,
        grandmaster_identifier: r.array(68)?,
        grandmaster_variance: r.u16(74)? as i16,
        grandmaster_preferred: r.u8(77)? != 0,
        grandmaster_is_boundary: r.u8(79)? != 0,
        sync_interval: r.u8(83)? as i8,
        local_variance: r.u16(86)? as i16,
        local_steps_removed: r.u16(90)?,
        local_stratum: r.u8(95)?,
        local_identifier: r.array(96)?,
        parent: PortIdentity {
            technology: r.u8(101)?,
            uuid: r.array(102)?,
            port: r.u16(110)?,
        },
        estimated_master_variance: r.u16(114)? as i16,
        estimated_master_drift: r.u32(116)? as i32,
        utc_reasonable: r.u8(123)? != 0,
    })
}

impl V1Message {
    /// Writes the message (reserved bytes zero). `Other` bodies write the header only.
    pub fn to_bytes(&self) -> Vec<u8> {
        let h = &self.header;
        let mut out = Vec::with_capacity(SYNC_LEN);
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&h.version_network.to_be_bytes());
        out.extend_from_slice(&h.subdomain);
        out.push(h.message_type);
        out.push(h.source.technology);
        out.extend_from_slice(&h.source.uuid);
        out.extend_from_slice(&h.source.port.to_be_bytes());
        out.extend_from_slice(&h.sequence.to_be_bytes());
        out.push(h.control.code());
        out.push(0);
        out.extend_from_slice(&h.flags.to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        match &self.body {
            V1Body::Sync(s) | V1Body::DelayReq(s) => write_sync(s, &mut out),
            V1Body::FollowUp {
                associated_sequence,
                precise_origin,
            } => {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&associated_sequence.to_be_bytes());
                precise_origin.write(&mut out);
            }
            V1Body::DelayResp {
                receipt,
                requester,
                requester_sequence,
            } => {
                receipt.write(&mut out);
                out.push(0);
                out.push(requester.technology);
                out.extend_from_slice(&requester.uuid);
                out.extend_from_slice(&requester.port.to_be_bytes());
                out.extend_from_slice(&requester_sequence.to_be_bytes());
            }
            V1Body::Other => {}
        }
        out
    }
}

fn write_sync(s: &SyncBody, out: &mut Vec<u8>) {
    s.origin.write(out);
    out.extend_from_slice(&s.epoch.to_be_bytes());
    out.extend_from_slice(&s.utc_offset.to_be_bytes());
    out.extend_from_slice(&[0, s.grandmaster.technology]);
    out.extend_from_slice(&s.grandmaster.uuid);
    out.extend_from_slice(&s.grandmaster.port.to_be_bytes());
    out.extend_from_slice(&s.grandmaster_sequence.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, s.grandmaster_stratum]);
    out.extend_from_slice(&s.grandmaster_identifier);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.grandmaster_variance.to_be_bytes());
    out.extend_from_slice(&[0, u8::from(s.grandmaster_preferred)]);
    out.extend_from_slice(&[0, u8::from(s.grandmaster_is_boundary)]);
    out.extend_from_slice(&[0, 0, 0, s.sync_interval as u8]);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.local_variance.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.local_steps_removed.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, s.local_stratum]);
    out.extend_from_slice(&s.local_identifier);
    out.extend_from_slice(&[0, s.parent.technology]);
    out.extend_from_slice(&s.parent.uuid);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.parent.port.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&s.estimated_master_variance.to_be_bytes());
    out.extend_from_slice(&s.estimated_master_drift.to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, u8::from(s.utc_reasonable)]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header(control: Control, message_type: u8) -> V1Header {
        V1Header {
            version_network: 1,
            subdomain: V1Header::subdomain_field(DEFAULT_SUBDOMAIN),
            message_type,
            source: PortIdentity {
                technology: 1,
                uuid: [0x00, 0x1d, 0xc1, 0x0e, 0x10, 0xc4],
                port: 1,
            },
            sequence: 4660,
            control,
            flags: FLAG_ASSIST,
        }
    }

    #[test]
    fn sizes_and_offsets_match_ieee_1588_2002() {
        let sync = V1Message {
            header: header(Control::Sync, 1),
            body: V1Body::Sync(SyncBody {
                origin: Timestamp {
                    seconds: 1_700_000_000,
                    nanoseconds: 5,
                },
                sync_interval: -2,
                grandmaster_stratum: 4,
                grandmaster_identifier: *b"DFLT",
                utc_reasonable: true,
                ..SyncBody::default()
            }),
        };
        let bytes = sync.to_bytes();
        assert_eq!(bytes.len(), 124);
        // The sync interval sits at body offset 43.
        assert_eq!(bytes[HEADER_LEN + 43] as i8, -2);
        assert_eq!(parse(&bytes), Ok(sync));
        assert_eq!(sync.header.subdomain_name(), "_DFLT");

        let follow = V1Message {
            header: header(Control::FollowUp, 2),
            body: V1Body::FollowUp {
                associated_sequence: 4660,
                precise_origin: Timestamp {
                    seconds: 7,
                    nanoseconds: 999_999_999,
                },
            },
        };
        assert_eq!(follow.to_bytes().len(), 52);
        assert_eq!(parse(&follow.to_bytes()), Ok(follow));

        let resp = V1Message {
            header: header(Control::DelayResp, 2),
            body: V1Body::DelayResp {
                receipt: Timestamp {
                    seconds: 8,
                    nanoseconds: -1,
                },
                requester: PortIdentity {
                    technology: 1,
                    uuid: [2; 6],
                    port: 1,
                },
                requester_sequence: 77,
            },
        };
        assert_eq!(resp.to_bytes().len(), 60);
        assert_eq!(parse(&resp.to_bytes()), Ok(resp));
    }

    #[test]
    fn version_2_and_short_bodies_are_refused() {
        let mut v2 = vec![0u8; 44];
        v2[0] = 0x00;
        v2[1] = 0x02;
        assert!(parse(&v2).is_err());
        let sync = V1Message {
            header: header(Control::Sync, 1),
            body: V1Body::Sync(SyncBody::default()),
        }
        .to_bytes();
        assert!(matches!(
            parse(&sync[..100]),
            Err(DanteError::Truncated { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_parse_without_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..160), control in 0u8..6) {
            if bytes.len() > 32 {
                bytes[0] = 0;
                bytes[1] = 1;
                bytes[32] = control;
            }
            if let Ok(m) = parse(&bytes) {
                // What parses re-encodes to a message that parses the same.
                prop_assert_eq!(parse(&m.to_bytes()), Ok(m));
            }
        }
    }
}
