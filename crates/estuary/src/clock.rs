//! The `[clock]` section and the media clock service: the system clock (default), the
//! embedded PTP follower / grandmaster (`estuary_io::ptp`), or the host's linuxptp
//! (`estuary_io::linuxptp`, mode `external`).
//!
//! One clock serves the whole process. The daemon starts it before the pipeline; AES67
//! outputs take their RTP timestamps and SDP `ts-refclk` from it, and the status views read
//! it through [`current`].

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use toml::Spanned;
use utoipa::ToSchema;

use estuary_engine::time::MonoTime;
use estuary_io::linuxptp::{DEFAULT_PTP4L_SOCKET, ExternalService, ExternalSettings};
use estuary_io::ptp::{PtpProfile, PtpRole, PtpService, PtpSettings, PtpSnapshot, format_identity};

use crate::config::FieldError;

/// `[clock]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockConfig {
    /// `system` (default), `follower` or `grandmaster`.
    #[serde(default)]
    pub mode: ClockMode,
    /// PTP domain, 0–127 (default 0).
    pub domain: Option<Spanned<u8>>,
    /// Interface (name or address) PTP runs on; default: the kernel's multicast route.
    pub interface: Option<Spanned<String>>,
    /// Grandmaster mode: BMCA priority 1 (default 128; real grandmasters usually use lower).
    pub priority1: Option<Spanned<u8>>,
    /// Grandmaster mode: BMCA priority 2 (default 128).
    pub priority2: Option<Spanned<u8>>,
    /// DSCP of PTP packets: `EF` (default, as AES67 recommends), `CS6`, a number...
    pub dscp: Option<Spanned<String>>,
    /// `aes67` (media profile: 8 Sync/s; default) or `default` (1588 default profile).
    pub profile: Option<Spanned<String>>,
    /// External mode: ptp4l's management socket (its `uds_address`; default
    /// `/var/run/ptp4l`).
    pub ptp4l_socket: Option<Spanned<String>>,
    /// External mode: read PTP time from this PHC (`/dev/ptp0`) instead of `CLOCK_TAI`.
    pub phc: Option<Spanned<String>>,
}

/// What times the media.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClockMode {
    /// The host's clocks; no PTP.
    #[default]
    System,
    /// Follow the network's PTP grandmaster (never becomes master).
    Follower,
    /// Offer to be the grandmaster; a better grandmaster (by BMCA) is followed instead.
    Grandmaster,
    /// The host's linuxptp (`ptp4l` + `phc2sys`) disciplines the clock; Estuary reads it.
    External,
}

impl ClockMode {
    pub fn name(self) -> &'static str {
        match self {
            ClockMode::System => "system",
            ClockMode::Follower => "follower",
            ClockMode::Grandmaster => "grandmaster",
            ClockMode::External => "external",
        }
    }
}

impl ClockConfig {
    /// Checks what serde cannot; errors name the field (`clock.domain`...).
    pub fn validate(&self) -> Result<(), FieldError> {
        self.validate_external()?;
        // The embedded clock's own fields (external mode: ptp4l's configuration has them).
        let ptp = matches!(self.mode, ClockMode::Follower | ClockMode::Grandmaster);
        let only_ptp = |span: std::ops::Range<usize>, f: &str| {
            Err((
                span,
                format!("clock.{f}"),
                "only used with mode = \"follower\" or \"grandmaster\"".into(),
            ))
        };
        if let Some(d) = &self.domain {
            if !ptp && self.mode != ClockMode::External {
                return Err((
                    d.span(),
                    "clock.domain".into(),
                    "only used with mode = \"follower\", \"grandmaster\" or \"external\"".into(),
                ));
            }
            if *d.get_ref() > 127 {
                return Err((
                    d.span(),
                    "clock.domain".into(),
                    format!("{} is not a PTP domain (0 to 127)", d.get_ref()),
                ));
            }
        }
        for (field, p) in [
            ("priority1", &self.priority1),
            ("priority2", &self.priority2),
        ] {
            if let Some(p) = p
                && self.mode != ClockMode::Grandmaster
            {
                return Err((
                    p.span(),
                    format!("clock.{field}"),
                    "only used with mode = \"grandmaster\" (a follower never becomes master)"
                        .into(),
                ));
            }
        }
        if let Some(i) = &self.interface {
            if !ptp {
                return only_ptp(i.span(), "interface");
            }
            estuary_io::mcast::resolve_interface(i.get_ref())
                .map_err(|e| (i.span(), "clock.interface".into(), e.to_string()))?;
        }
        if let Some(d) = &self.dscp {
            if !ptp {
                return only_ptp(d.span(), "dscp");
            }
            crate::config::parse_dscp(d.get_ref()).ok_or_else(|| {
                (
                    d.span(),
                    "clock.dscp".into(),
                    format!(
                        "{:?} is not a DSCP (EF, CS6, AF41, or 0 to 63)",
                        d.get_ref()
                    ),
                )
            })?;
        }
        if let Some(p) = &self.profile {
            if !ptp {
                return only_ptp(p.span(), "profile");
            }
            parse_profile(p.get_ref()).ok_or_else(|| {
                (
                    p.span(),
                    "clock.profile".into(),
                    format!("{:?} is not a profile (aes67 or default)", p.get_ref()),
                )
            })?;
        }
        Ok(())
    }

