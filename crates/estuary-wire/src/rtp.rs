//! RTP fixed header, CSRC list, header extension and padding (RFC 3550 §5.1, §5.3.1).
//!
//! [`RtpPacket::parse`] validates every length before it builds the view, so afterwards no
//! accessor can panic: the view holds only sub-slices and already-decoded header fields.
//! [`RtpPacketBuilder`] is the symmetric writer. Nothing here allocates.

use crate::units::{RtpTimestamp, SeqNum};

/// Length of the fixed RTP header (RFC 3550 §5.1).
pub const RTP_FIXED_HEADER_LEN: usize = 12;
/// The only RTP version in use (RFC 3550 §5.1 "V").
pub const RTP_VERSION: u8 = 2;

/// Why bytes from the network are not a valid RTP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpError {
    /// Fewer bytes than the header fields announce.
    #[error("RTP packet truncated: expected at least {expected} bytes, got {actual}")]
    Truncated {
        /// Bytes needed for the part being read.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// The version field is not 2.
    #[error("unsupported RTP version {version} (expected 2)")]
    UnsupportedVersion {
        /// The version found in the first two bits.
        version: u8,
    },
    /// P is set but the padding count is zero or larger than what follows the header.
    #[error("invalid RTP padding count {padding}: only {available} bytes follow the header")]
    InvalidPadding {
        /// Padding count from the last byte.
        padding: u8,
        /// Bytes after the header (and extension), padding included.
        available: usize,
    },
}

/// Why an [`RtpPacketBuilder`] cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtpWriteError {
    /// The output buffer is smaller than [`RtpPacketBuilder::wire_size`].
    #[error("RTP output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        available: usize,
    },
    /// More than 15 CSRCs (the CC field has 4 bits).
    #[error("too many CSRCs: {count} (max 15)")]
    TooManyCsrcs {
        /// Number of CSRCs given.
        count: usize,
    },
    /// Payload type above 127 (7-bit field).
    #[error("payload type {payload_type} does not fit in 7 bits")]
    InvalidPayloadType {
        /// The payload type given.
        payload_type: u8,
    },
    /// Extension data must be a whole number of 32-bit words, at most 65535 words.
    #[error("header extension of {len} bytes is not a whole number of 32-bit words (max 65535)")]
    InvalidExtensionLength {
        /// Extension data length in bytes.
        len: usize,
    },
}

/// A validated, borrowed view of one RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<'a> {
    marker: bool,
    payload_type: u8,
    sequence: SeqNum,
    timestamp: RtpTimestamp,
    ssrc: u32,
    csrc_bytes: &'a [u8],
    extension: Option<(u16, &'a [u8])>,
    payload: &'a [u8],
    padding: u8,
}

fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(s.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
}

impl<'a> RtpPacket<'a> {
    /// Parses and validates `data` as one RTP packet (RFC 3550 §5.1).
    pub fn parse(data: &'a [u8]) -> Result<RtpPacket<'a>, RtpError> {
        let truncated = |expected: usize| RtpError::Truncated {
            expected,
            actual: data.len(),
        };
        let fixed = data
            .get(..RTP_FIXED_HEADER_LEN)
            .ok_or(truncated(RTP_FIXED_HEADER_LEN))?;
        let (b0, b1) = match fixed {
            [b0, b1, ..] => (*b0, *b1),
            _ => return Err(truncated(RTP_FIXED_HEADER_LEN)),
        };
        let version = b0 >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::UnsupportedVersion { version });
        }
        let has_padding = b0 & 0x20 != 0;
        let has_extension = b0 & 0x10 != 0;
        let cc = usize::from(b0 & 0x0f);
        let marker = b1 & 0x80 != 0;
        let payload_type = b1 & 0x7f;
        let sequence = SeqNum(be_u16(fixed, 2).ok_or(truncated(RTP_FIXED_HEADER_LEN))?);
        let timestamp = RtpTimestamp(be_u32(fixed, 4).ok_or(truncated(RTP_FIXED_HEADER_LEN))?);
        let ssrc = be_u32(fixed, 8).ok_or(truncated(RTP_FIXED_HEADER_LEN))?;

