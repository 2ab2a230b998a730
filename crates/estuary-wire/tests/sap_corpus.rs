//! The shared SAP corpus (`../shared/testdata/sap` and the SAP capture in `pcap/`), with the
//! expected values transcribed from `../shared/testdata/INDEX.md`, plus a bounded
//! property test: encode → parse round-trips and damaged packets never panic.

use std::net::IpAddr;
use std::time::Duration;

use estuary_wire::sap::{
    self, MessageType, SDP_MIME_TYPE, SapError, SapKey, SapPacket, announcement_interval,
};
use proptest::prelude::*;

const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata");

fn read(rel: &str) -> Vec<u8> {
    let path = format!("{TESTDATA}/{rel}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn key(origin: &str, hash: u16) -> SapKey {
    SapKey {
        origin: origin.parse().expect("address"),
        msg_id_hash: hash,
    }
}

const SEMINAR_OLINE: &str = "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5";

#[test]
fn dante_avio_usb_announcement_carries_the_indexed_sdp() {
    let p = sap::parse(&read("sap/dante-avio-usb-512357-announce.bin")).expect("parse");
    assert_eq!(p.version, 1);
    assert_eq!(p.message_type, MessageType::Announce);
    assert_eq!(p.key(), key("192.168.2.153", 0xBCF9));
    assert!(!p.compressed);
    assert_eq!(p.payload_type.as_deref(), Some(SDP_MIME_TYPE));
    assert_eq!(p.payload.len(), 304);
    assert_eq!(p.payload, read("sdp/dante-avio-usb-512357-from-sap.sdp"));
}

#[test]
fn synthetic_announcements_with_and_without_payload_type() {
    for (file, ptype) in [
        (
            "sap/tschiemer-synth-v2-announce-ptype.bin",
            Some(SDP_MIME_TYPE),
        ),
        ("sap/tschiemer-synth-v1-announce-no-ptype.bin", None),
    ] {
        let p = sap::parse(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.message_type, MessageType::Announce, "{file}");
        assert_eq!(p.key(), key("5.6.7.8", 1234), "{file}");
        assert_eq!(p.payload_type.as_deref(), ptype, "{file}");
        let sdp = p.sdp().expect("utf-8");
        assert!(sdp.starts_with("v=0\r\n"), "{file}");
        assert!(sdp.contains("s=SDP Seminar\r\n"), "{file}");
        assert!(sdp.contains("c=IN IP4 224.2.17.12/127"), "{file}");
        assert!(sdp.contains("m=audio 49170 RTP/AVP 0"), "{file}");
        assert_eq!(p.origin_line(), Some(SEMINAR_OLINE), "{file}");
    }
}

#[test]
fn synthetic_deletions_are_only_the_origin_line() {
    for (file, ptype) in [
        (
            "sap/tschiemer-synth-v2-delete-ptype-oline-only.bin",
            Some(SDP_MIME_TYPE),
        ),
        (
            "sap/tschiemer-synth-v1-delete-no-ptype-oline-only.bin",
            None,
        ),
    ] {
        let p = sap::parse(&read(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(p.message_type, MessageType::Delete, "{file}");
        assert_eq!(p.key(), key("5.6.7.8", 1234), "{file}");
        assert_eq!(p.payload_type.as_deref(), ptype, "{file}");
        assert_eq!(p.sdp(), Some(format!("{SEMINAR_OLINE}\r\n").as_str()));
    }
    // The deletion matches the announcement by key and by o= line.
    let ann = sap::parse(&read("sap/tschiemer-synth-v2-announce-ptype.bin")).expect("parse");
    let del = sap::parse(&read("sap/tschiemer-synth-v2-delete-ptype-oline-only.bin")).expect("del");
    assert_eq!(ann.key(), del.key());
    assert_eq!(ann.origin_line(), del.origin_line());
}

#[test]
fn sapv1_hash_zero_is_ignored() {
    let bytes = read("sap/tschiemer-synth-announce-hash0-must-ignore.bin");
    assert_eq!(
        sap::parse(&bytes),
        Err(SapError::ZeroHash {
            origin: "5.6.7.8".parse().expect("addr")
        })
    );
    // The same packet as SAPv0 (V = 0) is accepted: there the hash means "none".
    let mut v0 = bytes.clone();
    v0[0] &= 0x1f;
    let p = sap::parse(&v0).expect("SAPv0 with hash 0");
    assert_eq!((p.version, p.msg_id_hash), (0, 0));
    assert_eq!(p.origin_line(), Some(SEMINAR_OLINE));
}

#[test]
fn compressed_flag_with_plain_payload_is_dropped() {
    let bytes = read("sap/tschiemer-synth-compressed-flag-but-plain-payload.bin");
    assert_eq!(bytes[0], 0x21);
    assert_eq!(sap::parse(&bytes), Err(SapError::Decompress));
}

#[test]
fn encrypted_packet_is_a_distinct_error_with_its_key() {
    let mut bytes = read("sap/dante-avio-usb-512357-announce.bin");
    bytes[0] |= 0x02;
    assert_eq!(
        sap::parse(&bytes),
        Err(SapError::Encrypted {
            key: key("192.168.2.153", 0xBCF9)
        })
    );
}

#[test]
fn non_sdp_payload_type_is_rejected() {
    let mut p = SapPacket::announce("10.0.0.1".parse().expect("addr"), "v=0\r\n");
    p.payload_type = Some("application/x-sd".into());
    let bytes = p.to_bytes().expect("encode");
    assert_eq!(
        sap::parse(&bytes),
        Err(SapError::UnsupportedPayloadType("application/x-sd".into()))
    );
}

#[test]
fn authentication_data_is_skipped() {
    let plain = read("sap/dante-avio-usb-512357-announce.bin");
    let mut signed = plain[..8].to_vec();
    signed[1] = 2; // two 32-bit words
    signed.extend_from_slice(&[0xAA; 8]);
    signed.extend_from_slice(&plain[8..]);
    assert_eq!(sap::parse(&signed), sap::parse(&plain));
}

#[test]
fn zip_bomb_is_an_error_and_a_large_sdp_is_not() {
    let origin: IpAddr = "10.0.0.1".parse().expect("ip");
    let mut p = SapPacket::announce(origin, "v=0\r\n");
    p.compressed = true;
    // 1 MiB of 'a' deflates to about 1 KiB but must not be inflated past the cap.
    p.payload = vec![b'a'; 1 << 20];
    let bomb = p.to_bytes().expect("encode");
    assert!(bomb.len() < 4096, "{} bytes", bomb.len());
    assert_eq!(sap::parse(&bomb), Err(SapError::Decompress));
    // 60 KiB (type included) stays under the 64 KiB cap.
    p.payload = [b"v=0\r\n".as_slice(), &[b'a'; 60 * 1024]].concat();
    let big = p.to_bytes().expect("encode");
    assert_eq!(sap::parse(&big), Ok(p));
}

#[test]
fn announcement_layout_is_golden() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=x\r\n";
    let p = SapPacket::announce("192.0.2.1".parse().expect("ip"), sdp);
    let hash = sap::message_id_hash(sdp).to_be_bytes();
    let mut want = vec![0x20, 0x00, hash[0], hash[1], 192, 0, 2, 1];
    want.extend_from_slice(b"application/sdp\0");
    want.extend_from_slice(sdp.as_bytes());
    assert_eq!(p.to_bytes().expect("encode"), want);
    let d = SapPacket::delete("2001:db8::1".parse().expect("ip"), sdp);
    let bytes = d.to_bytes().expect("encode");
    assert_eq!(&bytes[..4], &[0x34, 0x00, hash[0], hash[1]]);
    assert_eq!(
        &bytes[20..],
        b"application/sdp\0o=- 1 1 IN IP4 192.0.2.1\r\n"
    );
}

/// UDP payloads of the IPv4 datagrams in a little-endian, Ethernet (linktype 1) pcap.
fn pcap_udp_payloads(pcap: &[u8]) -> Vec<(u16, Vec<u8>)> {
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian pcap");
    assert_eq!(u32::from_le_bytes(pcap[20..24].try_into().expect("4")), 1);
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let incl = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().expect("4")) as usize;
        let frame = &pcap[at + 16..at + 16 + incl];
        at += 16 + incl;
        if frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 17 {
            continue; // not IPv4/UDP
        }
        let ihl = usize::from(frame[14] & 0x0f) * 4;
        let udp = &frame[14 + ihl..];
        let dport = u16::from_be_bytes([udp[2], udp[3]]);
        let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
        out.push((dport, udp[8..len].to_vec()));
    }
    out
}

