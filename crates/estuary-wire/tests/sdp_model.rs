//! Hand-written SDPs for the rules the corpus does not exercise: `c=` precedence and
//! suffixes, RFC 7273 inheritance, `channel-order` checks, ST 2110-30 levels, and the writer.

use std::net::IpAddr;
use std::time::Duration;

use estuary_wire::payload::SampleFormat;
use estuary_wire::sdp::{
    self, ChannelGroup, ChannelOrder, Connection, FrameCount, Level, RefClock, SdpError,
    SdpWarning, SenderSdp, St2110_10Issue,
};

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=test\r\n";

#[test]
fn connection_precedence_and_suffixes() {
    let text = format!(
        "{HEAD}c=IN IP4 239.1.1.1/16/3\r\nt=0 0\r\n\
         m=audio 5004 RTP/AVP 96\r\nc=IN IP6 ff3e::1/2\r\na=rtpmap:96 L24/48000/2\r\n\
         m=audio 5006 RTP/AVP 97\r\na=rtpmap:97 L16/96000/4\r\n"
    );
    let d = sdp::parse(&text).expect("valid");
    assert_eq!(d.streams.len(), 2);
    assert_eq!(
        d.streams[0].connection,
        Some(Connection {
            address: ip("ff3e::1"),
            ttl: None,
            count: Some(2)
        })
    );
    assert_eq!(
        d.streams[1].connection,
        Some(Connection {
            address: ip("239.1.1.1"),
            ttl: Some(16),
            count: Some(3)
        })
    );
    assert_eq!(d.streams[1].format, SampleFormat::L16);
    assert_eq!(d.streams[1].conformance_level(), Some(Level::AX));
    // The writer keeps both suffix forms.
    let out = d.to_sdp_string();
    assert!(out.contains("c=IN IP6 ff3e::1/2\r\n"), "{out}");
    assert!(out.contains("c=IN IP4 239.1.1.1/16/3\r\n"), "{out}");
}

