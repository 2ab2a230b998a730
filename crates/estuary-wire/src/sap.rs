//! Session Announcement Protocol (RFC 2974): header codec, message-id hash and the
//! announcement interval.
//!
//! [`parse`] validates every length with `get(..)` before it reads a field, so it never
//! panics; the returned [`SapPacket`] owns its payload (a compressed payload has to be
//! inflated anyway). [`SapPacket::to_bytes`] is the symmetric writer.
//!
//! What the parser accepts (RFC 2974 §5), and why:
//! - **Version**: the 3-bit V field must be 1 (SAPv1 and the SAPv2 of RFC 2974 share it:
//!   "SAPv2 announcements which use only SAPv1 features are backwards compatible") or 0
//!   (SAPv0, the pre-RFC session directory). Other values may change the header layout
//!   and are [`SapError::UnsupportedVersion`].
//! - **A** selects a 4-byte IPv4 or 16-byte IPv6 originating source; **R** is ignored.
//! - **T** gives announce / delete. A deletion payload may be only the `o=` line.
//! - **E** (encrypted): [`SapError::Encrypted`], carrying the key, so callers count and
//!   ignore it. Nobody in AES67 land encrypts SAP and RFC 2974 §7 leaves the key
//!   exchange undefined.
//! - **C** (zlib): everything after the authentication data is inflated (payload type
//!   included, as it is part of the payload for the sender), capped at
//!   [`MAX_INFLATED_LEN`] so a zip bomb is [`SapError::Decompress`].
//! - **Authentication data** (auth len × 4 bytes) is skipped, not verified.
//! - **Payload type** is optional: a payload that starts with `v=` (an announcement) or
//!   `o=` (a deletion) has none and is `application/sdp`. Otherwise, the text up to the
//!   first NUL is the MIME type; a type other than `application/sdp` is
//!   [`SapError::UnsupportedPayloadType`]. A payload with neither a NUL nor a leading
//!   `v=`/`o=` is kept as is with no type (the SDP parser will judge it).
//! - **Message-id hash 0**: RFC 2974 §5 keeps 0 for SAPv0 ("the hash should be ignored")
//!   and lets listeners "silently discard" SAPv1 packets that carry it, because such
//!   sessions can be neither tracked nor deleted by key. We discard them
//!   ([`SapError::ZeroHash`]) for V=1 and accept them for V=0, whose callers must key
//!   the session on its `o=` line instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The SAP UDP port (RFC 2974 §3).
pub const SAP_PORT: u16 = 9875;
/// The MIME type of an SDP payload.
pub const SDP_MIME_TYPE: &str = "application/sdp";
/// Upper bound of an inflated (C=1) payload: far above any SDP, small enough that a
/// zlib bomb cannot exhaust memory.
pub const MAX_INFLATED_LEN: usize = 64 * 1024;
/// RFC 2974 §3: all announcements in a scope share 4000 bit/s.
pub const BANDWIDTH_LIMIT_BPS: u64 = 4000;
/// RFC 2974 §3 minimum interval (`ad_min`, 300 s). AES67 devices use 30 s in practice;
/// [`announcement_interval`] takes the base as a parameter.
pub const RFC_MIN_INTERVAL: Duration = Duration::from_secs(300);

/// Fixed header bytes before the originating source (V/A/R/T/E/C, auth len, hash).
const FIXED_HEADER_LEN: usize = 4;
const FLAG_ADDRESS_V6: u8 = 0x10;
const FLAG_DELETE: u8 = 0x04;
const FLAG_ENCRYPTED: u8 = 0x02;
const FLAG_COMPRESSED: u8 = 0x01;

/// Why bytes from the network are not a usable SAP packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SapError {
    /// Fewer bytes than the header fields announce.
    #[error("SAP packet truncated: expected at least {expected} bytes, got {actual}")]
    Truncated {
        /// Bytes needed for the part being read.
        expected: usize,
        /// Bytes available.
        actual: usize,
    },
    /// V is neither 0 nor 1.
    #[error("unsupported SAP version {version}")]
    UnsupportedVersion {
        /// The 3-bit version field.
        version: u8,
    },
    /// E is set: the payload is encrypted and we hold no key.
    #[error("encrypted SAP packet from {} (hash {:#06x})", key.origin, key.msg_id_hash)]
    Encrypted {
        /// Who sent it, so callers can count per source.
        key: SapKey,
    },
    /// A SAPv1 packet with message-id hash 0, which RFC 2974 §5 lets listeners discard.
    #[error("SAPv1 packet from {origin} with message-id hash 0 (discarded, RFC 2974 §5)")]
    ZeroHash {
        /// Originating source.
        origin: IpAddr,
    },
    /// C is set but the payload is not valid zlib, or inflates beyond [`MAX_INFLATED_LEN`].
    #[error("SAP payload does not inflate (zlib) within {MAX_INFLATED_LEN} bytes")]
    Decompress,
    /// The payload type is not ASCII text or is empty.
    #[error("invalid SAP payload type")]
    InvalidPayloadType,
    /// A payload type other than `application/sdp`.
    #[error("unsupported SAP payload type {0:?}")]
    UnsupportedPayloadType(String),
}

