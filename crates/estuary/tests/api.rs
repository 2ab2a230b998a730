//! The HTTP API of a real daemon (`estuary run`) in a private network namespace, driven with
//! `curl`, `estuary status` / `estuary ctl`, and fuzzed with schemathesis.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const API: &str = "http://127.0.0.1:8480";

fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: network namespaces need root");
    }
    root
}

const BASE: &str = "# API test\n[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
                    [api]\nbind = \"127.0.0.1:8480\"\n";

/// `curl` with a method, an optional JSON body; returns (HTTP status, body).
fn curl(method: &str, url: &str, json: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-k", "-X", method, "-w", "\n%{http_code}", url]);
    if let Some(body) = json {
        cmd.args([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    let (_, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    let text = String::from_utf8_lossy(&out).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let code = code
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("curl {url}: {err}"));
    (code, body.to_owned())
}

fn get_json(path: &str) -> serde_json::Value {
    let (code, body) = curl("GET", &format!("{API}{path}"), None);
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_for_api(base: &str) {
    wait_for("the API", Duration::from_secs(10), || {
        curl("GET", &format!("{base}/api/system"), None).0 == 200
    });
}

fn estuary(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(ESTUARY);
    cmd.args(args)
        .env("ESTUARY_API", API)
        .env_remove("ESTUARY_TOKEN");
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out).into_owned(),
        err,
    )
}

/// A tiny Prometheus text parser: `name{labels}` → value; checks every sample's family was
/// declared with `# TYPE` and every line is well formed.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut typed = std::collections::HashSet::new();
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter without _total: {name}");
            }
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample: series value");
        let name = series.split('{').next().unwrap_or(series);
        assert!(typed.contains(name), "sample before its # TYPE: {line}");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{line}"
        );
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[test]
fn api_adds_an_input_that_receives_and_is_measured() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut daemon = start_estuary(dir.path(), BASE);
    wait_for_api(API);
    let mut cmd = Command::new(ESTUARY);
    cmd.args([
        "send",
        "--to",
        "127.0.0.1:5004",
        "--level",
        "-12",
        "--no-announce",
    ]);
    let _sender = Proc::spawn("send", &mut cmd, dir.path());

    let (code, body) = curl(
        "POST",
        &format!("{API}/api/inputs"),
        Some(r#"{"name":"tone","address":"127.0.0.1:5004","interface":"lo"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let file = std::fs::read_to_string(dir.path().join("estuary.toml")).expect("config");
    assert!(
        file.starts_with(BASE) && file.contains("name = \"tone\""),
        "{file}"
    );

    wait_for("the input to receive", Duration::from_secs(10), || {
        let status = get_json("/api/status");
        status["inputs"][0]["state"] == "receiving"
            && status["inputs"][0]["counters"]["packets_received"].as_u64() > Some(500)
    });
    // The tone is sent at -12 dBFS peak: the meters must say so.
    let meters = get_json("/api/meters");
    let peak = meters[0]["channels"][0]["peak"].as_f64().expect("peak");
    assert!((peak + 12.0).abs() < 0.5, "peak {peak} dBFS: {meters}");
    let rms = meters[0]["channels"][0]["rms"].as_f64().expect("rms");
    assert!(
        (rms + 15.0).abs() < 0.5,
        "sine RMS is 3 dB under its peak: {rms}"
    );

    let (code, text) = curl("GET", &format!("{API}/metrics"), None);
    assert_eq!(code, 200);
    let metrics = parse_metrics(&text);
    let received = metrics["estuary_input_packets_received_total{input=\"tone\"}"];
    assert!(received > 500.0, "{received}");
    assert_eq!(metrics["estuary_input_up{input=\"tone\"}"], 1.0);
    let metered = metrics["estuary_input_peak_dbfs{input=\"tone\",channel=\"1\"}"];
    assert!((metered + 12.0).abs() < 0.5, "{metered}");
    assert_eq!(metrics["estuary_alarms_active{severity=\"critical\"}"], 0.0);

    let (code, out, err) = estuary(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tone") && out.contains("receiving"), "{out}");
    let (code, out, err) = estuary(&[
        "ctl",
        "add-output",
        "srt",
        "--input",
        "tone",
        "--address",
        "127.0.0.1:9000",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = estuary(&["ctl", "outputs"]);
    assert_eq!(code, 0);
    assert!(out.contains("srt") && out.contains("tone"), "{out}");
    let (code, _, err) = estuary(&["ctl", "add-input", "bad", "--address", "nowhere"]);
    assert_eq!(code, 3, "a rejected change exits 3: {err}");
    assert!(err.contains("inputs[1].address"), "{err}");
    let (code, out, _) = estuary(&["ctl", "events"]);
    assert_eq!(code, 0);
    assert!(out.contains("config_applied"), "{out}");

    // SIGHUP with a broken file: refused, the running configuration stays.
    let path = dir.path().join("estuary.toml");
    std::fs::write(&path, "[[inputs]\nbroken").expect("write");
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(daemon.child.id() as i32, libc::SIGHUP) };
    wait_for("the reload to be refused", Duration::from_secs(10), || {
        get_json("/api/events?limit=1000")
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "config_rejected"))
    });
    let status = get_json("/api/status");
    assert_eq!(status["inputs"][0]["name"], "tone");
    assert_eq!(status["outputs"][0]["name"], "srt");
    assert!(daemon.child.try_wait().expect("try_wait").is_none());
    daemon.terminate(Duration::from_secs(10));
}

#[test]
fn api_serves_https_with_a_configured_certificate() {
    if !root() {
        return;
    }
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let mut openssl = Command::new("openssl");
    openssl
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert);
    let (status, _, err) = run_with_timeout(&mut openssl, Duration::from_secs(60));
    assert!(status.success(), "openssl: {err}");
    let config = "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:8443\"\n\
                  tls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\n";
    let _daemon = start_estuary(dir.path(), config);
    wait_for_api("https://127.0.0.1:8443");
    let (code, body) = curl("GET", "https://127.0.0.1:8443/api/status", None);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"inputs\""), "{body}");
    // Plain HTTP on the TLS port is not answered as HTTP.
    let (code, _) = curl("GET", "http://127.0.0.1:8443/api/status", None);
    assert_ne!(code, 200);
}

fn schemathesis() -> &'static Path {
    let st = Path::new("/opt/estuary-venv/bin/st");
    assert!(
        st.exists(),
        "schemathesis is missing: run `scripts/deps.sh test` (installs it into /opt/estuary-venv)"
    );
    st
}

#[test]
fn schemathesis_finds_no_server_errors() {
    if !root() {
        return;
    }
    let st = schemathesis();
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "{BASE}\n[[inputs]]\nname = \"studio\"\nkind = \"aes67\"\naddress = \"127.0.0.1:5004\"\n\n\
         [[outputs]]\nname = \"out\"\nkind = \"srt\"\ninput = \"studio\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:9000\"\ncodec = \"opus\"\n"
    );
    let _daemon = start_estuary(dir.path(), &config);
    wait_for_api(API);
    let mut cmd = Command::new(st);
    cmd.args(["run", &format!("{API}/api/openapi.json")])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "25"])
        // The live stream never ends; it is tested on its own.
        .args(["--exclude-path", "/api/live"])
        .current_dir(dir.path());
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(600));
    let out = String::from_utf8_lossy(&out);
    assert!(
        status.success(),
        "schemathesis found failures:\n{out}\n{err}"
    );
    // Guard against a run that tested nothing (a document it could not load, say).
    assert!(
        out.contains("/api/inputs"),
        "schemathesis did not test the API:\n{out}"
    );
    eprintln!("{out}");
}