    /// `ptp4l_socket` and `phc` belong to external mode; a PHC must exist.
    fn validate_external(&self) -> Result<(), FieldError> {
        for (field, value) in [("ptp4l_socket", &self.ptp4l_socket), ("phc", &self.phc)] {
            let Some(v) = value else { continue };
            if self.mode != ClockMode::External {
                return Err((
                    v.span(),
                    format!("clock.{field}"),
                    "only used with mode = \"external\"".into(),
                ));
            }
            if v.get_ref().trim().is_empty() {
                return Err((v.span(), format!("clock.{field}"), "is empty".into()));
            }
        }
        if let Some(phc) = &self.phc
            && !std::path::Path::new(phc.get_ref()).exists()
        {
            return Err((
                phc.span(),
                "clock.phc".into(),
                format!(
                    "{:?} does not exist (the PHC of the NIC ptp4l runs on: `ethtool -T <interface>` names it)",
                    phc.get_ref()
                ),
            ));
        }
        Ok(())
    }

    /// The settings of external mode.
    pub fn external_settings(&self) -> Option<ExternalSettings> {
        (self.mode == ClockMode::External).then(|| ExternalSettings {
            socket: self
                .ptp4l_socket
                .as_ref()
                .map_or(DEFAULT_PTP4L_SOCKET, |s| s.get_ref().as_str())
                .into(),
            domain: self.domain.as_ref().map_or(0, |d| *d.get_ref()),
            phc: self.phc.as_ref().map(|p| p.get_ref().into()),
        })
    }

    /// The PTP settings, for the follower and grandmaster modes.
    pub fn ptp_settings(&self) -> Option<PtpSettings> {
        let role = match self.mode {
            ClockMode::System | ClockMode::External => return None,
            ClockMode::Follower => PtpRole::Follower,
            ClockMode::Grandmaster => PtpRole::Grandmaster,
        };
        Some(PtpSettings {
            role,
            profile: self
                .profile
                .as_ref()
                .and_then(|p| parse_profile(p.get_ref()))
                .unwrap_or(PtpProfile::Aes67),
            domain: self.domain.as_ref().map_or(0, |d| *d.get_ref()),
            interface: self.interface.as_ref().map(|i| i.get_ref().clone()),
            priority1: self.priority1.as_ref().map_or(128, |p| *p.get_ref()),
            priority2: self.priority2.as_ref().map_or(128, |p| *p.get_ref()),
            dscp: self
                .dscp
                .as_ref()
                .and_then(|d| crate::config::parse_dscp(d.get_ref()))
                .unwrap_or(46),
        })
    }
}

fn parse_profile(text: &str) -> Option<PtpProfile> {
    match text.trim().to_ascii_lowercase().as_str() {
        "aes67" | "media" => Some(PtpProfile::Aes67),
        "default" => Some(PtpProfile::Default),
        _ => None,
    }
}

