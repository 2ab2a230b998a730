//! SDP: parse arbitrary text; never panics. For every parsed PCM stream, an AES67 SDP
//! written from its parameters must parse back to the same parameters.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use estuary_wire::sdp::{self, PtpRef, RefClock, SenderSdp, write_aes67_sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(d) = sdp::parse(text) else {
        return;
    };
    for s in &d.streams {
        let ptp = match s.ts_refclk {
            Some(RefClock::Ptp { gmid, domain, .. }) => Some(PtpRef {
                gmid,
                domain: domain.unwrap_or(0),
            }),
            _ => None,
        };
        let p = SenderSdp {
            session_id: d.origin.session_id,
            session_version: d.origin.session_version,
            origin_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            name: "fuzz".into(),
            info: None,
            destination: s
                .connection
                .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.address),
            ttl: 32,
            port: s.port,
            payload_type: s.payload_type & 0x7f,
            format: s.format,
            sample_rate: s.sample_rate,
            channels: s.channels,
            ptime_ms: s.ptime_ms.unwrap_or(1.0),
            framecount: s.framecount,
            clock_domain: d.clock_domain,
            ptp,
            local_mac: [2, 0, 0, 0, 0, 1],
            media_clock_offset: s.media_clock_offset.unwrap_or(0),
        };
        let again = sdp::parse(&write_aes67_sdp(&p)).expect("own output parses");
        let t = &again.streams[0];
        assert_eq!(
            (t.port, t.payload_type, t.format, t.sample_rate, t.channels),
            (p.port, p.payload_type, p.format, p.sample_rate, p.channels)
        );
        assert_eq!(t.ptime_ms, Some(p.ptime_ms));
        assert_eq!(t.framecount, p.framecount);
        assert_eq!(t.media_clock_offset, Some(p.media_clock_offset));
        assert_eq!(t.connection.map(|c| c.address), Some(p.destination));
    }
});
