//! Alarms against real peers: an HTTP receiver that checks the webhook signature, a real
//! SMTP server (aiosmtpd, with STARTTLS and AUTH), a syslog collector on UDP, and the daemon
//! raising and clearing alarms when a real sender stops and comes back.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use common::{ESTUARY, Proc, isolate, run_with_timeout, start_estuary};

const SECRET: &str = "correct horse battery staple";

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Request {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Checks `X-Estuary-Signature` against our own HMAC of the body.
    fn assert_signed(&self) {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).expect("key");
        mac.update(&self.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(
            self.header("X-Estuary-Signature"),
            Some(expected.as_str()),
            "signature of {}",
            String::from_utf8_lossy(&self.body)
        );
    }
}

/// A minimal HTTP/1.1 server on loopback that records every POST and answers 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Request>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let Some(request) = read_request(stream) {
                    sink.lock().expect("lock").push(request);
                }
            }
        });
        Receiver { url, got }
    }

    fn requests(&self) -> Vec<Request> {
        self.got.lock().expect("lock").clone()
    }

    /// Waits for a payload with this key and state.
    fn wait_for(&self, key: &str, state: &str, timeout: Duration) -> Request {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(r) = self
                .requests()
                .into_iter()
                .find(|r| r.json()["key"] == key && r.json()["state"] == state)
            {
                return r;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let seen: Vec<String> = self
            .requests()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        panic!("no {key} {state} within {timeout:?}; got {seen:#?}");
    }
}

fn read_request(stream: TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    assert!(
        line.starts_with("POST /hook HTTP/1.1"),
        "request line {line:?}"
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let mut stream = stream;
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    Some(Request { headers, body })
}

/// A loopback port with nothing listening (connections are refused).
fn dead_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn alarm_test(config: &Path, extra: &[&str]) -> (i32, String) {
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(ESTUARY)
            .args(["alarm", "test", "--config"])
            .arg(config)
            .args(extra),
        Duration::from_secs(60),
    );
    (
        status.code().unwrap_or(-1),
        format!("{}{stderr}", String::from_utf8_lossy(&stdout)),
    )
}

