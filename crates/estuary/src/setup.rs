//! `estuary setup`: the first-run wizard. Plain line prompts on stdin/stdout, so it works over
//! SSH, in a serial console and under `tmux`; `--answers FILE` gives the same answers as TOML.
//! Both paths build an [`Answers`] and render it with the same function, so they write the same
//! file, and that file is validated by the config parser before it is written.

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::config;

/// Where the packaged service reads its config.
const SERVICE_CONFIG: &str = "/etc/estuary/estuary.toml";
/// The unit, embedded so a binary installed without the package can install it too.
const UNIT: &str = include_str!("../../../packaging/systemd/estuary.service");
const SAMPLE_ANSWERS: &str = include_str!("../../../examples/setup/answers.toml");

#[derive(Debug, clap::Args)]
pub struct SetupArgs {
    /// Answers as TOML instead of questions (see `estuary setup --print-answers`).
    #[arg(long)]
    answers: Option<PathBuf>,
    /// Print an example answers file and exit.
    #[arg(long, conflicts_with = "answers")]
    print_answers: bool,
    /// Where to write the config.
    #[arg(short, long, default_value = SERVICE_CONFIG)]
    output: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Caller,
    Listener,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Codec {
    Opus,
    Pcm,
}

/// Everything the wizard asks.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answers {
    /// The interface on the AES67 network.
    aoip_interface: String,
    /// The interface towards the SRT peer; its address is where a listener binds.
    internet_interface: Option<String>,
    /// Names the input and output (`NAME`, `NAME-srt`).
    name: String,
    /// An announced session name to follow (SAP/RAVENNA) ...
    follow: Option<String>,
    /// ... or a fixed multicast `address:port` with its format.
    address: Option<SocketAddr>,
    #[serde(default = "two")]
    channels: u16,
    #[serde(default = "l24")]
    format: String,
    #[serde(default = "rate")]
    sample_rate: u32,
    #[serde(default = "ten_ms", with = "humantime_serde")]
    latency: Duration,
    srt_mode: Mode,
    /// Caller: the remote listener. Listener: the port (on the internet interface's address).
    srt_address: Option<SocketAddr>,
    srt_port: Option<u16>,
    #[serde(default = "srt_latency", with = "humantime_serde")]
    srt_latency: Duration,
    codec: Codec,
    passphrase: Option<String>,
    #[serde(default = "api_bind")]
    api_bind: SocketAddr,
    api_token: Option<String>,
    /// Install and enable the systemd unit after writing the config.
    #[serde(default)]
    install_service: bool,
}

fn two() -> u16 {
    2
}
fn l24() -> String {
    "L24".into()
}
fn rate() -> u32 {
    48_000
}
fn ten_ms() -> Duration {
    Duration::from_millis(10)
}
fn srt_latency() -> Duration {
    Duration::from_millis(120)
}
fn api_bind() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8480))
}

/// A TOML string literal.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

