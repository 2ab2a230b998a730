//! The API's one error shape: `{"error": {"field", "line", "message"}}` with a fitting status.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::config::ConfigError;
use crate::gateway::ApplyError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// The offending field, e.g. `inputs[2].address`, when one is to blame.
    pub field: Option<String>,
    /// The line of the config file, for configuration errors.
    pub line: Option<usize>,
    pub message: String,
}

/// An error with the HTTP status it is answered with.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: ErrorDetail,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                field: None,
                line: None,
                message: message.into(),
            },
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.detail.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// A failure of the daemon itself (file system, a stopped task), never of the request.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl From<ConfigError> for ApiError {
    /// A change that does not validate: 422 with the field and line of the edited file.
    fn from(e: ConfigError) -> Self {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: ErrorDetail {
                field: Some(e.field),
                line: e.line,
                message: e.message,
            },
        }
    }
}

impl From<ApplyError> for ApiError {
    /// The daemon could not run the change (a port in use, …): 422 when a field is to blame,
    /// 409 otherwise (the daemon is busy or stopping).
    fn from(e: ApplyError) -> Self {
        let status = if e.field.is_some() {
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            StatusCode::CONFLICT
        };
        ApiError {
            status,
            detail: ErrorDetail {
                field: e.field,
                line: None,
                message: e.message,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody { error: self.detail })).into_response()
    }
}