/// Why a [`SapPacket`] cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SapWriteError {
    /// Version above 1 (we write only what we parse).
    #[error("cannot write SAP version {0}")]
    Version(u8),
    /// SAPv1 with a zero hash, which listeners may discard.
    #[error("SAPv1 message-id hash must not be 0")]
    ZeroHash,
    /// A payload type that is empty, not printable ASCII, or that a parser would mistake
    /// for a payload (starting with `v=` / `o=`).
    #[error("invalid SAP payload type {0:?}")]
    InvalidPayloadType(String),
    /// Without a payload type, the payload must start with `v=` or `o=` or hold no NUL,
    /// else a parser would read its head as a payload type.
    #[error("payload without a type would be read back as having one")]
    AmbiguousPayload,
}

/// Announcement or deletion (the T bit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// T = 0.
    Announce,
    /// T = 1.
    Delete,
}

/// What identifies one announced session version: originating source and message-id
/// hash (RFC 2974 §5: "globally unique identifier" of the announcement).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SapKey {
    /// Originating source.
    pub origin: IpAddr,
    /// Message identifier hash.
    pub msg_id_hash: u16,
}

/// One decoded SAP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SapPacket {
    /// The 3-bit version field: 1 (SAPv1/v2) or 0 (SAPv0).
    pub version: u8,
    /// Announcement or deletion.
    pub message_type: MessageType,
    /// Originating source (A bit selects the family).
    pub origin: IpAddr,
    /// Message identifier hash.
    pub msg_id_hash: u16,
    /// Whether the payload was (or is to be) zlib-compressed on the wire.
    pub compressed: bool,
    /// The payload type as written; `None` when omitted (then `application/sdp`).
    pub payload_type: Option<String>,
    /// The (inflated) payload: SDP text for an announcement, at least the `o=` line for
    /// a deletion.
    pub payload: Vec<u8>,
}

impl SapPacket {
    /// A SAPv1 announcement with payload type `application/sdp`, uncompressed, keyed
    /// by [`message_id_hash`] of `sdp`.
    pub fn announce(origin: IpAddr, sdp: &str) -> Self {
        Self {
            version: 1,
            message_type: MessageType::Announce,
            origin,
            msg_id_hash: message_id_hash(sdp),
            compressed: false,
            payload_type: Some(SDP_MIME_TYPE.to_owned()),
            payload: sdp.as_bytes().to_vec(),
        }
    }

    /// The deletion for an announcement of `sdp`: same key, payload the `o=` line only
    /// (RFC 2974 §6 lets the deletion carry just the origin of the session).
    pub fn delete(origin: IpAddr, sdp: &str) -> Self {
        let mut payload = origin_line(sdp).unwrap_or(sdp).as_bytes().to_vec();
        payload.extend_from_slice(b"\r\n");
        Self {
            version: 1,
            message_type: MessageType::Delete,
            origin,
            msg_id_hash: message_id_hash(sdp),
            compressed: false,
            payload_type: Some(SDP_MIME_TYPE.to_owned()),
            payload,
        }
    }

    /// Origin and hash.
    pub fn key(&self) -> SapKey {
        SapKey {
            origin: self.origin,
            msg_id_hash: self.msg_id_hash,
        }
    }

    /// The payload as text, when it is UTF-8 (SDP defaults to UTF-8, RFC 8866 §5.3).
    pub fn sdp(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }

    /// The `o=` line of the payload (without line end), which identifies the session
    /// across versions; deletions of only an `o=` line are matched with it.
    pub fn origin_line(&self) -> Option<&str> {
        self.sdp().and_then(origin_line)
    }

    /// Encodes the packet (no authentication data, R = 0).
    ///
    /// There is no `wire_size()`: with C set, the size is known only after compressing.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SapWriteError> {
        if self.version > 1 {
            return Err(SapWriteError::Version(self.version));
        }
        if self.version == 1 && self.msg_id_hash == 0 {
            return Err(SapWriteError::ZeroHash);
        }
        let mut body = Vec::with_capacity(self.payload.len() + 17);
        match &self.payload_type {
            Some(t) => {
                if !payload_type_writable(t) {
                    return Err(SapWriteError::InvalidPayloadType(t.clone()));
                }
                body.extend_from_slice(t.as_bytes());
                body.push(0);
            }
            None => {
                if !starts_as_sdp(&self.payload) && self.payload.contains(&0) {
                    return Err(SapWriteError::AmbiguousPayload);
                }
            }
        }
        body.extend_from_slice(&self.payload);
        if self.compressed {
            // Level 6: zlib's default; SDP compresses well and this runs once per change.
            body = miniz_oxide::deflate::compress_to_vec_zlib(&body, 6);
        }