fn ms(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The IPv4 address of `interface`, for binding a listener.
fn interface_address(interface: &str) -> anyhow::Result<IpAddr> {
    let iface = estuary_io::mcast::resolve_interface(interface)?;
    let v4 = iface
        .ipv4
        .with_context(|| format!("interface {interface} has no IPv4 address"))?;
    Ok(IpAddr::V4(v4))
}

/// The config file for `a`.
fn render(a: &Answers) -> anyhow::Result<String> {
    use std::fmt::Write as _;
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Written by `estuary setup`. Reference: docs/config.md."
    );
    let _ = writeln!(t, "\n[discovery]\ninterface = {}", quote(&a.aoip_interface));
    let _ = writeln!(
        t,
        "\n[[inputs]]\nname = {}\nkind = \"aes67\"",
        quote(&a.name)
    );
    let _ = writeln!(t, "interface = {}", quote(&a.aoip_interface));
    let _ = writeln!(t, "latency = {}", quote(&ms(a.latency)));
    match (&a.follow, a.address) {
        (Some(session), None) => {
            let _ = writeln!(t, "source = {}", quote(&format!("name:{session}")));
        }
        (None, Some(address)) => {
            let _ = writeln!(t, "address = {}", quote(&address.to_string()));
            let _ = writeln!(t, "format = {}", quote(&a.format));
            let _ = writeln!(t, "channels = {}", a.channels);
            let _ = writeln!(t, "sample_rate = {}", a.sample_rate);
        }
        _ => bail!("give exactly one of `follow` (a session name) and `address`"),
    }
    let address = match a.srt_mode {
        Mode::Caller => a
            .srt_address
            .context("srt_address: the remote listener's address:port")?,
        Mode::Listener => {
            let port = a.srt_port.context("srt_port: the port to listen on")?;
            let ip = match &a.internet_interface {
                Some(i) => interface_address(i)?,
                None => IpAddr::from([0, 0, 0, 0]),
            };
            SocketAddr::new(ip, port)
        }
    };
    let _ = writeln!(
        t,
        "\n[[outputs]]\nname = {}",
        quote(&format!("{}-srt", a.name))
    );
    let _ = writeln!(t, "kind = \"srt\"\ninput = {}", quote(&a.name));
    let mode = match a.srt_mode {
        Mode::Caller => "caller",
        Mode::Listener => "listener",
    };
    let _ = writeln!(
        t,
        "mode = \"{mode}\"\naddress = {}",
        quote(&address.to_string())
    );
    let codec = match a.codec {
        Codec::Opus => "opus",
        Codec::Pcm => "pcm",
    };
    let _ = writeln!(
        t,
        "codec = \"{codec}\"\nlatency = {}",
        quote(&ms(a.srt_latency))
    );
    if let Some(p) = &a.passphrase {
        let _ = writeln!(t, "passphrase = {}", quote(p));
    }
    let _ = writeln!(t, "\n[api]\nbind = {}", quote(&a.api_bind.to_string()));
    if let Some(token) = &a.api_token {
        let _ = writeln!(t, "token = {}", quote(token));
    }
    config::parse(&t, Path::new("/")).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(t)
}

/// A random admin token: 32 hex digits from the kernel's generator.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Line prompts with defaults; an answer that does not parse is asked again.
struct Prompter<R, W> {
    input: R,
    out: W,
}

impl<R: BufRead, W: Write> Prompter<R, W> {
    fn line(&mut self, question: &str, default: Option<&str>) -> anyhow::Result<String> {
        loop {
            match default {
                Some(d) if !d.is_empty() => write!(self.out, "{question} [{d}]: ")?,
                _ => write!(self.out, "{question}: ")?,
            }
            self.out.flush()?;
            let mut s = String::new();
            if self.input.read_line(&mut s)? == 0 {
                bail!("input ended before the wizard did");
            }
            let s = s.trim();
            if !s.is_empty() {
                return Ok(s.to_owned());
            }
            if let Some(d) = default {
                return Ok(d.to_owned());
            }
            writeln!(self.out, "  an answer is needed")?;
        }
    }

    fn parsed<T: std::str::FromStr>(
        &mut self,
        question: &str,
        default: Option<&str>,
    ) -> anyhow::Result<T>
    where
        T::Err: std::fmt::Display,
    {
        loop {
            let s = self.line(question, default)?;
            match s.parse() {
                Ok(v) => return Ok(v),
                Err(e) => writeln!(self.out, "  {s:?}: {e}")?,
            }
        }
    }

    fn choice(
        &mut self,
        question: &str,
        options: &[&str],
        default: &str,
    ) -> anyhow::Result<String> {
        loop {
            let s = self.line(
                &format!("{question} ({})", options.join("/")),
                Some(default),
            )?;
            if options.contains(&s.as_str()) {
                return Ok(s);
            }
            writeln!(self.out, "  one of: {}", options.join(", "))?;
        }
    }

