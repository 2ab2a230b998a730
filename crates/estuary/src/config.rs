//! The configuration file: the desired state of the daemon.
//!
//! Reading has two stages. `toml` + serde with `deny_unknown_fields` rejects syntax errors,
//! unknown fields and wrong types, and its messages already carry line and column. Then
//! [`Config::validate`] checks what serde cannot (names that must exist, values that must fit
//! together, an SDP that must parse) and reports the offending field with its line, using the
//! spans that `toml::Spanned` keeps for exactly those fields.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use estuary_engine::catalog::StreamSelector;
use estuary_io::tx::SignalKind;
use estuary_wire::payload::SampleFormat;
use estuary_wire::sdp;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub discovery: DiscoveryConfig,
    #[serde(default)]
    pub inputs: Vec<InputConfig>,
    #[serde(default)]
    pub outputs: Vec<OutputConfig>,
    #[serde(default)]
    pub alarms: crate::alarm::AlarmsConfig,
    #[serde(default)]
    pub api: crate::api::config::ApiConfig,
    #[serde(default)]
    pub recorders: Vec<crate::record::RecorderConfig>,
    /// Estuary as a Dante device (unofficial implementation).
    #[serde(default)]
    pub dante: Option<crate::dante::DanteConfig>,
    /// The media clock: system, or PTP follower / grandmaster.
    #[serde(default)]
    pub clock: crate::clock::ClockConfig,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `estuary=debug`; `RUST_LOG` overrides it.
    pub level: Option<String>,
}

/// Where to listen for stream announcements.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Listen for SAP (RFC 2974) announcements.
    #[serde(default = "yes")]
    pub sap: bool,
    /// SAP groups to join: the AES67/RAVENNA/Dante scope, the global scope FFmpeg and VLC
    /// use, and the link-local one.
    #[serde(default = "default_sap_groups")]
    pub sap_groups: Vec<IpAddr>,
    /// Browse mDNS/DNS-SD for RAVENNA sessions and read their SDP over RTSP.
    #[serde(default = "yes")]
    pub ravenna: bool,
    /// Interface name or address to listen on; default: the kernel's choice.
    pub interface: Option<Spanned<String>>,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            sap: true,
            sap_groups: default_sap_groups(),
            ravenna: true,
            interface: None,
        }
    }
}

fn yes() -> bool {
    true
}

pub fn default_sap_groups() -> Vec<IpAddr> {
    ["239.255.255.255", "224.2.127.254", "224.0.0.56"]
        .iter()
        .filter_map(|g| g.parse().ok())
        .collect()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    Aes67,
    /// A signal made inside Estuary: `tone`, `sweep` or `sequence` (see docs/config.md).
    Generator,
    /// The RX channels of Estuary's Dante device (`[dante]`), routed by a Dante controller.
    Dante,
    /// MPEG-TS over SRT (AAC, MP2, Opus or SMPTE 302M), decoded and re-clocked to ours.
    Srt,
}

impl InputKind {
    /// The name used in the config file and the status.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::Aes67 => "aes67",
            InputKind::Generator => "generator",
            InputKind::Srt => "srt",
            InputKind::Dante => "dante",
        }
    }
}

/// One AES67 / ST 2110-30 / RAVENNA stream to receive.
///
/// The stream is described by exactly one of `sdp_file`, `sdp` or `address` (+ format fields).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputConfig {
    pub name: Spanned<String>,
    pub kind: InputKind,
    /// Interface name (`eth0`) or one of its addresses; default: the kernel's choice.
    pub interface: Option<Spanned<String>>,
    /// Playout delay of the jitter buffer.
    #[serde(default = "default_input_latency", with = "humantime_serde")]
    pub latency: Duration,
    pub sdp_file: Option<Spanned<PathBuf>>,
    pub sdp: Option<Spanned<String>>,
    /// Which audio `m=` section of the SDP to use (0-based), for multi-stream SDPs.
    #[serde(default)]
    pub sdp_stream: usize,
    pub address: Option<Spanned<SocketAddr>>,
    pub format: Option<Spanned<String>>,
    pub channels: Option<Spanned<u16>>,
    pub sample_rate: Option<Spanned<u32>>,
    pub payload_type: Option<u8>,
    /// Either a sender address for source-specific multicast (only packets from it, like SDP
    /// `a=source-filter`), or a discovered stream to follow: `sap:NAME`, `ravenna:NAME` or
    /// `name:NAME` (any protocol), matched against the announced session name.
    pub source: Option<Spanned<String>>,
    /// Measure the input (meters, loudness, detectors, stream health) in the daemon.
    #[serde(default = "yes")]
    pub meters: bool,
    /// ST 2022-7: the second path of the same stream (see `docs/redundancy.md`).
    pub redundant: Option<Spanned<crate::redundant::RedundantConfig>>,
    /// ST 2022-7: largest path skew absorbed (added to the playout delay); default 10 ms.
    #[serde(default, with = "humantime_serde::option")]
    pub max_skew: Option<Duration>,
    /// Source failover: a backup stream and/or a fallback tone (see `docs/redundancy.md`).
    pub failover: Option<Spanned<crate::failover::FailoverConfig>>,
    /// Generator only: `tone` (default), `sweep` or `sequence`.
    pub signal: Option<Spanned<String>>,
    /// Generator only: tone frequency in Hz (default 1000).
    pub frequency: Option<Spanned<f64>>,
    /// Generator only: peak level in dBFS (default -18).
    pub level: Option<Spanned<f64>>,
    /// SRT only: `caller` or `listener` (required).
    pub mode: Option<Spanned<SrtModeConfig>>,
    /// SRT only: AES passphrase, 10 to 79 characters.
    pub passphrase: Option<Spanned<String>>,
    /// SRT only: AES key length in bytes, 16, 24 or 32 (`pbkeylen`).
    pub key_length: Option<Spanned<u8>>,
    /// SRT only (caller): the stream id sent to the listener.
    pub stream_id: Option<Spanned<String>>,
    /// SRT only: the SRT receive latency (`SRTO_LATENCY`); default 120 ms.
    #[serde(default, with = "humantime_serde::option")]
    pub srt_latency: Option<Duration>,
    /// SRT only: decoded audio held against bursts and clock drift; default 60 ms.
    #[serde(default, with = "humantime_serde::option")]
    pub buffer: Option<Duration>,
}

