//! RTMP publishing (AAC-LC in FLV) to any RTMP server: nginx-rtmp, SRS, YouTube, Twitch...
//! `rtmps://` runs the same session over TLS (rustls, see [`crate::tls`]).
//!
//! `rml_rtmp` (sans-IO) does the handshake and the chunk stream; this module runs it over a
//! blocking `TcpStream` on the publisher's thread (see [`crate::icecast`], which owns the
//! queue, the reconnection and the status). The encoder produces an FLV byte stream (FFmpeg's
//! muxer); [`FlvReader`] cuts it into tags and each audio tag's body goes out as one RTMP
//! audio message with the tag's timestamp.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{
    ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult, PublishRequestType,
};
use rml_rtmp::time::RtmpTimestamp;

use estuary_wire::flv::{FlvReader, TAG_AUDIO};

use crate::tls::{Stream, TlsTrust};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to publish: `rtmp://host[:port]/app/key` or `rtmps://...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtmpConfig {
    pub host: String,
    pub port: u16,
    pub app: String,
    pub key: String,
    /// `rtmps://`: the session runs over TLS.
    pub tls: bool,
    pub trust: TlsTrust,
}

impl RtmpConfig {
    /// `rtmp://host[:1935]/app/stream-key` or `rtmps://host[:443]/...` (the key may hold
    /// further `/`).
    pub fn parse(url: &str) -> Result<Self, String> {
        let bad = || format!("{url:?} is not rtmp://host[:port]/app/stream-key (or rtmps://)");
        let (tls, rest) = match (url.strip_prefix("rtmp://"), url.strip_prefix("rtmps://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(bad()),
        };
        let (authority, path) = rest.split_once('/').ok_or_else(bad)?;
        let (app, key) = path.split_once('/').ok_or_else(bad)?;
        if app.is_empty() || key.is_empty() || url.chars().any(|c| c.is_control() || c == ' ') {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (authority, if tls { 443 } else { 1935 }),
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            app: app.to_owned(),
            key: key.to_owned(),
            tls,
            trust: TlsTrust::default(),
        })
    }

    fn tc_url(&self) -> String {
        let scheme = if self.tls { "rtmps" } else { "rtmp" };
        format!("{scheme}://{}:{}/{}", self.host, self.port, self.app)
    }
}

/// A publishing RTMP connection.
pub(crate) struct RtmpConn {
    tcp: Stream,
    session: ClientSession,
    flv: FlvReader,
}

fn session_error(e: impl std::fmt::Debug) -> io::Error {
    io::Error::other(format!("RTMP: {e:?}"))
}

