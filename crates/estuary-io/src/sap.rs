//! SAP (RFC 2974) sockets: a thread-agnostic listener and an announcer thread.
//!
//! The codec, the message-id hash and the interval rule live in `estuary_wire::sap`;
//! this module only moves bytes and keeps time.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use estuary_wire::sap::{self, SAP_PORT, SapError, SapPacket, announcement_interval};

use crate::mcast::{Interface, open_send_socket};

/// SAP's global-scope IPv4 group (sap.mcast.net, RFC 2974 §3); FFmpeg and VLC use it.
pub const SAP_GROUP_GLOBAL_V4: Ipv4Addr = Ipv4Addr::new(224, 2, 127, 254);
/// The administratively scoped (239/8) SAP group: AES67, RAVENNA and Dante announce here.
pub const SAP_GROUP_ADMIN_V4: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 255);
/// The link-local SAP group (224.0.0.56) some devices use.
pub const SAP_GROUP_LINK_LOCAL_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 56);
/// IPv6 global-scope SAP group (RFC 2974 §3).
pub const SAP_GROUP_GLOBAL_V6: Ipv6Addr = Ipv6Addr::new(0xff0e, 0, 0, 0, 0, 0, 2, 0x7ffe);
/// IPv6 site-local-scope SAP group.
pub const SAP_GROUP_SITE_V6: Ipv6Addr = Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 2, 0x7ffe);

/// The IPv4 groups a listener joins by default.
pub fn default_groups() -> Vec<IpAddr> {
    vec![
        SAP_GROUP_GLOBAL_V4.into(),
        SAP_GROUP_ADMIN_V4.into(),
        SAP_GROUP_LINK_LOCAL_V4.into(),
    ]
}

/// Where and how a [`SapListener`] listens.
#[derive(Debug, Clone)]
pub struct SapListenerConfig {
    /// Multicast groups to join; IPv6 groups open a second (IPv6-only) socket.
    pub groups: Vec<IpAddr>,
    /// Interface to join on (kernel's choice when `None`).
    pub iface: Option<Interface>,
    /// UDP port, [`SAP_PORT`] unless testing.
    pub port: u16,
    /// How long [`SapListener::recv`] may wait; `None` never waits.
    pub timeout: Option<Duration>,
}

impl Default for SapListenerConfig {
    fn default() -> Self {
        Self {
            groups: default_groups(),
            iface: None,
            port: SAP_PORT,
            timeout: None,
        }
    }
}

/// Datagram counters of a [`SapListener`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SapListenerStats {
    /// Datagrams read.
    pub received: u64,
    /// Datagrams decoded into a [`SapPacket`].
    pub decoded: u64,
    /// Encrypted (E bit) packets, which we cannot read.
    pub encrypted: u64,
    /// Truncated, undecompressable or otherwise broken packets.
    pub malformed: u64,
    /// Well-formed packets we do not use: SAPv1 hash 0, other versions, non-SDP payloads.
    pub ignored: u64,
}

/// One UDP socket per address family on the SAP port, joined to the configured groups.
///
/// It is non-blocking; [`SapListener::recv`] waits at most the configured timeout, so
/// the daemon decides which thread drives it.
#[derive(Debug)]
pub struct SapListener {
    sockets: Vec<UdpSocket>,
    timeout: Option<Duration>,
    stats: SapListenerStats,
    buf: Vec<u8>,
}

