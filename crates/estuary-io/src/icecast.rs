//! A publishing connection on its own thread: an Icecast 2 (and Shoutcast v2, which speaks
//! the same) source, or an RTMP publisher ([`crate::rtmp`]). Connect, authenticate, stream,
//! reconnect with exponential backoff and jitter.
//!
//! The source request is a plain HTTP/1.1 `PUT` with `Content-Type`, Basic auth and the
//! `Ice-*` headers, and the body is the raw stream: never chunked, because Icecast 2.4 does not
//! de-chunk a source body and chunk-size lines would reach the listeners.
//!
//! The encoder thread hands bytes over with [`Publisher::send`], which never blocks: a
//! bounded queue sits between the two, and what does not fit is dropped and counted. Each
//! connection has a generation number; the encoder starts a new stream (container header
//! first) when it sees a new one, and the writer throws away bytes of older generations.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use estuary_wire::http::{self, Parsed};

use crate::tls::{Stream, TlsTrust};

/// Chunks the queue holds; with the encoder's ~20-100 ms chunks, a few seconds of audio.
pub const QUEUE_CHUNKS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A write that cannot progress for this long means the server is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
/// Kept short so a source is back on air within about a second of the server returning.
const BACKOFF_MAX: Duration = Duration::from_millis(1500);

/// Where and how to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct IcecastConfig {
    pub host: String,
    pub port: u16,
    /// Starts with `/`.
    pub mount: String,
    pub tls: bool,
    /// Whom TLS trusts (`https://`).
    pub trust: TlsTrust,
    pub user: String,
    pub password: String,
    pub content_type: &'static str,
    /// `Ice-Name`, `Ice-Description`, `Ice-Genre`, `Ice-Url`.
    pub name: Option<String>,
    pub description: Option<String>,
    pub genre: Option<String>,
    pub url: Option<String>,
    pub public: bool,
    /// Nominal bitrate for `Ice-Audio-Info` / `Ice-Bitrate`, in kbit/s.
    pub bitrate_kbps: u32,
    /// Send title updates through `/admin/metadata` (MP3, AAC); Ogg carries them in-band.
    pub admin_metadata: bool,
}

/// Where a [`Publisher`] publishes.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishTarget {
    Icecast(IcecastConfig),
    Rtmp(crate::rtmp::RtmpConfig),
}

/// What the connection thread reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IcecastStatus {
    /// `connecting`, `connected`, `waiting` (backing off) or `stopped`.
    pub state: &'static str,
    pub connected: bool,
    pub bytes_sent: u64,
    pub connects: u64,
    /// Connections after the first.
    pub reconnects: u64,
    pub last_error: Option<String>,
    /// When `last_error` happened, and how many errors there were.
    pub last_error_at: Option<SystemTime>,
    pub errors: u64,
    /// Chunks the queue had no room for.
    pub chunks_dropped: u64,
    pub bytes_dropped: u64,
    /// Chunks waiting in the queue.
    pub queued: usize,
    /// Bits per second sent over the last few seconds.
    pub bitrate: u64,
    pub metadata_updates: u64,
    pub metadata_errors: u64,
}

struct Shared {
    status: Mutex<IcecastStatus>,
    generation: AtomicU64,
    stop: AtomicBool,
    title: Mutex<Option<String>>,
    title_changed: AtomicBool,
    /// Chunks in the queue (the std channel does not tell).
    queued: AtomicUsize,
}

/// A running source connection; dropping it disconnects and joins the thread.
pub struct Publisher {
    queue: SyncSender<(u64, Vec<u8>)>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Publisher {
    pub fn start(target: PublishTarget, name: &str) -> io::Result<Self> {
        let (queue, rx) = mpsc::sync_channel(QUEUE_CHUNKS);
        let shared = Arc::new(Shared {
            status: Mutex::new(IcecastStatus {
                state: "connecting",
                ..IcecastStatus::default()
            }),
            generation: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            title: Mutex::new(None),
            title_changed: AtomicBool::new(false),
            queued: AtomicUsize::new(0),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("ice-{name}"))
                .spawn(move || Connection::new(target, shared, rx).run())?
        };
        Ok(Self {
            queue,
            shared,
            thread: Some(thread),
        })
    }

    /// The current connection's generation; 0 before the first connection. Bytes are only
    /// worth encoding while connected, and a new generation needs a new stream header.
    pub fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }

