//! Announcing streams: `estuary announce`, and the SAP announcements of Estuary's own
//! transmitters (`estuary send`, the demo).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;

use estuary_io::mcast::{self, Interface};
use estuary_io::sap::{SapAnnouncer, SapAnnouncerConfig, SapSession};
use estuary_wire::payload::SampleFormat;
use estuary_wire::sap::SAP_PORT;
use estuary_wire::sdp::{self, ChannelOrder, PtpRef};

use crate::shutdown;

/// The SAP group AES67, RAVENNA and Dante devices announce on.
pub const AES67_SAP_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 255, 255);

#[derive(Debug, clap::Args)]
pub struct AnnounceArgs {
    /// Announce this SDP file as it is, instead of building one from the options below.
    #[arg(long, conflicts_with_all = ["name", "addr"])]
    pub sdp: Option<PathBuf>,
    /// Session name (`s=`), what receivers show and select.
    #[arg(long, required_unless_present = "sdp")]
    pub name: Option<String>,
    /// Session information (`i=`).
    #[arg(long)]
    pub info: Option<String>,
    /// The stream's destination address (multicast group or unicast).
    #[arg(long, required_unless_present = "sdp")]
    pub addr: Option<IpAddr>,
    #[arg(long, default_value_t = 5004)]
    pub port: u16,
    /// Sample rate in Hz.
    #[arg(long, default_value_t = 48_000)]
    pub rate: u32,
    #[arg(long, default_value_t = 2)]
    pub channels: u16,
    /// L16, L24, L32 or AM824.
    #[arg(long, default_value = "L24")]
    pub encoding: String,
    /// Packet time in milliseconds (1, 0.125, 0.25, 0.333, 4).
    #[arg(long, default_value_t = 1.0)]
    pub ptime: f64,
    #[arg(long, default_value_t = 98)]
    pub payload_type: u8,
    /// ST 2110-30 channel order, e.g. `ST`, `51,ST` or `SMPTE2110.(M,M)`.
    #[arg(long)]
    pub channel_config: Option<String>,
    /// PTP grandmaster identity (EUI-64, e.g. 00-1D-C1-FF-FE-12-34-56).
    #[arg(long)]
    pub ptp_gm: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub ptp_domain: u8,
    /// The sender's address (`o=` and the SAP origin); default: the interface's address.
    #[arg(long)]
    pub origin: Option<IpAddr>,
    /// Base announcement interval (RFC 2974 spreads it ±1/3 and slows it to stay within
    /// 4 kbit/s of announcements).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Where announcements go: a SAP group or unicast address, port 9875 unless given.
    #[arg(long, default_value = "239.255.255.255")]
    pub sap_dest: String,
    /// Interface to announce on (name or address).
    #[arg(long)]
    pub interface: Option<String>,
    /// Multicast TTL of the announcements.
    #[arg(long, default_value_t = 32)]
    pub ttl: u32,
    /// Stop after this many seconds (default: until Ctrl-C), sending a deletion.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,
}

/// `IP` or `IP:PORT` → where SAP packets go.
pub fn sap_destination(text: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let ip: IpAddr = text
        .parse()
        .with_context(|| format!("{text:?} is not an address (IP or IP:PORT)"))?;
    Ok(SocketAddr::new(ip, SAP_PORT))
}

/// Where Estuary's own transmitters announce a stream sent to `stream_destination`: loopback
/// streams on loopback (no multicast route needed), others on the AES67 SAP group.
pub fn default_sap_destination(stream_destination: IpAddr) -> SocketAddr {
    let ip = if stream_destination.is_loopback() {
        stream_destination
    } else {
        IpAddr::V4(AES67_SAP_GROUP)
    };
    SocketAddr::new(ip, SAP_PORT)
}

/// Announces one SDP over SAP until dropped, then sends its deletion.
#[derive(Debug)]
pub struct Announcement {
    announcer: SapAnnouncer,
}

impl Announcement {
    pub fn start(
        sdp: &str,
        destination: SocketAddr,
        iface: Option<Interface>,
        ttl: u32,
        origin: Option<IpAddr>,
        interval: Duration,
    ) -> anyhow::Result<Self> {
        let announcer = SapAnnouncer::spawn(SapAnnouncerConfig {
            base_interval: interval,
            ..SapAnnouncerConfig::default()
        })
        .context("cannot start the SAP announcer")?;
        announcer
            .set(
                "stream",
                SapSession {
                    sdp: sdp.to_owned(),
                    dest: destination,
                    iface,
                    ttl,
                    origin,
                },
            )
            .context("SAP announcer")?;
        Ok(Self { announcer })
    }

    /// Announcements and deletions sent so far, and failed sends.
    pub fn counts(&self) -> (u64, u64, u64) {
        let s = self.announcer.stats();
        (s.announcements, s.deletions, s.send_errors)
    }

    /// Sends the deletion and stops; returns the final counts.
    pub fn stop(mut self) -> (u64, u64, u64) {
        self.announcer.stop();
        self.counts()
    }
}

pub fn run(args: AnnounceArgs) -> anyhow::Result<()> {
    let iface = match &args.interface {
        Some(spec) => Some(mcast::resolve_interface(spec)?),
        None => None,
    };
    let text = match &args.sdp {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            sdp::parse(&text).with_context(|| format!("{}: invalid SDP", path.display()))?;
            text
        }
        None => build_sdp(&args, iface.as_ref())?,
    };
    let destination = sap_destination(&args.sap_dest).context("--sap-dest")?;
    let stop = shutdown::install()?;
    let announcement = Announcement::start(
        &text,
        destination,
        iface,
        args.ttl,
        args.origin,
        args.interval,
    )?;
    eprintln!(
        "announcing on {destination} (SAP) every ~{:?}; Ctrl-C sends a deletion and stops",
        args.interval
    );
    print!("{text}");
    let deadline = args.duration.map(|d| std::time::Instant::now() + d);
    while !stop.requested() && deadline.is_none_or(|d| std::time::Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (sent, deleted, errors) = announcement.stop();
    eprintln!("sent {sent} announcement(s), {deleted} deletion(s), {errors} failed send(s)");
    if errors > 0 && sent == 0 {
        anyhow::bail!("no announcement could be sent to {destination}");
    }
    Ok(())
}

