//! Source failover configuration: `failover = { backup = "...", fallback = "tone", ... }` on
//! an input. The input's own stream is the main source; the backup is a second stream of the
//! same format (another sender); the fallback a locally generated tone or a WAV file played
//! in a loop.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use estuary_engine::failover::FailoverPolicy;

use crate::config::{FieldError, InputConfig};

/// `failover = { ... }` on an input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// The backup stream's destination (same format as the main stream), or a list of them
    /// in priority order.
    pub backup: Option<Spanned<Backups>>,
    /// Interface for the backup stream; default: the input's.
    pub backup_interface: Option<Spanned<String>>,
    /// Source-specific multicast sender of the backup.
    pub backup_source: Option<IpAddr>,
    /// Last resort when no stream is healthy: `"tone"` (1 kHz at −18 dBFS), `"none"`, or
    /// `{ file = "PATH.wav" }` played in a loop.
    #[serde(default = "default_fallback")]
    pub fallback: Spanned<Fallback>,
    /// A source with no packet for this long has failed.
    #[serde(default = "default_switch_after", with = "humantime_serde")]
    pub switch_after: Duration,
    /// Peak level below which audio is silence (dBFS); the silence rule is off when absent.
    pub silence_threshold: Option<f64>,
    /// A source silent this long has failed.
    #[serde(default = "default_silence_after", with = "humantime_serde")]
    pub silence_after: Duration,
    /// The main stream fails when its clock has been unlocked this long (our PTP follower
    /// lost its lock, or the stream's SDP names another grandmaster); the rule is off when
    /// absent. See docs/redundancy.md.
    #[serde(default, with = "humantime_serde")]
    pub clock_unlocked_after: Option<Duration>,
    /// A higher-priority source must be healthy this long before it goes back on air.
    #[serde(default = "default_return_after", with = "humantime_serde")]
    pub return_after: Duration,
    /// Crossfade at a switch.
    #[serde(default = "default_crossfade", with = "humantime_serde")]
    pub crossfade: Duration,
}

/// `backup = "ip:port"` or `backup = ["ip:port", "ip:port"]` (priority order).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Backups {
    One(SocketAddr),
    Many(Vec<SocketAddr>),
}

/// `fallback = "tone" | "none" | { file = "..." }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Fallback {
    Named(String),
    File(FileFallback),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileFallback {
    /// A PCM WAV/BWF/RF64 file at the input's sample rate, mono or with the input's channels.
    pub file: PathBuf,
}

impl std::fmt::Display for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Named(name) => f.write_str(name),
            Fallback::File(file) => write!(f, "file {}", file.file.display()),
        }
    }
}

fn default_fallback() -> Spanned<Fallback> {
    Spanned::new(0..0, Fallback::Named("none".to_owned()))
}

/// Makes a relative fallback file relative to the config file's directory.
pub fn resolve_paths(input: &mut InputConfig, base_dir: &Path) {
    if let Some(failover) = &mut input.failover {
        let span = failover.span();
        let mut f = failover.get_ref().clone();
        if let Fallback::File(file) = f.fallback.get_mut()
            && file.file.is_relative()
        {
            file.file = base_dir.join(&file.file);
            *failover = Spanned::new(span, f);
        }
    }
}

/// Longest fallback file accepted, in samples (all channels): it is held in memory.
const MAX_FALLBACK_SAMPLES: u64 = 32 << 20;

