//! Embedded PTPv2 (IEEE 1588-2008) follower and grandmaster: Estuary's own event loop
//! around the `statime` library.
//!
//! `statime` provides the protocol (message codec, BMCA, port state machine, Kalman
//! servo); this module provides what its Linux daemon keeps private: the UDP sockets on
//! 319 (event) and 320 (general) joined to `224.0.1.129` (and `224.0.0.107` for peer
//! delay), software receive timestamps (`SO_TIMESTAMPNS`), transmit timestamps, the
//! timers, and a thread that runs it all.
//!
//! # The overlay clock
//! The system clock is never stepped or slewed. The servo steers an
//! [`statime::OverlayClock`] over `CLOCK_MONOTONIC`: PTP time = monotonic time + shift,
//! scaled by the servo's frequency correction. Everything else in Estuary reads PTP time
//! through [`PtpService::ptp_time_at`], which maps any monotonic instant to PTP time.
//!
//! Kernel receive timestamps are `CLOCK_REALTIME`; they are mapped to the monotonic clock
//! by the age of the packet (realtime now − timestamp), so an NTP step of the wall clock
//! cannot disturb the measurement.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use statime::config::{
    AcceptAnyMaster, ClockIdentity, DelayMechanism, InstanceConfig, LeapIndicator, PortConfig,
    PtpMinorVersion, TimePropertiesDS, TimeSource,
};
use statime::filters::{KalmanConfiguration, KalmanFilter};
use statime::observability::port::PortState;
use statime::port::{InBmca, NoForwardedTLVs, Port, PortAction, PortActionIterator, Running};
use statime::time::{Interval, Time};
use statime::{Clock, OverlayClock, PtpInstance};

use estuary_engine::time::MonoTime;

use crate::clock::{monotonic_now, realtime_now_ns, tai_now_ns};

/// The primary PTP multicast group (all messages but peer delay).
pub const PTP_PRIMARY_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 1, 129);
/// The peer-delay group (link local, never forwarded by routers).
pub const PTP_PDELAY_GROUP: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 107);
/// UDP port of event messages (timestamped: Sync, Delay_Req, Pdelay_*).
pub const PTP_EVENT_PORT: u16 = 319;
/// UDP port of general messages (Announce, Follow_Up, Delay_Resp...).
pub const PTP_GENERAL_PORT: u16 = 320;

/// TAI − UTC since 2017-01-01, announced as our grandmaster's `currentUtcOffset` when the
/// kernel's TAI offset is not set.
pub const TAI_UTC_OFFSET_S: i16 = 37;

/// Offsets within this bound (and no step in the last [`LOCK_SAMPLES`] measurements) make
/// the follower *locked*. Software timestamps on a LAN reach a few µs; 100 µs leaves room
/// for a loaded host and is still a tenth of an AES67 1 ms packet.
pub const LOCK_THRESHOLD_NS: f64 = 100_000.0;
/// Consecutive in-bound measurements needed to declare the lock.
pub const LOCK_SAMPLES: usize = 8;
/// A locked follower whose offset leaves ±1 ms is unlocked at once.
pub const UNLOCK_THRESHOLD_NS: f64 = 1_000_000.0;
/// Offset samples kept for the jitter statistics.
const OFFSET_WINDOW: usize = 128;

/// Which message intervals and delay mechanism to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtpProfile {
    /// AES67 media profile (AES67-2018 Annex A): Sync 8/s, Announce every 2 s, E2E delay.
    Aes67,
    /// IEEE 1588 default (delay request-response) profile: Sync 1/s, Announce every 2 s.
    Default,
}

impl PtpProfile {
    fn sync_log_interval(self) -> i8 {
        match self {
            PtpProfile::Aes67 => -3,
            PtpProfile::Default => 0,
        }
    }
    fn delay_req_log_interval(self) -> i8 {
        match self {
            PtpProfile::Aes67 => -3,
            PtpProfile::Default => 0,
        }
    }
}

/// Follow the best master, or offer to be it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PtpRole {
    /// Slave only: never becomes master.
    Follower,
    /// Becomes master when the BMCA says so (priorities decide against other masters).
    Grandmaster,
}

