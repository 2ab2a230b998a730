//! Dante (unofficial, independent implementation): the control messages, the audio packet
//! and the PTPv1 clock messages, sans-IO.
//!
//! Dante is Audinate's proprietary protocol. Everything here is written from the protocol
//! facts gathered in the project's specification notes (`docs/dante.md` keeps what we rely
//! on); none of it is Audinate's code or endorsed by Audinate.
//!
//! The control protocols (ARC on port 4440, flow control on 4455, CMC on 8800) share a
//! 10-byte big-endian header ([`Header`]). Their bodies point at strings and shared
//! descriptors with **absolute** offsets, counted from byte 0 of the datagram, so readers
//! keep the whole datagram ([`Message`]) and writers lay out a fixed part followed by a
//! string area ([`Writer`]).

pub mod arc;
pub mod audio;
pub mod conmon;
pub mod flow;
pub mod ptpv1;

/// Bytes of the common control header.
pub const HEADER_LEN: usize = 10;

/// Result code of a successful response.
pub const RESULT_OK: u16 = 0x0001;
/// Result code of a successful response to a paged list with more pages to come.
pub const RESULT_MORE: u16 = 0x8112;
/// The flow handle is unknown or the flow expired.
pub const RESULT_NO_FLOW: u16 = 0x0103;
/// A flow request with another sample rate than the transmitter's.
pub const RESULT_RATE_MISMATCH: u16 = 0x0301;
/// A flow request with a frame count or channel the transmitter cannot serve.
pub const RESULT_BAD_FLOW: u16 = 0x0302;
/// The transmitter has no flow left.
pub const RESULT_NO_FLOWS_LEFT: u16 = 0x0315;
/// A request the device does not understand.
pub const RESULT_FAILURE: u16 = 0xFFFF;

/// Longest device or channel name Dante Controller accepts.
pub const MAX_NAME_LEN: usize = 31;

/// Why bytes are not a usable Dante message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DanteError {
    /// Fewer bytes than a field needs.
    #[error("Dante message truncated: needs {expected} bytes, has {actual}")]
    Truncated {
        /// Bytes needed for the field being read.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// The length field disagrees with the datagram.
    #[error("Dante length field {field} does not fit a {actual}-byte datagram")]
    Length {
        /// What the header says.
        field: usize,
        /// What arrived.
        actual: usize,
    },
    /// A string offset that points outside the datagram, or a string without its NUL.
    #[error("Dante string at offset {0} is outside the datagram or unterminated")]
    BadString(usize),
    /// A string that is not UTF-8.
    #[error("Dante string at offset {0} is not UTF-8")]
    NotUtf8(usize),
    /// A field with a value the format does not allow.
    #[error("Dante field {field} has invalid value {value}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
    },
}

/// The header shared by ARC, flow control and CMC messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// The "start code" (0x27FF, 0x2729, 0x2809 for ARC; 0x1102 for flow control; 0x1200
    /// for CMC). Responders echo it and accept any value.
    pub protocol: u16,
    /// The datagram's total length.
    pub length: u16,
    /// Chosen by the requester, echoed by the responder.
    pub transaction: u16,
    pub opcode: u16,
    /// 0 in a request; the result code in a response.
    pub result: u16,
}

impl Header {
    /// A request carries 0 where a response carries its result code.
    pub fn is_request(&self) -> bool {
        self.result == 0
    }

    /// The header of the response to this request.
    pub fn response(&self, result: u16) -> Header {
        Header { result, ..*self }
    }
}

/// A parsed control datagram: the header and the datagram, cut to the header's length,
/// for the absolute offsets of its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    pub header: Header,
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// Reads the header. The length field must cover the header and may be shorter than
    /// the datagram (trailing bytes are ignored), never longer.
    pub fn parse(bytes: &'a [u8]) -> Result<Message<'a>, DanteError> {
        let r = Reader(bytes);
        let header = Header {
            protocol: r.u16(0)?,
            length: r.u16(2)?,
            transaction: r.u16(4)?,
            opcode: r.u16(6)?,
            result: r.u16(8)?,
        };
        let length = usize::from(header.length);
        if length < HEADER_LEN || length > bytes.len() {
            return Err(DanteError::Length {
                field: length,
                actual: bytes.len(),
            });
        }
        Ok(Message {
            header,
            bytes: &bytes[..length],
        })
    }

    /// The whole datagram (header included): body offsets are absolute.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub(crate) fn reader(&self) -> Reader<'a> {
        Reader(self.bytes)
    }
}

