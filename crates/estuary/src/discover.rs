//! `estuary discover`: the announced streams as a live table, once, or as JSON.

use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use estuary_engine::catalog::{CatalogEntry, Liveness};
use estuary_engine::time::MonoTime;
use estuary_io::clock::monotonic_now;
use estuary_wire::sdp::RefClock;

use crate::config::DiscoveryConfig;
use crate::discovery::Discovery;
use crate::shutdown;

#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// Listen for `--wait`, print the table once and exit (Ctrl-C prints at once).
    #[arg(long)]
    pub once: bool,
    /// Print JSON instead of a table (implies --once).
    #[arg(long)]
    pub json: bool,
    /// How long --once listens. SAP senders announce about every 30 s, so shorter waits
    /// may miss some of them; RAVENNA streams show up at once.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Interface name or address to listen on.
    #[arg(long)]
    pub interface: Option<String>,
    /// SAP groups to join instead of the default three (repeatable).
    #[arg(long = "sap-group")]
    pub sap_groups: Vec<std::net::IpAddr>,
    /// Do not listen for SAP.
    #[arg(long)]
    pub no_sap: bool,
    /// Do not browse for RAVENNA sessions.
    #[arg(long)]
    pub no_ravenna: bool,
}

/// One row: one audio stream of one announced session.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct StreamRow {
    pub name: String,
    pub protocol: String,
    /// What a config's `source` field takes to follow this stream.
    pub source: String,
    pub address: String,
    pub port: u16,
    pub format: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub ptime_ms: Option<f64>,
    /// ST 2110-30 `channel-order`, e.g. `SMPTE2110.(51,ST)`.
    pub channel_order: Option<String>,
    /// Channel names, from the channel order or Dante's `i=` line.
    pub channel_labels: Option<Vec<String>>,
    /// ST 2110-30 conformance level (A, B, C, AX, BX, CX) the stream fits.
    pub level: Option<String>,
    pub ptp_gm: Option<String>,
    pub ptp_domain: Option<u8>,
    pub origin: String,
    pub announcer: String,
    pub state: String,
    /// Seconds since the last announcement, and since the first.
    pub age_s: f64,
    pub first_seen_s: f64,
    pub announcements: u64,
    pub sdp: String,
    /// Inputs following this stream (filled in by the daemon).
    #[serde(default)]
    pub used_by: Vec<String>,
}

/// The rows for every stream in `entries`, newest names first by name.
pub fn rows(entries: &[CatalogEntry], now: MonoTime) -> Vec<StreamRow> {
    let mut rows = Vec::new();
    for entry in entries {
        let count = entry.session.streams.len();
        for (i, stream) in entry.session.streams.iter().enumerate() {
            let name = if count > 1 {
                format!("{} ({}/{count})", entry.name(), i + 1)
            } else {
                entry.name().to_owned()
            };
            let (ptp_gm, ptp_domain) = match &stream.ts_refclk {
                Some(RefClock::Ptp { gmid, domain, .. }) => (Some(eui64(gmid)), *domain),
                Some(RefClock::PtpTraceable { .. }) => (Some("traceable".into()), None),
                _ => (None, None),
            };
            rows.push(StreamRow {
                name,
                protocol: entry.protocol.to_string(),
                source: format!("{}:{}", entry.protocol, entry.name()),
                address: stream
                    .connection
                    .map_or_else(|| "-".into(), |c| c.address.to_string()),
                port: stream.port,
                format: stream.format.encoding_name().to_owned(),
                sample_rate: stream.sample_rate,
                channels: stream.channels,
                ptime_ms: stream.ptime_ms,
                channel_order: stream.channel_order.as_ref().map(ToString::to_string),
                channel_labels: stream.channel_labels(),
                level: stream.conformance_level().map(|l| format!("{l:?}")),
                ptp_gm,
                ptp_domain,
                origin: entry.identity.address.clone(),
                announcer: entry.announcer.clone(),
                state: match entry.liveness {
                    Liveness::Active => "active".into(),
                    Liveness::Stale => "stale".into(),
                },
                age_s: now.duration_since(entry.last_seen).as_secs_f64(),
                first_seen_s: now.duration_since(entry.first_seen).as_secs_f64(),
                announcements: entry.announcements,
                sdp: entry.sdp.clone(),
                used_by: Vec::new(),
            });
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name).then(a.protocol.cmp(&b.protocol)));
    rows
}

fn eui64(id: &[u8; 8]) -> String {
    id.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join("-")
}

/// The rows as an aligned text table.
pub fn table(rows: &[StreamRow]) -> String {
    let header = [
        "NAME",
        "ADDRESS:PORT",
        "FORMAT",
        "CH",
        "PTIME",
        "PTP GM / DOMAIN",
        "ORIGIN",
        "VIA",
        "STATE",
        "AGE",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.name.clone(),
                format!("{}:{}", r.address, r.port),
                format!("{}/{}", r.format, r.sample_rate),
                r.channels.to_string(),
                r.ptime_ms.map_or_else(|| "-".into(), |p| format!("{p} ms")),
                match (&r.ptp_gm, r.ptp_domain) {
                    (Some(gm), Some(d)) => format!("{gm} / {d}"),
                    (Some(gm), None) => gm.clone(),
                    _ => "-".into(),
                },
                r.origin.clone(),
                r.protocol.clone(),
                r.state.clone(),
                format!("{:.0} s", r.age_s),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cols: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cols.zip(widths).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(text.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut header.iter().copied());
    for row in &cells {
        line(&mut row.iter().map(String::as_str));
    }
    out
}

pub fn run(args: DiscoverArgs) -> anyhow::Result<()> {
    let stop = shutdown::install()?;
    let mut cfg = DiscoveryConfig {
        sap: !args.no_sap,
        ravenna: !args.no_ravenna,
        ..DiscoveryConfig::default()
    };
    if !args.sap_groups.is_empty() {
        cfg.sap_groups = args.sap_groups.clone();
    }
    if let Some(iface) = &args.interface {
        cfg.interface = Some(toml::Spanned::new(0..0, iface.clone()));
        estuary_io::mcast::resolve_interface(iface)?;
    }
    let discovery = Discovery::start(&cfg)?;
    let once = args.once || args.json;
    let started = Instant::now();
    let live = !once && std::io::stdout().is_terminal();
    let mut shown_generation = u64::MAX;
    let mut last_draw = Instant::now() - Duration::from_secs(10);
    while !stop.requested() {
        std::thread::sleep(Duration::from_millis(100));
        if once {
            if started.elapsed() >= args.wait {
                break;
            }
            continue;
        }
        // Live: redraw every second on a terminal (ages move); otherwise print on changes.
        let generation = discovery.generation();
        let due = if live {
            last_draw.elapsed() >= Duration::from_secs(1)
        } else {
            generation != shown_generation
        };
        if due {
            shown_generation = generation;
            last_draw = Instant::now();
            let rows = rows(discovery.catalog().entries(), monotonic_now());
            let mut out = std::io::stdout().lock();
            if live {
                // Clear the screen and home the cursor.
                write!(out, "\x1b[2J\x1b[H")?;
            }
            write!(out, "{}", table(&rows))?;
            writeln!(
                out,
                "{} stream(s); listening for SAP and RAVENNA announcements. Ctrl-C to stop.",
                rows.len()
            )?;
            out.flush()?;
        }
    }
    if once {
        let rows = rows(discovery.catalog().entries(), monotonic_now());
        if args.json {
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            print!("{}", table(&rows));
        }
    }
    Ok(())
}
