//! RTSP byte streams captured from RAVENNA devices (`../shared/testdata/rtsp`), checked
//! against what `../shared/testdata/INDEX.md` ("RTSP byte streams") says they hold, plus a
//! bounded property test of write → parse and arbitrary read splits.

use std::net::{IpAddr, Ipv4Addr};

use estuary_wire::payload::SampleFormat;
use estuary_wire::rtsp::{Headers, RtspMessage, RtspParser, StartLine};
use estuary_wire::sdp;
use proptest::prelude::*;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn read(rel: &str) -> Vec<u8> {
    let path = format!("{TESTDATA}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Every complete message, and whether the parser then asks for more data.
fn drain(p: &mut RtspParser) -> Vec<RtspMessage> {
    let mut out = Vec::new();
    while let Some(m) = p.next_message().expect("valid RTSP") {
        out.push(m);
    }
    out
}

fn feed_byte_by_byte(bytes: &[u8]) -> Vec<RtspMessage> {
    let mut p = RtspParser::new();
    let mut out = Vec::new();
    for b in bytes {
        p.push(std::slice::from_ref(b));
        out.extend(drain(&mut p));
    }
    out
}

/// INDEX: "the missing 80 bytes are exactly ..." for the mic8 DESCRIBE body.
const MIC8_MISSING: &[u8] =
    b"\r\na=ts-refclk:ptp=IEEE1588-2008:00-0B-72-FF-FE-07-DB-E6:0\r\na=mediaclk:direct=0\r\n";

#[test]
fn mic8_pipelined_partial_describe_waits_then_completes() {
    let bytes = read("rtsp/lawo-mic8-12-pipelined-describe-response-partial.bin");
    let mut p = RtspParser::new();
    p.push(&bytes);
    let first = p.next_message().expect("valid").expect("first response");
    assert_eq!(
        first.start,
        StartLine::Response {
            status: 200,
            reason: "OK".into()
        }
    );
    assert_eq!(first.cseq(), Some(3));
    assert!(first.body.is_empty());
    // The DESCRIBE response is cut inside its body: need more data, not an error.
    assert_eq!(p.next_message(), Ok(None));
    assert_eq!(p.next_message(), Ok(None));

    assert_eq!(MIC8_MISSING.len(), 80);
    p.push(MIC8_MISSING);
    let describe = p.next_message().expect("valid").expect("now complete");
    assert_eq!(p.next_message(), Ok(None));
    assert_eq!(p.buffered(), 0);
    assert_eq!(describe.cseq(), Some(4));
    assert_eq!(describe.status(), Some(200));
    assert_eq!(
        describe.header("Content-Type"),
        Some("application/sdp; charset=utf-8")
    );
    assert_eq!(describe.body.len(), 473);
    let truncated = read("sdp/lawo-mic8-12-rtsp-describe-body-truncated.sdp");
    assert_eq!(describe.body.get(..393), Some(truncated.as_slice()));

    let text = std::str::from_utf8(&describe.body).expect("UTF-8 SDP");
    let session = sdp::parse(text).expect("SDP parses");
    assert_eq!(session.name, "mic8-12");
    assert_eq!(session.origin.session_id, 1_744_662_004_692_777);
    assert_eq!(session.streams.len(), 1);
    let s = &session.streams[0];
    assert_eq!(
        (s.port, s.payload_type, s.format, s.sample_rate, s.channels),
        (5004, 98, SampleFormat::L24, 48_000, 2)
    );
    let c = s.connection.as_ref().expect("media c=");
    assert_eq!(c.address, IpAddr::V4(Ipv4Addr::new(239, 15, 55, 1)));
    assert_eq!(c.ttl, Some(31));
    assert_eq!(s.framecount, Some(sdp::FrameCount::Exact(48)));
    let filter = s.source_filter.as_ref().expect("source-filter");
    assert_eq!(
        filter.sources,
        vec![IpAddr::V4(Ipv4Addr::new(192, 168, 15, 55))]
    );
}

#[test]
fn mic8_byte_by_byte_gives_the_same_messages() {
    let mut bytes = read("rtsp/lawo-mic8-12-pipelined-describe-response-partial.bin");
    bytes.extend_from_slice(MIC8_MISSING);
    let mut whole = RtspParser::new();
    whole.push(&bytes);
    let expected = drain(&mut whole);
    assert_eq!(expected.len(), 2);
    assert_eq!(feed_byte_by_byte(&bytes), expected);
}

#[test]
fn anubis_announce_with_empty_uri() {
    let bytes = read("rtsp/merging-anubis-announce-empty-uri.bin");
    let mut p = RtspParser::new();
    p.push(&bytes);
    let m = p.next_message().expect("valid").expect("complete");
    assert_eq!(p.next_message(), Ok(None));
    assert_eq!(m.method(), Some("ANNOUNCE"));
    assert_eq!(m.uri(), Some(""));
    assert_eq!(m.version, "RTSP/1.0");
    assert_eq!(m.headers.len(), 2);
    assert_eq!(m.header("Connection"), Some("Keep-Alive"));
    assert_eq!(m.header("CONTENT-LENGTH"), Some("516"));
    assert_eq!(m.cseq(), None);
    assert_eq!(m.body.len(), 516);
    assert_eq!(
        m.body,
        read("sdp/merging-anubis-combo-lr-announce-crlf.sdp"),
        "body is the Anubis SDP file"
    );
    let session = sdp::parse(std::str::from_utf8(&m.body).expect("UTF-8")).expect("SDP");
    assert_eq!(session.name, "Anubis Combo LR");
    assert_eq!(session.streams[0].format, SampleFormat::L16);

    assert_eq!(feed_byte_by_byte(&bytes), vec![m.clone()]);
    // The writer keeps the empty URI (two spaces) and the lower-case names.
    let rewritten = m.to_bytes().expect("writable");
    assert!(rewritten.starts_with(b"ANNOUNCE  RTSP/1.0\r\nconnection: Keep-Alive\r\n"));
    assert_eq!(rewritten, bytes);
}

#[test]
fn pipelined_requests_with_blank_lines_between() {
    let bytes = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n\r\n\r\nDESCRIBE rtsp://h/by-id/1 RTSP/1.0\r\ncseq: 2\r\n\r\n";
    let mut p = RtspParser::new();
    p.push(bytes);
    let got = drain(&mut p);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].method(), got[0].cseq()), (Some("OPTIONS"), Some(1)));
    assert_eq!(
        (got[1].uri(), got[1].cseq()),
        (Some("rtsp://h/by-id/1"), Some(2))
    );
}

