//! `estuary impair`: a UDP relay that damages a flow on purpose (loss, burst loss, reordering,
//! duplicates, delay and jitter, corruption, rate limit), reproducibly from a seed, and says
//! exactly what it did. The decisions are the engine's [`Impairer`]; this file is the
//! sockets and the clock.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use estuary_engine::impair::{GilbertElliott, ImpairConfig, ImpairReport, Impairer};
use estuary_engine::time::MonoTime;
use estuary_io::mcast;

use crate::shutdown;

/// Longest wait in one receive call, so a stop request is seen promptly.
const MAX_WAIT: Duration = Duration::from_millis(5);
/// Shortest receive timeout (a zero timeout would mean "block forever").
const MIN_WAIT: Duration = Duration::from_micros(50);

#[derive(Debug, clap::Args)]
pub struct ImpairArgs {
    /// Where to receive: a unicast address to bind (127.0.0.1:6004) or a multicast group to
    /// join (239.69.1.1:5004).
    #[arg(long)]
    listen: SocketAddr,
    /// Interface to join the multicast group on (name or address).
    #[arg(long)]
    listen_interface: Option<String>,
    /// Source-specific multicast: accept the group only from this sender.
    #[arg(long)]
    source: Option<IpAddr>,
    /// Where to send: unicast or multicast address.
    #[arg(long)]
    to: SocketAddr,
    /// Interface to send multicast on (name or address).
    #[arg(long)]
    to_interface: Option<String>,
    /// Multicast TTL of what is sent.
    #[arg(long, default_value_t = 32)]
    ttl: u32,
    /// Independent loss probability: `1%` or `0.01`.
    #[arg(long, default_value = "0", value_parser = parse_probability)]
    loss: f64,
    /// Gilbert-Elliott burst loss: probability of entering the bad state per datagram.
    #[arg(long, value_parser = parse_probability)]
    burst_p: Option<f64>,
    /// Gilbert-Elliott: probability of leaving the bad state (mean burst = 1/r datagrams).
    #[arg(long, default_value = "25%", value_parser = parse_probability)]
    burst_r: f64,
    /// Gilbert-Elliott: loss probability in the bad state.
    #[arg(long, default_value = "100%", value_parser = parse_probability)]
    burst_loss: f64,
    /// Gilbert-Elliott: loss probability in the good state.
    #[arg(long, default_value = "0", value_parser = parse_probability)]
    burst_loss_good: f64,
    /// Probability that a datagram is held back and sent after later ones.
    #[arg(long, default_value = "0", value_parser = parse_probability)]
    reorder: f64,
    /// A reordered datagram leaves after at most this many later ones (drawn in 1..=depth).
    #[arg(long, default_value_t = 3)]
    reorder_depth: u32,
    /// Probability that a datagram is sent twice.
    #[arg(long, default_value = "0", value_parser = parse_probability)]
    duplicate: f64,
    /// Probability that one byte of a datagram is altered.
    #[arg(long, default_value = "0", value_parser = parse_probability)]
    corrupt: f64,
    /// Delay added to every datagram (`10ms`).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    delay: Duration,
    /// Each delay varies uniformly within delay ± jitter (datagrams may overtake each other).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Link rate limit in bit/s (`2M`, `500k`); datagrams queue, and are dropped beyond
    /// --queue-limit of waiting.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<u64>,
    /// Longest wait in the rate-limited queue.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    queue_limit: Duration,
    /// Seed of the random decisions (default: from the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Let this many datagrams through unimpaired first (a receiver locks on them).
    #[arg(long, default_value_t = 0)]
    skip: u64,
    /// Impair only this many datagrams (after --skip), then relay unimpaired.
    #[arg(long)]
    count: Option<u64>,
    /// Stop after this long (default: until SIGINT/SIGTERM).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// List the index (from 0, in arrival order) of every datagram dropped in the JSON
    /// report, as `dropped` (memory grows with the losses).
    #[arg(long)]
    record_drops: bool,
}

/// `1%`, `0.5 %` or `0.01`.
fn parse_probability(text: &str) -> Result<f64, String> {
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|v| v / 100.0),
        None => text.parse::<f64>(),
    }
    .map_err(|e| format!("{text:?} is not a probability (`1%` or `0.01`): {e}"))?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("{text:?} is outside 0..=100 %"))
    }
}

/// `2M`, `500k`, `1.5G` or a plain number of bits per second.
fn parse_rate(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, scale) = match text.char_indices().last() {
        Some((i, 'k' | 'K')) => (&text[..i], 1e3),
        Some((i, 'm' | 'M')) => (&text[..i], 1e6),
        Some((i, 'g' | 'G')) => (&text[..i], 1e9),
        _ => (text, 1.0),
    };
    let value = number
        .trim()
        .parse::<f64>()
        .map_err(|e| format!("{text:?} is not a rate in bit/s (`2M`, `500k`): {e}"))?
        * scale;
    if (1.0..1e13).contains(&value) {
        Ok(value as u64)
    } else {
        Err(format!(
            "{text:?} is not a rate between 1 bit/s and 10 Tbit/s"
        ))
    }
}

