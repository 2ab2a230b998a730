//! The daemon: the pipeline under its supervisor, plus the services around it, for
//! `estuary run` and `estuary demo`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use tracing::{info, warn};

use crate::api::store::ConfigStore;
use crate::api::{self, ApiState};
use crate::config::{self, Config};
use crate::gateway::{self, Gateway};
use crate::pipeline::Reporting;
use crate::shutdown::Stop;

/// Runs `config` (read from `path`, if it came from a file) until `stop`; `ready` is called
/// once every socket listens.
pub fn run(
    config: &Config,
    path: Option<&Path>,
    stop: &Stop,
    reporting: Reporting,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let (gateway, inbox) = Gateway::new(config, path.map(|p| p.display().to_string()));
    // The media clock first: outputs stamp RTP with it from their first packet.
    let media_clock = crate::clock::start(&config.clock);
    if let Some(reason) = media_clock.status().reason {
        gateway.record("clock_failed", "critical", "clock", &reason);
    }
    if let Some(path) = path {
        watch_reload(path.to_owned(), gateway.clone(), stop.clone())?;
    }
    // The sink must be in place before the pipeline starts, so no signal is missed.
    let alarms = crate::alarm::AlarmService::start(&gateway)?;
    let store = match path {
        Some(p) => ConfigStore::file(p),
        // No file: edits live in memory, starting from an empty text.
        None => ConfigStore::memory(""),
    };
    // Audio first: a taken API port is reported loudly but does not take the gateway off air.
    let api = api::start(ApiState::new(gateway.clone(), store)).unwrap_or_else(|e| {
        tracing::error!(error = format!("{e:#}"), "the API is not available");
        gateway.record("api_failed", "critical", "api", &format!("{e:#}"));
        None
    });
    // Like the API: a Dante device that cannot start is reported but keeps the audio on air.
    let dante = config.dante.as_ref().and_then(|c| {
        crate::dante::start(c)
            .inspect_err(|e| {
                tracing::error!(
                    error = format!("{e:#}"),
                    "the Dante device is not available"
                );
                gateway.record("dante_failed", "critical", "dante", &format!("{e:#}"));
            })
            .ok()
    });
    let result = gateway::supervise(config, &gateway, &inbox, stop, reporting, ready);
    drop(dante);
    if let Some(api) = api {
        api.stop();
    }
    alarms.stop();
    crate::clock::stop();
    result
}

/// Reloads the config file on SIGHUP. A file that does not validate, or that cannot be
/// started, is refused and the running configuration is kept.
fn watch_reload(path: PathBuf, gateway: Gateway, stop: Stop) -> anyhow::Result<()> {
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&hup))?;
    thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            while !stop.requested() {
                thread::sleep(Duration::from_millis(100));
                if !hup.swap(false, Ordering::AcqRel) {
                    continue;
                }
                info!(path = %path.display(), "SIGHUP: reloading the configuration");
                match config::load(&path) {
                    Ok(new) => {
                        if let Err(e) = gateway.apply(new) {
                            warn!(error = %e, "reload refused; the running configuration is kept");
                        }
                    }
                    Err(e) => {
                        warn!(error = %e, "reload refused; the running configuration is kept");
                        gateway.record("config_rejected", "warning", "config", &e.to_string());
                    }
                }
            }
        })?;
    Ok(())
}
