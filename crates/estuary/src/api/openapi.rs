//! The OpenAPI document, generated from the handlers' annotations and the view types, and the
//! Swagger UI page that browses it (vendored: no network at build or run time).

use axum::Json;
use axum::Router;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::handlers as h;
use super::live;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Estuary API",
        description = "Status, meters, events and configuration of an Estuary AES67-to-SRT \
                       gateway. See docs/api.md."
    ),
    paths(
        h::status, h::system, h::clock, h::alarms, h::events, h::meters,
        h::discovery_streams, h::routes, h::logs,
        h::list_inputs, h::get_input, h::add_input, h::put_input, h::delete_input,
        h::list_outputs, h::get_output, h::add_output, h::put_output, h::delete_output,
        h::get_config, h::put_config, h::metrics, live::live, document,
        super::title::set_title,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "status", description = "What the gateway is doing"),
        (name = "inputs", description = "AES67 streams received"),
        (name = "outputs", description = "SRT, AES67, Icecast, RTMP and HTTP listen-in outputs"),
        (name = "routing", description = "Which input feeds which output"),
        (name = "config", description = "The configuration file"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer token; every operation accepts it (and, depending on `[api]`, needs it).
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "status",
    responses((status = 200, description = "OpenAPI 3.1 document", content_type = "application/json")))]
pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Swagger UI at `/api/docs`, reading the document above.
pub fn docs_page() -> Router {
    SwaggerUi::new("/api/docs")
        .config(utoipa_swagger_ui::Config::from("/api/openapi.json"))
        .into()
}
