//! `POST /api/outputs/{name}/title`: the title listeners of an Icecast or HTTP listen-in
//! output see, set by a playout system or an operator. It goes on the air at once (MP3/AAC on
//! Icecast: `/admin/metadata`; Ogg: a chained stream with the new comment header) and holds
//! until the next title from the output's `title_file` or a restart of its route.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ApiState;
use super::error::{ApiError, ApiResult, ErrorBody};
use super::handlers::json_body;
use crate::gateway::TitleError;

/// Longest title taken, in bytes: Icecast and Ogg comments take more, players show less.
pub const MAX_TITLE: usize = 1024;

/// The title to put on the air.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TitleBody {
    pub title: String,
}

/// Sets an Icecast or HTTP output's title (needs the admin token, like every change).
#[utoipa::path(post, path = "/api/outputs/{name}/title", tag = "outputs",
    params(("name" = String, Path, description = "Output name")),
    request_body = TitleBody,
    responses((status = 204, description = "On the air"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn set_title(
    State(s): State<ApiState>,
    Path(name): Path<String>,
    body: Result<Json<TitleBody>, JsonRejection>,
) -> ApiResult<StatusCode> {
    let title = json_body(body)?.title;
    check(&title).map_err(|m| ApiError::bad_request(m).field("title"))?;
    let gateway = s.gateway().clone();
    let output = name.clone();
    let result = tokio::task::spawn_blocking(move || gateway.set_title(&output, &title))
        .await
        .map_err(|e| ApiError::internal(format!("the change was interrupted: {e}")))?;
    match result {
        Ok(()) => Ok(StatusCode::NO_CONTENT),
        Err(TitleError::NoSuchOutput) => Err(ApiError::not_found(format!(
            "no running output named {name:?}"
        ))),
        Err(e @ TitleError::NoTitles(_)) => Err(ApiError::new(StatusCode::CONFLICT, e.to_string())),
        Err(e @ TitleError::Unavailable(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
    }
}

/// A title is one line of text: a line break would end an HTTP header or an Ogg comment.
fn check(title: &str) -> Result<(), String> {
    if title.len() > MAX_TITLE {
        return Err(format!("longer than {MAX_TITLE} bytes"));
    }
    if title.chars().any(char::is_control) {
        return Err("must not hold control characters (line breaks, tabs)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn titles_are_one_bounded_line() {
        assert!(check("Artist – Song (Live)").is_ok());
        assert!(check("a\r\nX-Evil: 1").is_err());
        assert!(check(&"x".repeat(super::MAX_TITLE + 1)).is_err());
    }
}