impl ImpairArgs {
    fn config(&self) -> ImpairConfig {
        ImpairConfig {
            loss: self.loss,
            burst: self.burst_p.map(|p| GilbertElliott {
                p,
                r: self.burst_r,
                loss_good: self.burst_loss_good,
                loss_bad: self.burst_loss,
            }),
            reorder: self.reorder,
            reorder_depth: self.reorder_depth,
            duplicate: self.duplicate,
            corrupt: self.corrupt,
            delay: self.delay,
            jitter: self.jitter,
            rate_bps: self.rate,
            queue_limit: self.queue_limit,
            impair_from: self.skip,
            impair_until: self.count.map(|n| self.skip.saturating_add(n)),
        }
    }
}

/// The summary line printed at the end (and the JSON `--report`).
fn summary(report: &ImpairReport, args: &ImpairArgs) -> String {
    format!(
        "impair {} -> {} seed {}: received {}, sent {}, lost {} (random {}, burst {}, rate {}), \
         reordered {} (held {}), duplicated {}, corrupted {}, pending {}",
        args.listen,
        args.to,
        report.seed,
        report.received,
        report.sent,
        report.lost(),
        report.lost_random,
        report.lost_burst,
        report.dropped_rate,
        report.reordered,
        report.held,
        report.duplicated,
        report.corrupted,
        report.pending
    )
}

fn report_json(report: &ImpairReport) -> serde_json::Value {
    serde_json::json!({
        "seed": report.seed,
        "received": report.received,
        "sent": report.sent,
        "lost": report.lost(),
        "lost_random": report.lost_random,
        "lost_burst": report.lost_burst,
        "dropped_rate": report.dropped_rate,
        "reordered": report.reordered,
        "held": report.held,
        "duplicated": report.duplicated,
        "corrupted": report.corrupted,
        "pending": report.pending,
    })
}

fn interface(spec: Option<&str>) -> anyhow::Result<Option<mcast::Interface>> {
    spec.map(|s| mcast::resolve_interface(s).with_context(|| format!("interface {s:?}")))
        .transpose()
}

pub fn run(args: ImpairArgs) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut impairer = Impairer::new(args.config(), seed).context("impairments")?;
    if args.record_drops {
        impairer.record_drops();
    }
    let listen_if = interface(args.listen_interface.as_deref())?;
    let to_if = interface(args.to_interface.as_deref())?;
    let input = mcast::open_receive_socket(args.listen, args.source, listen_if.as_ref())
        .with_context(|| format!("cannot receive on {}", args.listen))?;
    input.set_nonblocking(false)?;
    let output = mcast::open_send_socket(args.to, to_if.as_ref(), args.ttl, 0)
        .with_context(|| format!("cannot send to {}", args.to))?;
    let stop = shutdown::install()?;
    tracing::info!(listen = %args.listen, to = %args.to, seed, "impairing");

    let start = Instant::now();
    relay(&input, &output, &mut impairer, || {
        !stop.requested() && args.duration.is_none_or(|d| start.elapsed() < d)
    })?;
    let report = impairer.report();
    println!("{}", summary(&report, &args));
    if let Some(path) = &args.report {
        let mut json = report_json(&report);
        if let Some(drops) = impairer.drops() {
            json["dropped"] = serde_json::json!(drops);
        }
        std::fs::write(path, json.to_string())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Relays `input` to `output` through `impairer` while `keep_going` says so, then sends
/// whatever is still held or queued. `input` must be blocking.
pub fn relay(
    input: &UdpSocket,
    output: &UdpSocket,
    impairer: &mut Impairer,
    keep_going: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    let now = || MonoTime::from_nanos(start.elapsed().as_nanos() as u64);
    let mut buf = vec![0u8; 65_536];
    while keep_going() {
        let wait = impairer
            .next_due()
            .map_or(MAX_WAIT, |due| {
                due.checked_duration_since(now()).unwrap_or_default()
            })
            .clamp(MIN_WAIT, MAX_WAIT);
        input.set_read_timeout(Some(wait))?;
        match input.recv(&mut buf) {
            Ok(n) => impairer.push(now(), buf[..n].to_vec()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(e).context("receive"),
        }
        send_due(impairer, output, now())?;
    }
    for datagram in impairer.drain() {
        send(output, &datagram)?;
    }
    Ok(())
}

fn send_due(impairer: &mut Impairer, output: &UdpSocket, now: MonoTime) -> anyhow::Result<()> {
    while let Some(datagram) = impairer.pop_due(now) {
        send(output, &datagram)?;
    }
    Ok(())
}

fn send(output: &UdpSocket, datagram: &[u8]) -> anyhow::Result<()> {
    match output.send(datagram) {
        Ok(_) => Ok(()),
        // Nobody listening on a unicast destination yet: not the relay's problem.
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(e).context("send"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_and_rates_parse() {
        assert_eq!(parse_probability("1%"), Ok(0.01));
        assert_eq!(parse_probability("0.5 %"), Ok(0.005));
        assert_eq!(parse_probability("0.25"), Ok(0.25));
        assert!(parse_probability("150%").is_err());
        assert!(parse_probability("x").is_err());
        assert_eq!(parse_rate("2M"), Ok(2_000_000));
        assert_eq!(parse_rate("500k"), Ok(500_000));
        assert_eq!(parse_rate("64000"), Ok(64_000));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
