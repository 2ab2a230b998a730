//! Paced tone sender against a real peer (GStreamer's L24 depayloader) and against our
//! own receiver, in a private network namespace.

mod support;

use support::{KillOnDrop, analyse, isolate};

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use estuary_engine::time::MonoTime;
use estuary_io::batch::{BatchReceiver, Poller};
use estuary_io::clock::{monotonic_now, sleep_until};
use estuary_io::mcast::{open_receive_socket, resolve_interface};
use estuary_io::tx::{ToneConfig, ToneSender};
use estuary_wire::payload::SampleFormat;
use estuary_wire::rtp::RtpPacket;

fn tone(dest: SocketAddr, level_dbfs: f64) -> ToneConfig {
    let mut cfg = ToneConfig::new(dest);
    cfg.iface = Some(resolve_interface("lo").expect("lo"));
    cfg.ttl = 1;
    cfg.format = SampleFormat::L24;
    cfg.channels = 2;
    cfg.frequency_hz = 1000.0;
    cfg.level_dbfs = level_dbfs;
    cfg.ssrc = 0x1234_5678;
    cfg.initial_timestamp = 0xffff_ff00; // wraps during the test
    cfg.initial_sequence = 0xfff0;
    cfg
}

#[test]
fn gstreamer_decodes_tone_at_frequency_and_level() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out.raw");
    let level = -12.0;
    let child = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "udpsrc",
            "address=239.69.3.3",
            "port=5008",
            "multicast-iface=lo",
            "num-buffers=1000",
            "caps=application/x-rtp,media=audio,clock-rate=48000,encoding-name=L24,channels=2,payload=98",
            "!",
            "rtpL24depay",
            "!",
            "audioconvert",
            "!",
            "audio/x-raw,format=S32LE",
            "!",
        ])
        .arg("filesink")
        .arg(format!("location={}", out.display()))
        .stdin(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (install gstreamer1.0-tools and plugins-good)");
    let mut child = KillOnDrop(child);
    // Give udpsrc time to join before the first packet.
    std::thread::sleep(Duration::from_millis(700));

    let mut sender =
        ToneSender::spawn(tone("239.69.3.3:5008".parse().expect("group"), level)).expect("spawn");
    // Pacing: packets sent over exactly one second of the monotonic clock.
    let t0 = monotonic_now();
    let p0 = sender.packets_sent();
    sleep_until(MonoTime::from_nanos(t0.as_nanos() + 1_000_000_000));
    let per_second = sender.packets_sent() - p0;

    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.0.try_wait().expect("try_wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "gst-launch did not finish in 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    sender.stop();
    assert!(status.success(), "gst-launch failed: {status}");
    assert_eq!(sender.send_errors(), 0);

    let raw = std::fs::read(&out).expect("gst output");
    let left: Vec<f64> = raw
        .chunks_exact(8)
        .map(|f| f64::from(i32::from_le_bytes([f[0], f[1], f[2], f[3]])) / 2f64.powi(31))
        .collect();
    let right_equal = raw.chunks_exact(8).all(|f| f[0..4] == f[4..8]);
    let (freq, dbfs) = analyse(&left, 48_000.0);
    println!(
        "decoded {} frames: {freq:.4} Hz, {dbfs:.4} dBFS peak; {per_second} packets in 1 s",
        left.len()
    );
    assert_eq!(left.len(), 1000 * 48, "1000 packets of 48 frames");
    assert!(right_equal, "both channels carry the same tone");
    assert!((freq - 1000.0).abs() < 1.0, "frequency {freq}");
    assert!((dbfs - level).abs() < 0.1, "level {dbfs}");
    assert!(
        (990..=1010).contains(&per_second),
        "{per_second} packets in 1 s"
    );
}

/// RTP fields and pacing seen by our own receiver: seq +1, ts +48 (across the wrap),
/// packets 1 ms apart on average, for one stream and for 32 streams on one thread.
#[test]
fn paced_rtp_single_and_multi_stream() {
    isolate();
    for streams in [1usize, 32] {
        let cfgs: Vec<ToneConfig> = (0..streams)
            .map(|i| {
                let mut c = tone(SocketAddr::from(([239, 69, 4, i as u8 + 1], 5004)), -20.0);
                c.ssrc = 0x1000 + i as u32;
                c.channel_step_hz = 100.0;
                c
            })
            .collect();
        let rxs: Vec<_> = cfgs
            .iter()
            .map(|c| open_receive_socket(c.dest, None, c.iface.as_ref()).expect("receive socket"))
            .collect();
        let mut poller = Poller::new(64).expect("epoll");
        for (i, rx) in rxs.iter().enumerate() {
            poller.add(rx, i as u64).expect("register");
        }
        let mut sender = ToneSender::spawn_multi(cfgs).expect("spawn");
        let mut batch = BatchReceiver::new(64);
        let mut per_stream: Vec<Vec<(u16, u32, u64)>> = vec![Vec::new(); streams];
        let end = Instant::now() + Duration::from_millis(1000);
        let mut ready = Vec::with_capacity(64);
        while Instant::now() < end {
            ready.clear();
            ready.extend(poller.wait(Some(Duration::from_millis(10))).expect("wait"));
            for &tok in &ready {
                let i = tok as usize;
                batch.recv(&rxs[i]).expect("recv");
                for p in batch.packets() {
                    let rtp = RtpPacket::parse(p.data).expect("RTP");
                    assert_eq!(rtp.ssrc(), 0x1000 + i as u32);
                    assert_eq!(rtp.payload().len(), 288);
                    per_stream[i].push((rtp.sequence().0, rtp.timestamp().0, p.arrival.as_nanos()));
                }
            }
        }
        sender.stop();
        let sent = sender.packets_sent();
        let mut worst_rate = 1000f64;
        let mut max_gap_ms = 0f64;
        for pkts in &per_stream {
            assert!(pkts.len() > 900, "only {} packets", pkts.len());
            for w in pkts.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "sequence");
                assert_eq!(w[1].1, w[0].1.wrapping_add(48), "timestamp");
                max_gap_ms = max_gap_ms.max((w[1].2 - w[0].2) as f64 / 1e6);
            }
            let span = (pkts[pkts.len() - 1].2 - pkts[0].2) as f64 / 1e9;
            let rate = (pkts.len() - 1) as f64 / span;
            if (rate - 1000.0).abs() > (worst_rate - 1000.0).abs() {
                worst_rate = rate;
            }
        }
        println!(
            "{streams} stream(s): {sent} packets sent, worst per-stream rate {worst_rate:.1}/s, \
             max inter-arrival {max_gap_ms:.2} ms"
        );
        assert!((worst_rate - 1000.0).abs() < 10.0, "rate {worst_rate}");
    }
}
