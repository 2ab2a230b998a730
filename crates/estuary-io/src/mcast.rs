//! Network interfaces and multicast sockets for RTP receive and send.
//!
//! - [`list_interfaces`] / [`resolve_interface`]: name or address → [`Interface`].
//! - [`open_receive_socket`]: ASM or SSM (RFC 4607) join, large receive buffer, kernel
//!   receive timestamps, nonblocking — ready for [`crate::batch::BatchReceiver`].
//! - [`open_send_socket`]: multicast interface, TTL, loopback, DSCP; connected.

use std::collections::BTreeMap;
use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

/// Receive buffer asked for on every RTP socket: 4 MiB holds about 4 s of a 64-channel
/// L24 stream, or 1 s of 128 stereo streams sharing a thread.
pub const RECEIVE_BUFFER_BYTES: usize = 4 << 20;

/// One network interface of the host (or of the current network namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Kernel name, e.g. `eth0`, `lo`.
    pub name: String,
    /// Kernel interface index (`if_nametoindex`), used for IPv6 and `ip_mreqn` joins.
    pub index: u32,
    /// First IPv4 address, if any (used for IPv4 SSM joins and as source address).
    pub ipv4: Option<Ipv4Addr>,
    /// All IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// `IFF_MULTICAST` is set.
    pub multicast: bool,
    /// `IFF_UP` is set.
    pub up: bool,
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        let addrs: Vec<String> = self
            .ipv4
            .iter()
            .map(ToString::to_string)
            .chain(self.ipv6.iter().map(ToString::to_string))
            .collect();
        if !addrs.is_empty() {
            write!(f, " ({})", addrs.join(", "))?;
        }
        if !self.up {
            f.write_str(" [down]")?;
        }
        Ok(())
    }
}

/// Failure to turn a user's interface spec into an [`Interface`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InterfaceError {
    /// No interface has this name or address.
    #[error("no network interface named or addressed {spec:?}; available: {}", list(.available))]
    NotFound {
        /// What the user asked for.
        spec: String,
        /// Every interface present, for the message.
        available: Vec<Interface>,
    },
    /// Listing the interfaces failed.
    #[error("cannot list network interfaces: {0}")]
    Io(#[from] io::Error),
}

fn list(ifaces: &[Interface]) -> String {
    if ifaces.is_empty() {
        return "none".to_owned();
    }
    ifaces
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Lists the interfaces of the current network namespace, ordered by index.
pub fn list_interfaces() -> io::Result<Vec<Interface>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; on success the list is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut by_name: BTreeMap<String, Interface> = BTreeMap::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list returned by getifaddrs, which
        // stays valid until freeifaddrs.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let cname = unsafe { CStr::from_ptr(ifa.ifa_name) };
        let name = cname.to_string_lossy().into_owned();
        let entry = by_name.entry(name.clone()).or_insert_with(|| Interface {
            // SAFETY: `cname` is a valid NUL-terminated string.
            index: unsafe { libc::if_nametoindex(cname.as_ptr()) },
            name,
            ipv4: None,
            ipv6: Vec::new(),
            multicast: false,
            up: false,
        });
        entry.up |= ifa.ifa_flags & libc::IFF_UP as u32 != 0;
        entry.multicast |= ifa.ifa_flags & libc::IFF_MULTICAST as u32 != 0;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr whose family field is
        // always readable.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_INET => {
                // SAFETY: the family says this sockaddr is a sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                let addr = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                entry.ipv4.get_or_insert(addr);
            }
            libc::AF_INET6 => {
                // SAFETY: the family says this sockaddr is a sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                entry.ipv6.push(Ipv6Addr::from(sin6.sin6_addr.s6_addr));
            }
            _ => {}
        }
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed exactly once;
    // no reference into the list survives (all data was copied).
    unsafe { libc::freeifaddrs(head) };
    let mut out: Vec<Interface> = by_name.into_values().collect();
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// Finds an interface by name (`eth0`, `lo`) or by one of its addresses
/// (`192.168.1.20`, `fe80::1`).
///
/// # Errors
/// [`InterfaceError::NotFound`], whose message lists the available interfaces.
pub fn resolve_interface(spec: &str) -> Result<Interface, InterfaceError> {
    let ifaces = list_interfaces()?;
    let spec_trim = spec.trim();
    let addr: Option<IpAddr> = spec_trim
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok();
    let found = ifaces.iter().find(|i| {
        i.name == spec_trim
            || match addr {
                Some(IpAddr::V4(a)) => i.ipv4 == Some(a),
                Some(IpAddr::V6(a)) => i.ipv6.contains(&a),
                None => false,
            }
    });
    match found {
        Some(i) => Ok(i.clone()),
        None => Err(InterfaceError::NotFound {
            spec: spec.to_owned(),
            available: ifaces,
        }),
    }
}

