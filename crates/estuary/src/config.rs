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
}

/// One SRT destination fed by one input.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    pub name: Spanned<String>,
    pub kind: OutputKind,
    /// Name of the input whose audio this output carries.
    pub input: Spanned<String>,
    pub mode: SrtModeConfig,
    /// Caller: the remote listener. Listener: the local address to bind.
    pub address: SocketAddr,
    pub passphrase: Option<Spanned<String>>,
    /// AES key length in bytes: 16, 24 or 32 (SRT `pbkeylen`).
    pub key_length: Option<Spanned<u8>>,
    /// SRT receiver buffer latency (SRTO_LATENCY).
    #[serde(default = "default_srt_latency", with = "humantime_serde")]
    pub latency: Duration,
    pub stream_id: Option<String>,
    pub codec: CodecConfig,
    /// Opus bitrate in bits per second.
    #[serde(default = "default_opus_bitrate")]
    pub bitrate: Spanned<u32>,
    /// 1-based input channels to carry, in order. Default: all (Opus: the first two).
    pub channels: Option<Spanned<Vec<u16>>>,
    /// PCM sample size for `codec = "pcm"`: 16, 20 or 24.
    #[serde(default = "default_pcm_bits")]
    pub bits: Spanned<u8>,
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
                let n = match self.codec {
                    CodecConfig::Opus => input_channels.min(2),
                    CodecConfig::Pcm => input_channels.min(8),
                };
                (0..usize::from(n)).collect()
            }
        }
    }

    pub fn check(&self, stream: &ResolvedStream) -> Result<(), FieldError> {
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
        let channels_span = self.channels.as_ref().map_or(0..0, |c| c.span());
        match self.codec {
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
        if stream.sample_rate != 48_000 {
            return Err((
                self.input.span(),
                "input".into(),
                format!(
                    "the input runs at {} Hz; SRT outputs need 48000 Hz (sample-rate conversion is not built yet)",
                    stream.sample_rate
                ),
            ));
        }
        if let Some(p) = &self.passphrase {
            let len = p.get_ref().chars().count();
            if !(10..=79).contains(&len) {
                return Err((
                    p.span(),
                    "passphrase".into(),
                    format!("must be 10 to 79 characters (SRT), got {len}"),
                ));
            }
        }
        if let Some(k) = &self.key_length {
            if ![16, 24, 32].contains(k.get_ref()) {
                return Err((
                    k.span(),
                    "key_length".into(),
                    "must be 16, 24 or 32 (bytes)".into(),
                ));
            }
            if self.passphrase.is_none() {
                return Err((k.span(), "key_length".into(), "needs a passphrase".into()));
            }
        }
        Ok(())
    }
}