    pub fn connected(&self) -> bool {
        lock(&self.shared.status).connected
    }

    /// Queues `bytes` of stream `generation`; never blocks. Full queue: dropped and counted.
    pub fn send(&self, generation: u64, bytes: Vec<u8>) {
        let len = bytes.len() as u64;
        match self.queue.try_send((generation, bytes)) {
            Ok(()) => {
                self.shared.queued.fetch_add(1, Ordering::AcqRel);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                let mut status = lock(&self.shared.status);
                status.chunks_dropped += 1;
                status.bytes_dropped += len;
            }
        }
    }

    /// Sets the title shown to listeners (MP3/AAC: through Icecast's admin interface, now and
    /// after every reconnection).
    pub fn set_title(&self, title: &str) {
        *lock(&self.shared.title) = Some(title.to_owned());
        self.shared.title_changed.store(true, Ordering::Release);
    }

    pub fn status(&self) -> IcecastStatus {
        lock(&self.shared.status).clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An open connection of either protocol.
enum Session {
    Icecast(Stream),
    Rtmp(Box<crate::rtmp::RtmpConn>),
}

impl Session {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Session::Icecast(stream) => stream.write_all(bytes),
            Session::Rtmp(rtmp) => rtmp.write_flv(bytes),
        }
    }
}

struct Connection {
    target: PublishTarget,
    shared: Arc<Shared>,
    rx: Receiver<(u64, Vec<u8>)>,
    /// Bytes sent in the current rate window.
    window: (Instant, u64),
}

impl Connection {
    fn new(target: PublishTarget, shared: Arc<Shared>, rx: Receiver<(u64, Vec<u8>)>) -> Self {
        Self {
            target,
            shared,
            rx,
            window: (Instant::now(), 0),
        }
    }

    fn stopping(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    fn status(&self) -> MutexGuard<'_, IcecastStatus> {
        lock(&self.shared.status)
    }