fn build_sdp(args: &AnnounceArgs, iface: Option<&Interface>) -> anyhow::Result<String> {
    let name = args
        .name
        .clone()
        .context("--name is required without --sdp")?;
    let destination = args.addr.context("--addr is required without --sdp")?;
    let format = SampleFormat::from_encoding_name(&args.encoding)
        .with_context(|| format!("--encoding {:?}: use L16, L24, L32 or AM824", args.encoding))?;
    if !(1..=64).contains(&args.channels) {
        anyhow::bail!("--channels must be 1 to 64");
    }
    let frames = args.ptime * f64::from(args.rate) / 1000.0;
    if !(frames >= 1.0 && frames.fract().abs() < 0.05) {
        anyhow::bail!(
            "--ptime {} ms is not a whole number of samples at {} Hz",
            args.ptime,
            args.rate
        );
    }
    let channel_order = args
        .channel_config
        .as_deref()
        .map(|c| parse_channel_config(c, args.channels))
        .transpose()?;
    let ptp = args
        .ptp_gm
        .as_deref()
        .map(|gm| {
            parse_eui64(gm).map(|gmid| PtpRef {
                gmid,
                domain: args.ptp_domain,
            })
        })
        .transpose()?;
    let origin = args
        .origin
        .or_else(|| iface.and_then(|i| i.ipv4.map(IpAddr::V4)))
        .unwrap_or(if destination.is_loopback() {
            destination
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        });
    let session_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_secs());
    Ok(sdp::write_aes67_sdp(&sdp::SenderSdp {
        session_id,
        session_version: 1,
        origin_address: origin,
        name,
        info: args.info.clone(),
        destination,
        ttl: u8::try_from(args.ttl).unwrap_or(u8::MAX),
        port: args.port,
        payload_type: args.payload_type,
        format,
        sample_rate: args.rate,
        channels: args.channels,
        ptime_ms: args.ptime,
        framecount: Some(frames.round() as u32),
        clock_domain: ptp.map(|p| p.domain),
        ptp,
        media_clock_offset: 0,
        channel_order,
        ..sdp::SenderSdp::default()
    }))
}

/// `ST`, `51,ST` or `SMPTE2110.(51,ST)` → a channel order that must cover `channels`.
fn parse_channel_config(text: &str, channels: u16) -> anyhow::Result<ChannelOrder> {
    let inner = text.trim();
    let full = if inner.starts_with("SMPTE2110.") {
        inner.to_owned()
    } else {
        format!("SMPTE2110.({inner})")
    };
    let order = ChannelOrder::parse(&full).map_err(|_| {
        anyhow::anyhow!(
            "--channel-config {text:?} is not an ST 2110-30 channel order \
             (symbols M, DM, ST, LtRt, 51, 71, 222, SGRP, U01..U64)"
        )
    })?;
    let total = order.channel_count();
    if total != u32::from(channels) {
        anyhow::bail!("--channel-config {text:?} describes {total} channels, not {channels}");
    }
    Ok(order)
}

/// `00-1D-C1-FF-FE-12-34-56` (or with colons) → 8 bytes.
fn parse_eui64(text: &str) -> anyhow::Result<[u8; 8]> {
    let parts: Vec<&str> = text.split(['-', ':']).collect();
    let mut id = [0u8; 8];
    if parts.len() != 8 {
        anyhow::bail!("--ptp-gm {text:?}: expected 8 hex bytes like 00-1D-C1-FF-FE-12-34-56");
    }
    for (byte, part) in id.iter_mut().zip(&parts) {
        *byte = u8::from_str_radix(part, 16)
            .with_context(|| format!("--ptp-gm {text:?}: {part:?} is not a hex byte"))?;
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sap_destinations_default_the_port() {
        assert_eq!(
            sap_destination("239.255.255.255").expect("ip"),
            "239.255.255.255:9875".parse().expect("addr")
        );
        assert_eq!(
            sap_destination("127.0.0.1:19875").expect("ip:port"),
            "127.0.0.1:19875".parse().expect("addr")
        );
        assert!(sap_destination("studio").is_err());
        assert_eq!(
            default_sap_destination("127.0.0.1".parse().expect("ip")),
            "127.0.0.1:9875".parse().expect("addr")
        );
        assert_eq!(
            default_sap_destination("239.69.1.1".parse().expect("ip")),
            "239.255.255.255:9875".parse().expect("addr")
        );
    }

    #[test]
    fn grandmaster_ids_parse_with_dashes_or_colons() {
        assert_eq!(
            parse_eui64("00-1D-C1-FF-FE-12-34-56").expect("gm"),
            [0x00, 0x1D, 0xC1, 0xFF, 0xFE, 0x12, 0x34, 0x56]
        );
        assert_eq!(parse_eui64("00:1d:c1:ff:fe:12:34:56").expect("gm")[7], 0x56);
        assert!(parse_eui64("00-1D-C1").is_err());
        assert!(parse_eui64("00-1D-C1-FF-FE-12-34-ZZ").is_err());
    }
}
