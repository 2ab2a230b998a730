//! RAVENNA discovery: RTSP to fetch and serve SDPs, mDNS/DNS-SD to find and announce them.
//!
//! A RAVENNA device announces each session it sends as a DNS-SD instance of `_rtsp._tcp`
//! (with the subtype `_ravenna_session`) whose instance name is the session name, and
//! serves that session's SDP over RTSP at `/by-name/<session name>` (and `/by-id/<n>`).
//! A receiver browses, then sends `DESCRIBE` to that path. This module holds:
//! - [`describe`]: the RTSP `DESCRIBE` client;
//! - [`RtspServer`]: a small RTSP server for our own sessions;
//! - [`RavennaBrowser`] and [`RavennaPublisher`]: mDNS browse and publish, with `mdns-sd`.
//!
//! RTSP framing is `estuary_wire::rtsp`; this module only moves bytes.

mod client;
pub(crate) mod mdns;
mod server;

pub use client::{describe, describe_addr};
pub use mdns::{
    MdnsOptions, RAVENNA_SESSION_SUBTYPE, RTSP_SERVICE, RavennaBrowser, RavennaEvent,
    RavennaPublisher, RavennaService, responder as mdns_responder,
};
pub use server::RtspServer;

use estuary_wire::rtsp::RtspError;

/// Why a RAVENNA discovery operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RavennaError {
    /// The target is not `rtsp://host[:port][/path]` or `host[:port]`.
    #[error("invalid RTSP target {target:?}")]
    InvalidTarget {
        /// What was given.
        target: String,
    },
    /// Connecting, reading or writing failed.
    #[error("RTSP I/O with {peer}: {source}")]
    Io {
        /// The peer, as given or resolved.
        peer: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The peer sent something that is not RTSP.
    #[error("RTSP from {peer}: {source}")]
    Protocol {
        /// The peer.
        peer: String,
        /// The framing error.
        #[source]
        source: RtspError,
    },
    /// The peer answered with a status other than 200.
    #[error("{peer} answered {status} {reason} to DESCRIBE {uri}")]
    Status {
        /// The peer.
        peer: String,
        /// Request-URI sent.
        uri: String,
        /// Status code received.
        status: u16,
        /// Reason phrase received.
        reason: String,
    },
    /// No complete answer before the deadline.
    #[error("no RTSP answer from {peer} within {timeout:?}")]
    Timeout {
        /// The peer.
        peer: String,
        /// The time allowed.
        timeout: std::time::Duration,
    },
    /// The peer closed the connection before answering.
    #[error("{peer} closed the RTSP connection before answering")]
    Closed {
        /// The peer.
        peer: String,
    },
    /// The answer's body is empty or not UTF-8 text.
    #[error("DESCRIBE answer from {peer} holds no SDP text")]
    NoSdp {
        /// The peer.
        peer: String,
    },
    /// The mDNS responder failed.
    #[error("mDNS: {0}")]
    Mdns(String),
}

/// The RTSP path of a session by name, percent-encoded (RFC 3986 §2.1): RAVENNA's
/// `/by-name/<session name>`, where names often hold spaces.
pub fn by_name_path(session_name: &str) -> String {
    let mut path = String::from("/by-name/");
    for b in session_name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            path.push(char::from(b));
        } else {
            path.push_str(&format!("%{b:02X}"));
        }
    }
    path
}

/// Decodes `%XX` escapes; invalid escapes stay as they are (lenient, as peers vary).
pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_name_path_round_trips_through_decode() {
        let p = by_name_path("Anubis Combo LR 100%/x");
        assert_eq!(p, "/by-name/Anubis%20Combo%20LR%20100%25%2Fx");
        assert_eq!(
            percent_decode(p.trim_start_matches("/by-name/")),
            "Anubis Combo LR 100%/x"
        );
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
}