/// Reads a fallback file for a stream of `channels` at `sample_rate`: interleaved MSB-aligned
/// samples with the stream's channel count (a mono file plays on every channel). The error
/// says what differs and how to fix it. A `channels` or `sample_rate` of 0 is not checked
/// (the stream's format is not known yet).
pub fn load_fallback(path: &Path, channels: u16, sample_rate: u32) -> Result<Vec<i32>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let info = estuary_wire::wav::parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    let spec = info.spec;
    if sample_rate != 0 && spec.sample_rate != sample_rate {
        return Err(format!(
            "{} is {} Hz but the input runs at {sample_rate} Hz; convert it first, e.g. \
             `sox {} -r {sample_rate} fallback-{sample_rate}.wav`",
            path.display(),
            spec.sample_rate,
            path.display()
        ));
    }
    if channels != 0 && spec.channels != 1 && spec.channels != channels {
        return Err(format!(
            "{} has {} channels; the input has {channels} (give a mono file or one with \
             {channels} channels)",
            path.display(),
            spec.channels
        ));
    }
    let start = usize::try_from(info.data_offset).unwrap_or(usize::MAX);
    let len = usize::try_from(info.data_size).unwrap_or(usize::MAX);
    let data = bytes
        .get(start..start.saturating_add(len).min(bytes.len()))
        .unwrap_or_default();
    let frames = data.len() as u64 / spec.bytes_per_frame().max(1);
    if frames == 0 {
        return Err(format!("{} holds no audio", path.display()));
    }
    if frames * u64::from(channels) > MAX_FALLBACK_SAMPLES {
        return Err(format!(
            "{} is too long for a fallback ({frames} frames; at most {} with {channels} \
             channels): it is held in memory and loops, so a minute is plenty",
            path.display(),
            MAX_FALLBACK_SAMPLES / u64::from(channels.max(1))
        ));
    }
    let samples = estuary_wire::wav::unpack(data, spec.bits);
    Ok(if spec.channels == 1 && channels > 1 {
        samples
            .iter()
            .flat_map(|&s| std::iter::repeat_n(s, usize::from(channels)))
            .collect()
    } else {
        samples
    })
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
        matches!(self.fallback.get_ref(), Fallback::Named(n) if n == "tone")
    }

    /// The backup streams, in priority order.
    pub fn backups(&self) -> Vec<SocketAddr> {
        match self.backup.as_ref().map(Spanned::get_ref) {
            None => Vec::new(),
            Some(Backups::One(a)) => vec![*a],
            Some(Backups::Many(list)) => list.clone(),
        }
    }

    /// The fallback file, if the fallback is one.
    pub fn fallback_file(&self) -> Option<&Path> {
        match self.fallback.get_ref() {
            Fallback::File(f) => Some(&f.file),
            Fallback::Named(_) => None,
        }
    }

    /// The switching rules at `sample_rate`.
    pub fn policy(&self, sample_rate: u32) -> FailoverPolicy {
        FailoverPolicy {
            switch_after: self.switch_after,
            silence_peak: self
                .silence_threshold
                .map(|db| (f64::from(i32::MAX) * 10f64.powf(db / 20.0)) as i32),
            silence_after: self.silence_after,
            clock_unlocked_after: self.clock_unlocked_after,
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
        match f.fallback.get_ref() {
            Fallback::Named(n) if n != "tone" && n != "none" => {
                return Err((
                    f.fallback.span(),
                    "failover.fallback".into(),
                    format!("{n:?} is not \"tone\", \"none\" or {{ file = \"PATH.wav\" }}"),
                ));
            }
            Fallback::File(file) => {
                // The stream's format is known here when it is configured; a stream described
                // by an SDP is checked again when its route starts.
                let described = self.sdp_file.is_some() || self.sdp.is_some();
                let channels = self.channels.as_ref().map_or(0, |c| *c.get_ref());
                let rate = match &self.sample_rate {
                    Some(r) => *r.get_ref(),
                    None if described => 0,
                    None => 48_000,
                };
                load_fallback(&file.file, channels, rate)
                    .map_err(|m| (f.fallback.span(), "failover.fallback.file".into(), m))?;
            }
            Fallback::Named(_) => {}
        }
        if let Some(backup) = &f.backup {
            let list = f.backups();
            let max = crate::pipeline::MAX_BACKUPS;
            let mut unique = list.clone();
            unique.sort_unstable();
            unique.dedup();
            if list.is_empty() || list.len() > max || unique.len() != list.len() {
                return Err((
                    backup.span(),
                    "failover.backup".into(),
                    format!("give 1 to {max} different backup addresses"),
                ));
            }
        }
        if f.backup.is_none() && !f.tone() && f.fallback_file().is_none() {
            return Err((
                span,
                "failover.backup".into(),
                "give a backup stream, a fallback (\"tone\" or a file), or both".into(),
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
        let clock = f.clock_unlocked_after.map(|d| {
            (
                "clock_unlocked_after",
                d,
                Duration::from_millis(10),
                Duration::from_secs(3600),
            )
        });
        for (field, value, min, max) in ranges.into_iter().chain(clock) {
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

impl InputConfig {
    /// The clock rule judges the PTP lock, so it needs a PTP clock (`[clock]`).
    pub fn validate_clock_rule(&self, mode: crate::clock::ClockMode) -> Result<(), FieldError> {
        let Some(f) = &self.failover else {
            return Ok(());
        };
        if f.get_ref().clock_unlocked_after.is_some() && mode == crate::clock::ClockMode::System {
            return Err((
                f.span(),
                "failover.clock_unlocked_after".into(),
                "judges the PTP lock: it needs [clock] mode = \"follower\" or \"grandmaster\""
                    .into(),
            ));
        }
        Ok(())
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
        let rule = "[[inputs]]\nname = \"a\"\nkind = \"aes67\"\naddress = \"239.1.1.1:5004\"\n\
                    failover = { backup = \"239.1.2.1:5004\", clock_unlocked_after = \"500ms\" }\n";
        let e = load(rule).expect_err("no PTP clock");
        assert!(
            e.to_string()
                .contains("inputs[0].failover.clock_unlocked_after")
                && e.to_string().contains("[clock]"),
            "{e}"
        );
        let cfg = load(&format!("[clock]\nmode = \"follower\"\n\n{rule}")).expect("valid");
        let policy = cfg.inputs[0]
            .failover
            .as_ref()
            .expect("failover")
            .get_ref()
            .policy(48_000);
        assert_eq!(
            policy.clock_unlocked_after,
            Some(std::time::Duration::from_millis(500))
        );
    }

    fn write_wav(path: &std::path::Path, rate: u32, channels: u16, samples: &[i32]) {
        let header = estuary_wire::wav::Header {
            spec: estuary_wire::wav::Spec {
                channels,
                sample_rate: rate,
                bits: 24,
            },
            bext: None,
            ixml: None,
            cue_slots: 0,
        };
        let mut data = Vec::new();
        estuary_wire::wav::pack(samples, 24, &mut data);
        let mut bytes = header.encode(data.len() as u64);
        bytes.extend_from_slice(&data);
        std::fs::write(path, bytes).expect("write wav");
    }

    #[test]
    fn a_wav_fallback_loads_mono_to_every_channel_and_a_wrong_rate_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mono = dir.path().join("mono.wav");
        write_wav(&mono, 48_000, 1, &[1 << 8, 2 << 8, 3 << 8]);
        let samples = super::load_fallback(&mono, 2, 48_000).expect("load");
        assert_eq!(samples, vec![256, 256, 512, 512, 768, 768]);
        let e = super::load_fallback(&mono, 2, 44_100).expect_err("rate");
        assert!(e.contains("48000 Hz") && e.contains("44100 Hz"), "{e}");
        let quad = dir.path().join("quad.wav");
        write_wav(&quad, 48_000, 4, &[0; 8]);
        let e = super::load_fallback(&quad, 2, 48_000).expect_err("channels");
        assert!(e.contains("4 channels"), "{e}");

        // In a config: relative to the config's directory, checked against the input.
        let text = "[discovery]\nsap = false\nravenna = false\n\n[[inputs]]\nname = \"a\"\n\
                    kind = \"aes67\"\naddress = \"239.1.1.1:5004\"\nchannels = 2\n\
                    failover = { fallback = { file = \"mono.wav\" } }\n";
        let cfg = config::parse(text, dir.path()).expect("valid");
        let f = cfg.inputs[0].failover.as_ref().expect("failover").get_ref();
        assert_eq!(f.fallback_file(), Some(mono.as_path()));
        let e = config::parse(
            &text.replace("channels = 2", "channels = 2\nsample_rate = 96000"),
            dir.path(),
        )
        .expect_err("rate");
        assert!(e.to_string().contains("failover.fallback.file"), "{e}");
        let e =
            config::parse(&text.replace("mono.wav", "none.wav"), dir.path()).expect_err("missing");
        assert!(e.to_string().contains("none.wav"), "{e}");
    }

    #[test]
    fn every_switch_is_seen_once() {
        use crate::status::{FailoverStatus, InputStatus};
        let input = |active: &str, switches: u64, reason: Option<&str>| InputStatus {
            name: "air".into(),
            failover: Some(FailoverStatus {
                active: active.into(),
                switches,
                last_reason: reason.map(Into::into),
                main_clock: None,
                backup: None,
                backups: Vec::new(),
            }),
            ..InputStatus::default()
        };
        let mut watch = super::SwitchWatch::default();
        assert!(watch.watch(&[input("main", 0, None)]).is_empty());
        let e = watch.watch(&[input("backup", 1, Some("no_packets"))]);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].message(), "input air: main -> backup (no_packets)");
        assert!(e[0].signal().raised);
        assert!(
            watch
                .watch(&[input("backup", 1, Some("no_packets"))])
                .is_empty()
        );
        let e = watch.watch(&[input("main", 2, Some("restored"))]);
        assert_eq!(e[0].message(), "input air: backup -> main (restored)");
        assert!(!e[0].signal().raised);
        assert_eq!(e[0].severity(), "info");
    }
}
