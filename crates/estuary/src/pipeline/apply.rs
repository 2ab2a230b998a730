//! Live reconfiguration: bring the running routes to a new configuration, touching only what
//! changed, and fall back to the old configuration if the new one cannot be started.

use std::fmt;

use tracing::{info, warn};

use super::{Carried, Route, Running, detectors};
use crate::config::Config;
use crate::discovery::Discovery;
use crate::gateway::ApplyError;

/// What [`Running::apply`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct ApplyReport {
    /// Inputs (routes) started.
    pub added: Vec<String>,
    /// Inputs stopped.
    pub removed: Vec<String>,
    /// Inputs restarted because they or their outputs changed.
    pub restarted: Vec<String>,
    /// Inputs left running untouched.
    pub unchanged: Vec<String>,
    /// Inputs whose detectors (alarm rules) changed: their meters restarted with the new
    /// settings, the audio did not.
    pub retuned: Vec<String>,
    /// Whether stream discovery was restarted.
    pub discovery_restarted: bool,
}

impl fmt::Display for ApplyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        for (what, names) in [
            ("added", &self.added),
            ("removed", &self.removed),
            ("restarted", &self.restarted),
            ("retuned", &self.retuned),
        ] {
            if !names.is_empty() {
                parts.push(format!("{what} {}", names.join(", ")));
            }
        }
        if self.discovery_restarted {
            parts.push("discovery restarted".into());
        }
        if parts.is_empty() {
            parts.push("nothing changed".into());
        }
        write!(f, "{}", parts.join("; "))
    }
}

impl Running {
    /// Makes the running state match `new` (already validated), keeping every route whose
    /// input, outputs and detectors are unchanged, and every SRT sender whose configuration is
    /// unchanged. If a route cannot start, the previous configuration is restored and the
    /// error names the input or output to blame.
    pub fn apply(&mut self, new: &Config) -> Result<ApplyReport, ApplyError> {
        let old = self.config.clone();
        match self.apply_inner(new) {
            Ok(report) => {
                self.config = new.clone();
                Ok(report)
            }
            Err(e) => {
                warn!(error = %e.message, "restoring the previous configuration");
                if let Err(again) = self.apply_inner(&old) {
                    warn!(error = %again.message, "the previous configuration did not restart fully");
                }
                Err(e)
            }
        }
    }

    fn apply_inner(&mut self, new: &Config) -> Result<ApplyReport, ApplyError> {
        let mut report = ApplyReport::default();
        let wants = self.wants_discovery(new);
        let restart_discovery = match &self.discovery {
            Some(_) => !wants || new.discovery != self.config.discovery,
            None => wants,
        };
        if restart_discovery {
            self.discovery = None;
            if wants {
                let discovery = Discovery::start(&new.discovery).map_err(|e| ApplyError {
                    field: Some("discovery".into()),
                    message: format!("cannot start discovery: {e:#}"),
                })?;
                self.discovery = Some(discovery);
            }
            report.discovery_restarted = true;
        }
        let mut old_routes: Vec<Route> = std::mem::take(&mut self.routes);
        // Routes that go away first, so their ports and SRT listeners are free for new ones.
        old_routes.retain_mut(|route| {
            let keep = new.inputs.iter().any(|i| i.name == route.config.name);
            if !keep {
                report.removed.push(route.config.name.get_ref().clone());
                route.deactivate(&self.commands);
            }
            keep
        });
        for (index, input) in new.inputs.iter().enumerate() {
            let name = input.name.get_ref().clone();
            let outputs: Vec<_> = new
                .outputs
                .iter()
                .filter(|o| o.input.get_ref() == &name)
                .cloned()
                .collect();
            let wanted_detectors =
                (self.options.meters && input.meters).then(|| detectors(new, &name));
            let mut previous = old_routes
                .iter()
                .position(|r| r.config.name == input.name)
                .map(|i| old_routes.swap_remove(i));
            if let Some(route) = previous.as_mut().filter(|r| {
                r.config == *input
                    && r.outputs.iter().map(|s| &s.config).eq(outputs.iter())
                    && r.recorders
                        .iter()
                        .map(|s| &s.config)
                        .eq(new.recorders.iter().filter(|c| c.input.get_ref() == &name))
            }) {
                let kept = if route.detectors == wanted_detectors {
                    Some(&mut report.unchanged)
                } else if route.retune(wanted_detectors) {
                    Some(&mut report.retuned)
                } else {
                    None
                };
                if let (Some(list), Some(route)) = (kept, previous.take()) {
                    list.push(name);
                    self.routes.push(route);
                    continue;
                }
            }
            let reuse = match previous {
                Some(mut route) => {
                    route.deactivate(&self.commands);
                    report.restarted.push(name.clone());
                    let mut carried = route.carried;
                    carried.add(&super::lock(&route.snapshot));
                    (std::mem::take(&mut route.outputs), carried)
                }
                None => {
                    report.added.push(name.clone());
                    (Vec::new(), Carried::default())
                }
            };
            let (reuse, carried) = reuse;
            match self.start_route(input, new, reuse) {
                Ok(mut route) => {
                    route.carried.stats.add_counters(&carried.stats);
                    route.carried.ring_overruns += carried.ring_overruns;
                    self.routes.push(route);
                }
                Err(e) => {
                    // Stop what has not been looked at yet; the caller restores the old
                    // configuration from what is left running.
                    for mut route in old_routes {
                        route.deactivate(&self.commands);
                    }
                    return Err(ApplyError {
                        field: Some(format!("inputs[{index}]")),
                        message: format!("{e:#}"),
                    });
                }
            }
        }
        // Followed streams are matched against the catalog again on the next reconcile.
        self.seen_generation = 0;
        self.reconcile();
        info!(%report, "routes reconciled");
        Ok(report)
    }
}
