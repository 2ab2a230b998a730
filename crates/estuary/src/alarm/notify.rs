//! The notifiers: a webhook POST, an e-mail, a syslog line. Each delivers one notice,
//! blocking, with its own timeout; the delivery workers call them off the alarm thread.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use serde::Serialize;
use sha2::Sha256;

use super::config::Severity;
use super::config::{EmailConfig, SYSLOG, SyslogConfig, TlsMode, WebhookConfig, facility_code};
use super::engine::Notice;
use crate::gateway::rfc3339;

/// The local syslog socket (journald's syslog socket on systemd hosts).
const DEV_LOG: &str = "/dev/log";

/// One configured notifier.
#[derive(Debug)]
pub enum Notifier {
    Webhook(Webhook),
    Email(Box<Email>),
    Syslog(Syslog),
}

impl Notifier {
    pub fn name(&self) -> &str {
        match self {
            Notifier::Webhook(w) => w.config.name.get_ref(),
            Notifier::Email(e) => e.config.name.get_ref(),
            Notifier::Syslog(_) => SYSLOG,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Notifier::Webhook(_) => "webhook",
            Notifier::Email(_) => "email",
            Notifier::Syslog(_) => "syslog",
        }
    }

    /// Sends `notice`; the error says why it did not arrive.
    pub fn deliver(&self, notice: &Notice, host: &str) -> Result<(), String> {
        match self {
            Notifier::Webhook(w) => w.deliver(notice, host),
            Notifier::Email(e) => e.deliver(notice, host),
            Notifier::Syslog(s) => s.deliver(notice, host),
        }
    }
}

/// Builds every notifier `alarms` configures, in config order.
pub fn build_all(alarms: &super::config::AlarmsConfig) -> Vec<Result<Notifier, (String, String)>> {
    let mut out: Vec<Result<Notifier, (String, String)>> = alarms
        .webhooks
        .iter()
        .map(|w| Ok(Notifier::Webhook(Webhook::new(w.clone()))))
        .collect();
    for e in &alarms.email {
        out.push(
            Email::new(e.clone())
                .map(|e| Notifier::Email(Box::new(e)))
                .map_err(|m| (e.name.get_ref().clone(), m)),
        );
    }
    if let Some(s) = alarms.syslog.as_ref().filter(|s| s.enabled) {
        out.push(Ok(Notifier::Syslog(Syslog::new(s.clone()))));
    }
    out
}

/// The JSON body of a webhook.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    pub key: &'a str,
    pub rule: &'a str,
    pub condition: &'a str,
    pub severity: &'a str,
    /// `raised` or `cleared`.
    pub state: &'a str,
    pub scope: &'a str,
    pub subject: &'a str,
    pub channel: Option<u16>,
    pub value: Option<f64>,
    pub message: &'a str,
    /// RFC 3339 UTC.
    pub at: String,
    pub host: &'a str,
}

impl<'a> Payload<'a> {
    pub fn of(n: &'a Notice, host: &'a str) -> Self {
        Payload {
            key: &n.key,
            rule: &n.rule,
            condition: &n.condition,
            severity: n.severity.name(),
            state: n.state(),
            scope: &n.scope,
            subject: &n.subject,
            channel: n.channel,
            value: n.value.is_finite().then_some(n.value),
            message: &n.message,
            at: rfc3339(n.at),
            host,
        }
    }
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug)]
pub struct Webhook {
    config: WebhookConfig,
    agent: ureq::Agent,
}

impl Webhook {
    fn new(config: WebhookConfig) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(config.timeout))
            .http_status_as_error(true)
            .user_agent(concat!("estuary/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Webhook { config, agent }
    }

    fn deliver(&self, notice: &Notice, host: &str) -> Result<(), String> {
        let body = serde_json::to_vec(&Payload::of(notice, host)).map_err(|e| e.to_string())?;
        let mut request = self
            .agent
            .post(self.config.url.get_ref())
            .header("Content-Type", "application/json")
            .header("X-Estuary-Event", notice.state());
        for (name, value) in &self.config.headers {
            request = request.header(name, value);
        }
        if let Some(secret) = &self.config.secret {
            request = request.header("X-Estuary-Signature", signature(secret, &body));
        }
        request
            .send(&body[..])
            .map(drop)
            .map_err(|e| format!("POST {}: {e}", self.config.url.get_ref()))
    }
}