/// Settings of the embedded PTP clock.
#[derive(Debug, Clone)]
pub struct PtpSettings {
    pub role: PtpRole,
    pub profile: PtpProfile,
    pub domain: u8,
    /// Interface name or address; its IPv4 address is used for the multicast joins.
    pub interface: Option<String>,
    pub priority1: u8,
    pub priority2: u8,
    /// DSCP of every PTP packet sent (AES67 recommends EF, 46).
    pub dscp: u8,
}

/// A shared view of the PTP port, updated by the PTP thread.
#[derive(Debug, Clone, Default)]
pub struct PtpSnapshot {
    /// `listening`, `slave`, `master`, `passive`, `faulty`, `initializing`.
    pub port_state: String,
    /// A follower whose offset has stayed within [`LOCK_THRESHOLD_NS`].
    pub locked: bool,
    pub clock_identity: [u8; 8],
    /// The grandmaster followed (ours when we are master).
    pub grandmaster: Option<[u8; 8]>,
    pub grandmaster_priority1: u8,
    pub grandmaster_priority2: u8,
    pub grandmaster_class: u8,
    pub steps_removed: u16,
    pub domain: u8,
    /// Latest offset from the master (servo estimate), ns; positive when we are ahead.
    pub offset_ns: Option<f64>,
    pub mean_path_delay_ns: Option<f64>,
    /// Frequency correction the servo applies to the overlay clock, ppm.
    pub frequency_ppm: f64,
    /// Steps of the overlay clock (the servo jumps instead of slewing beyond 1 ms).
    pub steps: u64,
    /// Changes of grandmaster or of port state decided by the BMCA.
    pub bmca_changes: u64,
    /// Times the follower lost its lock.
    pub lock_losses: u64,
    /// Offset measurements taken (one per Sync).
    pub measurements: u64,
    /// Recent offsets, ns (at most 128), for jitter statistics.
    pub recent_offsets_ns: Vec<f64>,
    /// Packets that could not be sent.
    pub send_errors: u64,
    /// Event messages sent whose kernel transmit timestamp did not come (the time the send
    /// call returned was used instead).
    pub tx_timestamps_missed: u64,
    /// PTP packets received (event and general ports, any domain).
    pub packets_received: u64,
    /// TAI − UTC announced by the grandmaster, seconds.
    pub utc_offset_s: Option<i16>,
    /// The grandmaster's time is PTP (TAI) time.
    pub ptp_timescale: bool,
    /// Why the clock is not usable, when known (external mode: ptp4l does not answer).
    pub reason: Option<String>,
    /// External mode: polls of ptp4l's management socket that got no answer.
    pub management_no_answer: u64,
}

impl PtpSnapshot {
    /// Locked follower, or master of the domain: media time from this clock is network time.
    pub fn synchronized(&self) -> bool {
        self.locked || self.port_state == "master"
    }
}

/// The underlying read-only clock of the overlay: `CLOCK_MONOTONIC`.
#[derive(Debug, Clone, Copy)]
struct MonotonicBase;

impl Clock for MonotonicBase {
    type Error = io::Error;
    fn now(&self) -> Time {
        Time::from_nanos(monotonic_now().as_nanos())
    }
    fn step_clock(&mut self, _: statime::time::Duration) -> Result<Time, Self::Error> {
        Err(io::Error::other("the monotonic clock is read-only"))
    }
    fn set_frequency(&mut self, _: f64) -> Result<Time, Self::Error> {
        Err(io::Error::other("the monotonic clock is read-only"))
    }
    fn set_properties(&mut self, _: &TimePropertiesDS) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Debug)]
struct OverlayState {
    overlay: OverlayClock<MonotonicBase>,
    steps: u64,
    frequency_ppm: f64,
    /// Measurements since the last step (a step restarts the lock).
    since_step: u64,
}

/// The statime clock of the port: the shared overlay (read by other threads for media time).
#[derive(Debug, Clone)]
struct SharedOverlay(Arc<Mutex<OverlayState>>);