        let csrc_end = RTP_FIXED_HEADER_LEN + 4 * cc;
        let csrc_bytes = data
            .get(RTP_FIXED_HEADER_LEN..csrc_end)
            .ok_or(truncated(csrc_end))?;

        // RFC 3550 §5.3.1: 16-bit profile-defined field, 16-bit length in 32-bit words
        // (not counting the 4-byte extension header itself), then the data.
        let mut offset = csrc_end;
        let extension = if has_extension {
            let ext_header_end = offset + 4;
            let profile = be_u16(data, offset).ok_or(truncated(ext_header_end))?;
            let words = be_u16(data, offset + 2).ok_or(truncated(ext_header_end))?;
            let ext_end = ext_header_end + 4 * usize::from(words);
            let ext = data
                .get(ext_header_end..ext_end)
                .ok_or(truncated(ext_end))?;
            offset = ext_end;
            Some((profile, ext))
        } else {
            None
        };

        let rest = data.get(offset..).ok_or(truncated(offset))?;
        let padding = if has_padding {
            // RFC 3550 §5.1: the last octet counts the padding octets, itself included.
            let padding = *rest.last().ok_or(truncated(offset + 1))?;
            if padding == 0 || usize::from(padding) > rest.len() {
                return Err(RtpError::InvalidPadding {
                    padding,
                    available: rest.len(),
                });
            }
            padding
        } else {
            0
        };
        let payload_len = rest.len() - usize::from(padding);
        let payload = rest.get(..payload_len).ok_or(truncated(offset))?;

        Ok(RtpPacket {
            marker,
            payload_type,
            sequence,
            timestamp,
            ssrc,
            csrc_bytes,
            extension,
            payload,
            padding,
        })
    }

    /// The marker bit (M).
    pub fn marker(&self) -> bool {
        self.marker
    }

    /// The 7-bit payload type (PT).
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// The sequence number.
    pub fn sequence(&self) -> SeqNum {
        self.sequence
    }

    /// The RTP timestamp.
    pub fn timestamp(&self) -> RtpTimestamp {
        self.timestamp
    }

    /// The synchronisation source identifier.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Number of CSRC identifiers (CC), 0..=15.
    pub fn csrc_count(&self) -> u8 {
        // At most 60 bytes, so the quotient is at most 15.
        u8::try_from(self.csrc_bytes.len() / 4).unwrap_or(0)
    }

    /// The contributing source identifiers.
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = u32> + 'a {
        self.csrc_bytes
            .chunks_exact(4)
            .map(|c| c.iter().fold(0u32, |acc, &x| (acc << 8) | u32::from(x)))
    }

    /// The header extension (RFC 3550 §5.3.1): profile-defined 16 bits and the data words.
    pub fn extension(&self) -> Option<(u16, &'a [u8])> {
        self.extension
    }

    /// Number of padding bytes at the end (0 when P is clear).
    pub fn padding_len(&self) -> u8 {
        self.padding
    }

    /// The payload, without header, extension and padding.
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    /// A builder holding this packet's fields. The builder borrows CSRCs as `&[u32]`,
    /// which a byte view cannot lend, so `csrcs` is left empty: set it from
    /// [`csrcs`](Self::csrcs) to write the packet back. Padding bytes are written as zeros.
    pub fn to_builder(&self) -> RtpPacketBuilder<'a> {
        RtpPacketBuilder {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence: self.sequence,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: &[],
            extension: self.extension,
            payload: self.payload,
            padding: self.padding,
        }
    }

    /// The raw CSRC list bytes (4 bytes per CSRC, big-endian).
    pub fn csrc_bytes(&self) -> &'a [u8] {
        self.csrc_bytes
    }
}

/// Writes one RTP packet; the symmetric counterpart of [`RtpPacket::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpPacketBuilder<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type, 0..=127.
    pub payload_type: u8,
    /// Sequence number.
    pub sequence: SeqNum,
    /// RTP timestamp.
    pub timestamp: RtpTimestamp,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Contributing sources, at most 15.
    pub csrcs: &'a [u32],
    /// Header extension: profile-defined field and data (a multiple of 4 bytes).
    pub extension: Option<(u16, &'a [u8])>,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Padding bytes to append (0 = none; otherwise P is set and the last byte is the count).
    pub padding: u8,
}