/// What an input's `source` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    Address(IpAddr),
    Discovered(StreamSelector),
}

/// How an input gets its stream description.
#[derive(Debug, Clone, PartialEq)]
pub enum InputPlan {
    /// From the config itself (SDP file, inline SDP, or address + format).
    Fixed(ResolvedStream),
    /// From the discovery catalog, following re-announcements.
    Follow(StreamSelector),
}

fn default_input_latency() -> Duration {
    Duration::from_millis(10)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    Srt,
    /// AES67 / ST 2110-30 RTP, paced by the media clock (see docs/config.md).
    Aes67,
    /// An Icecast 2 / Shoutcast v2 source (see docs/outputs.md).
    Icecast,
    /// HTTP listen-in served by Estuary itself (see docs/outputs.md).
    Http,
    /// RTMP publishing, AAC-LC in FLV (see docs/outputs.md).
    Rtmp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SrtModeConfig {
    /// Estuary connects to `address` (OBS, vMix, a media server listening).
    Caller,
    /// Estuary waits on `address` for one caller at a time (ffplay, srt-live-transmit).
    Listener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecConfig {
    /// Opus in MPEG-TS: small, for the internet.
    Opus,
    /// Uncompressed PCM as SMPTE 302M in MPEG-TS: bit-exact, for contribution links.
    Pcm,
    /// MP3 (Icecast, HTTP).
    Mp3,
    /// AAC-LC in ADTS (Icecast, HTTP).
    Aac,
    /// FLAC in Ogg (Icecast, HTTP).
    Flac,
}

/// One destination fed by one input: SRT (`mode`, `codec`, ...) or AES67 (`format`,
/// `ptime`, ...). Fields of the other kind are refused by [`OutputConfig::check`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub name: Spanned<String>,
    pub kind: OutputKind,
    /// Name of the input whose audio this output carries.
    pub input: Spanned<String>,
    /// SRT only (required there).
    pub mode: Option<SrtModeConfig>,
    /// SRT caller: the remote listener. SRT listener: the local address to bind. AES67: the
    /// destination (multicast group or unicast host) and port. HTTP: the listen address.
    #[serde(default = "no_address")]
    pub address: SocketAddr,
    pub passphrase: Option<Spanned<String>>,
    /// AES key length in bytes: 16, 24 or 32 (SRT `pbkeylen`).
    pub key_length: Option<Spanned<u8>>,
    /// SRT receiver buffer latency (SRTO_LATENCY).
    #[serde(default = "default_srt_latency", with = "humantime_serde")]
    pub latency: Duration,
    pub stream_id: Option<String>,
    /// SRT only (required there).
    pub codec: Option<CodecConfig>,
    /// Opus bitrate in bits per second.
    #[serde(default = "default_opus_bitrate")]
    pub bitrate: Spanned<u32>,
    /// 1-based input channels to carry, in order. Default: all (Opus: the first two; 302M:
    /// the first eight).
    pub channels: Option<Spanned<Vec<u16>>>,
    /// PCM sample size for `codec = "pcm"`: 16, 20 or 24.
    #[serde(default = "default_pcm_bits")]
    pub bits: Spanned<u8>,
    // AES67 only:
    /// L16, L24 (default) or L32.
    pub format: Option<Spanned<String>>,
    /// Packet time in ms: 0.125, 0.25, 1 (default) or 4.
    pub ptime: Option<Spanned<f64>>,
    /// Multicast TTL (default 32).
    pub ttl: Option<Spanned<u32>>,
    /// `AF41` (default), `EF`, or a DSCP number 0-63.
    pub dscp: Option<Spanned<String>>,
    /// RTP payload type (default 98).
    pub payload_type: Option<Spanned<u8>>,
    /// Sending interface (name or address).
    pub interface: Option<Spanned<String>>,
    /// ST 2022-7: send every packet again on a second path (see `docs/redundancy.md`).
    pub redundant: Option<Spanned<crate::redundant::RedundantConfig>>,
    /// Session name in the SDP (`s=`); default: the output's name.
    pub session_name: Option<String>,
    /// Write the stream's SDP to this file.
    pub sdp_file: Option<Spanned<PathBuf>>,
    /// Announce the SDP over SAP (default true).
    pub sap: Option<bool>,
    /// Serve the SDP over RTSP and publish it over mDNS (RAVENNA; default false).
    pub ravenna: Option<bool>,
    // Icecast and HTTP (checked in config_net.rs):
    /// Icecast: `http://host:port/mount` or `https://...`; RTMP: `rtmp://host/app/key`.
    pub url: Option<Spanned<String>>,
    /// Icecast source user (default `source`).
    pub user: Option<String>,
    pub password: Option<Spanned<String>>,
    /// `Ice-Name`, `Ice-Description`, `Ice-Genre`, `Ice-Url`, `Ice-Public`.
    pub stream_name: Option<String>,
    pub description: Option<String>,
    pub genre: Option<String>,
    pub homepage: Option<String>,
    pub public: Option<bool>,
    /// The title listeners see, until `title_file` (watched) says otherwise.
    pub title: Option<String>,
    pub title_file: Option<Spanned<PathBuf>>,
    /// Encoded sample rate (default: the input's, or 44100 for MP3 from 48000... see docs).
    pub sample_rate: Option<Spanned<u32>>,
    /// `"mono"`: the carried channels are averaged into one.
    pub downmix: Option<Spanned<String>>,
    /// HTTP: the path listeners open, e.g. `/studio.mp3`.
    pub path: Option<Spanned<String>>,
    /// HTTP: listeners served at once (default 16).
    pub max_listeners: Option<Spanned<u32>>,
    /// HTTP: the token a non-loopback listener must give (`?token=` or `Authorization:
    /// Bearer`); without it only loopback clients are served.
    pub token: Option<Spanned<String>>,
    /// Icecast `https://`, RTMP `rtmps://`: a PEM file of the CA certificates trusted instead
    /// of Mozilla's roots (a private CA, a self-signed server).
    pub tls_ca_file: Option<Spanned<PathBuf>>,
    /// Icecast `https://`, RTMP `rtmps://`: accept any server certificate (a lab only).
    pub tls_insecure: Option<Spanned<bool>>,
}

/// `address` is optional for the kinds that do not use it.
fn no_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// The AES67 transmit settings of an output, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Aes67Plan {
    pub format: SampleFormat,
    pub frames_per_packet: u32,
    pub ttl: u32,
    pub dscp: u8,
    pub payload_type: u8,
}

