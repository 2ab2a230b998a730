//! Our SAP announcer against our SAP listener, and the listener's counters, in a private
//! network namespace.

mod support;

use support::isolate;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use estuary_io::mcast::{Interface, open_send_socket, resolve_interface};
use estuary_io::netns::IPV6_TEST_INTERFACE;
use estuary_io::sap::{
    SAP_GROUP_ADMIN_V4, SAP_GROUP_SITE_V6, SapAnnouncer, SapAnnouncerConfig, SapListener,
    SapListenerConfig, SapListenerStats, SapSession,
};
use estuary_wire::sap::{MessageType, SapPacket, message_id_hash};

fn lo() -> Interface {
    resolve_interface("lo").expect("lo")
}

fn listener(groups: Vec<IpAddr>, iface: Interface) -> SapListener {
    SapListener::open(&SapListenerConfig {
        groups,
        iface: Some(iface),
        timeout: Some(Duration::from_millis(100)),
        ..SapListenerConfig::default()
    })
    .expect("SAP listener")
}

fn sdp(version: u32) -> String {
    format!(
        "v=0\r\no=- 77 {version} IN IP4 127.0.0.1\r\ns=loop\r\nc=IN IP4 239.69.1.1/1\r\nt=0 0\r\n\
         m=audio 5004 RTP/AVP 98\r\na=rtpmap:98 L24/48000/2\r\n"
    )
}

fn next(l: &mut SapListener, within: Duration) -> Option<(SapPacket, Instant)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some((p, _)) = l.recv().expect("recv") {
            return Some((p, Instant::now()));
        }
    }
    None
}

#[test]
fn announcer_lifecycle_seen_by_listener() {
    isolate();
    let mut l = listener(vec![SAP_GROUP_ADMIN_V4.into()], lo());
    let base = Duration::from_millis(600);
    let mut a = SapAnnouncer::spawn(SapAnnouncerConfig {
        base_interval: base,
        seed: 3,
    })
    .expect("announcer");
    let session = |text: String| SapSession {
        sdp: text,
        dest: SocketAddr::new(SAP_GROUP_ADMIN_V4.into(), 9875),
        iface: Some(lo()),
        ttl: 1,
        origin: None,
    };
    let t0 = Instant::now();
    a.set("s", session(sdp(1))).expect("set");

    // The first announcement goes out at once, keyed by the o= line hash.
    let (p1, t1) = next(&mut l, Duration::from_secs(1)).expect("first announcement");
    assert!(t1 - t0 < Duration::from_millis(200), "{:?}", t1 - t0);
    assert_eq!(p1.message_type, MessageType::Announce);
    assert_eq!(p1.origin, "127.0.0.1".parse::<IpAddr>().expect("ip"));
    assert_eq!(p1.msg_id_hash, message_id_hash(&sdp(1)));
    assert_eq!(p1.sdp(), Some(sdp(1).as_str()));

    // Re-announcements keep the key and come base ± 1/3 apart.
    let mut last = t1;
    for _ in 0..3 {
        let (p, t) = next(&mut l, Duration::from_secs(2)).expect("re-announcement");
        assert_eq!(p, p1);
        let gap = t - last;
        assert!(
            gap >= base.mul_f64(2.0 / 3.0) - Duration::from_millis(20)
                && gap <= base.mul_f64(4.0 / 3.0) + Duration::from_millis(50),
            "gap {gap:?}"
        );
        last = t;
    }

    // A new version is announced at once under a new key.
    let t_update = Instant::now();
    a.set("s", session(sdp(2))).expect("update");
    let (p2, t2) = next(&mut l, Duration::from_secs(1)).expect("updated announcement");
    assert!(t2 - t_update < Duration::from_millis(200));
    assert_eq!(p2.sdp(), Some(sdp(2).as_str()));
    assert_ne!(p2.key(), p1.key());

    // Removing sends a deletion of the current key, payload the o= line.
    a.remove("s").expect("remove");
    let (d, _) = next(&mut l, Duration::from_secs(1)).expect("deletion");
    assert_eq!(d.message_type, MessageType::Delete);
    assert_eq!(d.key(), p2.key());
    assert_eq!(d.sdp(), Some("o=- 77 2 IN IP4 127.0.0.1\r\n"));

    // Stop deletes whatever is still announced.
    a.set("t", session(sdp(9))).expect("set t");
    let (p9, _) = next(&mut l, Duration::from_secs(1)).expect("announce t");
    a.stop();
    let (d9, _) = next(&mut l, Duration::from_secs(1)).expect("deletion on stop");
    assert_eq!((d9.message_type, d9.key()), (MessageType::Delete, p9.key()));
    assert!(
        next(&mut l, Duration::from_millis(300)).is_none(),
        "silent after stop"
    );
    let st = a.stats();
    assert_eq!((st.deletions, st.send_errors), (2, 0), "{st:?}");
    assert!(st.announcements >= 6, "{st:?}");
}

