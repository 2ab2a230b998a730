//! `estuary bench ptp`: the embedded PTP follower's error against a software-timestamped
//! `ptp4l` grandmaster across a veth pair, and `ptp4l`'s own follower on the same link in
//! the same run.
//!
//! Both ends timestamp from the same host clock (a network namespace does not have its
//! own), so the follower's true error is measurable: PTP time − host UTC, less the whole
//! seconds of the TAI−UTC offset. ptp4l's follower runs with `free_running 1` (it must not
//! steer the host clock), so its "master offset" lines are its raw measurement error.

use std::time::{Duration, Instant};

use anyhow::Context as _;

use estuary_io::clock::realtime_now_ns;
use estuary_io::netns::{PeerNamespace, isolate_thread_network};
use estuary_io::ptp::{PtpProfile, PtpRole, PtpService, PtpSettings};
use estuary_io::ptp4l::{Ptp4l, Ptp4lOptions};

#[derive(Debug, Clone, clap::Args)]
pub struct PtpBenchArgs {
    /// Measured seconds per follower, after the lock.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Samples of Estuary's error per second.
    #[arg(long, default_value_t = 10)]
    rate: u32,
    /// Skip ptp4l's own follower.
    #[arg(long)]
    no_peers: bool,
}

pub fn ptp(args: &PtpBenchArgs) -> anyhow::Result<()> {
    isolate_thread_network().context("private network namespace (needs root)")?;
    let dir = tempfile::tempdir()?;
    let ns = PeerNamespace::create("bench").context("veth pair")?;
    let _gm = Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        Ptp4lOptions::default(),
        dir.path(),
    )?;
    println!(
        "ptp4l grandmaster (software timestamps, 8 Sync/s) on a veth pair; {} s per follower",
        args.seconds
    );

    let started = Instant::now();
    let ptp = PtpService::start(PtpSettings {
        role: PtpRole::Follower,
        profile: PtpProfile::Aes67,
        domain: 0,
        interface: Some(PeerNamespace::LOCAL_INTERFACE.into()),
        priority1: 128,
        priority2: 128,
        dscp: 46,
    })?;
    while !ptp.snapshot().locked {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "Estuary did not lock within 120 s: {:?}",
            ptp.snapshot()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let lock_time = started.elapsed();
    let period = Duration::from_secs(1) / args.rate.max(1);
    let samples = args.seconds * u64::from(args.rate.max(1));
    let mut errors = Vec::new();
    let mut discarded = 0u64;
    for _ in 0..samples {
        std::thread::sleep(period);
        let (before, t, after) = loop {
            let before = realtime_now_ns();
            let t = ptp.now_ns();
            let after = realtime_now_ns();
            // A reading preempted between the two host clock reads says nothing about PTP.
            if after - before < 20_000 {
                break (before, t, after);
            }
            discarded += 1;
        };
        let diff = i128::from(t) - (i128::from(before) + i128::from(after)) / 2;
        let whole = (diff + 500_000_000).div_euclid(1_000_000_000);
        errors.push((diff - whole * 1_000_000_000) as f64);
    }
    let snap = ptp.snapshot();
    drop(ptp);
    let ours = Distribution::of(&errors);
    println!(
        "Estuary follower: locked after {:.1} s; error ns: {ours}; servo steps {}, lock losses {}, \
         frequency {:+.3} ppm; {discarded} preempted readings retaken",
        lock_time.as_secs_f64(),
        snap.steps,
        snap.lock_losses,
        snap.frequency_ppm
    );

    if !args.no_peers {
        let mut peer = Ptp4l::spawn(
            std::process::Command::new("ptp4l"),
            PeerNamespace::LOCAL_INTERFACE,
            Ptp4lOptions {
                follower: true,
                ..Ptp4lOptions::default()
            },
            dir.path(),
        )?;
        // 8 Sync per second; the first measurements precede the path delay.
        let wanted = 8 + args.seconds as usize * 8;
        let deadline = Instant::now() + Duration::from_secs(args.seconds + 60);
        while peer.master_offsets_ns().len() < wanted && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        peer.kill();
        let offsets: Vec<f64> = peer
            .master_offsets_ns()
            .into_iter()
            .skip(8)
            .map(|o| o as f64)
            .collect();
        anyhow::ensure!(
            !offsets.is_empty(),
            "ptp4l measured nothing: {:?}",
            peer.log()
        );
        let theirs = Distribution::of(&offsets);
        println!("ptp4l -s follower (free running): error ns: {theirs}");
        println!(
            "|error| p99: Estuary {:.0} ns, ptp4l {:.0} ns ({:.2}×)",
            ours.p99,
            theirs.p99,
            ours.p99 / theirs.p99.max(1.0)
        );
    }
    Ok(())
}

/// |error| quantiles and the mean (signed).
#[derive(Debug, Clone, Copy)]
struct Distribution {
    n: usize,
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
}

impl Distribution {
    fn of(values: &[f64]) -> Self {
        let mut abs: Vec<f64> = values.iter().map(|v| v.abs()).collect();
        abs.sort_by(f64::total_cmp);
        let at = |q: f64| abs[((abs.len() - 1) as f64 * q).round() as usize];
        Self {
            n: values.len(),
            mean: values.iter().sum::<f64>() / values.len() as f64,
            p50: at(0.5),
            p99: at(0.99),
            max: abs[abs.len() - 1],
        }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "n {} mean {:+.0}, |error| p50 {:.0} p99 {:.0} max {:.0}",
            self.n, self.mean, self.p50, self.p99, self.max
        )
    }
}