fn default_srt_latency() -> Duration {
    Duration::from_millis(120)
}
fn default_opus_bitrate() -> Spanned<u32> {
    Spanned::new(0..0, 128_000)
}
fn default_pcm_bits() -> Spanned<u8> {
    Spanned::new(0..0, 24)
}

/// A configuration error that names the field and, when known, its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: Option<PathBuf>,
    pub line: Option<usize>,
    pub field: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}", path.display())?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A stream description resolved from whichever form the input used.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedStream {
    pub destination: SocketAddr,
    pub source: Option<IpAddr>,
    pub format: SampleFormat,
    pub channels: u16,
    pub sample_rate: u32,
    pub payload_type: Option<u8>,
    pub frames_per_packet: Option<u32>,
    pub label: Option<String>,
}

/// Loads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        path: Some(path.to_owned()),
        line: None,
        field: "file".into(),
        message: format!("cannot read: {e}"),
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).map_err(|mut e| {
        e.path = Some(path.to_owned());
        e
    })
}

/// Parses and validates config text; relative paths inside resolve against `base_dir`.
pub fn parse(text: &str, base_dir: &Path) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|e| from_toml_error(text, &e))?;
    for input in &mut config.inputs {
        if let Some(file) = &mut input.sdp_file
            && file.get_ref().is_relative()
        {
            let span = file.span();
            *file = Spanned::new(span, base_dir.join(file.get_ref()));
        }
    }
    for input in &mut config.inputs {
        crate::failover::resolve_paths(input, base_dir);
    }
    for output in &mut config.outputs {
        if let Some(file) = &mut output.sdp_file
            && file.get_ref().is_relative()
        {
            let span = file.span();
            *file = Spanned::new(span, base_dir.join(file.get_ref()));
        }
    }
    config.alarms.resolve_paths(base_dir);
    config.api.resolve_paths(base_dir);
    config.validate(text)?;
    Ok(config)
}

fn from_toml_error(text: &str, e: &toml::de::Error) -> ConfigError {
    let line = e.span().map(|s| line_of(text, s.start));
    let field = line
        .and_then(|l| field_at_line(text, l))
        .or_else(|| field_from_message(e.message()))
        .unwrap_or_else(|| "syntax".into());
    ConfigError {
        path: None,
        line,
        field,
        message: e.message().trim().to_owned(),
    }
}

