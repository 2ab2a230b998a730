//! RAVENNA discovery against real peers, each test in its own network namespace:
//! - FFmpeg's RTSP client (`ffprobe`) against our [`RtspServer`] while a tone plays;
//! - Debian's avahi-daemon (with `avahi-publish` / `avahi-browse`) against our mDNS
//!   browser and publisher.
//!
//! # How avahi runs here
//! avahi-daemon skips loopback interfaces, so each test adds a veth pair `rav0`
//! (10.77.0.1, ours) ↔ `rav1` (10.77.0.2, avahi's, `allow-interfaces=rav1`) inside its
//! namespace. avahi's clients talk to the daemon over D-Bus, and the system bus of the
//! host is not ours to use: each test starts a private `dbus-daemon` with a system-bus
//! configuration listening on a socket in a temporary directory, and points the daemon
//! and the clients at it with `DBUS_SYSTEM_BUS_ADDRESS`. The daemon runs as root without
//! chroot (`--no-drop-root --no-chroot --no-rlimits`). Its pid file and socket live under
//! `/run/avahi-daemon`, which is global to the machine (and used by the host's own
//! avahi-daemon, if any): each daemon therefore starts in a private mount namespace
//! (`unshare --mount`) with a tmpfs on `/run`, so tests neither collide with each other
//! nor with the host. Every child process is killed when its guard drops, also when an
//! assertion fails.

use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use estuary_io::netns::isolate_thread_network;
use estuary_io::ravenna::{
    MdnsOptions, RavennaBrowser, RavennaEvent, RavennaPublisher, RavennaService, RtspServer,
    by_name_path, describe, describe_addr,
};
use estuary_io::tx::{ToneConfig, ToneSender};
use estuary_wire::payload::SampleFormat;
use estuary_wire::sdp::{self, SenderSdp, write_aes67_sdp};