        let mut flags = (self.version & 0x07) << 5;
        if self.origin.is_ipv6() {
            flags |= FLAG_ADDRESS_V6;
        }
        if self.message_type == MessageType::Delete {
            flags |= FLAG_DELETE;
        }
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        let mut out = Vec::with_capacity(FIXED_HEADER_LEN + 16 + body.len());
        out.push(flags);
        out.push(0); // authentication length: we never sign
        out.extend_from_slice(&self.msg_id_hash.to_be_bytes());
        match self.origin {
            IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
            IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
        }
        out.extend_from_slice(&body);
        Ok(out)
    }
}

/// Parses one SAP packet (one UDP payload sent to port 9875); see the module docs for
/// what is accepted.
pub fn parse(data: &[u8]) -> Result<SapPacket, SapError> {
    let truncated = |expected: usize| SapError::Truncated {
        expected,
        actual: data.len(),
    };
    let (flags, auth_words, msg_id_hash) = match data.get(..FIXED_HEADER_LEN) {
        Some(&[flags, auth, h0, h1]) => (flags, auth, u16::from_be_bytes([h0, h1])),
        _ => return Err(truncated(FIXED_HEADER_LEN)),
    };
    let version = flags >> 5;
    if version > 1 {
        return Err(SapError::UnsupportedVersion { version });
    }
    let (origin, origin_end) = read_origin(data, flags & FLAG_ADDRESS_V6 != 0)?;
    let key = SapKey {
        origin,
        msg_id_hash,
    };
    if flags & FLAG_ENCRYPTED != 0 {
        return Err(SapError::Encrypted { key });
    }
    if version == 1 && msg_id_hash == 0 {
        return Err(SapError::ZeroHash { origin });
    }
    // RFC 2974 §5: the authentication length counts 32-bit words.
    let body_start = origin_end + 4 * usize::from(auth_words);
    let body = data.get(body_start..).ok_or(truncated(body_start))?;

    let compressed = flags & FLAG_COMPRESSED != 0;
    let inflated;
    let body = if compressed {
        inflated = inflate(body)?;
        inflated.as_slice()
    } else {
        body
    };
    let (payload_type, payload) = split_payload_type(body)?;
    if let Some(t) = payload_type.as_ref().filter(|t| !is_sdp_type(t)) {
        return Err(SapError::UnsupportedPayloadType(t.clone()));
    }
    Ok(SapPacket {
        version,
        message_type: if flags & FLAG_DELETE != 0 {
            MessageType::Delete
        } else {
            MessageType::Announce
        },
        origin,
        msg_id_hash,
        compressed,
        payload_type,
        payload: payload.to_vec(),
    })
}

/// Reads the originating source after the fixed header; returns it and where it ends.
fn read_origin(data: &[u8], v6: bool) -> Result<(IpAddr, usize), SapError> {
    let len = if v6 { 16 } else { 4 };
    let end = FIXED_HEADER_LEN + len;
    let bytes = data.get(FIXED_HEADER_LEN..end).ok_or(SapError::Truncated {
        expected: end,
        actual: data.len(),
    })?;
    let addr = if let Ok(b) = <[u8; 16]>::try_from(bytes) {
        IpAddr::V6(Ipv6Addr::from(b))
    } else if let Ok(b) = <[u8; 4]>::try_from(bytes) {
        IpAddr::V4(Ipv4Addr::from(b))
    } else {
        // Unreachable after the length check above; reported rather than panicking.
        return Err(SapError::Truncated {
            expected: end,
            actual: data.len(),
        });
    };
    Ok((addr, end))
}

fn inflate(body: &[u8]) -> Result<Vec<u8>, SapError> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(body, MAX_INFLATED_LEN)
        .map_err(|_| SapError::Decompress)
}

/// A payload that begins like SDP carries no payload type: `v=` opens an announcement,
/// `o=` a deletion that is only the origin line.
fn starts_as_sdp(body: &[u8]) -> bool {
    body.starts_with(b"v=") || body.starts_with(b"o=")
}

