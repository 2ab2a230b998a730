//! Our PTPv1 codec read by an independent implementation: Wireshark's PTP dissector
//! (`tshark`, installed by `scripts/deps.sh test`). The shared test data has no PTPv1
//! capture, so each message kind the follower sends or reads (Sync, Delay_Req, Follow_Up,
//! Delay_Resp) is written by our encoder into a pcap, as a Dante leader or follower would put
//! it on the wire (224.0.1.129, ports 319/320), and every field Wireshark decodes must be
//! the one we wrote; our parser then reads the same bytes back to the same message.

use std::collections::BTreeMap;
use std::process::Command;

use estuary_wire::dante::ptpv1::{
    self, Control, PortIdentity, SyncBody, Timestamp, V1Body, V1Header, V1Message,
};

const LEADER: [u8; 6] = [0x00, 0x1d, 0xc1, 0x0a, 0x0b, 0x0c];
const FOLLOWER: [u8; 6] = [0x02, 0x00, 0x7f, 0x00, 0x00, 0x01];

fn header(control: Control, source: [u8; 6], sequence: u16, flags: u16) -> V1Header {
    V1Header {
        version_network: 1,
        subdomain: V1Header::subdomain_field(ptpv1::DEFAULT_SUBDOMAIN),
        message_type: if matches!(control, Control::Sync | Control::DelayReq) {
            1
        } else {
            2
        },
        source: PortIdentity {
            technology: 1,
            uuid: source,
            port: 1,
        },
        sequence,
        control,
        flags,
    }
}

fn sync_body(origin: Timestamp) -> SyncBody {
    SyncBody {
        origin,
        epoch: 3,
        utc_offset: 37,
        grandmaster: PortIdentity {
            technology: 1,
            uuid: LEADER,
            port: 1,
        },
        grandmaster_sequence: 4711,
        grandmaster_stratum: 4,
        grandmaster_identifier: *b"DFLT",
        grandmaster_variance: -4000,
        grandmaster_preferred: true,
        grandmaster_is_boundary: false,
        sync_interval: -2,
        local_variance: -3500,
        local_steps_removed: 1,
        local_stratum: 4,
        local_identifier: *b"DFLT",
        parent: PortIdentity {
            technology: 1,
            uuid: LEADER,
            port: 1,
        },
        estimated_master_variance: 17,
        estimated_master_drift: -123_456,
        utc_reasonable: true,
    }
}

