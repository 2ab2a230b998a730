//! `[dante]`: Estuary as a Dante device (unofficial implementation), controllable from
//! netaudio or Dante Controller: its name, channels and subscriptions (persisted across
//! restarts), and its audio.
//!
//! Audio goes through a process-wide [`hub`]: the receiver thread ([`rx`]) plays the RX
//! channels out by media time into whichever `kind = "dante"` inputs are attached; the
//! transmitter thread ([`tx`]) serves flow requests and sends the TX channels, taken from
//! the input named by `tx_input`. Routes attach and detach as they start and stop.

mod conmon;
mod ptp;
mod rx;
pub mod status;
mod tx;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use toml::Spanned;

use estuary_engine::dante::{Device, DeviceSpec, DeviceState};
use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;
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
    /// CMC port (controller registration): 8800 on real devices.
    #[serde(default = "default_cmc_port")]
    pub cmc_port: u16,
    /// Conmon settings-request port: 8700 on real devices (controllers always ask there,
    /// so a second device on one address answers only on another port).
    #[serde(default = "default_conmon_port")]
    pub conmon_port: u16,
    /// Where names and subscriptions are kept; default
    /// `$STATE_DIRECTORY/dante-<name>.json` or `~/.local/state/estuary/dante-<name>.json`.
    pub state_file: Option<PathBuf>,
    /// The input whose channels 1, 2, ... the TX channels 1, 2, ... carry.
    pub tx_input: Option<Spanned<String>>,
    /// Receive playout delay behind the media clock (at least the transmitters'
    /// `latency_ns`, which is used when larger).
    #[serde(default = "default_dante_latency", with = "humantime_serde")]
    pub latency: Duration,
    /// Multicast bundles transmitted (`[[dante.multicast]]` or an inline array).
    #[serde(default)]
    pub multicast: Vec<MulticastBundleConfig>,
    /// Bundles received from another group than the one their transmitter publishes (a
    /// relay or a router re-mapping groups in between).
    #[serde(default)]
    pub rx_group_remap: Vec<GroupRemap>,
    /// The media clock: `local` (the host's CLOCK_TAI), `ptpv1` (follow the Dante
    /// network's PTPv1 leader once locked) or `ptpv2` (the `[clock]` section's PTP, for
    /// devices in AES67 mode).
    pub clock: Option<Spanned<DanteClock>>,
}

/// Where the device's media clock comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DanteClock {
    #[default]
    Local,
    Ptpv1,
    Ptpv2,
}

impl DanteClock {
    pub fn name(self) -> &'static str {
        match self {
            DanteClock::Local => "local",
            DanteClock::Ptpv1 => "ptpv1",
            DanteClock::Ptpv2 => "ptpv2",
        }
    }
}

impl DanteConfig {
    /// The configured media clock (`local` when not set).
    pub fn media_clock(&self) -> DanteClock {
        self.clock
            .as_ref()
            .map_or_else(DanteClock::default, |c| *c.get_ref())
    }
}

/// Receive what is published as sent to `from` by joining `to` instead.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRemap {
    pub from: Spanned<std::net::SocketAddrV4>,
    pub to: Spanned<std::net::SocketAddrV4>,
}

/// A multicast TX bundle: TX channels sent together to a group, for any number of
/// receivers, without flow requests or keepalives.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MulticastBundleConfig {
    /// TX channels, in the order of the bundle's positions.
    pub channels: Spanned<Vec<u16>>,
    /// The group (Dante uses 239.255.0.0/16); default derived from the device's factory
    /// name and the bundle's number, so it stays the same across restarts.
    pub group: Option<Spanned<std::net::Ipv4Addr>>,
    #[serde(default = "default_bundle_port")]
    pub port: u16,
}

fn default_bundle_port() -> u16 {
    4321
}

