//! `[alarms]`: which detector conditions become alarms, how loud they are and who hears of
//! them. See `docs/config.md` and `docs/monitoring.md`.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, FieldError};
use crate::gateway::{Condition, Scope};

/// The `[alarms]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsConfig {
    /// Absent: [`default_rules`]. An empty list: no alarms (and no detectors).
    pub rules: Option<Vec<RuleConfig>>,
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    #[serde(default)]
    pub email: Vec<EmailConfig>,
    pub syslog: Option<SyslogConfig>,
    /// Notifications waiting per notifier; when full the oldest is dropped (and counted).
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Delivery attempts after the first one fails.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// First retry delay; doubles per attempt (with jitter) up to `retry_max`.
    #[serde(default = "default_retry_base", with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(default = "default_retry_max", with = "humantime_serde")]
    pub retry_max: Duration,
}

impl Default for AlarmsConfig {
    fn default() -> Self {
        AlarmsConfig {
            rules: None,
            webhooks: Vec::new(),
            email: Vec::new(),
            syslog: None,
            queue: default_queue(),
            retries: default_retries(),
            retry_base: default_retry_base(),
            retry_max: default_retry_max(),
        }
    }
}

fn default_queue() -> usize {
    256
}
fn default_retries() -> u32 {
    5
}
fn default_retry_base() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(60)
}

/// How loud an alarm is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    #[default]
    Warning,
    Critical,
}

impl Severity {
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Severity::Info, Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// One `[[alarms.rules]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: Spanned<String>,
    pub condition: Spanned<String>,
    /// Input names or `"*"`; default `["*"]` for input conditions.
    pub inputs: Option<Spanned<Vec<String>>>,
    /// Output names or `"*"`; default `["*"]` for output conditions.
    pub outputs: Option<Spanned<Vec<String>>>,
    /// Per condition: dBFS, ppm, µs, ms… (see [`threshold_unit`]).
    pub threshold: Option<Spanned<f64>>,
    #[serde(default, with = "humantime_serde")]
    pub raise_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub clear_after: Option<Duration>,
    #[serde(default)]
    pub severity: Severity,
    /// Notifier names; absent: every notifier; empty: none.
    pub notify: Option<Spanned<Vec<String>>>,
}

/// One `[[alarms.webhooks]]`: an HTTP(S) POST of the JSON payload.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: Spanned<String>,
    pub url: Spanned<String>,
    /// Signs the body: `X-Estuary-Signature: sha256=<hex HMAC-SHA256>`.
    pub secret: Option<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (a local relay).
    Off,
    /// STARTTLS if the server offers it.
    Opportunistic,
    /// STARTTLS or fail.
    Required,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

impl<'de> Deserialize<'de> for TlsMode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(TlsMode::Required),
            Raw::Bool(false) => Ok(TlsMode::Off),
            Raw::Text(t) => match t.as_str() {
                "off" => Ok(TlsMode::Off),
                "opportunistic" => Ok(TlsMode::Opportunistic),
                "required" => Ok(TlsMode::Required),
                "implicit" => Ok(TlsMode::Implicit),
                other => Err(serde::de::Error::custom(format!(
                    "starttls {other:?}: expected true, false, \"off\", \"opportunistic\", \
                     \"required\" or \"implicit\""
                ))),
            },
        }
    }
}

fn default_tls() -> TlsMode {
    TlsMode::Required
}

/// One `[[alarms.email]]`: a mail per alarm change through an SMTP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub name: Spanned<String>,
    pub server: Spanned<String>,
    /// Default: 25 with `starttls = false`, 465 implicit, else 587.
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub starttls: TlsMode,
    /// A PEM CA certificate to trust besides the built-in roots (a private relay).
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: Spanned<String>,
    pub to: Spanned<Vec<String>>,
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_subject_prefix() -> String {
    "[estuary]".into()
}

