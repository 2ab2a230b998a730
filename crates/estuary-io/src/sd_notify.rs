//! The systemd notification protocol (`sd_notify(3)`): one datagram of `KEY=value` lines to the
//! Unix socket named by `$NOTIFY_SOCKET`. Written against the protocol directly: it is a single
//! `sendto`, and it keeps libsystemd out of the build (the daemon also runs without systemd).

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, present only when it asked for notifications.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    address: SocketAddr,
}

impl Notifier {
    /// The notifier from `$NOTIFY_SOCKET`, or `None` when not started by systemd with
    /// `Type=notify` (or when the variable names something that is not a Unix socket path).
    pub fn from_env() -> Option<Self> {
        let path = std::env::var_os("NOTIFY_SOCKET")?;
        Self::connect(path.to_str()?).ok()
    }

    /// A notifier for `path`: a file system path, or `@name` for an abstract socket.
    pub fn connect(path: &str) -> io::Result<Self> {
        let address = match path.strip_prefix('@') {
            Some(name) => abstract_address(name)?,
            None => SocketAddr::from_pathname(path)?,
        };
        Ok(Notifier {
            socket: UnixDatagram::unbound()?,
            address,
        })
    }

    /// Sends `state`: newline-separated assignments such as `READY=1\nSTATUS=...`.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        self.socket.send_to_addr(state.as_bytes(), &self.address)?;
        Ok(())
    }
}

#[cfg(target_os = "linux")]
fn abstract_address(name: &str) -> io::Result<SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    SocketAddr::from_abstract_name(name.as_bytes())
}

#[cfg(not(target_os = "linux"))]
fn abstract_address(_name: &str) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract sockets are Linux-only",
    ))
}

/// The watchdog timeout systemd enforces (`WatchdogSec=`), if it is meant for this process.
pub fn watchdog_timeout() -> Option<Duration> {
    parse_watchdog(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    )
}

/// `WATCHDOG_USEC` applies to us when `WATCHDOG_PID` is absent or names our pid.
fn parse_watchdog(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    if let Some(pid) = pid
        && pid.trim().parse::<u32>().ok()? != own_pid
    {
        return None;
    }
    let usec: u64 = usec?.trim().parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_applies_only_to_its_pid() {
        let t = Some(Duration::from_secs(10));
        assert_eq!(parse_watchdog(Some("10000000"), None, 7), t);
        assert_eq!(parse_watchdog(Some("10000000"), Some("7"), 7), t);
        assert_eq!(parse_watchdog(Some("10000000"), Some("8"), 7), None);
        assert_eq!(parse_watchdog(Some("0"), None, 7), None);
        assert_eq!(parse_watchdog(Some("x"), None, 7), None);
        assert_eq!(parse_watchdog(None, None, 7), None);
    }

    #[test]
    fn datagrams_reach_path_and_abstract_sockets() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).expect("test setup");
        Notifier::connect(path.to_str().expect("test setup"))
            .expect("test setup")
            .notify("READY=1\nSTATUS=ok")
            .expect("test setup");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).expect("test setup");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=ok");

        let name = format!("estuary-test-{}", std::process::id());
        let server = UnixDatagram::bind_addr(&abstract_address(&name).expect("test setup"))
            .expect("test setup");
        Notifier::connect(&format!("@{name}"))
            .expect("test setup")
            .notify("WATCHDOG=1")
            .expect("test setup");
        let n = server.recv(&mut buf).expect("test setup");
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
