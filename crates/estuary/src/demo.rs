//! `estuary demo`: the whole path on one machine, with nothing to configure.
//!
//! A built-in AES67 transmitter sends a tone to a loopback address and announces it over SAP
//! (unicast to 127.0.0.1:9875); Estuary discovers it through the normal discovery and input
//! path (the same SAP listener, catalog, SDP parser, receive, jitter-buffer and output code as
//! `estuary run`) and serves the audio as SRT.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use estuary_wire::sap::SAP_PORT;

use crate::announce::Announcement;
use crate::config::{self, CodecConfig};
use crate::daemon;
use crate::pipeline::Reporting;
use crate::send::{self, ToneSpec};
use crate::shutdown;

const DEMO_CONFIG: &str = include_str!("demo.toml");

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Port of the SRT listener on 127.0.0.1.
    #[arg(long, default_value_t = 9000)]
    srt_port: u16,
    /// UDP port the built-in transmitter sends to on 127.0.0.1.
    #[arg(long, default_value_t = 5004)]
    rtp_port: u16,
    /// `opus` (compressed) or `pcm` (SMPTE 302M, bit-exact).
    #[arg(long, value_enum, default_value = "opus")]
    codec: DemoCodec,
    /// Port of the API and dashboard on 127.0.0.1.
    #[arg(long, default_value_t = 8480)]
    api_port: u16,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    seconds: Option<u64>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DemoCodec {
    Opus,
    Pcm,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let stop = shutdown::install()?;
    let tone = ToneSpec {
        destination: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), args.rtp_port),
        frequency_hz: 1_000.0,
        name: "Estuary demo tone".into(),
        level_dbfs: -18.0,
        ..ToneSpec::default()
    };
    let sender = send::start(&tone, None).context("starting the built-in AES67 transmitter")?;
    let sap_destination = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), SAP_PORT);
    let codec = match args.codec {
        DemoCodec::Opus => CodecConfig::Opus,
        DemoCodec::Pcm => CodecConfig::Pcm,
    };
    let text = DEMO_CONFIG
        .replace("{name}", &tone.name)
        .replace("{srt_port}", &args.srt_port.to_string())
        .replace("{api_port}", &args.api_port.to_string())
        .replace("{codec}", codec.name());
    // The API and dashboard persist edits to a file: the filled-in demo config, rewritten at
    // each start so every demo begins from the same state.
    let path = demo_config_path();
    write_demo_config(&path, &text)?;
    let cfg = config::load(&path).context("the embedded demo config")?;

    println!();
    println!("Estuary demo");
    println!(
        "  AES67 source  built-in tone, 1 kHz at -18 dBFS, L24/48000/2, 1 ms packets -> {}",
        tone.destination
    );
    println!(
        "  announced     over SAP to {sap_destination} as {:?} (SDP below)",
        tone.name
    );
    println!(
        "  received by   input \"demo-tone\", source = \"sap:{}\" (discovered, not configured)",
        tone.name
    );
    println!(
        "  served as     SRT listener on 127.0.0.1:{} ({})",
        args.srt_port,
        match codec {
            CodecConfig::Opus => "Opus 128 kb/s in MPEG-TS",
            _ => "24-bit PCM, SMPTE 302M in MPEG-TS",
        }
    );
    println!();
    println!(
        "  Listen:  ffplay -nodisp srt://127.0.0.1:{}",
        args.srt_port
    );
    println!(
        "     or:  srt-live-transmit srt://127.0.0.1:{} file://con | ffplay -nodisp -",
        args.srt_port
    );
    if let Some(url) = crate::api::url(&cfg.api) {
        println!("  Dashboard: {url}   (API: {url}api/docs)");
    }
    println!("  Stop:    Ctrl-C");
    println!();
    for line in sender.sdp.lines() {
        println!("    {line}");
    }
    println!();

    if let Some(seconds) = args.seconds {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(seconds));
            stop.request();
        });
    }
    println!(
        "  config        {} (edits from the API are saved here)",
        path.display()
    );
    println!();
    // Announce once discovery listens, so the first announcement is not lost.
    let announcement = std::cell::RefCell::new(None);
    let announce = || match Announcement::start(
        &sender.sdp,
        sap_destination,
        None,
        1,
        None,
        Duration::from_secs(30),
    ) {
        Ok(a) => *announcement.borrow_mut() = Some(a),
        Err(e) => tracing::error!(error = %e, "cannot announce the built-in transmitter"),
    };
    let result = daemon::run(&cfg, Some(&path), &stop, Reporting::Console, announce);
    if let Some(a) = announcement.take() {
        a.stop();
    }
    let mut sender = sender;
    sender.sender.stop();
    result?;
    println!("transmitter sent {} packets", sender.sender.packets_sent());
    Ok(())
}

/// `$XDG_STATE_HOME/estuary/demo.toml` (default `~/.local/state/estuary/demo.toml`), or the
/// temporary directory when there is no home.
fn demo_config_path() -> PathBuf {
    let state = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .unwrap_or_else(std::env::temp_dir);
    state.join("estuary").join("demo.toml")
}

fn write_demo_config(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