impl EmailConfig {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.starttls {
            TlsMode::Off => 25,
            TlsMode::Implicit => 465,
            TlsMode::Opportunistic | TlsMode::Required => 587,
        })
    }
}

/// `[alarms.syslog]`: one line per alarm change to the local syslog (or journald's syslog
/// socket) or a remote collector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `daemon` (default), `user`, `local0`..`local7`, …
    #[serde(default = "default_facility")]
    pub facility: Spanned<String>,
    #[serde(default = "default_ident")]
    pub ident: String,
    /// A UDP collector; default the local socket `/dev/log`.
    pub address: Option<SocketAddr>,
    /// `rfc5424` or `rfc3164`; default 3164 for `/dev/log` (what every local daemon
    /// parses), 5424 for a collector.
    pub format: Option<Spanned<String>>,
}

fn yes() -> bool {
    true
}
fn default_facility() -> Spanned<String> {
    Spanned::new(0..0, "daemon".into())
}
fn default_ident() -> String {
    "estuary".into()
}

/// The notifier name `[alarms.syslog]` goes by in `notify` lists.
pub const SYSLOG: &str = "syslog";

/// syslog facility code of a name.
pub fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 24] = [
        "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
        "authpriv", "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2",
        "local3", "local4", "local5", "local6", "local7",
    ];
    NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u8::try_from(i).ok())
}

/// The rules used when `[alarms]` has no `rules`.
pub fn default_rules() -> Vec<RuleConfig> {
    let rule = |name: &str, condition: Condition, severity: Severity| RuleConfig {
        name: Spanned::new(0..0, name.into()),
        condition: Spanned::new(0..0, condition.name().into()),
        inputs: None,
        outputs: None,
        threshold: None,
        raise_after: None,
        clear_after: None,
        severity,
        notify: None,
    };
    vec![
        RuleConfig {
            threshold: Some(Spanned::new(0..0, -60.0)),
            raise_after: Some(Duration::from_secs(10)),
            ..rule("silence", Condition::Silence, Severity::Warning)
        },
        rule("clipping", Condition::Clipping, Severity::Warning),
        RuleConfig {
            threshold: Some(Spanned::new(0..0, 500.0)),
            ..rule("no-packets", Condition::NoPackets, Severity::Critical)
        },
        rule("loss", Condition::Loss, Severity::Warning),
        rule("route-failed", Condition::RouteFailed, Severity::Critical),
        rule("disconnected", Condition::Disconnected, Severity::Warning),
        rule("record-failed", Condition::RecordFailed, Severity::Critical),
        // A follower takes a few seconds to lock after a start or a grandmaster change.
        RuleConfig {
            raise_after: Some(Duration::from_secs(10)),
            ..rule(
                "clock-unlocked",
                Condition::ClockUnlocked,
                Severity::Critical,
            )
        },
        rule("failover", Condition::FailoverActive, Severity::Warning),
    ]
}

/// Where a condition comes from: inputs (detectors, route failure) or outputs.
pub fn scope_of(condition: Condition) -> Scope {
    match condition {
        Condition::Disconnected | Condition::RecordFailed => Scope::Output,
        Condition::ClockUnlocked => Scope::Clock,
        _ => Scope::Input,
    }
}

/// What `threshold` means for a condition, and the range it may take; None: no threshold.
pub fn threshold_unit(condition: Condition) -> Option<(&'static str, f64, f64)> {
    match condition {
        Condition::Silence => Some(("dBFS", -150.0, 0.0)),
        Condition::Clipping => Some(("dBFS", -20.0, 0.0)),
        Condition::DcOffset => Some(("dBFS", -120.0, 0.0)),
        Condition::Discontinuity => Some(("× local prediction error", 1.0, 1000.0)),
        Condition::PhaseInverted => Some(("correlation", -1.0, 1.0)),
        Condition::Jitter => Some(("µs", 1.0, 1e6)),
        Condition::NoPackets => Some(("ms", 100.0, 3.6e6)),
        Condition::Drift => Some(("ppm", 1.0, 1e5)),
        Condition::Stuck
        | Condition::Loss
        | Condition::Late
        | Condition::Duplicates
        | Condition::Reordered
        | Condition::StreamChanged
        | Condition::Disconnected
        | Condition::RouteFailed
        | Condition::RecordFailed
        | Condition::ClockUnlocked
        | Condition::FailoverActive => None,
    }
}