/// Where PTP time comes from.
#[derive(Debug)]
enum PtpSource {
    Embedded(PtpService),
    External(ExternalService),
}

impl PtpSource {
    fn snapshot(&self) -> PtpSnapshot {
        match self {
            PtpSource::Embedded(p) => p.snapshot(),
            PtpSource::External(e) => e.snapshot(),
        }
    }
    fn synchronized(&self) -> bool {
        match self {
            PtpSource::Embedded(p) => p.snapshot().synchronized(),
            PtpSource::External(e) => e.synchronized(),
        }
    }
    fn ptp_time_at(&self, t: MonoTime) -> u64 {
        match self {
            PtpSource::Embedded(p) => p.ptp_time_at(t),
            PtpSource::External(e) => e.ptp_time_at(t),
        }
    }
    fn now_ns(&self) -> u64 {
        match self {
            PtpSource::Embedded(p) => p.now_ns(),
            PtpSource::External(e) => e.now_ns(),
        }
    }
}

/// The running media clock.
#[derive(Debug)]
pub struct MediaClock {
    mode: ClockMode,
    settings: Option<PtpSettings>,
    external: Option<ExternalSettings>,
    ptp: Option<PtpSource>,
    /// Why PTP is not running, when it should be.
    failure: Option<String>,
}

static CURRENT: Mutex<Option<Arc<MediaClock>>> = Mutex::new(None);

/// The process's media clock, once [`start`] ran.
pub fn current() -> Option<Arc<MediaClock>> {
    CURRENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

/// Starts the configured clock and makes it [`current`]. A PTP clock that cannot start
/// (ports taken, interface gone) is reported in the status (`state = "failed"`) and the
/// media runs on the system clock: audio stays on air.
pub fn start(config: &ClockConfig) -> Arc<MediaClock> {
    let settings = config.ptp_settings();
    let external = config.external_settings();
    let started = match (settings.clone(), external.clone()) {
        (Some(s), _) => Some(PtpService::start(s).map(PtpSource::Embedded)),
        (None, Some(e)) => Some(ExternalService::start(e).map(PtpSource::External)),
        (None, None) => None,
    };
    let (ptp, failure) = match started {
        None => (None, None),
        Some(Ok(service)) => {
            tracing::info!(mode = config.mode.name(), "PTP clock started");
            (Some(service), None)
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "the PTP clock cannot start; media runs on the system clock");
            (None, Some(e.to_string()))
        }
    };
    let clock = Arc::new(MediaClock {
        mode: config.mode,
        settings,
        external,
        ptp,
        failure,
    });
    *CURRENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&clock));
    clock
}

/// Stops the current clock (at shutdown).
pub fn stop() {
    CURRENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
}

/// What an AES67 sender stamps and announces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaReference {
    /// `ts-refclk` value: `ptp=IEEE1588-2008:<gm>:<domain>`.
    pub ts_refclk: String,
    /// The grandmaster followed, `00-1D-C1-FF-FE-12-34-56`.
    pub grandmaster: String,
}

impl MediaClock {
    /// PTP time (ns, TAI) at monotonic instant `t`, when synchronized to (or serving) PTP.
    pub fn ptp_time_at(&self, t: MonoTime) -> Option<u64> {
        let ptp = self.ptp.as_ref()?;
        ptp.synchronized().then(|| ptp.ptp_time_at(t))
    }

    /// The monotonic instant at which PTP time reaches `ptp_ns` (ignoring the frequency
    /// correction over the gap, which is under 1 µs for the few ms senders look ahead).
    pub fn mono_at(&self, ptp_ns: u64) -> Option<MonoTime> {
        let ptp = self.ptp.as_ref()?;
        let now = estuary_io::clock::monotonic_now();
        let diff = i128::from(ptp_ns) - i128::from(ptp.ptp_time_at(now));
        let at = i128::from(now.as_nanos()) + diff;
        Some(MonoTime::from_nanos(u64::try_from(at.max(0)).ok()?))
    }

