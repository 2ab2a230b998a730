//! SRT output over the system libsrt (Debian `libsrt-gnutls-dev` 1.5).
//!
//! [`SrtSender`] owns one connection thread that connects (caller) or listens and accepts one
//! peer at a time (listener), and reconnects with jittered exponential backoff whenever the peer
//! goes away or a connection attempt fails. [`SrtSender::send`] is called from the output thread:
//! it hands one message straight to libsrt in non-blocking mode (`SRTO_SNDSYN = false`), so it
//! never waits for the network; while no peer is connected it drops and counts the message.
//!
//! The connected socket is published to `send` as an integer id in an atomic. libsrt looks
//! socket ids up in its own table under its own locks, so a `send` racing with the connection
//! thread closing that socket gets an error back (counted as a drop), never a dangling pointer.
//! The status mutex is only taken by the connection thread (briefly) and by `status`, never by
//! `send`.

mod ffi;
mod recv;

pub use recv::{SrtReceived, SrtReceiver};

use std::collections::hash_map::RandomState;
use std::ffi::{CStr, c_char, c_int, c_void};
use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::SockAddr;

use self::ffi::SrtSocket;

/// Largest message [`SrtSender::send`] accepts: seven 188-byte MPEG-TS packets, libsrt's
/// default live-mode payload size (`SRT_LIVE_DEF_PLSIZE`).
pub const MAX_MESSAGE_SIZE: usize = 1316;

/// Shortest and longest passphrase libsrt accepts (`SRTO_PASSPHRASE`), in bytes.
pub const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// Longest stream id SRT carries in the handshake (`SRTO_STREAMID`), in bytes.
pub const MAX_STREAM_ID_LEN: usize = 512;

const BACKOFF_INITIAL: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// How often the connection thread looks at socket state while connecting or accepting.
const POLL_TICK: Duration = Duration::from_millis(20);
/// How often the connection thread checks a connected peer and refreshes the statistics.
const CONNECTED_TICK: Duration = Duration::from_millis(100);
/// A listener's peer that has sent no ACK (an SRT input's peer: no data) for this long gives
/// way to a new caller. A live receiver ACKs every 10 ms while data flows; while nothing is sent, ACKs may stop too, and
/// replacing the peer then costs nothing.
const SILENT_PEER: Duration = Duration::from_millis(1500);

/// How the SRT connection is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrtMode {
    /// Estuary connects to `remote` (which listens).
    Caller { remote: SocketAddr },
    /// Estuary listens on `bind` and serves one caller at a time.
    Listener { bind: SocketAddr },
}

/// Settings of one SRT output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrtConfig {
    pub mode: SrtMode,
    /// AES passphrase, 10..=79 bytes; `None` sends in the clear.
    pub passphrase: Option<String>,
    /// AES key length in bytes (16, 24 or 32); `None` keeps libsrt's default (16).
    pub key_length: Option<u8>,
    /// SRT latency (`SRTO_LATENCY`: the receive latency and the latency proposed to the peer).
    pub latency: Duration,
    /// Stream id sent to the listener (caller mode only).
    pub stream_id: Option<String>,
    /// How long one connection attempt may take (`SRTO_CONNTIMEO`).
    pub connect_timeout: Duration,
}

impl SrtConfig {
    /// A caller to `remote` without encryption, 120 ms latency (libsrt's live default) and a
    /// 3 s connect timeout.
    pub fn caller(remote: SocketAddr) -> Self {
        Self::new(SrtMode::Caller { remote })
    }

    /// A listener on `bind`, otherwise as [`SrtConfig::caller`].
    pub fn listener(bind: SocketAddr) -> Self {
        Self::new(SrtMode::Listener { bind })
    }

    fn new(mode: SrtMode) -> Self {
        Self {
            mode,
            passphrase: None,
            key_length: None,
            latency: Duration::from_millis(120),
            stream_id: None,
            connect_timeout: Duration::from_secs(3),
        }
    }

    /// Checks every field against the limits libsrt enforces, so a bad config is refused up
    /// front with a precise error instead of failing on every reconnect.
    pub fn validate(&self) -> Result<(), SrtError> {
        if let Some(passphrase) = &self.passphrase {
            if !PASSPHRASE_LEN.contains(&passphrase.len()) {
                return Err(SrtError::invalid(
                    "passphrase",
                    format!(
                        "must be {}..={} bytes long, is {}",
                        PASSPHRASE_LEN.start(),
                        PASSPHRASE_LEN.end(),
                        passphrase.len()
                    ),
                ));
            }
            if passphrase.contains('\0') {
                return Err(SrtError::invalid(
                    "passphrase",
                    "must not contain NUL".into(),
                ));
            }
        }
        if let Some(key_length) = self.key_length {
            if ![16, 24, 32].contains(&key_length) {
                return Err(SrtError::invalid(
                    "key_length",
                    format!("must be 16, 24 or 32 (bytes), is {key_length}"),
                ));
            }
            if self.passphrase.is_none() {
                return Err(SrtError::invalid(
                    "key_length",
                    "needs a passphrase (without one the stream is not encrypted)".into(),
                ));
            }
        }
        if millis(self.latency).is_none() {
            return Err(SrtError::invalid("latency", "too large".into()));
        }
        match millis(self.connect_timeout) {
            Some(ms) if ms > 0 => {}
            _ => {
                return Err(SrtError::invalid(
                    "connect_timeout",
                    "must be at least 1 ms and fit in i32 milliseconds".into(),
                ));
            }
        }
        if let Some(stream_id) = &self.stream_id {
            if matches!(self.mode, SrtMode::Listener { .. }) {
                return Err(SrtError::invalid(
                    "stream_id",
                    "is sent by a caller; a listener cannot set it".into(),
                ));
            }
            if stream_id.len() > MAX_STREAM_ID_LEN {
                return Err(SrtError::invalid(
                    "stream_id",
                    format!("must be at most {MAX_STREAM_ID_LEN} bytes"),
                ));
            }
        }
        Ok(())
    }
}

