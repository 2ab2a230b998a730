//! Interop tests of `SrtSender` against Haivision's `srt-live-transmit` (Debian `srt-tools`),
//! over 127.0.0.1 only. Each test uses its own ports; every wait has a timeout and every child
//! process is killed by a guard on every path.
//!
//! Skipped (with a message) when `srt-live-transmit` is not installed.

use std::fs::File;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use estuary_io::srt::{MAX_MESSAGE_SIZE, SrtConfig, SrtSender, SrtState};

const PASSPHRASE: &str = "estuary-interop-secret";
const MESSAGES: u32 = 200;

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A child process killed (and reaped) on drop.
struct ChildGuard {
    child: Child,
    stderr: PathBuf,
}

impl ChildGuard {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

fn have_srt_live_transmit() -> bool {
    let found = Command::new("srt-live-transmit")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!("srt-live-transmit not installed; skipping");
    }
    found
}

/// Runs `srt-live-transmit INPUT file://con` with stdout into `out`.
fn srt_live_transmit(input: &str, out: &Path) -> Result<ChildGuard, Box<dyn std::error::Error>> {
    let stderr = out.with_extension("stderr");
    let child = Command::new("srt-live-transmit")
        .arg(input)
        .arg("file://con")
        .stdin(Stdio::null())
        .stdout(File::create(out)?)
        .stderr(File::create(&stderr)?)
        .spawn()?;
    Ok(ChildGuard { child, stderr })
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16, std::io::Error> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Polls `condition` every 10 ms for up to `timeout`.
fn wait_for(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Message `index` of a numbered run: the 32-bit index (big-endian), then a pattern that
/// depends on index and offset, so a lost, duplicated or reordered message shows.
fn message(run: u8, index: u32) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..MAX_MESSAGE_SIZE)
        .map(|offset| (index as usize * 31 + offset * 7 + usize::from(run)) as u8)
        .collect();
    bytes[..4].copy_from_slice(&index.to_be_bytes());
    bytes[4] = run;
    bytes
}

fn expected(run: u8) -> Vec<u8> {
    (0..MESSAGES).flat_map(|i| message(run, i)).collect()
}

/// Filler after a run: srt-live-transmit writes `file://con` through a 64 KiB stdio buffer, so
/// the tail of a run only reaches the file once more data follows.
const FILLER_MESSAGES: u32 = 64;

