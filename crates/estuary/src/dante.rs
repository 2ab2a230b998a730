//! `[dante]`: Estuary as a Dante device (unofficial implementation), controllable from
//! netaudio or Dante Controller. This part makes the device visible and routable: its name,
//! channels and subscriptions, renames, persisted across restarts.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use estuary_engine::dante::{Device, DeviceSpec, DeviceState};
use estuary_io::dante::{DanteOptions, DanteServer};
use estuary_wire::dante::arc::{Format, Source};
use estuary_wire::dante::valid_name;

/// The `[dante]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DanteConfig {
    /// The device's factory name (controllers may rename it; the new name is kept in the
    /// state file).
    pub name: Spanned<String>,
    /// Interface (name or address) of the Dante network; its IPv4 address is published.
    pub interface: Option<Spanned<String>>,
    /// The address to publish and bind, when no interface is given.
    pub address: Option<Spanned<IpAddr>>,
    #[serde(default = "default_channels")]
    pub tx_channels: Spanned<u16>,
    #[serde(default = "default_channels")]
    pub rx_channels: Spanned<u16>,
    #[serde(default = "default_rate")]
    pub sample_rate: Spanned<u32>,
    /// ARC control port: 4440 on real devices; another one for a second device per host.
    #[serde(default = "default_arc_port")]
    pub arc_port: u16,
    /// Flow-control port published for receivers.
    #[serde(default = "default_flow_port")]
    pub flow_port: u16,
    /// Where names and subscriptions are kept; default
    /// `$STATE_DIRECTORY/dante-<name>.json` or `~/.local/state/estuary/dante-<name>.json`.
    pub state_file: Option<PathBuf>,
}

fn default_channels() -> Spanned<u16> {
    Spanned::new(0..0, 8)
}
fn default_rate() -> Spanned<u32> {
    Spanned::new(0..0, 48_000)
}
fn default_arc_port() -> u16 {
    4440
}
fn default_flow_port() -> u16 {
    4455
}

/// Most channels a device offers each way (large Dante devices have 512).
const MAX_CHANNELS: u16 = 512;

impl DanteConfig {
    /// Checks what serde cannot; returns the span, field and message of the first problem.
    pub fn validate(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        let field = |f: &str| format!("dante.{f}");
        if !valid_name(self.name.get_ref()) {
            return Err((
                self.name.span(),
                field("name"),
                "must be 1 to 31 characters of A-Z, a-z, 0-9 and '-', not starting or ending with '-'".into(),
            ));
        }
        for (name, v) in [
            ("tx_channels", &self.tx_channels),
            ("rx_channels", &self.rx_channels),
        ] {
            if !(1..=MAX_CHANNELS).contains(v.get_ref()) {
                return Err((
                    v.span(),
                    field(name),
                    format!("must be 1 to {MAX_CHANNELS}"),
                ));
            }
        }
        if !matches!(
            *self.sample_rate.get_ref(),
            44_100 | 48_000 | 88_200 | 96_000
        ) {
            return Err((
                self.sample_rate.span(),
                field("sample_rate"),
                "must be 44100, 48000, 88200 or 96000".into(),
            ));
        }
        match (&self.interface, &self.address) {
            (Some(i), _) => {
                let iface = estuary_io::mcast::resolve_interface(i.get_ref())
                    .map_err(|e| (i.span(), field("interface"), e.to_string()))?;
                if iface.ipv4.is_none() {
                    return Err((i.span(), field("interface"), "has no IPv4 address".into()));
                }
            }
            (None, Some(a)) if a.get_ref().is_unspecified() || a.get_ref().is_ipv6() => {
                return Err((
                    a.span(),
                    field("address"),
                    "must be this host's IPv4 address on the Dante network".into(),
                ));
            }
            (None, Some(_)) => {}
            (None, None) => {
                return Err((
                    self.name.span(),
                    field("interface"),
                    "give the interface (or address) of the Dante network".into(),
                ));
            }
        }
        Ok(())
    }