#[test]
fn merging_capture_decodes_as_indexed() {
    let payloads = pcap_udp_payloads(&read("pcap/aoip-core-sap_sdp1.pcap"));
    assert_eq!(payloads.len(), 1);
    let (port, bytes) = &payloads[0];
    assert_eq!((*port, bytes.len()), (sap::SAP_PORT, 514));
    let p = sap::parse(bytes).expect("parse");
    assert_eq!((p.version, p.message_type), (1, MessageType::Announce));
    assert_eq!(p.key(), key("192.168.2.237", 0x25ae));
    assert!(!p.compressed);
    assert_eq!(p.payload_type.as_deref(), Some(SDP_MIME_TYPE));
    assert_eq!(p.payload.len(), 490);
    assert_eq!(
        p.payload,
        read("sdp/merging-ravenna-coreaudio-mac-from-sap.sdp")
    );
    // Golden bytes: re-encoding the capture gives it back byte for byte.
    assert_eq!(&p.to_bytes().expect("encode"), bytes);
}

#[test]
fn every_corpus_file_reencodes_to_itself_or_is_rejected_as_indexed() {
    for entry in std::fs::read_dir(format!("{TESTDATA}/sap")).expect("sap dir") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("read");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        match sap::parse(&bytes) {
            Ok(p) => assert_eq!(p.to_bytes().expect("encode"), bytes, "{name}"),
            Err(SapError::ZeroHash { .. }) => assert!(name.contains("hash0"), "{name}"),
            Err(SapError::Decompress) => assert!(name.contains("compressed"), "{name}"),
            Err(e) => panic!("{name}: {e}"),
        }
    }
}

