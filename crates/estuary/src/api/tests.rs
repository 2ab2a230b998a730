//! Handler tests: the real router against a real gateway and supervisor running a config on
//! loopback ports, every JSON answer checked against its schema in the generated OpenAPI
//! document.

use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::{Value, json};
use tower::ServiceExt as _;
use utoipa::OpenApi as _;

use super::auth::{self, Role};
use super::config::ApiConfig;
use super::store::ConfigStore;
use super::{ApiState, app};
use crate::config;
use crate::gateway::{self, Gateway};
use crate::pipeline::Reporting;
use crate::shutdown::Stop;

/// A running gateway on free loopback ports, its config in a temporary file.
struct Fixture {
    state: ApiState,
    path: PathBuf,
    stop: Stop,
    supervisor: Option<JoinHandle<()>>,
    _dir: tempfile::TempDir,
    srt_port: u16,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.stop.request();
        if let Some(t) = self.supervisor.take() {
            let _ = t.join();
        }
    }
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn fixture(api_section: &str) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (in_port, srt_port) = (free_udp_port(), free_udp_port());
    let text = format!(
        "# test gateway\n[discovery]\nsap = false\nravenna = false\nsap_groups = []\n\n\
         [[inputs]]\nname = \"studio\" # the main feed\nkind = \"aes67\"\n\
         address = \"127.0.0.1:{in_port}\"\n\n\
         [[outputs]]\nname = \"out\"\nkind = \"srt\"\ninput = \"studio\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:{srt_port}\"\ncodec = \"opus\"\n{api_section}"
    );
    let path = dir.path().join("estuary.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = config::load(&path).expect("valid test config");
    let (gw, inbox) = Gateway::new(&config, Some(path.display().to_string()));
    let stop = Stop::default();
    let (gw2, stop2) = (gw.clone(), stop.clone());
    let supervisor = std::thread::spawn(move || {
        gateway::supervise(&config, &gw2, &inbox, &stop2, Reporting::Log, || {})
            .expect("supervisor");
    });
    let state = ApiState::new(gw.clone(), ConfigStore::file(&path));
    wait_until(|| !gw.status().inputs.is_empty(), "the first status");
    Fixture {
        state,
        path,
        stop,
        supervisor: Some(supervisor),
        _dir: dir,
        srt_port,
    }
}