const OUR_IF: &str = "rav0";
const OUR_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const AVAHI_IF: &str = "rav1";
const AVAHI_ADDR: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn isolate() {
    isolate_thread_network().expect("private network namespace (tests need root / CAP_SYS_ADMIN)");
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair with an IPv4 subnet: mDNS peers need a non-loopback multicast link.
/// Both ends sit in one namespace, so each end receives packets whose source address is
/// local (the other end's); Linux drops those unless `accept_local` is set, and strict
/// reverse-path filtering would drop them too.
fn veth_pair() {
    run(
        "ip",
        &[
            "link", "add", OUR_IF, "type", "veth", "peer", "name", AVAHI_IF,
        ],
    );
    for (dev, addr) in [(OUR_IF, OUR_ADDR), (AVAHI_IF, AVAHI_ADDR)] {
        run("ip", &["addr", "add", &format!("{addr}/24"), "dev", dev]);
        run("ip", &["link", "set", dev, "multicast", "on"]);
        run("ip", &["link", "set", dev, "up"]);
    }
    for dev in ["all", OUR_IF, AVAHI_IF] {
        // /proc/sys/net belongs to the namespace of the writing thread.
        let conf = format!("/proc/sys/net/ipv4/conf/{dev}");
        std::fs::write(format!("{conf}/accept_local"), "1").expect("accept_local");
        std::fs::write(format!("{conf}/rp_filter"), "0").expect("rp_filter");
    }
}

/// Kills and reaps the child on drop, so a failing assertion leaves nothing running.
struct Guard(Child, &'static str);

impl Drop for Guard {
    fn drop(&mut self) {
        // SIGTERM first so avahi removes its pid file; SIGKILL if it lingers.
        let pid = self.0.id();
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) on the pid of our own unreaped child.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        eprintln!("{} needed SIGKILL", self.1);
    }
}

fn spawn(cmd: &mut Command, what: &'static str) -> Guard {
    Guard(
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}")),
        what,
    )
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

const BUS_CONF: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=@SOCKET@</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"#;

const AVAHI_CONF: &str = "[server]
host-name=avahi-peer
use-ipv4=yes
use-ipv6=no
allow-interfaces=rav1
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
";

/// A private D-Bus system bus and an avahi-daemon on `rav1`, in the test's namespace.
struct Avahi {
    dir: tempfile::TempDir,
    bus_address: String,
    // Dropped in declaration order: clients, then the daemon, then the bus.
    daemon: Option<Guard>,
    bus: Option<Guard>,
}

impl Avahi {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("bus");
        let bus_conf = dir.path().join("bus.conf");
        std::fs::write(
            &bus_conf,
            BUS_CONF.replace("@SOCKET@", &socket.display().to_string()),
        )
        .expect("write bus.conf");
        let bus = spawn(
            Command::new("dbus-daemon")
                .arg(format!("--config-file={}", bus_conf.display()))
                .args(["--nofork", "--nopidfile"])
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
            "dbus-daemon",
        );
        wait_for("the D-Bus socket", Duration::from_secs(5), || {
            socket.exists()
        });
        let bus_address = format!("unix:path={}", socket.display());
        let conf = dir.path().join("avahi-daemon.conf");
        std::fs::write(&conf, AVAHI_CONF).expect("write avahi conf");
        let log = dir.path().join("avahi.log");
        let log_file = std::fs::File::create(&log).expect("avahi log");
        let daemon = spawn(
            // `exec` keeps the pid, so the guard signals avahi-daemon itself.
            Command::new("unshare")
                .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount -t tmpfs tmpfs /run && exec avahi-daemon \"$@\"")
                .arg("avahi-daemon")
                .arg(format!("--file={}", conf.display()))
                .args([
                    "--no-drop-root",
                    "--no-chroot",
                    "--no-rlimits",
                    "--no-proc-title",
                ])
                .env("DBUS_SYSTEM_BUS_ADDRESS", &bus_address)
                .stdout(Stdio::null())
                .stderr(log_file),
            "avahi-daemon",
        );
        let avahi = Self {
            dir,
            bus_address,
            daemon: Some(daemon),
            bus: Some(bus),
        };
        wait_for("avahi-daemon startup", Duration::from_secs(10), || {
            avahi.log().contains("Server startup complete")
        });
        avahi
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("avahi.log")).unwrap_or_default()
    }

    /// An avahi client command on our private bus.
    fn client(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DBUS_SYSTEM_BUS_ADDRESS", &self.bus_address);
        c
    }
}

impl Drop for Avahi {
    fn drop(&mut self) {
        drop(self.daemon.take());
        drop(self.bus.take());
    }
}

fn tone_sdp(name: &str, dest: SocketAddr, cfg: &ToneConfig, origin: IpAddr) -> String {
    write_aes67_sdp(&SenderSdp {
        session_id: u64::from(cfg.ssrc),
        session_version: 1,
        origin_address: origin,
        name: name.into(),
        info: Some("1000 Hz test tone".into()),
        destination: dest.ip(),
        ttl: 16,
        port: dest.port(),
        payload_type: cfg.payload_type,
        format: cfg.format,
        sample_rate: cfg.sample_rate,
        channels: cfg.channels,
        ptime_ms: 1.0,
        framecount: Some(cfg.frames_per_packet),
        clock_domain: None,
        ptp: None,
        local_mac: [0; 6],
        media_clock_offset: cfg.initial_timestamp,
        ..SenderSdp::default()
    })
}

fn assert_l24_stereo_48k(sdp_text: &str, name: &str) {
    let s = sdp::parse(sdp_text).expect("SDP from DESCRIBE parses");
    assert_eq!(s.name, name);
    let st = s.streams.first().expect("one stream");
    assert_eq!(
        (st.format, st.sample_rate, st.channels),
        (SampleFormat::L24, 48_000, 2)
    );
}

