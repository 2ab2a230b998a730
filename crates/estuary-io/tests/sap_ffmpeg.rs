//! SAP against FFmpeg, each test in its own network namespace: FFmpeg's SAP muxer
//! announces to our listener, and FFmpeg's SAP demuxer finds our announcement and plays
//! the tone it describes.

mod support;

use support::{KillOnDrop, analyse, isolate};

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use estuary_io::mcast::resolve_interface;
use estuary_io::sap::{
    SAP_GROUP_GLOBAL_V4, SapAnnouncer, SapAnnouncerConfig, SapListener, SapListenerConfig,
    SapSession,
};
use estuary_io::tx::{ToneConfig, ToneSender};
use estuary_wire::payload::SampleFormat;
use estuary_wire::sap::{MessageType, SapPacket};
use estuary_wire::sdp;

fn listener() -> SapListener {
    SapListener::open(&SapListenerConfig {
        iface: Some(resolve_interface("lo").expect("lo")),
        timeout: Some(Duration::from_millis(200)),
        ..SapListenerConfig::default()
    })
    .expect("SAP listener")
}

/// The next packet matching `want` within `within`.
fn wait_for(
    l: &mut SapListener,
    within: Duration,
    want: impl Fn(&SapPacket) -> bool,
) -> Option<(SapPacket, SocketAddr)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some((p, from)) = l.recv().expect("recv")
            && want(&p)
        {
            return Some((p, from));
        }
    }
    None
}

#[test]
fn ffmpeg_announcement_and_deletion_are_decoded() {
    isolate();
    let mut l = listener();
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000"])
        .args(["-ac", "2", "-c:a", "pcm_s24be", "-f", "sap"])
        .arg("sap://239.69.7.7:5004?announce_addr=224.2.127.254&ttl=1")
        .stdin(Stdio::null())
        .spawn()
        .expect("ffmpeg (install the Debian ffmpeg package)");
    let mut child = KillOnDrop(child);

    let (ann, from) = wait_for(&mut l, Duration::from_secs(10), |p| {
        p.message_type == MessageType::Announce
    })
    .expect("an announcement from FFmpeg within 10 s");
    assert_eq!(ann.version, 1);
    assert_ne!(ann.msg_id_hash, 0);
    assert_eq!(ann.payload_type.as_deref(), Some("application/sdp"));
    let text = ann.sdp().expect("UTF-8 SDP");
    let desc = sdp::parse(text).unwrap_or_else(|e| panic!("FFmpeg SDP: {e}\n{text}"));
    let s = desc.streams.first().expect("one audio stream");
    assert_eq!(
        (s.format, s.sample_rate, s.channels),
        (SampleFormat::L24, 48_000, 2),
        "{text}"
    );
    assert_eq!(s.port, 5004, "{text}");
    let conn = s.connection.expect("c=");
    assert_eq!(conn.address, "239.69.7.7".parse::<IpAddr>().expect("ip"));
    // FFmpeg takes the origin from its socket's local address: the datagram's source.
    assert_eq!(ann.origin, from.ip(), "SAP origin vs UDP source");

    // SIGINT makes FFmpeg write its trailer, and the SAP muxer sends a deletion.
    // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
    let rc = unsafe { libc::kill(child.0.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let (del, _) = wait_for(&mut l, Duration::from_secs(5), |p| {
        p.message_type == MessageType::Delete
    })
    .expect("a deletion after SIGINT");
    assert_eq!(
        del.key(),
        ann.key(),
        "the deletion names the announced session"
    );
    let status = child.0.wait().expect("wait");
    println!("ffmpeg exit {status}; listener {:?}", l.stats());
    let st = l.stats();
    assert!(
        st.decoded >= 2 && st.malformed == 0 && st.encrypted == 0,
        "{st:?}"
    );
}

#[test]
fn ffmpeg_finds_our_announcement_and_plays_the_tone() {
    isolate();
    let lo = resolve_interface("lo").expect("lo");
    let level = -12.0;
    let dest: SocketAddr = "239.69.8.8:5004".parse().expect("dest");
    let mut tone = ToneConfig::new(dest);
    tone.iface = Some(lo.clone());
    tone.ttl = 1;
    tone.format = SampleFormat::L24;
    tone.channels = 2;
    tone.level_dbfs = level;
    tone.payload_type = 98;
    let origin: IpAddr = "127.0.0.1".parse().expect("ip");
    let text = sdp::write_aes67_sdp(&sdp::SenderSdp {
        session_id: 4242,
        session_version: 1,
        origin_address: origin,
        name: "estuary SAP test".into(),
        info: None,
        destination: dest.ip(),
        ttl: 1,
        port: dest.port(),
        payload_type: tone.payload_type,
        format: tone.format,
        sample_rate: tone.sample_rate,
        channels: tone.channels,
        ptime_ms: 1.0,
        framecount: Some(48),
        clock_domain: None,
        ptp: None,
        local_mac: [0; 6],
        media_clock_offset: 0,
        ..sdp::SenderSdp::default()
    });

    let mut sender = ToneSender::spawn(tone).expect("tone");
    let mut announcer = SapAnnouncer::spawn(SapAnnouncerConfig {
        base_interval: Duration::from_secs(1),
        seed: 7,
    })
    .expect("announcer");
    announcer
        .set(
            "tone",
            SapSession {
                sdp: text.clone(),
                dest: SocketAddr::new(SAP_GROUP_GLOBAL_V4.into(), 9875),
                iface: Some(lo),
                ttl: 1,
                origin: None,
            },
        )
        .expect("set");

    // FFmpeg's SAP demuxer listens on 224.2.127.254:9875 by default.
    let child = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-i", "sap://224.2.127.254"])
        .args(["-t", "1", "-f", "s32le", "-c:a", "pcm_s32le", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let stderr = child.0.stderr.take().expect("stderr");
    let read_all = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let (stdout, stderr) = (read_all(Box::new(stdout)), read_all(Box::new(stderr)));
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "ffmpeg did not finish in 20 s");
        std::thread::sleep(Duration::from_millis(20));
    };
    let audio = stdout.join().expect("stdout reader");
    let errors = String::from_utf8_lossy(&stderr.join().expect("stderr reader")).into_owned();
    sender.stop();
    announcer.stop();
    assert!(
        status.success(),
        "ffmpeg failed: {status}\n{errors}\nSDP:\n{text}"
    );
    let stats = announcer.stats();
    assert!(
        stats.announcements >= 1 && stats.deletions == 1,
        "{stats:?}"
    );
    assert_eq!(stats.send_errors, 0);

    let left: Vec<f64> = audio
        .chunks_exact(8)
        .map(|f| f64::from(i32::from_le_bytes([f[0], f[1], f[2], f[3]])) / 2f64.powi(31))
        .collect();
    let right_equal = audio.chunks_exact(8).all(|f| f[0..4] == f[4..8]);
    let (freq, dbfs) = analyse(&left, 48_000.0);
    println!(
        "FFmpeg decoded {} frames: {freq:.3} Hz, {dbfs:.3} dBFS",
        left.len()
    );
    assert!(
        left.len() >= 47_000 && left.len() <= 48_100,
        "{} frames",
        left.len()
    );
    assert!(right_equal, "both channels carry the same tone");
    assert!((freq - 1000.0).abs() < 1.0, "frequency {freq}");
    assert!((dbfs - level).abs() < 0.2, "level {dbfs}");
}