    fn yes(&mut self, question: &str) -> anyhow::Result<bool> {
        Ok(self.choice(question, &["y", "n"], "n")? == "y")
    }

    fn duration(&mut self, question: &str, default: &str) -> anyhow::Result<Duration> {
        loop {
            let s = self.line(question, Some(default))?;
            match humantime::parse_duration(&s) {
                Ok(d) => return Ok(d),
                Err(e) => writeln!(self.out, "  {s:?}: {e} (e.g. 10ms)")?,
            }
        }
    }
}

fn ask<R: BufRead, W: Write>(p: &mut Prompter<R, W>) -> anyhow::Result<Answers> {
    writeln!(p.out, "Estuary setup: Enter keeps the [default].\n")?;
    let interfaces = estuary_io::mcast::list_interfaces().unwrap_or_default();
    writeln!(p.out, "Network interfaces:")?;
    for i in &interfaces {
        writeln!(p.out, "  {i}")?;
    }
    let names: Vec<&str> = interfaces.iter().map(|i| i.name.as_str()).collect();
    let first = names.iter().find(|n| **n != "lo").copied().unwrap_or("lo");
    let aoip_interface = p.choice("AoIP (AES67) interface", &names, first)?;
    let name = p.line("Device name (names the input and output)", Some("estuary"))?;
    let stream = p.line(
        "Stream: the session name it announces (SAP/RAVENNA), or its multicast address:port",
        None,
    )?;
    let (follow, address) = match stream.parse::<SocketAddr>() {
        Ok(a) => (None, Some(a)),
        Err(_) => (Some(stream), None),
    };
    let (mut channels, mut format, mut sample_rate) = (2, l24(), 48_000);
    if address.is_some() {
        channels = p.parsed("Channels", Some("2"))?;
        format = p.choice("Sample format", &["L16", "L24", "AM824"], "L24")?;
        sample_rate = p.parsed("Sample rate", Some("48000"))?;
    }
    let latency = p.duration("Receive latency (jitter buffer)", "10ms")?;
    let mode = p.choice(
        "SRT mode: call a listener, or listen for a caller",
        &["caller", "listener"],
        "caller",
    )?;
    let (srt_mode, srt_address, srt_port, internet_interface) = if mode == "caller" {
        let a: SocketAddr = p.parsed("SRT destination address:port", None)?;
        (Mode::Caller, Some(a), None, None)
    } else {
        let i = p.choice(
            "Internet interface (the listener binds its address)",
            &names,
            first,
        )?;
        let port: u16 = p.parsed("SRT listen port", Some("9000"))?;
        (Mode::Listener, None, Some(port), Some(i))
    };
    let srt_latency = p.duration("SRT latency", "120ms")?;
    let codec = match p.choice("Codec", &["opus", "pcm"], "opus")?.as_str() {
        "pcm" => Codec::Pcm,
        _ => Codec::Opus,
    };
    let passphrase = p.line("SRT passphrase (10-79 characters, '-' for none)", Some("-"))?;
    let passphrase = (passphrase != "-").then_some(passphrase);
    let api_bind: SocketAddr = p.parsed("API and dashboard address", Some("127.0.0.1:8480"))?;
    let token = p.line(
        "API admin token ('new' for a random one, '-' for none)",
        Some("new"),
    )?;
    let api_token = match token.as_str() {
        "-" => None,
        "new" => Some(new_token()?),
        t => Some(t.to_owned()),
    };
    let install_service = p.yes("Install and start the systemd service")?;
    Ok(Answers {
        aoip_interface,
        internet_interface,
        name,
        follow,
        address,
        channels,
        format,
        sample_rate,
        latency,
        srt_mode,
        srt_address,
        srt_port,
        srt_latency,
        codec,
        passphrase,
        api_bind,
        api_token,
        install_service,
    })
}