/// Splits the optional `type NUL` prefix off the payload.
fn split_payload_type(body: &[u8]) -> Result<(Option<String>, &[u8]), SapError> {
    if starts_as_sdp(body) {
        return Ok((None, body));
    }
    let Some(nul) = body.iter().position(|&b| b == 0) else {
        return Ok((None, body));
    };
    let (type_bytes, rest) = (body.get(..nul), body.get(nul + 1..));
    let (Some(type_bytes), Some(rest)) = (type_bytes, rest) else {
        return Err(SapError::InvalidPayloadType);
    };
    if type_bytes.is_empty()
        || !type_bytes
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ')
    {
        return Err(SapError::InvalidPayloadType);
    }
    let t = String::from_utf8(type_bytes.to_vec()).map_err(|_| SapError::InvalidPayloadType)?;
    Ok((Some(t), rest))
}

/// `application/sdp`, case-insensitively, with or without MIME parameters
/// (`application/sdp; charset=utf-8`).
fn is_sdp_type(t: &str) -> bool {
    let base = t.split(';').next().unwrap_or(t).trim();
    base.eq_ignore_ascii_case(SDP_MIME_TYPE)
}

fn payload_type_writable(t: &str) -> bool {
    !t.is_empty()
        && t.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
        && !starts_as_sdp(t.as_bytes())
}

/// The `o=` line of an SDP text, without its line end.
pub fn origin_line(sdp: &str) -> Option<&str> {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r').trim_start())
        .find(|l| l.starts_with("o="))
}

/// A stable, non-zero message-id hash for an SDP (RFC 2974 §5).
///
/// It is FNV-1a (32 bit) of the `o=` line folded to 16 bits, or of the whole text when
/// there is no `o=` line. Re-announcing the same description keeps the key; a new
/// session version (a new `o=` line) changes it, as RFC 2974 §5 asks, except for the
/// unavoidable 1 in 65535 collision. 0 is mapped to 1 since it means "no hash".
pub fn message_id_hash(sdp: &str) -> u16 {
    let text = origin_line(sdp).map(str::trim_end).unwrap_or(sdp);
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let folded = ((h >> 16) ^ (h & 0xffff)) as u16;
    if folded == 0 { 1 } else { folded }
}

/// Time until the next announcement (RFC 2974 §3).
///
/// `interval = max(base, 8 × total_ad_bytes / 4000 bit/s)`, where `total_ad_bytes` is
/// the size of all announcements in the scope (ours, plus others heard if the caller
/// tracks them), so the group never carries more than [`BANDWIDTH_LIMIT_BPS`]. The
/// result is then spread uniformly over `interval ± interval/3` with `random` in
/// `[0, 1)` (clamped), so announcers do not synchronise. RFC 2974 names 300 s as the
/// base ([`RFC_MIN_INTERVAL`]); AES67 devices announce every 30 s, hence the parameter.
pub fn announcement_interval(total_ad_bytes: usize, base: Duration, random: f64) -> Duration {
    let bits = (total_ad_bytes as u64).saturating_mul(8);
    let limited = Duration::from_millis(bits.saturating_mul(1000) / BANDWIDTH_LIMIT_BPS);
    let interval = base.max(limited);
    let r = if random.is_finite() {
        random.clamp(0.0, 1.0)
    } else {
        0.5
    };
    // offset in [-1/3, +1/3) of the interval
    let factor = 1.0 + (2.0 * r - 1.0) / 3.0;
    // Not `mul_f64`: it panics on overflow, and `base` comes from configuration.
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_respects_base_and_bandwidth() {
        let base = Duration::from_secs(30);
        assert_eq!(announcement_interval(500, base, 0.5), base);
        assert_eq!(
            announcement_interval(500, base, 0.0),
            Duration::from_secs(20)
        );
        // 100 ads of 500 bytes = 400 kbit -> 100 s at 4 kbit/s.
        assert_eq!(
            announcement_interval(50_000, base, 0.5),
            Duration::from_secs(100)
        );
        assert_eq!(
            announcement_interval(usize::MAX, Duration::MAX, 0.9),
            Duration::MAX
        );
        let hi = announcement_interval(500, base, 0.999_999);
        assert!(hi < Duration::from_secs(40) && hi > Duration::from_millis(39_999));
    }

    #[test]
    fn hash_is_stable_and_version_sensitive() {
        let a = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=x\r\n";
        let b = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=other name\r\n";
        let c = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=x\r\n";
        assert_eq!(message_id_hash(a), message_id_hash(b));
        assert_ne!(message_id_hash(a), message_id_hash(c));
        assert_ne!(message_id_hash(""), 0);
    }

    #[test]
    fn roundtrip_v6_compressed_delete() {
        let sdp = "v=0\r\no=- 7 3 IN IP6 ::1\r\ns=t\r\n";
        let mut p = SapPacket::delete("ff0e::1".parse().expect("addr"), sdp);
        p.compressed = true;
        let bytes = p.to_bytes().expect("encode");
        assert_eq!(bytes[0], 0x20 | 0x10 | 0x04 | 0x01);
        assert_eq!(parse(&bytes), Ok(p));
    }
}
