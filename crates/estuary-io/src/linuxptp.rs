//! `[clock] mode = "external"`: the host runs linuxptp (`ptp4l`, and `phc2sys` when the NIC
//! has a PHC) and Estuary follows it instead of running PTP itself.
//!
//! - **Time** comes from the host: `CLOCK_TAI` (or `CLOCK_REALTIME` + the UTC offset ptp4l
//!   reports, when the kernel's TAI offset is not set), or a PHC device (`/dev/ptp0`) read
//!   with `clock_gettime` on its dynamic clock id. linuxptp disciplines that clock; Estuary
//!   only reads it.
//! - **State** comes from ptp4l's management socket (a UNIX datagram socket,
//!   `/var/run/ptp4l` by default): every [`POLL_INTERVAL`] the thread sends GET
//!   TIME_STATUS_NP, PORT_DATA_SET, PARENT_DATA_SET, CURRENT_DATA_SET and
//!   TIME_PROPERTIES_DATA_SET, as `pmc -u -b 0` would (codec: `estuary_wire::ptp_mgmt`), and
//!   turns the answers into the same [`PtpSnapshot`] the embedded clock publishes.
//!
//! Our end of the socket has an abstract address (`\0estuary-ptp4l-<pid>-<n>`): nothing is
//! left in `/var/run`, and it needs no writable directory.

use std::io;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use estuary_engine::time::MonoTime;
use estuary_wire::ptp_mgmt::{
    self, Body, CurrentDataSet, ManagementId, ParentDataSet, PortDataSet, PortIdentity, PortState,
    TimePropertiesDataSet, TimeStatusNp,
};

use crate::clock::{monotonic_now, realtime_now_ns, tai_now_ns};
use crate::ptp::{
    LOCK_SAMPLES, LOCK_THRESHOLD_NS, PtpSnapshot, TAI_UTC_OFFSET_S, UNLOCK_THRESHOLD_NS,
};

/// ptp4l's management socket when its configuration does not set `uds_address`.
pub const DEFAULT_PTP4L_SOCKET: &str = "/var/run/ptp4l";
/// How often ptp4l is asked (its servo measures 1 to 8 times a second).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long to wait for ptp4l's answers to one poll.
const ANSWER_TIMEOUT: Duration = Duration::from_millis(200);
/// Polls without an answer after which a locked clock is unlocked (ptp4l stopped: nobody
/// disciplines the host clock any more).
const SILENT_POLLS_TO_UNLOCK: u32 = 2;
/// A jump of `CLOCK_REALTIME` against `CLOCK_MONOTONIC` larger than this between two polls
/// is a step of the host clock (a slew cannot move it that far in 250 ms).
const STEP_THRESHOLD_NS: i64 = 1_000_000;
/// Offsets kept for the jitter statistics (as the embedded clock).
const OFFSET_WINDOW: usize = 128;

/// How to follow the host's linuxptp.
#[derive(Debug, Clone)]
pub struct ExternalSettings {
    /// ptp4l's `uds_address`.
    pub socket: PathBuf,
    /// ptp4l's `domainNumber` (management messages carry it).
    pub domain: u8,
    /// Read time from this PHC (`/dev/ptp0`) instead of the system clock.
    pub phc: Option<PathBuf>,
}

/// The clock linuxptp disciplines.
#[derive(Debug)]
enum HostClock {
    /// `CLOCK_REALTIME` / `CLOCK_TAI` (software timestamps, or phc2sys copying the PHC).
    System,
    /// A PTP hardware clock: its time is PTP time.
    Phc {
        // Kept open: the dynamic clock id is valid only while the descriptor is.
        _file: std::fs::File,
        id: libc::clockid_t,
    },
}