impl SapListener {
    /// Binds the wildcard address on `cfg.port` with `SO_REUSEADDR`/`SO_REUSEPORT` (so
    /// other SAP tools on the host keep working) and joins every group on `cfg.iface`.
    /// `IP_MULTICAST_ALL` is off, so only the groups joined here are delivered.
    pub fn open(cfg: &SapListenerConfig) -> io::Result<Self> {
        let ifindex = cfg.iface.as_ref().map_or(0, |i| i.index);
        let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = cfg.groups.iter().partition(|g| g.is_ipv4());
        if cfg.groups.iter().any(|g| !g.is_multicast()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "SAP listener groups must be multicast addresses",
            ));
        }
        let mut sockets = Vec::new();
        // An IPv4 socket even without groups: unicast SAP to the port is still heard.
        if !v4.is_empty() || v6.is_empty() {
            let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port).into();
            let s = wildcard_socket(bind)?;
            for g in v4.iter().filter_map(|g| match g {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            }) {
                s.join_multicast_v4_n(g, &InterfaceIndexOrAddress::Index(ifindex))?;
            }
            s.set_multicast_all_v4(false)?;
            sockets.push(s.into());
        }
        if !v6.is_empty() {
            let bind = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, cfg.port, 0, 0).into();
            let s = wildcard_socket(bind)?;
            for g in v6.iter().filter_map(|g| match g {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            }) {
                s.join_multicast_v6(g, ifindex)?;
            }
            if let Err(e) = s.set_multicast_all_v6(false) {
                tracing::debug!("IPV6_MULTICAST_ALL not available: {e}");
            }
            sockets.push(s.into());
        }
        tracing::debug!(groups = ?cfg.groups, port = cfg.port, "SAP listener open");
        Ok(Self {
            sockets,
            timeout: cfg.timeout,
            stats: SapListenerStats::default(),
            // The largest UDP payload: a SAP packet is not limited to one MTU.
            buf: vec![0; 65_536],
        })
    }

    /// The next decodable SAP packet and its sender, or `None` when nothing usable
    /// arrived within the timeout. Undecodable datagrams are counted and skipped.
    pub fn recv(&mut self) -> io::Result<Option<(SapPacket, SocketAddr)>> {
        let deadline = self.timeout.map(|t| Instant::now() + t);
        loop {
            let mut got_any = false;
            for i in 0..self.sockets.len() {
                let Some(sock) = self.sockets.get(i) else {
                    continue;
                };
                match sock.recv_from(&mut self.buf) {
                    Ok((n, from)) => {
                        got_any = true;
                        let data = self.buf.get(..n).unwrap_or(&[]);
                        if let Some(p) = classify(&mut self.stats, sap::parse(data), from) {
                            return Ok(Some((p, from)));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => got_any = true,
                    Err(e) => return Err(e),
                }
            }
            if got_any {
                continue;
            }
            let Some(deadline) = deadline else {
                return Ok(None);
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.wait_readable(left)? {
                return Ok(None);
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> SapListenerStats {
        self.stats
    }

    /// Local addresses of the sockets (one per address family in use).
    pub fn local_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.sockets.iter().map(UdpSocket::local_addr).collect()
    }

    /// Waits until a socket is readable or `timeout` passes; `true` when readable.
    fn wait_readable(&self, timeout: Duration) -> io::Result<bool> {
        let mut fds: Vec<libc::pollfd> = self
            .sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // Round up so a sub-millisecond remainder still waits instead of spinning.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a live, exclusively borrowed array of `fds.len()` pollfd
        // structs for the duration of the call; poll writes only their `revents`.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(true)
            } else {
                Err(e)
            };
        }
        Ok(rc > 0)
    }
}

/// Counts one parse result; returns the packet when it is usable.
fn classify(
    stats: &mut SapListenerStats,
    parsed: Result<SapPacket, SapError>,
    from: SocketAddr,
) -> Option<SapPacket> {
    stats.received += 1;
    match parsed {
        Ok(p) => {
            stats.decoded += 1;
            Some(p)
        }
        Err(SapError::Encrypted { .. }) => {
            stats.encrypted += 1;
            None
        }
        Err(
            e @ (SapError::ZeroHash { .. }
            | SapError::UnsupportedVersion { .. }
            | SapError::UnsupportedPayloadType(_)),
        ) => {
            stats.ignored += 1;
            tracing::debug!(%from, "SAP packet ignored: {e}");
            None
        }
        Err(e) => {
            stats.malformed += 1;
            tracing::debug!(%from, "malformed SAP packet: {e}");
            None
        }
    }
}

fn wildcard_socket(bind: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if bind.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&SockAddr::from(bind))?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Settings of a [`SapAnnouncer`].
#[derive(Debug, Clone)]
pub struct SapAnnouncerConfig {
    /// The interval before the bandwidth limit and the ±1/3 spread (RFC 2974 §3). AES67
    /// devices use 30 s; RFC 2974's 300 s is too slow for a studio patch panel.
    pub base_interval: Duration,
    /// Seed of the interval spread (0: derived from the clock and process id).
    pub seed: u64,
}

impl Default for SapAnnouncerConfig {
    fn default() -> Self {
        Self {
            base_interval: Duration::from_secs(30),
            seed: 0,
        }
    }
}

/// One session to announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SapSession {
    /// The SDP text.
    pub sdp: String,
    /// Where the announcements go, usually a SAP group on port 9875.
    pub dest: SocketAddr,
    /// Outgoing interface (kernel's choice when `None`).
    pub iface: Option<Interface>,
    /// Multicast TTL / hop limit.
    pub ttl: u32,
    /// Originating source in the SAP header; `None` takes the `o=` address when it is
    /// an IP address of the destination's family, else the interface address.
    pub origin: Option<IpAddr>,
}

/// Counters of a [`SapAnnouncer`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SapAnnouncerStats {
    /// Announcements sent.
    pub announcements: u64,
    /// Deletions sent.
    pub deletions: u64,
    /// Failed sends (or sockets that could not be opened).
    pub send_errors: u64,
}

