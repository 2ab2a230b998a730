//! Namespace set-up and interface resolution, inside a private network namespace.

mod support;

use support::isolate;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use estuary_io::batch::{BatchReceiver, wait_readable};
use estuary_io::mcast::{
    InterfaceError, list_interfaces, open_receive_socket, open_send_socket, resolve_interface,
};
use estuary_io::netns::{IPV6_TEST_ADDRESS, IPV6_TEST_INTERFACE};
use std::os::fd::AsRawFd;

#[test]
fn namespace_has_only_multicast_loopback() {
    isolate();
    let ifaces = list_interfaces().expect("getifaddrs");
    let names: Vec<&str> = ifaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["lo", "est1", IPV6_TEST_INTERFACE],
        "a fresh namespace holds only lo and the IPv6 veth pair"
    );
    let lo = &ifaces[0];
    assert!(lo.up && lo.multicast, "{lo:?}");
    assert_eq!(lo.ipv4, Some(Ipv4Addr::LOCALHOST));
    assert!(lo.ipv6.contains(&Ipv6Addr::LOCALHOST), "{lo:?}");
    let est0 = resolve_interface(&IPV6_TEST_ADDRESS.to_string()).expect("est0 by address");
    assert_eq!(est0.name, IPV6_TEST_INTERFACE);
    assert!(est0.up && est0.multicast && est0.ipv4.is_none(), "{est0:?}");
}

#[test]
fn resolve_by_name_and_address() {
    isolate();
    let by_name = resolve_interface("lo").expect("lo");
    assert!(by_name.index > 0);
    assert_eq!(resolve_interface("127.0.0.1").expect("v4").name, "lo");
    assert_eq!(resolve_interface("::1").expect("v6").name, "lo");
    assert_eq!(resolve_interface("[::1]").expect("bracketed v6").name, "lo");
}

#[test]
fn unknown_interface_error_lists_available() {
    isolate();
    let err = resolve_interface("nope0").expect_err("no nope0");
    let msg = err.to_string();
    println!("{msg}");
    assert!(matches!(err, InterfaceError::NotFound { .. }));
    assert!(msg.contains("\"nope0\""), "{msg}");
    assert!(msg.contains("lo (127.0.0.1, ::1)"), "{msg}");
    assert!(msg.contains("est0 (fd00:e57::1"), "{msg}");
    let err = resolve_interface("10.9.9.9").expect_err("no such address");
    assert!(err.to_string().contains("lo"), "{err}");
}

/// Both multicast set-ups work: IPv4 on lo, IPv6 on est0; each with the interface
/// given and relying on the namespace's routes.
#[test]
fn multicast_loops_back_v4_and_v6() {
    isolate();
    let lo = resolve_interface("lo").expect("lo");
    let est0 = resolve_interface(IPV6_TEST_INTERFACE).expect("est0");
    for (group, iface) in [
        (IpAddr::V4(Ipv4Addr::new(239, 69, 9, 9)), &lo),
        (IpAddr::V6("ff15::6969".parse().expect("v6 group")), &est0),
    ] {
        let dest = SocketAddr::new(group, 5010);
        for iface in [Some(iface), None] {
            let rx = open_receive_socket(dest, None, iface).expect("receive socket");
            let tx = open_send_socket(dest, iface, 1, 34).expect("send socket");
            tx.send(b"hello").expect("send");
            assert!(
                wait_readable(rx.as_raw_fd(), Duration::from_secs(2)).expect("poll"),
                "{dest} via {iface:?}: nothing arrived"
            );
            let mut batch = BatchReceiver::new(4);
            assert_eq!(batch.recv(&rx).expect("recv"), 1);
            let p = batch.packets().next().expect("one packet");
            assert_eq!(p.data, b"hello");
            assert!(p.kernel_timestamp);
        }
    }
}
