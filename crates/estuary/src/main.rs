//! `estuary`: the daemon and its command line.
//!
//! Exit codes (documented in the README and `estuary --help`):
//! 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod alarm;
mod announce;
mod api;
mod bench;
mod clock;
mod config;
mod ctl;
mod daemon;
mod dante;
mod dashboard;
mod demo;
mod discover;
mod discovery;
mod doctor;
mod failover;
mod gateway;
mod impair;
mod latency;
mod metrics;
mod pipeline;
mod record;
mod redundant;
mod selftest;
mod send;
mod setup;
mod shutdown;
mod soak;
mod srt_input;
mod status;
mod sysinfo;
mod systemd;

use config::LogFormat;

/// Exit code for a configuration that does not validate.
const EXIT_BAD_CONFIG: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "estuary",
    version,
    about = "Audio-over-IP gateway: AES67 / ST 2110-30 / RAVENNA in, SRT out",
    after_help = "Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 invalid configuration."
)]
struct Cli {
    /// Log format (overrides the config file's `log.format`).
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway from a config file until SIGTERM or SIGINT.
    Run {
        /// The TOML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Validate a config file: prints the first error with its field and line.
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Start a built-in AES67 tone transmitter on loopback and serve it as SRT.
    Demo(demo::DemoArgs),
    /// List the streams announced on the network (SAP, RAVENNA): live, --once or --json.
    Discover(discover::DiscoverArgs),
    /// Announce a stream over SAP (RFC 2974) until stopped, then send its deletion.
    Announce(announce::AnnounceArgs),
    /// Send an AES67 test tone (L16/L24, any channel count) to an address.
    Send(send::SendArgs),
    /// Benchmarks against GStreamer and FFmpeg, measured in the same run.
    Bench(bench::BenchArgs),
    /// Record one stream to BWF/RF64 files until Ctrl-C or --duration, with a progress line.
    Record(record::cli::RecordArgs),
    /// Fix the sizes in WAV/BWF/RF64 headers of recordings cut by a crash or power loss.
    Repair(record::repair::RepairArgs),
    /// Self-tests on loopback: `platform` (a known sequence through transmit and receive,
    /// checked sample by sample; exit 1 on any fault) and `latency`.
    Selftest(selftest::SelftestArgs),
    /// Alarm notifications: `estuary alarm test` fires a test alarm through the notifiers.
    Alarm(alarm::AlarmArgs),
    /// Summary of a running daemon (through its API): inputs, outputs, alarms.
    Status(ctl::StatusArgs),
    /// Inspect and change a running daemon through its API (exit 3: change rejected).
    Ctl(ctl::CtlArgs),
    /// UDP relay that impairs a flow (loss, bursts, reorder, duplicates, delay, jitter,
    /// corruption, rate limit) from a seed, and prints what it did.
    Impair(impair::ImpairArgs),
    /// Long run under impairment (64 ch in, SRT out): checks RSS growth and counters.
    Soak(soak::SoakArgs),
    /// Check the host (multicast route, rp_filter, buffers, firewall, clock daemons...): each
    /// problem with the command that fixes it; exit 1 if any.
    Doctor(doctor::DoctorArgs),
    /// First-run wizard (or `--answers FILE`): writes the config, optionally installs the
    /// systemd service.
    Setup(setup::SetupArgs),
}

fn main() -> ExitCode {
    estuary_io::memory::settle_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => Ok(match config::load(&file) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} input(s), {} output(s))",
                    file.display(),
                    cfg.inputs.len(),
                    cfg.outputs.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(EXIT_BAD_CONFIG)
            }
        }),
        Command::Run { config: path } => {
            let cfg = match config::load(&path) {
                Ok(cfg) => cfg,
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(EXIT_BAD_CONFIG));
                }
            };
            init_logging(
                cli.log_format.unwrap_or(cfg.log.format),
                cfg.log.level.as_deref(),
            );
            let stop = shutdown::install()?;
            daemon::run(&cfg, Some(&path), &stop, pipeline::Reporting::Log, || {})?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => {
            init_logging(cli.log_format.unwrap_or_default(), None);
            demo::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Announce(args) => {
            init_logging(cli.log_format.unwrap_or_default(), None);
            announce::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Discover(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            discover::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Impair(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            impair::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Soak(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            Ok(if soak::run(&args)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Send(args) => {
            init_logging(cli.log_format.unwrap_or_default(), None);
            send::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Alarm(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            Ok(alarm::run_cli(args, EXIT_BAD_CONFIG))
        }
        Command::Status(args) => ctl::status(args),
        Command::Ctl(args) => ctl::ctl(args),
        Command::Doctor(args) => doctor::run(args, EXIT_BAD_CONFIG),
        Command::Setup(args) => setup::run_cli(args),
        Command::Record(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            record::cli::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Repair(args) => {
            record::repair::run(&args)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Selftest(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            Ok(if selftest::run(args)? {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Bench(args) => {
            init_logging(cli.log_format.unwrap_or_default(), Some("warn"));
            bench::run(args)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::prelude::*;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level.unwrap_or("info")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: journald, files and pipes get plain text.
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    // The ring keeps recent lines for the API (`/api/logs`, `/api/live`).
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(api::logs::RingLayer);
    match format {
        LogFormat::Human => registry.with(fmt).init(),
        LogFormat::Json => registry.with(fmt.json()).init(),
    }
}