/// Errors from starting an SRT output. Connection failures after the start are not errors:
/// they show up in [`SrtStatus`] and the sender keeps retrying.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SrtError {
    #[error("invalid SRT config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("libsrt {call} failed: {message}")]
    Library { call: &'static str, message: String },
    #[error("cannot spawn the SRT connection thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl SrtError {
    fn invalid(field: &'static str, reason: String) -> Self {
        Self::InvalidConfig { field, reason }
    }
}

/// Where the connection thread is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SrtState {
    /// Caller: a connection attempt is under way.
    Connecting,
    /// Listener: waiting for a caller.
    Listening,
    /// A peer is connected; `send` hands messages to libsrt.
    Connected { peer: SocketAddr },
    /// Waiting before the next attempt after a failure.
    Backoff { reason: String },
    /// The sender was stopped.
    Stopped,
}

impl fmt::Display for SrtState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connecting => f.write_str("connecting"),
            Self::Listening => f.write_str("listening"),
            Self::Connected { peer } => write!(f, "connected to {peer}"),
            Self::Backoff { reason } => write!(f, "backing off: {reason}"),
            Self::Stopped => f.write_str("stopped"),
        }
    }
}

/// A snapshot of one SRT output. Counters are totals since [`SrtSender::start`], summed over
/// all connections; `rtt_ms` and `send_rate_mbps` are the current connection's latest values.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SrtStatus {
    pub state: SrtState,
    /// The most recent failure (kept after a reconnect, for the operator).
    pub last_error: Option<String>,
    /// Connections established after the first one.
    pub reconnects: u64,
    /// Connection attempts (or listener setups) that failed.
    pub connect_failures: u64,
    /// Messages libsrt accepted.
    pub messages_sent: u64,
    /// Messages dropped because no peer was connected.
    pub messages_dropped_not_connected: u64,
    /// Messages dropped because libsrt refused them (send buffer full, connection just broke,
    /// or larger than [`MAX_MESSAGE_SIZE`]).
    pub messages_dropped_send_error: u64,
    /// Payload bytes libsrt accepted.
    pub bytes_sent: u64,
    /// Smoothed round-trip time (`msRTT`).
    pub rtt_ms: f64,
    /// Packets retransmitted (`pktRetransTotal`).
    pub retransmitted_packets: u64,
    /// Packets the sender dropped as too late to send (`pktSndDropTotal`).
    pub sender_dropped_packets: u64,
    /// Packets reported lost by the receiver (`pktSndLossTotal`).
    pub send_loss_packets: u64,
    /// Current sending rate in Mb/s (`mbpsSendRate`).
    pub send_rate_mbps: f64,
    /// Receiving side (SRT inputs): packets received (`pktRecvTotal`).
    pub received_packets: u64,
    /// Payload bytes received (`byteRecvTotal`).
    pub received_bytes: u64,
    /// Packets detected lost (`pktRcvLossTotal`); most are recovered by retransmission.
    pub receive_loss_packets: u64,
    /// Packets that arrived too late and were dropped, or never came (`pktRcvDropTotal`).
    pub receive_dropped_packets: u64,
    /// Retransmitted packets received (`pktRcvRetrans`).
    pub received_retransmitted_packets: u64,
    /// Packets that could not be decrypted (`pktRcvUndecryptTotal`).
    pub undecrypted_packets: u64,
}