/// Writes the unit (unless the package installed it), the service user, then enables it.
fn install_service(config: &Path) -> anyhow::Result<()> {
    if config != Path::new(SERVICE_CONFIG) {
        bail!("the service reads {SERVICE_CONFIG}; run setup with the default --output");
    }
    if !Path::new("/lib/systemd/system/estuary.service").exists() {
        let exe = std::env::current_exe()?;
        let unit = UNIT.replace("/usr/bin/estuary", &exe.display().to_string());
        std::fs::write("/etc/systemd/system/estuary.service", unit)?;
    }
    let has_user = Command::new("id").arg("estuary").output()?.status.success();
    if !has_user {
        run(Command::new("useradd").args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/var/lib/estuary",
            "--shell",
            "/usr/sbin/nologin",
            "estuary",
        ]))?;
    }
    run(Command::new("chgrp").args(["-R", "estuary", "/etc/estuary"]))?;
    // As the package's postinst: the API saves accepted changes by a rename in this directory.
    run(Command::new("chmod").args(["2770", "/etc/estuary"]))?;
    run(Command::new("systemctl").arg("daemon-reload"))?;
    run(Command::new("systemctl").args(["enable", "--now", "estuary"]))?;
    run(Command::new("systemctl").args(["reload-or-restart", "estuary"]))
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

pub fn run_cli(args: SetupArgs) -> anyhow::Result<ExitCode> {
    if args.print_answers {
        print!("{SAMPLE_ANSWERS}");
        return Ok(ExitCode::SUCCESS);
    }
    let answers = match &args.answers {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        None => {
            let stdin = std::io::stdin();
            ask(&mut Prompter {
                input: stdin.lock(),
                out: std::io::stdout(),
            })?
        }
    };
    let text = render(&answers)?;
    if let Some(dir) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let existed = args.output.exists();
    crate::api::store::write_atomic(&args.output, &text)
        .with_context(|| format!("writing {}", args.output.display()))?;
    if !existed {
        // A new file: readable by the service's group (the package makes /etc/estuary setgid
        // `estuary`), never by others, since it holds the API token and SRT passphrase.
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&args.output, std::fs::Permissions::from_mode(0o640))?;
    }
    println!("wrote {}", args.output.display());
    if answers.install_service {
        install_service(&args.output)?;
        println!("estuary.service enabled and started: `systemctl status estuary`");
    } else {
        println!(
            "run it: estuary run --config {}  (check the host: estuary doctor --config {0})",
            args.output.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Answers {
        toml::from_str(SAMPLE_ANSWERS).expect("the sample answers parse")
    }

    #[test]
    fn sample_answers_render_a_valid_config() {
        let text = render(&sample()).expect("valid");
        assert!(text.contains("source = \"name:Stage Left\""), "{text}");
    }

    #[test]
    fn one_stream_form_exactly() {
        let mut a = sample();
        a.address = Some(SocketAddr::from(([239, 69, 1, 1], 5004)));
        assert!(render(&a).is_err());
        a.follow = None;
        let text = render(&a).expect("valid");
        assert!(text.contains("address = \"239.69.1.1:5004\""));
        a.address = None;
        assert!(render(&a).is_err());
    }

    #[test]
    fn a_short_token_is_refused_by_the_config_rules() {
        let mut a = sample();
        a.api_token = Some("short".into());
        let e = render(&a).expect_err("short token").to_string();
        assert!(e.contains("api.token"), "{e}");
    }

    #[test]
    fn prompts_repeat_until_the_answer_parses() {
        let mut out = Vec::new();
        let mut p = Prompter {
            input: "abc\n\n7\n".as_bytes(),
            out: &mut out,
        };
        let n: u16 = p.parsed("Channels", None).expect("answer");
        assert_eq!(n, 7);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("\"abc\": invalid digit"), "{text}");
        assert!(text.contains("an answer is needed"), "{text}");
    }
}
