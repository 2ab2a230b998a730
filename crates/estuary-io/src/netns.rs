//! Private network namespaces for tests.
//!
//! Every integration test that touches the network first calls
//! [`isolate_thread_network`]. It moves the *calling thread* into a fresh network
//! namespace, brings `lo` up with multicast enabled and routes IPv4 multicast
//! (`224.0.0.0/4`) through it; IPv6 multicast (`ff00::/8`) goes through a veth pair
//! `est0`/`est1`, since Linux does not loop IPv6 multicast back on `lo`.
//! Inside, a test may use any multicast group, port or source address in
//! `127.0.0.0/8` without seeing, or disturbing, the host network or other tests.
//!
//! # What inherits the namespace
//! A network namespace belongs to a thread (a Linux task), not to the process:
//! - sockets created by the isolated thread live in the private namespace, even when
//!   they are later used from other threads;
//! - threads spawned *from the isolated thread* (e.g. a [`crate::tx::ToneSender`])
//!   inherit it;
//! - child processes spawned from the isolated thread (`gst-launch-1.0`, `ffmpeg`,
//!   the `estuary` binary) inherit it, because `fork`/`posix_spawn` copy the calling
//!   task's namespaces;
//! - other threads of the process (other tests under libtest) are unaffected. Each
//!   libtest test runs on its own fresh thread, so calling this once at the top of a
//!   test is enough and needs no cleanup: the namespace disappears with the thread and
//!   its last socket.
//!
//! # Requirements
//! `unshare(CLONE_NEWNET)` needs `CAP_SYS_ADMIN` (root, or a user namespace). The route
//! setup runs `ip` from iproute2. Failures are reported as [`std::io::Error`]s whose
//! message says which step failed and how to fix it; tests should propagate them
//! (`isolate_thread_network().expect(..)`) rather than skip.

use std::io;
use std::process::{Command, Stdio};

/// Moves the calling thread into a new, private network namespace with a
/// multicast-capable loopback interface.
///
/// After it returns:
/// - `lo` is up with `MULTICAST` set, holding `127.0.0.1/8` and `::1`;
/// - `224.0.0.0/4 dev lo` is in the main table, so IPv4 multicast sends without an
///   explicit interface leave through `lo` and are looped back;
/// - IPv6 multicast goes through a veth pair instead, because Linux does not loop
///   IPv6 multicast back on `lo`: [`IPV6_TEST_INTERFACE`] (`est0`, address
///   [`IPV6_TEST_ADDRESS`]) holds the `ff00::/8` route; its peer `est1` has IPv6 off.
///   Name `est0` as the interface in IPv6 multicast tests. This part is best effort
///   (logged, not an error) since IPv4 tests do not need it.
///
/// Calling it twice on one thread creates a second namespace (the first one is
/// dropped once nothing references it).
///
/// # Errors
/// - `PermissionDenied` when the process lacks `CAP_SYS_ADMIN`;
/// - `NotFound` when the `ip` tool (iproute2) is missing;
/// - any other error with the failing `ip` command and its stderr in the message.
pub fn isolate_thread_network() -> io::Result<()> {
    // SAFETY: unshare only changes the namespaces of the calling task; it touches no
    // memory of ours. CLONE_NEWNET is allowed in a multithreaded process.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => io::Error::new(
                io::ErrorKind::PermissionDenied,
                "unshare(CLONE_NEWNET) not permitted: network namespace tests need \
                 CAP_SYS_ADMIN (run as root, or under `unshare -r -n`)",
            ),
            _ => io::Error::new(err.kind(), format!("unshare(CLONE_NEWNET) failed: {err}")),
        });
    }
    ip(&["link", "set", "lo", "up"])?;
    ip(&["link", "set", "lo", "multicast", "on"])?;
    ip(&["route", "add", "224.0.0.0/4", "dev", "lo"])?;
    // IPv6 multicast is not looped back on `lo` (verified on Linux 6.18: with
    // `ff00::/8 dev lo` in the main or local table, as unicast or multicast route, sends
    // succeed but nothing is delivered). A veth pair works: multicast sent on `est0`
    // with IPV6_MULTICAST_LOOP is delivered locally. IPv6 stays off on the peer so
    // `est0` is the only multicast route. Best effort: IPv4 tests need none of this.
    if let Err(e) = ipv6_multicast_setup() {
        tracing::warn!("IPv6 multicast test interface not set up: {e}");
    }
    Ok(())
}

/// Name of the interface carrying IPv6 multicast inside an isolated namespace.
pub const IPV6_TEST_INTERFACE: &str = "est0";

