//! The request handlers (except the live stream): thin shells that read a published view or
//! hand an edit to the configuration store.

use axum::Extension;
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::auth::{self, Role};
use super::error::{ApiError, ApiResult, ErrorBody};
use super::logs::{self, LogLine};
use super::store::{self, Section};
use super::types::{
    ChangeResult, ConfigQuery, ConfigText, DeleteQuery, EventsQuery, InputDetail, InputSpec,
    LogsQuery, OutputDetail, OutputSpec, Route, Routes,
};
use crate::discover::StreamRow;
use crate::status::{AlarmStatus, ClockStatus, Event, InputMeters, Status, SystemStatus};

/// Most events or log lines one request returns.
const MAX_LINES: usize = 1_000;
/// Default for `limit` and `lines`.
const DEFAULT_LINES: usize = 100;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|r| ApiError::new(r.status(), r.body_text()))
}

/// A JSON body, or the rejection in the API's error shape (400 syntax, 415 content type,
/// 422 wrong fields), naming the field serde complained about.
pub(super) fn json_body<T>(b: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    b.map(|Json(t)| t).map_err(|r| {
        let message = r.body_text();
        let mut e = ApiError::new(r.status(), message.clone());
        e.detail.field = backticked(&message);
        e
    })
}

/// serde names an unknown or missing field in backticks.
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn role(role: Option<Extension<Role>>) -> Role {
    role.map_or(Role::Anonymous, |Extension(r)| r)
}

/// Everything the daemon shows (meters apart).
#[utoipa::path(get, path = "/api/status", tag = "status",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
pub async fn status(State(s): State<ApiState>) -> Json<Status> {
    Json(Status::clone(&s.gateway().status()))
}

/// The host and the process.
#[utoipa::path(get, path = "/api/system", tag = "status",
    responses((status = 200, body = SystemStatus)))]
pub async fn system(State(s): State<ApiState>) -> Json<SystemStatus> {
    Json(s.gateway().status().system.clone())
}

/// The clock the media is timed by.
#[utoipa::path(get, path = "/api/clock", tag = "status",
    responses((status = 200, body = ClockStatus)))]
pub async fn clock(State(s): State<ApiState>) -> Json<ClockStatus> {
    Json(s.gateway().status().clock.clone())
}

/// Alarms raised now.
#[utoipa::path(get, path = "/api/alarms", tag = "status",
    responses((status = 200, body = Vec<AlarmStatus>)))]
pub async fn alarms(State(s): State<ApiState>) -> Json<Vec<AlarmStatus>> {
    Json(s.gateway().alarms())
}

/// The event history (alarms raised and cleared, configuration changes), oldest first.
#[utoipa::path(get, path = "/api/events", tag = "status", params(EventsQuery),
    responses((status = 200, body = Vec<Event>), (status = 400, body = ErrorBody)))]
pub async fn events(
    State(s): State<ApiState>,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<Vec<Event>>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(DEFAULT_LINES).min(MAX_LINES);
    Ok(Json(s.gateway().events_after(q.after.unwrap_or(0), limit)))
}

/// Levels and loudness of every receiving input.
#[utoipa::path(get, path = "/api/meters", tag = "status",
    responses((status = 200, body = Vec<InputMeters>)))]
pub async fn meters(State(s): State<ApiState>) -> Json<Vec<InputMeters>> {
    Json(Vec::clone(&s.gateway().meters()))
}

/// The streams announced on the network.
#[utoipa::path(get, path = "/api/discovery/streams", tag = "status",
    responses((status = 200, body = Vec<StreamRow>)))]
pub async fn discovery_streams(State(s): State<ApiState>) -> Json<Vec<StreamRow>> {
    Json(s.gateway().status().discovery.streams.clone())
}

/// Which input feeds which output.
#[utoipa::path(get, path = "/api/routes", tag = "routing",
    responses((status = 200, body = Routes)))]
