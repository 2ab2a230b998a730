//! Private network namespaces for tests.
//!
//! Every integration test that touches the network first calls
//! [`isolate_thread_network`]. It moves the *calling thread* into a fresh network
//! namespace that contains only a loopback interface, brings `lo` up with multicast
//! enabled and routes IPv4 (`224.0.0.0/4`) and IPv6 (`ff00::/8`) multicast through it.
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
/// - `ff00::/8 dev lo` is in the main table, for the same reason for IPv6.
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
    // IPv6 may be disabled on the host (ipv6.disable=1); IPv4 tests still work, so an
    // IPv6 failure is only logged. IPv6 tests will then fail at their own socket step.
    if let Err(e) = ip(&["-6", "route", "add", "ff00::/8", "dev", "lo"]) {
        tracing::warn!("IPv6 multicast route on lo not set: {e}");
    }
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
            io::Error::new(
                e.kind(),
                format!("cannot run `ip` (install iproute2): {e}"),
            )
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