#[test]
fn alarm_test_reaches_a_signed_webhook_and_syslog_and_reports_a_dead_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Receiver::start();
    let syslog = UdpSocket::bind("127.0.0.1:0").expect("udp");
    syslog
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let config = dir.path().join("alarms.toml");
    let text = format!(
        r#"
[alarms]
[[alarms.webhooks]]
name = "ops"
url = "{url}"
secret = "{SECRET}"
headers = {{ "X-Team" = "audio" }}

[[alarms.webhooks]]
name = "dead"
url = "http://127.0.0.1:{dead}/hook"
timeout = "2s"

[alarms.syslog]
address = "{udp}"
facility = "local1"
"#,
        url = hook.url,
        dead = dead_port(),
        udp = syslog.local_addr().expect("addr"),
    );
    std::fs::write(&config, text).expect("write");

    let (code, out) = alarm_test(&config, &["--notifier", "ops", "--severity", "critical"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ops (webhook): raised: ok"), "{out}");
    assert!(out.contains("ops (webhook): cleared: ok"), "{out}");
    let got = hook.requests();
    assert_eq!(got.len(), 2, "{got:?}");
    for (r, state) in got.iter().zip(["raised", "cleared"]) {
        r.assert_signed();
        assert_eq!(r.header("X-Team"), Some("audio"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let j = r.json();
        assert_eq!(j["key"], "system/estuary/test");
        assert_eq!(j["state"], state);
        assert_eq!(j["severity"], "critical");
        assert_eq!(j["condition"], "test");
        assert!(
            j["message"].as_str().is_some_and(|m| m.contains(state)),
            "{j}"
        );
        assert!(j["at"].as_str().is_some_and(|a| a.ends_with('Z')), "{j}");
        assert!(j["host"].as_str().is_some_and(|h| !h.is_empty()), "{j}");
    }

    let (code, out) = alarm_test(&config, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("dead (webhook): raised: error: POST http://127.0.0.1:"),
        "{out}"
    );
    assert!(out.contains("syslog (syslog): raised: ok"), "{out}");
    let mut buf = [0u8; 2048];
    let n = syslog.recv(&mut buf).expect("syslog datagram");
    let line = String::from_utf8_lossy(&buf[..n]);
    // local1 (17) * 8 + info (6) = 142; a collector gets RFC 5424.
    assert!(line.starts_with("<142>1 "), "{line}");
    assert!(
        line.contains(" estuary ") && line.contains("alarm raised system/estuary/test [info]"),
        "{line}"
    );

    let (code, out) = alarm_test(&config, &["--notifier", "nobody"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no notifier named \"nobody\""), "{out}");
}

/// aiosmtpd (Debian `python3-aiosmtpd`) with a handler that appends each message to a file;
/// with `tls`, STARTTLS is required and AUTH (LOGIN/PLAIN as estuary/hunter2) too.
const SMTP_SERVER: &str = r#"
import sys, ssl, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Handler:
    async def handle_DATA(self, server, session, envelope):
        with open(out, "a") as f:
            f.write("TLS=%s AUTH=%s\n" % (session.ssl is not None, bool(session.authenticated)))
            f.write("RCPT=%s\n" % ",".join(envelope.rcpt_tos))
            f.write(envelope.content.decode("utf-8", "replace"))
            f.write("\n.\n")
        return "250 OK"

def authenticate(server, session, envelope, mechanism, data):
    ok = isinstance(data, LoginPassword) and data.login == b"estuary" and data.password == b"hunter2"
    return AuthResult(success=ok)

kwargs = {}
if mode == "tls":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[4], sys.argv[5])
    kwargs = dict(tls_context=ctx, require_starttls=True, authenticator=authenticate,
                  auth_required=True)
controller = Controller(Handler(), hostname="127.0.0.1", port=port, **kwargs)
controller.start()
print("ready", flush=True)
while True:
    time.sleep(1)
"#;

/// A CA and a certificate for 127.0.0.1 it signed, made with the openssl CLI.
fn make_certs(dir: &Path) {
    let run = |args: &[&str]| {
        let (status, _, err) = run_with_timeout(
            Command::new("openssl").args(args).current_dir(dir),
            Duration::from_secs(30),
        );
        assert!(status.success(), "openssl {args:?}: {err}");
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=estuary test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"],
        &ec[..],
        &[
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "leaf.pem",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

fn start_smtp(dir: &Path, port: u16, mode: &str) -> Proc {
    std::fs::write(dir.join("smtp.py"), SMTP_SERVER).expect("script");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(dir.join("smtp.py"))
        .arg(port.to_string())
        .arg(dir.join(format!("{mode}.mbox")))
        .arg(mode)
        .arg(dir.join("leaf.pem"))
        .arg(dir.join("leaf.key"))
        .stdout(Stdio::piped());
    let mut proc = Proc::spawn(&format!("smtp-{mode}"), &mut cmd, dir);
    let stdout = proc.child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("ready");
    assert_eq!(line.trim(), "ready", "aiosmtpd: {}", proc.stderr());
    proc
}

#[test]
fn email_goes_through_a_real_smtp_server_plain_and_with_starttls_and_auth() {
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let (plain_port, tls_port) = (dead_port(), dead_port());
    let _plain = start_smtp(dir.path(), plain_port, "plain");
    let _tls = start_smtp(dir.path(), tls_port, "tls");
    let config = dir.path().join("mail.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[alarms.email]]
name = "relay"
server = "127.0.0.1"
port = {plain_port}
starttls = false
from = "Estuary <estuary@example.org>"
to = ["ops@example.org", "oncall@example.org"]
subject_prefix = "[studio]"

[[alarms.email]]
name = "secure"
server = "127.0.0.1"
port = {tls_port}
starttls = "required"
ca_file = "ca.pem"
username = "estuary"
password = "hunter2"
from = "estuary@example.org"
to = ["ops@example.org"]

[[alarms.email]]
name = "wrong-password"
server = "127.0.0.1"
port = {tls_port}
starttls = true
ca_file = "ca.pem"
username = "estuary"
password = "guess"
timeout = "2s"
from = "estuary@example.org"
to = ["ops@example.org"]
"#
        ),
    )
    .expect("write");
    // ca_file is relative to the config file; run from elsewhere to prove it.
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(ESTUARY)
            .args(["alarm", "test", "--severity", "warning", "--config"])
            .arg(&config)
            .current_dir("/"),
        Duration::from_secs(60),
    );
    let out = format!("{}{stderr}", String::from_utf8_lossy(&stdout));
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("relay (email): raised: ok"), "{out}");
    assert!(out.contains("relay (email): cleared: ok"), "{out}");
    assert!(out.contains("secure (email): raised: ok"), "{out}");
    assert!(
        out.contains("wrong-password (email): raised: error:"),
        "{out}"
    );

    let plain = std::fs::read_to_string(dir.path().join("plain.mbox")).expect("plain mail");
    assert_eq!(plain.matches("TLS=False AUTH=False").count(), 2, "{plain}");
    assert!(
        plain.contains("RCPT=ops@example.org,oncall@example.org"),
        "{plain}"
    );
    assert!(
        plain.contains("Subject: [studio] WARNING raised: test alarm raised by"),
        "{plain}"
    );
    assert!(plain.contains("Alarm:     system/estuary/test"), "{plain}");
    assert!(plain.contains("State:     cleared"), "{plain}");
    let secure = std::fs::read_to_string(dir.path().join("tls.mbox")).expect("tls mail");
    assert_eq!(secure.matches("TLS=True AUTH=True").count(), 2, "{secure}");
    assert!(
        secure.contains("Subject: [estuary] WARNING cleared"),
        "{secure}"
    );
}

fn webhook_requests_for<'a>(got: &'a [Request], key: &str) -> Vec<&'a Request> {
    got.iter().filter(|r| r.json()["key"] == key).collect()
}