    fn run(mut self) {
        let mut backoff = BACKOFF_FIRST;
        let mut rng = Jitter::seeded();
        // The output's name, from the thread's; each new kind of failure is logged once (the
        // status keeps the latest), so a destination down for hours does not flood the log.
        let output = thread::current()
            .name()
            .and_then(|n| n.strip_prefix("ice-"))
            .unwrap_or("?")
            .to_owned();
        let mut logged: Option<String> = None;
        while !self.stopping() {
            self.status().state = "connecting";
            let result = self.open().and_then(|stream| {
                backoff = BACKOFF_FIRST;
                if logged.take().is_some() {
                    tracing::info!(output = %output, "publishing again");
                }
                self.stream(stream)
            });
            let mut status = self.status();
            status.connected = false;
            status.bitrate = 0;
            if let Err(e) = result {
                let error = e.to_string();
                if logged.as_deref() != Some(error.as_str()) {
                    tracing::warn!(output = %output, error = %error, "cannot publish; retrying with backoff");
                    logged = Some(error);
                }
                status.last_error = Some(e.to_string());
                status.last_error_at = Some(SystemTime::now());
                status.errors += 1;
            }
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            status.state = "waiting";
            drop(status);
            // Full jitter on ±25 %: many sources behind one server do not return in step.
            let wait = backoff.mul_f64(0.75 + 0.5 * rng.next());
            sleep_unless_stopped(&self.shared.stop, wait);
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
        self.status().state = "stopped";
    }

    fn open(&mut self) -> io::Result<Session> {
        let c = match &self.target {
            PublishTarget::Icecast(c) => c,
            PublishTarget::Rtmp(r) => {
                return crate::rtmp::RtmpConn::open(r).map(|conn| Session::Rtmp(Box::new(conn)));
            }
        };
        let addr = (c.host.as_str(), c.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| io::Error::other(format!("{} does not resolve", c.host)))?;
        let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        tcp.set_nodelay(true)?;
        tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
        tcp.set_write_timeout(Some(WRITE_TIMEOUT))?;
        let mut stream = Stream::open(tcp, c.tls, &c.host, &c.trust)?;
        stream.write_all(source_request(c).as_bytes())?;
        stream.flush()?;
        let (code, reason) = read_response_head(&mut stream)?;
        if code != 200 {
            return Err(io::Error::other(match code {
                401 => format!("{code} {reason}: user or password refused"),
                403 => format!("{code} {reason}: mount in use or not allowed"),
                _ => format!("{code} {reason}"),
            }));
        }
        Ok(Session::Icecast(stream))
    }

    /// Streams queued bytes until an error or the stop.
    fn stream(&mut self, mut stream: Session) -> io::Result<()> {
        let generation = self.shared.generation.fetch_add(1, Ordering::AcqRel) + 1;
        {
            let mut status = self.status();
            status.state = "connected";
            status.connected = true;
            status.connects += 1;
            status.reconnects = status.connects.saturating_sub(1);
            status.last_error = None;
        }
        // A title set before this connection is sent again: the new source has none.
        if lock(&self.shared.title).is_some() {
            self.shared.title_changed.store(true, Ordering::Release);
        }
        self.window = (Instant::now(), 0);
        while !self.stopping() {
            if self.shared.title_changed.swap(false, Ordering::AcqRel) {
                self.update_metadata();
            }
            let received = self.rx.recv_timeout(Duration::from_millis(100));
            if received.is_ok() {
                self.shared.queued.fetch_sub(1, Ordering::AcqRel);
            }
            match received {
                Ok((g, bytes)) if g == generation => {
                    stream.write(&bytes)?;
                    self.count(bytes.len() as u64);
                }
                // Bytes of an earlier connection's stream: the encoder has started afresh.
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => self.count(0),
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
        Ok(())
    }

    fn count(&mut self, bytes: u64) {
        self.window.1 += bytes;
        let elapsed = self.window.0.elapsed();
        let queued = self.shared.queued.load(Ordering::Acquire);
        let mut status = lock(&self.shared.status);
        status.bytes_sent += bytes;
        status.queued = queued;
        if elapsed >= Duration::from_secs(2) {
            status.bitrate = (self.window.1 as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            self.window = (Instant::now(), 0);
        }
    }

    fn update_metadata(&mut self) {
        let PublishTarget::Icecast(config) = &self.target else {
            return;
        };
        if !config.admin_metadata {
            return;
        }
        let Some(title) = lock(&self.shared.title).clone() else {
            return;
        };
        let result = admin_metadata(config, &title);
        let mut status = self.status();
        match result {
            Ok(()) => status.metadata_updates += 1,
            Err(e) => {
                status.metadata_errors += 1;
                status.last_error = Some(format!("metadata update: {e}"));
                status.last_error_at = Some(SystemTime::now());
                status.errors += 1;
            }
        }
    }
}

fn sleep_unless_stopped(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Acquire) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        thread::sleep(left.min(Duration::from_millis(50)));
    }
}

fn basic_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Header values come from the config; a line break in one would start a new header.
fn header_value(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).collect()
}

/// The source request head (Icecast 2.4.0+ `PUT`; the body follows on the same connection).
pub fn source_request(c: &IcecastConfig) -> String {
    let mut head = format!(
        "PUT {mount} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n\
         User-Agent: Estuary/{version}\r\nContent-Type: {ctype}\r\nIce-Public: {public}\r\n\
         Ice-Bitrate: {kbps}\r\nIce-Audio-Info: bitrate={kbps}\r\n",
        mount = header_value(&c.mount),
        host = header_value(&c.host),
        port = c.port,
        auth = basic_auth(&c.user, &c.password),
        version = env!("CARGO_PKG_VERSION"),
        ctype = c.content_type,
        public = u8::from(c.public),
        kbps = c.bitrate_kbps,
    );
    for (name, value) in [
        ("Ice-Name", &c.name),
        ("Ice-Description", &c.description),
        ("Ice-Genre", &c.genre),
        ("Ice-Url", &c.url),
    ] {
        if let Some(v) = value {
            head.push_str(&format!("{name}: {}\r\n", header_value(v)));
        }
    }
    head.push_str("\r\n");
    head
}

/// Reads a response head (parsed by `estuary_wire::http`); skips interim `1xx` answers. (No
/// `Expect` is sent: Icecast 2.4 answers it with `100 Continue` only, never the final status.)
fn read_response_head(stream: &mut impl Read) -> io::Result<(u16, String)> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0; 512];
    loop {
        match http::parse_response(&head).map_err(io::Error::other)? {
            Parsed::Complete { head: r, len } if r.is_interim() => {
                head.drain(..len);
                continue;
            }
            Parsed::Complete { head: r, .. } => return Ok((r.code, r.reason)),
            Parsed::Partial => {}
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        head.extend_from_slice(&buf[..n]);
    }
}