impl RtpPacketBuilder<'_> {
    /// Bytes [`write_into`](Self::write_into) writes.
    pub fn wire_size(&self) -> usize {
        RTP_FIXED_HEADER_LEN
            + 4 * self.csrcs.len()
            + self.extension.map_or(0, |(_, d)| 4 + d.len())
            + self.payload.len()
            + usize::from(self.padding)
    }

    /// Writes the packet at the start of `buf`, returning the number of bytes written.
    pub fn write_into(&self, buf: &mut [u8]) -> Result<usize, RtpWriteError> {
        if self.csrcs.len() > 15 {
            return Err(RtpWriteError::TooManyCsrcs {
                count: self.csrcs.len(),
            });
        }
        if self.payload_type > 0x7f {
            return Err(RtpWriteError::InvalidPayloadType {
                payload_type: self.payload_type,
            });
        }
        let ext_words = match self.extension {
            Some((_, d)) => {
                if d.len() % 4 != 0 || d.len() / 4 > usize::from(u16::MAX) {
                    return Err(RtpWriteError::InvalidExtensionLength { len: d.len() });
                }
                Some(u16::try_from(d.len() / 4).unwrap_or(u16::MAX))
            }
            None => None,
        };
        let needed = self.wire_size();
        let available = buf.len();
        let out = buf
            .get_mut(..needed)
            .ok_or(RtpWriteError::BufferTooSmall { needed, available })?;

        // Lengths are checked above, so `put` never fails below.
        let mut w = Writer { out, pos: 0 };
        let cc = self.csrcs.len() as u8; // <= 15
        let mut b0 = (RTP_VERSION << 6) | cc;
        if self.padding > 0 {
            b0 |= 0x20;
        }
        if self.extension.is_some() {
            b0 |= 0x10;
        }
        w.put(&[b0, (u8::from(self.marker) << 7) | self.payload_type]);
        w.put(&self.sequence.0.to_be_bytes());
        w.put(&self.timestamp.0.to_be_bytes());
        w.put(&self.ssrc.to_be_bytes());
        for csrc in self.csrcs {
            w.put(&csrc.to_be_bytes());
        }
        if let (Some((profile, data)), Some(words)) = (self.extension, ext_words) {
            w.put(&profile.to_be_bytes());
            w.put(&words.to_be_bytes());
            w.put(data);
        }
        w.put(self.payload);
        if self.padding > 0 {
            for _ in 1..self.padding {
                w.put(&[0]);
            }
            w.put(&[self.padding]);
        }
        Ok(w.pos)
    }
}