/// Sends the numbered run, then the filler, paced at 1 message per ms (about 10 Mb/s).
fn send_run(sender: &SrtSender, run: u8) {
    for index in 0..MESSAGES {
        sender.send(&message(run, index));
        std::thread::sleep(Duration::from_millis(1));
    }
    let filler = [0xff_u8; MAX_MESSAGE_SIZE];
    for _ in 0..FILLER_MESSAGES {
        sender.send(&filler);
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until `out` holds `len` bytes (or the timeout passes) and returns its content.
fn read_when(out: &Path, len: usize) -> Result<Vec<u8>, std::io::Error> {
    wait_for(Duration::from_secs(10), || {
        std::fs::metadata(out).is_ok_and(|m| m.len() as usize >= len)
    });
    std::fs::read(out)
}

/// Checks that `received` starts with `expected` (the filler may follow); describes the first
/// difference for a readable failure.
fn check_same(received: &[u8], expected: &[u8], peer: &ChildGuard) -> TestResult {
    if received.get(..expected.len()) == Some(expected)
        && received[expected.len()..].iter().all(|&b| b == 0xff)
    {
        return Ok(());
    }
    let first = received
        .iter()
        .zip(expected)
        .position(|(a, b)| a != b)
        .unwrap_or(received.len().min(expected.len()));
    Err(format!(
        "received {} bytes, expected {}; first difference at byte {first} (message {}); \
         srt-live-transmit stderr:\n{}",
        received.len(),
        expected.len(),
        first / MAX_MESSAGE_SIZE,
        peer.stderr()
    )
    .into())
}

fn wait_connected(sender: &SrtSender, timeout: Duration) -> TestResult {
    if wait_for(timeout, || sender.is_connected()) {
        Ok(())
    } else {
        Err(format!("not connected after {timeout:?}: {:?}", sender.status()).into())
    }
}

fn caller_config(port: u16) -> SrtConfig {
    let mut config = SrtConfig::caller(localhost(port));
    config.passphrase = Some(PASSPHRASE.into());
    config.key_length = Some(16);
    config.connect_timeout = Duration::from_secs(1);
    config
}

fn listener_url(port: u16, passphrase: &str) -> String {
    format!("srt://:{port}?mode=listener&passphrase={passphrase}&pbkeylen=16")
}

/// (a) + (e): srt-live-transmit listens, Estuary calls with the same passphrase and a stream
/// id, and the 200 messages arrive byte for byte; libsrt statistics are then sane.
#[test]
fn srt_caller_to_srt_live_transmit_listener() -> TestResult {
    if !have_srt_live_transmit() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("caller.bin");
    let port = free_port()?;
    let peer = srt_live_transmit(&listener_url(port, PASSPHRASE), &out)?;

    let mut config = caller_config(port);
    config.stream_id = Some("estuary/interop".into());
    let sender = SrtSender::start(config)?;
    wait_connected(&sender, Duration::from_secs(10))?;
    assert_eq!(
        sender.status().state,
        SrtState::Connected {
            peer: localhost(port)
        }
    );

    send_run(&sender, 1);
    let expected = expected(1);
    let received = read_when(&out, expected.len())?;
    check_same(&received, &expected, &peer)?;

    // Statistics are refreshed every 100 ms by the connection thread.
    std::thread::sleep(Duration::from_millis(300));
    let status = sender.status();
    let sent = MESSAGES + FILLER_MESSAGES;
    assert_eq!(status.messages_sent, u64::from(sent));
    assert_eq!(status.bytes_sent, u64::from(sent) * MAX_MESSAGE_SIZE as u64);
    assert_eq!(status.messages_dropped_not_connected, 0);
    assert_eq!(status.messages_dropped_send_error, 0);
    assert!(
        status.rtt_ms > 0.0 && status.rtt_ms < 1000.0,
        "rtt {}",
        status.rtt_ms
    );
    assert!(status.send_rate_mbps >= 0.0);
    assert_eq!(status.sender_dropped_packets, 0);
    assert_eq!(status.reconnects, 0);
    Ok(())
}

/// (b): Estuary listens, srt-live-transmit calls in and receives the 200 messages.
#[test]
fn srt_listener_serves_srt_live_transmit_caller() -> TestResult {
    if !have_srt_live_transmit() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("listener.bin");
    let port = free_port()?;
    let mut config = SrtConfig::listener(localhost(port));
    config.passphrase = Some(PASSPHRASE.into());
    let sender = SrtSender::start(config)?;
    assert!(wait_for(Duration::from_secs(2), || {
        sender.status().state == SrtState::Listening
    }));
    // Messages before a caller arrives are dropped and counted.
    sender.send(&message(2, 0));
    assert_eq!(sender.status().messages_dropped_not_connected, 1);

    let url = format!("srt://127.0.0.1:{port}?mode=caller&passphrase={PASSPHRASE}");
    let peer = srt_live_transmit(&url, &out)?;
    wait_connected(&sender, Duration::from_secs(10))?;
    assert!(matches!(
        sender.status().state,
        SrtState::Connected { peer } if peer.ip() == localhost(port).ip()
    ));

    send_run(&sender, 2);
    let expected = expected(2);
    let received = read_when(&out, expected.len())?;
    check_same(&received, &expected, &peer)?;
    Ok(())
}

/// (c): a wrong passphrase shows as a clear reject reason within a few seconds, the sender
/// keeps retrying, and dropping it stops the thread at once.
#[test]
fn srt_wrong_passphrase_is_reported_and_retried() -> TestResult {
    if !have_srt_live_transmit() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("badpass.bin");
    let port = free_port()?;
    let _peer = srt_live_transmit(&listener_url(port, "another-secret-entirely"), &out)?;

    let sender = SrtSender::start(caller_config(port))?;
    let reported = wait_for(Duration::from_secs(5), || {
        matches!(
            sender.status().state,
            SrtState::Backoff { ref reason } if reason.contains("bad passphrase")
        )
    });
    let status = sender.status();
    assert!(reported, "no bad-passphrase report: {status:?}");
    assert_eq!(
        status.last_error.as_deref(),
        Some("peer rejected: bad passphrase")
    );
    // It keeps trying (backoff starts at 250 ms).
    assert!(
        wait_for(Duration::from_secs(5), || sender.status().connect_failures
            >= 2),
        "no retry: {:?}",
        sender.status()
    );
    sender.send(&message(3, 0));
    assert_eq!(sender.status().messages_dropped_not_connected, 1);
    assert!(!sender.is_connected());

    let started = Instant::now();
    drop(sender);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "stop took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// (d): the listening peer dies and a new one starts on the same port; Estuary reconnects by
/// itself and the new peer receives a full run.
#[test]
fn srt_caller_reconnects_after_peer_restart() -> TestResult {
    if !have_srt_live_transmit() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let first_out = dir.path().join("first.bin");
    let mut first = srt_live_transmit(&listener_url(port, PASSPHRASE), &first_out)?;

    let sender = SrtSender::start(caller_config(port))?;
    wait_connected(&sender, Duration::from_secs(10))?;
    send_run(&sender, 4);
    let expected_first = expected(4);
    check_same(
        &read_when(&first_out, expected_first.len())?,
        &expected_first,
        &first,
    )?;

    // Hard kill: no SRT shutdown message, so libsrt notices through the peer idle timeout.
    first.kill();
    let second_out = dir.path().join("second.bin");
    let second = srt_live_transmit(&listener_url(port, PASSPHRASE), &second_out)?;

    // Peer idle timeout (5 s by default) plus backoff.
    let reconnected = wait_for(Duration::from_secs(15), || {
        let status = sender.status();
        status.reconnects >= 1 && sender.is_connected()
    });
    let status = sender.status();
    assert!(reconnected, "no reconnect: {status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("lost")),
        "{status:?}"
    );

    send_run(&sender, 5);
    let expected_second = expected(5);
    check_same(
        &read_when(&second_out, expected_second.len())?,
        &expected_second,
        &second,
    )?;
    Ok(())
}

/// (b'): Estuary's listener: the receiving caller is hard-killed and restarted; the new caller
/// replaces the silent one without waiting for the peer idle timeout, and receives a full run.
#[test]
fn srt_listener_new_caller_replaces_dead_one() -> TestResult {
    if !have_srt_live_transmit() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let sender = SrtSender::start(SrtConfig::listener(localhost(port)))?;
    assert!(wait_for(Duration::from_secs(2), || {
        sender.status().state == SrtState::Listening
    }));
    let url = format!("srt://127.0.0.1:{port}?mode=caller");
    let first_out = dir.path().join("first.bin");
    let mut first = srt_live_transmit(&url, &first_out)?;
    wait_connected(&sender, Duration::from_secs(10))?;
    send_run(&sender, 6);
    let expected_first = expected(6);
    check_same(
        &read_when(&first_out, expected_first.len())?,
        &expected_first,
        &first,
    )?;

    first.kill();
    // Longer than the silence after which a peer may be replaced, far below the idle timeout.
    std::thread::sleep(Duration::from_millis(1700));
    let second_out = dir.path().join("second.bin");
    let second = srt_live_transmit(&url, &second_out)?;
    let replaced = wait_for(Duration::from_secs(3), || {
        sender.status().reconnects >= 1 && sender.is_connected()
    });
    let status = sender.status();
    assert!(replaced, "not replaced: {status:?}; {}", second.stderr());
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("replaced by")),
        "{status:?}"
    );
    send_run(&sender, 7);
    let expected_second = expected(7);
    check_same(
        &read_when(&second_out, expected_second.len())?,
        &expected_second,
        &second,
    )?;
    Ok(())
}

/// An oversized message is refused and counted, never truncated.
#[test]
fn srt_oversized_message_is_counted() -> TestResult {
    let port = free_port()?;
    let sender = SrtSender::start(SrtConfig::listener(localhost(port)))?;
    sender.send(&[0u8; MAX_MESSAGE_SIZE + 1]);
    let status = sender.status();
    assert_eq!(status.messages_dropped_send_error, 1);
    assert_eq!(status.messages_sent, 0);
    Ok(())
}

/// A listener whose port is taken reports the bind failure and retries instead of failing.
#[test]
fn srt_listener_port_in_use_backs_off() -> TestResult {
    let busy = UdpSocket::bind("127.0.0.1:0")?;
    let port = busy.local_addr()?.port();
    let sender = SrtSender::start(SrtConfig::listener(localhost(port)))?;
    let status_ok = wait_for(
        Duration::from_secs(3),
        || matches!(sender.status().state, SrtState::Backoff { ref reason } if reason.contains("bind")),
    );
    assert!(status_ok, "{:?}", sender.status());
    Ok(())
}