impl SharedOverlay {
    fn lock(&self) -> MutexGuard<'_, OverlayState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Clock for SharedOverlay {
    type Error = io::Error;
    fn now(&self) -> Time {
        self.lock().overlay.now()
    }
    fn step_clock(&mut self, offset: statime::time::Duration) -> Result<Time, Self::Error> {
        let mut s = self.lock();
        s.steps += 1;
        s.since_step = 0;
        tracing::info!(step_ns = offset.nanos_lossy(), "PTP: overlay clock stepped");
        s.overlay.step_clock(offset)
    }
    fn set_frequency(&mut self, ppm: f64) -> Result<Time, Self::Error> {
        let mut s = self.lock();
        s.frequency_ppm = ppm;
        s.overlay.set_frequency(ppm)
    }
    fn set_properties(&mut self, _: &TimePropertiesDS) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// The running PTP clock: a thread with its sockets, and the shared state.
#[derive(Debug)]
pub struct PtpService {
    overlay: SharedOverlay,
    snapshot: Arc<Mutex<PtpSnapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PtpService {
    /// Opens the sockets and starts the PTP thread.
    ///
    /// # Errors
    /// The interface does not exist or has no IPv4 address, or the PTP ports cannot be
    /// bound (another PTP daemon such as ptp4l already holds them).
    pub fn start(settings: PtpSettings) -> io::Result<Self> {
        let sockets = PtpSockets::open(&settings)?;
        let identity = clock_identity(sockets.ifindex);
        let mut overlay = OverlayClock::new(MonotonicBase);
        // Start at TAI, so a grandmaster serves PTP time and a follower's first step is small.
        let tai_offset = now_tai_ns() as i128 - monotonic_now().as_nanos() as i128;
        overlay
            .step_clock(statime::time::Duration::from_nanos(tai_offset as i64))
            .map_err(io::Error::other)?;
        let overlay = SharedOverlay(Arc::new(Mutex::new(OverlayState {
            overlay,
            steps: 0,
            frequency_ppm: 0.0,
            since_step: 0,
        })));
        let snapshot = Arc::new(Mutex::new(PtpSnapshot {
            port_state: "initializing".into(),
            clock_identity: identity.0,
            domain: settings.domain,
            ..PtpSnapshot::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let overlay = overlay.clone();
            let snapshot = Arc::clone(&snapshot);
            let stop = Arc::clone(&stop);
            thread::Builder::new().name("ptp".into()).spawn(move || {
                run(&settings, identity, &sockets, overlay, &snapshot, &stop);
            })?
        };
        Ok(Self {
            overlay,
            snapshot,
            stop,
            thread: Some(thread),
        })
    }

    /// The port's state now.
    pub fn snapshot(&self) -> PtpSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// PTP time (ns since the PTP epoch, TAI) at monotonic instant `t`.
    pub fn ptp_time_at(&self, t: MonoTime) -> u64 {
        let s = self.overlay.lock();
        let time = s
            .overlay
            .time_from_underlying(Time::from_nanos(t.as_nanos()));
        time_to_nanos(time)
    }

    /// PTP time now, ns since the PTP epoch.
    pub fn now_ns(&self) -> u64 {
        self.ptp_time_at(monotonic_now())
    }

    /// Stops the thread (also done on drop).
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PtpService {
    fn drop(&mut self) {
        self.stop();
    }
}

fn time_to_nanos(t: Time) -> u64 {
    t.secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(t.subsec_nanos()))
}

/// TAI now: `CLOCK_TAI` when the kernel knows the TAI offset, else UTC + 37 s (most hosts
/// never set it; then `CLOCK_TAI` equals `CLOCK_REALTIME`).
pub fn now_tai_ns() -> u64 {
    let tai = tai_now_ns();
    let utc = realtime_now_ns();
    if tai.abs_diff(utc) < 500_000_000 {
        utc + TAI_UTC_OFFSET_S as u64 * 1_000_000_000
    } else {
        tai
    }
}

/// EUI-64 from the interface's MAC (`xx:xx:xx:ff:fe:xx:xx:xx`), as IEEE 1588 suggests.
fn clock_identity(ifindex: u32) -> ClockIdentity {
    let mac = interface_mac(ifindex).unwrap_or_else(|| {
        // No MAC (loopback): a locally administered one derived from the process id.
        let pid = std::process::id().to_be_bytes();
        [0x02, 0x45, pid[0], pid[1], pid[2], pid[3]]
    });
    // EUI-64 as IEEE 1588-2008 7.5.2.2.2 and ptp4l: OUI, FF-FE, then the NIC part.
    ClockIdentity([mac[0], mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]])
}

fn interface_mac(ifindex: u32) -> Option<[u8; 6]> {
    // SIOCGIFHWADDR on a socket of the calling thread's namespace (sysfs shows the
    // namespace it was mounted in, which is not necessarily ours).
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None).ok()?;
    // SAFETY: ifreq is plain data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: ifr_name has IF_NAMESIZE bytes, as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, req.ifr_name.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: the fd is open and `req` is a valid ifreq naming the interface.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFHWADDR, &raw mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: SIOCGIFHWADDR filled the ifru_hwaddr member of the union.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (m, d) in mac.iter_mut().zip(data) {
        *m = d as u8;
    }
    (mac != [0; 6]).then_some(mac)
}

struct PtpSockets {
    event: UdpSocket,
    general: UdpSocket,
    ifindex: u32,
}

impl PtpSockets {
    fn open(settings: &PtpSettings) -> io::Result<Self> {
        let (addr, ifindex) = match &settings.interface {
            Some(spec) => {
                let iface = crate::mcast::resolve_interface(spec)
                    .map_err(|e| io::Error::new(io::ErrorKind::NotFound, e.to_string()))?;
                let addr = iface.ipv4.ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::AddrNotAvailable,
                        format!("interface {} has no IPv4 address for PTP", iface.name),
                    )
                })?;
                (addr, iface.index)
            }
            None => (Ipv4Addr::UNSPECIFIED, 0),
        };
        let event = open_port(PTP_EVENT_PORT, addr, ifindex, settings.dscp)?;
        let general = open_port(PTP_GENERAL_PORT, addr, ifindex, settings.dscp)?;
        Ok(Self {
            event,
            general,
            ifindex,
        })
    }

    fn send(&self, event: bool, link_local: bool, data: &[u8]) -> io::Result<()> {
        let group = if link_local {
            PTP_PDELAY_GROUP
        } else {
            PTP_PRIMARY_GROUP
        };
        let (socket, port) = if event {
            (&self.event, PTP_EVENT_PORT)
        } else {
            (&self.general, PTP_GENERAL_PORT)
        };
        socket
            .send_to(data, SocketAddrV4::new(group, port))
            .map(|_| ())
    }
}