impl HostClock {
    fn open(phc: Option<&Path>) -> io::Result<Self> {
        let Some(path) = phc else {
            return Ok(HostClock::System);
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .or_else(|_| std::fs::File::open(path))
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        // FD_TO_CLOCKID of the kernel's posix-clock API.
        let id = ((!(file.as_raw_fd() as libc::clockid_t)) << 3) | 3;
        let clock = HostClock::Phc { _file: file, id };
        clock.read(id).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{} is not a PTP hardware clock: {e}", path.display()),
            )
        })?;
        Ok(clock)
    }

    fn read(&self, id: libc::clockid_t) -> io::Result<u64> {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; an invalid clock id only makes the
        // call fail with EINVAL, which is returned.
        let rc = unsafe { libc::clock_gettime(id, &mut ts) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((ts.tv_sec as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec as u64))
    }

    /// PTP time now, ns. `utc_offset_s` is what CLOCK_REALTIME lags PTP time by.
    fn now_ns(&self, utc_offset_s: i64) -> u64 {
        match self {
            HostClock::System => system_ptp_time_ns(utc_offset_s),
            HostClock::Phc { id, .. } => self
                .read(*id)
                .unwrap_or_else(|_| system_ptp_time_ns(utc_offset_s)),
        }
    }

    /// The frequency correction linuxptp applies to this clock, ppm.
    fn frequency_ppm(&self) -> Option<f64> {
        let id = match self {
            HostClock::System => libc::CLOCK_REALTIME,
            HostClock::Phc { id, .. } => *id,
        };
        // SAFETY: an all-zero timex is valid (modes = 0: read only).
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        // SAFETY: `tx` is a valid, writable timex; with modes = 0 nothing is changed.
        let rc = unsafe { libc::clock_adjtime(id, &mut tx) };
        (rc >= 0).then(|| tx.freq as f64 / 65536.0)
    }
}

/// PTP time from the system clock: `CLOCK_TAI` when the kernel's TAI offset matches the
/// grandmaster's, else `CLOCK_REALTIME` + that offset.
fn system_ptp_time_ns(utc_offset_s: i64) -> u64 {
    let utc = realtime_now_ns();
    let tai = tai_now_ns();
    let kernel_offset = tai as i128 - utc as i128;
    if (kernel_offset - i128::from(utc_offset_s) * 1_000_000_000).abs() < 500_000_000 {
        tai
    } else {
        (i128::from(utc) + i128::from(utc_offset_s) * 1_000_000_000).max(0) as u64
    }
}