/// Sequential writer into a slice already sized to fit; never panics (excess is dropped,
/// which cannot happen after the length check in `write_into`).
struct Writer<'b> {
    out: &'b mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.out.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
            self.pos = end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-built per RFC 3550 §5.1: V=2, P=0, X=0, CC=0, M=1, PT=97, seq 0x1234,
    /// ts 0xdeadbeef, SSRC 0x01020304, 6 payload bytes (1 frame of L24 stereo).
    const SIMPLE: [u8; 18] = [
        0x80, 0xe1, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04, 0x7f, 0xff, 0xff,
        0x80, 0x00, 0x00,
    ];

    /// V=2, P=1, X=1, CC=2, M=0, PT=96; 2 CSRCs; extension profile 0xBEDE with 1 word;
    /// 2 payload bytes; 3 padding bytes (count 3).
    const FULL: [u8; 37] = [
        0xb2, 0x60, 0xff, 0xff, 0x00, 0x00, 0x00, 0x30, 0xca, 0xfe, 0xba, 0xbe, // fixed
        0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, // CSRCs
        0xbe, 0xde, 0x00, 0x01, 0x10, 0xaa, 0x00, 0x00, // extension
        0x55, 0x66, // payload
        0x00, 0x00, 0x03, // padding
        0x00, 0x00, 0x00, 0x00, // (not part of the packet: trimmed below)
    ];

    #[test]
    fn golden_simple() {
        let p = RtpPacket::parse(&SIMPLE).expect("valid");
        assert!(p.marker());
        assert_eq!(p.payload_type(), 97);
        assert_eq!(p.sequence(), SeqNum(0x1234));
        assert_eq!(p.timestamp(), RtpTimestamp(0xdead_beef));
        assert_eq!(p.ssrc(), 0x0102_0304);
        assert_eq!(p.csrc_count(), 0);
        assert_eq!(p.extension(), None);
        assert_eq!(p.padding_len(), 0);
        assert_eq!(p.payload(), &SIMPLE[12..]);
        let mut buf = [0u8; 64];
        let b = p.to_builder();
        assert_eq!(b.wire_size(), SIMPLE.len());
        let n = b.write_into(&mut buf).expect("fits");
        assert_eq!(&buf[..n], &SIMPLE[..]);
    }

    #[test]
    fn golden_full() {
        let bytes = &FULL[..33];
        let p = RtpPacket::parse(bytes).expect("valid");
        assert!(!p.marker());
        assert_eq!(p.payload_type(), 96);
        assert_eq!(p.sequence(), SeqNum(0xffff));
        assert_eq!(p.timestamp(), RtpTimestamp(0x30));
        assert_eq!(p.ssrc(), 0xcafe_babe);
        assert_eq!(p.csrc_count(), 2);
        assert_eq!(p.csrcs().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(p.extension(), Some((0xbede, &[0x10, 0xaa, 0, 0][..])));
        assert_eq!(p.padding_len(), 3);
        assert_eq!(p.payload(), &[0x55, 0x66]);
        let csrcs = [1, 2];
        let b = RtpPacketBuilder {
            csrcs: &csrcs,
            ..p.to_builder()
        };
        let mut buf = [0u8; 64];
        let n = b.write_into(&mut buf).expect("fits");
        assert_eq!(&buf[..n], bytes);
    }

    #[test]
    fn errors() {
        assert_eq!(
            RtpPacket::parse(&SIMPLE[..11]),
            Err(RtpError::Truncated {
                expected: 12,
                actual: 11
            })
        );
        let mut v1 = SIMPLE;
        v1[0] = 0x40;
        assert_eq!(
            RtpPacket::parse(&v1),
            Err(RtpError::UnsupportedVersion { version: 1 })
        );
        // CC=2 but no CSRC bytes.
        let mut cc = SIMPLE;
        cc[0] = 0x82;
        assert_eq!(
            RtpPacket::parse(&cc[..12]),
            Err(RtpError::Truncated {
                expected: 20,
                actual: 12
            })
        );
        // Extension announces 1 word but none follows.
        assert_eq!(
            RtpPacket::parse(&FULL[..26]),
            Err(RtpError::Truncated {
                expected: 28,
                actual: 26
            })
        );
        // Padding count larger than what follows the header.
        let mut pad = SIMPLE;
        pad[0] |= 0x20;
        pad[17] = 7;
        assert_eq!(
            RtpPacket::parse(&pad),
            Err(RtpError::InvalidPadding {
                padding: 7,
                available: 6
            })
        );
        pad[17] = 0;
        assert!(matches!(
            RtpPacket::parse(&pad),
            Err(RtpError::InvalidPadding { padding: 0, .. })
        ));
        // Padding may cover the whole payload.
        pad[17] = 6;
        assert_eq!(RtpPacket::parse(&pad).map(|p| p.payload().len()), Ok(0));
    }

    #[test]
    fn write_errors() {
        let mut buf = [0u8; 16];
        let b = RtpPacketBuilder {
            payload: &[0; 8],
            ..Default::default()
        };
        assert_eq!(
            b.write_into(&mut buf),
            Err(RtpWriteError::BufferTooSmall {
                needed: 20,
                available: 16
            })
        );
        let b = RtpPacketBuilder {
            payload_type: 128,
            ..Default::default()
        };
        assert!(matches!(
            b.write_into(&mut buf),
            Err(RtpWriteError::InvalidPayloadType { .. })
        ));
        let b = RtpPacketBuilder {
            extension: Some((1, &[1, 2, 3])),
            ..Default::default()
        };
        assert!(matches!(
            b.write_into(&mut buf),
            Err(RtpWriteError::InvalidExtensionLength { len: 3 })
        ));
        let csrcs = [0u32; 16];
        let b = RtpPacketBuilder {
            csrcs: &csrcs,
            ..Default::default()
        };
        assert!(matches!(
            b.write_into(&mut buf),
            Err(RtpWriteError::TooManyCsrcs { count: 16 })
        ));
    }
}