#[test]
fn ipv6_with_ttl_is_rejected_at_its_line() {
    let text = format!(
        "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\nc=IN IP6 ff3e::1/5/2\r\n\
         a=rtpmap:96 L24/48000/2\r\n"
    );
    match sdp::parse(&text) {
        Err(SdpError::InvalidField { line: 6, field, .. }) => {
            assert_eq!(field, "c= connection-address");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn rfc7273_session_values_are_inherited_and_overridden() {
    let text = format!(
        "{HEAD}t=0 0\r\na=ts-refclk:ptp=IEEE1588-2008:00-1D-C1-FF-FE-00-00-01:0\r\n\
         a=mediaclk:direct=0\r\na=clock-domain:PTPv2 0\r\na=sync-time:1000\r\n\
         m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/48000/2\r\n\
         m=audio 5006 RTP/AVP 96\r\na=rtpmap:96 L24/48000/2\r\n\
         a=ts-refclk:localmac=02-00-00-AA-BB-CC\r\na=mediaclk:direct=77 rate=48000/1\r\n\
         a=clock-domain:PTPv2 5\r\na=sync-time:18446744073709551615\r\n"
    );
    let d = sdp::parse(&text).expect("valid");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    let (a, b) = (&d.streams[0], &d.streams[1]);
    assert_eq!(
        (a.media_clock_offset, a.clock_domain, a.sync_time),
        (Some(0), Some(0), Some(1000))
    );
    assert!(a.is_st2110_10_compliant());
    assert_eq!(
        (b.media_clock_offset, b.clock_domain, b.sync_time),
        (Some(77), Some(5), Some(u64::MAX))
    );
    assert_eq!(
        b.ts_refclk,
        Some(RefClock::LocalMac([2, 0, 0, 0xaa, 0xbb, 0xcc]))
    );
    assert_eq!(
        b.st2110_10_compliance(),
        Err(St2110_10Issue::MediaClockOffset(77))
    );
    assert_eq!(d.clock_domain, Some(0));
    // Only the differing media value is written again; the inherited one comes back.
    let out = d.to_sdp_string();
    assert_eq!(out.matches("a=clock-domain:").count(), 2, "{out}");
    assert!(out.contains("a=ts-refclk:localmac=02-00-00-AA-BB-CC\r\n"));
    let mut back = sdp::parse(&out).expect("own output");
    back.warnings.clear();
    assert_eq!(back, d);
}

#[test]
fn localmac_clock_is_not_st2110_10() {
    let text = format!(
        "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/48000/2\r\n\
         a=ts-refclk:localmac=02-00-00-AA-BB-CC\r\na=mediaclk:direct=0\r\n"
    );
    let d = sdp::parse(&text).expect("valid");
    assert_eq!(
        d.streams[0].st2110_10_compliance(),
        Err(St2110_10Issue::NotPtp)
    );
}

#[test]
fn channel_order_mismatch_and_unknown_convention_warn() {
    let text = format!(
        "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/48000/5\r\n\
         a=fmtp:96 TSMODE=SAMP; channel-order=SMPTE2110.(51,ST)\r\n\
         m=audio 5006 RTP/AVP 97\r\na=rtpmap:97 L24/48000/2\r\n\
         a=fmtp:97 channel-order=SVIP.(ST)\r\n"
    );
    let d = sdp::parse(&text).expect("valid");
    let a = &d.streams[0];
    assert_eq!(
        a.channel_order.as_ref().map(|o| o.symbols.clone()),
        Some(vec![ChannelGroup::Surround51, ChannelGroup::Stereo])
    );
    assert_eq!(a.channel_labels(), None);
    assert!(d.warnings.contains(&SdpWarning::ChannelCountMismatch {
        line: 7,
        channel_order: 8,
        rtpmap: 5
    }));
    assert_eq!(d.streams[1].channel_order, None);
    assert!(d.warnings.iter().any(|w| matches!(
        w,
        SdpWarning::IgnoredAttribute { line: 10, attribute, value }
            if attribute == "fmtp" && value == "SVIP.(ST)"
    )));
}

#[test]
fn framecount_forms() {
    let with = |fc: &str| {
        let text = format!(
            "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/48000/2\r\n\
             a=ptime:0.12\r\na=framecount:{fc}\r\n"
        );
        sdp::parse(&text).expect("valid")
    };
    let d = with("6-48");
    let s = &d.streams[0];
    assert_eq!(s.framecount, Some(FrameCount::Range { min: 6, max: 48 }));
    assert_eq!(s.frames_per_packet(), Some(6));
    assert_eq!(s.packet_time(), Some(Duration::from_micros(125)));
    assert_eq!(s.conformance_level(), Some(Level::B));
    for bad in ["0", "48-6", "x", "-5", "5-"] {
        let d = with(bad);
        assert_eq!(d.streams[0].framecount, None, "{bad}");
        assert!(
            d.warnings.iter().any(|w| matches!(
                w,
                SdpWarning::IgnoredAttribute { line: 8, attribute, .. } if attribute == "framecount"
            )),
            "{bad}: {:?}",
            d.warnings
        );
    }
}

#[test]
fn conformance_levels() {
    let level = |rate: u32, ch: u16, ptime: &str| {
        let text = format!(
            "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/{rate}/{ch}\r\n\
             a=ptime:{ptime}\r\n"
        );
        sdp::parse(&text).expect("valid").streams[0].conformance_level()
    };
    assert_eq!(level(48_000, 8, "1"), Some(Level::A));
    assert_eq!(level(48_000, 9, "1"), None);
    assert_eq!(level(48_000, 8, "0.125"), Some(Level::B));
    assert_eq!(level(48_000, 64, "0.125"), Some(Level::C));
    assert_eq!(level(48_000, 65, "0.125"), None);
    assert_eq!(level(96_000, 4, "1"), Some(Level::AX));
    assert_eq!(level(96_000, 5, "1"), None);
    assert_eq!(level(96_000, 8, "0.125"), Some(Level::BX));
    assert_eq!(level(96_000, 32, "0.125"), Some(Level::CX));
    assert_eq!(level(96_000, 33, "0.125"), None);
    assert_eq!(level(48_000, 2, "0.25"), None);
    assert_eq!(level(44_100, 2, "1"), None);
}

#[test]
fn keywords_and_info_labels() {
    let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=Dev : 2\r\ni=2 channels: Left, Right\r\n\
         c=IN IP4 239.69.1.1/32\r\nt=0 0\r\na=keywds:Dante\r\n\
         m=audio 5004 RTP/AVP 97\r\na=rtpmap:97 L24/48000/2\r\n\
         m=audio 5006 RTP/AVP 97\r\ni=1 channel: Talkback\r\na=rtpmap:97 L24/48000/1\r\n";
    let d = sdp::parse(text).expect("valid");
    assert_eq!(d.keywords.as_deref(), Some("Dante"));
    assert_eq!(
        d.streams[0].channel_labels(),
        Some(vec!["Left".to_string(), "Right".to_string()])
    );
    assert_eq!(
        d.streams[1].channel_labels(),
        Some(vec!["Talkback".to_string()])
    );
}

#[test]
fn writer_field_order_is_rfc8866() {
    let d = sdp::parse(&format!(
        "{HEAD}i=info\r\nc=IN IP4 239.1.1.1/32\r\nt=0 0\r\na=keywds:Dante\r\n\
         a=group:DUP a b\r\nm=audio 5004 RTP/AVP 96\r\ni=media\r\na=rtpmap:96 L24/48000/2\r\n\
         a=mid:a\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/48000/2\r\na=mid:b\r\n"
    ))
    .expect("valid");
    assert_eq!(d.dup_pairs(), [(0, 1)]);
    let out = d.to_sdp_string();
    let keys: String = out
        .split("\r\n")
        .filter_map(|l| l.get(..1))
        .collect::<Vec<_>>()
        .concat();
    assert_eq!(keys, "vositaamicaamcaa", "{out}");
    assert!(out.ends_with("\r\n") && !out.replace("\r\n", "").contains('\n'));
}

#[test]
fn sender_sdp_optional_fields() {
    let p = SenderSdp {
        session_id: 7,
        name: "TX".into(),
        destination: ip("239.69.1.2"),
        channels: 8,
        channel_order: ChannelOrder::parse("SMPTE2110.(51,ST)").ok(),
        keywords: Some("Estuary".into()),
        sync_time: Some(0),
        ..SenderSdp::default()
    };
    let text = sdp::write_aes67_sdp(&p);
    for want in [
        "a=keywds:Estuary\r\n",
        "a=fmtp:96 channel-order=SMPTE2110.(51,ST)\r\n",
        "a=sync-time:0\r\n",
        "c=IN IP4 239.69.1.2/32\r\n",
        "a=recvonly\r\n",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }
    let d = sdp::parse(&text).expect("own output");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
    assert_eq!(d, p.to_session());
    let s = &d.streams[0];
    assert_eq!(s.channel_labels().map(|l| l.len()), Some(8));
    assert_eq!(s.sync_time, Some(0));
    // Defaults describe a plain AES67 stream: 48 kHz, 1 ms, level A.
    assert_eq!(s.conformance_level(), Some(Level::A));
}

#[test]
fn huge_numbers_do_not_overflow() {
    let text = format!(
        "{HEAD}t=0 0\r\nm=audio 5004 RTP/AVP 96\r\na=rtpmap:96 L24/4294967295/65535\r\n\
         a=framecount:4294967295\r\na=ptime:1e300\r\n"
    );
    let d = sdp::parse(&text).expect("valid");
    let s = &d.streams[0];
    assert_eq!(s.frames_per_packet(), Some(u32::MAX));
    assert_eq!(s.packet_time(), Some(Duration::from_nanos(1_000_000_000)));
    assert_eq!(s.conformance_level(), None);
    assert!(s.channel_labels().is_none());
}