#[test]
fn ffprobe_reads_a_tone_through_our_rtsp_server() {
    isolate();
    let dest = SocketAddr::from(([239, 69, 83, 1], 5004));
    let cfg = ToneConfig::new(dest);
    let name = "Estuary Tone 1";
    let sdp_text = tone_sdp(name, dest, &cfg, IpAddr::V4(Ipv4Addr::LOCALHOST));
    let _tone = ToneSender::spawn(cfg).expect("tone sender");
    let server = RtspServer::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let id = server.set_session(name, &sdp_text);

    // Our own client first: by name and by id give the SDP we serve.
    let addr = server.local_addr();
    let got = describe_addr(addr, &by_name_path(name), Duration::from_secs(5)).expect("DESCRIBE");
    assert_eq!(got, sdp_text);
    let by_id = describe(
        &format!("rtsp://{addr}/by-id/{id}"),
        "",
        Duration::from_secs(5),
    )
    .expect("DESCRIBE by id");
    assert_eq!(by_id, sdp_text);
    assert!(matches!(
        describe_addr(addr, "/by-name/nope", Duration::from_secs(5)),
        Err(estuary_io::ravenna::RavennaError::Status { status: 404, .. })
    ));

    let url = server.url(name);
    let mut probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-of", "json", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ffprobe (install ffmpeg)");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = probe.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = probe.kill();
            let _ = probe.wait();
            panic!("ffprobe did not finish within 30 s on {url}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    let mut err = String::new();
    probe
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    probe
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert!(status.success(), "ffprobe {url}: {status}\n{err}");
    let json: serde_json::Value = serde_json::from_str(&out).expect("ffprobe JSON");
    let stream = &json["streams"][0];
    assert_eq!(stream["codec_name"], "pcm_s24be", "{out}");
    assert_eq!(stream["sample_rate"], "48000", "{out}");
    assert_eq!(stream["channels"], 2, "{out}");
}

/// The first `Found` events for `name` from the subtype browse and from the plain
/// `_rtsp._tcp` browse, in that order; events may arrive in either order.
fn wait_found_both(
    browser: &RavennaBrowser,
    name: &str,
    timeout: Duration,
) -> (RavennaService, RavennaService) {
    let deadline = Instant::now() + timeout;
    let (mut sub, mut plain) = (None, None);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let (Some(s), Some(p)) = (&sub, &plain) {
            return (Clone::clone(s), Clone::clone(p));
        }
        let Some(ev) = browser.recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        if let RavennaEvent::Found(s) = &ev
            && s.name == name
            && !s.addresses.is_empty()
        {
            let slot = if s.ravenna_session {
                &mut sub
            } else {
                &mut plain
            };
            slot.get_or_insert_with(|| s.clone());
        }
        seen.push(ev);
    }
    panic!("{name} not found by both browses; events: {seen:?}");
}