/// Opens a nonblocking UDP socket receiving the stream sent to `dest`.
///
/// - Multicast `dest`: bound to the group address and port (so other groups on the
///   same port do not leak in), joined any-source (ASM) or, with `source`, source-
///   specific (SSM, from an SDP `a=source-filter`) on `iface` (kernel's choice when
///   `None`). `IP_MULTICAST_ALL` / `IPV6_MULTICAST_ALL` is switched off, so only groups
///   joined by this socket are delivered.
/// - Unicast `dest`: bound to `dest` itself; an unspecified `dest` address is replaced
///   by `iface`'s address when given.
///
/// `SO_REUSEADDR` + `SO_REUSEPORT` let several receivers (and other programs) share
/// the port. The receive buffer is raised to [`RECEIVE_BUFFER_BYTES`] with
/// `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`), else `SO_RCVBUF` (capped by
/// `net.core.rmem_max`); the effective size is logged. `SO_TIMESTAMPNS` is on.
pub fn open_receive_socket(
    dest: SocketAddr,
    source: Option<IpAddr>,
    iface: Option<&Interface>,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    let multicast = dest.ip().is_multicast();
    let bind_addr = if multicast {
        dest
    } else if dest.ip().is_unspecified() {
        match (dest, iface) {
            (SocketAddr::V4(d), Some(i)) => {
                SocketAddr::V4(SocketAddrV4::new(i.ipv4.unwrap_or(*d.ip()), d.port()))
            }
            _ => dest,
        }
    } else {
        dest
    };
    socket.bind(&SockAddr::from(bind_addr))?;

    if multicast {
        match (dest, source) {
            (SocketAddr::V4(d), None) => {
                let ifn = match iface {
                    Some(i) => InterfaceIndexOrAddress::Index(i.index),
                    None => InterfaceIndexOrAddress::Index(0),
                };
                socket.join_multicast_v4_n(d.ip(), &ifn)?;
            }
            (SocketAddr::V4(d), Some(IpAddr::V4(src))) => {
                let ifaddr = iface.and_then(|i| i.ipv4).unwrap_or(Ipv4Addr::UNSPECIFIED);
                socket.join_ssm_v4(&src, d.ip(), &ifaddr)?;
            }
            (SocketAddr::V6(d), None) => {
                socket.join_multicast_v6(d.ip(), iface.map_or(0, |i| i.index))?;
            }
            (SocketAddr::V6(d), Some(IpAddr::V6(src))) => {
                join_ssm_v6(&socket, d, src, iface.map_or(0, |i| i.index))?;
            }
            (d, Some(src)) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("SSM source {src} and group {d} are of different IP families"),
                ));
            }
        }
        // Off by default only since it makes a socket bound to INADDR_ANY receive every
        // group joined by any socket on the host; bound to the group it is belt and braces.
        match dest {
            SocketAddr::V4(_) => socket.set_multicast_all_v4(false)?,
            SocketAddr::V6(_) => {
                if let Err(e) = socket.set_multicast_all_v6(false) {
                    tracing::debug!("IPV6_MULTICAST_ALL not available: {e}");
                }
            }
        }
    }

    let rcvbuf = raise_receive_buffer(&socket, RECEIVE_BUFFER_BYTES);
    tracing::debug!(%dest, ?source, rcvbuf, "receive socket open");
    set_int_opt(&socket, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Opens a blocking UDP socket connected to `dest`, for RTP send.
///
/// For multicast: `IP_MULTICAST_IF` (by index) = `iface`, multicast TTL / hop limit
/// `ttl`, loopback on (so local receivers and tests hear it). The unicast TTL is also
/// `ttl`. DSCP `dscp` goes into the top 6 bits of `IP_TOS` / `IPV6_TCLASS` (AES67
/// recommends EF 46 for PTP events and AF41 34 for media). With `iface` holding an
/// IPv4 address, the socket is bound to it, so the RTP source address is the
/// interface's (what SSM receivers filter on).
pub fn open_send_socket(
    dest: SocketAddr,
    iface: Option<&Interface>,
    ttl: u32,
    dscp: u8,
) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(dest), Type::DGRAM, Some(Protocol::UDP))?;
    let tos = u32::from(dscp & 0x3f) << 2;
    match dest {
        SocketAddr::V4(_) => {
            if let Some(i) = iface {
                let mreqn = libc::ip_mreqn {
                    imr_multiaddr: libc::in_addr { s_addr: 0 },
                    imr_address: libc::in_addr { s_addr: 0 },
                    imr_ifindex: i.index as libc::c_int,
                };
                set_opt(&socket, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreqn)?;
                if let Some(a) = i.ipv4 {
                    socket.bind(&SockAddr::from(SocketAddrV4::new(a, 0)))?;
                }
            }
            socket.set_multicast_ttl_v4(ttl)?;
            socket.set_ttl_v4(ttl.max(1))?;
            socket.set_multicast_loop_v4(true)?;
            socket.set_tos_v4(tos)?;
        }
        SocketAddr::V6(_) => {
            if let Some(i) = iface {
                socket.set_multicast_if_v6(i.index)?;
            }
            socket.set_multicast_hops_v6(ttl)?;
            socket.set_multicast_loop_v6(true)?;
            socket.set_tclass_v6(tos)?;
        }
    }
    socket.connect(&SockAddr::from(dest))?;
    Ok(socket.into())
}

