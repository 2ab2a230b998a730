//! Who may do what.
//!
//! Bound to loopback, the API needs no token: only local users can reach it. Bound elsewhere,
//! every write needs the admin token, and without one configured writes are refused. The
//! read-only token can read but never write. Tokens are compared in constant time so response
//! timing does not reveal how much of a guess was right.

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use super::config::ApiConfig;
use super::error::ApiError;

/// What a request's credentials allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    Reader,
    Anonymous,
}

/// Requests that only read (the rest change the configuration).
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The role of a bearer token, or an error for a token that matches none.
pub fn role(api: &ApiConfig, bearer: Option<&str>) -> Result<Role, ApiError> {
    let Some(given) = bearer else {
        return Ok(Role::Anonymous);
    };
    let matches = |t: &Option<toml::Spanned<String>>| {
        t.as_ref()
            .is_some_and(|t| constant_time_eq(t.get_ref().as_bytes(), given.as_bytes()))
    };
    if matches(&api.token) {
        Ok(Role::Admin)
    } else if matches(&api.read_token) {
        Ok(Role::Reader)
    } else {
        Err(ApiError::unauthorized("invalid token"))
    }
}

/// Whether `role` may read.
pub fn check_read(api: &ApiConfig, role: Role) -> Result<(), ApiError> {
    if role == Role::Anonymous && api.require_token_for_reads {
        return Err(ApiError::unauthorized(
            "this API requires a token for reads: send `Authorization: Bearer <token>`",
        ));
    }
    Ok(())
}

/// Whether `role` may change things.
pub fn check_write(api: &ApiConfig, role: Role) -> Result<(), ApiError> {
    match role {
        Role::Admin => Ok(()),
        Role::Reader => Err(ApiError::forbidden(
            "the read-only token cannot change the configuration",
        )),
        Role::Anonymous if api.token.is_some() => Err(ApiError::unauthorized(
            "changes need the admin token: send `Authorization: Bearer <token>`",
        )),
        Role::Anonymous if api.is_loopback() => Ok(()),
        Role::Anonymous => Err(ApiError::forbidden(format!(
            "changes are disabled: the API listens on {} (not loopback) and [api] token is not \
             set; set a token, or bind to 127.0.0.1",
            api.bind.get_ref()
        ))),
    }
}

/// The `Bearer` credential of a request, if any.
fn bearer(request: &Request) -> Option<&str> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Middleware: admits the request or answers 401/403. The role is passed on to handlers that
/// show secrets only to admins.
pub async fn authorize(
    State(state): State<ApiState>,
    mut request: Request,
    next: Next,
) -> Response {
    let api = state.api_config();
    let decision = role(&api, bearer(&request)).and_then(|role| {
        if is_read(request.method()) {
            check_read(&api, role)?;
        } else {
            check_write(&api, role)?;
        }
        Ok(role)
    });
    match decision {
        Ok(role) => {
            request.extensions_mut().insert(role);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

/// Equal lengths and bytes, in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keep the optimiser from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}