pub async fn routes(State(s): State<ApiState>) -> Json<Routes> {
    let config = s.gateway().config();
    let status = s.gateway().status();
    let inputs: Vec<String> = config
        .inputs
        .iter()
        .map(|i| i.name.get_ref().clone())
        .collect();
    let outputs: Vec<String> = config
        .outputs
        .iter()
        .map(|o| o.name.get_ref().clone())
        .collect();
    let matrix = inputs
        .iter()
        .map(|i| {
            config
                .outputs
                .iter()
                .map(|o| o.input.get_ref() == i)
                .collect()
        })
        .collect();
    let routes = config
        .outputs
        .iter()
        .map(|o| Route {
            input: o.input.get_ref().clone(),
            output: o.name.get_ref().clone(),
            state: status
                .outputs
                .iter()
                .find(|st| st.name == *o.name.get_ref())
                .map(|st| st.state.clone()),
        })
        .collect();
    Json(Routes {
        inputs,
        outputs,
        matrix,
        routes,
    })
}

/// The most recent log lines, oldest first.
#[utoipa::path(get, path = "/api/logs", tag = "status", params(LogsQuery),
    responses((status = 200, body = Vec<LogLine>), (status = 400, body = ErrorBody)))]
pub async fn logs(q: Result<Query<LogsQuery>, QueryRejection>) -> ApiResult<Json<Vec<LogLine>>> {
    let lines = query(q)?.lines.unwrap_or(DEFAULT_LINES).min(MAX_LINES);
    Ok(Json(logs::recent(lines)))
}

fn input_detail(s: &ApiState, name: &str) -> Option<InputDetail> {
    let config = s.gateway().config();
    let input = config.inputs.iter().find(|i| i.name.get_ref() == name)?;
    Some(InputDetail {
        name: name.to_owned(),
        status: s
            .gateway()
            .status()
            .inputs
            .iter()
            .find(|i| i.name == name)
            .cloned(),
        config: InputSpec::from_config(input),
    })
}

fn output_detail(s: &ApiState, name: &str, secrets: bool) -> Option<OutputDetail> {
    let config = s.gateway().config();
    let output = config.outputs.iter().find(|o| o.name.get_ref() == name)?;
    Some(OutputDetail {
        name: name.to_owned(),
        status: s
            .gateway()
            .status()
            .outputs
            .iter()
            .find(|o| o.name == name)
            .cloned(),
        config: OutputSpec::from_config(output, secrets),
    })
}

/// Every input with its status and settings.
#[utoipa::path(get, path = "/api/inputs", tag = "inputs",
    responses((status = 200, body = Vec<InputDetail>)))]
pub async fn list_inputs(State(s): State<ApiState>) -> Json<Vec<InputDetail>> {
    let names: Vec<String> = s
        .gateway()
        .config()
        .inputs
        .iter()
        .map(|i| i.name.get_ref().clone())
        .collect();
    Json(names.iter().filter_map(|n| input_detail(&s, n)).collect())
}

/// One input.
#[utoipa::path(get, path = "/api/inputs/{name}", tag = "inputs",
    params(("name" = String, Path, description = "Input name")),
    responses((status = 200, body = InputDetail), (status = 404, body = ErrorBody)))]
pub async fn get_input(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<InputDetail>> {
    input_detail(&s, &name)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no input named {name:?}")))
}

/// Every output with its status and settings (the passphrase for admins only).
#[utoipa::path(get, path = "/api/outputs", tag = "outputs",
    responses((status = 200, body = Vec<OutputDetail>)))]
pub async fn list_outputs(
    State(s): State<ApiState>,
    r: Option<Extension<Role>>,
) -> Json<Vec<OutputDetail>> {
    let secrets = auth::check_write(&s.api_config(), role(r)).is_ok();
    let names: Vec<String> = s
        .gateway()
        .config()
        .outputs
        .iter()
        .map(|o| o.name.get_ref().clone())
        .collect();
    Json(
        names
            .iter()
            .filter_map(|n| output_detail(&s, n, secrets))
            .collect(),
    )
}

