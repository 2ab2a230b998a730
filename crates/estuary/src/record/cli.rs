//! `estuary record`: a one-off recording of one stream, with a progress line.
//!
//! It builds the same configuration a user would write (one input, one recorder), so the
//! stream is resolved, validated and recorded exactly as the daemon would.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::config;
use crate::pipeline::{Options, Running};
use crate::shutdown;

#[derive(Debug, clap::Args)]
pub struct RecordArgs {
    /// The stream: an SDP file, `sap:NAME` / `ravenna:NAME` / `name:NAME` (discovered), or a
    /// multicast/unicast address (ip:port) with --format/--channels/--sample-rate.
    stream: String,
    /// Where to write the files.
    #[arg(short = 'o', long, default_value = ".")]
    directory: PathBuf,
    /// File name template (see docs/recording.md).
    #[arg(long, default_value = "{input}-{date}-{time}-{track}")]
    template: String,
    #[arg(long, default_value_t = 24)]
    bits: u8,
    /// `wav`, `rf64` or `flac`.
    #[arg(long, default_value = "rf64")]
    format: String,
    /// One mono file per channel instead of one interleaved file.
    #[arg(long)]
    mono: bool,
    /// Stop after this long (e.g. `90s`, `1h`); default: until Ctrl-C.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// L16, L24 or L32 (with an address).
    #[arg(long, default_value = "L24")]
    stream_format: String,
    #[arg(long, default_value_t = 2)]
    channels: u16,
    #[arg(long, default_value_t = 48_000)]
    sample_rate: u32,
    /// Jitter-buffer latency.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Interface (name or address) to receive on.
    #[arg(long)]
    interface: Option<String>,
}

fn table(pairs: Vec<(&str, toml::Value)>) -> toml::Value {
    toml::Value::Table(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn text(s: &str) -> toml::Value {
    toml::Value::String(s.to_owned())
}

/// The configuration `estuary record` runs.
fn build_config(args: &RecordArgs) -> anyhow::Result<String> {
    let follows = ["sap:", "ravenna:", "name:"]
        .iter()
        .any(|p| args.stream.starts_with(p));
    let mut input = vec![
        ("name", text("stream")),
        ("kind", text("aes67")),
        (
            "latency",
            text(&humantime::format_duration(args.latency).to_string()),
        ),
    ];
    if follows {
        input.push(("source", text(&args.stream)));
    } else if args.stream.parse::<std::net::SocketAddr>().is_ok() {
        input.push(("address", text(&args.stream)));
        input.push(("format", text(&args.stream_format)));
        input.push(("channels", toml::Value::Integer(args.channels.into())));
        input.push(("sample_rate", toml::Value::Integer(args.sample_rate.into())));
    } else {
        let path = std::fs::canonicalize(&args.stream)
            .with_context(|| format!("{}: not an SDP file, sap:NAME or ip:port", args.stream))?;
        input.push(("sdp_file", text(&path.to_string_lossy())));
    }
    if let Some(iface) = &args.interface {
        input.push(("interface", text(iface)));
    }
    let recorder = table(vec![
        ("name", text("record")),
        ("input", text("stream")),
        ("directory", text(&args.directory.to_string_lossy())),
        ("template", text(&args.template)),
        ("bits", toml::Value::Integer(args.bits.into())),
        ("format", text(&args.format)),
        (
            "layout",
            text(if args.mono { "mono" } else { "interleaved" }),
        ),
    ]);
    let discovery = table(vec![
        ("sap", toml::Value::Boolean(follows)),
        ("ravenna", toml::Value::Boolean(follows)),
    ]);
    let config = table(vec![
        ("discovery", discovery),
        ("inputs", toml::Value::Array(vec![table(input)])),
        ("recorders", toml::Value::Array(vec![recorder])),
    ]);
    Ok(toml::to_string(&config)?)
}

pub fn run(args: &RecordArgs) -> anyhow::Result<()> {
    let stop = shutdown::install()?;
    let text = build_config(args)?;
    let cfg =
        config::parse(&text, &std::env::current_dir()?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut running = Running::start_with(
        &cfg,
        Options {
            meters: true,
            ..Options::default()
        },
    )?;
    let started = Instant::now();
    let mut last_line = Instant::now() - Duration::from_secs(1);
    let mut stderr = std::io::stderr();
    while !stop.requested() && args.duration.is_none_or(|d| started.elapsed() < d) {
        std::thread::sleep(Duration::from_millis(50));
        running.reconcile();
        if last_line.elapsed() >= Duration::from_secs(1) {
            last_line = Instant::now();
            let _ = write!(stderr, "\r{}\x1b[K", progress(&running, started.elapsed()));
            let _ = stderr.flush();
        }
    }
    let _ = writeln!(stderr, "\r{}\x1b[K", progress(&running, started.elapsed()));
    let files = running.recorder_status().first().map_or(0, |r| r.files);
    running.shutdown();
    eprintln!("{files} file(s) in {}", args.directory.display());
    Ok(())
}

/// `00:01:23 recording 12.3 MB  gaps 0  -18.1 -18.0 dBFS  stream-2026-…wav`
fn progress(running: &Running, elapsed: Duration) -> String {
    let secs = elapsed.as_secs();
    let Some(r) = running.recorder_status().into_iter().next() else {
        return String::new();
    };
    let levels: Vec<String> = running
        .meters()
        .first()
        .map(|m| {
            m.channels
                .iter()
                .map(|c| format!("{:.1}", c.peak))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{:02}:{:02}:{:02} {} {:.1} MB  gaps {} ({} ms)  peak {} dBFS  {}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        r.state,
        (r.bytes + r.bytes_closed) as f64 / 1e6,
        r.gaps,
        r.gap_frames * 1000 / u64::from(r.sample_rate.max(1)),
        if levels.is_empty() {
            "-".into()
        } else {
            levels.join(" ")
        },
        r.file.as_deref().unwrap_or("")
    )
}
