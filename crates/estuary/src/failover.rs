//! Source failover configuration: `failover = { backup = "...", fallback = "tone", ... }` on
//! an input. The input's own stream is the main source; the backup is a second stream of the
//! same format (another sender); the fallback a locally generated tone.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use estuary_engine::failover::FailoverPolicy;

use crate::config::{FieldError, InputConfig};

/// `failover = { ... }` on an input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// The backup stream's destination (same format as the main stream).
    pub backup: Option<Spanned<SocketAddr>>,
    /// Interface for the backup stream; default: the input's.
    pub backup_interface: Option<Spanned<String>>,
    /// Source-specific multicast sender of the backup.
    pub backup_source: Option<IpAddr>,
    /// Last resort when no stream is healthy: `"tone"` (1 kHz at −18 dBFS) or `"none"`.
    #[serde(default = "default_fallback")]
    pub fallback: Spanned<String>,
    /// A source with no packet for this long has failed.
    #[serde(default = "default_switch_after", with = "humantime_serde")]
    pub switch_after: Duration,
    /// Peak level below which audio is silence (dBFS); the silence rule is off when absent.
    pub silence_threshold: Option<f64>,
    /// A source silent this long has failed.
    #[serde(default = "default_silence_after", with = "humantime_serde")]
    pub silence_after: Duration,
    /// A higher-priority source must be healthy this long before it goes back on air.
    #[serde(default = "default_return_after", with = "humantime_serde")]
    pub return_after: Duration,
    /// Crossfade at a switch.
    #[serde(default = "default_crossfade", with = "humantime_serde")]
    pub crossfade: Duration,
}

fn default_fallback() -> Spanned<String> {
    Spanned::new(0..0, "none".to_owned())
}
fn default_switch_after() -> Duration {
    Duration::from_millis(250)
}
fn default_silence_after() -> Duration {
    Duration::from_secs(5)
}
fn default_return_after() -> Duration {
    Duration::from_secs(5)
}
fn default_crossfade() -> Duration {
    Duration::from_millis(10)
}

/// The failover level of the fallback tone, as for `estuary send` and the demo.
pub const TONE_LEVEL_DBFS: f64 = -18.0;
/// Its frequency.
pub const TONE_HZ: f64 = 1_000.0;

impl FailoverConfig {
    /// Whether a tone is the last resort.
    pub fn tone(&self) -> bool {
        self.fallback.get_ref() == "tone"
    }

    /// The switching rules at `sample_rate`.
    pub fn policy(&self, sample_rate: u32) -> FailoverPolicy {
        FailoverPolicy {
            switch_after: self.switch_after,
            silence_peak: self
                .silence_threshold
                .map(|db| (f64::from(i32::MAX) * 10f64.powf(db / 20.0)) as i32),
            silence_after: self.silence_after,
            return_after: self.return_after,
            crossfade: (self.crossfade.as_secs_f64() * f64::from(sample_rate)) as usize,
        }
    }
}

