//! Source-specific multicast and group isolation, in a private network namespace.

mod support;

use support::isolate;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use estuary_io::batch::{BatchReceiver, wait_readable};
use estuary_io::mcast::{open_receive_socket, resolve_interface};

/// A multicast sender bound to `source`, so packets carry that source address.
fn sender(source: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((source, 0)).expect("bind sender");
    s.set_multicast_loop_v4(true).expect("loop");
    s
}

/// Counts packets per source address until `quiet` passes with nothing new.
fn drain(rx: &UdpSocket, quiet: Duration) -> BTreeMap<IpAddr, usize> {
    let mut counts = BTreeMap::new();
    let mut batch = BatchReceiver::new(32);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && wait_readable(rx.as_raw_fd(), quiet).expect("poll") {
        batch.recv(rx).expect("recv");
        for p in batch.packets() {
            *counts.entry(p.source.ip()).or_insert(0) += 1;
        }
    }
    counts
}

#[test]
fn ssm_join_hears_only_its_source() {
    isolate();
    let lo = resolve_interface("lo").expect("lo");
    let group = SocketAddr::from(([232, 69, 2, 2], 5006));
    let a = Ipv4Addr::new(127, 0, 0, 1);
    let b = Ipv4Addr::new(127, 0, 0, 2);
    let ssm_b = open_receive_socket(group, Some(IpAddr::V4(b)), Some(&lo)).expect("SSM join");
    let ssm_a_default = open_receive_socket(group, Some(IpAddr::V4(a)), None).expect("SSM join");
    let asm = open_receive_socket(group, None, Some(&lo)).expect("ASM join");
    let (tx_a, tx_b) = (sender(a), sender(b));
    for i in 0..20u8 {
        tx_a.send_to(&[0xa, i], group).expect("send a");
        tx_b.send_to(&[0xb, i], group).expect("send b");
    }
    let quiet = Duration::from_millis(200);
    let got_b = drain(&ssm_b, quiet);
    let got_a = drain(&ssm_a_default, quiet);
    let got_any = drain(&asm, quiet);
    println!("SSM(b): {got_b:?}  SSM(a): {got_a:?}  ASM: {got_any:?}");
    assert_eq!(got_b, BTreeMap::from([(IpAddr::V4(b), 20)]));
    assert_eq!(got_a, BTreeMap::from([(IpAddr::V4(a), 20)]));
    assert_eq!(
        got_any,
        BTreeMap::from([(IpAddr::V4(a), 20), (IpAddr::V4(b), 20)])
    );
}

#[test]
fn other_groups_on_same_port_do_not_leak_in() {
    isolate();
    let g1 = SocketAddr::from(([239, 69, 2, 1], 5004));
    let g2 = SocketAddr::from(([239, 69, 2, 2], 5004));
    let rx1 = open_receive_socket(g1, None, None).expect("join g1");
    let rx2 = open_receive_socket(g2, None, None).expect("join g2");
    let tx = sender(Ipv4Addr::LOCALHOST);
    for _ in 0..10 {
        tx.send_to(b"g1", g1).expect("send g1");
    }
    for _ in 0..7 {
        tx.send_to(b"g2", g2).expect("send g2");
    }
    let quiet = Duration::from_millis(200);
    let n1: usize = drain(&rx1, quiet).values().sum();
    let n2: usize = drain(&rx2, quiet).values().sum();
    assert_eq!((n1, n2), (10, 7));
}

#[test]
fn ssm_join_v6_hears_only_its_source() {
    use estuary_io::netns::{IPV6_TEST_ADDRESS, IPV6_TEST_INTERFACE};
    use std::net::{Ipv6Addr, SocketAddrV6};
    isolate();
    let est0 = resolve_interface(IPV6_TEST_INTERFACE).expect("est0");
    let a = IPV6_TEST_ADDRESS;
    let b = Ipv6Addr::new(0xfd00, 0x0e57, 0, 0, 0, 0, 0, 2);
    let status = std::process::Command::new("ip")
        .args([
            "-6",
            "addr",
            "add",
            &format!("{b}/64"),
            "dev",
            IPV6_TEST_INTERFACE,
            "nodad",
        ])
        .status()
        .expect("ip");
    assert!(status.success());
    let group = SocketAddr::from(("ff35::6902".parse::<Ipv6Addr>().expect("group"), 5006));
    let ssm_b = open_receive_socket(group, Some(IpAddr::V6(b)), Some(&est0)).expect("SSM join");
    let asm = open_receive_socket(group, None, Some(&est0)).expect("ASM join");
    let send_from = |src: Ipv6Addr| {
        let s = UdpSocket::bind(SocketAddrV6::new(src, 0, 0, 0)).expect("bind sender");
        socket2::SockRef::from(&s)
            .set_multicast_if_v6(est0.index)
            .expect("multicast if");
        for i in 0..20u8 {
            s.send_to(&[i], group).expect("send");
        }
    };
    send_from(a);
    send_from(b);
    let quiet = Duration::from_millis(200);
    let got_b = drain(&ssm_b, quiet);
    let got_any = drain(&asm, quiet);
    println!("SSM(b): {got_b:?}  ASM: {got_any:?}");
    assert_eq!(got_b, BTreeMap::from([(IpAddr::V6(b), 20)]));
    assert_eq!(
        got_any,
        BTreeMap::from([(IpAddr::V6(a), 20), (IpAddr::V6(b), 20)])
    );
}
