//! Catalog scenarios with an injected clock: announce, re-announce, version change, stale,
//! revive, SAP deletion by key and by `o=` line, time-out, selectors.

use std::time::Duration;

use estuary_engine::catalog::{
    Catalog, CatalogConfig, CatalogEvent, Liveness, Protocol, RemovalReason, SessionIdentity,
    StreamSelector,
};
use estuary_engine::time::MonoTime;

fn sdp(name: &str, session_id: u64, version: u64, port: u16) -> String {
    format!(
        "v=0\r\no=- {session_id} {version} IN IP4 192.168.1.10\r\ns={name}\r\nc=IN IP4 239.69.1.1/32\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 97\r\na=rtpmap:97 L24/48000/2\r\na=ptime:1\r\n"
    )
}

fn at(secs: u64) -> MonoTime {
    MonoTime::from_nanos(1_000_000_000 + secs * 1_000_000_000)
}

#[test]
fn announcements_add_once_and_measure_the_interval() {
    let mut cat = Catalog::default();
    let text = sdp("Studio A Main", 7, 1, 5004);
    let first = cat
        .announce(
            at(0),
            Protocol::Sap,
            "192.168.1.10/4660",
            "192.168.1.10",
            &text,
        )
        .expect("parses");
    assert_eq!(
        first,
        Some(CatalogEvent::Added {
            protocol: Protocol::Sap,
            name: "Studio A Main".into()
        })
    );
    for t in [30, 60, 90] {
        let again = cat
            .announce(
                at(t),
                Protocol::Sap,
                "192.168.1.10/4660",
                "192.168.1.10",
                &text,
            )
            .expect("parses");
        assert_eq!(again, None, "a plain refresh is not an event");
    }
    assert_eq!(cat.entries().len(), 1);
    let entry = &cat.entries()[0];
    assert_eq!(entry.announcements, 4);
    assert_eq!(entry.interval, Some(Duration::from_secs(30)));
    assert_eq!(entry.first_seen, at(0));
    assert_eq!(entry.last_seen, at(90));
    assert_eq!(entry.session.streams[0].port, 5004);
}

#[test]
fn a_new_version_updates_the_same_entry_even_under_a_new_sap_hash() {
    let mut cat = Catalog::default();
    cat.announce(at(0), Protocol::Sap, "o/1", "o", &sdp("Desk", 9, 1, 5004))
        .expect("parses");
    let event = cat
        .announce(at(5), Protocol::Sap, "o/2", "o", &sdp("Desk", 9, 2, 5006))
        .expect("parses");
    assert_eq!(
        event,
        Some(CatalogEvent::Updated {
            protocol: Protocol::Sap,
            name: "Desk".into()
        })
    );
    assert_eq!(cat.entries().len(), 1);
    let entry = &cat.entries()[0];
    assert_eq!(entry.version(), 2);
    assert_eq!(entry.changes, 1);
    assert_eq!(entry.session.streams[0].port, 5006);
    assert_eq!(entry.keys, vec!["o/1".to_string(), "o/2".to_string()]);
    // A deletion naming the old hash still removes it.
    let gone = cat.withdraw(Protocol::Sap, "o/1", None);
    assert!(matches!(
        gone,
        Some(CatalogEvent::Removed {
            why: RemovalReason::Withdrawn,
            ..
        })
    ));
    assert!(cat.entries().is_empty());
}

#[test]
fn a_deletion_carrying_only_the_origin_line_removes_by_identity() {
    let mut cat = Catalog::default();
    cat.announce(at(0), Protocol::Sap, "a/1", "a", &sdp("Desk", 9, 1, 5004))
        .expect("parses");
    let identity = SessionIdentity {
        username: "-".into(),
        session_id: 9,
        address: "192.168.1.10".into(),
    };
    assert!(
        cat.withdraw(Protocol::Sap, "other/7", Some(&identity))
            .is_some()
    );
    assert!(cat.entries().is_empty());
    assert_eq!(cat.withdraw(Protocol::Sap, "a/1", None), None);
}

