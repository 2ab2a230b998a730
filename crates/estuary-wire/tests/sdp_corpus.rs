//! Table test over the shared SDP corpus (`../shared/testdata/sdp` beside the clone), with
//! the expected values transcribed from `../shared/testdata/INDEX.md`.

use std::path::Path;

use estuary_wire::sdp::{
    self, AudioStream, ChannelGroup, FrameCount, Level, RefClock, SdpError, SdpWarning,
    SessionDescription, St2110_10Issue,
};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/testdata/sdp");

/// file, s=, o= sess-id, c= ("addr[/ttl]"), port, PT, encoding, rate, channels, ptime,
/// framecount, mediaclk offset, GM ("gmid/domain", "gmid/-" without domain, "traceable",
/// "" none), source filter ("dest<-src" or ""), frames per packet.
type Row = (
    &'static str,
    &'static str,
    u64,
    &'static str,
    u16,
    u8,
    &'static str,
    u32,
    u16,
    Option<f64>,
    Option<u32>,
    Option<u32>,
    &'static str,
    &'static str,
    u32,
);

const DANTE_GM_0E10C4: &str = "00-1D-C1-FF-FE-0E-10-C4/0";
const YAMAHA_GM: &str = "00-1D-C1-FF-FE-08-0C-F0/0";
const ANUBIS_GM: &str = "00-1D-C1-FF-FE-51-9E-F7/0";
const AES67_GM: &str = "39-A7-94-FF-FE-07-CB-D0/0";
const HAPI_GM: &str = "00-1D-C1-FF-FE-1F-A5-C6/0";
const TEK_GM: &str = "08-00-11-FF-FE-21-E1-B0/127";