#[test]
fn interval_never_exceeds_the_bandwidth_limit() {
    // 200 ads of 500 bytes: 800 kbit -> 200 s at 4000 bit/s, above a 30 s base.
    let base = Duration::from_secs(30);
    let mid = announcement_interval(200 * 500, base, 0.5);
    assert_eq!(mid, Duration::from_secs(200));
    let low = announcement_interval(200 * 500, base, 0.0);
    assert!(low >= Duration::from_millis(133_333) && low <= Duration::from_millis(133_334));
}

fn arb_origin() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(IpAddr::from),
        any::<[u8; 16]>().prop_map(IpAddr::from),
    ]
}

fn arb_packet() -> impl Strategy<Value = SapPacket> {
    (
        arb_origin(),
        1u16..,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        "[ -~\r\n]{0,300}",
    )
        .prop_map(|(origin, hash, delete, compressed, with_type, text)| {
            let sdp = format!("v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\n{text}");
            let mut p = if delete {
                SapPacket::delete(origin, &sdp)
            } else {
                SapPacket::announce(origin, &sdp)
            };
            p.msg_id_hash = hash;
            p.compressed = compressed;
            if !with_type {
                p.payload_type = None;
            }
            p
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn encode_then_parse_round_trips(p in arb_packet()) {
        let bytes = p.to_bytes().expect("encode");
        prop_assert_eq!(sap::parse(&bytes), Ok(p));
    }

    #[test]
    fn truncated_or_corrupted_never_panics(
        p in arb_packet(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut bytes = p.to_bytes().expect("encode");
        let n = cut.index(bytes.len() + 1);
        bytes.truncate(n);
        for (i, x) in flips {
            if !bytes.is_empty() {
                let at = i.index(bytes.len());
                bytes[at] ^= x;
            }
        }
        if let Ok(q) = sap::parse(&bytes) {
            // Whatever parses must re-encode to something that parses the same.
            let again = q.to_bytes().expect("a parsed packet re-encodes");
            prop_assert_eq!(sap::parse(&again), Ok(q));
        }
    }
}
