//! Installing and running Estuary for real: the systemd notification protocol as systemd
//! speaks it, the shipped unit files, several instances per host, `estuary doctor` and
//! `estuary setup`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECOND: usize = 48_000;

fn unit_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packaging/systemd")
}

/// Every datagram the daemon sends to its notify socket within `timeout` until `until` holds.
fn collect_until(
    socket: &UnixDatagram,
    timeout: Duration,
    mut until: impl FnMut(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !until(&got) {
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("test setup");
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

/// The daemon plays its part of `Type=notify`: READY=1 only once the API listens, STATUS=
/// that follows the routes, WATCHDOG=1 at half `WATCHDOG_USEC`, STOPPING=1 on SIGTERM.
#[test]
fn systemd_notify_ready_status_watchdog_stopping() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut cmd = Command::new(ESTUARY);
    cmd.args([
        "demo",
        "--codec",
        "pcm",
        "--srt-port",
        "9400",
        "--rtp-port",
        "5410",
    ])
    .args(["--api-port", "8490"])
    .env("NOTIFY_SOCKET", &notify_path)
    .env("WATCHDOG_USEC", "400000");
    let mut demo = Proc::spawn("demo", &mut cmd, dir.path());

    let first = collect_until(&socket, Duration::from_secs(15), |g| !g.is_empty());
    let ready = first
        .first()
        .unwrap_or_else(|| panic!("no READY=1: {}", demo.stderr()));
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(ready.contains("STATUS=inputs "), "{ready}");
    // Ready means ready: the API answers the moment systemd is told.
    std::net::TcpStream::connect("127.0.0.1:8490").expect("API listening at READY=1");

    let started = Instant::now();
    let pings = collect_until(&socket, Duration::from_secs(5), |g| {
        g.iter().filter(|m| *m == "WATCHDOG=1").count() >= 5
    });
    let count = pings.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(count >= 5, "{count} watchdog pings: {pings:?}");
    // At 400 ms timeout the pings come every 200 ms: five take about a second, never 4 s.
    assert!(started.elapsed() < Duration::from_secs(4));

    // A caller connects: the STATUS= line says so, and the audio is the demo's 1 kHz tone.
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9400", 4, &out);
    let seen = collect_until(&socket, Duration::from_secs(10), |g| {
        g.iter()
            .any(|m| m.contains("STATUS=inputs 1/1 receiving, outputs 1/1 connected"))
    });
    assert!(
        seen.iter()
            .any(|m| m.contains("STATUS=inputs 1/1 receiving, outputs 1/1 connected")),
        "{seen:?}"
    );
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        decoder.stderr()
    );
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    let start = first_active(&left, 1 << 20).expect("silent") + SECOND / 2;
    assert!(left.len() >= start + SECOND, "too little audio");
    let f = frequency(&to_f64(&left[start..start + SECOND]), 48_000.0);
    assert!((f - 1000.0).abs() < 1.0, "tone at {f:.2} Hz");

    let pid = demo.child.id().to_string();
    Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("test setup");
    let last = collect_until(&socket, Duration::from_secs(10), |g| {
        g.iter().any(|m| m.contains("STOPPING=1"))
    });
    assert!(last.iter().any(|m| m.contains("STOPPING=1")), "{last:?}");
    assert!(demo.wait_exit(Duration::from_secs(10)).success());
}

/// `WATCHDOG_PID` naming another process (a wrapper that forked us) means the watchdog is not
/// ours to answer: READY=1 still comes, pings do not.
#[test]
fn watchdog_for_another_pid_is_not_answered() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let notify_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut cmd = Command::new(ESTUARY);
    cmd.args(["demo", "--srt-port", "9401", "--rtp-port", "5411"])
        .args(["--api-port", "8491"])
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "100000")
        .env("WATCHDOG_PID", "1");
    let mut demo = Proc::spawn("demo", &mut cmd, dir.path());
    let first = collect_until(&socket, Duration::from_secs(15), |g| !g.is_empty());
    assert!(
        first.first().is_some_and(|m| m.starts_with("READY=1")),
        "{first:?} {}",
        demo.stderr()
    );
    // At 100 ms a ping would come every 50 ms: a second has none.
    let got = collect_until(&socket, Duration::from_secs(1), |_| false);
    assert!(!got.iter().any(|m| m == "WATCHDOG=1"), "{got:?}");
    assert!(demo.terminate(Duration::from_secs(5)).success());
}