/// The dotted path of the key on `line` (1-based), e.g. `inputs[0].latency`, found from the
/// table headers above it. serde's type errors name only the value, not the key.
fn field_at_line(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut counts: Vec<(String, usize)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if i + 1 == line {
            let key = l.split_once('=')?.0.trim();
            if key.is_empty() || key.starts_with('#') {
                return None;
            }
            return Some(if table.is_empty() {
                key.to_owned()
            } else {
                format!("{table}.{key}")
            });
        }
        if let Some(name) = l
            .strip_prefix("[[")
            .and_then(|r| r.split_once("]]"))
            .map(|r| r.0.trim())
        {
            let index = match counts.iter_mut().find(|(n, _)| n == name) {
                Some((_, c)) => {
                    *c += 1;
                    *c - 1
                }
                None => {
                    counts.push((name.to_owned(), 1));
                    0
                }
            };
            table = format!("{name}[{index}]");
        } else if let Some(name) = l
            .strip_prefix('[')
            .and_then(|r| r.split_once(']'))
            .map(|r| r.0.trim())
        {
            table = name.to_owned();
        }
    }
    None
}

/// serde names an unknown or missing key in backticks ("unknown field `foo`").
fn field_from_message(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let len = message[start..].find('`')?;
    Some(message[start..start + len].to_owned())
}

fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|&b| b == b'\n').count())
        + 1
}

impl Config {
    fn validate(&self, text: &str) -> Result<(), ConfigError> {
        let err = |span: std::ops::Range<usize>, field: String, message: String| ConfigError {
            path: None,
            line: (span.end > 0).then(|| line_of(text, span.start)),
            field,
            message,
        };
        self.api
            .validate()
            .map_err(|(span, f, m)| err(span, f, m))?;
        if let Some(dante) = &self.dante {
            dante.validate().map_err(|(span, f, m)| err(span, f, m))?;
        }
        crate::dante::validate_routes(self).map_err(|(span, f, m)| err(span, f, m))?;
        self.clock
            .validate()
            .map_err(|(span, f, m)| err(span, f, m))?;
        let mut names = HashSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let field = |f: &str| format!("inputs[{i}].{f}");
            check_name(&input.name).map_err(|m| err(input.name.span(), field("name"), m))?;
            if !names.insert(input.name.get_ref().clone()) {
                return Err(err(
                    input.name.span(),
                    field("name"),
                    format!("duplicate name {:?}", input.name.get_ref()),
                ));
            }
            if let Some(iface) = &input.interface {
                estuary_io::mcast::resolve_interface(iface.get_ref())
                    .map_err(|e| err(iface.span(), field("interface"), e.to_string()))?;
            }
            if input.latency < Duration::from_millis(1) || input.latency > Duration::from_secs(2) {
                return Err(err(
                    input.name.span(),
                    field("latency"),
                    "must be between 1ms and 2s".into(),
                ));
            }
            input
                .plan()
                .map_err(|(span, f, m)| err(span, field(&f), m))?;
            input
                .validate_redundancy()
                .map_err(|(span, f, m)| err(span, field(&f), m))?;
            input
                .validate_failover()
                .map_err(|(span, f, m)| err(span, field(&f), m))?;
            input
                .validate_clock_rule(self.clock.mode)
                .map_err(|(span, f, m)| err(span, field(&f), m))?;
        }
        let mut output_names = HashSet::new();
        for (i, output) in self.outputs.iter().enumerate() {
            let field = |f: &str| format!("outputs[{i}].{f}");
            check_name(&output.name).map_err(|m| err(output.name.span(), field("name"), m))?;
            if !output_names.insert(output.name.get_ref().clone()) {
                return Err(err(
                    output.name.span(),
                    field("name"),
                    format!("duplicate name {:?}", output.name.get_ref()),
                ));
            }
            output
                .check_kind_fields()
                .map_err(|(span, f, m)| err(span, field(&f), m))?;
            let Some(input) = self
                .inputs
                .iter()
                .find(|inp| inp.name.get_ref() == output.input.get_ref())
            else {
                return Err(err(
                    output.input.span(),
                    field("input"),
                    format!("no input named {:?}", output.input.get_ref()),
                ));
            };
            // A followed stream is checked when it is discovered (the route then reports why
            // it cannot start); its format is unknown until then.
            if let InputPlan::Fixed(stream) =
                input.plan().map_err(|(span, f, m)| err(span, f, m))?
            {
                output
                    .check(&stream)
                    .map_err(|(span, f, m)| err(span, field(&f), m))?;
            }
        }
        crate::record::config::validate(self).map_err(|(span, f, m)| err(span, f, m))?;
        self.alarms
            .validate(self)
            .map_err(|(span, f, m)| err(span, format!("alarms.{f}"), m))?;
        Ok(())
    }
}