#[derive(Debug, Default)]
struct SharedStats {
    announcements: AtomicU64,
    deletions: AtomicU64,
    send_errors: AtomicU64,
}

#[derive(Debug)]
enum Command {
    Set(String, SapSession),
    Remove(String),
    Stop,
}

/// A thread announcing a set of sessions, each under a caller-chosen name.
///
/// The first announcement of a session, and of each changed SDP, goes out at once; then
/// every [`announcement_interval`] (base interval, raised by the 4000 bit/s limit over
/// all our sessions, spread ±1/3). A removed session gets a deletion; so does every
/// session on [`SapAnnouncer::stop`] or drop. A new SDP version gets a new message-id
/// hash (RFC 2974 §5); the old key is not deleted explicitly, since listeners that key
/// on the `o=` session id would drop the new version too; it ages out.
#[derive(Debug)]
pub struct SapAnnouncer {
    tx: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<SharedStats>,
}

impl SapAnnouncer {
    /// Starts the announcer thread with no sessions.
    pub fn spawn(cfg: SapAnnouncerConfig) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(SharedStats::default());
        let seed = if cfg.seed != 0 {
            cfg.seed
        } else {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            t ^ (u64::from(std::process::id()) << 32) | 1
        };
        let worker = Worker {
            base: cfg.base_interval,
            rng: seed,
            sessions: BTreeMap::new(),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name("sap-announce".into())
            .spawn(move || worker.run(&rx))?;
        Ok(Self {
            tx,
            thread: Some(thread),
            stats,
        })
    }

    /// Adds the session `name`, or updates it (a changed SDP is announced at once).
    pub fn set(&self, name: &str, session: SapSession) -> io::Result<()> {
        self.send(Command::Set(name.to_owned(), session))
    }

    /// Removes the session `name` and sends its deletion.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        self.send(Command::Remove(name.to_owned()))
    }

    /// Counters so far.
    pub fn stats(&self) -> SapAnnouncerStats {
        SapAnnouncerStats {
            announcements: self.stats.announcements.load(Ordering::Relaxed),
            deletions: self.stats.deletions.load(Ordering::Relaxed),
            send_errors: self.stats.send_errors.load(Ordering::Relaxed),
        }
    }

    /// Sends a deletion for every session and joins the thread. Idempotent.
    pub fn stop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("SAP announcer thread panicked");
        }
    }

    fn send(&self, c: Command) -> io::Result<()> {
        self.tx
            .send(c)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "SAP announcer stopped"))
    }
}

impl Drop for SapAnnouncer {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug)]
struct Entry {
    session: SapSession,
    socket: Option<UdpSocket>,
    announce: Vec<u8>,
    delete: Vec<u8>,
    next_due: Instant,
}

#[derive(Debug)]
struct Worker {
    base: Duration,
    rng: u64,
    sessions: BTreeMap<String, Entry>,
    stats: Arc<SharedStats>,
}

