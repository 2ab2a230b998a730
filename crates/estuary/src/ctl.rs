//! `estuary status` and `estuary ctl`: the command-line client of the HTTP API.
//!
//! Exit codes: 0 success, 1 the API could not be reached or refused the request, 3 a
//! configuration change was rejected (it did not validate, or the daemon could not run it).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::api::error::ErrorBody;
use crate::api::types::{ChangeResult, InputDetail, OutputDetail};
use crate::status::{Event, Status};

/// Where the daemon's API is.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// Base URL of the API.
    #[arg(
        long = "api",
        env = "ESTUARY_API",
        default_value = "http://127.0.0.1:8480"
    )]
    url: String,
    /// Bearer token (admin for changes, read-only for reads).
    #[arg(long, env = "ESTUARY_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    target: Target,
    /// The full status as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CtlArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// List the inputs (JSON).
    Inputs,
    /// List the outputs (JSON).
    Outputs,
    /// Add an input.
    AddInput {
        name: String,
        /// `sap:NAME`, `ravenna:NAME`, `name:NAME`, or an SSM sender IP.
        #[arg(long)]
        source: Option<String>,
        /// Destination `ip:port`, when there is no SDP.
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        format: Option<String>,
        #[arg(long)]
        channels: Option<u16>,
        #[arg(long)]
        sample_rate: Option<u32>,
        #[arg(long)]
        sdp_file: Option<String>,
        #[arg(long)]
        interface: Option<String>,
        /// Jitter-buffer delay, e.g. `10ms`.
        #[arg(long)]
        latency: Option<String>,
    },
    /// Remove an input.
    RemoveInput {
        name: String,
        /// Also remove the outputs it feeds.
        #[arg(long)]
        cascade: bool,
    },
    /// Add an SRT output.
    AddOutput {
        name: String,
        #[arg(long)]
        input: String,
        #[arg(long)]
        address: String,
        /// `caller` or `listener`.
        #[arg(long, default_value = "listener")]
        mode: String,
        /// `opus` or `pcm`.
        #[arg(long, default_value = "opus")]
        codec: String,
        #[arg(long)]
        bitrate: Option<u32>,
        #[arg(long)]
        passphrase: Option<String>,
        #[arg(long)]
        latency: Option<String>,
    },
    /// Remove an output.
    RemoveOutput { name: String },
    /// Read or replace the configuration file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The event history (alarms, configuration changes).
    Events {
        /// Only events after this id.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Print the configuration file.
    Get,
    /// Replace the configuration with FILE (validated and applied by the daemon).
    Set { file: std::path::PathBuf },
}

/// Exit code for a configuration change the daemon rejected.
const EXIT_REJECTED: u8 = 3;

/// A failed request: what to print and how to exit.
#[derive(Debug)]
struct Refused {
    status: u16,
    body: String,
}

struct Client {
    agent: ureq::Agent,
    base: String,
    token: Option<String>,
}

impl Client {
    fn new(target: &Target) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Client {
            agent,
            base: target.url.trim_end_matches('/').to_owned(),
            token: target.token.clone(),
        }
    }

    /// (status, body) of a request; Err only when the API cannot be reached.
    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> anyhow::Result<(u16, String)> {
        let url = format!("{}{path}", self.base);
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Bearer {t}"));
        }
        let (content_type, data) = body.unwrap_or(("text/plain", String::new()));
        let request = request
            .header("Content-Type", content_type)
            .body(data)
            .context("building the request")?;
        let mut response = self
            .agent
            .run(request)
            .with_context(|| format!("cannot reach the Estuary API at {}", self.base))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .context("reading the API's answer")?;
        Ok((status, text))
    }

    fn get(&self, path: &str) -> anyhow::Result<Result<String, Refused>> {
        self.call("GET", path, None)
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<(&str, String)>,
    ) -> anyhow::Result<Result<String, Refused>> {
        let (status, text) = self.send(method, path, body)?;
        Ok(if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(Refused { status, body: text })
        })
    }
}

/// Prints an API error with its field and message; the exit code for it.
fn report(refused: &Refused) -> ExitCode {
    match serde_json::from_str::<ErrorBody>(&refused.body) {
        Ok(ErrorBody { error }) => {
            let mut place = String::new();
            if let Some(line) = error.line {
                place.push_str(&format!("line {line}: "));
            }
            if let Some(field) = &error.field {
                place.push_str(&format!("{field}: "));
            }
            eprintln!("error ({}): {place}{}", refused.status, error.message);
        }
        Err(_) => eprintln!("error ({}): {}", refused.status, refused.body.trim()),
    }
    // 422: did not validate / could not run; 409: conflicts with the running configuration.
    if matches!(refused.status, 409 | 422) {
        ExitCode::from(EXIT_REJECTED)
    } else {
        ExitCode::FAILURE
    }
}

fn print_change(text: &str) {
    match serde_json::from_str::<ChangeResult>(text) {
        Ok(r) => {
            println!("applied: {}", r.changes);
            if let Some(path) = r.path {
                println!("saved to {path}");
            }
        }
        Err(_) => println!("{text}"),
    }
}

pub fn status(args: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let text = match client.get("/api/status")? {
        Ok(t) => t,
        Err(r) => return Ok(report(&r)),
    };
    if args.json {
        println!("{text}");
        return Ok(ExitCode::SUCCESS);
    }
    let status: Status = serde_json::from_str(&text).context("the API's status")?;
    print!("{}", summary(&status));
    Ok(ExitCode::SUCCESS)
}

