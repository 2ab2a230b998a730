//! HTTP listen-in: Estuary serves one output's compressed stream (MP3, AAC, Ogg) at a path, to
//! a bounded number of listeners, on its own listener.
//!
//! One accept thread; one thread per listener, fed by a bounded queue. The encoder thread
//! broadcasts with [`HttpListen::send`], which never blocks: a listener whose queue is full
//! misses that chunk (counted) and is disconnected after [`MAX_MISSED`] in a row, so a slow
//! listener costs neither the encoder nor the others anything. A new Ogg listener first gets
//! the stream's header pages, kept from the last stream start.
//!
//! Access: loopback clients are always served; others only with the output's token
//! (`?token=` or `Authorization: Bearer`), and never when there is no token.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use estuary_wire::http::{self, ListenRequest, Parsed};

/// Chunks queued per listener (each ~20-100 ms of audio).
const LISTENER_QUEUE: usize = 64;
/// Chunks a listener may miss in a row before it is disconnected.
pub const MAX_MISSED: u32 = 32;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpListenConfig {
    pub bind: SocketAddr,
    pub path: String,
    pub content_type: &'static str,
    pub max_listeners: usize,
    pub token: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpListenStatus {
    pub listeners: usize,
    /// Listeners served since the start.
    pub served: u64,
    /// Requests refused: wrong path (404), no or wrong token (403), full (503).
    pub refused: u64,
    pub bytes_sent: u64,
    /// The stream's bitrate, bit/s: what the encoder produced over the last [`RATE_WINDOW`],
    /// with or without listeners.
    pub bitrate: u64,
    /// Chunks a listener's queue had no room for.
    pub chunks_dropped: u64,
    /// Listeners disconnected for falling behind.
    pub slow_disconnects: u64,
    pub last_error: Option<String>,
    /// When `last_error` happened, and how many errors there were.
    pub last_error_at: Option<SystemTime>,
    pub errors: u64,
}

struct Listener {
    queue: SyncSender<Arc<[u8]>>,
    missed: u32,
    gone: Arc<AtomicBool>,
}

struct Shared {
    config: HttpListenConfig,
    listeners: Mutex<Vec<Listener>>,
    /// The current stream's header (Ogg: the BOS and comment pages).
    header: Mutex<Arc<[u8]>>,
    status: Mutex<HttpListenStatus>,
    /// Start of the current bitrate window and the bytes produced in it.
    rate_window: Mutex<(Instant, u64)>,
    stop: AtomicBool,
}

/// The window over which the stream's bitrate is measured.
pub const RATE_WINDOW: Duration = Duration::from_secs(2);

/// A running listen-in server; dropping it closes every connection.
pub struct HttpListen {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
    local: SocketAddr,
}

impl std::fmt::Debug for HttpListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListen")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl HttpListen {
    pub fn start(config: HttpListenConfig, name: &str) -> io::Result<Self> {
        let socket = TcpListener::bind(config.bind)?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        let shared = Arc::new(Shared {
            config,
            listeners: Mutex::new(Vec::new()),
            header: Mutex::new(Arc::from(Vec::new())),
            status: Mutex::default(),
            rate_window: Mutex::new((Instant::now(), 0)),
            stop: AtomicBool::new(false),
        });
        let accept = {
            let shared = Arc::clone(&shared);
            thread::Builder::new()
                .name(format!("http-{name}"))
                .spawn(move || accept_loop(&socket, &shared))?
        };
        Ok(Self {
            shared,
            accept: Some(accept),
            local,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// A new stream starts: its header goes to every listener now and to each new one first.
    pub fn send_header(&self, bytes: Vec<u8>) {
        let bytes: Arc<[u8]> = Arc::from(bytes);
        *lock(&self.shared.header) = Arc::clone(&bytes);
        self.broadcast(bytes);
    }

    /// Sends a chunk to every listener; never blocks.
    pub fn send(&self, bytes: Vec<u8>) {
        self.count(bytes.len() as u64);
        self.broadcast(Arc::from(bytes));
    }

    /// Counts a chunk into the bitrate window; a chunk arriving after the window closed
    /// starts the next one, so each window holds what was produced during it.
    fn count(&self, bytes: u64) {
        let mut window = lock(&self.shared.rate_window);
        let elapsed = window.0.elapsed();
        if elapsed >= RATE_WINDOW {
            lock(&self.shared.status).bitrate =
                (window.1 as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            *window = (Instant::now(), 0);
        }
        window.1 += bytes;
    }

    fn broadcast(&self, bytes: Arc<[u8]>) {
        let mut dropped = 0;
        let mut slow = 0;
        {
            let mut listeners = lock(&self.shared.listeners);
            listeners.retain_mut(|l| {
                if l.gone.load(Ordering::Acquire) {
                    return false;
                }
                match l.queue.try_send(Arc::clone(&bytes)) {
                    Ok(()) => {
                        l.missed = 0;
                        true
                    }
                    Err(TrySendError::Full(_)) => {
                        dropped += 1;
                        l.missed += 1;
                        if l.missed >= MAX_MISSED {
                            slow += 1;
                            l.gone.store(true, Ordering::Release);
                            return false;
                        }
                        true
                    }
                    Err(TrySendError::Disconnected(_)) => false,
                }
            });
        }
        if dropped > 0 || slow > 0 {
            let mut status = lock(&self.shared.status);
            status.chunks_dropped += dropped;
            status.slow_disconnects += slow;
        }
    }

    pub fn status(&self) -> HttpListenStatus {
        let mut status = lock(&self.shared.status).clone();
        status.listeners = lock(&self.shared.listeners).len();
        status
    }
}

impl Drop for HttpListen {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        lock(&self.shared.listeners).clear();
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(socket: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::Acquire) {
        match socket.accept() {
            Ok((stream, peer)) => {
                let for_thread = Arc::clone(shared);
                // The request is read on the listener's own thread: a client that never sends
                // one holds up nobody.
                let spawned = thread::Builder::new()
                    .name("http-listener".into())
                    .spawn(move || serve(stream, peer, &for_thread));
                if let Err(e) = spawned {
                    failed(shared, format!("listener thread: {e}"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50));
            }
            Err(e) => {
                failed(shared, format!("accept: {e}"));
                thread::sleep(Duration::from_millis(200));
            }
        }
    }
}

fn failed(shared: &Shared, error: String) {
    let mut status = lock(&shared.status);
    status.last_error = Some(error);
    status.last_error_at = Some(SystemTime::now());
    status.errors += 1;
}

/// Reads the request head (bounded; parsed by `estuary_wire::http`).
fn read_request(stream: &mut TcpStream) -> io::Result<ListenRequest> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0; 1024];
    loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        match http::parse_request(&head).map_err(io::Error::other)? {
            Parsed::Complete { head, .. } => return Ok(head),
            Parsed::Partial => {}
        }
    }
}

/// Constant-time comparison: the token is a secret.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn respond(stream: &mut TcpStream, status: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
}

fn serve(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Ok(request) = read_request(&mut stream) else {
        return;
    };
    let config = &shared.config;
    let refuse = |stream: &mut TcpStream, status: &str| {
        lock(&shared.status).refused += 1;
        respond(stream, status);
    };
    if request.path != config.path {
        return refuse(&mut stream, "404 Not Found");
    }
    let allowed = peer.ip().is_loopback()
        || matches!((&config.token, &request.token), (Some(want), Some(got)) if same(want, got));
    if !allowed {
        return refuse(&mut stream, "403 Forbidden");
    }
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nCache-Control: no-cache, no-store\r\n\
         Connection: close\r\nX-Content-Type-Options: nosniff\r\n\r\n",
        config.content_type
    );
    let (queue, rx) = mpsc::sync_channel(LISTENER_QUEUE);
    let gone = Arc::new(AtomicBool::new(false));
    let header = {
        let mut listeners = lock(&shared.listeners);
        if listeners.len() >= config.max_listeners {
            drop(listeners);
            return refuse(&mut stream, "503 Service Unavailable");
        }
        if !request.head_only() {
            listeners.push(Listener {
                queue,
                missed: 0,
                gone: Arc::clone(&gone),
            });
        }
        // Taken under the listeners' lock: a new stream's header cannot slip between.
        Arc::clone(&lock(&shared.header))
    };
    if stream.write_all(head.as_bytes()).is_err() || request.head_only() {
        return;
    }
    lock(&shared.status).served += 1;
    let _ = stream_to(&mut stream, &header, &rx, shared, &gone);
    gone.store(true, Ordering::Release);
}