impl Worker {
    fn run(mut self, rx: &mpsc::Receiver<Command>) {
        loop {
            let cmd = match self.sessions.values().map(|e| e.next_due).min() {
                Some(due) => {
                    let wait = due.saturating_duration_since(Instant::now());
                    match rx.recv_timeout(wait) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => Some(Command::Stop),
                    }
                }
                None => Some(rx.recv().unwrap_or(Command::Stop)),
            };
            match cmd {
                Some(Command::Set(name, s)) => self.set(name, s),
                Some(Command::Remove(name)) => {
                    if let Some(e) = self.sessions.remove(&name) {
                        self.send_delete(&e);
                    }
                }
                Some(Command::Stop) => {
                    for e in std::mem::take(&mut self.sessions).values() {
                        self.send_delete(e);
                    }
                    return;
                }
                None => self.announce_due(),
            }
        }
    }

    fn set(&mut self, name: String, session: SapSession) {
        // Taken out of the map so the bandwidth share below does not count it twice.
        if let Some(old) = self.sessions.remove(&name) {
            if old.session == session {
                self.sessions.insert(name, old);
                return;
            }
            if old.session.dest != session.dest || old.session.iface != session.iface {
                // Moving elsewhere: the old scope should forget it.
                self.send_delete(&old);
            }
        }
        let origin = origin_for(&session);
        let encode = |p: SapPacket| {
            p.to_bytes()
                .map_err(|e| tracing::error!("cannot encode SAP packet: {e}"))
                .unwrap_or_default()
        };
        let announce = encode(SapPacket::announce(origin, &session.sdp));
        let delete = encode(SapPacket::delete(origin, &session.sdp));
        let socket = match open_send_socket(session.dest, session.iface.as_ref(), session.ttl, 0) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(dest = %session.dest, "SAP send socket: {e}");
                self.stats.send_errors.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let mut entry = Entry {
            session,
            socket,
            announce,
            delete,
            next_due: Instant::now(),
        };
        self.send_announce(&mut entry);
        self.sessions.insert(name, entry);
    }

    fn announce_due(&mut self) {
        let now = Instant::now();
        let mut due: Vec<String> = Vec::new();
        for (name, e) in &self.sessions {
            if e.next_due <= now {
                due.push(name.clone());
            }
        }
        for name in due {
            if let Some(mut e) = self.sessions.remove(&name) {
                self.send_announce(&mut e);
                self.sessions.insert(name, e);
            }
        }
    }

    /// Sends `e`'s announcement and schedules the next one.
    fn send_announce(&mut self, e: &mut Entry) {
        if send(e.socket.as_ref(), &e.announce, &self.stats) {
            self.stats.announcements.fetch_add(1, Ordering::Relaxed);
        }
        // Our own ads share the scope's 4000 bit/s (RFC 2974 §3); the +28 counts the
        // IPv4 and UDP headers the limit is about.
        let total: usize = self
            .sessions
            .values()
            .map(|s| s.announce.len() + 28)
            .sum::<usize>()
            + e.announce.len()
            + 28;
        let r = self.next_random();
        let now = Instant::now();
        let wait = announcement_interval(total, self.base, r);
        // A day stands in for an interval too long for `Instant` (absurd configuration).
        e.next_due = now
            .checked_add(wait)
            .unwrap_or(now + Duration::from_secs(86_400));
    }

    fn send_delete(&self, e: &Entry) {
        if send(e.socket.as_ref(), &e.delete, &self.stats) {
            self.stats.deletions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// xorshift64*: uniform in [0, 1), enough for spreading announcement times.
    fn next_random(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let x = self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Sends `bytes`; counts and logs a failure. `true` when sent.
fn send(socket: Option<&UdpSocket>, bytes: &[u8], stats: &SharedStats) -> bool {
    let result = match socket {
        Some(s) if !bytes.is_empty() => s.send(bytes).map(|_| ()),
        _ => Err(io::Error::other("no socket or packet")),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!("SAP send failed: {e}");
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// The SAP originating source: configured, else the `o=` address, else the interface's.
fn origin_for(s: &SapSession) -> IpAddr {
    if let Some(o) = s.origin {
        return o;
    }
    let from_sdp = sap::origin_line(&s.sdp)
        .and_then(|l| l.split_whitespace().nth(5))
        .and_then(|a| a.parse::<IpAddr>().ok())
        .filter(|a| a.is_ipv4() == s.dest.is_ipv4());
    if let Some(a) = from_sdp {
        return a;
    }
    match (s.dest, s.iface.as_ref().and_then(|i| i.ipv4)) {
        (SocketAddr::V4(_), Some(a)) => a.into(),
        (SocketAddr::V4(_), None) => Ipv4Addr::UNSPECIFIED.into(),
        (SocketAddr::V6(_), _) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_prefers_config_then_sdp() {
        let mut s = SapSession {
            sdp: "v=0\r\no=- 1 1 IN IP4 10.1.2.3\r\n".into(),
            dest: "239.255.255.255:9875".parse().expect("addr"),
            iface: None,
            ttl: 1,
            origin: None,
        };
        assert_eq!(origin_for(&s), "10.1.2.3".parse::<IpAddr>().expect("ip"));
        s.origin = Some("10.9.9.9".parse().expect("ip"));
        assert_eq!(origin_for(&s), "10.9.9.9".parse::<IpAddr>().expect("ip"));
    }
}
