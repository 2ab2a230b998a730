//! The HTTP API: status, meters, events and logs to read; inputs, outputs and the whole
//! configuration to change; live updates over Server-Sent Events; Prometheus metrics; an
//! OpenAPI document generated from the handlers.
//!
//! The server runs on its own small tokio runtime in its own thread. It only reads the views
//! the supervisor publishes and sends it change requests, so it never touches an audio thread
//! and a slow client cannot stall the pipeline.

pub mod auth;
pub mod config;
pub mod error;
pub mod handlers;
pub mod live;
pub mod logs;
pub mod openapi;
pub mod store;
pub mod title;
pub mod types;

#[cfg(test)]
mod tests;

use std::net::TcpListener;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::middleware;
use axum::routing::{any, get, post};
use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::gateway::Gateway;
use config::ApiConfig;
use store::ConfigStore;

/// What every handler gets.
#[derive(Debug, Clone)]
pub struct ApiState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateway: Gateway,
    store: ConfigStore,
}

impl ApiState {
    pub fn new(gateway: Gateway, store: ConfigStore) -> Self {
        ApiState {
            inner: Arc::new(Inner { gateway, store }),
        }
    }

    pub fn gateway(&self) -> &Gateway {
        &self.inner.gateway
    }

    pub fn store(&self) -> &ConfigStore {
        &self.inner.store
    }

    /// The running `[api]` section: token changes apply with the next request.
    pub fn api_config(&self) -> ApiConfig {
        self.inner.gateway.config().api.clone()
    }
}

/// The API's routes (the dashboard merges its own at `/`).
pub fn app(state: ApiState) -> Router {
    use handlers as h;
    Router::new()
        .route("/api/status", get(h::status))
        .route("/api/system", get(h::system))
        .route("/api/clock", get(h::clock))
        .route("/api/alarms", get(h::alarms))
        .route("/api/events", get(h::events))
        .route("/api/meters", get(h::meters))
        .route("/api/discovery/streams", get(h::discovery_streams))
        .route("/api/routes", get(h::routes))
        .route("/api/logs", get(h::logs))
        .route("/api/inputs", get(h::list_inputs).post(h::add_input))
        .route(
            "/api/inputs/{name}",
            get(h::get_input).put(h::put_input).delete(h::delete_input),
        )
        .route("/api/outputs", get(h::list_outputs).post(h::add_output))
        .route(
            "/api/outputs/{name}",
            get(h::get_output)
                .put(h::put_output)
                .delete(h::delete_output),
        )
        .route("/api/outputs/{name}/title", post(title::set_title))
        .route("/api/config", get(h::get_config).put(h::put_config))
        .route("/api/live", get(live::live))
        .route("/api/openapi.json", get(openapi::document))
        .route("/metrics", get(h::metrics))
        .route("/api/{*rest}", any(h::unknown))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .with_state(state)
        .merge(crate::dashboard::routes())
        .merge(openapi::docs_page())
}

/// The running server; [`ApiServer::stop`] ends it.
#[derive(Debug)]
pub struct ApiServer {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ApiServer {
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Binds the API (so a port in use fails the start, not a background thread) and serves it
/// from its own thread. None when `[api] enabled = false`.
pub fn start(state: ApiState) -> anyhow::Result<Option<ApiServer>> {
    let api = state.api_config();
    if !api.enabled {
        return Ok(None);
    }
    let addr = api.bind_addr();
    let listener =
        TcpListener::bind(addr).with_context(|| format!("API: cannot listen on {addr}"))?;
    listener.set_nonblocking(true)?;
    let tls = match api.tls() {
        Some((cert, key)) => Some(tls_config(cert, key)?),
        None => None,
    };
    warn_if_open(&api);
    let scheme = if tls.is_some() { "https" } else { "http" };
    info!(url = %format!("{scheme}://{addr}/"), "API and dashboard listening");
    let (stop, stopped) = oneshot::channel();
    let router = app(state);
    let thread = thread::Builder::new()
        .name("api".into())
        .spawn(move || serve(listener, tls, router, stopped))?;
    Ok(Some(ApiServer {
        stop: Some(stop),
        thread: Some(thread),
    }))
}

fn warn_if_open(api: &ApiConfig) {
    if !api.is_loopback() && api.token.is_none() {
        warn!(
            bind = %api.bind.get_ref(),
            "the API listens beyond loopback without [api] token: changes are refused until \
             a token is set"
        );
    }
}

/// The server's runtime: two workers at most, so the API cannot take CPU from the audio path.
fn serve(
    listener: TcpListener,
    tls: Option<axum_server::tls_rustls::RustlsConfig>,
    router: Router,
    stopped: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .thread_name("api-worker")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "API: cannot start its runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let service = router.into_make_service();
        let served = async {
            let result = match tls {
                Some(tls) => match axum_server::from_tcp_rustls(listener, tls) {
                    Ok(server) => server.serve(service).await,
                    Err(e) => Err(e),
                },
                None => match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => axum::serve(l, service).await,
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "API server failed");
            }
        };
        tokio::select! {
            () = served => {}
            _ = stopped => {}
        }
    });
    // Open live streams do not end by themselves; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(500));
}

/// Loads the PEM certificate chain and key for HTTPS.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("api.tls_cert: cannot read {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("api.tls_key: cannot read {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("api.tls_cert / api.tls_key do not form a usable certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

/// Whether the API can be reached at all (for the demo banner).
pub fn url(api: &ApiConfig) -> Option<String> {
    api.enabled.then(|| {
        let scheme = if api.tls().is_some() { "https" } else { "http" };
        format!("{scheme}://{}/", api.bind_addr())
    })
}