impl RtmpConn {
    /// Connects, shakes hands, connects to the app and asks to publish the key (live).
    pub(crate) fn open(c: &RtmpConfig) -> io::Result<Self> {
        let addr = (c.host.as_str(), c.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} does not resolve", c.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut tcp = Stream::open(tcp, c.tls, &c.host, &c.trust)?;

        let mut handshake = Handshake::new(PeerType::Client);
        let c0c1 = handshake
            .generate_outbound_p0_and_p1()
            .map_err(session_error)?;
        tcp.write_all(&c0c1)?;
        let mut buf = vec![0; 8192];
        let remaining = loop {
            let n = tcp.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other(
                    "RTMP: the server closed during the handshake",
                ));
            }
            match handshake.process_bytes(&buf[..n]).map_err(session_error)? {
                HandshakeProcessResult::InProgress { response_bytes } => {
                    tcp.write_all(&response_bytes)?;
                }
                HandshakeProcessResult::Completed {
                    response_bytes,
                    remaining_bytes,
                } => {
                    tcp.write_all(&response_bytes)?;
                    break remaining_bytes;
                }
            }
        };

        let mut config = ClientSessionConfig::new();
        config.tc_url = Some(c.tc_url());
        let (session, results) = ClientSession::new(config).map_err(session_error)?;
        let mut conn = Self {
            tcp,
            session,
            flv: FlvReader::new(),
        };
        conn.perform(results)?;
        // Whatever came with the handshake's end (window size, bandwidth) needs no reaction.
        conn.input(&remaining)?;
        let request = conn
            .session
            .request_connection(c.app.clone())
            .map_err(session_error)?;
        let mut events = conn.perform(vec![request])?;
        conn.wait_for(&mut events, |e| match e {
            ClientSessionEvent::ConnectionRequestAccepted => Some(Ok(())),
            ClientSessionEvent::ConnectionRequestRejected { description } => {
                Some(Err(io::Error::other(format!(
                    "RTMP connect to app {:?} refused: {description}",
                    c.app
                ))))
            }
            _ => None,
        })?;
        let request = conn
            .session
            .request_publishing(c.key.clone(), PublishRequestType::Live)
            .map_err(session_error)?;
        let mut events = conn.perform(vec![request])?;
        conn.wait_for(&mut events, |e| match e {
            ClientSessionEvent::PublishRequestAccepted => Some(Ok(())),
            _ => None,
        })?;
        conn.tcp.tcp().set_read_timeout(None)?;
        Ok(conn)
    }

    /// Sends the outbound packets; returns the events raised.
    fn perform(
        &mut self,
        results: Vec<ClientSessionResult>,
    ) -> io::Result<Vec<ClientSessionEvent>> {
        let mut events = Vec::new();
        for result in results {
            match result {
                ClientSessionResult::OutboundResponse(packet) => {
                    self.tcp.write_all(&packet.bytes)?
                }
                ClientSessionResult::RaisedEvent(event) => events.push(event),
                ClientSessionResult::UnhandleableMessageReceived(_) => {}
            }
        }
        Ok(events)
    }

    fn input(&mut self, bytes: &[u8]) -> io::Result<Vec<ClientSessionEvent>> {
        if bytes.is_empty() {
            return Ok(Vec::new());
        }
        let results = self.session.handle_input(bytes).map_err(session_error)?;
        self.perform(results)
    }

    /// Reads until `check` settles on an event (within the connect timeout).
    fn wait_for(
        &mut self,
        events: &mut Vec<ClientSessionEvent>,
        check: impl Fn(&ClientSessionEvent) -> Option<io::Result<()>>,
    ) -> io::Result<()> {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut buf = vec![0; 8192];
        loop {
            for event in events.drain(..) {
                if let Some(done) = check(&event) {
                    return done;
                }
            }
            if Instant::now() > deadline {
                return Err(io::Error::other("RTMP: no answer from the server"));
            }
            let n = self.tcp.read(&mut buf)?;
            if n == 0 {
                return Err(io::Error::other("RTMP: the server closed the connection"));
            }
            let more = self.input(&buf[..n])?;
            events.extend(more);
        }
    }

    /// Publishes the audio tags of an FLV byte stream; answers what the server sent meanwhile
    /// (acknowledgements, pings), without waiting for it.
    pub(crate) fn write_flv(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.flv.push(bytes);
        while let Some(tag) = self.flv.next_tag().map_err(io::Error::other)? {
            if tag.kind != TAG_AUDIO {
                continue;
            }
            let result = self
                .session
                .publish_audio_data(tag.data.into(), RtmpTimestamp::new(tag.timestamp), false)
                .map_err(session_error)?;
            self.perform(vec![result])?;
        }
        self.poll_input()
    }

    fn poll_input(&mut self) -> io::Result<()> {
        let mut buf = [0; 4096];
        self.tcp.tcp().set_nonblocking(true)?;
        let result = loop {
            match self.tcp.read(&mut buf) {
                Ok(0) => break Err(io::Error::other("RTMP: the server closed the connection")),
                Ok(n) => {
                    let bytes = buf[..n].to_vec();
                    self.tcp.tcp().set_nonblocking(false)?;
                    let answered = self.input(&bytes);
                    self.tcp.tcp().set_nonblocking(true)?;
                    if let Err(e) = answered {
                        break Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        self.tcp.tcp().set_nonblocking(false)?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtmp_urls() {
        let c = RtmpConfig::parse("rtmp://127.0.0.1/live/studio").expect("url");
        assert_eq!(
            (c.port, c.app.as_str(), c.key.as_str()),
            (1935, "live", "studio")
        );
        assert_eq!(c.tc_url(), "rtmp://127.0.0.1:1935/live");
        let c = RtmpConfig::parse("rtmp://a.example:1936/app/key/with/slash").expect("url");
        assert_eq!(c.key, "key/with/slash");
        assert!(RtmpConfig::parse("rtmp://host/app").is_err());
        assert!(RtmpConfig::parse("http://host/app/key").is_err());
        let c = RtmpConfig::parse("rtmps://live.example/app/key").expect("url");
        assert_eq!((c.tls, c.port), (true, 443));
        assert_eq!(c.tc_url(), "rtmps://live.example:443/app");
    }
}