/// One SRT output: a connection thread plus a non-blocking [`send`](Self::send).
#[derive(Debug)]
pub struct SrtSender {
    shared: Arc<Shared>,
    stop_tx: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SrtSender {
    /// Validates `config`, initialises libsrt and spawns the connection thread. Returns at
    /// once; the connection comes up in the background (see [`status`](Self::status)).
    pub fn start(config: SrtConfig) -> Result<Self, SrtError> {
        Self::start_named(config, "srt-out")
    }

    /// [`start`](Self::start) with the connection thread's name.
    fn start_named(config: SrtConfig, thread_name: &str) -> Result<Self, SrtError> {
        config.validate()?;
        let lib = SrtLib::acquire()?;
        let initial = match config.mode {
            SrtMode::Caller { .. } => SrtState::Connecting,
            SrtMode::Listener { .. } => SrtState::Listening,
        };
        let shared = Arc::new(Shared::new(initial));
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(thread_name.into())
            .spawn(move || {
                let mut conn = Connection::new(config, thread_shared, stop_rx);
                conn.run();
                // Close every socket before libsrt may be cleaned up.
                drop(conn);
                drop(lib);
            })
            .map_err(SrtError::Thread)?;
        Ok(Self {
            shared,
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Sends one message (at most [`MAX_MESSAGE_SIZE`] bytes) to the connected peer. Never
    /// blocks, locks a Rust mutex or allocates; drops and counts the message when no peer is
    /// connected or libsrt cannot take it right now.
    pub fn send(&self, message: &[u8]) {
        let shared = &*self.shared;
        if message.len() > MAX_MESSAGE_SIZE {
            shared.dropped_error.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let socket = shared.socket.load(Ordering::Acquire);
        if socket == ffi::SRT_INVALID_SOCK {
            shared.dropped_not_connected.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // The length fits: it was checked against MAX_MESSAGE_SIZE above.
        let len = message.len() as c_int;
        // SAFETY: `message` is valid for `len` bytes for the duration of the call; libsrt copies
        // it into its send buffer. A NULL `mctrl` selects the defaults. `socket` may have been
        // closed meanwhile; libsrt then returns SRT_ERROR (ids are looked up, not dereferenced).
        let sent = unsafe {
            ffi::srt_sendmsg2(
                socket,
                message.as_ptr().cast::<c_char>(),
                len,
                std::ptr::null_mut(),
            )
        };
        if sent == ffi::SRT_ERROR {
            shared.dropped_error.fetch_add(1, Ordering::Relaxed);
        } else {
            shared.messages_sent.fetch_add(1, Ordering::Relaxed);
            shared
                .bytes_sent
                .fetch_add(message.len() as u64, Ordering::Relaxed);
        }
    }

    /// True while a peer is connected (what [`send`](Self::send) sees).
    pub fn is_connected(&self) -> bool {
        self.shared.socket.load(Ordering::Acquire) != ffi::SRT_INVALID_SOCK
    }

    /// A snapshot of state and counters; callable from any thread.
    pub fn status(&self) -> SrtStatus {
        let shared = &*self.shared;
        let (state, last_error) = {
            let info = shared.info();
            (info.state.clone(), info.last_error.clone())
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SrtStatus {
            state,
            last_error,
            reconnects: load(&shared.reconnects),
            connect_failures: load(&shared.connect_failures),
            messages_sent: load(&shared.messages_sent),
            messages_dropped_not_connected: load(&shared.dropped_not_connected),
            messages_dropped_send_error: load(&shared.dropped_error),
            bytes_sent: load(&shared.bytes_sent),
            rtt_ms: f64::from_bits(load(&shared.rtt_ms_bits)),
            retransmitted_packets: load(&shared.retransmitted),
            sender_dropped_packets: load(&shared.sender_dropped),
            send_loss_packets: load(&shared.send_loss),
            send_rate_mbps: f64::from_bits(load(&shared.send_rate_bits)),
            received_packets: load(&shared.received),
            received_bytes: load(&shared.received_bytes),
            receive_loss_packets: load(&shared.receive_loss),
            receive_dropped_packets: load(&shared.receive_dropped),
            received_retransmitted_packets: load(&shared.received_retransmitted),
            undecrypted_packets: load(&shared.undecrypted),
        }
    }

    /// Stops the connection thread, closing the connection. Idempotent; also done on drop.
    /// Returns within about one poll tick (100 ms).
    pub fn stop(&mut self) {
        if let Some(stop_tx) = self.stop_tx.take() {
            // The thread also stops when the channel disconnects, so the result is irrelevant.
            let _ = stop_tx.send(());
        }
        let panicked = self
            .thread
            .take()
            .is_some_and(|thread| thread.join().is_err());
        if panicked {
            tracing::error!("SRT connection thread panicked");
        }
    }
}

impl Drop for SrtSender {
    fn drop(&mut self) {
        self.stop();
    }
}

/// State shared between the connection thread, `send` and `status`.
#[derive(Debug)]
struct Shared {
    /// The connected socket, or `SRT_INVALID_SOCK`.
    socket: AtomicI32,
    messages_sent: AtomicU64,
    bytes_sent: AtomicU64,
    dropped_not_connected: AtomicU64,
    dropped_error: AtomicU64,
    reconnects: AtomicU64,
    connect_failures: AtomicU64,
    rtt_ms_bits: AtomicU64,
    retransmitted: AtomicU64,
    sender_dropped: AtomicU64,
    send_loss: AtomicU64,
    send_rate_bits: AtomicU64,
    received: AtomicU64,
    received_bytes: AtomicU64,
    receive_loss: AtomicU64,
    receive_dropped: AtomicU64,
    received_retransmitted: AtomicU64,
    undecrypted: AtomicU64,
    info: Mutex<Info>,
}

#[derive(Debug)]
struct Info {
    state: SrtState,
    last_error: Option<String>,
}

impl Shared {
    fn new(state: SrtState) -> Self {
        Self {
            socket: AtomicI32::new(ffi::SRT_INVALID_SOCK),
            messages_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            dropped_not_connected: AtomicU64::new(0),
            dropped_error: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            rtt_ms_bits: AtomicU64::new(0.0_f64.to_bits()),
            retransmitted: AtomicU64::new(0),
            sender_dropped: AtomicU64::new(0),
            send_loss: AtomicU64::new(0),
            send_rate_bits: AtomicU64::new(0.0_f64.to_bits()),
            received: AtomicU64::new(0),
            received_bytes: AtomicU64::new(0),
            receive_loss: AtomicU64::new(0),
            receive_dropped: AtomicU64::new(0),
            received_retransmitted: AtomicU64::new(0),
            undecrypted: AtomicU64::new(0),
            info: Mutex::new(Info {
                state,
                last_error: None,
            }),
        }
    }

    fn info(&self) -> MutexGuard<'_, Info> {
        // The guarded data stays consistent even if a holder panicked (plain assignments).
        self.info.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_state(&self, state: SrtState) {
        self.info().state = state;
    }
}

/// libsrt counters summed over finished connections, plus the current connection's.
#[derive(Debug, Default, Clone, Copy)]
struct Totals {
    retransmitted: u64,
    sender_dropped: u64,
    send_loss: u64,
    received: u64,
    received_bytes: u64,
    receive_loss: u64,
    receive_dropped: u64,
    received_retransmitted: u64,
    undecrypted: u64,
}

impl Totals {
    fn of(stats: &ffi::SrtTraceBStats) -> Self {
        let count = |v: c_int| u64::try_from(v).unwrap_or(0);
        Self {
            retransmitted: count(stats.pktRetransTotal),
            sender_dropped: count(stats.pktSndDropTotal),
            send_loss: count(stats.pktSndLossTotal),
            received: u64::try_from(stats.pktRecvTotal).unwrap_or(0),
            received_bytes: stats.byteRecvTotal,
            receive_loss: count(stats.pktRcvLossTotal),
            receive_dropped: count(stats.pktRcvDropTotal),
            // A "local" figure, but statistics are never cleared, so it counts since connect.
            received_retransmitted: count(stats.pktRcvRetrans),
            undecrypted: count(stats.pktRcvUndecryptTotal),
        }
    }

    fn plus(self, other: Self) -> Self {
        Self {
            retransmitted: self.retransmitted + other.retransmitted,
            sender_dropped: self.sender_dropped + other.sender_dropped,
            send_loss: self.send_loss + other.send_loss,
            received: self.received + other.received,
            received_bytes: self.received_bytes + other.received_bytes,
            receive_loss: self.receive_loss + other.receive_loss,
            receive_dropped: self.receive_dropped + other.receive_dropped,
            received_retransmitted: self.received_retransmitted + other.received_retransmitted,
            undecrypted: self.undecrypted + other.undecrypted,
        }
    }
}

/// Why a session ended.
enum End {
    Stopped,
    Failed(String),
}

/// The connection thread's state.
struct Connection {
    config: SrtConfig,
    shared: Arc<Shared>,
    stop_rx: Receiver<()>,
    backoff: Backoff,
    /// The last failure cause logged at `warn`; repeats are logged at `debug`.
    last_logged: Option<String>,
    ever_connected: bool,
    /// Totals of finished connections.
    base: Totals,
    /// Latest totals of the current connection.
    current: Totals,
}

impl Connection {
    fn new(config: SrtConfig, shared: Arc<Shared>, stop_rx: Receiver<()>) -> Self {
        Self {
            config,
            shared,
            stop_rx,
            backoff: Backoff::new(),
            last_logged: None,
            ever_connected: false,
            base: Totals::default(),
            current: Totals::default(),
        }
    }

    fn run(&mut self) {
        loop {
            let end = match self.config.mode.clone() {
                SrtMode::Caller { remote } => self.caller(remote),
                SrtMode::Listener { bind } => self.listener(bind),
            };
            match end {
                End::Stopped => break,
                End::Failed(reason) => {
                    self.shared.connect_failures.fetch_add(1, Ordering::Relaxed);
                    self.report_failure(&reason);
                    let delay = self.backoff.next_delay();
                    {
                        let mut info = self.shared.info();
                        info.state = SrtState::Backoff {
                            reason: reason.clone(),
                        };
                        info.last_error = Some(reason);
                    }
                    if self.wait(delay) {
                        break;
                    }
                }
            }
        }
        self.shared.set_state(SrtState::Stopped);
        tracing::debug!("SRT connection thread stopped");
    }

    /// Waits up to `delay`; true when a stop was requested.
    fn wait(&self, delay: Duration) -> bool {
        match self.stop_rx.recv_timeout(delay) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            Err(RecvTimeoutError::Timeout) => false,
        }
    }

    fn report_failure(&mut self, reason: &str) {
        if self.last_logged.as_deref() == Some(reason) {
            tracing::debug!(%reason, "SRT connection failed again; retrying");
        } else {
            tracing::warn!(%reason, "SRT connection failed; retrying with backoff");
            self.last_logged = Some(reason.to_owned());
        }
    }

    /// One caller session: connect, then serve until the peer goes away.
    fn caller(&mut self, remote: SocketAddr) -> End {
        self.shared.set_state(SrtState::Connecting);
        let socket = match Socket::configured(&self.config, true) {
            Ok(socket) => socket,
            Err(reason) => return End::Failed(reason),
        };
        let addr = SockAddr::from(remote);
        // SAFETY: `addr` points to a valid sockaddr of `addr.len()` bytes for the call.
        let rc = unsafe {
            ffi::srt_connect(
                socket.0,
                addr.as_ptr().cast::<libc::sockaddr>(),
                addr.len() as c_int,
            )
        };
        if rc == ffi::SRT_ERROR && socket.state() != ffi::SRTS_CONNECTING {
            return End::Failed(format!("connect to {remote} failed: {}", last_error()));
        }
        // libsrt enforces SRTO_CONNTIMEO; the extra second only guards against a stuck state.
        let deadline = Instant::now() + self.config.connect_timeout + Duration::from_secs(1);
        loop {
            match socket.state() {
                ffi::SRTS_CONNECTED => break,
                ffi::SRTS_CONNECTING if Instant::now() < deadline => {}
                ffi::SRTS_CONNECTING => {
                    return End::Failed(format!("connect to {remote} timed out"));
                }
                _ => return End::Failed(connect_failure(&socket, remote)),
            }
            if self.wait(POLL_TICK) {
                return End::Stopped;
            }
        }
        if let Err(reason) = socket.set_bool(ffi::SRTO_SNDSYN, false, "SRTO_SNDSYN") {
            return End::Failed(reason);
        }
        self.connected(&socket, remote);
        loop {
            if self.wait(CONNECTED_TICK) {
                self.disconnected(&socket);
                return End::Stopped;
            }
            let state = socket.state();
            self.refresh_stats(&socket);
            if state != ffi::SRTS_CONNECTED {
                self.disconnected(&socket);
                return End::Failed(format!(
                    "connection to {remote} lost ({})",
                    state_name(state)
                ));
            }
        }
    }

    /// One listener session: listen, then accept and serve one caller at a time. Ends only on
    /// stop or when the listening socket fails.
    fn listener(&mut self, bind: SocketAddr) -> End {
        self.shared.set_state(SrtState::Listening);
        let listener = match Socket::configured(&self.config, false) {
            Ok(socket) => socket,
            Err(reason) => return End::Failed(reason),
        };
        let addr = SockAddr::from(bind);
        // SAFETY: `addr` points to a valid sockaddr of `addr.len()` bytes for the call.
        let rc = unsafe {
            ffi::srt_bind(
                listener.0,
                addr.as_ptr().cast::<libc::sockaddr>(),
                addr.len() as c_int,
            )
        };
        if rc == ffi::SRT_ERROR {
            return End::Failed(format!("cannot bind {bind}: {}", last_error()));
        }
        // SAFETY: plain call on a socket id we own.
        if unsafe { ffi::srt_listen(listener.0, 1) } == ffi::SRT_ERROR {
            return End::Failed(format!("cannot listen on {bind}: {}", last_error()));
        }
        tracing::info!(%bind, "SRT listener waiting for a caller");
        let mut peer: Option<Peer> = None;
        loop {
            let tick = if peer.is_some() {
                CONNECTED_TICK
            } else {
                POLL_TICK
            };
            if self.wait(tick) {
                if let Some(current) = &peer {
                    self.disconnected(&current.socket);
                }
                return End::Stopped;
            }
            if let Some(current) = &mut peer {
                let state = current.socket.state();
                if state == ffi::SRTS_CONNECTED {
                    let acks = self
                        .refresh_stats(&current.socket)
                        .map_or(current.acks, peer_activity);
                    if acks != current.acks {
                        current.acks = acks;
                        current.last_ack = Instant::now();
                    }
                } else {
                    let reason = format!("peer {} went away ({})", current.addr, state_name(state));
                    self.peer_gone(&current.socket, reason);
                    peer = None;
                }
            }
            let (socket, addr) = match listener.accept() {
                Ok(None) => continue,
                Ok(Some(accepted)) => accepted,
                Err(reason) => {
                    if let Some(current) = &peer {
                        self.disconnected(&current.socket);
                    }
                    return End::Failed(format!("listener on {bind} failed: {reason}"));
                }
            };
            if let Some(current) = &peer {
                // One peer at a time. A peer that has acknowledged nothing for a while is
                // probably dead (a hard-killed receiver looks connected until the 5 s peer idle
                // timeout) and makes way for the newcomer, so a restarted receiver gets the
                // stream at once; a live peer keeps it, so two receivers cannot flap.
                if current.last_ack.elapsed() < SILENT_PEER {
                    tracing::info!(%addr, current = %current.addr, "SRT listener refused a second caller");
                    continue;
                }
                let reason = format!(
                    "peer {} replaced by {addr} (no ACK for {:?})",
                    current.addr,
                    current.last_ack.elapsed()
                );
                self.peer_gone(&current.socket, reason);
                peer = None;
            }
            if let Err(reason) = socket.set_bool(ffi::SRTO_SNDSYN, false, "SRTO_SNDSYN") {
                tracing::warn!(%addr, %reason, "SRT listener dropped a caller");
                continue;
            }
            self.connected(&socket, addr);
            peer = Some(Peer {
                socket,
                addr,
                acks: 0,
                last_ack: Instant::now(),
            });
        }
    }

    /// Listener: the current peer is gone; back to listening.
    fn peer_gone(&mut self, socket: &Socket, reason: String) {
        tracing::info!(%reason, "SRT listener waiting for a new caller");
        self.disconnected(socket);
        let mut info = self.shared.info();
        info.state = SrtState::Listening;
        info.last_error = Some(reason);
    }

    /// Publishes a freshly connected socket to `send`.
    fn connected(&mut self, socket: &Socket, peer: SocketAddr) {
        if self.ever_connected {
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.ever_connected = true;
        self.backoff.reset();
        self.last_logged = None;
        self.current = Totals::default();
        self.shared.set_state(SrtState::Connected { peer });
        self.shared.socket.store(socket.0, Ordering::Release);
        tracing::info!(%peer, "SRT connected");
    }

    /// Withdraws the socket from `send` and folds its statistics into the totals. The caller
    /// closes the socket (by dropping it) afterwards.
    fn disconnected(&mut self, socket: &Socket) {
        self.shared
            .socket
            .store(ffi::SRT_INVALID_SOCK, Ordering::Release);
        self.refresh_stats(socket);
        self.base = self.base.plus(self.current);
        self.current = Totals::default();
        self.shared
            .send_rate_bits
            .store(0.0_f64.to_bits(), Ordering::Relaxed);
    }

    fn refresh_stats(&mut self, socket: &Socket) -> Option<ffi::SrtTraceBStats> {
        let stats = socket.stats()?;
        self.current = Totals::of(&stats);
        let total = self.base.plus(self.current);
        let shared = &*self.shared;
        shared
            .retransmitted
            .store(total.retransmitted, Ordering::Relaxed);
        shared
            .sender_dropped
            .store(total.sender_dropped, Ordering::Relaxed);
        shared.send_loss.store(total.send_loss, Ordering::Relaxed);
        shared.received.store(total.received, Ordering::Relaxed);
        shared
            .received_bytes
            .store(total.received_bytes, Ordering::Relaxed);
        shared
            .receive_loss
            .store(total.receive_loss, Ordering::Relaxed);
        shared
            .receive_dropped
            .store(total.receive_dropped, Ordering::Relaxed);
        shared
            .received_retransmitted
            .store(total.received_retransmitted, Ordering::Relaxed);
        shared
            .undecrypted
            .store(total.undecrypted, Ordering::Relaxed);
        shared
            .rtt_ms_bits
            .store(stats.msRTT.to_bits(), Ordering::Relaxed);
        shared
            .send_rate_bits
            .store(stats.mbpsSendRate.to_bits(), Ordering::Relaxed);
        Some(stats)
    }
}

/// The listener's current peer.
#[derive(Debug)]
struct Peer {
    socket: Socket,
    addr: SocketAddr,
    /// [`peer_activity`] at the last look, and when it last changed.
    acks: i64,
    last_ack: Instant,
}

/// An owned libsrt socket id, closed on drop.
#[derive(Debug)]
struct Socket(SrtSocket);

impl Socket {
    /// Creates a socket with the config's options; `caller` adds the caller-only ones.
    /// Connect and accept are made non-blocking (`SRTO_RCVSYN = false`) so the connection
    /// thread can watch for a stop request.
    fn configured(config: &SrtConfig, caller: bool) -> Result<Self, String> {
        // SAFETY: plain call; libsrt is initialised (the thread holds an `SrtLib`).
        let id = unsafe { ffi::srt_create_socket() };
        if id == ffi::SRT_INVALID_SOCK {
            return Err(format!("cannot create an SRT socket: {}", last_error()));
        }
        let socket = Self(id);
        // SRTO_TRANSTYPE resets the other options to that type's defaults: set it first.
        socket.set_int(ffi::SRTO_TRANSTYPE, ffi::SRTT_LIVE, "SRTO_TRANSTYPE")?;
        socket.set_bool(ffi::SRTO_RCVSYN, false, "SRTO_RCVSYN")?;
        socket.set_bool(ffi::SRTO_SNDSYN, false, "SRTO_SNDSYN")?;
        let latency = millis(config.latency).unwrap_or(i32::MAX);
        socket.set_int(ffi::SRTO_LATENCY, latency, "SRTO_LATENCY")?;
        let timeout = millis(config.connect_timeout).unwrap_or(i32::MAX);
        socket.set_int(ffi::SRTO_CONNTIMEO, timeout, "SRTO_CONNTIMEO")?;
        if let Some(passphrase) = &config.passphrase {
            socket.set_str(ffi::SRTO_PASSPHRASE, passphrase, "SRTO_PASSPHRASE")?;
        }
        if let Some(key_length) = config.key_length {
            socket.set_int(ffi::SRTO_PBKEYLEN, c_int::from(key_length), "SRTO_PBKEYLEN")?;
        }
        if let Some(stream_id) = config.stream_id.as_ref().filter(|_| caller) {
            socket.set_str(ffi::SRTO_STREAMID, stream_id, "SRTO_STREAMID")?;
        }
        Ok(socket)
    }

    fn set_raw(
        &self,
        opt: c_int,
        value: *const c_void,
        len: usize,
        name: &str,
    ) -> Result<(), String> {
        let len = c_int::try_from(len).map_err(|_| format!("{name}: value too long"))?;
        // SAFETY: `value` points to `len` readable bytes of the type libsrt expects for `opt`
        // (see the typed wrappers); libsrt copies the value before returning.
        let rc = unsafe { ffi::srt_setsockflag(self.0, opt, value, len) };
        if rc == ffi::SRT_ERROR {
            Err(format!("cannot set {name}: {}", last_error()))
        } else {
            Ok(())
        }
    }

    fn set_int(&self, opt: c_int, value: c_int, name: &str) -> Result<(), String> {
        let ptr: *const c_int = &value;
        self.set_raw(opt, ptr.cast(), size_of::<c_int>(), name)
    }

    fn set_bool(&self, opt: c_int, value: bool, name: &str) -> Result<(), String> {
        // libsrt 1.5 reads boolean options as a C `bool` (one byte), which Rust's `bool` is.
        let ptr: *const bool = &value;
        self.set_raw(opt, ptr.cast(), size_of::<bool>(), name)
    }

    fn set_str(&self, opt: c_int, value: &str, name: &str) -> Result<(), String> {
        self.set_raw(opt, value.as_ptr().cast(), value.len(), name)
    }

    fn state(&self) -> c_int {
        // SAFETY: plain call; an unknown id yields SRTS_NONEXIST.
        unsafe { ffi::srt_getsockstate(self.0) }
    }

    fn stats(&self) -> Option<ffi::SrtTraceBStats> {
        let mut stats = ffi::SrtTraceBStats::default();
        // SAFETY: `stats` is a valid, writable CBytePerfMon with libsrt 1.5's layout.
        let rc = unsafe { ffi::srt_bstats(self.0, &mut stats, 0) };
        (rc != ffi::SRT_ERROR).then_some(stats)
    }

    /// Accepts a pending caller on a non-blocking listener: `Ok(None)` when none is waiting.
    fn accept(&self) -> Result<Option<(Socket, SocketAddr)>, String> {
        let mut accepted = ffi::SRT_INVALID_SOCK;
        // SAFETY: `try_init` hands us a zeroed sockaddr_storage and its size; libsrt writes at
        // most `len` bytes into it and stores the length it used.
        let result = unsafe {
            SockAddr::try_init(|storage, len| {
                let mut c_len = c_int::try_from(*len).unwrap_or(c_int::MAX);
                accepted = ffi::srt_accept(self.0, storage.cast::<libc::sockaddr>(), &mut c_len);
                *len = libc::socklen_t::try_from(c_len).unwrap_or(0);
                Ok(())
            })
        };
        if accepted == ffi::SRT_INVALID_SOCK {
            let mut errno = 0;
            // SAFETY: `errno` is a valid out pointer; the error is thread-local in libsrt.
            let code = unsafe { ffi::srt_getlasterror(&mut errno) };
            return if code == ffi::SRT_EASYNCRCV {
                Ok(None)
            } else {
                Err(last_error())
            };
        }
        let socket = Socket(accepted);
        let peer = result
            .ok()
            .and_then(|(_, addr)| addr.as_socket())
            .ok_or_else(|| "accepted a caller without an IP address".to_owned())?;
        Ok(Some((socket, peer)))
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // SAFETY: we own this id and close it exactly once; `send` may still race with a stale
        // copy of it, which libsrt answers with an error.
        unsafe { ffi::srt_close(self.0) };
    }
}

/// Why a connect attempt ended, from libsrt's reject reason.
fn connect_failure(socket: &Socket, remote: SocketAddr) -> String {
    // SAFETY: plain call on a socket id we own.
    let reason = unsafe { ffi::srt_getrejectreason(socket.0) };
    match reason {
        ffi::SRT_REJ_BADSECRET => "peer rejected: bad passphrase".to_owned(),
        ffi::SRT_REJ_UNSECURE => {
            "peer rejected: encryption mismatch (passphrase set on one side only)".to_owned()
        }
        ffi::SRT_REJ_TIMEOUT => format!("no answer from {remote} (connection timeout)"),
        _ => {
            // SAFETY: libsrt returns a static string for any id (a generic one if unknown).
            let text = unsafe { c_str(ffi::srt_rejectreason_str(reason)) };
            format!("peer rejected: {text} (reject reason {reason})")
        }
    }
}

/// What a live peer keeps sending: ACKs to a sender, data to a receiver.
fn peer_activity(stats: ffi::SrtTraceBStats) -> i64 {
    i64::from(stats.pktRecvACKTotal) + stats.pktRecvTotal
}

fn state_name(state: c_int) -> &'static str {
    match state {
        ffi::SRTS_CONNECTING => "connecting",
        ffi::SRTS_CONNECTED => "connected",
        ffi::SRTS_BROKEN => "broken",
        ffi::SRTS_CLOSING => "closing",
        ffi::SRTS_CLOSED => "closed",
        ffi::SRTS_NONEXIST => "gone",
        _ => "unexpected state",
    }
}

/// libsrt's thread-local description of the last error.
fn last_error() -> String {
    // SAFETY: libsrt returns a pointer to a thread-local NUL-terminated string that stays
    // valid until the next libsrt call on this thread; we copy it at once.
    unsafe { c_str(ffi::srt_getlasterror_str()) }
}

/// Copies a C string; NULL gives an empty string.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the duration of the call.
unsafe fn c_str(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

fn millis(duration: Duration) -> Option<i32> {
    i32::try_from(duration.as_millis()).ok()
}

/// Exponential backoff with ±25 % jitter, so many outputs that lost the same peer do not
/// reconnect in lockstep.
#[derive(Debug)]
struct Backoff {
    next: Duration,
    rng: u64,
}

impl Backoff {
    fn new() -> Self {
        // Any per-process randomness will do for jitter; RandomState is seeded by the OS.
        let seed = RandomState::new().hash_one(Instant::now()) | 1;
        Self {
            next: BACKOFF_INITIAL,
            rng: seed,
        }
    }

    fn reset(&mut self) {
        self.next = BACKOFF_INITIAL;
    }

    fn next_delay(&mut self) -> Duration {
        // xorshift64
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let unit = (self.rng >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
        let delay = self.next.mul_f64(0.75 + 0.5 * unit);
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }
}

/// Process-wide libsrt initialisation, reference-counted over the live senders. libsrt counts
/// `srt_startup`/`srt_cleanup` pairs itself, so FFmpeg's use of the same library in this
/// process is unaffected.
#[derive(Debug)]
struct SrtLib(());

static SRT_USERS: Mutex<usize> = Mutex::new(0);

impl SrtLib {
    fn acquire() -> Result<Self, SrtError> {
        let mut users = SRT_USERS.lock().unwrap_or_else(PoisonError::into_inner);
        if *users == 0 {
            // SAFETY: plain initialisation call, serialised by SRT_USERS.
            if unsafe { ffi::srt_startup() } < 0 {
                return Err(SrtError::Library {
                    call: "srt_startup",
                    message: last_error(),
                });
            }
            // SAFETY: `log_handler` is a `'static` function that tolerates any thread and
            // NULL strings; no opaque pointer is used.
            unsafe {
                ffi::srt_setloghandler(std::ptr::null_mut(), Some(log_handler));
                ffi::srt_setloglevel(ffi::LOG_WARNING);
            }
        }
        *users += 1;
        Ok(Self(()))
    }
}

impl Drop for SrtLib {
    fn drop(&mut self) {
        let mut users = SRT_USERS.lock().unwrap_or_else(PoisonError::into_inner);
        *users -= 1;
        if *users == 0 {
            // SAFETY: every socket of ours is closed (connection threads drop their sockets
            // before their `SrtLib`); serialised by SRT_USERS.
            unsafe { ffi::srt_cleanup() };
        }
    }
}

/// Forwards libsrt's own log lines to `tracing` (target `libsrt`). libsrt logs a line per
/// failed handshake at error level; Estuary reports those causes itself, once, so libsrt's
/// lines go to `debug`.
unsafe extern "C" fn log_handler(
    _opaque: *mut c_void,
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    area: *const c_char,
    message: *const c_char,
) {
    // SAFETY: libsrt passes NULL or NUL-terminated strings valid for this call.
    let (area, message) = unsafe { (c_str(area), c_str(message)) };
    let message = message.trim_end();
    if level <= 2 {
        tracing::error!(target: "libsrt", %area, "{message}");
    } else {
        tracing::debug!(target: "libsrt", %area, level, "{message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 9000))
    }

    #[test]
    fn validate_passphrase_length() {
        let mut config = SrtConfig::caller(addr());
        config.passphrase = Some("short".into());
        assert!(matches!(
            config.validate(),
            Err(SrtError::InvalidConfig {
                field: "passphrase",
                ..
            })
        ));
        config.passphrase = Some("0123456789".into());
        assert!(config.validate().is_ok());
        config.passphrase = Some("x".repeat(80));
        assert!(config.validate().is_err());
        config.passphrase = Some("x".repeat(79));
        assert!(config.validate().is_ok());
    }

    #[test]
    fn validate_key_length_and_stream_id() {
        let mut config = SrtConfig::caller(addr());
        config.key_length = Some(16);
        assert!(config.validate().is_err(), "key length without passphrase");
        config.passphrase = Some("0123456789".into());
        for ok in [16, 24, 32] {
            config.key_length = Some(ok);
            assert!(config.validate().is_ok());
        }
        config.key_length = Some(20);
        assert!(config.validate().is_err());

        let mut config = SrtConfig::listener(addr());
        config.stream_id = Some("live/1".into());
        assert!(config.validate().is_err());
        config.connect_timeout = Duration::ZERO;
        config.stream_id = None;
        assert!(config.validate().is_err());
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new();
        let delays: Vec<Duration> = (0..10).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(187) && delays[0] <= Duration::from_millis(313));
        for delay in &delays[6..] {
            assert!(*delay >= Duration::from_secs(6) && *delay <= Duration::from_secs(10));
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(313));
    }
}