#[rustfmt::skip]
const TABLE: &[Row] = &[
    ("merging-anubis-combo-lr.sdp", "Anubis Combo LR", 13, "239.1.16.51/15", 5004, 98, "L16", 48000, 2, Some(1.0), Some(48), Some(0), "30-D6-59-FF-FE-01-DB-72/0", "239.1.16.51<-192.168.16.51", 48),
    ("merging-anubis-611465-l24-midi.sdp", "Anubis_611465_2100", 2100, "239.1.178.124/15", 5004, 98, "L24", 48000, 2, Some(1.0), Some(48), Some(0), DANTE_GM_0E10C4, "239.1.178.124<-192.168.178.124", 48),
    ("aes67vsc-8ch-keywds-aes67vsc.sdp", "AES67-VSC : 8", 10943522194, "239.1.178.124/32", 5004, 98, "L24", 48000, 8, Some(1.0), None, Some(0), "2C-CF-67-FF-FE-75-93-93/0", "", 48),
    ("aes67vsc-single-4ch-no-trailing-eol.sdp", "My sample flow", 123456, "239.69.11.44/32", 5004, 98, "L24", 48000, 4, Some(1.0), None, Some(0), "00-11-22-FF-FE-33-44-55/0", "", 48),
    ("aes67vsc-vsc-keywds-dante-ttl15.sdp", "AES67-VSC", 10943522194, "239.1.178.224/15", 5004, 98, "L24", 48000, 8, Some(1.0), None, Some(0), DANTE_GM_0E10C4, "", 48),
    ("aes67-linux-daemon-st2022-7-dup-readme.sdp", "Daemon a8c01101 ALSA Source 0", 2831159553, "239.1.0.1/15", 5004, 98, "L24", 48000, 2, Some(1.0), Some(48), Some(0), "00-1D-C1-FF-FE-50-36-33/0", "239.1.0.1<-192.168.1.17", 48),
    ("aes67-linux-daemon-alsa-source0-44k1-traceable.sdp", "ALSA Source 0", 0, "239.1.0.1/15", 5004, 98, "L16", 44100, 2, Some(1.08843537415), Some(48), Some(0), "traceable", "", 48),
    ("aes67-linux-daemon-remote-sap-source2.sdp", "ALSA Source 2", 2, "239.1.0.3/15", 5004, 98, "L16", 48000, 2, Some(1.0), Some(48), Some(0), "00-10-4B-FF-FE-7A-87-FC/0", "", 48),
    // framecount "64-192" is a range (0 in this column; ends checked in their own test); ptime gives 48 frames.
    ("aes67-linux-daemon-test-44k1-framecount-range.sdp", "ALSA (on ubuntu)_1", 1, "239.2.0.12/15", 6004, 98, "L16", 44100, 2, Some(1.08843537415), Some(0), Some(0), "00-0C-29-FF-FE-0E-90-C8/0", "", 48),
    ("merging-anubis-610120-crlf.sdp", "Anubis_610120_13", 13, "239.1.15.52/15", 5004, 98, "L16", 48000, 2, Some(1.0), Some(48), Some(0), ANUBIS_GM, "239.1.15.52<-192.168.15.52", 48),
    ("merging-anubis-combo-lr-announce-crlf.sdp", "Anubis Combo LR", 13, "239.1.15.52/15", 5004, 98, "L16", 48000, 2, Some(1.0), Some(48), Some(0), ANUBIS_GM, "239.1.15.52<-192.168.15.52", 48),
    ("aes67-spec-stage-left-io-multicast.sdp", "Stage left I/O", 1311738121, "239.0.0.1/32", 5004, 96, "L24", 48000, 8, Some(1.0), None, Some(963214424), AES67_GM, "", 48),
    ("aes67-spec-stage-left-io-unicast-ptime250us.sdp", "Stage left I/O", 1311738121, "192.168.1.1", 5004, 96, "L24", 48000, 8, Some(0.25), None, Some(2216659908), AES67_GM, "", 12),
    ("ravennakit-anubis-session-level-source-filter-unknown-attrs.sdp", "Anubis_610120_13", 13, "239.1.15.52/15", 5004, 98, "L16", 48000, 2, Some(1.0), Some(48), Some(0), ANUBIS_GM, "239.1.15.52<-192.168.15.52", 48),
    // Truncated body: GM and mediaclk are inherited from the session level.
    ("lawo-mic8-12-rtsp-describe-body-truncated.sdp", "mic8-12", 1744662004692777, "239.15.55.1/31", 5004, 98, "L24", 48000, 2, Some(1.0), Some(48), Some(0), "00-0B-72-FF-FE-07-DB-E6/0", "239.15.55.1<-192.168.15.55", 48),
    ("ebu-list-l24-2ch-rate-param-dom127.sdp", "st2110 0-1-0", 1443716955, "239.1.1.1/64", 20000, 97, "L24", 48000, 2, Some(1.0), Some(48), Some(0), "04-5C-6C-FF-FE-0A-53-70/127", "239.1.1.1<-10.1.1.236", 48),
    ("embrionix-like-st2110-multi-essence-blank-lines.sdp", "st2110 stream", 1443716955, "225.0.1.16/64", 20000, 97, "L24", 48000, 8, Some(1.0), Some(48), Some(0), "00-02-C5-FF-FE-21-60-5C/127", "225.0.1.16<-172.30.64.176", 48),
    ("dante-yamaha-ri8-d-1ch-crlf-no-final-eol.sdp", "Y001-Yamaha-Ri8-D-14e622 : 32", 29054176, "239.69.205.203/32", 5004, 96, "L24", 48000, 1, Some(1.0), None, Some(750129611), "00-1D-C1-FF-FE-14-E6-22/0", "", 48),
    ("dante-avio-bluetooth-crlf.sdp", "AVIO-Bluetooth : 2", 442722, "239.69.35.56/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(586769660), DANTE_GM_0E10C4, "", 48),
    ("aes67vsc-transmitter-keywds-dante-lf.sdp", "AES VSC", 3456789, "239.69.202.125/32", 5004, 98, "L24", 48000, 2, Some(1.0), None, Some(0), DANTE_GM_0E10C4, "", 48),
    ("dante-yamaha-dantepcie-8ch-pt103-crlf.sdp", "Y001-DantePCIe : 25", 902944281, "239.69.208.46/32", 5004, 103, "L24", 48000, 8, Some(1.0), None, Some(412374555), YAMAHA_GM, "", 48),
    ("dante-yamaha-dante-accel-2ch-pt97.sdp", "Y001-Yamaha-DANTE-ACCEL-080CF0 : 32", 809949544, "239.69.178.105/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(1004512176), YAMAHA_GM, "", 48),
    ("dante-yamaha-dantepcie-2ch-lf-trailing-blank-line.sdp", "Y001-DantePCIe : 11", 953226475, "239.69.25.199/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(1309091455), YAMAHA_GM, "", 48),
    ("dante-avio-usbc-2ch.sdp", "AVIOUSBC-522880 : 2", 278034, "239.69.165.50/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(1266592257), "00-1D-C1-FF-FE-52-28-80/0", "", 48),
    ("dante-avio-usb-512357-from-sap.sdp", "AVIOUSB-512357 : 2", 345738, "239.69.83.133/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(3969992633), "00-1D-C1-FF-FE-51-23-57/0", "", 48),
    ("merging-ravenna-coreaudio-mac-from-sap.sdp", "CoreAudio(MAC)", 4, "239.69.2.201/15", 5004, 96, "L24", 48000, 2, Some(1.0), Some(48), Some(0), "00-1D-C1-FF-FE-51-23-57/0", "239.69.2.201<-192.168.2.237", 48),
    // No ptime: 1 ms default. GM written lower-case and without a domain.
    ("bbc-ipstudio-amwa-nmos-l24-2ch-extmap.sdp", "NMOS Stream", 1443080730, "232.226.253.166/32", 5000, 96, "L24", 48000, 2, None, None, Some(1970351840), "EC-46-70-FF-FE-00-42-C4/-", "232.226.253.166<-172.29.80.68", 48),
    ("telos-handwritten-template-dom127-placeholder-gm.sdp", "Stream1", 1, "239.30.22.1", 5004, 96, "L24", 48000, 2, Some(1.0), None, Some(0), "01-23-45-67-89-AB-CD-EF/127", "", 48),
    ("dn42-nop-stream-ipv6-malformed-no-t-line.sdp", "-", 0, "ff3e::8232:232", 1234, 96, "L24", 96000, 2, None, None, None, "", "ff3e::8232:232<-fd40:cc1e:c0de::fffe", 96),
    ("dn42-nop-stream-ipv4-malformed-no-t-line.sdp", "-", 0, "232.2.3.2", 1234, 96, "L24", 96000, 2, None, None, None, "", "232.2.3.2<-172.23.199.110", 96),
    ("caes67-sdp-gen-default-empty-s.sdp", "", 1, "224.0.0.1/32", 5004, 96, "L24", 48000, 2, Some(1.0), None, Some(0), "traceable", "", 48),
    ("ffmpeg-61-l16-48k-stereo-rtp-muxer.sdp", "No Name", 0, "127.0.0.1", 5004, 97, "L16", 48000, 2, None, None, None, "", "", 48),
    // Static PT 10 without rtpmap = L16/44100/2 (RFC 3551 §6); 1 ms default = 44 frames.
    ("vlc-minisapserver-roc-static-pt10-ttl255.sdp", "roc-recv", 16914, "239.255.12.42/255", 12345, 10, "L16", 44100, 2, None, None, None, "", "", 44),
    ("dante-digisupport-audioway-bridge-lf.sdp", "DIGISUPPORT-AudiowayBridge : 32", 3287835752, "239.69.207.194/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(1057709823), "00-1D-C1-FF-FE-0D-A9-88/0", "", 48),
    ("merging-hapi-mkii-l24-1ms-no-final-eol.sdp", "HapiMkII_95393_68", 68, "239.1.255.254/15", 5004, 98, "L24", 48000, 2, Some(1.0), Some(48), Some(0), HAPI_GM, "239.1.255.254<-10.1.255.254", 48),
    ("merging-hapi-mkii-ptime250us-framecount12.sdp", "HapiMkII_95393_65", 65, "239.1.255.254/15", 5004, 98, "L24", 48000, 2, Some(0.25), Some(12), Some(0), HAPI_GM, "239.1.255.254<-10.1.255.254", 12),
    ("dante-xcel-1201-session-level-i-and-recvonly.sdp", "XCEL-1201 : 32", 18311622000, "239.69.224.56/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(0), "2C-CF-67-FF-FE-75-93-93/0", "", 48),
    ("dante-avio-bluetooth-session-level-i-mediaclk0.sdp", "AVIO-Bluetooth : 2", 10943522194, "239.69.232.56/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(0), DANTE_GM_0E10C4, "", 48),
    ("dante-ssl-netio-madi-leading-whitespace.sdp", "SSL-NetIO-MADI-MM-414 : 32", 49635646640, "239.10.69.176/32", 5004, 97, "L24", 48000, 2, Some(1.0), None, Some(641649978), "00-1D-C1-FF-FE-12-2D-4C/0", "", 48),
    ("st2110-30-fixture-8ch-51-st-tsmode-samp.sdp", "CAM 1 audio", 1790510438, "239.10.10.2/32", 5006, 97, "L24", 48000, 8, Some(1.0), None, Some(0), TEK_GM, "239.10.10.2<-192.168.10.22", 48),
    // ptime 0.12 at 48 kHz rounds to 6 frames (ST 2110-30 125 us).
    ("st2110-31-fixture-am824-4xaes3-ptime012.sdp", "Dolby E feed", 1790510443, "239.10.10.7/32", 5016, 98, "AM824", 48000, 8, Some(0.12), None, Some(0), TEK_GM, "239.10.10.7<-192.168.10.50", 6),
    // c= before s= is accepted; no ptime, refclk or mediaclk.
    ("fpp-issue-malformed-c-before-s-vlc-minimal.sdp", "AES67 Audio Stream", 1311738121, "239.0.0.1/32", 5004, 96, "L24", 48000, 2, None, None, None, "", "", 48),
];

/// Files whose documented reading is not a single stream (checked in their own tests).
const SPECIAL: &[&str] = &[
    "aws-elemental-doc-malformed-anonymised-ips.sdp",
    "ebu-list-malformed-am824-pt-mismatch.sdp",
];

fn read(file: &str) -> String {
    let path = Path::new(CORPUS).join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn conn_text(s: &AudioStream) -> String {
    match s.connection {
        Some(c) => match c.ttl {
            Some(t) => format!("{}/{t}", c.address),
            None => c.address.to_string(),
        },
        None => String::new(),
    }
}

fn gm_text(s: &AudioStream) -> String {
    match &s.ts_refclk {
        None => String::new(),
        Some(RefClock::Ptp { gmid, domain, .. }) => {
            let id: Vec<String> = gmid.iter().map(|b| format!("{b:02X}")).collect();
            let dom = domain.map_or("-".to_string(), |d| d.to_string());
            format!("{}/{dom}", id.join("-"))
        }
        Some(RefClock::PtpTraceable { .. }) => "traceable".into(),
        Some(other) => format!("{other:?}"),
    }
}

fn ssm_text(s: &AudioStream) -> String {
    match &s.source_filter {
        None => String::new(),
        Some(f) => {
            let dest = f.destination.map_or("*".to_string(), |d| d.to_string());
            let srcs: Vec<String> = f.sources.iter().map(|a| a.to_string()).collect();
            format!("{dest}<-{}", srcs.join(","))
        }
    }
}

#[test]
fn corpus_path_resolves() {
    // The corpus sits beside the clone (CI checks out next to `shared/`), so only the shape
    // of the path is fixed: the index must sit one level above the SDP folder.
    let corpus = std::fs::canonicalize(CORPUS).expect("corpus dir exists beside the clone");
    assert!(
        corpus.ends_with("shared/testdata/sdp"),
        "{}",
        corpus.display()
    );
    assert!(corpus.parent().expect("parent").join("INDEX.md").is_file());
}

#[test]
fn every_corpus_file_is_covered() {
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(CORPUS).expect("corpus dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if !TABLE.iter().any(|r| r.0 == name) && !SPECIAL.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "not in the table: {missing:?}");
}

#[test]
fn corpus_table() {
    let mut failures = Vec::new();
    for row in TABLE {
        let (file, name, sess_id, conn, port, pt, enc, rate, ch, ptime, fc, mclk, gm, ssm, fpp) =
            *row;
        let d: SessionDescription = match sdp::parse(&read(file)) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let Some(s) = d.streams.first() else {
            failures.push(format!("{file}: no stream"));
            continue;
        };
        let got = (
            (d.name.as_str(), d.origin.session_id, conn_text(s), s.port),
            s.payload_type,
            s.format.encoding_name(),
            s.sample_rate,
            s.channels,
            s.ptime_ms,
            s.framecount.map(|f| match f {
                FrameCount::Exact(n) => n,
                FrameCount::Range { .. } => 0,
            }),
            s.media_clock_offset,
            gm_text(s),
            ssm_text(s),
            s.frames_per_packet(),
        );
        let want = (
            (name, sess_id, conn.to_string(), port),
            pt,
            enc,
            rate,
            ch,
            ptime,
            fc,
            mclk,
            gm.to_string(),
            ssm.to_string(),
            Some(fpp),
        );
        if got != want {
            failures.push(format!("{file}:\n  got  {got:?}\n  want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn dup_pair_second_leg() {
    let d = sdp::parse(&read("aes67-linux-daemon-st2022-7-dup-readme.sdp")).expect("parses");
    assert_eq!(d.streams.len(), 2);
    assert_eq!(d.groups.len(), 1);
    assert_eq!(d.groups[0].semantics, "DUP");
    assert_eq!(d.groups[0].mids, ["1", "2"]);
    let s2 = &d.streams[1];
    assert_eq!(s2.port, 5006);
    assert_eq!(s2.mid.as_deref(), Some("2"));
    assert_eq!(conn_text(s2), "239.1.0.1/15");
    assert_eq!(ssm_text(s2), "239.1.0.1<-192.168.1.18");
    assert_eq!(s2.direction, None);
    assert_eq!(d.streams[0].direction, Some(sdp::Direction::RecvOnly));
}

#[test]
fn anonymised_addresses_are_rejected_with_line() {
    match sdp::parse(&read("aws-elemental-doc-malformed-anonymised-ips.sdp")) {
        Err(SdpError::InvalidField {
            line: 2,
            field,
            value,
        }) => {
            assert_eq!(field, "o= unicast-address");
            assert_eq!(value, "10.xx.xxx.236");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn pt_mismatch_is_skipped_with_warning() {
    let d = sdp::parse(&read("ebu-list-malformed-am824-pt-mismatch.sdp")).expect("parses");
    assert_eq!(d.name, "st2110 0-1-0");
    assert!(d.streams.is_empty());
    assert!(
        d.warnings
            .iter()
            .any(|w| matches!(w, SdpWarning::SkippedMedia { line: 5, .. })),
        "{:?}",
        d.warnings
    );
}

#[test]
fn documented_fixes_are_warned() {
    let cases: &[(&str, SdpWarning)] = &[
        (
            "dn42-nop-stream-ipv4-malformed-no-t-line.sdp",
            SdpWarning::MissingTimeLine,
        ),
        (
            "dn42-nop-stream-ipv6-malformed-no-t-line.sdp",
            SdpWarning::MissingTimeLine,
        ),
        (
            "caes67-sdp-gen-default-empty-s.sdp",
            SdpWarning::EmptySessionName { line: 3 },
        ),
        (
            "dante-ssl-netio-madi-leading-whitespace.sdp",
            SdpWarning::LeadingWhitespace { line: 2 },
        ),
        (
            "dante-yamaha-ri8-d-1ch-crlf-no-final-eol.sdp",
            SdpWarning::MissingFinalNewline,
        ),
        (
            "dante-yamaha-dantepcie-2ch-lf-trailing-blank-line.sdp",
            SdpWarning::BlankLine { line: 14 },
        ),
        (
            "embrionix-like-st2110-multi-essence-blank-lines.sdp",
            SdpWarning::BlankLine { line: 5 },
        ),
    ];
    for (file, w) in cases {
        let d = sdp::parse(&read(file)).expect("parses");
        assert!(
            d.warnings.contains(w),
            "{file}: {w:?} not in {:?}",
            d.warnings
        );
    }
    // CRLF files from devices need no fix at all.
    let d = sdp::parse(&read("dante-avio-bluetooth-crlf.sdp")).expect("parses");
    assert!(d.warnings.is_empty(), "{:?}", d.warnings);
}

#[test]
fn info_inheritance() {
    // Session-level i= applies to the stream when the media has none.
    let d = sdp::parse(&read("dante-xcel-1201-session-level-i-and-recvonly.sdp")).expect("ok");
    assert_eq!(
        d.streams[0].info.as_deref(),
        Some("2 channels: DANTE TX 01, DANTE TX 02")
    );
    assert_eq!(d.streams[0].direction, Some(sdp::Direction::RecvOnly));
    // Media-level i= wins.
    let d = sdp::parse(&read("aes67-spec-stage-left-io-multicast.sdp")).expect("ok");
    assert_eq!(d.streams[0].info.as_deref(), Some("Channels 1-8"));
}

/// file, a=keywds, sync-time, clock-domain (stream), channel-order, channel labels joined
/// with "|" ("" none), ST 2110-30 level, ST 2110-10 issue (None = compliant), IPv6 `c=`.
type Row2 = (
    &'static str,
    Option<&'static str>,
    Option<u64>,
    Option<u8>,
    &'static str,
    &'static str,
    Option<Level>,
    Option<St2110_10Issue>,
    bool,
);

use St2110_10Issue::{MediaClockOffset as Off, NoMediaClock};

const LR: &str = "Left|Right";

/// Values from INDEX.md. Dante streams fail ST 2110-10 only on their non-zero media clock
/// offset; 44.1 kHz and 250 µs streams are outside every ST 2110-30 level.
#[rustfmt::skip]
const TABLE2: &[Row2] = &[
    ("merging-anubis-combo-lr.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("merging-anubis-611465-l24-midi.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("aes67vsc-8ch-keywds-aes67vsc.sdp", Some("AES67-VSC"), None, None, "", "1|2|3|4|5|6|7|8", Some(Level::A), None, false),
    ("aes67vsc-single-4ch-no-trailing-eol.sdp", None, None, None, "", "c1|c2|c3|c4", Some(Level::A), None, false),
    // i= names 2 channels but rtpmap says 8: the rtpmap wins and no labels are given.
    ("aes67vsc-vsc-keywds-dante-ttl15.sdp", Some("Dante"), None, Some(0), "", "", Some(Level::A), None, false),
    ("aes67-linux-daemon-st2022-7-dup-readme.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("aes67-linux-daemon-alsa-source0-44k1-traceable.sdp", None, Some(0), Some(0), "", "", None, None, false),
    // INDEX omits it, but the file carries a=sync-time:0.
    ("aes67-linux-daemon-remote-sap-source2.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("aes67-linux-daemon-test-44k1-framecount-range.sdp", None, Some(0), Some(0), "", "", None, None, false),
    ("merging-anubis-610120-crlf.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("merging-anubis-combo-lr-announce-crlf.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("aes67-spec-stage-left-io-multicast.sdp", None, None, None, "", "", Some(Level::A), Some(Off(963214424)), false),
    ("aes67-spec-stage-left-io-unicast-ptime250us.sdp", None, None, None, "", "", None, Some(Off(2216659908)), false),
    ("ravennakit-anubis-session-level-source-filter-unknown-attrs.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    // Session-level sync-time and clock-domain are inherited by the stream.
    ("lawo-mic8-12-rtsp-describe-body-truncated.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("ebu-list-l24-2ch-rate-param-dom127.sdp", None, None, None, "", "", Some(Level::A), None, false),
    ("embrionix-like-st2110-multi-essence-blank-lines.sdp", None, None, None, "", "", Some(Level::A), None, false),
    ("dante-yamaha-ri8-d-1ch-crlf-no-final-eol.sdp", Some("Dante"), None, None, "", "02", Some(Level::A), Some(Off(750129611)), false),
    ("dante-avio-bluetooth-crlf.sdp", Some("Dante"), None, None, "", LR, Some(Level::A), Some(Off(586769660)), false),
    ("aes67vsc-transmitter-keywds-dante-lf.sdp", Some("Dante"), None, None, "", LR, Some(Level::A), None, false),
    ("dante-yamaha-dantepcie-8ch-pt103-crlf.sdp", Some("Dante"), None, None, "", "57|58|59|60|61|62|63|64", Some(Level::A), Some(Off(412374555)), false),
    ("dante-yamaha-dante-accel-2ch-pt97.sdp", Some("Dante"), None, None, "", "05|06", Some(Level::A), Some(Off(1004512176)), false),
    ("dante-yamaha-dantepcie-2ch-lf-trailing-blank-line.sdp", Some("Dante"), None, None, "", "15|16", Some(Level::A), Some(Off(1309091455)), false),
    ("dante-avio-usbc-2ch.sdp", Some("Dante"), None, None, "", LR, Some(Level::A), Some(Off(1266592257)), false),
    ("dante-avio-usb-512357-from-sap.sdp", Some("Dante"), None, None, "", LR, Some(Level::A), Some(Off(3969992633)), false),
    ("merging-ravenna-coreaudio-mac-from-sap.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("bbc-ipstudio-amwa-nmos-l24-2ch-extmap.sdp", None, None, None, "", "", Some(Level::A), Some(Off(1970351840)), false),
    ("telos-handwritten-template-dom127-placeholder-gm.sdp", None, Some(0), None, "", "", Some(Level::A), None, false),
    // 96 kHz stereo at the 1 ms default: level AX. No mediaclk, so not ST 2110-10.
    ("dn42-nop-stream-ipv6-malformed-no-t-line.sdp", None, None, None, "", "", Some(Level::AX), Some(NoMediaClock), true),
    ("dn42-nop-stream-ipv4-malformed-no-t-line.sdp", None, None, None, "", "", Some(Level::AX), Some(NoMediaClock), false),
    ("caes67-sdp-gen-default-empty-s.sdp", None, None, None, "", "", Some(Level::A), None, false),
    ("ffmpeg-61-l16-48k-stereo-rtp-muxer.sdp", None, None, None, "", "", Some(Level::A), Some(NoMediaClock), false),
    // 44.1 kHz: no ST 2110-30 level.
    ("vlc-minisapserver-roc-static-pt10-ttl255.sdp", None, None, None, "", "", None, Some(NoMediaClock), false),
    ("dante-digisupport-audioway-bridge-lf.sdp", Some("Dante"), None, None, "", "03|04", Some(Level::A), Some(Off(1057709823)), false),
    ("merging-hapi-mkii-l24-1ms-no-final-eol.sdp", None, Some(0), Some(0), "", "", Some(Level::A), None, false),
    ("merging-hapi-mkii-ptime250us-framecount12.sdp", None, Some(0), Some(0), "", "", None, None, false),
    ("dante-xcel-1201-session-level-i-and-recvonly.sdp", Some("Dante"), None, None, "", "DANTE TX 01|DANTE TX 02", Some(Level::A), None, false),
    ("dante-avio-bluetooth-session-level-i-mediaclk0.sdp", Some("Dante"), None, None, "", LR, Some(Level::A), None, false),
    ("dante-ssl-netio-madi-leading-whitespace.sdp", Some("Dante"), None, None, "", "01|02", Some(Level::A), Some(Off(641649978)), false),
    ("st2110-30-fixture-8ch-51-st-tsmode-samp.sdp", None, None, None, "SMPTE2110.(51,ST)", "L|R|C|LFE|Ls|Rs|L|R", Some(Level::A), None, false),
    // 0.12 ms rounds 125 µs: 6 frames at 48 kHz, so level B.
    ("st2110-31-fixture-am824-4xaes3-ptime012.sdp", None, None, None, "SMPTE2110.(AES3,AES3,AES3,AES3)", "AES3 A|AES3 B|AES3 A|AES3 B|AES3 A|AES3 B|AES3 A|AES3 B", Some(Level::B), None, false),
    ("fpp-issue-malformed-c-before-s-vlc-minimal.sdp", None, None, None, "", "", Some(Level::A), Some(NoMediaClock), false),
];

#[test]
fn corpus_table_st2110_and_dante_fields() {
    assert_eq!(
        TABLE2.len(),
        TABLE.len(),
        "both tables cover the same files"
    );
    let mut failures = Vec::new();
    for row in TABLE2 {
        let (file, keywds, sync, domain, order, labels, level, issue, ipv6) = row.clone();
        let d = match sdp::parse(&read(file)) {
            Ok(d) => d,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let Some(s) = d.streams.first() else {
            failures.push(format!("{file}: no stream"));
            continue;
        };
        let got = (
            d.keywords.clone(),
            s.sync_time,
            s.clock_domain,
            s.channel_order
                .as_ref()
                .map_or(String::new(), |o| o.to_string()),
            s.channel_labels().map_or(String::new(), |l| l.join("|")),
            s.conformance_level(),
            s.st2110_10_compliance().err(),
            s.connection.is_some_and(|c| c.address.is_ipv6()),
        );
        let want = (
            keywds.map(str::to_string),
            sync,
            domain,
            order.to_string(),
            labels.to_string(),
            level,
            issue,
            ipv6,
        );
        if got != want {
            failures.push(format!("{file}:\n  got  {got:?}\n  want {want:?}"));
        }
        // Every corpus file survives the strict writer unchanged.
        let mut back = sdp::parse(&d.to_sdp_string()).expect("own output parses");
        back.warnings.clear();
        let mut d = d;
        d.warnings.clear();
        if back != d {
            failures.push(format!("{file}: write/parse round trip differs"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn framecount_range_keeps_both_ends() {
    let d = sdp::parse(&read("aes67-linux-daemon-test-44k1-framecount-range.sdp")).expect("ok");
    let s = &d.streams[0];
    assert_eq!(s.framecount, Some(FrameCount::Range { min: 64, max: 192 }));
    assert_eq!(s.maxptime_ms, Some(1.08843537415));
    // A range does not fix the packet size: ptime does (48 frames at 44.1 kHz).
    assert_eq!(s.frames_per_packet(), Some(48));
    assert_eq!(
        s.packet_time(),
        Some(std::time::Duration::from_nanos(1_088_435))
    );
    assert!(d.to_sdp_string().contains("a=framecount:64-192\r\n"));
}

#[test]
fn rounded_ptime_gives_exact_packet_time() {
    let d = sdp::parse(&read("st2110-31-fixture-am824-4xaes3-ptime012.sdp")).expect("ok");
    let s = &d.streams[0];
    assert_eq!(s.ptime_ms, Some(0.12));
    assert_eq!(s.frames_per_packet(), Some(6));
    assert_eq!(s.packet_time(), Some(std::time::Duration::from_micros(125)));
    let order = s.channel_order.as_ref().expect("channel-order");
    assert_eq!(order.symbols, [ChannelGroup::Aes3; 4]);
    assert!(order.matches(s.channels));
    assert!(
        !d.warnings
            .iter()
            .any(|w| matches!(w, SdpWarning::ChannelCountMismatch { .. }))
    );
}

#[test]
fn dup_pairs_from_group_and_mid() {
    let d = sdp::parse(&read("aes67-linux-daemon-st2022-7-dup-readme.sdp")).expect("ok");
    assert_eq!(d.dup_pairs(), [(0, 1)]);
    // Without a=group there are no pairs, even with two streams elsewhere.
    let d = sdp::parse(&read("embrionix-like-st2110-multi-essence-blank-lines.sdp")).expect("ok");
    assert!(d.dup_pairs().is_empty());
}

#[test]
fn ipv6_connection_and_source_filter() {
    let d = sdp::parse(&read("dn42-nop-stream-ipv6-malformed-no-t-line.sdp")).expect("ok");
    let s = &d.streams[0];
    let c = s.connection.expect("c=");
    assert_eq!(
        c.address,
        "ff3e::8232:232".parse::<std::net::IpAddr>().expect("ip")
    );
    assert_eq!((c.ttl, c.count), (None, None));
    assert_eq!(d.origin.address, "fd40:cc1e:c0de::fffe");
    let text = d.to_sdp_string();
    assert!(
        text.contains("o=- 0 0 IN IP6 fd40:cc1e:c0de::fffe\r\n"),
        "{text}"
    );
    assert!(text.contains("c=IN IP6 ff3e::8232:232\r\n"), "{text}");
}

#[test]
fn dante_info_labels_do_not_override_rtpmap() {
    let d = sdp::parse(&read("aes67vsc-vsc-keywds-dante-ttl15.sdp")).expect("ok");
    let s = &d.streams[0];
    assert_eq!(s.channels, 8);
    assert_eq!(
        s.info_labels(),
        Some(vec!["Left".to_string(), "Right".to_string()])
    );
    assert_eq!(s.channel_labels(), None);
}

/// Each MALFORMED or ODD file in INDEX.md: either a precise error or the documented lenient
/// reading.
#[test]
fn malformed_files_documented_reading() {
    // Anonymised addresses: rejected at the first one, the o= line.
    assert!(matches!(
        sdp::parse(&read("aws-elemental-doc-malformed-anonymised-ips.sdp")),
        Err(SdpError::InvalidField {
            line: 2,
            field: "o= unicast-address",
            ..
        })
    ));
    // PT 97 announced, rtpmap only for 96: the stream is skipped, the session still reads.
    let d = sdp::parse(&read("ebu-list-malformed-am824-pt-mismatch.sdp")).expect("ok");
    assert!(d.streams.is_empty());
    // No t=: read with t=0 0 assumed.
    for f in [
        "dn42-nop-stream-ipv4-malformed-no-t-line.sdp",
        "dn42-nop-stream-ipv6-malformed-no-t-line.sdp",
    ] {
        let d = sdp::parse(&read(f)).expect("lenient");
        assert!(d.warnings.contains(&SdpWarning::MissingTimeLine), "{f}");
        assert_eq!(d.name, "-");
        assert_eq!(d.streams[0].sample_rate, 96_000);
    }
    // c= before s=: accepted as a session-level c=, no warning needed.
    let text = read("fpp-issue-malformed-c-before-s-vlc-minimal.sdp");
    assert!(text.find("c=").expect("c=") < text.find("s=").expect("s="));
    let d = sdp::parse(&text).expect("lenient");
    assert_eq!(d.name, "AES67 Audio Stream");
    assert_eq!(d.origin.session_version, 1);
    assert_eq!(conn_text(&d.streams[0]), "239.0.0.1/32");
    // Blank lines between sections: skipped; the audio section is read, video skipped.
    let d = sdp::parse(&read("embrionix-like-st2110-multi-essence-blank-lines.sdp")).expect("ok");
    assert_eq!(d.streams.len(), 1);
    assert_eq!(
        d.warnings
            .iter()
            .filter(|w| matches!(w, SdpWarning::SkippedMedia { .. }))
            .count(),
        2
    );
    // Body cut before the media-level clock lines: the session-level ones apply.
    let d = sdp::parse(&read("lawo-mic8-12-rtsp-describe-body-truncated.sdp")).expect("ok");
    let s = &d.streams[0];
    assert!(s.is_st2110_10_compliant());
    assert!(d.warnings.contains(&SdpWarning::MissingFinalNewline));
}
