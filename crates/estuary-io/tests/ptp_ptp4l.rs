//! The embedded PTP clock against linuxptp's `ptp4l` (software timestamps) across a veth
//! pair between two network namespaces.

mod support;

use std::time::{Duration, Instant};

use estuary_io::clock::realtime_now_ns;
use estuary_io::netns::PeerNamespace;
use estuary_io::ptp::{PtpProfile, PtpRole, PtpService, PtpSettings};
use estuary_io::ptp4l::{Ptp4l, Ptp4lOptions};

fn settings(role: PtpRole) -> PtpSettings {
    PtpSettings {
        role,
        profile: PtpProfile::Aes67,
        domain: 0,
        interface: Some(PeerNamespace::LOCAL_INTERFACE.into()),
        priority1: 128,
        priority2: 128,
        dscp: 46,
    }
}

/// PTP time − host UTC, less whole seconds (the TAI−UTC offset): the follower's error
/// against ptp4l, which timestamps from the same host clock.
fn residual_ns(ptp: &PtpService) -> i64 {
    let before = realtime_now_ns();
    let t = ptp.now_ns();
    let after = realtime_now_ns();
    let diff = t as i128 - ((before as i128 + after as i128) / 2);
    let r = diff.rem_euclid(1_000_000_000) as i64;
    if r > 500_000_000 {
        r - 1_000_000_000
    } else {
        r
    }
}

#[test]
fn follows_a_ptp4l_grandmaster() {
    support::isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = PeerNamespace::create("ptpf").expect("veth pair");
    let gm = Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        Ptp4lOptions::default(),
        dir.path(),
    )
    .expect("ptp4l");
    let ptp = PtpService::start(settings(PtpRole::Follower)).expect("PTP follower");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ptp.snapshot().locked {
        assert!(
            Instant::now() < deadline,
            "not locked after 60 s: {:?}\nptp4l:\n{}",
            ptp.snapshot(),
            gm.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let snap = ptp.snapshot();
    assert_eq!(snap.port_state, "slave");
    assert_eq!(
        snap.grandmaster,
        Some(ns.peer_ptp_identity().expect("peer MAC"))
    );
    let mut residuals: Vec<i64> = (0..40)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(100));
            residual_ns(&ptp)
        })
        .collect();
    residuals.sort_by_key(|r| r.abs());
    let p50 = residuals[residuals.len() / 2];
    let max = residuals[residuals.len() - 1];
    let snap = ptp.snapshot();
    println!(
        "locked: offset {:?} ns, path delay {:?} ns, freq {:.3} ppm, steps {}; \
         PTP time − host clock: p50 {p50} ns, max {max} ns",
        snap.offset_ns, snap.mean_path_delay_ns, snap.frequency_ppm, snap.steps
    );
    assert!(snap.locked, "lock lost: {snap:?}");
    // Same host clock on both sides, so this is the follower's true error.
    assert!(
        max.abs() < 250_000,
        "PTP time off the grandmaster's by {max} ns"
    );
}

#[test]
fn ptp4l_follows_estuary_as_grandmaster() {
    support::isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = PeerNamespace::create("ptpg").expect("veth pair");
    let ptp = PtpService::start(settings(PtpRole::Grandmaster)).expect("PTP grandmaster");
    let mut follower = Ptp4l::spawn(
        ns.command("ptp4l"),
        PeerNamespace::PEER_INTERFACE,
        Ptp4lOptions {
            follower: true,
            ..Ptp4lOptions::default()
        },
        dir.path(),
    )
    .expect("ptp4l");
    let deadline = Instant::now() + Duration::from_secs(60);
    // ptp4l's first measurements come before it knows the path delay.
    while follower.master_offsets_ns().len() < 48 {
        assert!(
            Instant::now() < deadline,
            "ptp4l did not lock within 60 s; ours: {:?}\nptp4l:\n{}",
            ptp.snapshot(),
            follower.log().join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    follower.kill();
    let log = follower.log();
    let mut offsets = follower.master_offsets_ns().split_off(8);
    offsets.sort_by_key(|o| o.abs());
    let max = offsets[offsets.len() - 1];
    println!(
        "ptp4l locked to Estuary: {} offsets, p50 {} ns, max {max} ns",
        offsets.len(),
        offsets[offsets.len() / 2]
    );
    let snap = ptp.snapshot();
    assert_eq!(snap.port_state, "master");
    assert_eq!(snap.grandmaster, Some(snap.clock_identity));
    let ours = estuary_io::ptp::format_identity(&snap.clock_identity).to_lowercase();
    let ours_ptp4l = format!(
        "{}.{}.{}",
        ours[0..8].replace('-', ""),
        ours[9..14].replace('-', ""),
        ours[15..].replace('-', "")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("new foreign master") && l.contains(&ours_ptp4l)),
        "ptp4l never saw {ours_ptp4l}:\n{}",
        log.join("\n")
    );
    assert!(
        max.abs() < 250_000,
        "ptp4l offset to Estuary up to {max} ns"
    );
}