/// Unicast address of [`IPV6_TEST_INTERFACE`] (ULA, no duplicate address detection).
pub const IPV6_TEST_ADDRESS: std::net::Ipv6Addr =
    std::net::Ipv6Addr::new(0xfd00, 0x0e57, 0, 0, 0, 0, 0, 1);

fn ipv6_multicast_setup() -> io::Result<()> {
    ip(&[
        "link",
        "add",
        IPV6_TEST_INTERFACE,
        "type",
        "veth",
        "peer",
        "name",
        "est1",
    ])?;
    ip(&["link", "set", "est1", "up"])?;
    // /proc/sys/net is per network namespace (of the writing thread).
    std::fs::write("/proc/sys/net/ipv6/conf/est1/disable_ipv6", "1")?;
    ip(&["link", "set", IPV6_TEST_INTERFACE, "up"])?;
    let addr = format!("{IPV6_TEST_ADDRESS}/64");
    ip(&[
        "-6",
        "addr",
        "add",
        &addr,
        "dev",
        IPV6_TEST_INTERFACE,
        "nodad",
    ])?;
    ip(&["-6", "route", "add", "ff00::/8", "dev", IPV6_TEST_INTERFACE])?;
    Ok(())
}

/// Runs `ip ARGS` from the calling thread (so in its namespace); captures stderr
/// for the error message. The wait is bounded by `ip` itself, which does not block.
fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            io::Error::new(e.kind(), format!("cannot run `ip` (install iproute2): {e}"))
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A second, named network namespace joined to the calling thread's namespace by a veth
/// pair: a separate "host" on a point-to-point Ethernet link, for peers that must not share
/// our ports (a PTP daemon binds 319/320 like Estuary does).
///
/// Our end is [`PeerNamespace::LOCAL_INTERFACE`] (`10.233.0.1/24`), the peer's end
/// [`PeerNamespace::PEER_INTERFACE`] (`10.233.0.2/24`), both with multicast routes. Call it
/// after [`isolate_thread_network`]. Dropping it deletes the namespace (and the pair).
#[derive(Debug)]
pub struct PeerNamespace {
    name: String,
}

impl PeerNamespace {
    /// Our end of the veth pair.
    pub const LOCAL_INTERFACE: &'static str = "esta";
    /// The peer's end of the veth pair.
    pub const PEER_INTERFACE: &'static str = "estb";
    pub const LOCAL_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 233, 0, 1);
    pub const PEER_ADDRESS: std::net::Ipv4Addr = std::net::Ipv4Addr::new(10, 233, 0, 2);

    /// Creates the namespace `est-TAG-PID-N` and the veth pair.
    ///
    /// # Errors
    /// Any failing `ip` command, with its message.
    pub fn create(tag: &str) -> io::Result<Self> {
        static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("est-{tag}-{}-{n}", std::process::id());
        ip(&["netns", "add", &name])?;
        let ns = Self { name };
        let (local, peer) = (Self::LOCAL_INTERFACE, Self::PEER_INTERFACE);
        ip(&[
            "link", "add", local, "type", "veth", "peer", "name", peer, "netns", &ns.name,
        ])?;
        ip(&["addr", "add", "10.233.0.1/24", "dev", local])?;
        ip(&["link", "set", local, "up"])?;
        ip(&["route", "replace", "224.0.0.0/4", "dev", local])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["link", "set", "lo", "up"])?;
        inside(&["addr", "add", "10.233.0.2/24", "dev", peer])?;
        inside(&["link", "set", peer, "up"])?;
        inside(&["route", "add", "224.0.0.0/4", "dev", peer])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec NAME program`: a command that runs inside the peer namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// The PTP clock identity a PTP daemon on the peer's interface takes (EUI-64 from its
    /// MAC, as ptp4l derives it).
    ///
    /// # Errors
    /// The MAC cannot be read.
    pub fn peer_ptp_identity(&self) -> io::Result<[u8; 8]> {
        let out = self
            .command("cat")
            .arg(format!("/sys/class/net/{}/address", Self::PEER_INTERFACE))
            .output()?;
        crate::ptp4l::identity_from_mac(&String::from_utf8_lossy(&out.stdout))
            .ok_or_else(|| io::Error::other("the peer interface has no MAC"))
    }
}

impl Drop for PeerNamespace {
    fn drop(&mut self) {
        if let Err(e) = ip(&["netns", "del", &self.name]) {
            tracing::warn!("cannot delete network namespace {}: {e}", self.name);
        }
    }
}