/// The four messages and, for each, the fields Wireshark must decode from it.
fn messages() -> Vec<(V1Message, Vec<(&'static str, String)>)> {
    let origin = Timestamp {
        seconds: 1_763_730_000,
        nanoseconds: 123_456_789,
    };
    let common = |h: &V1Header| {
        vec![
            ("ptp.versionptp", "1".to_owned()),
            ("ptp.versionnetwork", "1".to_owned()),
            ("ptp.subdomain", "_DFLT".to_owned()),
            ("ptp.messagetype", h.message_type.to_string()),
            ("ptp.sourcecommunicationtechnology", "1".to_owned()),
            ("ptp.sourceuuid", mac(&h.source.uuid)),
            ("ptp.sourceportid", "1".to_owned()),
            ("ptp.sequenceid", h.sequence.to_string()),
        ]
    };
    let sync_fields = |b: &SyncBody| {
        vec![
            (
                "ptp.sdr.origintimestamp_seconds",
                b.origin.seconds.to_string(),
            ),
            (
                "ptp.sdr.origintimestamp_nanoseconds",
                b.origin.nanoseconds.to_string(),
            ),
            ("ptp.sdr.epochnumber", b.epoch.to_string()),
            ("ptp.sdr.currentutcoffset", b.utc_offset.to_string()),
            ("ptp.sdr.grandmasterclockuuid", mac(&b.grandmaster.uuid)),
            ("ptp.sdr.grandmasterportid", "1".to_owned()),
            (
                "ptp.sdr.grandmastersequenceid",
                b.grandmaster_sequence.to_string(),
            ),
            (
                "ptp.sdr.grandmasterclockstratum",
                b.grandmaster_stratum.to_string(),
            ),
            ("ptp.sdr.grandmasterclockidentifier", "DFLT".to_owned()),
            (
                "ptp.sdr.grandmasterclockvariance",
                b.grandmaster_variance.to_string(),
            ),
            ("ptp.sdr.grandmasterpreferred", "1".to_owned()),
            ("ptp.sdr.grandmasterisboundaryclock", "0".to_owned()),
            ("ptp.sdr.syncinterval", b.sync_interval.to_string()),
            ("ptp.sdr.localclockvariance", b.local_variance.to_string()),
            (
                "ptp.sdr.localstepsremoved",
                b.local_steps_removed.to_string(),
            ),
            ("ptp.sdr.localclockstratum", b.local_stratum.to_string()),
            ("ptp.sdr.parentuuid", mac(&b.parent.uuid)),
            (
                "ptp.sdr.estimatedmastervariance",
                b.estimated_master_variance.to_string(),
            ),
            (
                "ptp.sdr.estimatedmasterdrift",
                b.estimated_master_drift.to_string(),
            ),
            ("ptp.sdr.utcreasonable", "1".to_owned()),
        ]
    };
    let mut out = Vec::new();

    let h = header(Control::Sync, LEADER, 100, ptpv1::FLAG_ASSIST);
    let body = sync_body(origin);
    let mut fields = common(&h);
    fields.extend([
        ("ptp.controlfield", "0".to_owned()),
        ("ptp.flags.assist", "1".to_owned()),
    ]);
    fields.extend(sync_fields(&body));
    out.push((
        V1Message {
            header: h,
            body: V1Body::Sync(body),
        },
        fields,
    ));

    let h = header(Control::DelayReq, FOLLOWER, 7, 0);
    let body = SyncBody {
        origin: Timestamp::default(),
        ..sync_body(origin)
    };
    let mut fields = common(&h);
    fields.extend([
        ("ptp.controlfield", "1".to_owned()),
        ("ptp.flags.assist", "0".to_owned()),
    ]);
    fields.extend(sync_fields(&body));
    out.push((
        V1Message {
            header: h,
            body: V1Body::DelayReq(body),
        },
        fields,
    ));

    let h = header(Control::FollowUp, LEADER, 101, 0);
    let precise = Timestamp {
        seconds: origin.seconds,
        nanoseconds: 123_470_001,
    };
    let mut fields = common(&h);
    fields.extend([
        ("ptp.controlfield", "2".to_owned()),
        ("ptp.fu.associatedsequenceid", "100".to_owned()),
        (
            "ptp.fu.preciseorigintimestamp_seconds",
            precise.seconds.to_string(),
        ),
        (
            "ptp.fu.preciseorigintimestamp_nanoseconds",
            precise.nanoseconds.to_string(),
        ),
    ]);
    out.push((
        V1Message {
            header: h,
            body: V1Body::FollowUp {
                associated_sequence: 100,
                precise_origin: precise,
            },
        },
        fields,
    ));

    let h = header(Control::DelayResp, LEADER, 102, 0);
    let receipt = Timestamp {
        seconds: origin.seconds + 1,
        nanoseconds: 999_999_999,
    };
    let mut fields = common(&h);
    fields.extend([
        ("ptp.controlfield", "3".to_owned()),
        (
            "ptp.dr.delayreceipttimestamp_seconds",
            receipt.seconds.to_string(),
        ),
        (
            "ptp.dr.delayreceipttimestamp_nanoseconds",
            receipt.nanoseconds.to_string(),
        ),
        (
            "ptp.dr.requestingsourcecommunicationtechnology",
            "1".to_owned(),
        ),
        ("ptp.dr.requestingsourceuuid", mac(&FOLLOWER)),
        ("ptp.dr.requestingsourceportid", "1".to_owned()),
        ("ptp.dr.requestingsourcesequenceid", "7".to_owned()),
    ]);
    out.push((
        V1Message {
            header: h,
            body: V1Body::DelayResp {
                receipt,
                requester: PortIdentity {
                    technology: 1,
                    uuid: FOLLOWER,
                    port: 1,
                },
                requester_sequence: 7,
            },
        },
        fields,
    ));
    out
}

fn mac(b: &[u8; 6]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An Ethernet/IPv4/UDP frame from `source` to the PTPv1 group on `port`.
fn frame(source: [u8; 6], port: u16, payload: &[u8]) -> Vec<u8> {
    let group = ptpv1::MULTICAST;
    let mut f = vec![0x01, 0x00, 0x5e, group[1] & 0x7f, group[2], group[3]];
    f.extend_from_slice(&source);
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0xb8];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 1, 17, 0, 0]);
    ip.extend_from_slice(&[192, 168, 1, 10]);
    ip.extend_from_slice(&group);
    let sum = !ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .fold(0u32, |acc, w| {
            let s = acc + w;
            (s & 0xffff) + (s >> 16)
        }) as u16;
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&port.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    // No UDP checksum (allowed over IPv4).
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A little-endian, microsecond, Ethernet pcap of `frames`.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65_535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_763_730_000 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Wireshark's decoding of packet `number` (1-based): every `ptp.*` field's shown value.
fn dissect(path: &std::path::Path, number: usize, fields: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(path)
        .args(["-Y", &format!("frame.number == {number}")])
        .args(["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark (Wireshark's dissector; scripts/deps.sh test installs it)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next().unwrap_or("");
    fields
        .iter()
        .zip(line.split('\t').chain(std::iter::repeat("")))
        .map(|(f, v)| ((*f).to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn wireshark_decodes_every_field_of_our_ptpv1_messages_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ptpv1.pcap");
    let messages = messages();
    let frames: Vec<Vec<u8>> = messages
        .iter()
        .map(|(m, _)| {
            let port = if m.header.message_type == 1 {
                ptpv1::EVENT_PORT
            } else {
                ptpv1::GENERAL_PORT
            };
            frame(m.header.source.uuid, port, &m.to_bytes())
        })
        .collect();
    std::fs::write(&path, pcap(&frames)).expect("pcap");

    for (i, (message, expected)) in messages.iter().enumerate() {
        let names: Vec<&str> = expected.iter().map(|(f, _)| *f).collect();
        let decoded = dissect(&path, i + 1, &names);
        for (field, want) in expected {
            // Wireshark shows booleans as 1/0 or True/False depending on the field type.
            let got = decoded[*field].as_str();
            let got = match got {
                "True" => "1",
                "False" => "0",
                g => g,
            };
            assert_eq!(
                got,
                want.as_str(),
                "{:?} field {field}: {decoded:#?}",
                message.header.control
            );
        }
        // And our parser reads the bytes Wireshark read back to the same message.
        let bytes = message.to_bytes();
        assert_eq!(
            ptpv1::parse(&bytes).expect("parse"),
            *message,
            "{:?}",
            message.header.control
        );
    }
}