/// The shipped units parse, their paths exist, and their sandbox scores as systemd's own
/// "OK" exposure (at most 3.0 of 10).
#[test]
fn unit_files_verify_and_are_hardened() {
    if !have("systemd-analyze") {
        panic!("systemd-analyze missing: run scripts/deps.sh test");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    for (file, as_name) in [
        ("estuary.service", "estuary.service"),
        ("estuary@.service", "estuary@studio-a.service"),
    ] {
        let text = std::fs::read_to_string(unit_dir().join(file)).expect("unit");
        for needed in [
            "Type=notify",
            "WatchdogSec=",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "User=estuary",
            "ProtectSystem=strict",
            "AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_SYS_NICE",
        ] {
            assert!(text.contains(needed), "{file} lacks {needed}");
        }
        // The binary at its installed path is this build's.
        let unit = dir.path().join(as_name);
        std::fs::write(&unit, text.replace("/usr/bin/estuary", ESTUARY)).expect("test setup");
        let (status, out, err) = run_with_timeout(
            Command::new("systemd-analyze")
                .args(["verify", "--man=no"])
                .arg(&unit),
            Duration::from_secs(30),
        );
        assert!(
            status.success(),
            "{file}: {}{err}",
            String::from_utf8_lossy(&out)
        );
        let (status, out, err) = run_with_timeout(
            Command::new("systemd-analyze")
                .args(["security", "--offline=yes", "--threshold=30"])
                .arg(&unit),
            Duration::from_secs(30),
        );
        assert!(
            status.success(),
            "{file} too exposed: {}{err}",
            String::from_utf8_lossy(&out)
        );
    }
}

/// The template's ExecStart for instance `name`.
fn instance_exec_start(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(unit_dir().join("estuary@.service")).expect("unit");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.replace("%i", name)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Two instances of the template run side by side from their own config files, each with its
/// own ports, and each answers for its own routes.
#[test]
fn two_template_instances_run_side_by_side() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut procs = Vec::new();
    for (name, api, srt, rtp) in [
        ("studio-a", 8501, 9501, 5501),
        ("studio-b", 8502, 9502, 5502),
    ] {
        let config = format!(
            r#"
[discovery]
sap = false
ravenna = false

[[inputs]]
name = "{name}-in"
kind = "aes67"
address = "127.0.0.1:{rtp}"
format = "L24"
channels = 2
sample_rate = 48000

[[outputs]]
name = "{name}-srt"
kind = "srt"
input = "{name}-in"
mode = "listener"
address = "127.0.0.1:{srt}"
codec = "pcm"

[api]
bind = "127.0.0.1:{api}"
"#
        );
        let etc = dir.path().join("etc/estuary");
        std::fs::create_dir_all(&etc).expect("test setup");
        std::fs::write(etc.join(format!("{name}.toml")), config).expect("test setup");
        let argv = instance_exec_start(name);
        assert_eq!(argv[0], "/usr/bin/estuary");
        let mut cmd = Command::new(ESTUARY);
        for arg in &argv[1..] {
            cmd.arg(arg.replace("/etc/estuary", etc.to_str().expect("test setup")));
        }
        procs.push((name, api, Proc::spawn(name, &mut cmd, dir.path())));
    }
    for (name, api, proc) in &mut procs {
        proc.wait_for_stderr("API and dashboard listening", Duration::from_secs(15));
        let (status, out, err) = run_with_timeout(
            Command::new(ESTUARY)
                .args(["status", "--json", "--api"])
                .arg(format!("http://127.0.0.1:{api}")),
            Duration::from_secs(10),
        );
        assert!(status.success(), "{name}: {err}");
        let json: serde_json::Value = serde_json::from_slice(&out).expect("test setup");
        assert_eq!(json["inputs"][0]["name"], format!("{name}-in"));
        assert_eq!(json["outputs"][0]["name"], format!("{name}-srt"));
    }
    for (_, _, mut proc) in procs {
        assert!(proc.terminate(Duration::from_secs(5)).success());
    }
}

/// A network namespace removed when the test ends.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("est-{tag}-{}", std::process::id());
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(std::process::Stdio::null())
            .status();
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} (needs root)");
        Netns(name)
    }

    /// `sh -c script` inside the namespace (with its own /sys, as `ip netns exec` mounts it).
    fn sh(&self, script: &str) -> (std::process::ExitStatus, Vec<u8>, String) {
        run_with_timeout(
            Command::new("ip").args(["netns", "exec", &self.0, "sh", "-c", script]),
            Duration::from_secs(30),
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn finding<'a>(findings: &'a serde_json::Value, check: &str) -> &'a serde_json::Value {
    findings
        .as_array()
        .and_then(|a| a.iter().find(|f| f["check"] == check))
        .unwrap_or_else(|| panic!("no {check} finding in {findings}"))
}

