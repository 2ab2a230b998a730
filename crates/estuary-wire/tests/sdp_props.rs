//! Property tests for the SDP reader and the AES67 writer.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use estuary_wire::payload::SampleFormat;
use estuary_wire::sdp::{
    self, AudioStream, ChannelGroup, ChannelOrder, Connection, Direction, FrameCount, Group,
    Origin, PtpRef, RefClock, SenderSdp, SessionDescription, SourceFilter, write_aes67_sdp,
};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

fn sender() -> impl Strategy<Value = SenderSdp> {
    (
        (
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            "[A-Za-z0-9][A-Za-z0-9 :_./()-]{0,30}[A-Za-z0-9]",
        ),
        proptest::option::of("[A-Za-z0-9][A-Za-z0-9 ,:]{0,20}[A-Za-z0-9]"),
        prop_oneof![
            (224u8..240, any::<[u8; 3]>())
                .prop_map(|(a, r)| IpAddr::V4(Ipv4Addr::new(a, r[0], r[1], r[2]))),
            any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
            any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        ],
        (1u8..=255, any::<u16>(), 96u8..128),
        (
            prop_oneof![
                Just(SampleFormat::L16),
                Just(SampleFormat::L24),
                Just(SampleFormat::L32),
                Just(SampleFormat::Am824)
            ],
            prop_oneof![Just(44_100u32), Just(48_000), Just(96_000)],
            1u16..=64,
            prop_oneof![
                Just(0.125f64),
                Just(0.25),
                Just(0.333),
                Just(1.0),
                Just(4.0),
                Just(1.08843537415)
            ],
            proptest::option::of(1u32..=192),
        ),
        (
            proptest::option::of(any::<u8>()),
            proptest::option::of((any::<[u8; 8]>(), any::<u8>())),
            any::<[u8; 6]>(),
            any::<u32>(),
        ),
    )
        .prop_map(
            |(
                (session_id, session_version, origin, name),
                info,
                destination,
                (ttl, port, pt),
                (format, sample_rate, channels, ptime_ms, framecount),
                (clock_domain, ptp, local_mac, media_clock_offset),
            )| SenderSdp {
                session_id,
                session_version,
                origin_address: IpAddr::V4(Ipv4Addr::from(origin)),
                name,
                info,
                destination,
                ttl,
                port,
                payload_type: pt,
                format,
                sample_rate,
                channels,
                ptime_ms,
                framecount,
                clock_domain,
                ptp: ptp.map(|(gmid, domain)| PtpRef { gmid, domain }),
                local_mac,
                media_clock_offset,
                ..SenderSdp::default()
            },
        )
}

fn model_config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
    ]
}

/// `c=` as the reader can produce it: an IPv4 count only after a TTL, no TTL on IPv6.
fn connection() -> impl Strategy<Value = Connection> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            proptest::option::of((any::<u8>(), proptest::option::of(1u32..=16)))
        )
            .prop_map(|(a, tc)| Connection {
                address: IpAddr::V4(Ipv4Addr::from(a)),
                ttl: tc.map(|(t, _)| t),
                count: tc.and_then(|(_, c)| c),
            }),
        (any::<u128>(), proptest::option::of(1u32..=16)).prop_map(|(a, count)| Connection {
            address: IpAddr::V6(Ipv6Addr::from(a)),
            ttl: None,
            count,
        }),
    ]
}

fn refclk() -> impl Strategy<Value = RefClock> {
    prop_oneof![
        (
            prop_oneof![Just("IEEE1588-2008"), Just("IEEE1588-2019")],
            any::<[u8; 8]>(),
            proptest::option::of(any::<u8>())
        )
            .prop_map(|(v, gmid, domain)| RefClock::Ptp {
                version: v.into(),
                gmid,
                domain
            }),
        Just(RefClock::PtpTraceable { version: None }),
        Just(RefClock::PtpTraceable {
            version: Some("IEEE1588-2008".into())
        }),
        any::<[u8; 6]>().prop_map(RefClock::LocalMac),
        Just(RefClock::Other("ntp=pool.ntp.org".into())),
    ]
}