fn open_port(port: u16, iface: Ipv4Addr, ifindex: u32, dscp: u8) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    let bind = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port));
    socket.bind(&bind.into()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind PTP port {port}: {e} (is ptp4l running? use mode = \"external\")"),
        )
    })?;
    if ifindex != 0 {
        socket.bind_device_by_index_v4(std::num::NonZeroU32::new(ifindex))?;
    }
    let on = socket2::InterfaceIndexOrAddress::Index(ifindex);
    for group in [PTP_PRIMARY_GROUP, PTP_PDELAY_GROUP] {
        socket.join_multicast_v4_n(&group, &on)?;
    }
    socket.set_multicast_if_v4(&iface)?;
    socket.set_multicast_ttl_v4(1)?;
    socket.set_multicast_loop_v4(false)?;
    socket.set_multicast_all_v4(false)?;
    socket.set_tos_v4(u32::from(dscp) << 2)?;
    if port == PTP_EVENT_PORT {
        set_timestamping(&socket)?;
    } else {
        set_timestampns(&socket)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

fn set_timestampns(socket: &Socket) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the fd is open; `one` is a c_int that outlives the call, its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Software receive and transmit timestamps from the kernel (`SO_TIMESTAMPING`): the
/// transmit stamp is taken by the driver as the packet leaves, not when `sendto` returns,
/// so a preempted PTP thread does not bias the delay measurement.
fn set_timestamping(socket: &Socket) -> io::Result<()> {
    let flags: libc::c_int = (libc::SOF_TIMESTAMPING_TX_SOFTWARE
        | libc::SOF_TIMESTAMPING_RX_SOFTWARE
        | libc::SOF_TIMESTAMPING_SOFTWARE
        | libc::SOF_TIMESTAMPING_OPT_TSONLY) as libc::c_int;
    // SAFETY: the fd is open; `flags` is a c_int that outlives the call, its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPING,
            (&raw const flags).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits (at most 20 ms) for the kernel's transmit timestamp of the last packet sent on
/// `socket`, mapped to the monotonic clock.
fn transmit_timestamp(socket: &UdpSocket) -> Option<MonoTime> {
    let mut fd = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call. POLLERR is always reported.
    let ready = unsafe { libc::poll(&raw mut fd, 1, 20) };
    if ready <= 0 {
        return None;
    }
    let mut buf = [0u8; 256];
    recv_with_timestamp(socket, &mut buf, libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT)
        .ok()
        .filter(|(_, _, kernel)| *kernel)
        .map(|(_, at, _)| at)
}

/// Receives one datagram with its kernel timestamp mapped to the monotonic clock.
fn recv_timestamped(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<(usize, MonoTime)> {
    recv_with_timestamp(socket, buf, libc::MSG_DONTWAIT).map(|(n, at, _)| (n, at))
}

/// `recvmsg` with flags; the timestamp (monotonic) and whether the kernel gave one.
fn recv_with_timestamp(
    socket: &UdpSocket,
    buf: &mut [u8],
    flags: libc::c_int,
) -> io::Result<(usize, MonoTime, bool)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [MaybeUninit::<u64>::uninit(); 16];
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: `msg` points to `iov` (over `buf`) and `control`, all alive for the call.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &raw mut msg, flags) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mono_now = monotonic_now();
    let rt_now = realtime_now_ns();
    let mut stamp = None;
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
    while !cmsg.is_null() {
        // SAFETY: `cmsg` is a valid header inside the control buffer.
        let c = unsafe { &*cmsg };
        // SCM_TIMESTAMPING carries three timespecs, the first the software stamp;
        // SCM_TIMESTAMPNS one. Either way the software stamp comes first.
        if c.cmsg_level == libc::SOL_SOCKET
            && (c.cmsg_type == libc::SCM_TIMESTAMPNS || c.cmsg_type == libc::SO_TIMESTAMPING)
        {
            // SAFETY: both payloads start with a timespec; read unaligned.
            let ts: libc::timespec =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if ts.tv_sec != 0 || ts.tv_nsec != 0 {
                stamp = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            }
        }
        // SAFETY: as above; returns null after the last header.
        cmsg = unsafe { libc::CMSG_NXTHDR(&raw const msg, cmsg) };
    }
    let age = stamp.map_or(0, |s| rt_now.saturating_sub(s));
    let at = MonoTime::from_nanos(mono_now.as_nanos().saturating_sub(age));
    Ok((n as usize, at, stamp.is_some()))
}

/// Deadlines of the port's timers, on the monotonic clock.
#[derive(Debug, Default)]
struct Timers {
    announce: Option<MonoTime>,
    sync: Option<MonoTime>,
    delay_request: Option<MonoTime>,
    announce_receipt: Option<MonoTime>,
    filter_update: Option<MonoTime>,
}

impl Timers {
    fn next(&self) -> Option<MonoTime> {
        [
            self.announce,
            self.sync,
            self.delay_request,
            self.announce_receipt,
            self.filter_update,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

type EstuaryPort<'a> = Port<
    'a,
    Running,
    AcceptAnyMaster,
    rand08::rngs::StdRng,
    SharedOverlay,
    KalmanFilter,
    std::cell::RefCell<statime::PtpInstanceState>,
>;
type BmcaPort<'a> = Port<
    'a,
    InBmca,
    AcceptAnyMaster,
    rand08::rngs::StdRng,
    SharedOverlay,
    KalmanFilter,
    std::cell::RefCell<statime::PtpInstanceState>,
>;

/// Carries out the port's actions; returns a pending transmit timestamp to report.
struct Actor<'s> {
    sockets: &'s PtpSockets,
    overlay: &'s SharedOverlay,
    timers: &'s mut Timers,
    send_errors: u64,
    tx_timestamps_missed: u64,
}

impl Actor<'_> {
    fn perform(
        &mut self,
        actions: PortActionIterator<'_>,
    ) -> Option<(statime::port::TimestampContext, Time)> {
        let mut pending = None;
        for action in actions {
            let now = monotonic_now();
            let after =
                |d: Duration| Some(MonoTime::from_nanos(now.as_nanos() + d.as_nanos() as u64));
            match action {
                PortAction::SendEvent {
                    context,
                    data,
                    link_local,
                } => {
                    if self.sockets.send(true, link_local, data).is_err() {
                        self.send_errors += 1;
                    }
                    // The kernel's transmit stamp; failing that, the time send returned.
                    let ts = match transmit_timestamp(&self.sockets.event) {
                        Some(at) => self
                            .overlay
                            .lock()
                            .overlay
                            .time_from_underlying(Time::from_nanos(at.as_nanos())),
                        None => {
                            self.tx_timestamps_missed += 1;
                            self.overlay.now()
                        }
                    };
                    pending = Some((context, ts));
                }
                PortAction::SendGeneral { data, link_local } => {
                    if self.sockets.send(false, link_local, data).is_err() {
                        self.send_errors += 1;
                    }
                }
                PortAction::ResetAnnounceTimer { duration } => {
                    self.timers.announce = after(duration)
                }
                PortAction::ResetSyncTimer { duration } => self.timers.sync = after(duration),
                PortAction::ResetDelayRequestTimer { duration } => {
                    self.timers.delay_request = after(duration);
                }
                PortAction::ResetAnnounceReceiptTimer { duration } => {
                    self.timers.announce_receipt = after(duration);
                }
                PortAction::ResetFilterUpdateTimer { duration } => {
                    self.timers.filter_update = after(duration);
                }
                PortAction::ForwardTLV { .. } => {}
            }
        }
        pending
    }
}

/// Reports transmit timestamps until the port has no more event message to send.
fn finish(
    port: &mut EstuaryPort<'_>,
    actor: &mut Actor<'_>,
    mut pending: Option<(statime::port::TimestampContext, Time)>,
) {
    while let Some((context, ts)) = pending.take() {
        pending = actor.perform(port.handle_send_timestamp(context, ts));
    }
}

fn run(
    settings: &PtpSettings,
    identity: ClockIdentity,
    sockets: &PtpSockets,
    overlay: SharedOverlay,
    snapshot: &Mutex<PtpSnapshot>,
    stop: &AtomicBool,
) {
    use rand08::SeedableRng;
    let follower = settings.role == PtpRole::Follower;
    // statime 0.4 announces clock class 248 whatever the role, and its BMCA still ranks a
    // slave-only instance: with equal priorities a follower with the lower identity would
    // rank itself best and never follow. The worst priorities (255) keep it out of the way.
    let instance_config = InstanceConfig {
        clock_identity: identity,
        priority_1: if follower { 255 } else { settings.priority1 },
        priority_2: if follower { 255 } else { settings.priority2 },
        domain_number: settings.domain,
        slave_only: follower,
        sdo_id: statime::config::SdoId::default(),
        path_trace: false,
    };
    let time_properties = TimePropertiesDS::new_ptp_time(
        Some(TAI_UTC_OFFSET_S),
        LeapIndicator::NoLeap,
        false,
        false,
        TimeSource::InternalOscillator,
    );
    let instance = PtpInstance::<KalmanFilter>::new(instance_config, time_properties);
    let port_config = PortConfig {
        acceptable_master_list: AcceptAnyMaster,
        delay_mechanism: DelayMechanism::E2E {
            interval: Interval::from_log_2(settings.profile.delay_req_log_interval()),
        },
        announce_interval: Interval::from_log_2(1),
        announce_receipt_timeout: 3,
        sync_interval: Interval::from_log_2(settings.profile.sync_log_interval()),
        master_only: false,
        delay_asymmetry: statime::time::Duration::ZERO,
        minor_ptp_version: PtpMinorVersion::Zero,
    };
    let seed = u64::from_le_bytes(identity.0) ^ monotonic_now().as_nanos();
    let bmca_port: BmcaPort<'_> = instance.add_port(
        port_config,
        KalmanConfiguration::default(),
        overlay.clone(),
        rand08::rngs::StdRng::seed_from_u64(seed),
    );
    let mut timers = Timers::default();
    let mut actor = Actor {
        sockets,
        overlay: &overlay,
        timers: &mut timers,
        send_errors: 0,
        tx_timestamps_missed: 0,
    };
    let (mut port, actions) = bmca_port.end_bmca();
    let _ = actor.perform(actions);
    let mut tracker = LockTracker::default();
    let bmca_interval = instance.bmca_interval();
    let mut next_bmca = monotonic_now().as_nanos() + bmca_interval.as_nanos() as u64;
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Acquire) {
        let now = monotonic_now().as_nanos();
        let deadline = actor
            .timers
            .next()
            .map_or(next_bmca, |t| t.as_nanos().min(next_bmca))
            .min(now + 100_000_000);
        let timeout_ms = deadline.saturating_sub(now).div_ceil(1_000_000);
        let mut fds = [
            libc::pollfd {
                fd: sockets.event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sockets.general.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is a valid array of two pollfd for the duration of the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms as libc::c_int) };
        let mut measured = false;
        let mut received = 0;
        while let Ok((n, at)) = recv_timestamped(&sockets.event, &mut buf) {
            let ts = overlay
                .lock()
                .overlay
                .time_from_underlying(Time::from_nanos(at.as_nanos()));
            let data = &buf[..n];
            received += 1;
            measured |= data.first().is_some_and(|b| b & 0x0f == 0);
            {
                let pending = actor.perform(port.handle_event_receive(data, ts));
                finish(&mut port, &mut actor, pending);
            }
        }
        while let Ok((n, _)) = recv_timestamped(&sockets.general, &mut buf) {
            let data = &buf[..n];
            received += 1;
            // Follow_Up completes a two-step Sync measurement.
            measured |= data.first().is_some_and(|b| b & 0x0f == 0x8);
            {
                let pending = actor.perform(port.handle_general_receive(data));
                finish(&mut port, &mut actor, pending);
            }
        }
        let now = monotonic_now();
        let due = |t: &mut Option<MonoTime>| {
            let fire = t.is_some_and(|t| t <= now);
            if fire {
                *t = None;
            }
            fire
        };
        if due(&mut actor.timers.announce) {
            {
                let pending = actor.perform(port.handle_announce_timer(&mut NoForwardedTLVs));
                finish(&mut port, &mut actor, pending);
            }
        }
        if due(&mut actor.timers.sync) {
            {
                let pending = actor.perform(port.handle_sync_timer());
                finish(&mut port, &mut actor, pending);
            }
        }
        if due(&mut actor.timers.delay_request) {
            {
                let pending = actor.perform(port.handle_delay_request_timer());
                finish(&mut port, &mut actor, pending);
            }
        }
        if due(&mut actor.timers.announce_receipt) {
            {
                let pending = actor.perform(port.handle_announce_receipt_timer());
                finish(&mut port, &mut actor, pending);
            }
        }
        if due(&mut actor.timers.filter_update) {
            {
                let pending = actor.perform(port.handle_filter_update_timer());
                finish(&mut port, &mut actor, pending);
            }
        }
        if now.as_nanos() >= next_bmca {
            let mut bmca = port.start_bmca();
            instance.bmca(&mut [&mut bmca]);
            let (running, actions) = bmca.end_bmca();
            port = running;
            let _ = actor.perform(actions);
            next_bmca = now.as_nanos() + bmca_interval.as_nanos() as u64;
        }
        let mut snap = snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        update_snapshot(
            &mut snap,
            &instance,
            &port,
            &overlay,
            &mut tracker,
            measured,
        );
        snap.send_errors = actor.send_errors;
        snap.tx_timestamps_missed = actor.tx_timestamps_missed;
        snap.packets_received += received;
    }
}

