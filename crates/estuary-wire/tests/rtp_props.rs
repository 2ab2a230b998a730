//! Property tests: builder → parse round trip, and parse never panics on arbitrary bytes.

use estuary_wire::rtp::{RtpPacket, RtpPacketBuilder};
use estuary_wire::units::{RtpTimestamp, SeqNum};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn build_then_parse_round_trips(
        marker: bool,
        payload_type in 0u8..128,
        sequence: u16,
        timestamp: u32,
        ssrc: u32,
        csrcs in proptest::collection::vec(any::<u32>(), 0..=15),
        ext in proptest::option::of((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..16))),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        padding: u8,
    ) {
        let ext_data = ext.as_ref().map(|(p, d)| {
            let words = d.len() / 4 * 4;
            (*p, &d[..words])
        });
        let b = RtpPacketBuilder {
            marker,
            payload_type,
            sequence: SeqNum(sequence),
            timestamp: RtpTimestamp(timestamp),
            ssrc,
            csrcs: &csrcs,
            extension: ext_data,
            payload: &payload,
            padding,
        };
        let mut buf = vec![0u8; b.wire_size()];
        let n = b.write_into(&mut buf).expect("sized buffer");
        prop_assert_eq!(n, b.wire_size());
        let p = RtpPacket::parse(&buf).expect("own output parses");
        prop_assert_eq!(p.marker(), marker);
        prop_assert_eq!(p.payload_type(), payload_type);
        prop_assert_eq!(p.sequence(), SeqNum(sequence));
        prop_assert_eq!(p.timestamp(), RtpTimestamp(timestamp));
        prop_assert_eq!(p.ssrc(), ssrc);
        prop_assert_eq!(p.csrcs().collect::<Vec<_>>(), csrcs.clone());
        prop_assert_eq!(p.extension(), ext_data);
        prop_assert_eq!(p.payload(), &payload[..]);
        prop_assert_eq!(p.padding_len(), padding);
        // A too-small buffer is an error, never a panic.
        if n > 0 {
            prop_assert!(b.write_into(&mut buf[..n - 1]).is_err());
        }
    }

    #[test]
    fn parse_arbitrary_bytes_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(p) = RtpPacket::parse(&data) {
            // Re-encode and compare: the oracle the fuzz target uses.
            let csrcs: Vec<u32> = p.csrcs().collect();
            let b = RtpPacketBuilder { csrcs: &csrcs, ..p.to_builder() };
            let mut buf = vec![0u8; b.wire_size()];
            let n = b.write_into(&mut buf).expect("sized");
            prop_assert_eq!(n, data.len());
            let q = RtpPacket::parse(&buf).expect("re-encoded parses");
            prop_assert_eq!(p, q);
        }
    }

    #[test]
    fn parse_v2_headers_never_panics(
        b0 in 0x80u8..0xc0,
        rest in proptest::collection::vec(any::<u8>(), 0..120),
    ) {
        let mut data = vec![b0];
        data.extend_from_slice(&rest);
        let _ = RtpPacket::parse(&data);
    }
}