    /// The PTP reference for SDP, when synchronized.
    pub fn reference(&self) -> Option<MediaReference> {
        let snap = self.ptp.as_ref()?.snapshot();
        if !snap.synchronized() {
            return None;
        }
        let gm = format_identity(&snap.grandmaster?);
        Some(MediaReference {
            ts_refclk: format!("ptp=IEEE1588-2008:{gm}:{}", snap.domain),
            grandmaster: gm,
        })
    }

    /// The view for `/api/clock`.
    pub fn status(&self) -> PtpStatus {
        let mut s = PtpStatus {
            mode: self.mode.name().into(),
            ..PtpStatus::default()
        };
        if let Some(settings) = &self.settings {
            s.domain = settings.domain;
            s.interface = settings.interface.clone();
            s.profile = match settings.profile {
                PtpProfile::Aes67 => "aes67",
                PtpProfile::Default => "default",
            }
            .into();
        }
        if let Some(external) = &self.external {
            s.domain = external.domain;
            s.ptp4l_socket = Some(external.socket.display().to_string());
            s.phc = external.phc.as_ref().map(|p| p.display().to_string());
        }
        if let Some(reason) = &self.failure {
            s.state = "failed".into();
            s.reason = Some(reason.clone());
            return s;
        }
        let Some(ptp) = &self.ptp else {
            s.state = "system".into();
            return s;
        };
        fill_from_snapshot(&mut s, &ptp.snapshot());
        s.ptp_minus_utc_ns =
            Some(ptp.now_ns() as i128 as f64 - estuary_io::clock::realtime_now_ns() as i128 as f64);
        s
    }
}

fn fill_from_snapshot(s: &mut PtpStatus, snap: &PtpSnapshot) {
    s.port_state = snap.port_state.clone();
    s.locked = snap.locked;
    s.state = if snap.port_state == "master" {
        "grandmaster"
    } else if snap.locked {
        "locked"
    } else if snap.port_state == "listening" {
        "listening"
    } else {
        "unlocked"
    }
    .into();
    s.clock_identity = format_identity(&snap.clock_identity);
    s.grandmaster = snap.grandmaster.as_ref().map(format_identity);
    s.grandmaster_priority1 = snap.grandmaster_priority1;
    s.grandmaster_priority2 = snap.grandmaster_priority2;
    s.grandmaster_class = snap.grandmaster_class;
    s.steps_removed = snap.steps_removed;
    s.offset_ns = snap.offset_ns;
    s.mean_path_delay_ns = snap.mean_path_delay_ns;
    s.frequency_ppm = snap.frequency_ppm;
    s.jitter = JitterStats::of(&snap.recent_offsets_ns);
    s.steps = snap.steps;
    s.bmca_changes = snap.bmca_changes;
    s.lock_losses = snap.lock_losses;
    s.measurements = snap.measurements;
    s.packets_received = snap.packets_received;
    s.send_errors = snap.send_errors;
    s.tx_timestamps_missed = snap.tx_timestamps_missed;
    s.utc_offset_s = snap.utc_offset_s;
    s.reason.clone_from(&snap.reason);
    s.management_no_answer = snap.management_no_answer;
}

/// The PTP clock, for `/api/clock`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PtpStatus {
    /// `follower`, `grandmaster` or `external` (configured).
    pub mode: String,
    /// `locked`, `unlocked`, `listening` (no master heard yet), `grandmaster` (we are the
    /// master), `failed` (see `reason`), or `system`.
    pub state: String,
    pub reason: Option<String>,
    /// IEEE 1588 port state: `listening`, `uncalibrated`, `slave`, `master`, `passive`...
    pub port_state: String,
    /// A follower within 100 µs of its master for 8 consecutive measurements.
    pub locked: bool,
    pub domain: u8,
    pub interface: Option<String>,
    /// `aes67` or `default`.
    pub profile: String,
    /// Our clock identity.
    pub clock_identity: String,
    /// The grandmaster followed (ours when we are the master).
    pub grandmaster: Option<String>,
    pub grandmaster_priority1: u8,
    pub grandmaster_priority2: u8,
    pub grandmaster_class: u8,
    pub steps_removed: u16,
    /// Offset from the master (servo estimate), ns.
    pub offset_ns: Option<f64>,
    pub mean_path_delay_ns: Option<f64>,
    /// Frequency correction applied to the overlay clock, ppm.
    pub frequency_ppm: f64,
    /// Statistics of the last 128 offsets.
    pub jitter: JitterStats,
    /// Steps of the overlay clock (the host's clock is never touched).
    pub steps: u64,
    /// Port state or grandmaster changes decided by the BMCA.
    pub bmca_changes: u64,
    pub lock_losses: u64,
    /// Offset measurements (one per Sync).
    pub measurements: u64,
    pub packets_received: u64,
    pub send_errors: u64,
    /// Event messages sent without a kernel transmit timestamp.
    pub tx_timestamps_missed: u64,
    /// TAI − UTC announced by the grandmaster, s.
    pub utc_offset_s: Option<i16>,
    /// PTP time − the host's UTC clock, ns (TAI − UTC plus the host clock's error).
    pub ptp_minus_utc_ns: Option<f64>,
    /// External mode: ptp4l's management socket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ptp4l_socket: Option<String>,
    /// External mode: the PHC time is read from (none: `CLOCK_TAI`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phc: Option<String>,
    /// External mode: polls of ptp4l's socket that got no answer.
    #[serde(default)]
    pub management_no_answer: u64,
}