/// `estuary doctor` in a deliberately broken namespace: no multicast route, strict rp_filter,
/// a firewall dropping the configured ports, and (in a mount namespace: the kernel keeps
/// rmem_max global, not per network namespace) a 208 KiB rmem_max. Each problem is reported
/// with a fix; running the fixes it prints clears them; with the daemon running, its
/// multicast group shows as joined.
#[test]
fn doctor_reports_and_fixes_a_misconfigured_namespace() {
    for tool in ["nft", "ip", "unshare"] {
        assert!(have(tool), "{tool} missing: run scripts/deps.sh test");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = Netns::new("doctor");
    let config = dir.path().join("estuary.toml");
    std::fs::write(
        &config,
        r#"
[discovery]
sap = false
ravenna = false

[[inputs]]
name = "stage"
kind = "aes67"
interface = "lo"
address = "239.69.1.1:5004"
format = "L24"
channels = 2
sample_rate = 48000

[[outputs]]
name = "stage-srt"
kind = "srt"
input = "stage"
mode = "listener"
address = "127.0.0.1:9600"
codec = "pcm"

[api]
bind = "127.0.0.1:8600"
"#,
    )
    .expect("config");
    let (status, _, err) = ns.sh(
        "ip link set lo up && sysctl -qw net.ipv4.conf.all.rp_filter=1 \
         net.ipv4.conf.lo.rp_filter=1 && nft add table inet filter && nft add chain inet \
         filter input '{ type filter hook input priority 0; policy drop; }' && \
         nft add rule inet filter input tcp dport 8600 accept",
    );
    assert!(status.success(), "breaking the namespace: {err}");
    let small = dir.path().join("rmem_max");
    std::fs::write(&small, "212992\n").expect("rmem file");
    let doctor = format!("{ESTUARY} doctor --json --config {}", config.display());
    let (status, out, err) = ns.sh(&format!(
        "unshare -m sh -c 'mount --bind {} /proc/sys/net/core/rmem_max && exec {doctor}'",
        small.display()
    ));
    assert_eq!(status.code(), Some(1), "doctor must fail: {err}");
    let findings: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let expect = [
        ("multicast-route", "ip route add 224.0.0.0/4 dev lo"),
        (
            "rp-filter",
            "sysctl -w net.ipv4.conf.all.rp_filter=2 net.ipv4.conf.lo.rp_filter=2",
        ),
        ("rmem-max", "sysctl -w net.core.rmem_max=4194304"),
        (
            "firewall",
            "nft add rule inet filter input udp dport 5004 accept; \
             nft add rule inet filter input udp dport 9600 accept",
        ),
    ];
    for (check, fix) in expect {
        let f = finding(&findings, check);
        assert_eq!(f["level"], "problem", "{f}");
        assert_eq!(f["fix"], fix, "{f}");
    }
    assert_eq!(finding(&findings, "mtu")["level"], "ok");

    // The printed fixes work (rmem_max is global: the fix would change the host, so it is
    // checked against the real value instead).
    for (check, _) in &expect[..2] {
        let fix = finding(&findings, check)["fix"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let (status, _, err) = ns.sh(&fix);
        assert!(status.success(), "{fix}: {err}");
    }
    let fix = finding(&findings, "firewall")["fix"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(ns.sh(&fix).0.success(), "{fix}");

    let daemon = Proc::spawn(
        "estuary",
        Command::new("ip")
            .args(["netns", "exec", &ns.0, ESTUARY, "run", "-c"])
            .arg(&config),
        dir.path(),
    );
    let mut daemon = daemon;
    daemon.wait_for_stderr("API and dashboard listening", Duration::from_secs(15));
    let (_, out, err) = ns.sh(&doctor);
    let findings: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    for check in ["multicast-route", "rp-filter", "firewall", "mtu"] {
        assert_eq!(
            finding(&findings, check)["level"],
            "ok",
            "{check}: {findings} {err}"
        );
    }
    let igmp = finding(&findings, "igmp");
    assert_eq!(igmp["level"], "ok", "{igmp}");
    assert_eq!(igmp["message"], "every configured group is joined");
    let host_rmem: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("rmem_max")
        .trim()
        .parse()
        .expect("number");
    let want = if host_rmem >= 4 << 20 {
        "ok"
    } else {
        "problem"
    };
    assert_eq!(finding(&findings, "rmem-max")["level"], want);
    assert!(daemon.terminate(Duration::from_secs(5)).success());
}

fn answers_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/setup/answers.toml")
}

/// `estuary setup --answers` writes a config that `check-config` accepts.
#[test]
fn setup_answers_pass_check_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("etc/estuary.toml");
    let (status, _, err) = run_with_timeout(
        Command::new(ESTUARY)
            .args(["setup", "--answers"])
            .arg(answers_file())
            .arg("--output")
            .arg(&out),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    let (status, stdout, err) = run_with_timeout(
        Command::new(ESTUARY).arg("check-config").arg(&out),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");
    assert!(String::from_utf8_lossy(&stdout).contains("ok (1 input(s), 1 output(s))"));
    // It holds the API token: the service's group may read it, others may not.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out)
        .expect("written")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o640);
}

/// A tmux session on its own server socket, killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket]);
        c
    }

    fn pane(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-J", "-S", "-500", "-t", "wizard"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits for the `nth` (1-based) appearance of `prompt`, then types `answer` and Enter.
    fn answer(&self, prompt: &str, nth: usize, answer: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.pane().matches(prompt).count() < nth {
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?} in:\n{}",
                self.pane()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut send = self.cmd();
        send.args(["send-keys", "-t", "wizard"]);
        if !answer.is_empty() {
            send.args(["-l", answer]);
            assert!(send.status().is_ok_and(|s| s.success()));
            send = self.cmd();
            send.args(["send-keys", "-t", "wizard"]);
        }
        assert!(send.arg("Enter").status().is_ok_and(|s| s.success()));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// The interactive wizard, typed into a real terminal (tmux), writes the same file as the
/// answers form; a wrong answer is asked again.
#[test]
fn setup_wizard_in_tmux_matches_answers() {
    assert!(have("tmux"), "tmux missing: run scripts/deps.sh test");
    let dir = tempfile::tempdir().expect("tempdir");
    let from_answers = dir.path().join("answers.toml.out");
    let (status, _, err) = run_with_timeout(
        Command::new(ESTUARY)
            .args(["setup", "--answers"])
            .arg(answers_file())
            .arg("--output")
            .arg(&from_answers),
        Duration::from_secs(20),
    );
    assert!(status.success(), "{err}");

    let from_wizard = dir.path().join("wizard.toml");
    let tmux = Tmux {
        socket: format!("estuary-setup-{}", std::process::id()),
    };
    let shell = format!(
        "{ESTUARY} setup --output {}; echo wizard-exit=$?; sleep 30",
        from_wizard.display()
    );
    let started = tmux
        .cmd()
        .args([
            "new-session",
            "-d",
            "-s",
            "wizard",
            "-x",
            "200",
            "-y",
            "50",
            &shell,
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(started, "tmux new-session");
    tmux.answer("AoIP (AES67) interface", 1, "lo");
    tmux.answer("Device name", 1, "stage");
    tmux.answer("Stream: the session name", 1, "Stage Left");
    tmux.answer("Receive latency", 1, "");
    tmux.answer("SRT mode", 1, "");
    tmux.answer("SRT destination address:port", 1, "nowhere");
    tmux.answer("SRT destination address:port", 2, "127.0.0.1:9000");
    tmux.answer("SRT latency", 1, "");
    tmux.answer("Codec", 1, "");
    tmux.answer("SRT passphrase", 1, "");
    tmux.answer("API and dashboard address", 1, "");
    tmux.answer("API admin token", 1, "change-me-to-a-long-random-token");
    tmux.answer("Install and start the systemd service", 1, "");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !tmux.pane().contains("wizard-exit=") {
        assert!(
            Instant::now() < deadline,
            "wizard did not end:\n{}",
            tmux.pane()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pane = tmux.pane();
    assert!(pane.contains("wizard-exit=0"), "{pane}");
    assert!(
        pane.contains("\"nowhere\": invalid socket address"),
        "{pane}"
    );
    assert_eq!(
        std::fs::read_to_string(&from_wizard).expect("wizard wrote the config"),
        std::fs::read_to_string(&from_answers).expect("answers config"),
    );
}

/// `Key=value` of the unit's [Service] section (the first one).
fn unit_value(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("unit has no {key}="))
        .to_owned()
}

/// The .deb installed with `dpkg -i` into a clean bookworm root (cached by deps.sh, used
/// through an overlay so it stays clean), then the installed unit's ExecStartPre and
/// ExecStart run as it would: as its User, with only its AmbientCapabilities, no new
/// privileges, the file system read-only except its ReadWritePaths and StateDirectory, a
/// private /tmp. An AES67 tone reaches an SRT receiver through it, checked by frequency.
#[test]
fn deb_installs_in_a_clean_root_and_runs_sandboxed() {
    let cache = std::env::var_os("ESTUARY_DEBROOT").map_or_else(
        || PathBuf::from("/var/cache/estuary-ci/deb-root/bookworm"),
        PathBuf::from,
    );
    assert!(
        cache.join("usr/bin/setpriv").exists(),
        "no cached Debian root at {}: run scripts/deps.sh test",
        cache.display()
    );
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let (status, out, err) = run_with_timeout(
        Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../scripts/build-deb.sh"
        ))
        .arg(ESTUARY)
        .arg(dir.path()),
        Duration::from_secs(120),
    );
    assert!(status.success(), "build-deb: {err}");
    let deb = String::from_utf8_lossy(&out).trim().to_owned();

    let t = dir.path().display().to_string();
    let root = format!("{t}/root");
    for d in ["upper", "work", "root"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("dirs");
    }
    // Private mount namespaces: the overlay keeps the cached root clean; its upper layer
    // keeps what dpkg did for the second step.
    let overlay = format!(
        "set -e\nmount -t overlay overlay -o lowerdir={},upperdir={t}/upper,workdir={t}/work {root}\n",
        cache.display()
    );
    let install = format!(
        "{overlay}mount --bind /proc {root}/proc\nmount --bind /dev {root}/dev\n\
         cp {deb} {root}/tmp/estuary.deb\nchroot {root} dpkg -i /tmp/estuary.deb\n\
         chroot {root} getent passwd estuary\nchroot {root} stat -c %U:%G:%a /etc/estuary\n"
    );
    let (status, out, err) = run_with_timeout(
        Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &install]),
        Duration::from_secs(120),
    );
    let out = String::from_utf8_lossy(&out);
    assert!(status.success(), "dpkg -i: {out}{err}");
    assert!(out.contains("Setting up estuary"), "{out}");
    assert!(out.contains("root:estuary:2770"), "{out}");

    // Merged /usr (bookworm): /lib is a link to usr/lib.
    let unit = ["upper/lib", "upper/usr/lib"]
        .iter()
        .find_map(|d| {
            std::fs::read_to_string(dir.path().join(d).join("systemd/system/estuary.service")).ok()
        })
        .expect("the package installed the unit");
    let user = unit_value(&unit, "User");
    let caps: Vec<String> = unit_value(&unit, "AmbientCapabilities")
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect();
    let caps = caps.join(",");
    assert_eq!(unit_value(&unit, "ProtectSystem"), "strict");
    assert_eq!(unit_value(&unit, "NoNewPrivileges"), "yes");
    let writable = format!(
        "{} /var/lib/{}",
        unit_value(&unit, "ReadWritePaths"),
        unit_value(&unit, "StateDirectory")
    );
    let workdir = unit_value(&unit, "WorkingDirectory");
    std::fs::write(
        dir.path().join("upper/etc/estuary/estuary.toml"),
        r#"
[discovery]
sap = false
ravenna = false

[[inputs]]
name = "tone"
kind = "aes67"
address = "127.0.0.1:5004"
format = "L24"
channels = 2
sample_rate = 48000

[[outputs]]
name = "tone-srt"
kind = "srt"
input = "tone"
mode = "listener"
address = "127.0.0.1:9000"
codec = "pcm"
"#,
    )
    .expect("config");
    let as_service = format!(
        "chroot {root} setpriv --reuid {user} --regid {user} --init-groups \
         --inh-caps=-all,{caps} --ambient-caps=-all,{caps} --bounding-set=-all,{caps} \
         --no-new-privs sh -c 'cd {workdir} && exec \"$@\"' sh"
    );
    // ProtectSystem=strict: everything read-only but the unit's writable paths; PrivateTmp.
    let sandbox = format!(
        "{overlay}mkdir -p {root}/var/lib/estuary\nchroot {root} chown estuary:estuary /var/lib/estuary\n\
         mount --bind {root} {root}\nmount -o remount,bind,ro {root}\n\
         for rw in {writable}; do mount --bind {root}$rw {root}$rw; mount -o remount,bind,rw {root}$rw; done\n\
         mount -t tmpfs tmpfs {root}/tmp\nmount --bind /proc {root}/proc\nmount --bind /dev {root}/dev\n\
         if touch {root}/usr/probe 2>/dev/null; then echo 'not read-only' >&2; exit 9; fi\n\
         {as_service} {pre} >&2\nexec {as_service} {start}\n",
        pre = unit_value(&unit, "ExecStartPre"),
        start = unit_value(&unit, "ExecStart"),
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &sandbox]);
    let mut daemon = Proc::spawn("packaged", &mut cmd, dir.path());
    daemon.wait_for_stderr("listening", Duration::from_secs(60));
    let pid = daemon.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(status.lines().any(|l| l == "Name:\testuary"), "{status}");
    assert!(
        !status.lines().any(|l| l.starts_with("Uid:\t0")),
        "runs as root: {status}"
    );
    // CAP_NET_BIND_SERVICE (10) and CAP_SYS_NICE (23), nothing else.
    let cap_eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:\t"))
        .expect("CapEff");
    assert_eq!(
        u64::from_str_radix(cap_eff, 16).expect("hex"),
        (1 << 10) | (1 << 23)
    );

    let mut sender = Proc::spawn(
        "send",
        Command::new(ESTUARY).args(["send", "--to", "127.0.0.1:5004", "--no-announce"]),
        dir.path(),
    );
    daemon.wait_for_stderr("receiving", Duration::from_secs(15));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &out);
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{} / {}",
        decoder.stderr(),
        daemon.stderr()
    );
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    let start = first_active(&left, 1 << 20).expect("silent") + SECOND / 2;
    assert!(left.len() >= start + SECOND, "too little audio");
    let f = frequency(&to_f64(&left[start..start + SECOND]), 48_000.0);
    assert!((f - 1000.0).abs() < 1.0, "tone at {f:.2} Hz");
    sender.kill();
    assert!(
        daemon.terminate(Duration::from_secs(10)).success(),
        "{}",
        daemon.stderr()
    );
}
