//! A small RTSP server for our own sessions, as a RAVENNA device runs one.
//!
//! It answers OPTIONS, DESCRIBE (`/by-name/<name>`, `/by-id/<n>`), and just enough of
//! SETUP/PLAY/TEARDOWN for generic RTSP clients such as FFmpeg: RAVENNA streams are
//! multicast and already flowing, so SETUP only tells the client the group and port from
//! the SDP (RFC 2326 §12.39 `multicast;destination=..;port=..;ttl=..`) and PLAY starts
//! nothing.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use estuary_wire::rtsp::{RtspMessage, RtspParser};
use estuary_wire::sdp;

use super::{by_name_path, percent_decode};
use crate::batch::wait_readable;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 32;
/// Methods we answer (RFC 2326 §10.1 `Public`).
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";
/// RTSP session timeout we announce (§12.37); we keep no per-session state that expires.
const SESSION_TIMEOUT_S: u32 = 60;

#[derive(Debug, Default)]
struct Sessions {
    by_name: BTreeMap<String, Entry>,
    next_id: u32,
}

#[derive(Debug, Clone)]
struct Entry {
    id: u32,
    sdp: String,
}

impl Sessions {
    fn lookup(&self, path: &str) -> Option<(&str, &Entry)> {
        let path = path.trim_end_matches('/');
        if let Some(name) = path.strip_prefix("/by-name/") {
            let name = percent_decode(name);
            return self
                .by_name
                .get_key_value(&name)
                .map(|(k, e)| (k.as_str(), e));
        }
        let id: u32 = path.strip_prefix("/by-id/")?.parse().ok()?;
        self.by_name
            .iter()
            .find(|(_, e)| e.id == id)
            .map(|(k, e)| (k.as_str(), e))
    }
}

