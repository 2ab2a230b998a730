//! The `[api]` section: where the HTTP API listens, who may read and change things, and TLS.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::FieldError;

/// Default listen address: loopback, so a fresh install is not reachable from the network.
pub const DEFAULT_BIND: &str = "127.0.0.1:8480";

/// Shortest token accepted: anything shorter is guessable.
const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Serve the API (and the dashboard) at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `ip:port` to listen on.
    #[serde(default = "default_bind")]
    pub bind: Spanned<String>,
    /// Admin token: reads and writes (`Authorization: Bearer …`).
    pub token: Option<Spanned<String>>,
    /// Read-only token: GET only.
    pub read_token: Option<Spanned<String>>,
    /// Refuse reads without a token (otherwise anyone who can reach the port may read).
    #[serde(default)]
    pub require_token_for_reads: bool,
    /// PEM certificate chain; with `tls_key`, the API is served over HTTPS.
    pub tls_cert: Option<Spanned<PathBuf>>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<Spanned<PathBuf>>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enabled: true,
            bind: default_bind(),
            token: None,
            read_token: None,
            require_token_for_reads: false,
            tls_cert: None,
            tls_key: None,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_bind() -> Spanned<String> {
    Spanned::new(0..0, DEFAULT_BIND.to_owned())
}

impl ApiConfig {
    /// The listen address (validated by [`ApiConfig::validate`]; the default otherwise).
    pub fn bind_addr(&self) -> SocketAddr {
        self.bind
            .get_ref()
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8480)))
    }

    /// Only this machine can connect: writes need no token.
    pub fn is_loopback(&self) -> bool {
        self.bind_addr().ip().is_loopback()
    }

    pub fn tls(&self) -> Option<(&Path, &Path)> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(c), Some(k)) => Some((c.get_ref().as_path(), k.get_ref().as_path())),
            _ => None,
        }
    }

    /// Makes relative TLS paths relative to the config file's directory.
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        for file in [&mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .flatten()
        {
            if file.get_ref().is_relative() {
                let span = file.span();
                *file = Spanned::new(span, base_dir.join(file.get_ref()));
            }
        }
    }

    /// Checks what serde cannot; the error names the field (under `api.`) and its span.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.bind.get_ref().parse::<SocketAddr>().is_err() {
            return Err((
                self.bind.span(),
                "api.bind".into(),
                format!("{:?} is not an ip:port address", self.bind.get_ref()),
            ));
        }
        for (field, token) in [
            ("api.token", &self.token),
            ("api.read_token", &self.read_token),
        ] {
            if let Some(t) = token {
                check_token(t.get_ref()).map_err(|m| (t.span(), field.to_owned(), m))?;
            }
        }
        if let (Some(admin), Some(read)) = (&self.token, &self.read_token)
            && admin.get_ref() == read.get_ref()
        {
            return Err((
                read.span(),
                "api.read_token".into(),
                "must differ from api.token".into(),
            ));
        }
        self.validate_tls()
    }

    fn validate_tls(&self) -> Result<(), FieldError> {
        match (&self.tls_cert, &self.tls_key) {
            (None, None) => Ok(()),
            (Some(c), None) => Err((c.span(), "api.tls_key".into(), "needs tls_key too".into())),
            (None, Some(k)) => Err((k.span(), "api.tls_cert".into(), "needs tls_cert too".into())),
            (Some(c), Some(k)) => {
                for (field, file) in [("api.tls_cert", c), ("api.tls_key", k)] {
                    std::fs::metadata(file.get_ref()).map_err(|e| {
                        (
                            file.span(),
                            field.to_owned(),
                            format!("cannot read {}: {e}", file.get_ref().display()),
                        )
                    })?;
                }
                Ok(())
            }
        }
    }
}

fn check_token(token: &str) -> Result<(), String> {
    if token.chars().count() < MIN_TOKEN_LEN {
        return Err(format!("must be at least {MIN_TOKEN_LEN} characters"));
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be printable ASCII without spaces".into());
    }
    Ok(())
}