fn check_name(name: &Spanned<String>) -> Result<(), String> {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 64
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{n:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

/// (where in the file, which field, what is wrong).
pub type FieldError = (std::ops::Range<usize>, String, String);

impl InputConfig {
    /// Parses `source`: an IP address, or a discovered-stream selector.
    pub fn source_spec(&self) -> Result<Option<SourceSpec>, FieldError> {
        let Some(source) = &self.source else {
            return Ok(None);
        };
        let text = source.get_ref().trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Some(SourceSpec::Address(ip)));
        }
        StreamSelector::parse(text)
            .map(|s| Some(SourceSpec::Discovered(s)))
            .ok_or_else(|| {
                (
                    source.span(),
                    "source".into(),
                    format!(
                        "{text:?} is neither an IP address nor a discovered stream \
                         (`sap:NAME`, `ravenna:NAME` or `name:NAME`)"
                    ),
                )
            })
    }

    /// Works out how the stream is described: fixed by the config, or followed from discovery.
    pub fn plan(&self) -> Result<InputPlan, FieldError> {
        if self.kind != InputKind::Srt {
            self.refuse_srt_fields()?;
        }
        match self.kind {
            InputKind::Generator => return self.generator_stream().map(InputPlan::Fixed),
            InputKind::Dante => return self.dante_stream().map(InputPlan::Fixed),
            InputKind::Srt => return self.srt_stream().map(InputPlan::Fixed),
            InputKind::Aes67 => {}
        }
        self.signal()?;
        let spec = self.source_spec()?;
        if let Some(SourceSpec::Discovered(selector)) = spec {
            let given = [
                ("sdp_file", self.sdp_file.is_some()),
                ("sdp", self.sdp.is_some()),
                ("address", self.address.is_some()),
            ];
            if let Some((field, _)) = given.iter().find(|(_, set)| *set) {
                return Err((
                    self.source.as_ref().map_or(0..0, Spanned::span),
                    (*field).into(),
                    format!("`{field}` and a discovered `source` ({selector}) exclude each other"),
                ));
            }
            return Ok(InputPlan::Follow(selector));
        }
        self.resolve().map(InputPlan::Fixed)
    }

    /// A generator's signal; `None` for a received input.
    pub fn signal(&self) -> Result<Option<SignalKind>, FieldError> {
        if self.kind != InputKind::Generator {
            let given = [
                ("signal", self.signal.as_ref().map(Spanned::span)),
                ("frequency", self.frequency.as_ref().map(Spanned::span)),
                ("level", self.level.as_ref().map(Spanned::span)),
            ];
            if let Some((field, Some(span))) = given.into_iter().find(|(_, s)| s.is_some()) {
                return Err((
                    span,
                    field.into(),
                    format!(
                        "`{field}` is a generator setting; this input is kind = \"{}\"",
                        self.kind.name()
                    ),
                ));
            }
            return Ok(None);
        }
        let frequency = self.frequency.as_ref().map_or(1000.0, |f| *f.get_ref());
        let kind = match self.signal.as_ref().map(|s| s.get_ref().as_str()) {
            None | Some("tone") => SignalKind::Tone {
                frequency_hz: frequency,
            },
            Some("sweep") => SignalKind::Sweep { period_s: 10.0 },
            Some("sequence") => SignalKind::Sequence,
            Some(other) => {
                let span = self.signal.as_ref().map_or(0..0, Spanned::span);
                return Err((
                    span,
                    "signal".into(),
                    format!("{other:?} is not one of tone, sweep, sequence"),
                ));
            }
        };
        Ok(Some(kind))
    }

    /// Refuses the fields that describe a received RTP stream, for kinds that have none.
    pub(crate) fn refuse_received_fields(&self, why: &str) -> Result<(), FieldError> {
        let received = [
            ("sdp_file", self.sdp_file.is_some()),
            ("sdp", self.sdp.is_some()),
            ("address", self.address.is_some()),
            ("source", self.source.is_some()),
            ("format", self.format.is_some()),
            ("interface", self.interface.is_some()),
        ];
        if let Some((field, _)) = received.iter().find(|(_, set)| *set) {
            return Err((
                self.name.span(),
                (*field).into(),
                format!("`{field}` describes a received stream; {why}"),
            ));
        }
        Ok(())
    }

    /// The stream a generator input makes.
    fn generator_stream(&self) -> Result<ResolvedStream, FieldError> {
        self.refuse_received_fields("a generator makes its own")?;
        let signal = self.signal()?;
        if let Some(f) = &self.frequency {
            let rate = self.sample_rate.as_ref().map_or(48_000, |r| *r.get_ref());
            if !(*f.get_ref() > 0.0 && *f.get_ref() < f64::from(rate) / 2.0) {
                return Err((
                    f.span(),
                    "frequency".into(),
                    format!("must be between 0 and {} Hz", rate / 2),
                ));
            }
        }
        if let Some(l) = &self.level
            && !(-120.0..=0.0).contains(l.get_ref())
        {
            return Err((l.span(), "level".into(), "must be -120 to 0 dBFS".into()));
        }
        let mut stream = self.format_fields(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        stream.format = SampleFormat::L32;
        stream.label = Some(match signal {
            Some(SignalKind::Tone { frequency_hz }) => format!("tone {frequency_hz} Hz"),
            Some(SignalKind::Sweep { .. }) => "sweep".into(),
            _ => "sequence".into(),
        });
        Ok(stream)
    }

    /// Works out the stream from `sdp_file`, `sdp` or `address` + format fields.
    pub fn resolve(&self) -> Result<ResolvedStream, FieldError> {
        let name_span = self.name.span();
        let forms = [
            self.sdp_file.is_some(),
            self.sdp.is_some(),
            self.address.is_some(),
        ];
        if forms.iter().filter(|&&f| f).count() != 1 {
            return Err((
                name_span,
                "sdp_file".into(),
                "give exactly one of `sdp_file`, `sdp`, `address`, or a discovered `source`".into(),
            ));
        }
        let mut stream = if let Some(file) = &self.sdp_file {
            let text = std::fs::read_to_string(file.get_ref()).map_err(|e| {
                (
                    file.span(),
                    "sdp_file".into(),
                    format!("cannot read {}: {e}", file.get_ref().display()),
                )
            })?;
            self.stream_from_sdp(&text, file.span(), "sdp_file")?
        } else if let Some(sdp) = &self.sdp {
            self.stream_from_sdp(sdp.get_ref(), sdp.span(), "sdp")?
        } else {
            self.stream_from_fields()?
        };
        self.apply_overrides(&mut stream)?;
        Ok(stream)
    }

    /// The stream described by a discovered SDP, with this input's overrides applied.
    pub fn resolve_discovered(&self, sdp_text: &str) -> Result<ResolvedStream, String> {
        let mut stream = self
            .stream_from_sdp(sdp_text, 0..0, "sdp")
            .map_err(|(_, _, message)| message)?;
        self.apply_overrides(&mut stream).map_err(|(_, _, m)| m)?;
        Ok(stream)
    }

    fn apply_overrides(&self, stream: &mut ResolvedStream) -> Result<(), FieldError> {
        if let Some(SourceSpec::Address(source)) = self.source_spec()? {
            stream.source = Some(source);
        }
        if let Some(pt) = self.payload_type {
            stream.payload_type = Some(pt);
        }
        Ok(())
    }

    fn stream_from_sdp(
        &self,
        text: &str,
        span: std::ops::Range<usize>,
        field: &str,
    ) -> Result<ResolvedStream, FieldError> {
        let session = sdp::parse(text)
            .map_err(|e| (span.clone(), field.into(), format!("invalid SDP: {e}")))?;
        let Some(media) = session.streams.get(self.sdp_stream) else {
            return Err((
                span,
                field.into(),
                format!(
                    "the SDP has {} usable audio stream(s); sdp_stream = {} does not exist",
                    session.streams.len(),
                    self.sdp_stream
                ),
            ));
        };
        let Some(conn) = &media.connection else {
            return Err((span, field.into(), "the SDP has no c= address".into()));
        };
        let source = media
            .source_filter
            .as_ref()
            .and_then(|f| f.sources.first().copied());
        Ok(ResolvedStream {
            destination: SocketAddr::new(conn.address, media.port),
            source,
            format: media.format,
            channels: media.channels,
            sample_rate: media.sample_rate,
            payload_type: Some(media.payload_type),
            frames_per_packet: media.frames_per_packet(),
            label: Some(session.name.clone()),
        })
    }

    fn stream_from_fields(&self) -> Result<ResolvedStream, FieldError> {
        let name_span = self.name.span();
        let address = self.address.as_ref().map(|a| *a.get_ref());
        let Some(destination) = address else {
            return Err((name_span, "address".into(), "missing".into()));
        };
        self.format_fields(destination)
    }

    pub(crate) fn format_fields(
        &self,
        destination: SocketAddr,
    ) -> Result<ResolvedStream, FieldError> {
        let name_span = self.name.span();
        let format = match &self.format {
            None => SampleFormat::L24,
            Some(f) => SampleFormat::from_encoding_name(f.get_ref()).ok_or_else(|| {
                (
                    f.span(),
                    "format".into(),
                    format!("{:?} is not one of L16, L24, L32, AM824", f.get_ref()),
                )
            })?,
        };
        let channels = self.channels.as_ref().map_or(2, |c| *c.get_ref());
        if !(1..=64).contains(&channels) {
            let span = self
                .channels
                .as_ref()
                .map_or(name_span.clone(), |c| c.span());
            return Err((span, "channels".into(), "must be 1 to 64".into()));
        }
        let sample_rate = self.sample_rate.as_ref().map_or(48_000, |r| *r.get_ref());
        if ![44_100, 48_000, 88_200, 96_000, 192_000].contains(&sample_rate) {
            let span = self.sample_rate.as_ref().map_or(name_span, |r| r.span());
            return Err((
                span,
                "sample_rate".into(),
                format!("{sample_rate} is not an AES67 rate (44100, 48000, 96000, ...)"),
            ));
        }
        Ok(ResolvedStream {
            destination,
            source: None,
            format,
            channels,
            sample_rate,
            payload_type: None,
            frames_per_packet: None,
            label: None,
        })
    }
}

impl OutputConfig {
    /// The 0-based input channels this output carries.
    pub fn channel_map(&self, input_channels: u16) -> Vec<usize> {
        match &self.channels {
            Some(list) => list.get_ref().iter().map(|&c| usize::from(c) - 1).collect(),
            None => {
                let n = match (self.kind, self.codec) {
                    (OutputKind::Aes67, _) => input_channels.min(64),
                    (OutputKind::Icecast | OutputKind::Http | OutputKind::Rtmp, _) => {
                        input_channels.min(2)
                    }
                    (_, Some(CodecConfig::Opus)) => input_channels.min(2),
                    _ => input_channels.min(8),
                };
                (0..usize::from(n)).collect()
            }
        }
    }

    /// Whether the SRT-only or AES67-only settings are the ones given.
    pub fn check_kind_fields(&self) -> Result<(), FieldError> {
        let name = self.name.span();
        if self.is_network() {
            return self.check_net_fields();
        }
        if let Some(f) = self.net_field_set() {
            return Err((
                name,
                f.into(),
                format!("`{f}` is an Icecast/HTTP setting, not for this kind of output"),
            ));
        }
        if self.address.port() == 0 {
            return Err((name, "address".into(), "missing (ip:port)".into()));
        }
        let srt_only = [
            ("mode", self.mode.is_some()),
            ("passphrase", self.passphrase.is_some()),
            ("key_length", self.key_length.is_some()),
            ("stream_id", self.stream_id.is_some()),
            ("codec", self.codec.is_some()),
        ];
        let aes67_only = [
            ("format", self.format.is_some()),
            ("ptime", self.ptime.is_some()),
            ("ttl", self.ttl.is_some()),
            ("dscp", self.dscp.is_some()),
            ("payload_type", self.payload_type.is_some()),
            ("interface", self.interface.is_some()),
            ("session_name", self.session_name.is_some()),
            ("sdp_file", self.sdp_file.is_some()),
            ("sap", self.sap.is_some()),
            ("ravenna", self.ravenna.is_some()),
            ("redundant", self.redundant.is_some()),
        ];
        let (foreign, kind) = match self.kind {
            OutputKind::Srt => (aes67_only, "AES67"),
            OutputKind::Icecast | OutputKind::Http | OutputKind::Rtmp => {
                return self.check_net_fields();
            }
            OutputKind::Aes67 => {
                if let Some((f, _)) = srt_only.iter().find(|(_, set)| *set) {
                    return Err((
                        name,
                        (*f).into(),
                        format!("`{f}` is an SRT setting; this output is kind = \"aes67\""),
                    ));
                }
                return self.redundant_leg().map(drop);
            }
        };
        if let Some((f, _)) = foreign.iter().find(|(_, set)| *set) {
            return Err((
                name,
                (*f).into(),
                format!("`{f}` is an {kind} setting; this output is kind = \"srt\""),
            ));
        }
        if self.mode.is_none() {
            return Err((name, "mode".into(), "missing (caller or listener)".into()));
        }
        if self.codec.is_none() {
            return Err((name, "codec".into(), "missing (opus or pcm)".into()));
        }
        Ok(())
    }

    /// The AES67 settings for an input running at `sample_rate`.
    pub fn aes67_plan(&self, sample_rate: u32, channels: usize) -> Result<Aes67Plan, FieldError> {
        let name = self.name.span();
        let format = match &self.format {
            None => SampleFormat::L24,
            Some(f) => match SampleFormat::from_encoding_name(f.get_ref()) {
                Some(fmt @ (SampleFormat::L16 | SampleFormat::L24 | SampleFormat::L32)) => fmt,
                _ => {
                    return Err((
                        f.span(),
                        "format".into(),
                        format!("{:?} is not one of L16, L24, L32", f.get_ref()),
                    ));
                }
            },
        };
        let ptime_span = self.ptime.as_ref().map_or(name.clone(), Spanned::span);
        let ptime = self.ptime.as_ref().map_or(1.0, |p| *p.get_ref());
        // AES67 counts packets in samples of the 48 kHz family; 44.1 kHz uses the same counts.
        let per_ms = match sample_rate {
            44_100 | 48_000 => 48.0,
            88_200 | 96_000 => 96.0,
            _ => {
                return Err((
                    self.input.span(),
                    "input".into(),
                    format!("AES67 transmit runs at 44100, 48000 or 96000 Hz, not {sample_rate}"),
                ));
            }
        };
        if ![0.125, 0.25, 1.0, 4.0].contains(&ptime) {
            return Err((
                ptime_span,
                "ptime".into(),
                format!("{ptime} ms is not an AES67 packet time (0.125, 0.25, 1 or 4)"),
            ));
        }
        let frames_per_packet = (ptime * per_ms) as u32;
        let bytes = 12 + frames_per_packet as usize * channels * format.bytes_per_sample();
        if bytes > estuary_io::tx::MAX_RTP_PACKET {
            return Err((
                ptime_span,
                "ptime".into(),
                format!(
                    "{channels} channels of {} at {ptime} ms make a {bytes}-byte packet, over \
                     the {}-byte MTU limit; use a shorter ptime or fewer channels",
                    format.encoding_name(),
                    estuary_io::tx::MAX_RTP_PACKET
                ),
            ));
        }
        let dscp = match &self.dscp {
            None => estuary_io::tx::DEFAULT_DSCP,
            Some(d) => parse_dscp(d.get_ref()).ok_or_else(|| {
                (
                    d.span(),
                    "dscp".into(),
                    format!("{:?} is not AF41, EF, CS<n> or a number 0-63", d.get_ref()),
                )
            })?,
        };
        let payload_type = self.payload_type.as_ref().map_or(98, |p| *p.get_ref());
        if payload_type > 127 {
            let span = self
                .payload_type
                .as_ref()
                .map_or(name.clone(), Spanned::span);
            return Err((span, "payload_type".into(), "must be 0 to 127".into()));
        }
        let ttl = self.ttl.as_ref().map_or(32, |t| *t.get_ref());
        if !(1..=255).contains(&ttl) {
            let span = self.ttl.as_ref().map_or(name, Spanned::span);
            return Err((span, "ttl".into(), "must be 1 to 255".into()));
        }
        Ok(Aes67Plan {
            format,
            frames_per_packet,
            ttl,
            dscp,
            payload_type,
        })
    }

    pub fn check(&self, stream: &ResolvedStream) -> Result<(), FieldError> {
        self.check_kind_fields()?;
        if let Some(list) = &self.channels {
            if list.get_ref().is_empty() {
                return Err((list.span(), "channels".into(), "must not be empty".into()));
            }
            if let Some(bad) = list
                .get_ref()
                .iter()
                .find(|&&c| c == 0 || c > stream.channels)
            {
                return Err((
                    list.span(),
                    "channels".into(),
                    format!(
                        "channel {bad} does not exist: the input has channels 1 to {}",
                        stream.channels
                    ),
                ));
            }
        }
        let carried = self.channel_map(stream.channels).len();
        if self.is_network() {
            return self.check_net(stream, carried);
        }
        if self.kind == OutputKind::Aes67 {
            if let Some(iface) = &self.interface {
                estuary_io::mcast::resolve_interface(iface.get_ref())
                    .map_err(|e| (iface.span(), "interface".into(), e.to_string()))?;
            }
            return self.aes67_plan(stream.sample_rate, carried).map(drop);
        }
        let channels_span = self.channels.as_ref().map_or(0..0, |c| c.span());
        match self.codec.unwrap_or(CodecConfig::Pcm) {
            CodecConfig::Mp3 | CodecConfig::Aac | CodecConfig::Flac => {
                return Err((
                    self.name.span(),
                    "codec".into(),
                    "SRT carries opus or pcm".into(),
                ));
            }
            CodecConfig::Opus => {
                if carried > 2 {
                    return Err((
                        channels_span,
                        "channels".into(),
                        "Opus carries 1 or 2 channels".into(),
                    ));
                }
                let rate = *self.bitrate.get_ref();
                if !(6_000..=510_000).contains(&rate) {
                    return Err((
                        self.bitrate.span(),
                        "bitrate".into(),
                        "Opus bitrate must be 6000 to 510000 bit/s".into(),
                    ));
                }
            }
            CodecConfig::Pcm => {
                if carried > 8 {
                    return Err((
                        channels_span,
                        "channels".into(),
                        "SMPTE 302M carries at most 8 channels".into(),
                    ));
                }
                if ![16, 20, 24].contains(self.bits.get_ref()) {
                    return Err((
                        self.bits.span(),
                        "bits".into(),
                        "must be 16, 20 or 24".into(),
                    ));
                }
            }
        }
        // Opus and 302M run at 48 kHz; other input rates are converted in 20 ms blocks.
        if !stream.sample_rate.is_multiple_of(50) {
            return Err((
                self.input.span(),
                "input".into(),
                format!(
                    "the input runs at {} Hz; SRT outputs convert rates that are multiples of 50 Hz",
                    stream.sample_rate
                ),
            ));
        }
        check_srt_encryption(&self.passphrase, &self.key_length)
    }
}

/// SRT's encryption settings, shared by SRT outputs and SRT inputs: libsrt takes a
/// passphrase of 10 to 79 characters (no NUL: it is passed as a C string) and AES keys of
/// 16, 24 or 32 bytes, and a key length means nothing without a passphrase.
pub fn check_srt_encryption(
    passphrase: &Option<Spanned<String>>,
    key_length: &Option<Spanned<u8>>,
) -> Result<(), FieldError> {
    if let Some(p) = passphrase {
        let len = p.get_ref().chars().count();
        if !(10..=79).contains(&len) || p.get_ref().contains('\0') {
            return Err((
                p.span(),
                "passphrase".into(),
                format!("must be 10 to 79 characters (SRT), got {len}"),
            ));
        }
    }
    if let Some(k) = key_length {
        if ![16, 24, 32].contains(k.get_ref()) {
            return Err((
                k.span(),
                "key_length".into(),
                "must be 16, 24 or 32 (bytes)".into(),
            ));
        }
        if passphrase.is_none() {
            return Err((k.span(), "key_length".into(), "needs a passphrase".into()));
        }
    }
    Ok(())
}

/// `AF41`, `EF`, `CS5` or a number → the 6-bit DSCP code point.
pub fn parse_dscp(text: &str) -> Option<u8> {
    let t = text.trim().to_ascii_uppercase();
    let value = match t.as_str() {
        "EF" => 46,
        "AF41" => 34,
        "DEFAULT" | "BE" => 0,
        _ => {
            if let Some(n) = t.strip_prefix("CS") {
                n.parse::<u8>().ok().filter(|&n| n < 8)? * 8
            } else if let Some(af) = t.strip_prefix("AF") {
                let (class, drop) = (
                    af.get(..1)?.parse::<u8>().ok()?,
                    af.get(1..)?.parse::<u8>().ok()?,
                );
                if !(1..=4).contains(&class) || !(1..=3).contains(&drop) {
                    return None;
                }
                class * 8 + drop * 2
            } else {
                t.parse().ok()?
            }
        }
    };
    (value < 64).then_some(value)
}

#[cfg(test)]
#[path = "config_tx_tests.rs"]
mod tx_tests;

#[path = "config_net.rs"]
mod net;

#[path = "config_dup.rs"]
mod dup;