/// `GET /admin/metadata?mode=updinfo`: Icecast's title update for MP3 and AAC mounts, with the
/// source's own credentials.
fn admin_metadata(c: &IcecastConfig, title: &str) -> io::Result<()> {
    let addr = (c.host.as_str(), c.port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{} does not resolve", c.host)))?;
    let tcp = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
    tcp.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    tcp.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    let mut stream = Stream::open(tcp, c.tls, &c.host, &c.trust)?;
    let request = format!(
        "GET /admin/metadata?mount={mount}&mode=updinfo&song={song}&charset=UTF-8 HTTP/1.0\r\n\
         Host: {host}:{port}\r\nAuthorization: Basic {auth}\r\nUser-Agent: Estuary/{version}\r\n\r\n",
        mount = percent_encode(&c.mount),
        song = percent_encode(title),
        host = header_value(&c.host),
        port = c.port,
        auth = basic_auth(&c.user, &c.password),
        version = env!("CARGO_PKG_VERSION"),
    );
    stream.write_all(request.as_bytes())?;
    let (code, reason) = read_response_head(&mut stream)?;
    if code == 200 {
        Ok(())
    } else {
        Err(io::Error::other(format!("{code} {reason}")))
    }
}

/// RFC 3986 §2.1 for a query value: everything but unreserved characters is escaped.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A small xorshift for backoff jitter, seeded from the clock: nothing here needs quality.
struct Jitter(u64);

impl Jitter {
    fn seeded() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.subsec_nanos());
        Self(u64::from(nanos) | 1)
    }

    /// Uniform in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> IcecastConfig {
        IcecastConfig {
            host: "127.0.0.1".into(),
            port: 8000,
            mount: "/live".into(),
            tls: false,
            trust: TlsTrust::default(),
            user: "source".into(),
            password: "hackme".into(),
            content_type: "audio/mpeg",
            name: Some("Studio\r\nX-Evil: 1".into()),
            description: None,
            genre: Some("News".into()),
            url: None,
            public: false,
            bitrate_kbps: 128,
            admin_metadata: true,
        }
    }

    #[test]
    fn source_request_is_a_plain_put_with_ice_headers() {
        let head = source_request(&config());
        assert!(head.starts_with("PUT /live HTTP/1.1\r\n"));
        assert!(head.contains("Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n"));
        assert!(head.contains("Content-Type: audio/mpeg\r\n"));
        assert!(head.contains("Ice-Genre: News\r\n"));
        assert!(head.contains("Ice-Name: StudioX-Evil: 1\r\n"));
        assert!(!head.to_ascii_lowercase().contains("transfer-encoding"));
        assert!(head.ends_with("\r\n\r\n"));
    }

    #[test]
    fn titles_are_percent_encoded() {
        assert_eq!(percent_encode("A & B/ü"), "A%20%26%20B/%C3%BC");
    }
}