impl InputConfig {
    /// Checks `failover`.
    pub fn validate_failover(&self) -> Result<(), FieldError> {
        let Some(f) = &self.failover else {
            return Ok(());
        };
        let span = f.span();
        let f = f.get_ref();
        let fallback = f.fallback.get_ref();
        if fallback != "tone" && fallback != "none" {
            return Err((
                f.fallback.span(),
                "failover.fallback".into(),
                format!("{fallback:?} is not \"tone\" or \"none\""),
            ));
        }
        if f.backup.is_none() && !f.tone() {
            return Err((
                span,
                "failover.backup".into(),
                "give a backup stream, a fallback = \"tone\", or both".into(),
            ));
        }
        if let Some(iface) = &f.backup_interface {
            estuary_io::mcast::resolve_interface(iface.get_ref()).map_err(|e| {
                (
                    iface.span(),
                    "failover.backup_interface".into(),
                    e.to_string(),
                )
            })?;
        }
        let ranges = [
            (
                "switch_after",
                f.switch_after,
                Duration::from_millis(10),
                Duration::from_secs(60),
            ),
            (
                "silence_after",
                f.silence_after,
                Duration::from_millis(100),
                Duration::from_secs(3600),
            ),
            (
                "return_after",
                f.return_after,
                Duration::ZERO,
                Duration::from_secs(3600),
            ),
            (
                "crossfade",
                f.crossfade,
                Duration::ZERO,
                Duration::from_secs(1),
            ),
        ];
        for (field, value, min, max) in ranges {
            if value < min || value > max {
                return Err((
                    span.clone(),
                    format!("failover.{field}"),
                    format!("must be between {min:?} and {max:?}"),
                ));
            }
        }
        if let Some(db) = f.silence_threshold
            && !(-140.0..=0.0).contains(&db)
        {
            return Err((
                span,
                "failover.silence_threshold".into(),
                "must be between -140 and 0 (dBFS)".into(),
            ));
        }
        if self.redundant.is_some() {
            return Err((
                span,
                "failover".into(),
                "an input is either ST 2022-7 (`redundant`) or a failover chain, not both".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config;

    fn load(text: &str) -> Result<config::Config, config::ConfigError> {
        config::parse(
            &format!("[discovery]\nsap = false\nravenna = false\n\n{text}"),
            std::path::Path::new("."),
        )
    }

    #[test]
    fn failover_parses_and_errors_name_the_field() {
        let cfg = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             failover = { backup = \"239.1.2.1:5004\", fallback = \"tone\", return_after = \"2s\" }\n",
        )
        .expect("valid");
        let f = cfg.inputs[0].failover.as_ref().expect("failover").get_ref();
        assert!(f.tone());
        assert_eq!(f.policy(48_000).crossfade, 480);
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             failover = { fallback = \"wav\" }\n",
        )
        .expect_err("bad fallback");
        assert!(e.to_string().contains("failover.fallback"), "{e}");
        let e = load(
            "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
             failover = { backup = \"239.1.2.1:5004\", switch_after = \"1ms\" }\n",
        )
        .expect_err("too short");
        assert!(e.to_string().contains("failover.switch_after"), "{e}");
    }
}

/// One change of the source on air, seen in the published status: an event for the history
/// and the live feed, and the `failover_active` signal (raised off main, cleared back on it).
#[derive(Debug, Clone, PartialEq)]
pub struct SwitchEvent {
    pub input: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// Switches since the last look (more than 1: intermediate sources were on air for less
    /// than a status period, 50 ms).
    pub switches: u64,
}

impl SwitchEvent {
    /// `info` back on main, `warning` off it.
    pub fn severity(&self) -> &'static str {
        if self.to == "main" { "info" } else { "warning" }
    }

    pub fn message(&self) -> String {
        let mut m = format!(
            "input {}: {} -> {} ({})",
            self.input, self.from, self.to, self.reason
        );
        if self.switches > 1 {
            m.push_str(&format!(
                ", {} switches in one status period",
                self.switches
            ));
        }
        m
    }

    pub fn signal(&self) -> crate::gateway::Signal {
        use crate::gateway::{Condition, Scope, Signal};
        Signal {
            scope: Scope::Input,
            subject: self.input.clone(),
            channel: None,
            condition: Condition::FailoverActive,
            raised: self.to != "main",
            value: match self.to.as_str() {
                "main" => 0.0,
                "backup" => 1.0,
                _ => 2.0,
            },
            at: std::time::SystemTime::now(),
        }
    }
}

/// Follows each failover input's source on air across status snapshots.
#[derive(Debug, Default)]
pub struct SwitchWatch {
    /// Input name → (switch count, source on air) last seen.
    seen: std::collections::HashMap<String, (u64, String)>,
}

impl SwitchWatch {
    /// The switches since the previous call. An input seen for the first time reports a
    /// switch only if it is not on its main source (e.g. the fallback while no stream has
    /// arrived yet).
    pub fn watch(&mut self, inputs: &[crate::status::InputStatus]) -> Vec<SwitchEvent> {
        let mut events = Vec::new();
        self.seen.retain(|name, _| {
            inputs
                .iter()
                .any(|i| &i.name == name && i.failover.is_some())
        });
        for input in inputs {
            let Some(f) = &input.failover else { continue };
            let reason = f.last_reason.clone().unwrap_or_else(|| "start".into());
            let previous = self
                .seen
                .insert(input.name.clone(), (f.switches, f.active.clone()));
            let (from, switches) = match previous {
                Some((count, active)) if count != f.switches => {
                    (active, f.switches.saturating_sub(count).max(1))
                }
                Some(_) => continue,
                None if f.active != "main" => ("main".to_owned(), f.switches.max(1)),
                None => continue,
            };
            events.push(SwitchEvent {
                input: input.name.clone(),
                from,
                to: f.active.clone(),
                reason,
                switches,
            });
        }
        events
    }
}