#[test]
fn silence_makes_an_entry_stale_then_forgotten_and_an_announcement_revives_it() {
    let mut cat = Catalog::new(CatalogConfig::default());
    let text = sdp("Stage", 1, 1, 5004);
    cat.announce(at(0), Protocol::Sap, "k", "a", &text)
        .expect("parses");
    cat.announce(at(10), Protocol::Sap, "k", "a", &text)
        .expect("parses");
    let mut events = Vec::new();
    cat.tick(at(40), &mut events);
    assert!(events.is_empty(), "3 intervals of 10 s have not passed yet");
    cat.tick(at(41), &mut events);
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0], CatalogEvent::Stale { .. }));
    assert_eq!(cat.entries()[0].liveness, Liveness::Stale);
    let revived = cat
        .announce(at(50), Protocol::Sap, "k", "a", &text)
        .expect("parses");
    assert!(matches!(revived, Some(CatalogEvent::Revived { .. })));
    events.clear();
    // Forgotten after the longer of 10 intervals and an hour.
    cat.tick(at(50 + 3600), &mut events);
    assert!(matches!(events.last(), Some(CatalogEvent::Stale { .. })));
    cat.tick(at(50 + 3601), &mut events);
    assert!(matches!(
        events.last(),
        Some(CatalogEvent::Removed {
            why: RemovalReason::TimedOut,
            ..
        })
    ));
    assert!(cat.entries().is_empty());
}

#[test]
fn ravenna_entries_do_not_time_out() {
    let mut cat = Catalog::default();
    cat.announce(
        at(0),
        Protocol::Ravenna,
        "mic8",
        "10.0.0.5",
        &sdp("mic8", 3, 1, 5004),
    )
    .expect("parses");
    let mut events = Vec::new();
    cat.tick(at(100_000), &mut events);
    assert!(events.is_empty());
    assert_eq!(cat.entries()[0].liveness, Liveness::Active);
}

#[test]
fn bad_sdp_is_refused_and_counted() {
    let mut cat = Catalog::default();
    assert!(
        cat.announce(at(0), Protocol::Sap, "k", "10.0.0.9", "this is not sdp")
            .is_err()
    );
    let (count, why) = cat.rejected();
    assert_eq!(count, 1);
    assert!(why.expect("reason").contains("10.0.0.9"));
    assert!(cat.entries().is_empty());
}

#[test]
fn selectors_match_by_protocol_and_name_ignoring_case_and_spaces() {
    let mut cat = Catalog::default();
    cat.announce(
        at(0),
        Protocol::Sap,
        "s",
        "a",
        &sdp("Studio A Main", 1, 1, 5004),
    )
    .expect("parses");
    cat.announce(
        at(1),
        Protocol::Ravenna,
        "r",
        "b",
        &sdp("Studio A Main", 2, 1, 5008),
    )
    .expect("parses");
    let sap = StreamSelector::parse("sap: studio a main ").expect("selector");
    assert_eq!(sap.protocol, Some(Protocol::Sap));
    assert_eq!(cat.find(&sap).expect("found").session.streams[0].port, 5004);
    let rav = StreamSelector::parse("ravenna:Studio A Main").expect("selector");
    assert_eq!(cat.find(&rav).expect("found").session.streams[0].port, 5008);
    let any = StreamSelector::parse("name:Studio A Main").expect("selector");
    assert_eq!(
        cat.find(&any).expect("found").protocol,
        Protocol::Ravenna,
        "latest wins"
    );
    assert!(
        cat.find(&StreamSelector::parse("sap:Studio B").expect("sel"))
            .is_none()
    );
    assert_eq!(StreamSelector::parse("10.0.0.1"), None);
    assert_eq!(StreamSelector::parse("sap:"), None);
    assert_eq!(StreamSelector::parse("http:x"), None);
    assert_eq!(sap.to_string(), "sap:studio a main");
}

#[test]
fn the_catalog_is_bounded() {
    let mut cat = Catalog::new(CatalogConfig {
        max_entries: 3,
        ..CatalogConfig::default()
    });
    for i in 0..5u64 {
        let name = format!("s{i}");
        cat.announce(at(i), Protocol::Sap, &name, "a", &sdp(&name, i, 1, 5004))
            .expect("parses");
    }
    let names: Vec<&str> = cat.entries().iter().map(|e| e.name()).collect();
    assert_eq!(names, ["s2", "s3", "s4"]);
}