    fn address(&self) -> anyhow::Result<IpAddr> {
        if let Some(a) = &self.address {
            return Ok(*a.get_ref());
        }
        let spec = self
            .interface
            .as_ref()
            .map(|i| i.get_ref().as_str())
            .unwrap_or("");
        let iface = estuary_io::mcast::resolve_interface(spec)?;
        iface
            .ipv4
            .map(IpAddr::V4)
            .with_context(|| format!("interface {spec} has no IPv4 address"))
    }

    fn state_path(&self) -> PathBuf {
        if let Some(p) = &self.state_file {
            return p.clone();
        }
        let dir = std::env::var_os("STATE_DIRECTORY")
            .map(PathBuf::from)
            .or_else(|| {
                let state = std::env::var_os("XDG_STATE_HOME")
                    .map(PathBuf::from)
                    .or_else(|| {
                        std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state"))
                    })?;
                Some(state.join("estuary"))
            })
            .unwrap_or_else(std::env::temp_dir);
        dir.join(format!("dante-{}.json", self.name.get_ref()))
    }
}

/// The state file: what controllers changed.
#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    name: Option<String>,
    #[serde(default)]
    tx_names: Vec<(u16, String)>,
    #[serde(default)]
    rx_names: Vec<(u16, String)>,
    #[serde(default)]
    subscriptions: Vec<Subscription>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Subscription {
    rx: u16,
    channel: String,
    device: String,
}

impl From<&DeviceState> for StateFile {
    fn from(s: &DeviceState) -> StateFile {
        StateFile {
            name: s.name.clone(),
            tx_names: s.tx_names.clone(),
            rx_names: s.rx_names.clone(),
            subscriptions: s
                .subscriptions
                .iter()
                .map(|(rx, src)| Subscription {
                    rx: *rx,
                    channel: src.channel.clone(),
                    device: src.device.clone(),
                })
                .collect(),
        }
    }
}

impl From<StateFile> for DeviceState {
    fn from(f: StateFile) -> DeviceState {
        DeviceState {
            name: f.name,
            tx_names: f.tx_names,
            rx_names: f.rx_names,
            subscriptions: f
                .subscriptions
                .into_iter()
                .map(|s| {
                    (
                        s.rx,
                        Source {
                            channel: s.channel,
                            device: s.device,
                        },
                    )
                })
                .collect(),
        }
    }
}

fn load_state(path: &Path) -> DeviceState {
    let Ok(text) = std::fs::read_to_string(path) else {
        return DeviceState::default();
    };
    match serde_json::from_str::<StateFile>(&text) {
        Ok(f) => f.into(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "Dante state file unreadable; starting from the factory state");
            DeviceState::default()
        }
    }
}

/// Writes through a temporary file so a crash never leaves half a file.
fn save_state(path: &Path, state: &DeviceState) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(&StateFile::from(state))?)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Starts the device: ARC server and mDNS records.
pub fn start(config: &DanteConfig) -> anyhow::Result<DanteServer> {
    let path = config.state_path();
    let state = load_state(&path);
    let spec = DeviceSpec {
        factory_name: config.name.get_ref().clone(),
        tx_channels: *config.tx_channels.get_ref(),
        rx_channels: *config.rx_channels.get_ref(),
        format: Format {
            sample_rate: *config.sample_rate.get_ref(),
            bits: 24,
        },
        max_channels_per_flow: 8,
        board: "Estuary".into(),
    };
    let options = DanteOptions {
        address: config.address()?,
        arc_port: config.arc_port,
        flow_port: config.flow_port,
        interface: config
            .interface
            .as_ref()
            .map(|i| estuary_io::mcast::resolve_interface(i.get_ref()).map(|i| i.name))
            .transpose()?,
        latency: Duration::from_millis(1),
    };
    let address = options.address;
    let server = DanteServer::start(
        Device::new(spec, &state),
        options,
        Box::new(move |state| {
            if let Err(e) = save_state(&path, state) {
                tracing::warn!(path = %path.display(), error = %e, "Dante state not saved");
            }
        }),
    )?;
    tracing::info!(
        name = server.device().name(),
        %address,
        arc = %server.local_addr(),
        "Dante device published (unofficial implementation)"
    );
    Ok(server)
}