fn stream_to(
    stream: &mut TcpStream,
    header: &[u8],
    rx: &Receiver<Arc<[u8]>>,
    shared: &Shared,
    gone: &AtomicBool,
) -> io::Result<()> {
    stream.write_all(header)?;
    while !shared.stop.load(Ordering::Acquire) && !gone.load(Ordering::Acquire) {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(chunk) => {
                stream.write_all(&chunk)?;
                lock(&shared.status).bytes_sent += chunk.len() as u64;
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(token: Option<&str>, max: usize) -> HttpListen {
        HttpListen::start(
            HttpListenConfig {
                bind: "127.0.0.1:0".parse().expect("addr"),
                path: "/a.mp3".into(),
                content_type: "audio/mpeg",
                max_listeners: max,
                token: token.map(str::to_owned),
            },
            "t",
        )
        .expect("start")
    }

    fn get(addr: SocketAddr, target: &str) -> TcpStream {
        let mut s = TcpStream::connect(addr).expect("connect");
        write!(s, "GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    }

    fn read_some(s: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        s.read_exact(&mut out).expect("read");
        out
    }

    #[test]
    fn a_listener_gets_the_header_then_the_chunks_and_others_are_refused() {
        let http = server(Some("0123456789abcdef"), 1);
        http.send_header(b"HEAD".to_vec());
        let mut first = get(http.local_addr(), "/a.mp3");
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\n";
        assert_eq!(read_some(&mut first, head.len()), head);
        // Wait until it is registered, then broadcast.
        while http.status().listeners == 0 {
            thread::sleep(Duration::from_millis(10));
        }
        http.send(b"DATA".to_vec());
        let mut rest = Vec::new();
        while !rest.ends_with(b"HEADDATA") {
            rest.extend(read_some(&mut first, 1));
        }
        let mut full = get(http.local_addr(), "/a.mp3");
        let mut reply = String::new();
        full.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 503"), "{reply}");
        let mut wrong = get(http.local_addr(), "/b.mp3");
        reply.clear();
        wrong.read_to_string(&mut reply).expect("read");
        assert!(reply.starts_with("HTTP/1.1 404"), "{reply}");
        assert_eq!(http.status().refused, 2);
    }

    #[test]
    fn the_bitrate_is_what_the_encoder_produced_with_or_without_listeners() {
        let http = server(None, 1);
        assert_eq!(http.status().bitrate, 0);
        // 16 kB every 100 ms is 1.28 Mbit/s; a busy machine's late wake-ups only lower it.
        let start = Instant::now();
        while http.status().bitrate == 0 && start.elapsed() < 3 * RATE_WINDOW {
            http.send(vec![0; 16_000]);
            thread::sleep(Duration::from_millis(100));
        }
        let bitrate = http.status().bitrate;
        assert!((900_000..=1_281_000).contains(&bitrate), "{bitrate} bit/s");
        assert_eq!(http.status().listeners, 0);
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }
}