fn wait_until(mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

async fn call(
    state: &ApiState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let body = match body {
        Some(v) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(state, request.body(body).expect("request")).await
}

async fn send(state: &ApiState, request: Request<Body>) -> Answer {
    let response = app(state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = axum::body::to_bytes(response.into_body(), 16 << 20)
        .await
        .expect("body");
    Answer {
        status,
        content_type,
        text: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// Checks `body` against the schema the OpenAPI document declares for this answer.
fn assert_conforms(path: &str, method: &str, status: StatusCode, body: &Value) {
    let doc = serde_json::to_value(super::openapi::ApiDoc::openapi()).expect("document");
    let schema = &doc["paths"][path][method]["responses"][status.as_str()]["content"]["application/json"]
        ["schema"];
    assert!(
        schema.is_object(),
        "no JSON schema for {method} {path} {status}"
    );
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&root)
        .unwrap_or_else(|e| panic!("schema of {method} {path}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{method} {path} does not match its schema: {errors:?}\n{body}"
    );
}

/// GET `uri` (documented as `path`), expect 200 and a conforming body.
async fn get_ok(state: &ApiState, uri: &str, path: &str) -> Value {
    let a = call(state, "GET", uri, None, None).await;
    assert_eq!(a.status, StatusCode::OK, "GET {uri}: {}", a.text);
    let body = a.json();
    assert_conforms(path, "get", StatusCode::OK, &body);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_matches_its_schema() {
    let f = fixture("");
    f.state
        .gateway()
        .record("route", "info", "studio", "test event");
    let status = get_ok(&f.state, "/api/status", "/api/status").await;
    assert_eq!(status["inputs"][0]["name"], "studio");
    assert_eq!(status["outputs"][0]["name"], "out");
    get_ok(&f.state, "/api/system", "/api/system").await;
    get_ok(&f.state, "/api/clock", "/api/clock").await;
    get_ok(&f.state, "/api/alarms", "/api/alarms").await;
    let events = get_ok(&f.state, "/api/events?after=0&limit=5", "/api/events").await;
    assert!(
        events
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["message"] == "test event")),
        "{events}"
    );
    get_ok(&f.state, "/api/meters", "/api/meters").await;
    get_ok(&f.state, "/api/discovery/streams", "/api/discovery/streams").await;
    let routes = get_ok(&f.state, "/api/routes", "/api/routes").await;
    assert_eq!(routes["matrix"], json!([[true]]));
    tracing::info!("a line for the log ring");
    get_ok(&f.state, "/api/logs?lines=10", "/api/logs").await;
    let inputs = get_ok(&f.state, "/api/inputs", "/api/inputs").await;
    assert_eq!(inputs[0]["config"]["kind"], "aes67");
    let one = get_ok(&f.state, "/api/inputs/studio", "/api/inputs/{name}").await;
    assert_eq!(one["status"]["name"], "studio");
    get_ok(&f.state, "/api/outputs", "/api/outputs").await;
    let out = get_ok(&f.state, "/api/outputs/out", "/api/outputs/{name}").await;
    assert_eq!(out["config"]["mode"], "listener");
    let config = get_ok(&f.state, "/api/config?format=json", "/api/config").await;
    assert!(
        config["text"]
            .as_str()
            .is_some_and(|t| t.contains("# the main feed"))
    );

    let missing = call(&f.state, "GET", "/api/inputs/nope", None, None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_conforms("/api/inputs/{name}", "get", missing.status, &missing.json());
    let unknown = call(&f.state, "GET", "/api/nothing/here", None, None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.json()["error"]["message"].is_string());
    let bad_query = call(&f.state, "GET", "/api/events?limit=-3", None, None).await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    assert!(bad_query.json()["error"]["message"].is_string());

    let text = call(&f.state, "GET", "/api/config", None, None).await;
    assert!(text.content_type.starts_with("text/plain"));
    assert_eq!(
        text.text,
        std::fs::read_to_string(&f.path).expect("config file")
    );
    let doc = call(&f.state, "GET", "/api/openapi.json", None, None).await;
    assert_eq!(doc.json()["openapi"], "3.1.0");
    let metrics = call(&f.state, "GET", "/metrics", None, None).await;
    assert!(metrics.content_type.starts_with("text/plain"));
    assert!(
        metrics
            .text
            .contains("estuary_input_packets_received_total{input=\"studio\"}"),
        "{}",
        metrics.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inputs_and_outputs_round_trip_through_the_file() {
    let f = fixture("");
    let port = free_udp_port();
    let added = call(
        &f.state,
        "POST",
        "/api/inputs",
        None,
        Some(json!({"name": "backup", "address": format!("127.0.0.1:{port}"), "channels": 1})),
    )
    .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.text);
    assert_conforms("/api/inputs", "post", added.status, &added.json());
    let text = std::fs::read_to_string(&f.path).expect("file");
    assert!(text.contains("name = \"studio\" # the main feed"), "{text}");
    assert!(
        text.contains("name = \"backup\"\nkind = \"aes67\"\naddress"),
        "{text}"
    );
    let backup = get_ok(&f.state, "/api/inputs/backup", "/api/inputs/{name}").await;
    assert_eq!(backup["config"]["channels"], 1);

    // Re-route the output to the new input (Opus takes one channel fine).
    let mut spec =
        get_ok(&f.state, "/api/outputs/out", "/api/outputs/{name}").await["config"].clone();
    spec["input"] = json!("backup");
    let rerouted = call(&f.state, "PUT", "/api/outputs/out", None, Some(spec)).await;
    assert_eq!(rerouted.status, StatusCode::OK, "{}", rerouted.text);
    let routes = get_ok(&f.state, "/api/routes", "/api/routes").await;
    assert_eq!(routes["routes"][0]["input"], "backup");
    assert_eq!(
        f.state.gateway().config().outputs[0].input.get_ref(),
        "backup"
    );

    let in_use = call(&f.state, "DELETE", "/api/inputs/backup", None, None).await;
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.text);
    let unused = call(&f.state, "DELETE", "/api/inputs/studio", None, None).await;
    assert_eq!(unused.status, StatusCode::OK, "{}", unused.text);
    let cascade = call(
        &f.state,
        "DELETE",
        "/api/inputs/backup?cascade=true",
        None,
        None,
    )
    .await;
    assert_eq!(cascade.status, StatusCode::OK, "{}", cascade.text);
    let config = f.state.gateway().config();
    assert!(config.inputs.is_empty() && config.outputs.is_empty());
    let text = std::fs::read_to_string(&f.path).expect("file");
    assert!(text.starts_with("# test gateway\n[discovery]"), "{text}");
    assert!(!text.contains("[[inputs]]"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_change_leaves_file_and_daemon_as_they_were() {
    let f = fixture("");
    let before = std::fs::read(&f.path).expect("file");
    let running = f.state.gateway().config();
    let cases = [
        (
            "POST",
            "/api/inputs",
            json!({"name": "bad", "address": "nowhere"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "POST",
            "/api/inputs",
            json!({"name": "studio", "address": "127.0.0.1:1"}),
            StatusCode::CONFLICT,
        ),
        (
            "POST",
            "/api/inputs",
            json!({"name": "x", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PUT",
            "/api/outputs/out",
            json!({"input": "studio", "mode": "listener", "codec": "opus",
                   "address": format!("127.0.0.1:{}", f.srt_port), "channels": [9]}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "PUT",
            "/api/inputs/nope",
            json!({"address": "127.0.0.1:5004"}),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (method, uri, body, expected) in cases {
        let a = call(&f.state, method, uri, None, Some(body)).await;
        assert_eq!(a.status, expected, "{method} {uri}: {}", a.text);
        assert!(a.json()["error"]["message"].is_string(), "{}", a.text);
    }
    let bad_field = call(
        &f.state,
        "POST",
        "/api/inputs",
        None,
        Some(json!({"name": "bad", "address": "nowhere"})),
    )
    .await
    .json();
    assert_eq!(bad_field["error"]["field"], "inputs[1].address");
    assert!(bad_field["error"]["line"].as_u64().is_some());

    let broken = Request::builder()
        .method("PUT")
        .uri("/api/config")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("[[inputs]\nname = "))
        .expect("request");
    let a = send(&f.state, broken).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.text);
    assert_eq!(a.json()["error"]["line"], 1);

    assert_eq!(std::fs::read(&f.path).expect("file"), before);
    assert_eq!(*f.state.gateway().config(), *running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_config_can_be_replaced() {
    let f = fixture("");
    let text = std::fs::read_to_string(&f.path).expect("file");
    let new = text.replace("codec = \"opus\"", "codec = \"pcm\" # bit-exact");
    let put = Request::builder()
        .method("PUT")
        .uri("/api/config")
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from(new.clone()))
        .expect("request");
    let a = send(&f.state, put).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(std::fs::read_to_string(&f.path).expect("file"), new);
    assert_eq!(
        f.state.gateway().config().outputs[0].codec,
        Some(crate::config::CodecConfig::Pcm)
    );
}

const ADMIN: &str = "admin-token-0123456789";
const READER: &str = "reader-token-0123456789";

#[test]
fn auth_rules() {
    let parse = |section: &str| -> ApiConfig {
        config::parse(section, std::path::Path::new("."))
            .expect("valid")
            .api
    };
    let local = parse("");
    let open = parse("[api]\nbind = \"0.0.0.0:8480\"\n");
    let tokens = parse(&format!(
        "[api]\nbind = \"0.0.0.0:8480\"\ntoken = \"{ADMIN}\"\nread_token = \"{READER}\"\n\
         require_token_for_reads = true\n"
    ));
    let local_token = parse(&format!("[api]\ntoken = \"{ADMIN}\"\n"));

    assert!(auth::check_write(&local, Role::Anonymous).is_ok());
    assert!(auth::check_read(&local, Role::Anonymous).is_ok());
    let refused = auth::check_write(&open, Role::Anonymous).expect_err("non-loopback write");
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.detail.message.contains("token"));
    assert!(auth::check_read(&open, Role::Anonymous).is_ok());
    assert_eq!(
        auth::check_read(&tokens, Role::Anonymous).map_err(|e| e.status),
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(auth::role(&tokens, Some(ADMIN)).ok(), Some(Role::Admin));
    assert_eq!(auth::role(&tokens, Some(READER)).ok(), Some(Role::Reader));
    assert!(auth::role(&tokens, Some("admin-token-012345678X")).is_err());
    assert_eq!(
        auth::check_write(&tokens, Role::Reader).map_err(|e| e.status),
        Err(StatusCode::FORBIDDEN)
    );
    assert!(auth::check_write(&tokens, Role::Admin).is_ok());
    // A configured token is required even on loopback.
    assert!(auth::check_write(&local_token, Role::Anonymous).is_err());

    for (bad, field) in [
        ("[api]\nbind = \"localhost\"\n", "api.bind"),
        ("[api]\ntoken = \"short\"\n", "api.token"),
        ("[api]\ntls_cert = \"/nonexistent.pem\"\n", "api.tls_key"),
    ] {
        let e = config::parse(bad, std::path::Path::new(".")).expect_err(bad);
        assert_eq!(e.field, field, "{bad}");
        assert_eq!(e.line, Some(2), "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_enforced_by_the_router() {
    let f = fixture(&format!(
        "\n[api]\nbind = \"0.0.0.0:8480\"\ntoken = \"{ADMIN}\"\nread_token = \"{READER}\"\n\
         require_token_for_reads = true\n"
    ));
    let s = &f.state;
    let status = |a: Answer| a.status;
    assert_eq!(status(call(s, "GET", "/api/status", None, None).await), 401);
    assert_eq!(status(call(s, "GET", "/metrics", None, None).await), 401);
    assert_eq!(
        status(call(s, "GET", "/api/status", Some("wrong"), None).await),
        401
    );
    assert_eq!(
        status(call(s, "GET", "/api/status", Some(READER), None).await),
        200
    );
    assert_eq!(
        status(call(s, "GET", "/metrics", Some(READER), None).await),
        200
    );
    // The config text holds the tokens: admins only.
    assert_eq!(
        status(call(s, "GET", "/api/config", Some(READER), None).await),
        403
    );
    assert_eq!(
        status(call(s, "GET", "/api/config", Some(ADMIN), None).await),
        200
    );
    let delete = "/api/outputs/nope";
    assert_eq!(
        status(call(s, "DELETE", delete, Some(READER), None).await),
        403
    );
    assert_eq!(status(call(s, "DELETE", delete, None, None).await), 401);
    // Admitted: the output does not exist.
    assert_eq!(
        status(call(s, "DELETE", delete, Some(ADMIN), None).await),
        404
    );
    // Passphrases only for admins.
    let reader_view = call(s, "GET", "/api/outputs/out", Some(READER), None).await;
    assert_eq!(reader_view.json()["config"]["passphrase"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_stream_sends_meters_status_and_events() {
    use futures_util::StreamExt as _;
    let f = fixture("");
    let request = Request::builder()
        .uri("/api/live")
        .body(Body::empty())
        .expect("request");
    let response = app(f.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|v| v.starts_with("text/event-stream"))
    );
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut recorded = false;
    while !(seen.contains("event: meters")
        && seen.contains("event: status")
        && seen.contains("event: event"))
    {
        if !recorded && seen.contains("event: status") {
            // Subscribed by now: this one is delivered live.
            f.state
                .gateway()
                .record("route", "info", "studio", "live one");
            recorded = true;
        }
        let chunk = tokio::time::timeout_at(deadline, body.next())
            .await
            .unwrap_or_else(|_| panic!("live stream incomplete: {seen}"))
            .expect("stream open")
            .expect("chunk");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("\"live one\""), "{seen}");
}