fn channel_group() -> impl Strategy<Value = ChannelGroup> {
    prop_oneof![
        Just(ChannelGroup::Mono),
        Just(ChannelGroup::DualMono),
        Just(ChannelGroup::Stereo),
        Just(ChannelGroup::LtRt),
        Just(ChannelGroup::Surround51),
        Just(ChannelGroup::Surround71),
        Just(ChannelGroup::Surround222),
        Just(ChannelGroup::SdiGroup),
        Just(ChannelGroup::Aes3),
        (1u8..=64).prop_map(ChannelGroup::Undefined),
    ]
}

fn text() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9 ,:_./()-]{0,24}[A-Za-z0-9]"
}

/// One stream with its session defaults already applied, as the reader returns it.
fn stream(
    session_info: Option<String>,
    session_domain: Option<u8>,
) -> impl Strategy<Value = AudioStream> {
    (
        (
            any::<u16>(),
            0u8..128,
            prop_oneof![
                Just(SampleFormat::L16),
                Just(SampleFormat::L24),
                Just(SampleFormat::L32),
                Just(SampleFormat::Am824)
            ],
            prop_oneof![Just(44_100u32), Just(48_000), Just(96_000), 1u32..400_000],
            1u16..=64,
        ),
        (
            proptest::option::of(connection()),
            proptest::option::of((
                any::<bool>(),
                proptest::option::of(ip()),
                proptest::collection::vec(ip(), 1..3),
            )),
            proptest::option::of(prop_oneof![
                Just(0.125f64),
                Just(0.12),
                Just(1.0),
                Just(1.08843537415),
                Just(4.0)
            ]),
            proptest::option::of(prop_oneof![Just(1.0f64), Just(2.5)]),
            proptest::option::of(prop_oneof![
                (1u32..=192).prop_map(FrameCount::Exact),
                (1u32..=96, 0u32..=96).prop_map(|(min, d)| FrameCount::Range { min, max: min + d }),
            ]),
            proptest::option::of(proptest::collection::vec(channel_group(), 1..4)),
        ),
        (
            proptest::option::of(any::<u32>()),
            proptest::option::of(refclk()),
            proptest::option::of(any::<u8>()),
            proptest::option::of(any::<u64>()),
            proptest::option::of(text()),
            proptest::option::of("[a-z0-9]{1,4}"),
            proptest::option::of(prop_oneof![
                Just(Direction::SendRecv),
                Just(Direction::SendOnly),
                Just(Direction::RecvOnly),
                Just(Direction::Inactive)
            ]),
        ),
    )
        .prop_map(
            move |(
                (port, payload_type, format, sample_rate, channels),
                (connection, filter, ptime_ms, maxptime_ms, framecount, order),
                (media_clock_offset, ts_refclk, clock_domain, sync_time, info, mid, direction),
            )| AudioStream {
                port,
                payload_type,
                format,
                sample_rate,
                channels,
                connection,
                source_filter: filter.map(|(include, destination, sources)| SourceFilter {
                    include,
                    destination,
                    sources,
                }),
                ptime_ms,
                maxptime_ms,
                framecount,
                channel_order: order.map(|symbols| ChannelOrder { symbols }),
                media_clock_offset,
                ts_refclk,
                clock_domain: clock_domain.or(session_domain),
                sync_time,
                info: info.or_else(|| session_info.clone()),
                mid,
                direction,
            },
        )
}

fn model() -> impl Strategy<Value = SessionDescription> {
    (
        (
            prop_oneof![Just("-".to_string()), "[a-z]{1,8}"],
            any::<u64>(),
            any::<u64>(),
            ip(),
        ),
        prop_oneof![Just(String::new()), text()],
        proptest::option::of(text()),
        proptest::option::of(prop_oneof![Just("Dante".to_string()), text()]),
        proptest::option::of(any::<u8>()),
        proptest::collection::vec(
            (
                prop_oneof![Just("DUP".to_string()), Just("LS".to_string())],
                proptest::collection::vec("[a-z0-9]{1,4}", 0..3),
            ),
            0..2,
        ),
    )
        .prop_flat_map(|(o, name, info, keywords, clock_domain, groups)| {
            let streams = proptest::collection::vec(stream(info.clone(), clock_domain), 0..3);
            streams.prop_map(move |streams| SessionDescription {
                origin: Origin {
                    username: o.0.clone(),
                    session_id: o.1,
                    session_version: o.2,
                    address: o.3.to_string(),
                },
                name: name.clone(),
                info: info.clone(),
                keywords: keywords.clone(),
                clock_domain,
                groups: groups
                    .iter()
                    .map(|(semantics, mids)| Group {
                        semantics: semantics.clone(),
                        mids: mids.clone(),
                    })
                    .collect(),
                streams,
                warnings: Vec::new(),
            })
        })
}