/// The human summary of `estuary status`.
fn summary(s: &Status) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Estuary {} on {} (pid {}), up {}",
        s.system.version,
        s.system.hostname,
        s.system.pid,
        humantime::format_duration(Duration::from_secs(s.system.uptime_s.max(0.0) as u64))
    );
    let _ = writeln!(out, "\nInputs ({})", s.inputs.len());
    for i in &s.inputs {
        let _ = writeln!(
            out,
            "  {:<20} {:<10} {:<8} packets {:>10}  lost {:>6}  late {:>6}  {}",
            i.name,
            i.state,
            i.health.level,
            i.counters.packets_received,
            i.counters.packets_lost,
            i.counters.packets_late,
            i.source
        );
        if let Some(reason) = &i.reason {
            let _ = writeln!(out, "      {reason}");
        }
    }
    let _ = writeln!(out, "\nOutputs ({})", s.outputs.len());
    for o in &s.outputs {
        let _ = writeln!(
            out,
            "  {:<20} {:<10} {:<8} <- {:<16} {} {} {} {}{}",
            o.name,
            o.state,
            o.health.level,
            o.input,
            o.kind,
            o.mode,
            o.address,
            o.codec,
            o.peer
                .as_ref()
                .map(|p| format!(", peer {p}"))
                .unwrap_or_default()
        );
    }
    if s.alarms.is_empty() {
        let _ = writeln!(out, "\nAlarms: none");
    } else {
        let _ = writeln!(out, "\nAlarms ({})", s.alarms.len());
        for a in &s.alarms {
            let _ = writeln!(out, "  {:<8} {}  {}", a.severity, a.key, a.message);
        }
    }
    out
}

pub fn ctl(args: CtlArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.target);
    let json = "application/json";
    let result = match args.command {
        CtlCommand::Inputs => client.get("/api/inputs")?.map(|t| print_inputs(&t)),
        CtlCommand::Outputs => client.get("/api/outputs")?.map(|t| print_outputs(&t)),
        CtlCommand::AddInput {
            name,
            source,
            address,
            format,
            channels,
            sample_rate,
            sdp_file,
            interface,
            latency,
        } => {
            let body = serde_json::json!({
                "name": name, "source": source, "address": address, "format": format,
                "channels": channels, "sample_rate": sample_rate, "sdp_file": sdp_file,
                "interface": interface, "latency": latency,
            });
            client
                .call("POST", "/api/inputs", Some((json, body.to_string())))?
                .map(|t| print_change(&t))
        }
        CtlCommand::RemoveInput { name, cascade } => {
            let path = format!("/api/inputs/{}?cascade={cascade}", encode(&name));
            client
                .call("DELETE", &path, None)?
                .map(|t| print_change(&t))
        }
        CtlCommand::AddOutput {
            name,
            input,
            address,
            mode,
            codec,
            bitrate,
            passphrase,
            latency,
        } => {
            let body = serde_json::json!({
                "name": name, "input": input, "address": address, "mode": mode,
                "codec": codec, "bitrate": bitrate, "passphrase": passphrase,
                "latency": latency,
            });
            client
                .call("POST", "/api/outputs", Some((json, body.to_string())))?
                .map(|t| print_change(&t))
        }
        CtlCommand::RemoveOutput { name } => {
            let path = format!("/api/outputs/{}", encode(&name));
            client
                .call("DELETE", &path, None)?
                .map(|t| print_change(&t))
        }
        CtlCommand::Config(ConfigCommand::Get) => client.get("/api/config")?.map(|t| print!("{t}")),
        CtlCommand::Config(ConfigCommand::Set { file }) => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            client
                .call("PUT", "/api/config", Some(("text/plain", text)))?
                .map(|t| print_change(&t))
        }
        CtlCommand::Events { after, limit } => client
            .get(&format!("/api/events?after={after}&limit={limit}"))?
            .map(|t| print_events(&t)),
    };
    Ok(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(refused) => report(&refused),
    })
}

/// Names are letters, digits, `-`, `_`, `.`; anything else is percent-encoded.
fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn print_inputs(text: &str) {
    let Ok(inputs) = serde_json::from_str::<Vec<InputDetail>>(text) else {
        println!("{text}");
        return;
    };
    for i in inputs {
        let (state, packets) = i.status.as_ref().map_or(("starting", 0), |s| {
            (s.state.as_str(), s.counters.packets_received)
        });
        let source = i
            .config
            .source
            .or(i.config.address)
            .or(i.config.sdp_file)
            .unwrap_or_else(|| "inline SDP".into());
        println!(
            "{:<20} {:<10} packets {:>10}  {source}",
            i.name, state, packets
        );
    }
}

fn print_outputs(text: &str) {
    let Ok(outputs) = serde_json::from_str::<Vec<OutputDetail>>(text) else {
        println!("{text}");
        return;
    };
    for o in outputs {
        let state = o.status.as_ref().map_or("starting", |s| s.state.as_str());
        let c = &o.config;
        println!(
            "{:<20} {:<10} <- {:<16} {} {} {}",
            o.name,
            state,
            c.input.as_deref().unwrap_or("?"),
            c.mode.as_deref().or(c.kind.as_deref()).unwrap_or("?"),
            c.address.as_deref().unwrap_or("?"),
            c.codec.as_deref().or(c.format.as_deref()).unwrap_or("?"),
        );
    }
}

fn print_events(text: &str) {
    let Ok(events) = serde_json::from_str::<Vec<Event>>(text) else {
        println!("{text}");
        return;
    };
    for e in events {
        println!(
            "{:>5} {} {:<8} {:<16} {:<16} {}",
            e.id, e.at, e.severity, e.kind, e.subject, e.message
        );
    }
}