/// `input NAME: N packets` from the daemon's periodic report, in order.
fn packet_counts(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.split("input tone: ").nth(1))
        .filter_map(|rest| rest.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn a_stopped_sender_raises_alarms_that_clear_when_it_returns_while_a_dead_webhook_retries() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = Receiver::start();
    let config = format!(
        r#"
[discovery]
sap = false
ravenna = false

[[inputs]]
name = "tone"
kind = "aes67"
address = "239.69.30.1:5004"
interface = "lo"

[alarms]
retries = 1000
retry_base = "50ms"
retry_max = "100ms"

[[alarms.webhooks]]
name = "hook"
url = "{url}"
secret = "{SECRET}"

[[alarms.webhooks]]
name = "dead"
url = "http://127.0.0.1:{dead}/hook"
timeout = "1s"

[[alarms.rules]]
name = "gone"
condition = "no_packets"
threshold = 300.0
severity = "critical"

[[alarms.rules]]
name = "quiet"
condition = "silence"
threshold = -60.0
raise_after = "1s"
clear_after = "100ms"
"#,
        url = hook.url,
        dead = dead_port(),
    );
    let send = || {
        let mut cmd = Command::new(ESTUARY);
        cmd.args([
            "send",
            "--no-announce",
            "--to",
            "239.69.30.1:5004",
            "--interface",
            "lo",
        ]);
        Proc::spawn("send", &mut cmd, dir.path())
    };
    let mut sender = send();
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        hook.requests().is_empty(),
        "alarms while the tone plays: {:?}",
        hook.requests()
    );

    sender.kill();
    let gone = hook.wait_for("input/tone/no_packets", "raised", Duration::from_secs(10));
    gone.assert_signed();
    let j = gone.json();
    assert_eq!(j["rule"], "gone");
    assert_eq!(j["severity"], "critical");
    assert_eq!(j["subject"], "tone");
    assert!(j["value"].as_f64().is_some_and(|ms| ms >= 300.0), "{j}");
    for ch in [1, 2] {
        let quiet = hook.wait_for(
            &format!("input/tone/silence/ch{ch}"),
            "raised",
            Duration::from_secs(10),
        );
        quiet.assert_signed();
        assert_eq!(quiet.json()["channel"], ch);
        assert_eq!(quiet.json()["severity"], "warning");
    }

    let mut sender = send();
    hook.wait_for("input/tone/no_packets", "cleared", Duration::from_secs(10));
    hook.wait_for("input/tone/silence/ch1", "cleared", Duration::from_secs(10));
    hook.wait_for("input/tone/silence/ch2", "cleared", Duration::from_secs(10));
    let got = hook.requests();
    // Raised once and cleared once: no duplicates.
    assert_eq!(webhook_requests_for(&got, "input/tone/no_packets").len(), 2);

    // Two periodic reports (every 10 s) after the sender came back: audio flows although the
    // dead webhook keeps failing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = packet_counts(&estuary.stderr()).len();
    while packet_counts(&estuary.stderr()).len() < before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = estuary.stderr();
    let counts = packet_counts(&log);
    assert!(counts.len() >= before + 2, "{log}");
    let (a, b) = (counts[counts.len() - 2], counts[counts.len() - 1]);
    assert!(b > a + 5_000, "packets {a} → {b}: audio stalled\n{log}");
    let retries = log
        .lines()
        .filter(|l| l.contains("notification failed; retrying") && l.contains("notifier=dead"))
        .count();
    assert!(retries >= 10, "{retries} retries logged\n{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("notifier=hook") && l.contains("failed")),
        "{log}"
    );
    assert!(
        log.contains("alarm raised: no_packets on input tone"),
        "{log}"
    );
    sender.interrupt(Duration::from_secs(5));
    let status = estuary.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}