/// Following the host's ptp4l.
#[derive(Debug)]
pub struct ExternalService {
    clock: Arc<HostClock>,
    /// CLOCK_REALTIME's lag behind PTP time, s (ptp4l's `currentUtcOffset` when the
    /// grandmaster uses the PTP timescale, 0 for an arbitrary timescale).
    utc_offset_s: Arc<AtomicI64>,
    synchronized: Arc<AtomicBool>,
    snapshot: Arc<Mutex<PtpSnapshot>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

static CLIENTS: AtomicU32 = AtomicU32::new(0);

impl ExternalService {
    /// Opens the PHC (when configured) and our end of the management socket, and starts
    /// polling ptp4l. A ptp4l that is not running yet is not an error: the state says so
    /// until it answers.
    ///
    /// # Errors
    /// The PHC cannot be opened or is not a clock; the socket cannot be created.
    pub fn start(settings: ExternalSettings) -> io::Result<Self> {
        let clock = Arc::new(HostClock::open(settings.phc.as_deref())?);
        let name = format!(
            "estuary-ptp4l-{}-{}",
            std::process::id(),
            CLIENTS.fetch_add(1, Ordering::Relaxed)
        );
        let socket = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)?;
        socket.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        let utc_offset_s = Arc::new(AtomicI64::new(i64::from(TAI_UTC_OFFSET_S)));
        let synchronized = Arc::new(AtomicBool::new(false));
        let snapshot = Arc::new(Mutex::new(PtpSnapshot {
            port_state: "initializing".into(),
            domain: settings.domain,
            ..PtpSnapshot::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (clock, utc, sync, snap, stop) = (
                Arc::clone(&clock),
                Arc::clone(&utc_offset_s),
                Arc::clone(&synchronized),
                Arc::clone(&snapshot),
                Arc::clone(&stop),
            );
            thread::Builder::new()
                .name("ptp4l-poll".into())
                .spawn(move || poll_loop(&settings, &socket, &clock, &utc, &sync, &snap, &stop))?
        };
        Ok(Self {
            clock,
            utc_offset_s,
            synchronized,
            snapshot,
            stop,
            thread: Some(thread),
        })
    }

    pub fn snapshot(&self) -> PtpSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Locked (or ptp4l is the grandmaster): cheap, for senders' per-packet use.
    pub fn synchronized(&self) -> bool {
        self.synchronized.load(Ordering::Acquire)
    }

    /// PTP time now, ns since the PTP epoch.
    pub fn now_ns(&self) -> u64 {
        self.clock.now_ns(self.utc_offset_s.load(Ordering::Relaxed))
    }

    /// PTP time at monotonic instant `t`.
    pub fn ptp_time_at(&self, t: MonoTime) -> u64 {
        let now_mono = monotonic_now();
        let now = self.now_ns();
        let age = i128::from(now_mono.as_nanos()) - i128::from(t.as_nanos());
        (i128::from(now) - age).max(0) as u64
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ExternalService {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One round of answers from ptp4l.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ptp4lState {
    /// The port ptp4l follows on (slave, else uncalibrated, else its first port).
    pub port: Option<PortDataSet>,
    pub current: Option<CurrentDataSet>,
    pub parent: Option<ParentDataSet>,
    pub time_properties: Option<TimePropertiesDataSet>,
    pub time_status: Option<TimeStatusNp>,
}

impl Ptp4lState {
    fn answered(&self) -> bool {
        self.port.is_some() || self.time_status.is_some()
    }

    fn take(&mut self, body: Body) {
        match body {
            Body::PortDataSet(p) => {
                let rank = |s: PortState| match s {
                    PortState::Slave => 0,
                    PortState::Uncalibrated => 1,
                    PortState::Master => 2,
                    _ => 3,
                };
                if self
                    .port
                    .is_none_or(|old| rank(p.port_state) < rank(old.port_state))
                {
                    self.port = Some(p);
                }
            }
            Body::CurrentDataSet(c) => self.current = Some(c),
            Body::ParentDataSet(p) => self.parent = Some(p),
            Body::TimePropertiesDataSet(t) => self.time_properties = Some(t),
            Body::TimeStatusNp(t) => self.time_status = Some(t),
            _ => {}
        }
    }

    /// CLOCK_REALTIME's lag behind PTP time under ptp4l: the UTC offset for a PTP-timescale
    /// grandmaster, none for an arbitrary timescale (ptp4l then sets the clock to it as is).
    pub fn utc_offset_s(&self) -> Option<i64> {
        let t = self.time_properties?;
        Some(if t.ptp_timescale() {
            if t.utc_offset_valid() || t.current_utc_offset != 0 {
                i64::from(t.current_utc_offset)
            } else {
                i64::from(TAI_UTC_OFFSET_S)
            }
        } else {
            0
        })
    }
}

const QUERIES: [ManagementId; 5] = [
    ManagementId::TimeStatusNp,
    ManagementId::PortDataSet,
    ManagementId::ParentDataSet,
    ManagementId::CurrentDataSet,
    ManagementId::TimePropertiesDataSet,
];

/// Asks ptp4l once. `Err` says why nothing came back.
fn ask(
    socket: &UnixDatagram,
    target: &Path,
    domain: u8,
    sequence: &mut u16,
) -> Result<Ptp4lState, String> {
    let source = PortIdentity {
        clock_identity: [0; 8],
        port: (std::process::id() & 0xffff) as u16,
    };
    let first = *sequence;
    for id in QUERIES {
        let get = ptp_mgmt::encode_get(id, domain, source, *sequence);
        *sequence = sequence.wrapping_add(1);
        socket
            .send_to(&get, target)
            .map_err(|e| format!("ptp4l does not answer on {}: {e}", target.display()))?;
    }
    let mut state = Ptp4lState::default();
    let mut buf = [0u8; ptp_mgmt::MAX_MESSAGE_LEN];
    let deadline = Instant::now() + ANSWER_TIMEOUT;
    let mut expected = QUERIES.len();
    // A multi-port ptp4l answers PORT_DATA_SET once per port: read until quiet.
    while Instant::now() < deadline {
        let Ok(n) = socket.recv(&mut buf) else {
            break;
        };
        let Ok(m) = ptp_mgmt::parse(buf.get(..n).unwrap_or(&[])) else {
            continue;
        };
        if m.sequence.wrapping_sub(first) >= QUERIES.len() as u16 {
            continue; // a late answer to an earlier poll
        }
        if let Body::Error { management_id, .. } = m.body {
            tracing::debug!(management_id, "ptp4l refused a management GET");
        } else {
            state.take(m.body);
        }
        expected = expected.saturating_sub(1);
        if expected == 0 {
            let _ = socket.set_read_timeout(Some(Duration::from_millis(5)));
        }
    }
    let _ = socket.set_read_timeout(Some(ANSWER_TIMEOUT));
    if state.answered() {
        Ok(state)
    } else {
        Err(format!(
            "ptp4l does not answer on {} (domain {domain})",
            target.display()
        ))
    }
}

fn poll_loop(
    settings: &ExternalSettings,
    socket: &UnixDatagram,
    clock: &HostClock,
    utc_offset: &AtomicI64,
    synchronized: &AtomicBool,
    snapshot: &Mutex<PtpSnapshot>,
    stop: &AtomicBool,
) {
    let mut tracker = Tracker::default();
    let mut sequence = 0u16;
    while !stop.load(Ordering::Acquire) {
        let started = Instant::now();
        let answer = ask(socket, &settings.socket, settings.domain, &mut sequence);
        if let Ok(state) = &answer
            && let Some(offset) = state.utc_offset_s()
        {
            utc_offset.store(offset, Ordering::Relaxed);
        }
        let host = HostReading {
            realtime_minus_mono_ns: realtime_now_ns() as i64 - monotonic_now().as_nanos() as i64,
            frequency_ppm: clock.frequency_ppm(),
        };
        {
            let mut snap = snapshot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            tracker.apply(&mut snap, answer.as_ref().map_err(String::as_str), host);
            synchronized.store(snap.synchronized(), Ordering::Release);
        }
        thread::sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
    }
}

/// What the poll thread reads of the host clock itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostReading {
    pub realtime_minus_mono_ns: i64,
    pub frequency_ppm: Option<f64>,
}

/// Turns rounds of ptp4l's answers into the snapshot: lock (the embedded clock's rule on
/// ptp4l's measurements), BMCA changes, host clock steps, jitter window. Pure.
#[derive(Debug, Default)]
pub struct Tracker {
    last_state: Option<&'static str>,
    last_gm: Option<[u8; 8]>,
    last_ingress: Option<i64>,
    in_bound: usize,
    silent_polls: u32,
    last_host: Option<i64>,
}

impl Tracker {
    pub fn apply(
        &mut self,
        snap: &mut PtpSnapshot,
        answer: Result<&Ptp4lState, &str>,
        host: HostReading,
    ) {
        if let Some(prev) = self.last_host.replace(host.realtime_minus_mono_ns)
            && (host.realtime_minus_mono_ns - prev).abs() > STEP_THRESHOLD_NS
        {
            snap.steps += 1;
            self.in_bound = 0;
            tracing::info!(
                step_ns = host.realtime_minus_mono_ns - prev,
                "PTP (external): the host clock was stepped"
            );
        }
        if let Some(f) = host.frequency_ppm {
            snap.frequency_ppm = f;
        }
        let state = match answer {
            Err(reason) => {
                self.silent_polls += 1;
                snap.management_no_answer += 1;
                if self.silent_polls >= SILENT_POLLS_TO_UNLOCK {
                    if snap.reason.is_none() {
                        tracing::warn!(reason, "PTP (external): ptp4l is silent");
                    }
                    snap.reason = Some(reason.to_owned());
                    snap.port_state = "no_answer".into();
                    self.set_locked(snap, false);
                }
                return;
            }
            Ok(state) => state,
        };
        self.silent_polls = 0;
        snap.reason = None;
        let port_state = state.port.map_or("unknown", |p| p.port_state.name());
        if let Some(p) = state.port {
            snap.clock_identity = p.port.clock_identity;
        }
        let gm_present = state.time_status.is_some_and(|t| t.gm_present);
        let gm = state.parent.map(|p| p.grandmaster_identity);
        if self.last_state != Some(port_state) || self.last_gm != gm {
            if self.last_state.is_some() {
                snap.bmca_changes += 1;
                tracing::info!(
                    state = port_state,
                    grandmaster = ?gm.map(|g| crate::ptp::format_identity(&g)),
                    "PTP (external): ptp4l's port state or grandmaster changed"
                );
            }
            self.last_state = Some(port_state);
            self.last_gm = gm;
            self.in_bound = 0;
        }
        snap.port_state = port_state.to_owned();
        snap.grandmaster = gm;
        if let Some(p) = state.parent {
            snap.grandmaster_priority1 = p.grandmaster_priority1;
            snap.grandmaster_priority2 = p.grandmaster_priority2;
            snap.grandmaster_class = p.grandmaster_class;
        }
        if let Some(c) = state.current {
            snap.steps_removed = c.steps_removed;
            snap.mean_path_delay_ns = (port_state == "slave" || port_state == "uncalibrated")
                .then(|| ptp_mgmt::time_interval_ns(c.mean_path_delay_scaled));
        }
        if let Some(t) = state.time_properties {
            snap.utc_offset_s = Some(t.current_utc_offset);
            snap.ptp_timescale = t.ptp_timescale();
        }
        let following = port_state == "slave" || port_state == "uncalibrated";
        snap.offset_ns = None;
        if let Some(t) = state.time_status.filter(|t| t.gm_present && following) {
            let offset = t.master_offset_ns as f64;
            snap.offset_ns = Some(offset);
            if self.last_ingress.replace(t.ingress_time_ns) != Some(t.ingress_time_ns) {
                snap.measurements += 1;
                if snap.recent_offsets_ns.len() == OFFSET_WINDOW {
                    snap.recent_offsets_ns.remove(0);
                }
                snap.recent_offsets_ns.push(offset);
                if offset.abs() <= LOCK_THRESHOLD_NS {
                    self.in_bound += 1;
                } else {
                    self.in_bound = 0;
                }
            }
        }
        let locked = port_state == "slave"
            && gm_present
            && if snap.locked {
                snap.offset_ns
                    .is_some_and(|o| o.abs() <= UNLOCK_THRESHOLD_NS)
            } else {
                self.in_bound >= LOCK_SAMPLES
            };
        self.set_locked(snap, locked);
    }

    fn set_locked(&mut self, snap: &mut PtpSnapshot, locked: bool) {
        if snap.locked && !locked {
            snap.lock_losses += 1;
            self.in_bound = 0;
            tracing::warn!(state = %snap.port_state, "PTP (external): lock lost");
        } else if !snap.locked && locked {
            tracing::info!(
                grandmaster = ?snap.grandmaster.map(|g| crate::ptp::format_identity(&g)),
                "PTP (external): locked"
            );
        }
        snap.locked = locked;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GM: [u8; 8] = [0xce, 0x3b, 0x8c, 0xff, 0xfe, 0x97, 0x77, 0xa4];

    fn round(state: PortState, gm_present: bool, offset: i64, ingress: i64) -> Ptp4lState {
        let mut s = Ptp4lState::default();
        s.take(Body::PortDataSet(PortDataSet {
            port: PortIdentity {
                clock_identity: [2; 8],
                port: 1,
            },
            port_state: state,
            log_min_delay_req_interval: -3,
            peer_mean_path_delay_scaled: 0,
            log_announce_interval: 0,
            announce_receipt_timeout: 3,
            log_sync_interval: -3,
            delay_mechanism: 1,
            log_min_pdelay_req_interval: 0,
            version_number: 2,
        }));
        s.take(Body::ParentDataSet(ParentDataSet {
            parent_port: PortIdentity::default(),
            parent_stats: 0,
            observed_offset_scaled_log_variance: 0xffff,
            observed_phase_change_rate: 0,
            grandmaster_priority1: 128,
            grandmaster_class: 248,
            grandmaster_accuracy: 0xfe,
            grandmaster_offset_scaled_log_variance: 0xffff,
            grandmaster_priority2: 128,
            grandmaster_identity: if gm_present { GM } else { [2; 8] },
        }));
        s.take(Body::CurrentDataSet(CurrentDataSet {
            steps_removed: u16::from(gm_present),
            offset_from_master_scaled: offset << 16,
            mean_path_delay_scaled: 2400 << 16,
        }));
        s.take(Body::TimeStatusNp(TimeStatusNp {
            master_offset_ns: offset,
            ingress_time_ns: ingress,
            cumulative_scaled_rate_offset: 0,
            scaled_last_gm_phase_change: 0,
            gm_time_base_indicator: 0,
            last_gm_phase_change: [0; 12],
            gm_present,
            gm_identity: GM,
        }));
        s
    }

    #[test]
    fn locks_after_eight_measurements_in_bound_and_unlocks_when_the_master_goes() {
        let mut t = Tracker::default();
        let mut snap = PtpSnapshot::default();
        let host = HostReading::default();
        // Two polls of the same measurement count once.
        for i in 0..LOCK_SAMPLES as i64 - 1 {
            t.apply(&mut snap, Ok(&round(PortState::Slave, true, 300, i)), host);
            assert!(!snap.locked, "locked after {} measurements", i + 1);
            t.apply(&mut snap, Ok(&round(PortState::Slave, true, 300, i)), host);
        }
        t.apply(
            &mut snap,
            Ok(&round(PortState::Slave, true, -200, 100)),
            host,
        );
        assert!(snap.locked && snap.synchronized());
        assert_eq!(snap.grandmaster, Some(GM));
        assert_eq!(snap.measurements, LOCK_SAMPLES as u64);
        assert_eq!(snap.offset_ns, Some(-200.0));
        assert_eq!(snap.mean_path_delay_ns, Some(2400.0));
        // The grandmaster disappears: ptp4l's slave-only port listens again.
        t.apply(
            &mut snap,
            Ok(&round(PortState::Listening, false, 0, 100)),
            host,
        );
        assert!(!snap.locked);
        assert_eq!((snap.lock_losses, snap.bmca_changes), (1, 1));
        assert_eq!(snap.port_state, "listening");
        assert_eq!(snap.offset_ns, None);
    }

    #[test]
    fn uncalibrated_or_far_offsets_never_lock() {
        let mut t = Tracker::default();
        let mut snap = PtpSnapshot::default();
        for i in 0..20 {
            t.apply(
                &mut snap,
                Ok(&round(PortState::Uncalibrated, true, 10, i)),
                HostReading::default(),
            );
        }
        assert!(!snap.locked);
        for i in 20..40 {
            let offset = if i % 4 == 0 { 150_000 } else { 10 };
            t.apply(
                &mut snap,
                Ok(&round(PortState::Slave, true, offset, i)),
                HostReading::default(),
            );
        }
        assert!(!snap.locked, "one offset in four beyond 100 µs");
    }

    #[test]
    fn a_silent_ptp4l_unlocks_and_says_why() {
        let mut t = Tracker::default();
        let mut snap = PtpSnapshot::default();
        for i in 0..10 {
            t.apply(
                &mut snap,
                Ok(&round(PortState::Slave, true, 5, i)),
                HostReading::default(),
            );
        }
        assert!(snap.locked);
        t.apply(&mut snap, Err("gone"), HostReading::default());
        assert!(snap.locked, "one lost poll is tolerated");
        t.apply(&mut snap, Err("gone"), HostReading::default());
        assert!(!snap.locked);
        assert_eq!(snap.reason.as_deref(), Some("gone"));
        assert_eq!(
            (snap.management_no_answer, snap.port_state.as_str()),
            (2, "no_answer")
        );
    }

    #[test]
    fn counts_steps_of_the_host_clock() {
        let mut t = Tracker::default();
        let mut snap = PtpSnapshot::default();
        let at = |d: i64| HostReading {
            realtime_minus_mono_ns: d,
            frequency_ppm: Some(1.5),
        };
        t.apply(&mut snap, Err("x"), at(1_000_000_000));
        t.apply(&mut snap, Err("x"), at(1_000_020_000)); // slewed 20 µs
        assert_eq!(snap.steps, 0);
        t.apply(&mut snap, Err("x"), at(1_037_000_000));
        assert_eq!((snap.steps, snap.frequency_ppm), (1, 1.5));
    }

    #[test]
    fn utc_offset_follows_the_timescale() {
        let mut s = Ptp4lState::default();
        assert_eq!(s.utc_offset_s(), None);
        s.time_properties = Some(TimePropertiesDataSet {
            current_utc_offset: 37,
            flags: 0x0c,
            time_source: 0x20,
        });
        assert_eq!(s.utc_offset_s(), Some(37));
        s.time_properties = Some(TimePropertiesDataSet {
            current_utc_offset: 37,
            flags: 0,
            time_source: 0xa0,
        });
        assert_eq!(s.utc_offset_s(), Some(0), "arbitrary timescale");
    }

    #[test]
    fn a_file_that_is_not_a_phc_is_refused() {
        let e = HostClock::open(Some(Path::new("/dev/null"))).expect_err("not a PHC");
        assert!(e.to_string().contains("/dev/null"), "{e}");
        assert!(HostClock::open(Some(Path::new("/nonexistent/ptp9"))).is_err());
    }

    #[test]
    fn system_time_is_tai() {
        let clock = HostClock::open(None).expect("system");
        let d = clock.now_ns(37) as i128 - realtime_now_ns() as i128;
        assert!((d - 37_000_000_000).abs() < 1_000_000_000, "{d}");
    }
}