/// One output.
#[utoipa::path(get, path = "/api/outputs/{name}", tag = "outputs",
    params(("name" = String, Path, description = "Output name")),
    responses((status = 200, body = OutputDetail), (status = 404, body = ErrorBody)))]
pub async fn get_output(
    State(s): State<ApiState>,
    r: Option<Extension<Role>>,
    Path(name): Path<String>,
) -> ApiResult<Json<OutputDetail>> {
    let secrets = auth::check_write(&s.api_config(), role(r)).is_ok();
    output_detail(&s, &name, secrets)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no output named {name:?}")))
}

/// Runs an edit through the configuration store on a blocking thread.
async fn change(
    s: &ApiState,
    edit: impl FnOnce(&str) -> ApiResult<String> + Send + 'static,
) -> ApiResult<ChangeResult> {
    let state = s.clone();
    let changes = tokio::task::spawn_blocking(move || state.store().change(state.gateway(), edit))
        .await
        .map_err(|e| ApiError::internal(format!("the change was interrupted: {e}")))??;
    Ok(ChangeResult {
        changes,
        path: s.store().path().map(|p| p.display().to_string()),
    })
}

/// The spec as JSON fields, with the name (from the path when replacing) and kind filled in.
fn spec_value<T: serde::Serialize>(
    spec: &T,
    path_name: Option<&str>,
    kind: &str,
) -> ApiResult<serde_json::Value> {
    let mut value = serde_json::to_value(spec)
        .map_err(|e| ApiError::unprocessable(format!("cannot encode the settings: {e}")))?;
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let given = object
        .get("name")
        .and_then(|n| n.as_str())
        .map(str::to_owned);
    match (path_name, given) {
        (Some(path), Some(body)) if body != path => {
            return Err(ApiError::unprocessable(format!(
                "the body names {body:?} but the path {path:?}; renaming is not supported \
                 (add the new one, then delete the old)"
            ))
            .field("name"));
        }
        (Some(path), _) => {
            object.insert("name".into(), path.into());
        }
        (None, None) => return Err(ApiError::unprocessable("`name` is required").field("name")),
        (None, Some(_)) => {}
    }
    if object.get("kind").is_none_or(serde_json::Value::is_null) {
        object.insert("kind".into(), kind.into());
    }
    Ok(value)
}

/// Adds an input (and starts receiving it).
#[utoipa::path(post, path = "/api/inputs", tag = "inputs", request_body = InputSpec,
    responses((status = 201, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 403, body = ErrorBody)))]