// ---- property test ----

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9_.-]{0,11}"
}

fn text() -> impl Strategy<Value = String> {
    // Printable, may contain inner spaces and colons, no surrounding blanks.
    "([!-~]([ -~]{0,20}[!-~])?)?"
}

fn message() -> impl Strategy<Value = RtspMessage> {
    let start = prop_oneof![
        (token(), text()).prop_map(|(method, uri)| StartLine::Request { method, uri }),
        (100u16..=999, text()).prop_map(|(status, reason)| StartLine::Response { status, reason }),
    ];
    let headers = proptest::collection::vec((token(), text()), 0..6);
    let body = proptest::collection::vec(any::<u8>(), 0..300);
    (start, headers, body).prop_map(|(start, hs, body)| {
        let mut headers = Headers::default();
        for (n, v) in hs {
            // The writer owns Content-Length.
            if !n.eq_ignore_ascii_case("content-length") {
                headers.append(n, v);
            }
        }
        RtspMessage {
            start,
            version: "RTSP/1.0".into(),
            headers,
            body,
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn write_parse_round_trip_over_any_split(
        msgs in proptest::collection::vec(message(), 1..4),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..8),
    ) {
        let mut bytes = Vec::new();
        for m in &msgs {
            m.write_to(&mut bytes).expect("writable");
        }
        let mut cut_at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cut_at.push(bytes.len());
        cut_at.sort_unstable();
        let mut p = RtspParser::new();
        let mut got = Vec::new();
        let mut from = 0;
        for to in cut_at {
            p.push(&bytes[from..to]);
            from = to;
            while let Some(m) = p.next_message().expect("valid") {
                got.push(m);
            }
        }
        prop_assert_eq!(got.len(), msgs.len());
        for (g, m) in got.iter().zip(&msgs) {
            prop_assert_eq!(&g.start, &m.start);
            prop_assert_eq!(&g.body, &m.body);
            for (n, v) in m.headers.iter() {
                prop_assert!(g.headers.get_all(n).any(|x| x == v));
            }
            // Re-writing what was parsed gives the same bytes.
            let mut again = Vec::new();
            g.write_to(&mut again).expect("writable");
            let mut once = Vec::new();
            m.write_to(&mut once).expect("writable");
            prop_assert_eq!(again, once);
        }
    }
}
