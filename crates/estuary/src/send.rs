//! `estuary send`: an AES67 test-tone transmitter, and the one `estuary demo` uses.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use estuary_io::mcast::{self, Interface};
use estuary_io::tx::{ToneConfig, ToneSender};
use estuary_wire::payload::SampleFormat;
use estuary_wire::sdp;

use crate::{announce, shutdown};

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// Destination, e.g. 239.69.1.1:5004 (multicast) or 127.0.0.1:5004.
    #[arg(long)]
    to: SocketAddr,
    /// Sending interface (name or address).
    #[arg(long)]
    interface: Option<String>,
    /// L16, L24 or L32.
    #[arg(long, default_value = "L24")]
    format: String,
    #[arg(long, default_value_t = 2)]
    channels: u16,
    #[arg(long, default_value_t = 48_000)]
    sample_rate: u32,
    /// Frames per packet (48 = 1 ms at 48 kHz, 6 = 125 us).
    #[arg(long, default_value_t = 48)]
    frames_per_packet: u32,
    #[arg(long, default_value_t = 1_000.0)]
    frequency: f64,
    /// Tone level in dBFS.
    #[arg(long, default_value_t = -18.0, allow_hyphen_values = true)]
    level: f64,
    #[arg(long, default_value_t = 98)]
    payload_type: u8,
    /// Multicast TTL.
    #[arg(long, default_value_t = 32)]
    ttl: u32,
    /// Also write the stream's SDP to this file.
    #[arg(long)]
    sdp_out: Option<PathBuf>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
    /// Session name receivers show (`s=`) and select (`source = "sap:NAME"`).
    #[arg(long, default_value = "Estuary test tone")]
    name: String,
    /// Do not announce the stream over SAP.
    #[arg(long)]
    no_announce: bool,
    /// Where SAP announcements go (IP or IP:PORT); default: 239.255.255.255, or the stream's
    /// own loopback address for a loopback stream.
    #[arg(long)]
    sap_dest: Option<String>,
    /// Base SAP announcement interval.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    sap_interval: Duration,
}

/// What to send; the defaults are AES67's: L24, 48 kHz, stereo, 1 ms.
#[derive(Debug, Clone)]
pub struct ToneSpec {
    pub destination: SocketAddr,
    pub format: SampleFormat,
    pub channels: u16,
    pub sample_rate: u32,
    pub frames_per_packet: u32,
    pub frequency_hz: f64,
    pub level_dbfs: f64,
    pub payload_type: u8,
    pub ttl: u32,
    pub name: String,
}

impl Default for ToneSpec {
    fn default() -> Self {
        Self {
            destination: SocketAddr::from(([127, 0, 0, 1], 5004)),
            format: SampleFormat::L24,
            channels: 2,
            sample_rate: 48_000,
            frames_per_packet: 48,
            frequency_hz: 1_000.0,
            level_dbfs: -18.0,
            payload_type: 98,
            ttl: 32,
            name: "Estuary test tone".into(),
        }
    }
}

/// A running transmitter and the SDP that describes its stream.
#[derive(Debug)]
pub struct StartedSender {
    pub sdp: String,
    pub sender: ToneSender,
}

pub fn start(spec: &ToneSpec, iface: Option<Interface>) -> anyhow::Result<StartedSender> {
    let origin_address = match (&iface, spec.destination.ip()) {
        (Some(i), _) => i.ipv4.map(IpAddr::V4),
        (None, ip) if ip.is_loopback() => Some(ip),
        _ => None,
    }
    .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let config = ToneConfig {
        iface,
        ttl: spec.ttl,
        format: spec.format,
        channels: spec.channels,
        sample_rate: spec.sample_rate,
        frames_per_packet: spec.frames_per_packet,
        frequency_hz: spec.frequency_hz,
        level_dbfs: spec.level_dbfs,
        payload_type: spec.payload_type,
        ..ToneConfig::new(spec.destination)
    };
    let sdp = describe(
        spec,
        origin_address,
        u64::from(config.ssrc),
        config.initial_timestamp,
    );
    let sender = ToneSender::spawn(config)
        .with_context(|| format!("cannot send to {}", spec.destination))?;
    Ok(StartedSender { sdp, sender })
}

/// The SDP of a tone stream, as Estuary's transmitter announces it.
pub fn describe(
    spec: &ToneSpec,
    origin: IpAddr,
    session_id: u64,
    media_clock_offset: u32,
) -> String {
    sdp::write_aes67_sdp(&sdp::SenderSdp {
        session_id,
        session_version: 1,
        origin_address: origin,
        name: spec.name.clone(),
        info: Some(format!("{} Hz test tone", spec.frequency_hz)),
        destination: spec.destination.ip(),
        ttl: u8::try_from(spec.ttl).unwrap_or(u8::MAX),
        port: spec.destination.port(),
        payload_type: spec.payload_type,
        format: spec.format,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
        ptime_ms: f64::from(spec.frames_per_packet) * 1000.0 / f64::from(spec.sample_rate),
        framecount: Some(spec.frames_per_packet),
        clock_domain: None,
        ptp: None,
        local_mac: [0; 6],
        media_clock_offset,
        ..sdp::SenderSdp::default()
    })
}

pub fn run(args: SendArgs) -> anyhow::Result<()> {
    let format = SampleFormat::from_encoding_name(&args.format)
        .with_context(|| format!("--format {:?}: use L16, L24 or L32", args.format))?;
    let iface = match &args.interface {
        Some(spec) => Some(mcast::resolve_interface(spec)?),
        None => None,
    };
    let spec = ToneSpec {
        name: args.name.clone(),
        destination: args.to,
        format,
        channels: args.channels,
        sample_rate: args.sample_rate,
        frames_per_packet: args.frames_per_packet,
        frequency_hz: args.frequency,
        level_dbfs: args.level,
        payload_type: args.payload_type,
        ttl: args.ttl,
    };
    let stop = shutdown::install()?;
    let started = start(&spec, iface.clone())?;
    if let Some(path) = &args.sdp_out {
        std::fs::write(path, &started.sdp)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", started.sdp);
    let announcement = if args.no_announce {
        None
    } else {
        let destination = match &args.sap_dest {
            Some(text) => announce::sap_destination(text).context("--sap-dest")?,
            None => announce::default_sap_destination(args.to.ip()),
        };
        eprintln!("announcing {:?} on {destination} (SAP)", spec.name);
        Some(announce::Announcement::start(
            &started.sdp,
            destination,
            iface,
            args.ttl,
            None,
            args.sap_interval,
        )?)
    };
    let deadline = args
        .seconds
        .map(|s| std::time::Instant::now() + Duration::from_secs(s));
    while !stop.requested() && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(started);
    if let Some(announcement) = announcement {
        let (_, deletions, _) = announcement.stop();
        eprintln!("sent {deletions} deletion(s)");
    }
    Ok(())
}
