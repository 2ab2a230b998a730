//! The DESCRIBE client against scripted servers that replay what real RAVENNA devices send
//! (`../shared/testdata/rtsp`): a pushed ANNOUNCE, an extra response, a body split across
//! writes; and against servers that stall or hang up.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use estuary_io::netns::isolate_thread_network;
use estuary_io::ravenna::{RavennaError, describe, describe_addr};
use estuary_wire::payload::SampleFormat;
use estuary_wire::rtsp::RtspParser;
use estuary_wire::sdp;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn read(rel: &str) -> Vec<u8> {
    let path = format!("{TESTDATA}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

fn isolate() {
    isolate_thread_network().expect("private network namespace (tests need root / CAP_SYS_ADMIN)");
}

/// Accepts one connection, reads one request and hands its CSeq and the stream to `script`.
fn scripted_server(
    script: impl FnOnce(TcpStream, u32) + Send + 'static,
) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let handle = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        let mut parser = RtspParser::new();
        let mut buf = [0u8; 1024];
        let request = loop {
            let n = stream.read(&mut buf).expect("read request");
            assert!(n > 0, "client closed before its request");
            parser.push(&buf[..n]);
            if let Some(m) = parser.next_message().expect("client sends RTSP") {
                break m;
            }
        };
        let line = format!(
            "{} {} accept={:?}",
            request.method().unwrap_or_default(),
            request.uri().unwrap_or_default(),
            request.header("Accept")
        );
        script(stream, request.cseq().expect("client sends CSeq"));
        line
    });
    (addr, handle)
}

/// INDEX: the 80 bytes missing from the mic8 capture.
const MIC8_MISSING: &[u8] =
    b"\r\na=ts-refclk:ptp=IEEE1588-2008:00-0B-72-FF-FE-07-DB-E6:0\r\na=mediaclk:direct=0\r\n";

#[test]
fn describe_survives_announce_extra_response_and_split_body() {
    isolate();
    let announce = read("rtsp/merging-anubis-announce-empty-uri.bin");
    let mic8 = read("rtsp/lawo-mic8-12-pipelined-describe-response-partial.bin");
    let (addr, server) = scripted_server(move |mut s, cseq| {
        // The capture answers CSeq 4; answer the client's CSeq instead.
        let text = String::from_utf8(mic8).expect("ASCII capture");
        let ours = text.replace("cseq: 4", &format!("cseq: {cseq}"));
        s.write_all(&announce).expect("write");
        s.write_all(ours.as_bytes()).expect("write");
        std::thread::sleep(Duration::from_millis(150));
        s.write_all(MIC8_MISSING).expect("write");
        // Keep the connection open: the client must stop on Content-Length, not EOF.
        std::thread::sleep(Duration::from_millis(500));
    });
    let started = Instant::now();
    let sdp_text = describe(
        &format!("rtsp://{addr}"),
        "/by-name/mic8-12",
        Duration::from_secs(5),
    )
    .expect("DESCRIBE");
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "waited for EOF"
    );
    let request = server.join().expect("server");
    assert_eq!(
        request,
        format!("DESCRIBE rtsp://{addr}/by-name/mic8-12 accept=Some(\"application/sdp\")")
    );
    assert_eq!(sdp_text.len(), 473);
    assert!(sdp_text.ends_with("a=mediaclk:direct=0\r\n"));
    let session = sdp::parse(&sdp_text).expect("SDP");
    assert_eq!(session.name, "mic8-12");
    let st = &session.streams[0];
    assert_eq!(
        (st.format, st.sample_rate, st.channels, st.port),
        (SampleFormat::L24, 48_000, 2, 5004)
    );
}

#[test]
fn describe_reports_status_timeout_and_hang_up() {
    isolate();
    let (addr, server) = scripted_server(|mut s, cseq| {
        let answer = format!("RTSP/1.0 404 Not Found\r\nCSeq: {cseq}\r\n\r\n");
        s.write_all(answer.as_bytes()).expect("write");
    });
    let err = describe_addr(addr, "/by-name/a b", Duration::from_secs(5)).expect_err("404");
    server.join().expect("server");
    assert!(
        matches!(&err, RavennaError::Status { status: 404, uri, .. } if uri.ends_with("/by-name/a%20b")),
        "{err:?}"
    );

    let (addr, server) = scripted_server(|_s, _| std::thread::sleep(Duration::from_millis(800)));
    let started = Instant::now();
    let err = describe_addr(addr, "/x", Duration::from_millis(300)).expect_err("stall");
    assert!(matches!(err, RavennaError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(700));
    server.join().expect("server");

    let (addr, server) = scripted_server(|s, _| drop(s));
    let err = describe_addr(addr, "/x", Duration::from_secs(5)).expect_err("hang-up");
    assert!(matches!(err, RavennaError::Closed { .. }), "{err:?}");
    server.join().expect("server");
}

#[test]
fn server_updates_and_removes_sessions() {
    isolate();
    let server =
        estuary_io::ravenna::RtspServer::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = server.local_addr();
    let sdp_v1 = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Mix A\r\nt=0 0\r\n";
    let sdp_v2 = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=Mix A\r\nt=0 0\r\n";
    let id = server.set_session("Mix A", sdp_v1);
    let other = server.set_session("Mix B", sdp_v1);
    assert_ne!(id, other);
    assert_eq!(
        server.set_session("Mix A", sdp_v2),
        id,
        "update keeps the id"
    );
    assert_eq!(server.session_names(), vec!["Mix A", "Mix B"]);
    let t = Duration::from_secs(5);
    assert_eq!(
        describe_addr(addr, "/by-name/Mix A", t).expect("by name"),
        sdp_v2
    );
    assert_eq!(
        describe_addr(addr, &format!("/by-id/{id}"), t).expect("by id"),
        sdp_v2
    );
    assert!(server.remove_session("Mix A"));
    assert!(!server.remove_session("Mix A"));
    let err = describe_addr(addr, "/by-name/Mix A", t).expect_err("removed");
    assert!(
        matches!(err, RavennaError::Status { status: 404, .. }),
        "{err:?}"
    );
    drop(server);
    // Stopped on drop: nobody listens any more.
    assert!(TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err());
}

#[test]
fn describe_over_ipv6_literal() {
    isolate();
    let server =
        estuary_io::ravenna::RtspServer::bind("[::1]:0".parse().expect("addr")).expect("bind ::1");
    let sdp_text = "v=0\r\no=- 1 1 IN IP6 ::1\r\ns=V6\r\nt=0 0\r\n";
    let id = server.set_session("V6", sdp_text);
    let port = server.local_addr().port();
    let got = describe(
        &format!("rtsp://[::1]:{port}/by-id/{id}"),
        "",
        Duration::from_secs(5),
    )
    .expect("DESCRIBE over IPv6");
    assert_eq!(got, sdp_text);
}