/// Offset statistics over a window of measurements.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JitterStats {
    pub samples: usize,
    pub mean_ns: f64,
    pub rms_ns: f64,
    /// Median of |offset|.
    pub p50_abs_ns: f64,
    pub p99_abs_ns: f64,
    pub max_abs_ns: f64,
}

impl JitterStats {
    pub fn of(offsets: &[f64]) -> Self {
        if offsets.is_empty() {
            return Self::default();
        }
        let n = offsets.len() as f64;
        let mut abs: Vec<f64> = offsets.iter().map(|o| o.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let at = |q: f64| abs[((abs.len() - 1) as f64 * q).round() as usize];
        Self {
            samples: offsets.len(),
            mean_ns: offsets.iter().sum::<f64>() / n,
            rms_ns: (offsets.iter().map(|o| o * o).sum::<f64>() / n).sqrt(),
            p50_abs_ns: at(0.5),
            p99_abs_ns: at(0.99),
            max_abs_ns: abs[abs.len() - 1],
        }
    }
}

/// The `ptp=IEEE1588-2008:<gm>:<domain>` grandmaster of an SDP `ts-refclk`, normalised.
pub fn refclk_grandmaster(reference: &str) -> Option<(String, Option<u8>)> {
    let rest = reference.trim().strip_prefix("ptp=")?;
    let mut parts = rest.split(':');
    let _version = parts.next()?;
    let gm = parts.next()?.trim().to_ascii_uppercase();
    let domain = parts.next().and_then(|d| d.trim().parse().ok());
    (gm.len() == 23).then_some((gm, domain))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<crate::config::Config, crate::config::ConfigError> {
        crate::config::parse(text, std::path::Path::new("."))
    }

    #[test]
    fn default_is_the_system_clock() {
        let c = parse("").expect("empty config");
        assert_eq!(c.clock.mode, ClockMode::System);
        assert!(c.clock.ptp_settings().is_none());
    }

    #[test]
    fn follower_settings() {
        let c = parse(
            "[clock]\nmode = \"follower\"\ndomain = 3\ndscp = \"CS6\"\nprofile = \"default\"\n",
        )
        .expect("valid");
        let s = c.clock.ptp_settings().expect("ptp");
        assert_eq!(s.role, PtpRole::Follower);
        assert_eq!((s.domain, s.dscp, s.profile), (3, 48, PtpProfile::Default));
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = parse("[clock]\nmode = \"follower\"\ndomain = 200\n").expect_err("domain");
        assert_eq!((e.field.as_str(), e.line), ("clock.domain", Some(3)));
        let e = parse("[clock]\nmode = \"follower\"\npriority1 = 10\n").expect_err("priority");
        assert_eq!((e.field.as_str(), e.line), ("clock.priority1", Some(3)));
        let e = parse("[clock]\nmode = \"grandmaster\"\n\ndscp = \"XX\"\n").expect_err("dscp");
        assert_eq!((e.field.as_str(), e.line), ("clock.dscp", Some(4)));
        let e = parse("[clock]\ndomain = 1\n").expect_err("system mode");
        assert_eq!(e.field, "clock.domain");
        let e = parse("[clock]\nmode = \"boss\"\n").expect_err("mode");
        assert!(e.to_string().contains("mode"), "{e}");
        assert_eq!(e.line, Some(2));
        let e = parse("[clock]\nmode = \"follower\"\nprofile = \"smpte\"\n").expect_err("p");
        assert_eq!((e.field.as_str(), e.line), ("clock.profile", Some(3)));
    }

    #[test]
    fn external_mode_settings_and_errors() {
        let c = parse("[clock]\nmode = \"external\"\n").expect("valid");
        let e = c.clock.external_settings().expect("external");
        assert_eq!(e.socket, std::path::PathBuf::from("/var/run/ptp4l"));
        assert_eq!((e.domain, e.phc), (0, None));
        assert!(c.clock.ptp_settings().is_none());
        let c =
            parse("[clock]\nmode = \"external\"\ndomain = 5\nptp4l_socket = \"/run/ptp4l-eth1\"\n")
                .expect("valid");
        let e = c.clock.external_settings().expect("external");
        assert_eq!((e.domain, e.socket.to_str()), (5, Some("/run/ptp4l-eth1")));
        let e = parse("[clock]\nmode = \"external\"\nphc = \"/dev/ptp-none\"\n")
            .expect_err("no such PHC");
        assert_eq!((e.field.as_str(), e.line), ("clock.phc", Some(3)));
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e =
            parse("[clock]\nmode = \"follower\"\nptp4l_socket = \"/x\"\n").expect_err("follower");
        assert_eq!((e.field.as_str(), e.line), ("clock.ptp4l_socket", Some(3)));
        let e = parse("[clock]\nmode = \"external\"\n\ninterface = \"lo\"\n")
            .expect_err("ptp4l's own setting");
        assert_eq!((e.field.as_str(), e.line), ("clock.interface", Some(4)));
        let e = parse("[clock]\nmode = \"external\"\npriority1 = 1\n").expect_err("prio");
        assert_eq!(e.field, "clock.priority1");
    }

    #[test]
    fn jitter_statistics() {
        let j = JitterStats::of(&[-3.0, 1.0, 2.0, -4.0]);
        assert_eq!(j.samples, 4);
        assert_eq!(j.max_abs_ns, 4.0);
        assert!((j.mean_ns + 1.0).abs() < 1e-9);
        assert!((j.rms_ns - (30.0f64 / 4.0).sqrt()).abs() < 1e-9);
        assert_eq!(JitterStats::of(&[]), JitterStats::default());
    }

    #[test]
    fn reads_the_grandmaster_of_ts_refclk() {
        assert_eq!(
            refclk_grandmaster("ptp=IEEE1588-2008:00-1d-c1-ff-fe-12-34-56:0"),
            Some(("00-1D-C1-FF-FE-12-34-56".into(), Some(0)))
        );
        assert_eq!(
            refclk_grandmaster("ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56"),
            Some(("00-1D-C1-FF-FE-12-34-56".into(), None))
        );
        assert_eq!(refclk_grandmaster("localmac=00-11-22-33-44-55"), None);
        assert_eq!(refclk_grandmaster("ptp=traceable"), None);
    }
}

/// `/api/clock` without the per-input references (the pipeline adds those).
pub fn clock_status() -> crate::status::ClockStatus {
    let Some(clock) = current() else {
        return crate::status::ClockStatus {
            source: "system".into(),
            ..crate::status::ClockStatus::default()
        };
    };
    let ptp = (clock.mode != ClockMode::System).then(|| clock.status());
    crate::status::ClockStatus {
        source: match &ptp {
            Some(p) if p.state != "failed" => format!("ptp-{}", clock.mode.name()),
            _ => "system".into(),
        },
        ptp_locked: ptp
            .as_ref()
            .is_some_and(|p| p.state == "locked" || p.state == "grandmaster"),
        stream_references: Vec::new(),
        ptp,
    }
}

/// The grandmaster (and domain) our clock is synchronized to, if any.
pub fn locked_grandmaster() -> Option<(String, u8)> {
    let clock = current()?;
    let reference = clock.reference()?;
    let domain = clock
        .settings
        .as_ref()
        .map(|s| s.domain)
        .or_else(|| clock.external.as_ref().map(|e| e.domain))
        .unwrap_or(0);
    Some((reference.grandmaster, domain))
}

/// The SDP an input is configured with (`sdp`, or the text of `sdp_file`), for its
/// `ts-refclk`.
pub fn configured_sdp(input: &crate::config::InputConfig) -> Option<String> {
    if let Some(sdp) = &input.sdp {
        return Some(sdp.get_ref().clone());
    }
    std::fs::read_to_string(input.sdp_file.as_ref()?.get_ref()).ok()
}

/// Why a stream's `ts-refclk` does not match the grandmaster we follow (`None` when it
/// does, when it names no PTP grandmaster, or when we follow none).
pub fn grandmaster_mismatch(reference: &str, locked: Option<&(String, u8)>) -> Option<String> {
    let (gm, domain) = locked?;
    let (theirs, their_domain) = refclk_grandmaster(reference)?;
    if &theirs != gm {
        return Some(format!(
            "the stream is timed by grandmaster {theirs}; this gateway follows {gm}"
        ));
    }
    match their_domain {
        Some(d) if d != *domain => Some(format!(
            "the stream is timed in PTP domain {d}; this gateway follows domain {domain}"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod mismatch_tests {
    use super::grandmaster_mismatch;

    #[test]
    fn flags_another_grandmaster_or_domain() {
        let ours = ("00-1D-C1-FF-FE-12-34-56".to_owned(), 0);
        let same = "ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56:0";
        assert_eq!(grandmaster_mismatch(same, Some(&ours)), None);
        assert!(
            grandmaster_mismatch("ptp=IEEE1588-2008:00-1D-C1-FF-FE-99-99-99:0", Some(&ours))
                .is_some_and(|m| m.contains("00-1D-C1-FF-FE-99-99-99"))
        );
        assert!(
            grandmaster_mismatch("ptp=IEEE1588-2008:00-1D-C1-FF-FE-12-34-56:5", Some(&ours))
                .is_some_and(|m| m.contains("domain 5"))
        );
        assert_eq!(grandmaster_mismatch(same, None), None);
        assert_eq!(
            grandmaster_mismatch("localmac=00-11-22-33-44-55", Some(&ours)),
            None
        );
    }
}

/// Turns the PTP follower's lock into `clock_unlocked` signals (raised while a follower
/// is not locked; the alarm rule's `raise_after` covers the first acquisition).
#[derive(Debug, Default)]
pub struct ClockWatch {
    raised: Option<bool>,
}

impl ClockWatch {
    /// A signal when the lock changed since the last call.
    pub fn poll(&mut self) -> Option<crate::gateway::Signal> {
        let clock = current()?;
        if clock.mode == ClockMode::System {
            return None;
        }
        let status = clock.status();
        let synchronized = status.state == "locked" || status.state == "grandmaster";
        self.transition(!synchronized, status.offset_ns.unwrap_or(0.0))
    }

    fn transition(&mut self, unlocked: bool, offset_ns: f64) -> Option<crate::gateway::Signal> {
        if self.raised == Some(unlocked) {
            return None;
        }
        self.raised = Some(unlocked);
        Some(crate::gateway::Signal {
            scope: crate::gateway::Scope::Clock,
            subject: "clock".into(),
            channel: None,
            condition: crate::gateway::Condition::ClockUnlocked,
            raised: unlocked,
            value: offset_ns,
            at: std::time::SystemTime::now(),
        })
    }
}

#[cfg(test)]
mod watch_tests {
    use super::ClockWatch;

    #[test]
    fn signals_only_changes() {
        let mut w = ClockWatch::default();
        assert!(w.transition(true, 0.0).is_some_and(|s| s.raised));
        assert!(w.transition(true, 0.0).is_none());
        assert!(w.transition(false, 10.0).is_some_and(|s| !s.raised));
        assert!(w.transition(false, 10.0).is_none());
    }
}