pub async fn add_input(
    State(s): State<ApiState>,
    body: Result<Json<InputSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ChangeResult>)> {
    let value = spec_value(&json_body(body)?, None, "aes67")?;
    let result = change(&s, move |text| {
        store::add_entry(text, Section::Inputs, &value)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Replaces an input's settings.
#[utoipa::path(put, path = "/api/inputs/{name}", tag = "inputs", request_body = InputSpec,
    params(("name" = String, Path, description = "Input name")),
    responses((status = 200, body = ChangeResult), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_input(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<InputSpec>, JsonRejection>,
) -> ApiResult<Json<ChangeResult>> {
    let value = spec_value(&json_body(body)?, Some(&name), "aes67")?;
    let result = change(&s, move |text| {
        store::replace_entry(text, Section::Inputs, &name, &value)
    })
    .await?;
    Ok(Json(result))
}

/// Removes an input; 409 while outputs use it, unless `cascade=true`.
#[utoipa::path(delete, path = "/api/inputs/{name}", tag = "inputs",
    params(("name" = String, Path, description = "Input name"), DeleteQuery),
    responses((status = 200, body = ChangeResult), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn delete_input(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    q: Result<Query<DeleteQuery>, QueryRejection>,
) -> ApiResult<Json<ChangeResult>> {
    let cascade = query(q)?.cascade.unwrap_or(false);
    let result = change(&s, move |text| {
        store::remove_entry(text, Section::Inputs, &name, cascade)
    })
    .await?;
    Ok(Json(result))
}

/// Adds an output.
#[utoipa::path(post, path = "/api/outputs", tag = "outputs", request_body = OutputSpec,
    responses((status = 201, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn add_output(
    State(s): State<ApiState>,
    body: Result<Json<OutputSpec>, JsonRejection>,
) -> ApiResult<(StatusCode, Json<ChangeResult>)> {
    let value = spec_value(&json_body(body)?, None, "srt")?;
    let result = change(&s, move |text| {
        store::add_entry(text, Section::Outputs, &value)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(result)))
}

/// Replaces an output's settings; PUT another `input` to re-route it.
#[utoipa::path(put, path = "/api/outputs/{name}", tag = "outputs", request_body = OutputSpec,
    params(("name" = String, Path, description = "Output name")),
    responses((status = 200, body = ChangeResult), (status = 404, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_output(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<OutputSpec>, JsonRejection>,
) -> ApiResult<Json<ChangeResult>> {
    let value = spec_value(&json_body(body)?, Some(&name), "srt")?;
    let result = change(&s, move |text| {
        store::replace_entry(text, Section::Outputs, &name, &value)
    })
    .await?;
    Ok(Json(result))
}

/// Removes an output.
#[utoipa::path(delete, path = "/api/outputs/{name}", tag = "outputs",
    params(("name" = String, Path, description = "Output name")),
    responses((status = 200, body = ChangeResult), (status = 404, body = ErrorBody)))]
pub async fn delete_output(
    State(s): State<ApiState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ChangeResult>> {
    let result = change(&s, move |text| {
        store::remove_entry(text, Section::Outputs, &name, false)
    })
    .await?;
    Ok(Json(result))
}

/// The configuration file's text (admins only: it holds the tokens).
#[utoipa::path(get, path = "/api/config", tag = "config", params(ConfigQuery),
    responses((status = 200, content((String = "text/plain"), (ConfigText = "application/json"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn get_config(
    State(s): State<ApiState>,
    r: Option<Extension<Role>>,
    q: Result<Query<ConfigQuery>, QueryRejection>,
) -> ApiResult<Response> {
    auth::check_write(&s.api_config(), role(r))?;
    let q = query(q)?;
    let store_state = s.clone();
    let text = tokio::task::spawn_blocking(move || store_state.store().text())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    match q.format.as_deref() {
        None | Some("toml") => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
        }
        Some("json") => Ok(Json(ConfigText {
            path: s.store().path().map(|p| p.display().to_string()),
            text,
        })
        .into_response()),
        Some(other) => Err(ApiError::bad_request(format!(
            "format {other:?}: use `toml` or `json`"
        ))
        .field("format")),
    }
}

/// Replaces the whole configuration: TOML as text/plain, or JSON `{"text": …}`.
#[utoipa::path(put, path = "/api/config", tag = "config",
    request_body(content((String = "text/plain"), (ConfigText = "application/json"))),
    responses((status = 200, body = ChangeResult), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put_config(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<ChangeResult>> {
    let text = config_text(&headers, &body)?;
    let result = change(&s, move |_| Ok(text)).await?;
    Ok(Json(result))
}

fn config_text(headers: &HeaderMap, body: &[u8]) -> ApiResult<String> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        #[derive(serde::Deserialize)]
        struct Body {
            text: String,
        }
        return serde_json::from_slice::<Body>(body)
            .map(|b| b.text)
            .map_err(|e| ApiError::bad_request(format!("expected {{\"text\": …}}: {e}")));
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the configuration must be UTF-8 text"))
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "status",
    responses((status = 200, content_type = "text/plain", body = String)))]
pub async fn metrics(State(s): State<ApiState>) -> Response {
    let text = crate::metrics::render(&s.gateway().status(), &s.gateway().meters());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Any other `/api/…` path.
pub async fn unknown() -> ApiError {
    ApiError::not_found("no such API endpoint; see /api/openapi.json")
}