#[derive(Debug)]
pub struct Email {
    config: EmailConfig,
    transport: SmtpTransport,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    fn new(config: EmailConfig) -> Result<Self, String> {
        let server = config.server.get_ref().clone();
        let tls = || -> Result<TlsParameters, String> {
            let mut builder = TlsParameters::builder(server.clone());
            if let Some(path) = &config.ca_file {
                let pem =
                    std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("ca_file {}: {e}", path.display()))?;
                builder = builder.add_root_certificate(cert);
            }
            builder.build().map_err(|e| e.to_string())
        };
        let mode = match config.starttls {
            TlsMode::Off => Tls::None,
            TlsMode::Opportunistic => Tls::Opportunistic(tls()?),
            TlsMode::Required => Tls::Required(tls()?),
            TlsMode::Implicit => Tls::Wrapper(tls()?),
        };
        let mut builder = SmtpTransport::builder_dangerous(&server)
            .port(config.port())
            .tls(mode)
            .timeout(Some(config.timeout));
        if let (Some(user), Some(pass)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        let from = config
            .from
            .get_ref()
            .parse()
            .map_err(|e| format!("from: {e}"))?;
        let to = config
            .to
            .get_ref()
            .iter()
            .map(|t| t.parse().map_err(|e| format!("to {t:?}: {e}")))
            .collect::<Result<_, String>>()?;
        Ok(Email {
            transport: builder.build(),
            config,
            from,
            to,
        })
    }

    fn deliver(&self, notice: &Notice, host: &str) -> Result<(), String> {
        let subject = format!(
            "{} {} {}: {}",
            self.config.subject_prefix,
            notice.severity.name().to_uppercase(),
            notice.state(),
            notice.message
        );
        let mut builder = Message::builder().from(self.from.clone()).subject(subject);
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        let message = builder
            .body(mail_body(notice, host))
            .map_err(|e| e.to_string())?;
        self.transport.send(&message).map(drop).map_err(|e| {
            format!(
                "SMTP {}:{}: {e}",
                self.config.server.get_ref(),
                self.config.port()
            )
        })
    }
}

fn mail_body(n: &Notice, host: &str) -> String {
    let channel = n
        .channel
        .map_or_else(String::new, |c| format!("Channel:   {c}\n"));
    format!(
        "{}\n\nAlarm:     {}\nState:     {}\nSeverity:  {}\nCondition: {}\nRule:      {}\n\
         Subject:   {} {}\n{channel}Value:     {}\nAt:        {}\nHost:      {host}\n",
        n.message,
        n.key,
        n.state(),
        n.severity.name(),
        n.condition,
        n.rule,
        n.scope,
        n.subject,
        n.value,
        rfc3339(n.at),
    )
}

#[derive(Debug)]
pub struct Syslog {
    config: SyslogConfig,
}

impl Syslog {
    fn new(config: SyslogConfig) -> Self {
        Syslog { config }
    }

    fn rfc5424(&self) -> bool {
        match &self.config.format {
            Some(f) => f.get_ref() == "rfc5424",
            None => self.config.address.is_some(),
        }
    }

    fn deliver(&self, notice: &Notice, host: &str) -> Result<(), String> {
        let line = self.line(notice, host);
        let sent = match self.config.address {
            Some(addr) => send_udp(addr, line.as_bytes()),
            None => UnixDatagram::unbound().and_then(|s| s.send_to(line.as_bytes(), DEV_LOG)),
        };
        sent.map(drop).map_err(|e| match self.config.address {
            Some(a) => format!("syslog {a}: {e}"),
            None => format!("syslog {DEV_LOG}: {e}"),
        })
    }

