//! RTSP `DESCRIBE` client (RFC 2326 §10.2): fetch one session's SDP.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use estuary_wire::rtsp::{RtspMessage, RtspParser};

use super::RavennaError;

/// RTSP's registered port (RFC 2326 §3.2), used when a target names none.
const DEFAULT_RTSP_PORT: u16 = 554;
/// CSeq of our one request. Answers with other CSeqs are skipped: a Lawo mic8 sends an
/// extra empty response before the DESCRIBE answer.
const DESCRIBE_CSEQ: u32 = 1;

/// Fetches an SDP with `DESCRIBE`.
///
/// `target` is `rtsp://host[:port][/path]`, `host:port` or `host` (port 554). `path`, when
/// not empty, replaces the URL's path (e.g. [`super::by_name_path`]); it is sent as given,
/// except that bytes never valid in a URI (space, controls, non-ASCII) are %-encoded.
/// `timeout` bounds the whole exchange, connection included.
///
/// # Errors
/// A bad target, no connection, a non-RTSP or non-200 answer, no answer in time, or a
/// body that is not SDP text.
pub fn describe(target: &str, path: &str, timeout: Duration) -> Result<String, RavennaError> {
    let (host, port, url_path) = split_target(target)?;
    let path = if path.is_empty() { url_path } else { path };
    let invalid = || RavennaError::InvalidTarget {
        target: target.to_owned(),
    };
    let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
        .to_socket_addrs()
        .map_err(|source| RavennaError::Io {
            peer: target.to_owned(),
            source,
        })?
        .next()
        .ok_or_else(invalid)?;
    describe_addr(addr, path, timeout)
}

/// [`describe`] for an address already known (e.g. from [`super::RavennaBrowser`]).
///
/// # Errors
/// As [`describe`].
pub fn describe_addr(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<String, RavennaError> {
    let deadline = Instant::now() + timeout;
    let peer = addr.to_string();
    let io_err = |source| RavennaError::Io {
        peer: peer.clone(),
        source,
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io_err)?;
    stream.set_nodelay(true).map_err(io_err)?;
    let uri = format!("rtsp://{addr}{}", encode_path(path));
    let request = RtspMessage::request("DESCRIBE", uri.clone())
        .with_header("CSeq", DESCRIBE_CSEQ.to_string())
        .with_header("Accept", "application/sdp")
        .with_header("User-Agent", concat!("Estuary/", env!("CARGO_PKG_VERSION")));
    // Our own request: only a bug could make it unwritable.
    let bytes = request
        .to_bytes()
        .map_err(|e| RavennaError::InvalidTarget {
            target: format!("{uri} ({e})"),
        })?;
    stream.write_all(&bytes).map_err(io_err)?;
    let answer = read_answer(&mut stream, &peer, deadline, timeout)?;
    match answer.status() {
        Some(200) => {}
        status => {
            let reason = match &answer.start {
                estuary_wire::rtsp::StartLine::Response { reason, .. } => reason.clone(),
                estuary_wire::rtsp::StartLine::Request { .. } => String::new(),
            };
            return Err(RavennaError::Status {
                peer,
                uri,
                status: status.unwrap_or(0),
                reason,
            });
        }
    }
    match String::from_utf8(answer.body) {
        Ok(sdp) if !sdp.trim().is_empty() => Ok(sdp),
        _ => Err(RavennaError::NoSdp { peer }),
    }
}

/// Reads until the response carrying our CSeq is complete. Other responses and any
/// request the server pushes (an Anubis sends ANNOUNCE) are skipped.
fn read_answer(
    stream: &mut TcpStream,
    peer: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<RtspMessage, RavennaError> {
    let mut parser = RtspParser::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(m) = parser
            .next_message()
            .map_err(|source| RavennaError::Protocol {
                peer: peer.to_owned(),
                source,
            })?
        {
            if m.status().is_some() && m.cseq() == Some(DESCRIBE_CSEQ) {
                return Ok(m);
            }
            tracing::debug!(peer, start = ?m.start, "skipping RTSP message not ours");
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(RavennaError::Timeout {
                peer: peer.to_owned(),
                timeout,
            });
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|source| RavennaError::Io {
                peer: peer.to_owned(),
                source,
            })?;
        match stream.read(&mut buf) {
            Ok(0) => {
                return Err(RavennaError::Closed {
                    peer: peer.to_owned(),
                });
            }
            Ok(n) => parser.push(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(RavennaError::Timeout {
                    peer: peer.to_owned(),
                    timeout,
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => {
                return Err(RavennaError::Io {
                    peer: peer.to_owned(),
                    source,
                });
            }
        }
    }
}

/// Splits `rtsp://host[:port][/path]`, `host:port`, `[v6]:port` or `host`.
fn split_target(target: &str) -> Result<(&str, u16, &str), RavennaError> {
    let invalid = || RavennaError::InvalidTarget {
        target: target.to_owned(),
    };
    let rest = target
        .strip_prefix("rtsp://")
        .or_else(|| target.strip_prefix("RTSP://"))
        .unwrap_or(target);
    let (authority, path) = match rest.find('/') {
        Some(i) => (
            rest.get(..i).ok_or_else(invalid)?,
            rest.get(i..).unwrap_or(""),
        ),
        None => (rest, ""),
    };
    // The port separator is the last colon, unless it sits inside an IPv6 literal.
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority.get(i..).unwrap_or("").contains(']') => {
            let port = authority
                .get(i + 1..)
                .and_then(|p| p.parse().ok())
                .ok_or_else(invalid)?;
            (authority.get(..i).unwrap_or(""), port)
        }
        _ => (authority, DEFAULT_RTSP_PORT),
    };
    if host.is_empty() {
        return Err(invalid());
    }
    Ok((host, port, path))
}

/// %-encodes what may never appear in a URI, keeping existing escapes.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if !path.starts_with('/') {
        out.push('/');
    }
    for b in path.bytes() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split() {
        assert_eq!(
            split_target("rtsp://10.0.0.1:8554/by-name/a").ok(),
            Some(("10.0.0.1", 8554, "/by-name/a"))
        );
        assert_eq!(split_target("dev.local").ok(), Some(("dev.local", 554, "")));
        assert_eq!(
            split_target("[fd00::1]:9000").ok(),
            Some(("[fd00::1]", 9000, ""))
        );
        assert_eq!(split_target("[fd00::1]").ok(), Some(("[fd00::1]", 554, "")));
        assert!(split_target("rtsp://:80/x").is_err());
        assert!(split_target("h:notaport").is_err());
    }

    #[test]
    fn paths_encode_only_what_is_invalid() {
        assert_eq!(encode_path("/by-name/a b%20c"), "/by-name/a%20b%20c");
        assert_eq!(encode_path("by-id/1"), "/by-id/1");
        assert_eq!(encode_path(""), "/");
    }
}