#[test]
fn listener_counts_what_it_cannot_use() {
    isolate();
    let mut l = listener(vec![SAP_GROUP_ADMIN_V4.into()], lo());
    let dest = SocketAddr::new(SAP_GROUP_ADMIN_V4.into(), 9875);
    let tx = open_send_socket(dest, Some(&lo()), 1, 0).expect("send socket");
    let origin: IpAddr = "10.0.0.1".parse().expect("ip");
    let good = SapPacket::announce(origin, &sdp(1));
    let mut compressed = SapPacket::announce(origin, &sdp(2));
    compressed.compressed = true;
    let good_bytes = good.to_bytes().expect("encode");
    let mut encrypted = good_bytes.clone();
    encrypted[0] |= 0x02;
    let mut hash0 = good_bytes.clone();
    hash0[2..4].copy_from_slice(&[0, 0]);
    let mut other_type = SapPacket::announce(origin, &sdp(1));
    other_type.payload_type = Some("text/plain".into());
    for bytes in [
        encrypted,
        good_bytes[..6].to_vec(),
        hash0,
        other_type.to_bytes().expect("encode"),
        good_bytes.clone(),
        compressed.to_bytes().expect("encode"),
    ] {
        tx.send(&bytes).expect("send");
    }
    let (p, from) = l.recv().expect("recv").expect("the valid announcement");
    assert_eq!(p, good);
    assert_eq!(from.ip(), "127.0.0.1".parse::<IpAddr>().expect("ip"));
    let (q, _) = l
        .recv()
        .expect("recv")
        .expect("the compressed announcement");
    assert_eq!(q, compressed);
    assert!(l.recv().expect("recv").is_none());
    assert_eq!(
        l.stats(),
        SapListenerStats {
            received: 6,
            decoded: 2,
            encrypted: 1,
            malformed: 1,
            ignored: 2,
        }
    );
}

#[test]
fn listener_hears_only_the_groups_it_joined() {
    isolate();
    let mut l = listener(vec![SAP_GROUP_ADMIN_V4.into()], lo());
    let other = SocketAddr::new("224.2.127.254".parse().expect("ip"), 9875);
    let tx = open_send_socket(other, Some(&lo()), 1, 0).expect("send socket");
    let p = SapPacket::announce("10.0.0.1".parse().expect("ip"), &sdp(1));
    tx.send(&p.to_bytes().expect("encode")).expect("send");
    assert!(l.recv().expect("recv").is_none());
    assert_eq!(l.stats().received, 0);
}

#[test]
fn ipv6_announcement_is_heard_on_the_site_group() {
    isolate();
    let iface = resolve_interface(IPV6_TEST_INTERFACE).expect("IPv6 test interface");
    let mut l = listener(vec![SAP_GROUP_SITE_V6.into()], iface.clone());
    let mut a = SapAnnouncer::spawn(SapAnnouncerConfig::default()).expect("announcer");
    let origin: IpAddr = "fd00::1".parse().expect("ip");
    a.set(
        "v6",
        SapSession {
            sdp: sdp(1),
            dest: SocketAddr::new(SAP_GROUP_SITE_V6.into(), 9875),
            iface: Some(iface),
            ttl: 1,
            origin: Some(origin),
        },
    )
    .expect("set");
    let (p, _) = next(&mut l, Duration::from_secs(2)).expect("IPv6 announcement");
    assert_eq!((p.origin, p.message_type), (origin, MessageType::Announce));
    assert_eq!(p.sdp(), Some(sdp(1).as_str()));
    a.stop();
    let (d, _) = next(&mut l, Duration::from_secs(1)).expect("IPv6 deletion");
    assert_eq!((d.message_type, d.key()), (MessageType::Delete, p.key()));
}