/// Bounds-checked big-endian reads at absolute offsets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn slice(&self, at: usize, len: usize) -> Result<&'a [u8], DanteError> {
        let end = at.checked_add(len).ok_or(DanteError::Truncated {
            expected: usize::MAX,
            actual: self.0.len(),
        })?;
        self.0.get(at..end).ok_or(DanteError::Truncated {
            expected: end,
            actual: self.0.len(),
        })
    }

    pub fn array<const N: usize>(&self, at: usize) -> Result<[u8; N], DanteError> {
        let mut out = [0; N];
        out.copy_from_slice(self.slice(at, N)?);
        Ok(out)
    }

    pub fn u8(&self, at: usize) -> Result<u8, DanteError> {
        Ok(self.array::<1>(at)?[0])
    }

    pub fn u16(&self, at: usize) -> Result<u16, DanteError> {
        Ok(u16::from_be_bytes(self.array(at)?))
    }

    pub fn u32(&self, at: usize) -> Result<u32, DanteError> {
        Ok(u32::from_be_bytes(self.array(at)?))
    }

    /// The NUL-terminated string at `offset`.
    pub fn string(&self, offset: usize) -> Result<&'a str, DanteError> {
        let tail = self.0.get(offset..).ok_or(DanteError::BadString(offset))?;
        let end = tail
            .iter()
            .position(|&b| b == 0)
            .ok_or(DanteError::BadString(offset))?;
        std::str::from_utf8(&tail[..end]).map_err(|_| DanteError::NotUtf8(offset))
    }

    /// The string a u16 offset field at `at` points to; offset 0 means none.
    pub fn string_field(&self, at: usize) -> Result<Option<&'a str>, DanteError> {
        match self.u16(at)? {
            0 => Ok(None),
            offset => self.string(usize::from(offset)).map(Some),
        }
    }
}

/// Builds a control datagram: the header, a fixed part written in order, then strings and
/// shared structures appended after it and referred to by absolute u16 offsets.
#[derive(Debug, Clone)]
pub struct Writer {
    bytes: Vec<u8>,
}

impl Writer {
    /// Starts a datagram with `header` (its length is filled in by [`Writer::finish`]).
    pub fn new(header: Header) -> Writer {
        let mut bytes = Vec::with_capacity(256);
        bytes.extend_from_slice(&header.protocol.to_be_bytes());
        bytes.extend_from_slice(&0u16.to_be_bytes());
        bytes.extend_from_slice(&header.transaction.to_be_bytes());
        bytes.extend_from_slice(&header.opcode.to_be_bytes());
        bytes.extend_from_slice(&header.result.to_be_bytes());
        Writer { bytes }
    }

    /// The absolute offset of the next byte.
    pub fn position(&self) -> usize {
        self.bytes.len()
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.bytes.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(v);
        self
    }

    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.bytes.resize(self.bytes.len() + n, 0);
        self
    }

    /// Pads with zeros to a multiple of `align` bytes.
    pub fn align(&mut self, align: usize) -> &mut Self {
        let rem = self.bytes.len() % align;
        if rem != 0 {
            self.zeros(align - rem);
        }
        self
    }

    /// Overwrites the u16 at `at` (a forward offset field written as a placeholder).
    pub fn patch_u16(&mut self, at: usize, v: u16) {
        if let Some(slot) = self.bytes.get_mut(at..at + 2) {
            slot.copy_from_slice(&v.to_be_bytes());
        }
    }

    /// Appends `s` with its NUL and returns its offset.
    pub fn string(&mut self, s: &str) -> Result<u16, DanteError> {
        let offset = self.offset()?;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        Ok(offset)
    }

    /// The current position as a u16 offset.
    pub fn offset(&self) -> Result<u16, DanteError> {
        u16::try_from(self.bytes.len()).map_err(|_| DanteError::Invalid {
            field: "length",
            value: self.bytes.len() as u64,
        })
    }

    /// Fills in the length and returns the datagram.
    pub fn finish(mut self) -> Result<Vec<u8>, DanteError> {
        let length = self.offset()?;
        self.bytes[2..4].copy_from_slice(&length.to_be_bytes());
        Ok(self.bytes)
    }
}

/// Whether `name` is a valid Dante device or channel name: 1 to 31 characters from
/// `A–Z a–z 0–9 -`, not starting or ending with `-`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_length_is_checked() {
        let h = Header {
            protocol: 0x27FF,
            length: 0,
            transaction: 0x000E,
            opcode: 0x3014,
            result: 0,
        };
        let mut w = Writer::new(h);
        w.u16(1).u32(1);
        let bytes = w.finish().expect("small");
        // The bytes netaudio sends to remove subscription 1 (spec §3.2).
        assert_eq!(
            bytes,
            [
                0x27, 0xff, 0x00, 0x10, 0x00, 0x0e, 0x30, 0x14, 0, 0, 0, 1, 0, 0, 0, 1
            ]
        );
        let m = Message::parse(&bytes).expect("parses");
        assert_eq!(m.header.length, 16);
        assert!(m.header.is_request());
        assert!(Message::parse(&bytes[..12]).is_err());
        assert!(Message::parse(&bytes[..9]).is_err());
    }

    #[test]
    fn names_follow_the_dante_rules() {
        assert!(valid_name("Estuary-1"));
        assert!(!valid_name(""));
        assert!(!valid_name("-lead"));
        assert!(!valid_name("trail-"));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(32)));
        assert!(valid_name(&"x".repeat(31)));
    }

    #[test]
    fn strings_must_be_inside_and_terminated() {
        let r = Reader(b"\0\0ab\0cd");
        assert_eq!(r.string(2), Ok("ab"));
        assert_eq!(r.string(5), Err(DanteError::BadString(5)));
        assert_eq!(r.string(99), Err(DanteError::BadString(99)));
        assert_eq!(r.string_field(0), Ok(None));
    }
}
