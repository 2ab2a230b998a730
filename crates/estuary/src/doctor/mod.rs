//! `estuary doctor`: checks the host for what breaks AES67 reception, and says how to fix it.
//! This module only reads (/proc, /sys, `nft`); the judgements are in [`checks`].

mod checks;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use checks::{Finding, Level};

use crate::config::{self, Config, InputPlan};

/// The config the packaged service runs.
const DEFAULT_CONFIG: &str = "/etc/estuary/estuary.toml";

#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// The config whose interfaces, groups and ports to check (default: the service's, if
    /// present).
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// The AoIP interface, when the config names none.
    #[arg(long)]
    interface: Option<String>,
    /// Findings as a JSON array.
    #[arg(long)]
    json: bool,
}

/// What the config asks of the host.
#[derive(Debug, Default)]
struct Needs {
    interfaces: BTreeSet<String>,
    groups: Vec<Ipv4Addr>,
    udp_ports: BTreeSet<u16>,
    tcp_ports: BTreeSet<u16>,
    /// Largest IP datagram of a configured stream (bytes, IPv4 + UDP + RTP headers included).
    largest_datagram: usize,
}

/// IPv4 + UDP + RTP headers.
const HEADERS: usize = 20 + 8 + 12;
/// SAP (RFC 2974).
const SAP_PORT: u16 = 9875;

fn needs(config: Option<&Config>, interface: Option<&str>) -> Needs {
    let mut needs = Needs {
        // 1 ms of 8 channels of L24 at 48 kHz, the largest AES67 class-A packet.
        largest_datagram: HEADERS + 48 * 8 * 3,
        ..Needs::default()
    };
    needs.interfaces.extend(interface.map(str::to_owned));
    let Some(config) = config else {
        return needs;
    };
    let named = |spec: &str| {
        estuary_io::mcast::resolve_interface(spec)
            .map(|i| i.name)
            .unwrap_or_else(|_| spec.to_owned())
    };
    if let Some(i) = &config.discovery.interface {
        needs.interfaces.insert(named(i.get_ref()));
    }
    if config.discovery.sap {
        needs.udp_ports.insert(SAP_PORT);
    }
    for input in &config.inputs {
        if let Some(i) = &input.interface {
            needs.interfaces.insert(named(i.get_ref()));
        }
        if let Ok(InputPlan::Fixed(stream)) = input.plan() {
            needs.udp_ports.insert(stream.destination.port());
            if let IpAddr::V4(g) = stream.destination.ip()
                && g.is_multicast()
            {
                needs.groups.push(g);
            }
            let frames = stream.frames_per_packet.unwrap_or(48) as usize;
            let bytes =
                frames * usize::from(stream.channels) * stream.format.bytes_per_sample() + HEADERS;
            needs.largest_datagram = needs.largest_datagram.max(bytes);
        }
    }
    for output in &config.outputs {
        if output.mode == Some(config::SrtModeConfig::Listener) {
            needs.udp_ports.insert(output.address.port());
        }
    }
    if config.api.enabled
        && let Ok(addr) = config.api.bind.get_ref().parse::<SocketAddr>()
    {
        needs.tcp_ports.insert(addr.port());
    }
    needs
}

fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Command names of every process (`/proc/*/comm`).
fn processes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .map(|e| read(e.path().join("comm")).trim().to_owned())
        .filter(|c| !c.is_empty())
        .collect()
}

fn governors() -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let gov = std::fs::read_to_string(e.path().join("cpufreq/scaling_governor")).ok()?;
            Some((name, gov))
        })
        .collect();
    out.sort();
    out
}

fn nft_ruleset() -> Option<String> {
    let out = std::process::Command::new("nft")
        .args(["list", "ruleset"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn findings(needs: &Needs, running: bool) -> Vec<Finding> {
    let route = read("/proc/net/route");
    let mut out = Vec::new();
    let mut interfaces: Vec<String> = needs.interfaces.iter().cloned().collect();
    if interfaces.is_empty() {
        out.push(checks::multicast_route(&route, None));
        // No interface named: the kernel's choice is the one to check.
        interfaces.extend(checks::multicast_device(&route));
    } else {
        for iface in &interfaces {
            out.push(checks::multicast_route(&route, Some(iface)));
        }
    }
    let conf = |iface: &str, key: &str| read(format!("/proc/sys/net/ipv4/conf/{iface}/{key}"));
    for iface in &interfaces {
        out.push(checks::rp_filter(
            &conf("all", "rp_filter"),
            iface,
            &conf(iface, "rp_filter"),
        ));
        out.push(checks::mtu(
            iface,
            &read(format!("/sys/class/net/{iface}/mtu")),
            needs.largest_datagram,
        ));
    }
    out.push(checks::rmem_max(
        &read("/proc/sys/net/core/rmem_max"),
        estuary_io::mcast::RECEIVE_BUFFER_BYTES,
    ));
    out.push(checks::igmp(
        &read("/proc/net/igmp"),
        &read("/proc/sys/net/ipv4/igmp_max_memberships"),
        &needs.groups,
        running,
    ));
    let udp: Vec<u16> = checks::bound_udp_ports(&(read("/proc/net/udp") + &read("/proc/net/udp6")));
    let procs = processes();
    out.push(checks::ptp_ports(&udp, &procs));
    out.push(checks::time_daemons(&procs));
    out.push(checks::cpu_governor(&governors()));
    out.push(checks::realtime(
        &read("/proc/self/limits"),
        &read("/proc/self/status"),
    ));
    let udp_ports: Vec<u16> = needs.udp_ports.iter().copied().collect();
    let tcp_ports: Vec<u16> = needs.tcp_ports.iter().copied().collect();
    out.push(checks::firewall(
        nft_ruleset().as_deref(),
        &udp_ports,
        &tcp_ports,
    ));
    out
}

pub fn run(args: DoctorArgs, exit_bad_config: u8) -> anyhow::Result<ExitCode> {
    let path = args.config.or_else(|| {
        Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| DEFAULT_CONFIG.into())
    });
    let config = match &path {
        Some(p) => match config::load(p) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(exit_bad_config));
            }
        },
        None => None,
    };
    let needs = needs(config.as_ref(), args.interface.as_deref());
    let running = processes().iter().filter(|p| *p == "estuary").count() > 1;
    let findings = findings(&needs, running);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&findings)?);
    } else {
        if let Some(p) = &path {
            println!("checking for {}", p.display());
        }
        for f in &findings {
            let tag = match f.level {
                Level::Ok => "  ok   ",
                Level::Info => "  info ",
                Level::Problem => "PROBLEM",
            };
            println!("{tag} {:<15} {}", f.check, f.message);
            if let Some(fix) = &f.fix {
                println!("        {:<15} fix: {fix}", "");
            }
        }
    }
    let problems = findings
        .iter()
        .filter(|f| f.level == Level::Problem)
        .count();
    if !args.json {
        println!("{problems} problem(s)");
    }
    Ok(if problems == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
