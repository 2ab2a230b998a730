//! Request and response bodies of the API that are not status views.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::config::{InputConfig, OutputConfig, OutputKind, SrtModeConfig};
use crate::status::{InputStatus, OutputStatus};

/// An `[[inputs]]` entry as JSON: the same fields as the config file (see docs/config.md).
/// Absent fields take their defaults; `kind` defaults to `aes67`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Required when adding; when replacing, it must be the name in the path if given.
    pub name: Option<String>,
    pub kind: Option<String>,
    pub interface: Option<String>,
    /// A duration such as `10ms`.
    pub latency: Option<String>,
    pub sdp_file: Option<String>,
    pub sdp: Option<String>,
    pub sdp_stream: Option<u32>,
    /// `ip:port`.
    pub address: Option<String>,
    pub format: Option<String>,
    pub channels: Option<u16>,
    pub sample_rate: Option<u32>,
    pub payload_type: Option<u8>,
    /// `sap:NAME`, `ravenna:NAME`, `name:NAME`, or a sender IP for source-specific multicast.
    pub source: Option<String>,
    pub meters: Option<bool>,
}

/// An `[[outputs]]` entry as JSON: the same fields as the config file. `kind` defaults to
/// `srt`. The passphrase is shown to admins only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: Option<String>,
    pub kind: Option<String>,
    /// The input whose audio it carries: PUT another one to re-route.
    pub input: Option<String>,
    /// `caller` or `listener`.
    pub mode: Option<String>,
    /// `ip:port`.
    pub address: Option<String>,
    pub passphrase: Option<String>,
    pub key_length: Option<u8>,
    pub latency: Option<String>,
    pub stream_id: Option<String>,
    /// `opus` or `pcm`.
    pub codec: Option<String>,
    pub bitrate: Option<u32>,
    pub channels: Option<Vec<u16>>,
    pub bits: Option<u8>,
    /// AES67: `L16`, `L24` or `L32`.
    pub format: Option<String>,
    /// AES67: packet time in ms.
    pub ptime: Option<f64>,
    pub ttl: Option<u32>,
    /// AES67: `AF41`, `EF` or a number.
    pub dscp: Option<String>,
    pub payload_type: Option<u8>,
    pub interface: Option<String>,
    pub session_name: Option<String>,
    pub sdp_file: Option<String>,
    pub sap: Option<bool>,
    pub ravenna: Option<bool>,
}

impl InputSpec {
    /// The running input's settings.
    pub fn from_config(c: &InputConfig) -> Self {
        InputSpec {
            name: Some(c.name.get_ref().clone()),
            kind: Some("aes67".into()),
            interface: c.interface.as_ref().map(|i| i.get_ref().clone()),
            latency: Some(humantime::format_duration(c.latency).to_string()),
            sdp_file: c
                .sdp_file
                .as_ref()
                .map(|f| f.get_ref().display().to_string()),
            sdp: c.sdp.as_ref().map(|s| s.get_ref().clone()),
            sdp_stream: u32::try_from(c.sdp_stream).ok(),
            address: c.address.as_ref().map(|a| a.get_ref().to_string()),
            format: c.format.as_ref().map(|f| f.get_ref().clone()),
            channels: c.channels.as_ref().map(|v| *v.get_ref()),
            sample_rate: c.sample_rate.as_ref().map(|v| *v.get_ref()),
            payload_type: c.payload_type,
            source: c.source.as_ref().map(|s| s.get_ref().clone()),
            meters: Some(c.meters),
        }
    }
}

impl OutputSpec {
    /// The running output's settings; the passphrase only when `secrets`.
    pub fn from_config(c: &OutputConfig, secrets: bool) -> Self {
        let srt = c.kind == OutputKind::Srt;
        OutputSpec {
            name: Some(c.name.get_ref().clone()),
            kind: Some(if srt { "srt" } else { "aes67" }.into()),
            input: Some(c.input.get_ref().clone()),
            mode: c.mode.map(|m| {
                match m {
                    SrtModeConfig::Caller => "caller",
                    SrtModeConfig::Listener => "listener",
                }
                .into()
            }),
            address: Some(c.address.to_string()),
            passphrase: c
                .passphrase
                .as_ref()
                .filter(|_| secrets)
                .map(|p| p.get_ref().clone()),
            key_length: c.key_length.as_ref().map(|k| *k.get_ref()),
            latency: srt.then(|| humantime::format_duration(c.latency).to_string()),
            stream_id: c.stream_id.clone(),
            codec: c.codec.map(|codec| codec.name().into()),
            bitrate: srt.then(|| *c.bitrate.get_ref()),
            channels: c.channels.as_ref().map(|ch| ch.get_ref().clone()),
            bits: srt.then(|| *c.bits.get_ref()),
            format: c.format.as_ref().map(|f| f.get_ref().clone()),
            ptime: c.ptime.as_ref().map(|p| *p.get_ref()),
            ttl: c.ttl.as_ref().map(|t| *t.get_ref()),
            dscp: c.dscp.as_ref().map(|d| d.get_ref().clone()),
            payload_type: c.payload_type.as_ref().map(|p| *p.get_ref()),
            interface: c.interface.as_ref().map(|i| i.get_ref().clone()),
            session_name: c.session_name.clone(),
            sdp_file: c
                .sdp_file
                .as_ref()
                .map(|f| f.get_ref().display().to_string()),
            sap: c.sap,
            ravenna: c.ravenna,
        }
    }
}

/// An input: what it is doing and how it is configured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputDetail {
    pub name: String,
    /// None until the supervisor has published it (just after a change).
    pub status: Option<InputStatus>,
    pub config: InputSpec,
}

/// An output: what it is doing and how it is configured.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OutputDetail {
    pub name: String,
    pub status: Option<OutputStatus>,
    pub config: OutputSpec,
}

/// What a change did.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangeResult {
    /// The supervisor's summary of what it started, stopped or changed.
    pub changes: String,
    /// The file the change was saved to (none for an embedded configuration).
    pub path: Option<String>,
}

/// The configuration file's text.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ConfigText {
    pub path: Option<String>,
    pub text: String,
}

/// The routing matrix: which input feeds which output.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Routes {
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// `matrix[i][o]`: input `i` feeds output `o`.
    pub matrix: Vec<Vec<bool>>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Route {
    pub input: String,
    pub output: String,
    /// The output's state (`connected`, `listening`, …), when known.
    pub state: Option<String>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Only events with a larger id (default 0: all kept).
    pub after: Option<u64>,
    /// At most this many, the newest (default 100, at most 1000).
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// How many of the most recent lines (default 100, at most 1000).
    pub lines: Option<usize>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeleteQuery {
    /// Also remove the outputs fed by the input (otherwise such a delete is refused with 409).
    pub cascade: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConfigQuery {
    /// `toml` (default, text/plain) or `json` (`{path, text}`).
    pub format: Option<String>,
}