/// Frames per packet of multicast bundles (what Dante devices send).
const BUNDLE_FPP: u16 = 32;
/// Most channels in a bundle (32 frames of 8 × 24-bit samples = 777 bytes).
const MAX_BUNDLE_CHANNELS: usize = 8;

fn default_dante_latency() -> Duration {
    Duration::from_millis(10)
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
fn default_cmc_port() -> u16 {
    8800
}
fn default_conmon_port() -> u16 {
    8700
}

/// How long other devices' bundles are listened for before a derived group is taken (the
/// reference devices probe 3 × 400 ms).
const BUNDLE_PROBE: Duration = Duration::from_millis(1_200);

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
        if !(Duration::from_millis(1)..=Duration::from_millis(500)).contains(&self.latency) {
            return Err((
                self.name.span(),
                field("latency"),
                "must be between 1ms and 500ms".into(),
            ));
        }
        self.validate_multicast()?;
        for (i, remap) in self.rx_group_remap.iter().enumerate() {
            for (f, addr) in [("from", &remap.from), ("to", &remap.to)] {
                if !addr.get_ref().ip().is_multicast() {
                    return Err((
                        addr.span(),
                        format!("dante.rx_group_remap[{i}].{f}"),
                        "must be an IPv4 multicast group and port (239.255.1.2:4321)".into(),
                    ));
                }
            }
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

    fn validate_multicast(&self) -> Result<(), (std::ops::Range<usize>, String, String)> {
        let tx = *self.tx_channels.get_ref();
        let mut groups = Vec::new();
        for (i, bundle) in self.multicast.iter().enumerate() {
            let field = |f: &str| format!("dante.multicast[{i}].{f}");
            let channels = bundle.channels.get_ref();
            if channels.is_empty() || channels.len() > MAX_BUNDLE_CHANNELS {
                return Err((
                    bundle.channels.span(),
                    field("channels"),
                    format!("must list 1 to {MAX_BUNDLE_CHANNELS} TX channels"),
                ));
            }
            if let Some(c) = channels.iter().find(|&&c| c == 0 || c > tx) {
                return Err((
                    bundle.channels.span(),
                    field("channels"),
                    format!("TX channel {c} does not exist (the device has 1 to {tx})"),
                ));
            }
            if let Some(c) = channels
                .iter()
                .enumerate()
                .find_map(|(k, c)| channels[..k].contains(c).then_some(c))
            {
                return Err((
                    bundle.channels.span(),
                    field("channels"),
                    format!("TX channel {c} is listed twice"),
                ));
            }
            if let Some(g) = &bundle.group
                && !g.get_ref().is_multicast()
            {
                return Err((
                    g.span(),
                    field("group"),
                    "must be an IPv4 multicast address (Dante uses 239.255.0.0/16)".into(),
                ));
            }
            if bundle.port == 0 {
                return Err((self.name.span(), field("port"), "must not be 0".into()));
            }
            let group = self.bundle_group(i);
            if groups.contains(&group) {
                let span = bundle
                    .group
                    .as_ref()
                    .map_or(bundle.channels.span(), Spanned::span);
                return Err((
                    span,
                    field("group"),
                    format!("{group} is used by another bundle"),
                ));
            }
            groups.push(group);
        }
        Ok(())
    }

    /// Bundle `index`'s group and port: the configured group, or one in 239.255.0.0/16
    /// derived from the factory name and the bundle number (FNV-1a), so devices differ
    /// and a restart keeps it.
    fn bundle_group(&self, index: usize) -> std::net::SocketAddrV4 {
        self.bundle_group_at(index, 0)
    }

    /// The derived group's `attempt`th candidate (0 is the usual one; the others are
    /// tried when another device's bundle holds it).
    fn bundle_group_at(&self, index: usize, attempt: u32) -> std::net::SocketAddrV4 {
        let bundle = &self.multicast[index];
        let ip = bundle.group.as_ref().map_or_else(
            || {
                let mut h: u32 = 0x811c_9dc5;
                let salt = (attempt > 0).then(|| attempt.to_be_bytes());
                for b in self
                    .name
                    .get_ref()
                    .bytes()
                    .chain((index as u32 + 1).to_be_bytes())
                    .chain(salt.into_iter().flatten())
                {
                    h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
                }
                // Not .0.0 nor .255.255 (reserved-looking); fold the hash into 1..=65534.
                let low = (h % 65_534 + 1) as u16;
                let [x, y] = low.to_be_bytes();
                std::net::Ipv4Addr::new(239, 255, x, y)
            },
            |g| *g.get_ref(),
        );
        std::net::SocketAddrV4::new(ip, bundle.port)
    }

    /// Whether some bundle's group is derived (and so claimed at start).
    fn derives_groups(&self) -> bool {
        self.multicast.iter().any(|b| b.group.is_none())
    }

    /// The bundles as published and sent, numbered from 1. A derived group another device's
    /// bundle holds (`taken`) moves to the next candidate; a configured one stays (and is
    /// warned about).
    fn tx_bundles(&self, taken: &[std::net::Ipv4Addr]) -> Vec<estuary_io::dante::TxBundle> {
        let mut chosen: Vec<std::net::SocketAddrV4> = Vec::new();
        (0..self.multicast.len())
            .map(|i| {
                let free = |g: &std::net::SocketAddrV4| {
                    !taken.contains(g.ip()) && !chosen.iter().any(|c| c.ip() == g.ip())
                };
                let first = self.bundle_group(i);
                let group = if self.multicast[i].group.is_some() {
                    if taken.contains(first.ip()) {
                        tracing::warn!(bundle = i + 1, group = %first, "another Dante device's bundle uses this configured group");
                    }
                    first
                } else {
                    let group = (0..64)
                        .map(|attempt| self.bundle_group_at(i, attempt))
                        .find(|g| free(g))
                        .unwrap_or(first);
                    if group != first {
                        tracing::info!(bundle = i + 1, taken = %first, group = %group, "Dante bundle group held by another device: claimed another");
                    }
                    group
                };
                chosen.push(group);
                estuary_io::dante::TxBundle {
                    id: i as u16 + 1,
                    channels: self.multicast[i].channels.get_ref().clone(),
                    group,
                    fpp: BUNDLE_FPP,
                }
            })
            .collect()
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

/// Starts the device: ARC server, mDNS records, the receiver and the transmitter.
pub fn start(config: &DanteConfig) -> anyhow::Result<DanteDevice> {
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
    let interface = config
        .interface
        .as_ref()
        .map(|i| estuary_io::mcast::resolve_interface(i.get_ref()).map(|i| i.name))
        .transpose()?;
    // Claim derived bundle groups: listen for other devices' bundles first.
    let taken = if config.derives_groups() {
        estuary_io::dante::bundle_groups_in_use(
            interface.as_deref(),
            config.name.get_ref(),
            BUNDLE_PROBE,
        )?
    } else {
        Vec::new()
    };
    let bundles = config.tx_bundles(&taken);
    let options = DanteOptions {
        address: config.address()?,
        arc_port: config.arc_port,
        flow_port: config.flow_port,
        cmc_port: config.cmc_port,
        interface,
        latency: config.latency,
        bundles: bundles.clone(),
    };
    let address = match options.address {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => anyhow::bail!("dante.address: must be an IPv4 address"),
    };
    let server = DanteServer::start(
        Device::new(spec.clone(), &state),
        options,
        Box::new(move |state| {
            if let Err(e) = save_state(&path, state) {
                tracing::warn!(path = %path.display(), error = %e, "Dante state not saved");
            }
        }),
    )?;
    let (sinks, sink_commands) = mpsc::channel();
    let hub = Arc::new(Hub {
        rx: sinks,
        tx: Mutex::default(),
        tx_thread: Mutex::default(),
        device: server.shared_device(),
        info: DeviceInfo {
            address,
            sample_rate: spec.format.sample_rate,
            ports: status::DantePorts {
                arc: server.local_addr().port(),
                flow_control: config.flow_port,
                cmc: config.cmc_port,
                conmon: config.conmon_port,
            },
            bundles: bundles
                .iter()
                .cloned()
                .map(|b| status::DanteBundle {
                    id: b.id,
                    group: b.group.to_string(),
                    channels: b.channels,
                })
                .collect(),
        },
        views: Views::default(),
    });
    let media_clock = config.media_clock();
    *lock(&hub.views.clock) = status::DanteClockStatus {
        source: media_clock.name().into(),
        ..Default::default()
    };
    // Bound first, so a taken PTP port fails the start rather than a thread.
    let follower = match media_clock {
        DanteClock::Ptpv1 => Some(ptp::Follower::new(
            address,
            estuary_io::dante::device_id(address, config.arc_port),
            Arc::clone(&hub),
        )?),
        DanteClock::Local | DanteClock::Ptpv2 => None,
    };
    FOLLOW_PTPV2.store(
        media_clock == DanteClock::Ptpv2,
        std::sync::atomic::Ordering::Relaxed,
    );
    let stop = crate::shutdown::Stop::default();
    let mut threads = Vec::new();
    let remap = config
        .rx_group_remap
        .iter()
        .map(|r| (*r.from.get_ref(), *r.to.get_ref()))
        .collect();
    let receiver = rx::Receiver::new(
        &server,
        address,
        &spec,
        config.latency,
        remap,
        Arc::clone(&hub),
        sink_commands,
    )?;
    let halt = stop.clone();
    threads.push(
        thread::Builder::new()
            .name("dante-rx".into())
            .spawn(move || receiver.run(&halt))?,
    );
    let transmitter =
        tx::Transmitter::new(address, config.flow_port, &spec, &bundles, Arc::clone(&hub))?;
    let conmon = conmon::Conmon::new(
        server.shared_device(),
        address,
        (config.arc_port, config.cmc_port, config.conmon_port),
    )?;
    let halt = stop.clone();
    threads.push(
        thread::Builder::new()
            .name("dante-conmon".into())
            .spawn(move || conmon.run(&halt))?,
    );
    if let Some(follower) = follower {
        let halt = stop.clone();
        threads.push(
            thread::Builder::new()
                .name("dante-ptp".into())
                .spawn(move || follower.run(&halt))?,
        );
    }
    let halt = stop.clone();
    let tx_thread = thread::Builder::new()
        .name("dante-tx".into())
        .spawn(move || transmitter.run(&halt))?;
    *lock(&hub.tx_thread) = Some(tx_thread.thread().clone());
    threads.push(tx_thread);
    *lock(&HUB) = Some(Arc::clone(&hub));
    tracing::info!(
        name = server.device().name(),
        %address,
        arc = %server.local_addr(),
        flow_control = config.flow_port,
        cmc = config.cmc_port,
        conmon = config.conmon_port,
        "Dante device published (unofficial implementation)"
    );
    Ok(DanteDevice {
        _server: server,
        stop,
        threads,
    })
}

/// A running Dante device; dropping it withdraws it from the network.
#[derive(Debug)]
pub struct DanteDevice {
    _server: DanteServer,
    stop: crate::shutdown::Stop,
    threads: Vec<JoinHandle<()>>,
}

impl Drop for DanteDevice {
    fn drop(&mut self) {
        *lock(&HUB) = None;
        self.stop.request();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A block of received audio: every RX channel, interleaved, from media time `position`.
pub struct RxBlock<'a> {
    pub samples: &'a [i32],
    pub channels: usize,
    pub position: u64,
    /// Runs of frames a flow missed (played as silence on its channels), per flow.
    pub gaps: &'a [estuary_engine::dante::rx::RxGap],
    pub now: MonoTime,
}

/// Where received Dante audio goes: a `kind = "dante"` input's route.
pub trait RxSink: Send {
    fn name(&self) -> &str;
    fn feed(&mut self, block: &RxBlock<'_>);
    /// The receiver's counters and its latest packet's (arrival, media time).
    fn publish(&mut self, stats: &StreamStats, last_packet: Option<(MonoTime, u64)>);
    /// It takes RX channels 1..=`channels`: only flows feeding those count in its stats.
    fn channels(&self) -> usize;
}

/// Changes to the receiver's sinks, which the receiver thread owns (so playing out locks
/// nothing).
pub(crate) enum RxCommand {
    Attach(Box<dyn RxSink>),
    Detach(String),
}

/// The audio the TX channels carry: an input's route ring.
pub struct TxSource {
    pub name: String,
    pub samples: rtrb::Consumer<i32>,
    pub channels: usize,
}

/// What the device's audio threads share with the routes and the status.
struct Hub {
    rx: mpsc::Sender<RxCommand>,
    tx: Mutex<Option<TxSource>>,
    tx_thread: Mutex<Option<thread::Thread>>,
    device: Arc<Mutex<Device>>,
    info: DeviceInfo,
    views: Views,
}

/// What does not change while the device runs.
struct DeviceInfo {
    address: std::net::Ipv4Addr,
    sample_rate: u32,
    ports: status::DantePorts,
    bundles: Vec<status::DanteBundle>,
}

/// What the threads publish for the status (each with `try_lock`, a few times a second).
#[derive(Default)]
struct Views {
    rx: Mutex<status::RxView>,
    tx: Mutex<status::TxView>,
    clock: Mutex<status::DanteClockStatus>,
}

/// The running device's hub, if any.
static HUB: Mutex<Option<Arc<Hub>>> = Mutex::new(None);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn hub() -> anyhow::Result<Arc<Hub>> {
    lock(&HUB)
        .clone()
        .context("no Dante device is running (see the [dante] section and the log)")
}

/// Sends the RX channels to `sink` until [`detach_rx`].
pub fn attach_rx(sink: Box<dyn RxSink>) -> anyhow::Result<()> {
    hub()?
        .rx
        .send(RxCommand::Attach(sink))
        .map_err(|_| anyhow::anyhow!("the Dante receiver has stopped"))
}

pub fn detach_rx(name: &str) {
    if let Ok(hub) = hub() {
        let _ = hub.rx.send(RxCommand::Detach(name.to_owned()));
    }
}

/// Makes `source` the TX channels' audio; returns the thread to wake when audio is pushed.
pub fn attach_tx(source: TxSource) -> anyhow::Result<thread::Thread> {
    let hub = hub()?;
    *lock(&hub.tx) = Some(source);
    lock(&hub.tx_thread)
        .clone()
        .context("the Dante transmitter has stopped")
}

pub fn detach_tx(name: &str) {
    if let Ok(hub) = hub() {
        let mut tx = lock(&hub.tx);
        if tx.as_ref().is_some_and(|t| t.name == name) {
            *tx = None;
        }
    }
}

/// `clock = "ptpv2"`: the media clock follows the daemon's PTP clock (`[clock]`, whichever
/// is current after a reload) while it is synchronized.
static FOLLOW_PTPV2: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The PTPv2 clock, when the device follows it.
fn ptpv2_clock() -> Option<Arc<crate::clock::MediaClock>> {
    FOLLOW_PTPV2
        .load(std::sync::atomic::Ordering::Relaxed)
        .then(crate::clock::current)
        .flatten()
}

/// The media clock in samples at `rate`: PTP time while the followed PTPv2 clock is
/// synchronized or the PTPv1 leader's time while locked, else CLOCK_TAI; × rate.
fn media_now(rate: u32) -> u64 {
    let ptpv2 = ptpv2_clock().and_then(|c| c.ptp_time_at(estuary_io::clock::monotonic_now()));
    let ns = match ptpv2 {
        Some(ptp) => u128::from(ptp),
        None => {
            let tai = estuary_io::clock::tai_now_ns();
            lock(&ptp::OVERLAY)
                .map_or(i128::from(tai), |o| o.leader_ns(tai))
                .max(0) as u128
        }
    };
    u64::try_from(ns * u128::from(rate) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// The media clock's rate against the host's, parts per billion (what heartbeats carry):
/// the PTPv1 servo's drift or the PTPv2 clock's frequency correction; 0 on the host clock.
pub(crate) fn media_clock_ppb() -> i32 {
    if let Some(clock) = ptpv2_clock() {
        let status = clock.status();
        return if status.locked {
            (status.frequency_ppm * 1_000.0).round() as i32
        } else {
            0
        };
    }
    lock(&ptp::OVERLAY).map_or(0, |o| {
        o.drift_ppb().clamp(i32::MIN.into(), i32::MAX.into()) as i32
    })
}

impl crate::config::InputConfig {
    /// The stream of a `kind = "dante"` input: the device's RX channels 1..=`channels`.
    pub(crate) fn dante_stream(
        &self,
    ) -> Result<crate::config::ResolvedStream, crate::config::FieldError> {
        self.refuse_received_fields("a Dante input takes the device's RX channels")?;
        self.signal()?;
        let mut stream = self.format_fields(std::net::SocketAddr::from(([0, 0, 0, 0], 0)))?;
        stream.format = estuary_wire::payload::SampleFormat::L32;
        stream.label = Some(format!("Dante RX 1-{}", stream.channels));
        Ok(stream)
    }
}

/// Checks what ties inputs to `[dante]`: Dante inputs need the device, at its rate and
/// within its RX channels; `tx_input` names an input.
pub fn validate_routes(config: &crate::config::Config) -> Result<(), crate::config::FieldError> {
    use crate::config::InputKind;
    for (i, input) in config.inputs.iter().enumerate() {
        if input.kind != InputKind::Dante {
            continue;
        }
        let field = |f: &str| format!("inputs[{i}].{f}");
        let Some(dante) = &config.dante else {
            return Err((
                input.name.span(),
                field("kind"),
                "a Dante input needs the [dante] section (the device it receives on)".into(),
            ));
        };
        let rate = input.sample_rate.as_ref().map_or(48_000, |r| *r.get_ref());
        if rate != *dante.sample_rate.get_ref() {
            let span = input
                .sample_rate
                .as_ref()
                .map_or(input.name.span(), Spanned::span);
            return Err((
                span,
                field("sample_rate"),
                format!(
                    "must be the Dante device's rate, {}",
                    dante.sample_rate.get_ref()
                ),
            ));
        }
        let channels = input.channels.as_ref().map_or(2, |c| *c.get_ref());
        if channels > *dante.rx_channels.get_ref() {
            let span = input
                .channels
                .as_ref()
                .map_or(input.name.span(), Spanned::span);
            return Err((
                span,
                field("channels"),
                format!(
                    "the Dante device has {} RX channels",
                    dante.rx_channels.get_ref()
                ),
            ));
        }
    }
    if let Some(clock) = config.dante.as_ref().and_then(|d| d.clock.as_ref())
        && *clock.get_ref() == DanteClock::Ptpv2
        && config.clock.mode == crate::clock::ClockMode::System
    {
        return Err((
            clock.span(),
            "dante.clock".into(),
            "\"ptpv2\" follows the [clock] section's PTP: set [clock] mode to \"follower\", \
             \"grandmaster\" or \"external\""
                .into(),
        ));
    }
    if let Some(tx) = config.dante.as_ref().and_then(|d| d.tx_input.as_ref())
        && !config
            .inputs
            .iter()
            .any(|i| i.name.get_ref() == tx.get_ref())
    {
        return Err((
            tx.span(),
            "dante.tx_input".into(),
            format!("no input named {:?}", tx.get_ref()),
        ));
    }
    Ok(())
}
