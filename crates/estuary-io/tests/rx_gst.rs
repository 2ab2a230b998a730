//! Receive from a real peer: GStreamer's RFC 3190 L24 payloader, in a private network
//! namespace (gst-launch-1.0 inherits it from the test thread).

mod support;

use support::KillOnDrop;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use estuary_io::batch::{BatchReceiver, Poller};
use estuary_io::clock::monotonic_now;
use estuary_io::mcast::{open_receive_socket, receive_buffer_size, resolve_interface};
use estuary_io::netns::isolate_thread_network;
use estuary_wire::rtp::RtpPacket;

#[test]
fn receives_gstreamer_l24_stream() {
    isolate_thread_network().expect("private network namespace (tests need root / CAP_SYS_ADMIN)");
    let lo = resolve_interface("lo").expect("lo");
    let group: SocketAddr = "239.69.1.1:5004".parse().expect("group");
    let rx = open_receive_socket(group, None, Some(&lo)).expect("receive socket");
    println!(
        "receive buffer: {} bytes",
        receive_buffer_size(&rx).expect("rcvbuf")
    );

    let t_start = monotonic_now();
    // is-live paces audiotestsrc at real time, so packets arrive 1 ms apart.
    let child = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "audiotestsrc",
            "wave=sine",
            "freq=997",
            "is-live=true",
            "num-buffers=200",
            "samplesperbuffer=48",
            "!",
            "audio/x-raw,format=S24BE,rate=48000,channels=2",
            "!",
            "rtpL24pay",
            "pt=98",
            "min-ptime=1000000",
            "max-ptime=1000000",
            "!",
            "udpsink",
            "host=239.69.1.1",
            "port=5004",
            "auto-multicast=true",
            "multicast-iface=lo",
            "ttl-mc=1",
            "sync=false",
        ])
        .stdin(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (install gstreamer1.0-tools and plugins-good)");
    let mut child = KillOnDrop(child);

    let mut poller = Poller::new(4).expect("epoll");
    poller.add(&rx, 1).expect("register");
    let mut batch = BatchReceiver::new(64);
    let mut seqs = Vec::new();
    let mut arrivals = Vec::new();
    let mut sizes = Vec::new();
    let mut calls = 0usize;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut exited_at: Option<Instant> = None;
    while Instant::now() < deadline {
        let ready = poller
            .wait(Some(Duration::from_millis(100)))
            .expect("wait")
            .count();
        if ready > 0 {
            calls += 1;
            batch.recv(&rx).expect("recvmmsg");
            for p in batch.packets() {
                assert!(!p.truncated);
                assert!(p.kernel_timestamp, "SO_TIMESTAMPNS missing");
                let rtp = RtpPacket::parse(p.data).expect("valid RTP");
                assert_eq!(rtp.payload_type(), 98);
                sizes.push(rtp.payload().len());
                seqs.push(rtp.sequence().0);
                arrivals.push(p.arrival.as_nanos());
            }
        }
        // Stop 300 ms after gst exits (the socket is drained by then).
        if exited_at.is_none() && child.0.try_wait().expect("try_wait").is_some() {
            exited_at = Some(Instant::now());
        }
        if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(300)) {
            break;
        }
    }
    let t_end = monotonic_now();
    let n = seqs.len();
    let span_ms = (arrivals.last().copied().unwrap_or(0) - arrivals.first().copied().unwrap_or(0))
        as f64
        / 1e6;
    println!(
        "received {n} packets in {calls} recvmmsg calls, payload sizes {:?}, arrival span {span_ms:.1} ms",
        {
            let mut s = sizes.clone();
            s.dedup();
            s
        }
    );
    assert!(n >= 190, "only {n} packets");
    // 48 frames × 2 channels × 3 bytes.
    assert!(sizes.iter().all(|&s| s == 288), "sizes {sizes:?}");
    for w in seqs.windows(2) {
        assert_eq!(w[1], w[0].wrapping_add(1), "sequence gap or reorder");
    }
    assert!(
        arrivals.windows(2).all(|w| w[1] >= w[0]),
        "arrival went backwards"
    );
    assert!(
        arrivals
            .iter()
            .all(|&a| a >= t_start.as_nanos() && a <= t_end.as_nanos())
    );
    // Live source: 200 ms of audio takes about 200 ms to arrive.
    assert!(
        (150.0..400.0).contains(&span_ms),
        "arrival span {span_ms} ms"
    );
}