/// A send socket like [`open_send_socket`] but not connected: datagrams name their own
/// destination (any of `dest`'s address family), so one socket serves every stream that
/// shares the interface, TTL and DSCP (see [`crate::sendbatch`]).
pub fn open_shared_send_socket(
    dest: SocketAddr,
    iface: Option<&Interface>,
    ttl: u32,
    dscp: u8,
) -> io::Result<UdpSocket> {
    let connected = open_send_socket(dest, iface, ttl, dscp)?;
    // Dissolve the association (connect to AF_UNSPEC), keeping every option and the bound
    // source address.
    let unspec = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: `unspec` is a valid sockaddr of the stated length that outlives the call.
    let rc = unsafe {
        libc::connect(
            std::os::fd::AsRawFd::as_raw_fd(&connected),
            &unspec,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(connected)
}

/// Receive buffer of `socket` in bytes, as the kernel reports it (twice the usable
/// payload size, as `SO_RCVBUF` counts bookkeeping).
pub fn receive_buffer_size(socket: &UdpSocket) -> io::Result<usize> {
    socket2::SockRef::from(socket).recv_buffer_size()
}

fn raise_receive_buffer(socket: &Socket, bytes: usize) -> usize {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    if let Err(e) = set_int_opt(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want) {
        tracing::debug!("SO_RCVBUFFORCE refused ({e}); falling back to SO_RCVBUF");
        if let Err(e) = socket.set_recv_buffer_size(bytes) {
            tracing::warn!("SO_RCVBUF {bytes} refused: {e}");
        }
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    // The kernel doubles the request; less than the request means rmem_max capped it.
    if got < bytes {
        tracing::warn!(
            "receive buffer is {got} bytes, asked for {bytes}: raise net.core.rmem_max \
             or grant CAP_NET_ADMIN"
        );
    } else {
        tracing::debug!("receive buffer {got} bytes");
    }
    got
}

fn join_ssm_v6(
    socket: &Socket,
    group: SocketAddrV6,
    source: Ipv6Addr,
    ifindex: u32,
) -> io::Result<()> {
    fn storage(addr: Ipv6Addr) -> libc::sockaddr_storage {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let mut ss: libc::sockaddr_storage = unsafe { mem::zeroed() };
        // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in6.
        let sin6 =
            unsafe { &mut *(&mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr_in6) };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_addr.s6_addr = addr.octets();
        ss
    }
    let req = libc::group_source_req {
        gsr_interface: ifindex,
        gsr_group: storage(*group.ip()),
        gsr_source: storage(source),
    };
    set_opt(
        socket,
        libc::IPPROTO_IPV6,
        libc::MCAST_JOIN_SOURCE_GROUP,
        &req,
    )
}

fn set_int_opt(
    socket: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    set_opt(socket, level, name, &value)
}

fn set_opt<T>(socket: &Socket, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a live, initialized T of the given size, which is the
    // C struct the option expects (checked by the callers' choice of T).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_loopback() {
        crate::netns::isolate_thread_network().expect("private network namespace (needs root)");
        let ifaces = list_interfaces().expect("getifaddrs");
        let lo = ifaces.iter().find(|i| i.name == "lo").expect("lo present");
        assert!(lo.index > 0);
        let by_addr = ifaces.iter().any(|i| i.ipv4 == Some(Ipv4Addr::LOCALHOST));
        if by_addr {
            assert_eq!(
                resolve_interface("127.0.0.1").expect("by address").name,
                resolve_interface("lo").expect("by name").name
            );
        }
    }

    #[test]
    fn not_found_lists_available() {
        crate::netns::isolate_thread_network().expect("private network namespace (needs root)");
        let err = resolve_interface("nope0").expect_err("no such interface");
        let msg = err.to_string();
        assert!(msg.contains("nope0"), "{msg}");
        assert!(msg.contains("lo"), "{msg}");
    }
}