/// Follows the lock from the servo's offsets.
#[derive(Debug, Default)]
struct LockTracker {
    in_bound: usize,
    last_state: Option<String>,
    last_gm: Option<[u8; 8]>,
}

fn update_snapshot(
    snap: &mut PtpSnapshot,
    instance: &PtpInstance<KalmanFilter>,
    port: &EstuaryPort<'_>,
    overlay: &SharedOverlay,
    tracker: &mut LockTracker,
    measured: bool,
) {
    let port_ds = port.port_ds();
    let state = match port_ds.port_state {
        PortState::Faulty => "faulty",
        PortState::Listening => "listening",
        PortState::Master => "master",
        PortState::Passive => "passive",
        PortState::Slave => "slave",
        PortState::Initializing => "initializing",
        PortState::Disabled => "disabled",
        PortState::PreMaster => "pre_master",
        PortState::Uncalibrated => "uncalibrated",
    };
    let parent = instance.parent_ds();
    let gm = parent.grandmaster_identity.0;
    if tracker.last_state.as_deref() != Some(state) || tracker.last_gm != Some(gm) {
        if tracker.last_state.is_some() {
            snap.bmca_changes += 1;
            tracing::info!(
                state,
                grandmaster = %format_identity(&gm),
                "PTP: port state or grandmaster changed"
            );
        }
        tracker.last_state = Some(state.to_owned());
        tracker.last_gm = Some(gm);
        tracker.in_bound = 0;
    }
    snap.port_state = state.to_owned();
    snap.grandmaster = Some(gm);
    snap.grandmaster_priority1 = parent.grandmaster_priority_1;
    snap.grandmaster_priority2 = parent.grandmaster_priority_2;
    snap.grandmaster_class = parent.grandmaster_clock_quality.clock_class;
    let current = instance.current_ds(port.port_current_ds_contribution());
    snap.steps_removed = current.steps_removed;
    let props = instance.time_properties_ds();
    snap.utc_offset_s = props.utc_offset();
    snap.ptp_timescale = props.is_ptp();
    let (steps, frequency_ppm, since_step) = {
        let mut o = overlay.lock();
        if measured {
            o.since_step += 1;
        }
        (o.steps, o.frequency_ppm, o.since_step)
    };
    snap.steps = steps;
    snap.frequency_ppm = frequency_ppm;
    let estimate = port.port_current_ds_contribution();
    snap.mean_path_delay_ns = estimate.as_ref().map(|e| e.mean_delay.nanos_lossy());
    snap.offset_ns = estimate
        .as_ref()
        .map(|e| e.offset_from_master.nanos_lossy());
    if measured && let Some(offset) = snap.offset_ns {
        snap.measurements += 1;
        if snap.recent_offsets_ns.len() == OFFSET_WINDOW {
            snap.recent_offsets_ns.remove(0);
        }
        snap.recent_offsets_ns.push(offset);
        if offset.abs() <= LOCK_THRESHOLD_NS && since_step > 1 {
            tracker.in_bound += 1;
        } else {
            tracker.in_bound = 0;
        }
    }
    let was = snap.locked;
    snap.locked = state == "slave"
        && if was {
            snap.offset_ns
                .is_some_and(|o| o.abs() <= UNLOCK_THRESHOLD_NS)
                && since_step > 0
        } else {
            tracker.in_bound >= LOCK_SAMPLES
        };
    if was && !snap.locked {
        snap.lock_losses += 1;
        tracker.in_bound = 0;
        tracing::warn!(state, "PTP: lock lost");
    } else if !was && snap.locked {
        tracing::info!(grandmaster = %format_identity(&gm), "PTP: locked");
    }
}

/// `00-1D-C1-FF-FE-12-34-56`, the form of AES67 SDP `ts-refclk`.
pub fn format_identity(id: &[u8; 8]) -> String {
    id.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_written_as_in_aes67_sdp() {
        let id = [0x00, 0x1d, 0xc1, 0xff, 0xfe, 0x12, 0x34, 0x56];
        assert_eq!(format_identity(&id), "00-1D-C1-FF-FE-12-34-56");
    }

    #[test]
    fn tai_is_utc_plus_37_s_when_the_kernel_offset_is_unset() {
        let tai = now_tai_ns();
        let utc = realtime_now_ns();
        let diff = tai.abs_diff(utc);
        assert!(diff > 36_000_000_000 && diff < 38_000_000_000, "{diff}");
    }

    #[test]
    fn timers_pick_the_earliest_deadline() {
        let t = Timers {
            sync: Some(MonoTime::from_nanos(5)),
            announce: Some(MonoTime::from_nanos(3)),
            ..Timers::default()
        };
        assert_eq!(t.next(), Some(MonoTime::from_nanos(3)));
        assert_eq!(Timers::default().next(), None);
    }
}