impl AlarmsConfig {
    /// The rules in force: the configured ones, or the defaults.
    pub fn rules(&self) -> Vec<RuleConfig> {
        self.rules.clone().unwrap_or_else(default_rules)
    }

    /// Makes relative paths (`ca_file`) relative to the config file's directory.
    pub fn resolve_paths(&mut self, base_dir: &std::path::Path) {
        for e in &mut self.email {
            if let Some(ca) = &mut e.ca_file
                && ca.is_relative()
            {
                *ca = base_dir.join(&*ca);
            }
        }
    }

    /// Every notifier name, in config order.
    pub fn notifier_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .webhooks
            .iter()
            .map(|w| w.name.get_ref().clone())
            .chain(self.email.iter().map(|e| e.name.get_ref().clone()))
            .collect();
        if self.syslog.as_ref().is_some_and(|s| s.enabled) {
            names.push(SYSLOG.into());
        }
        names
    }

    /// Checks what serde cannot; errors name the field below `alarms.`.
    pub fn validate(&self, config: &Config) -> Result<(), FieldError> {
        if self.queue == 0 {
            return Err((0..0, "queue".into(), "must be at least 1".into()));
        }
        if self.retry_base.is_zero() || self.retry_max < self.retry_base {
            return Err((
                0..0,
                "retry_base".into(),
                "must be above 0 and at most retry_max".into(),
            ));
        }
        let notifiers = self.validate_notifiers()?;
        let mut names = HashSet::new();
        for (i, rule) in self.rules.iter().flatten().enumerate() {
            let field = |f: &str| format!("rules[{i}].{f}");
            if !names.insert(rule.name.get_ref().as_str()) {
                return Err((
                    rule.name.span(),
                    field("name"),
                    format!("duplicate rule name {:?}", rule.name.get_ref()),
                ));
            }
            validate_rule(rule, config, &notifiers).map_err(|(s, f, m)| (s, field(&f), m))?;
        }
        Ok(())
    }

    fn validate_notifiers(&self) -> Result<Vec<String>, FieldError> {
        let mut seen = HashSet::new();
        let mut unique = |name: &Spanned<String>, field: String| {
            let n = name.get_ref();
            if n.is_empty() || n == SYSLOG || !seen.insert(n.clone()) {
                Err((
                    name.span(),
                    field,
                    format!("notifier name {n:?} is empty, reserved or used twice"),
                ))
            } else {
                Ok(())
            }
        };
        for (i, w) in self.webhooks.iter().enumerate() {
            unique(&w.name, format!("webhooks[{i}].name"))?;
            let url = w.url.get_ref();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err((
                    w.url.span(),
                    format!("webhooks[{i}].url"),
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        for (i, e) in self.email.iter().enumerate() {
            unique(&e.name, format!("email[{i}].name"))?;
            validate_email(e).map_err(|(s, f, m)| (s, format!("email[{i}].{f}"), m))?;
        }
        if let Some(s) = &self.syslog {
            if facility_code(s.facility.get_ref()).is_none() {
                return Err((
                    s.facility.span(),
                    "syslog.facility".into(),
                    format!("unknown facility {:?}", s.facility.get_ref()),
                ));
            }
            if let Some(f) = &s.format
                && !matches!(f.get_ref().as_str(), "rfc5424" | "rfc3164")
            {
                return Err((
                    f.span(),
                    "syslog.format".into(),
                    "must be \"rfc5424\" or \"rfc3164\"".into(),
                ));
            }
        }
        Ok(self.notifier_names())
    }
}

fn validate_email(e: &EmailConfig) -> Result<(), FieldError> {
    let mailbox = |text: &str| text.parse::<lettre::message::Mailbox>().is_ok();
    if !mailbox(e.from.get_ref()) {
        return Err((
            e.from.span(),
            "from".into(),
            format!("{:?} is not an e-mail address", e.from.get_ref()),
        ));
    }
    if e.to.get_ref().is_empty() {
        return Err((
            e.to.span(),
            "to".into(),
            "needs at least one address".into(),
        ));
    }
    if let Some(bad) = e.to.get_ref().iter().find(|t| !mailbox(t)) {
        return Err((
            e.to.span(),
            "to".into(),
            format!("{bad:?} is not an e-mail address"),
        ));
    }
    if e.username.is_some() != e.password.is_some() {
        return Err((
            e.name.span(),
            "username".into(),
            "username and password go together".into(),
        ));
    }
    if e.server.get_ref().trim().is_empty() {
        return Err((e.server.span(), "server".into(), "is empty".into()));
    }
    Ok(())
}

fn validate_rule(
    rule: &RuleConfig,
    config: &Config,
    notifiers: &[String],
) -> Result<(), FieldError> {
    let Some(condition) = Condition::from_name(rule.condition.get_ref()) else {
        let all: Vec<&str> = Condition::ALL.iter().map(|c| c.name()).collect();
        return Err((
            rule.condition.span(),
            "condition".into(),
            format!(
                "unknown condition {:?}; one of {}",
                rule.condition.get_ref(),
                all.join(", ")
            ),
        ));
    };
    let scope = scope_of(condition);
    let (wrong, right) = match scope {
        Scope::Input => (&rule.outputs, "inputs"),
        Scope::Output | Scope::Clock => (&rule.inputs, "outputs"),
    };
    if let Some(w) = wrong {
        return Err((
            w.span(),
            if scope == Scope::Input {
                "outputs"
            } else {
                "inputs"
            }
            .into(),
            format!("{} is watched on {right}", condition.name()),
        ));
    }
    let known: Vec<&str> = match scope {
        Scope::Input => config
            .inputs
            .iter()
            .map(|i| i.name.get_ref().as_str())
            .collect(),
        // Recorders are watched like outputs (`record_failed`).
        Scope::Output | Scope::Clock => config
            .outputs
            .iter()
            .map(|o| o.name.get_ref().as_str())
            .chain(config.recorders.iter().map(|r| r.name.get_ref().as_str()))
            .collect(),
    };
    let selector = match scope {
        Scope::Input => &rule.inputs,
        Scope::Output | Scope::Clock => &rule.outputs,
    };
    if let Some(list) = selector
        && let Some(bad) = list
            .get_ref()
            .iter()
            .find(|n| *n != "*" && !known.contains(&n.as_str()))
    {
        return Err((
            list.span(),
            right.into(),
            format!("no {} named {bad:?}", &right[..right.len() - 1]),
        ));
    }
    if let Some(t) = &rule.threshold {
        check_threshold(condition, t)?;
    }
    if let Some(list) = &rule.notify
        && let Some(bad) = list.get_ref().iter().find(|n| !notifiers.contains(n))
    {
        return Err((
            list.span(),
            "notify".into(),
            format!(
                "no notifier named {bad:?}; configured: {}",
                notifiers.join(", ")
            ),
        ));
    }
    Ok(())
}

fn check_threshold(condition: Condition, t: &Spanned<f64>) -> Result<(), FieldError> {
    let v = *t.get_ref();
    match threshold_unit(condition) {
        None => Err((
            t.span(),
            "threshold".into(),
            format!("{} takes no threshold", condition.name()),
        )),
        Some((unit, lo, hi)) if !(lo..=hi).contains(&v) => Err((
            t.span(),
            "threshold".into(),
            format!("{v} is outside {lo}..={hi} {unit}"),
        )),
        Some(_) => Ok(()),
    }
}