    /// The datagram for `notice`.
    pub fn line(&self, notice: &Notice, host: &str) -> String {
        let facility = facility_code(self.config.facility.get_ref()).unwrap_or(3);
        let pri = u16::from(facility) * 8 + u16::from(syslog_severity(notice));
        let text = format!(
            "alarm {} {} [{}] {}",
            notice.state(),
            notice.key,
            notice.severity.name(),
            notice.message
        );
        let ident = &self.config.ident;
        let pid = std::process::id();
        if self.rfc5424() {
            format!(
                "<{pri}>1 {} {host} {ident} {pid} alarm - {text}",
                rfc3339(notice.at)
            )
        } else {
            // RFC 3164 has no year or zone: the receiving daemon adds its own view.
            let stamp = humantime::format_rfc3339_seconds(notice.at).to_string();
            let local = rfc3164_time(&stamp);
            format!("<{pri}>{local} {ident}[{pid}]: {text}")
        }
    }
}

fn send_udp(addr: SocketAddr, datagram: &[u8]) -> io::Result<usize> {
    let bind: SocketAddr = if addr.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(bind)?;
    socket.set_write_timeout(Some(Duration::from_secs(2)))?;
    socket.send_to(datagram, addr)
}

/// `Mmm dd hh:mm:ss` from an RFC 3339 `YYYY-MM-DDThh:mm:ssZ`.
fn rfc3164_time(rfc3339: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = rfc3339
        .get(5..7)
        .and_then(|m| m.parse::<usize>().ok())
        .and_then(|m| MONTHS.get(m.wrapping_sub(1)))
        .unwrap_or(&"Jan");
    let day = rfc3339
        .get(8..10)
        .and_then(|d| d.parse::<u8>().ok())
        .unwrap_or(1);
    let time = rfc3339.get(11..19).unwrap_or("00:00:00");
    format!("{month} {day:>2} {time}")
}

/// syslog severity: critical → crit (2), warning → warning (4), info → info (6); a clear is a
/// notice (5) whatever the alarm was.
fn syslog_severity(n: &Notice) -> u8 {
    if !n.raised {
        return 5;
    }
    match n.severity {
        Severity::Critical => 2,
        Severity::Warning => 4,
        Severity::Info => 6,
    }
}

/// This host's name, for payloads.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn notice() -> Notice {
        Notice {
            key: "input/a/silence/ch1".into(),
            rule: "quiet".into(),
            condition: "silence".into(),
            severity: Severity::Critical,
            raised: true,
            scope: "input".into(),
            subject: "a".into(),
            channel: Some(1),
            value: -90.0,
            message: "silence on input a ch1: -90.0 dBFS".into(),
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(86_400 * 40),
            notify: None,
        }
    }

    fn syslog(format: Option<&str>) -> Syslog {
        Syslog::new(SyslogConfig {
            enabled: true,
            facility: toml::Spanned::new(0..0, "local3".into()),
            ident: "estuary".into(),
            address: None,
            format: format.map(|f| toml::Spanned::new(0..0, f.into())),
        })
    }

    #[test]
    fn syslog_lines_follow_the_rfcs() {
        let pid = std::process::id();
        // local3 (19) * 8 + crit (2) = 154.
        assert_eq!(
            syslog(None).line(&notice(), "h"),
            format!(
                "<154>Feb 10 00:00:00 estuary[{pid}]: alarm raised input/a/silence/ch1 \
                 [critical] silence on input a ch1: -90.0 dBFS"
            )
        );
        let line = syslog(Some("rfc5424")).line(&notice(), "h");
        assert!(
            line.starts_with(&format!(
                "<154>1 1970-02-10T00:00:00.000Z h estuary {pid} alarm - "
            )),
            "{line}"
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn the_payload_names_everything() {
        let n = notice();
        let json = serde_json::to_value(Payload::of(&n, "h")).expect("json");
        assert_eq!(json["key"], "input/a/silence/ch1");
        assert_eq!(json["state"], "raised");
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["channel"], 1);
        assert_eq!(json["value"], -90.0);
        assert_eq!(json["at"], "1970-02-10T00:00:00.000Z");
        assert_eq!(json["host"], "h");
    }
}