/// An RTSP server on its own thread, serving SDPs by session name; stops on drop.
#[derive(Debug)]
pub struct RtspServer {
    local_addr: SocketAddr,
    sessions: Arc<Mutex<Sessions>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtspServer {
    /// Listens on `addr` (port 0 picks a free one) and starts serving.
    ///
    /// # Errors
    /// The address cannot be bound, or the thread cannot start.
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr)?;
        let local_addr = listener.local_addr()?;
        let sessions = Arc::new(Mutex::new(Sessions {
            next_id: 1,
            ..Sessions::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&sessions), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("rtsp-server".into())
            .spawn(move || accept_loop(&listener, &s, &st))?;
        Ok(Self {
            local_addr,
            sessions,
            stop,
            thread: Some(thread),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Adds a session, or replaces its SDP; returns its `/by-id/` number, which stays
    /// the same across updates.
    pub fn set_session(&self, name: &str, sdp: &str) -> u32 {
        let mut s = lock(&self.sessions);
        if let Some(e) = s.by_name.get_mut(name) {
            e.sdp = sdp.to_owned();
            return e.id;
        }
        let id = s.next_id;
        s.next_id = s.next_id.wrapping_add(1).max(1);
        s.by_name.insert(
            name.to_owned(),
            Entry {
                id,
                sdp: sdp.to_owned(),
            },
        );
        id
    }

    /// Removes a session; true if it was there.
    pub fn remove_session(&self, name: &str) -> bool {
        lock(&self.sessions).by_name.remove(name).is_some()
    }

    /// Names of the sessions served.
    pub fn session_names(&self) -> Vec<String> {
        lock(&self.sessions).by_name.keys().cloned().collect()
    }

    /// `rtsp://<local addr>/by-name/<name>`, %-encoded.
    pub fn url(&self, name: &str) -> String {
        format!("rtsp://{}{}", self.local_addr, by_name_path(name))
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A poisoned lock only means another thread panicked mid-update of a map of strings;
/// the map is still consistent enough to serve.
fn lock(m: &Mutex<Sessions>) -> MutexGuard<'_, Sessions> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn accept_loop(listener: &TcpListener, sessions: &Arc<Mutex<Sessions>>, stop: &Arc<AtomicBool>) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        workers.retain(|w| !w.is_finished());
        if workers.len() >= MAX_CONNECTIONS {
            std::thread::sleep(POLL);
            continue;
        }
        match wait_readable(listener.as_raw_fd(), POLL) {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("RTSP server poll: {e}");
                std::thread::sleep(POLL);
                continue;
            }
        }
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                tracing::debug!("RTSP accept: {e}");
                continue;
            }
        };
        let (s, st) = (Arc::clone(sessions), Arc::clone(stop));
        let spawned = std::thread::Builder::new()
            .name("rtsp-conn".into())
            .spawn(move || {
                if let Err(e) = serve_connection(stream, &s, &st) {
                    tracing::debug!(%peer, "RTSP connection ended: {e}");
                }
            });
        match spawned {
            Ok(w) => workers.push(w),
            Err(e) => tracing::warn!("cannot start RTSP connection thread: {e}"),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Distinct RTSP session ids across connections (§12.37 only asks for uniqueness).
static NEXT_RTSP_SESSION: AtomicU64 = AtomicU64::new(1);

fn serve_connection(
    mut stream: TcpStream,
    sessions: &Mutex<Sessions>,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(POLL))?;
    stream.set_nodelay(true)?;
    let rtsp_session = format!(
        "{:08X}",
        NEXT_RTSP_SESSION.fetch_add(1, Ordering::Relaxed) ^ u64::from(std::process::id())
    );
    let mut parser = RtspParser::new();
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => parser.push(buf.get(..n).unwrap_or_default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        loop {
            let request = match parser.next_message() {
                Ok(Some(m)) => m,
                Ok(None) => break,
                Err(e) => {
                    // Framing is lost: answer once and close (§11.1 400).
                    let bad = RtspMessage::response(400, "Bad Request");
                    let _ = stream.write_all(&bad.to_bytes().unwrap_or_default());
                    return Err(std::io::Error::other(e));
                }
            };
            if request.method().is_none() {
                continue; // A response from the client: nothing to answer.
            }
            let response = respond(&request, &lock(sessions), &rtsp_session);
            let bytes = response
                .to_bytes()
                .or_else(|_| RtspMessage::response(500, "Internal Server Error").to_bytes())
                .unwrap_or_default();
            stream.write_all(&bytes)?;
        }
    }
    Ok(())
}

/// The answer to one request. Pure, so it is tested without sockets.
fn respond(req: &RtspMessage, sessions: &Sessions, rtsp_session: &str) -> RtspMessage {
    let method = req.method().unwrap_or_default();
    let uri = req.uri().unwrap_or_default();
    let path = uri_path(uri);
    let mut resp = match method {
        "OPTIONS" => RtspMessage::response(200, "OK").with_header("Public", PUBLIC),
        "DESCRIBE" => describe_response(uri, &path, sessions),
        "SETUP" => setup_response(req, &path, sessions, rtsp_session),
        "PLAY" => RtspMessage::response(200, "OK")
            .with_header("Session", rtsp_session)
            .with_header("Range", "npt=0.000-"),
        "PAUSE" | "TEARDOWN" | "GET_PARAMETER" | "SET_PARAMETER" => {
            RtspMessage::response(200, "OK").with_header("Session", rtsp_session)
        }
        _ => RtspMessage::response(501, "Not Implemented").with_header("Public", PUBLIC),
    };
    // §12.17: every response repeats the request's CSeq.
    if let Some(cseq) = req.header("CSeq") {
        resp.headers.set("CSeq", cseq.trim());
    }
    resp.headers
        .append("Server", concat!("Estuary/", env!("CARGO_PKG_VERSION")));
    resp
}

fn describe_response(uri: &str, path: &str, sessions: &Sessions) -> RtspMessage {
    let Some((_, entry)) = sessions.lookup(path) else {
        return RtspMessage::response(404, "Not Found");
    };
    // §C.1.1: relative control URLs in the SDP resolve against Content-Base.
    let base = if uri.ends_with('/') {
        uri.to_owned()
    } else {
        format!("{uri}/")
    };
    RtspMessage::response(200, "OK")
        .with_header("Content-Base", base)
        .with_header("Content-Type", "application/sdp")
        .with_body(entry.sdp.clone().into_bytes())
}

/// SETUP names the session path, possibly followed by a control suffix such as
/// `trackID=1` / `streamid=1` that picks the m= line. We only offer the stream's own
/// multicast group: a client asking for unicast or interleaved TCP gets 461 (§11.4.16),
/// and FFmpeg then retries with multicast (it rejects an answer whose lower transport
/// differs from what it asked for).
fn setup_response(
    req: &RtspMessage,
    path: &str,
    sessions: &Sessions,
    rtsp_session: &str,
) -> RtspMessage {
    let wants_multicast = req.header("Transport").is_some_and(|t| {
        t.split(',')
            .any(|spec| spec.split(';').any(|p| p.trim() == "multicast"))
    });
    if !wants_multicast {
        return RtspMessage::response(461, "Unsupported Transport");
    }
    let trimmed = path.trim_end_matches('/');
    let (entry, index) = match sessions.lookup(trimmed) {
        Some((_, e)) => (e, 0),
        None => {
            let (parent, last) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
            let index = last
                .rsplit_once('=')
                .and_then(|(_, n)| n.parse::<usize>().ok())
                .unwrap_or(0);
            match sessions.lookup(parent) {
                Some((_, e)) => (e, index),
                None => return RtspMessage::response(404, "Not Found"),
            }
        }
    };
    match multicast_transport(&entry.sdp, index) {
        Some(transport) => RtspMessage::response(200, "OK")
            .with_header("Transport", transport)
            .with_header(
                "Session",
                format!("{rtsp_session};timeout={SESSION_TIMEOUT_S}"),
            ),
        None => RtspMessage::response(461, "Unsupported Transport"),
    }
}

/// `RTP/AVP;multicast;destination=G;port=P-P+1;ttl=T` for stream `index` of the SDP, when
/// it is a multicast stream (§12.39).
fn multicast_transport(sdp_text: &str, index: usize) -> Option<String> {
    let session = sdp::parse(sdp_text).ok()?;
    let stream = session.streams.get(index)?;
    let conn = stream.connection.as_ref()?;
    if !conn.address.is_multicast() {
        return None;
    }
    let rtcp = stream.port.checked_add(1)?;
    let mut t = format!(
        "RTP/AVP;multicast;destination={};port={}-{rtcp}",
        conn.address, stream.port
    );
    if let (IpAddr::V4(_), Some(ttl)) = (conn.address, conn.ttl) {
        t.push_str(&format!(";ttl={ttl}"));
    }
    Some(t)
}

/// The path of an absolute `rtsp://host/path` URI, or the URI itself when it is a path;
/// `*` and empty URIs have none.
fn uri_path(uri: &str) -> String {
    let rest = uri
        .strip_prefix("rtsp://")
        .or_else(|| uri.strip_prefix("RTSP://"));
    let path = match rest {
        Some(r) => r.find('/').and_then(|i| r.get(i..)).unwrap_or(""),
        None => uri,
    };
    // Query strings carry nothing for us.
    path.split('?').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDP: &str = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=a b\r\nt=0 0\r\n\
        m=audio 5004 RTP/AVP 98\r\nc=IN IP4 239.69.1.1/32\r\na=rtpmap:98 L24/48000/2\r\n";

    fn sessions() -> Sessions {
        let mut s = Sessions {
            next_id: 8,
            ..Sessions::default()
        };
        s.by_name.insert(
            "a b".into(),
            Entry {
                id: 7,
                sdp: SDP.into(),
            },
        );
        s
    }

    #[test]
    fn describe_by_name_and_id() {
        let s = sessions();
        for uri in ["rtsp://h:1/by-name/a%20b", "rtsp://h:1/by-id/7"] {
            let req = RtspMessage::request("DESCRIBE", uri).with_header("cseq", "9");
            let r = respond(&req, &s, "S");
            assert_eq!(r.status(), Some(200), "{uri}");
            assert_eq!(r.cseq(), Some(9));
            assert_eq!(r.header("Content-Type"), Some("application/sdp"));
            assert_eq!(r.header("Content-Base"), Some(format!("{uri}/").as_str()));
            assert_eq!(r.body, SDP.as_bytes());
        }
        let req = RtspMessage::request("DESCRIBE", "rtsp://h/by-name/x").with_header("CSeq", "1");
        assert_eq!(respond(&req, &s, "S").status(), Some(404));
    }

    #[test]
    fn setup_answers_the_sdp_multicast_group() {
        let req = RtspMessage::request("SETUP", "rtsp://h/by-name/a%20b/trackID=0")
            .with_header("CSeq", "3")
            .with_header("Transport", "RTP/AVP/UDP;unicast;client_port=5000-5001");
        assert_eq!(respond(&req, &sessions(), "S1").status(), Some(461));
        let mut req = req;
        req.headers.set("Transport", "RTP/AVP/UDP;multicast");
        let r = respond(&req, &sessions(), "S1");
        assert_eq!(r.status(), Some(200));
        assert_eq!(
            r.header("Transport"),
            Some("RTP/AVP;multicast;destination=239.69.1.1;port=5004-5005;ttl=32")
        );
        assert_eq!(r.header("Session"), Some("S1;timeout=60"));
    }
}