proptest! {
    #![proptest_config(model_config())]

    /// parse(write(m)) == m for every model the reader can produce.
    #[test]
    fn model_round_trips(m in model()) {
        let text = sdp::write(&m);
        prop_assert!(text.ends_with("\r\n"));
        prop_assert!(!text.replace("\r\n", "").contains('\n'));
        let mut back = sdp::parse(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        back.warnings.clear();
        prop_assert_eq!(&back, &m, "{}", text);
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn writer_round_trips(p in sender()) {
        let text = write_aes67_sdp(&p);
        prop_assert!(text.ends_with("\r\n"));
        prop_assert!(!text.replace("\r\n", "").contains('\n'));
        let d = sdp::parse(&text).expect("own output parses");
        prop_assert!(d.warnings.is_empty(), "{:?}", d.warnings);
        prop_assert_eq!(d.origin.session_id, p.session_id);
        prop_assert_eq!(d.origin.session_version, p.session_version);
        prop_assert_eq!(&d.origin.address, &p.origin_address.to_string());
        prop_assert_eq!(&d.name, &p.name);
        prop_assert_eq!(&d.info, &p.info);
        prop_assert_eq!(d.clock_domain, p.clock_domain);
        prop_assert_eq!(d.streams.len(), 1);
        let s = &d.streams[0];
        let conn = s.connection.expect("c=");
        prop_assert_eq!(conn.address, p.destination);
        let multicast_v4 = matches!(p.destination, IpAddr::V4(a) if a.is_multicast());
        prop_assert_eq!(conn.ttl, multicast_v4.then_some(p.ttl));
        prop_assert_eq!(s.port, p.port);
        prop_assert_eq!(s.payload_type, p.payload_type);
        prop_assert_eq!(s.format, p.format);
        prop_assert_eq!(s.sample_rate, p.sample_rate);
        prop_assert_eq!(s.channels, p.channels);
        prop_assert_eq!(s.ptime_ms, Some(p.ptime_ms));
        prop_assert_eq!(s.framecount, p.framecount.map(sdp::FrameCount::Exact));
        prop_assert_eq!(s.media_clock_offset, Some(p.media_clock_offset));
        let want = match p.ptp {
            Some(ptp) => RefClock::Ptp { version: "IEEE1588-2008".into(), gmid: ptp.gmid, domain: Some(ptp.domain) },
            None => RefClock::LocalMac(p.local_mac),
        };
        prop_assert_eq!(s.ts_refclk.as_ref(), Some(&want));
        prop_assert_eq!(s.direction, Some(sdp::Direction::RecvOnly));
    }

    #[test]
    fn parse_arbitrary_text_never_panics(text in ".{0,400}") {
        let _ = sdp::parse(&text);
    }

    #[test]
    fn parse_sdp_like_text_never_panics(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("v=0".to_string()),
                "[vosictmab]=[ -~]{0,40}",
                "a=(rtpmap|ptime|framecount|mediaclk|ts-refclk|source-filter|clock-domain|group|mid):[ -~]{0,40}",
                "m=audio [0-9]{1,6} RTP/AVP [0-9 ]{0,8}",
                "c=IN IP[46] [0-9a-fx.:/]{0,30}",
                "[ \t]{0,3}",
            ],
            0..30,
        ),
        crlf: bool,
    ) {
        let text = lines.join(if crlf { "\r\n" } else { "\n" });
        let _ = sdp::parse(&text);
    }
}