#[test]
fn browser_finds_avahi_published_session_and_describes_it() {
    isolate();
    veth_pair();
    let avahi = Avahi::start();
    let name = "Avahi Tone A";
    let dest = SocketAddr::from(([239, 69, 83, 2], 5004));
    let cfg = ToneConfig::new(dest);
    let sdp_text = tone_sdp(name, dest, &cfg, IpAddr::V4(AVAHI_ADDR));
    // The RTSP server stands for the device whose records avahi holds.
    let server = RtspServer::bind(SocketAddr::from((AVAHI_ADDR, 0))).expect("bind");
    server.set_session(name, &sdp_text);
    let port = server.local_addr().port().to_string();
    let publish = spawn(
        avahi
            .client("avahi-publish")
            .args(["-s", name, "_rtsp._tcp", &port])
            .args(["--sub", "_ravenna_session._sub._rtsp._tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "avahi-publish",
    );

    let browser = RavennaBrowser::new(&MdnsOptions {
        interface: Some(OUR_IF.into()),
        ..MdnsOptions::default()
    })
    .expect("browser");
    let (found, plain) = wait_found_both(&browser, name, Duration::from_secs(15));
    assert_eq!(found.port, server.local_addr().port());
    // avahi also publishes its IPv6 link-local address (publish-aaaa-on-ipv4); IPv4
    // comes first.
    assert_eq!(
        found.addresses.first(),
        Some(&IpAddr::V4(AVAHI_ADDR)),
        "{found:?}"
    );
    assert_eq!(found.host, "avahi-peer.local.");
    assert_eq!(plain.port, found.port);

    let target = found.socket_addr().expect("address");
    let got = describe_addr(target, &found.rtsp_path(), Duration::from_secs(5)).expect("DESCRIBE");
    assert_eq!(got, sdp_text);
    assert_l24_stereo_48k(&got, name);

    // avahi-publish withdraws its records when it exits (goodbye, TTL 0).
    drop(publish);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no Removed event for {name}");
        if let Some(RavennaEvent::Removed { name: n, .. }) =
            browser.recv_timeout(Duration::from_millis(200))
            && n == name
        {
            break;
        }
    }
}

/// `avahi-browse -rptk TYPE` (`-k`: raw type names) lines
/// `=;if;proto;name;type;domain;host;addr;port;txt`.
fn avahi_browse(avahi: &Avahi, ty: &str) -> Vec<Vec<String>> {
    let out = avahi
        .client("timeout")
        .args(["10", "avahi-browse", "-rptk", ty])
        .output()
        .expect("avahi-browse (install avahi-utils)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("=;"))
        .map(|l| l.split(';').map(avahi_unescape).collect())
        .collect()
}

/// avahi-browse -p writes `\DDD` decimal escapes (a space is `\032`).
fn avahi_unescape(s: &str) -> String {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let dec = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u8>().ok());
        match (b[i], dec) {
            (b'\\', Some(v)) => {
                out.push(v);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn avahi_browse_lists_our_published_session() {
    isolate();
    veth_pair();
    let avahi = Avahi::start();
    let server = RtspServer::bind(SocketAddr::from((OUR_ADDR, 0))).expect("bind");
    let port = server.local_addr().port();
    let name = "Estuary Out 1";
    let mut publisher = RavennaPublisher::new(&MdnsOptions {
        interface: Some(OUR_IF.into()),
        host_label: Some("estuary-test".into()),
        addresses: vec![IpAddr::V4(OUR_ADDR)],
    })
    .expect("publisher");
    publisher.publish(name, port).expect("publish");

    for ty in ["_rtsp._tcp", "_ravenna_session._sub._rtsp._tcp"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let entry = loop {
            let rows = avahi_browse(&avahi, ty);
            if let Some(r) = rows
                .into_iter()
                .find(|r| r.get(3).map(String::as_str) == Some(name))
            {
                break r;
            }
            assert!(
                Instant::now() < deadline,
                "avahi-browse {ty} never listed {name}; avahi log:\n{}",
                avahi.log()
            );
        };
        assert_eq!(entry[1], AVAHI_IF, "{entry:?}");
        assert_eq!(entry[4], "_rtsp._tcp", "{entry:?}");
        assert_eq!(entry[6], "estuary-test.local", "{entry:?}");
        assert_eq!(entry[7], OUR_ADDR.to_string(), "{entry:?}");
        assert_eq!(entry[8], port.to_string(), "{entry:?}");
    }

    // Shown with --nocapture: avahi's view of sharing :5353 with mdns-sd.
    println!("avahi log:\n{}", avahi.log());
    // Goodbye: after unpublishing, avahi drops the instance.
    assert!(publisher.unpublish(name).expect("unpublish"));
    wait_for(
        "avahi to forget the session",
        Duration::from_secs(15),
        || {
            !avahi_browse(&avahi, "_rtsp._tcp")
                .iter()
                .any(|r| r.get(3).map(String::as_str) == Some(name))
        },
    );
}
