//! Estuary as a Dante device (unofficial implementation), driven by netaudio 0.4.2, an
//! independent Dante controller (installed by `scripts/deps.sh test` into
//! /opt/estuary-venv). Two Estuary devices on one host (the second on another ARC port), in
//! a private network namespace.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use estuary_wire::dante::conmon::{Conmon, ConmonMessage};

use common::{Proc, ffmpeg_srt_decoder, isolate, run_with_timeout};

const NETAUDIO: &str = "/opt/estuary-venv/bin/netaudio";

fn device_config(dir: &Path, name: &str, arc_port: u16, api_port: u16) -> String {
    format!(
        "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:{api_port}\"\n\n\
         [dante]\nname = \"{name}\"\naddress = \"127.0.0.1\"\ntx_channels = 4\nrx_channels = 6\n\
         arc_port = {arc_port}\nflow_port = {}\ncmc_port = {}\nconmon_port = {}\nstate_file = \"{}\"\n",
        arc_port + 15,
        arc_port + 4360,
        arc_port + 4260,
        dir.join(format!("{name}.json")).display()
    )
}

fn start_device(dir: &Path, name: &str, arc_port: u16, api_port: u16) -> Proc {
    start_device_with(dir, name, arc_port, api_port, "")
}

/// [`start_device`] with `extra` TOML after the `[dante]` section's keys.
fn start_device_with(dir: &Path, name: &str, arc_port: u16, api_port: u16, extra: &str) -> Proc {
    let config = device_config(dir, name, arc_port, api_port) + extra;
    run_device(dir, name, Command::new(common::ESTUARY), &config)
}

/// Subscribes Estuary-B's RX 1-2 to Estuary-A's TX 1-2 with netaudio.
fn subscribe_b_to_a() {
    for ch in ["1", "2"] {
        netaudio_ok(&[
            "subscription",
            "add",
            "--tx",
            &format!("{ch}@Estuary-A"),
            "--rx",
            &format!("{ch}@Estuary-B"),
        ]);
    }
}

/// Runs `cmd` (an `estuary` command line, maybe in another namespace) with `config` as
/// device `name`, once it has published itself.
fn run_device(dir: &Path, name: &str, mut cmd: Command, config: &str) -> Proc {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("config");
    cmd.arg("run").arg("-c").arg(&path).env("RUST_LOG", "info");
    let mut p = Proc::spawn(name, &mut cmd, dir);
    p.wait_for_stderr("Dante device published", Duration::from_secs(20));
    p
}

/// The daemon's `/api/status` on `port`.
fn api_status(port: u16) -> serde_json::Value {
    let (_, body, _) = run_with_timeout(
        Command::new("curl")
            .arg("-s")
            .arg(format!("http://127.0.0.1:{port}/api/status")),
        Duration::from_secs(10),
    );
    serde_json::from_slice(&body).expect("status JSON")
}

thread_local! {
    /// The interface this test's netaudio commands use: loopback, unless the test's devices
    /// meet over a veth pair.
    static NETAUDIO_INTERFACE: std::cell::Cell<&'static str> = const { std::cell::Cell::new("lo") };
}

fn netaudio_interface() -> &'static str {
    NETAUDIO_INTERFACE.with(std::cell::Cell::get)
}

/// Runs netaudio with JSON output; returns the parsed document (panics with its stderr).
fn netaudio(args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(NETAUDIO);
    cmd.args([
        "--timeout",
        "2",
        "--interface",
        netaudio_interface(),
        "-o",
        "json",
    ])
    .args(args);
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(30));
    assert!(status.success(), "netaudio {args:?} failed: {stderr}");
    serde_json::from_slice(&stdout).unwrap_or_else(|e| {
        panic!(
            "netaudio {args:?} printed no JSON ({e}): {}\n{stderr}",
            String::from_utf8_lossy(&stdout)
        )
    })
}

/// Runs a netaudio command until it succeeds (mDNS look-ups on a busy machine sometimes miss
/// a device within netaudio's window; a controller user would try again too).
fn netaudio_ok(args: &[&str]) {
    retry_until_ok(NETAUDIO, args);
}

/// Runs `netaudio` (one of the installed releases) with `args` on loopback until it succeeds.
fn retry_until_ok(netaudio: &str, args: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let mut cmd = Command::new(netaudio);
        // Only the test's interface: the test namespace also holds an IPv6-only veth pair,
        // which netaudio would otherwise pick for some commands and find no IPv4 on.
        cmd.args(["--timeout", "3", "--interface", netaudio_interface()])
            .args(args);
        let (status, stdout, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(30));
        if status.success() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{netaudio} {args:?} failed: {}{stderr}",
            String::from_utf8_lossy(&stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The subscriptions netaudio lists as (rx channel, rx device, tx channel, tx device,
/// state), waiting until `done` holds (controllers see changes within a few seconds).
fn subscriptions_until(
    done: impl Fn(&[(u64, String, String, String, String)]) -> bool,
) -> Vec<(u64, String, String, String, String)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = netaudio(&["subscription", "list"]);
        let rows: Vec<_> = list
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| {
                        (
                            s["rx_channel_number"].as_u64().unwrap_or(0),
                            s["rx_device"].as_str().unwrap_or("").to_owned(),
                            s["tx_channel"].as_str().unwrap_or("").to_owned(),
                            s["tx_device"].as_str().unwrap_or("").to_owned(),
                            s["status"]["state"].as_str().unwrap_or("").to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        if done(&rows) || Instant::now() > deadline {
            return rows;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn netaudio_lists_routes_and_unroutes_estuary_devices_and_routes_survive_a_restart() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let _a = start_device(dir.path(), "Estuary-A", 4440, 18480);
    let mut b = start_device(dir.path(), "Estuary-B", 4441, 18481);

    // Both devices, with their channel counts and names, as a controller sees them (mDNS
    // answers may take a moment after start).
    let deadline = Instant::now() + Duration::from_secs(30);
    let channels = loop {
        let channels = netaudio(&["channel", "list"]);
        let found = ["Estuary-A", "Estuary-B"]
            .iter()
            .all(|d| channels[format!("{d}.local.")].is_object());
        if found || Instant::now() > deadline {
            break channels;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    for device in ["Estuary-A", "Estuary-B"] {
        let d = &channels[format!("{device}.local.")];
        assert_eq!(d["name"], device, "{channels:#}");
        let tx = d["tx_channels"].as_object().expect("tx channels");
        let rx = d["rx_channels"].as_object().expect("rx channels");
        assert_eq!(tx.len(), 4, "{d:#}");
        assert_eq!(rx.len(), 6, "{d:#}");
        assert_eq!(tx["02"]["number"], 2);
        assert_eq!(rx["06"]["number"], 6);
    }

    // Heartbeats and change notices, decoded with our codec.
    let lo = estuary_io::mcast::resolve_interface("lo").expect("lo");
    let notices = estuary_io::mcast::open_receive_socket(
        "224.0.0.231:8702".parse().expect("a"),
        None,
        Some(&lo),
    )
    .expect("join 224.0.0.231");
    let heartbeats = estuary_io::mcast::open_receive_socket(
        "224.0.0.233:8708".parse().expect("a"),
        None,
        Some(&lo),
    )
    .expect("join 224.0.0.233");

    // Route A's TX 02 to B's RX 1: B reports it (unresolved: no audio flows yet).
    netaudio_ok(&[
        "subscription",
        "add",
        "--tx",
        "2@Estuary-A",
        "--rx",
        "1@Estuary-B",
    ]);
    let seen = receive_conmon(
        &notices,
        Duration::from_secs(10),
        |c| matches!(c, Conmon::ChannelsChanged { message_type: 0x0102, channels } if channels.contains(&1)),
    );
    assert!(seen, "no RX-channel change notice for RX 1");
    let seen = receive_conmon(
        &heartbeats,
        Duration::from_secs(5),
        |c| matches!(c, Conmon::Heartbeat(h) if h.frequency_offset_ppb() == Some(0)),
    );
    assert!(seen, "no heartbeat with a clock block");

    // B resolves A's channel, gets a flow and reports it connected (A sends silence: it has
    // no `tx_input`).
    let rows = subscriptions_until(|r| r.first().is_some_and(|s| s.4 == "connected"));
    assert_eq!(
        rows,
        [(
            1,
            "Estuary-B".to_owned(),
            "02".to_owned(),
            "Estuary-A".to_owned(),
            "connected".to_owned()
        )]
    );
    // B's API shows the device, the route and its flow; A's shows the flow it sends.
    let b_status = api_status(18481);
    let dante = &b_status["dante"];
    assert_eq!(dante["name"], "Estuary-B", "{dante:#}");
    assert_eq!(dante["ports"]["arc"], 4441, "{dante:#}");
    assert_eq!(dante["tx_channels"].as_array().map(Vec::len), Some(4));
    assert_eq!(dante["rx_channels"][0]["subscription"], "02@Estuary-A");
    assert_eq!(dante["rx_channels"][0]["status"], "unicast", "{dante:#}");
    assert_eq!(dante["rx_channels"][1]["status"], "none", "{dante:#}");
    assert_eq!(dante["rx_flows"][0]["channels"], serde_json::json!([1]));
    assert_eq!(dante["rx_flows"][0]["sources"][0], "02@Estuary-A");
    let a_status = api_status(18480);
    let sent = &a_status["dante"]["tx_flows"];
    assert_eq!(sent[0]["rx_device"], "Estuary-B", "{sent:#}");
    assert_eq!(sent[0]["channels"], serde_json::json!([2]), "{sent:#}");

    // The route is kept across a restart of B.
    b.terminate(Duration::from_secs(10));
    let saved = std::fs::read_to_string(dir.path().join("Estuary-B.json")).expect("state file");
    assert!(saved.contains("Estuary-A"), "{saved}");
    let _b = start_device(dir.path(), "Estuary-B", 4441, 18481);
    let rows = subscriptions_until(|r| r.len() == 1);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].0, rows[0].2.as_str()), (1, "02"));

    // Removing it clears B's RX 1.
    netaudio_ok(&["subscription", "remove", "--rx", "1@Estuary-B"]);
    let rows = subscriptions_until(<[_]>::is_empty);
    assert!(rows.is_empty(), "{rows:?}");
}

/// Reads conmon datagrams from `socket` (non-blocking) until one decodes to what `wanted`
/// accepts, or `within` passes.
fn receive_conmon(
    socket: &std::net::UdpSocket,
    within: Duration,
    wanted: impl Fn(&Conmon) -> bool,
) -> bool {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 1500];
    while Instant::now() < deadline {
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Ok(m) = ConmonMessage::parse(&buf[..n])
                    && let Ok(c) = m.decode()
                    && wanted(&c)
                {
                    return true;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn a_bad_dante_name_is_refused_with_its_field_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    // `check-config` of `config`: refused (exit 3); returns what it printed.
    let refused = |config: &str| {
        std::fs::write(&path, config).expect("config");
        let (status, stdout, stderr) = run_with_timeout(
            Command::new(common::ESTUARY).arg("check-config").arg(&path),
            Duration::from_secs(20),
        );
        let text = format!("{}{stderr}", String::from_utf8_lossy(&stdout));
        assert_eq!(status.code(), Some(3), "{text}");
        text
    };
    let text = refused("[dante]\naddress = \"127.0.0.1\"\nname = \"has spaces\"\n");
    assert!(text.contains("bad.toml:3: dante.name"), "{text}");

    let text = refused(
        "[dante]\naddress = \"127.0.0.1\"\nname = \"A\"\ntx_channels = 4\n\n\
         [[dante.multicast]]\nchannels = [1, 5]\n",
    );
    assert!(
        text.contains("bad.toml:7: dante.multicast[0].channels") && text.contains("TX channel 5"),
        "{text}"
    );

    // PTPv2 as the media clock needs the `[clock]` section's PTP.
    let text = refused("[dante]\naddress = \"127.0.0.1\"\nname = \"A\"\nclock = \"ptpv2\"\n");
    assert!(
        text.contains("bad.toml:4: dante.clock") && text.contains("[clock] mode"),
        "{text}"
    );
}

/// Device A transmits `signal` (a generator input on its TX channels 1-2); device B receives
/// its RX channels 1-2 as an input and serves them over SRT as 24-bit PCM (302M). Routes
/// A → B with netaudio and returns FFmpeg's decoding of B's SRT output (s32, 2 channels)
/// with B's input status. With `bundle`, A also sends TX 1-2 as a multicast bundle (the
/// `[[dante.multicast]]` TOML), which B joins instead of asking for a unicast flow.
/// `b_dante` is more of B's `[dante]` section; `on_routed` runs once B reports the routes,
/// before its audio is awaited.
fn dante_to_srt(
    dir: &Path,
    signal: &str,
    seconds: u32,
    bundle: Option<&str>,
    b_dante: &str,
    on_routed: &mut dyn FnMut(),
) -> Received {
    let device = |name: &str, arc: u16, flow: u16| {
        format!(
            "[dante]\nname = \"{name}\"\naddress = \"127.0.0.1\"\ntx_channels = 4\nrx_channels = 4\n\
             arc_port = {arc}\nflow_port = {flow}\ncmc_port = {}\nconmon_port = {}\nstate_file = \"{}\"\n",
            arc + 4360,
            arc + 4260,
            dir.join(format!("{name}.json")).display()
        )
    };
    let quiet = "[discovery]\nsap = false\nravenna = false\n";
    let a = format!(
        "{quiet}[api]\nbind = \"127.0.0.1:18480\"\n\n[[inputs]]\nname = \"gen\"\nkind = \"generator\"\n\
         channels = 2\n{signal}\n\n{}tx_input = \"gen\"\n{}",
        device("Estuary-A", 4440, 4455),
        bundle.unwrap_or("")
    );
    let b = format!(
        "{quiet}[api]\nbind = \"127.0.0.1:18481\"\n\n[[inputs]]\nname = \"from-dante\"\nkind = \"dante\"\n\
         channels = 2\n\n[[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"from-dante\"\n\
         mode = \"listener\"\naddress = \"127.0.0.1:9100\"\ncodec = \"pcm\"\n\n{}{b_dante}",
        device("Estuary-B", 4441, 4456)
    );
    let mut procs = Vec::new();
    for (name, config) in [("Estuary-A", a), ("Estuary-B", b)] {
        procs.push(run_device(
            dir,
            name,
            Command::new(common::ESTUARY),
            &config,
        ));
    }
    subscribe_b_to_a();
    // B resolves A's channels by mDNS, asks A for a flow, and reports it to controllers.
    let rows = subscriptions_until(|r| {
        r.len() == 2
            && r.iter()
                .all(|s| s.4 != "unresolved" && s.4 != "in_progress")
    });
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(
            (row.2.as_str(), row.3.as_str()),
            (format!("0{}", row.0).as_str(), "Estuary-A"),
            "{rows:?}"
        );
        match bundle {
            Some(_) => {
                // netaudio reads status 0x0101_000A as "Subscribed (multicast)". A listing
                // that missed a device within netaudio's window is asked again.
                let find = |list: &serde_json::Value| {
                    list.as_array()
                        .and_then(|a| a.iter().find(|s| s["rx_channel_number"] == row.0))
                        .cloned()
                };
                let deadline = Instant::now() + Duration::from_secs(30);
                let (list, row) = loop {
                    let list = netaudio(&["subscription", "list"]);
                    match find(&list) {
                        Some(row) => break (list, row),
                        None if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(500));
                        }
                        None => panic!("{list:#}"),
                    }
                };
                assert_eq!(row["status"]["transport"], "multicast", "{list:#}");
                assert_eq!(row["status"]["code"], 10, "{list:#}");
            }
            None => assert!(
                row.4.contains("unicast") || row.4 == "connected" || row.4 == "subscribed",
                "{rows:?}"
            ),
        }
    }
    on_routed();
    procs[1].wait_for_stderr("Dante audio arriving", Duration::from_secs(10));
    let out = dir.join("decoded.s32");
    let mut decoder = ffmpeg_srt_decoder(dir, "srt://127.0.0.1:9100", seconds, &out);
    let status = decoder.wait_exit(Duration::from_secs(u64::from(seconds) + 20));
    assert!(status.success(), "ffmpeg: {}", decoder.stderr());
    let samples = common::s32le(&std::fs::read(&out).expect("decoded"));
    let status = api_status(18481);
    let a_tx = api_status(18480)["dante"]["tx_counters"].clone();

    // Unrouting stops A's flow: B tells A when no channel uses it any more (a bundle has
    // no flow: B leaves the group).
    netaudio_ok(&["subscription", "remove", "--rx", "1@Estuary-B"]);
    netaudio_ok(&["subscription", "remove", "--rx", "2@Estuary-B"]);
    if bundle.is_none() {
        procs[0].wait_for_stderr("flows=0", Duration::from_secs(15));
    } else {
        procs[1].wait_for_stderr("Dante flow closed", Duration::from_secs(15));
    }
    Received {
        samples,
        status,
        a_tx,
    }
}

/// What [`dante_to_srt`] decoded and the two devices' views of it.
struct Received {
    /// B's SRT output as FFmpeg decoded it, interleaved stereo.
    samples: Vec<i32>,
    /// B's `/api/status`.
    status: serde_json::Value,
    /// A's transmit counters: a starved transmitter sends counted silence
    /// (`underrun_frames`) and then skips the audio that piled up (`dropped_frames`).
    a_tx: serde_json::Value,
}

impl Received {
    /// Frames A's transmitter counted as not sent as generated (silence or skipped).
    fn a_glitch_frames(&self) -> u64 {
        let counter = |name: &str| self.a_tx[name].as_u64().unwrap_or(0);
        counter("underrun_frames") + counter("dropped_frames")
    }
}

#[test]
fn dante_audio_between_two_estuary_devices_is_bit_exact_through_srt() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let received = dante_to_srt(dir.path(), "signal = \"sequence\"", 4, None, "", &mut || {});
    assert_sequence_received(&received);
}

#[test]
fn dante_multicast_bundle_between_two_estuary_devices_is_bit_exact_through_srt() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = "\n[[dante.multicast]]\nchannels = [1, 2]\ngroup = \"239.255.7.1\"\n";
    let received = dante_to_srt(
        dir.path(),
        "signal = \"sequence\"",
        4,
        Some(bundle),
        "",
        &mut || {},
    );
    let a = std::fs::read_to_string(dir.path().join("Estuary-A.stderr")).unwrap_or_default();
    assert!(a.contains("Dante multicast bundle"), "{a}");
    assert!(
        !a.contains("Dante flow table changed"),
        "B asked A for a unicast flow: {a}"
    );
    assert_sequence_received(&received);
}

/// B's SRT output carries A's counting sequence: checks it frame by frame against B's
/// input counters and A's transmit counters.
fn assert_sequence_received(received: &Received) {
    let (samples, input) = (&received.samples, &received.status["inputs"][0]);
    let a_glitches = received.a_glitch_frames();
    assert_eq!(input["kind"], "dante", "{input:#}");
    assert_eq!(input["state"], "receiving", "{input:#}");
    let counters = &input["counters"];
    assert!(
        counters["packets_received"].as_u64().unwrap_or(0) > 1000,
        "{input:#}"
    );

    // Every frame that is not concealed silence is the sequence A generated, channel 2 one
    // step after channel 1, and consecutive frames consecutive, 24 bits exact.
    let frames: Vec<(i32, i32)> = samples.chunks_exact(2).map(|f| (f[0], f[1])).collect();
    assert!(
        frames.len() >= 48_000 * 3,
        "only {} frames decoded",
        frames.len()
    );
    let step = |v: i32| ((v as u32 >> 8).wrapping_add(64) & 0x00ff_ffff) << 8;
    let (mut exact, mut silent, mut breaks) = (0usize, 0usize, 0usize);
    let mut silent_at = Vec::new();
    for (i, &(c1, c2)) in frames.iter().enumerate() {
        if (c1, c2) == (0, 0) {
            if silent_at.last().is_none_or(|&(at, n)| at + n != i) {
                silent_at.push((i, 0));
            }
            if let Some((_, n)) = silent_at.last_mut() {
                *n += 1;
            }
            silent += 1;
            continue;
        }
        assert_eq!(c1 & 0xff, 0, "frame {i}: not 24-bit");
        assert_eq!(
            c2 as u32,
            ((c1 as u32 >> 8).wrapping_add(1) & 0x00ff_ffff) << 8,
            "frame {i}: channels out of step"
        );
        match frames.get(i + 1) {
            Some(&(n1, _)) if n1 as u32 == step(c1) => exact += 1,
            Some(&(0, 0)) | None => {}
            Some(_) => breaks += 1,
        }
    }
    // Concealed gaps (if the loaded machine delayed packets past playout) are counted.
    let concealed = counters["frames_concealed"].as_u64().unwrap_or(0);
    assert!(
        silent == 0 || concealed > 0 || a_glitches > 0,
        "{silent} silent frames (at, length: {silent_at:?}) but none concealed: {input:#}"
    );
    // Each discontinuity is a counted loss or late packet at B, or a counted glitch at A.
    assert!(
        breaks as u64
            <= counters["packets_lost"].as_u64().unwrap_or(0)
                + counters["packets_late"].as_u64().unwrap_or(0)
                + a_glitches,
        "{breaks} discontinuities: {input:#}\nA: {:#}",
        received.a_tx
    );
    assert!(
        exact >= frames.len() * 95 / 100,
        "{exact} of {} frames exact, {silent} silent",
        frames.len()
    );
}

#[test]
fn dante_tone_from_estuary_reaches_ffmpeg_over_srt_at_its_frequency_and_level() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let Received {
        samples, status, ..
    } = dante_to_srt(
        dir.path(),
        "signal = \"tone\"\nfrequency = 1000.0\nlevel = -12.0",
        3,
        None,
        "",
        &mut || {},
    );
    let input = &status["inputs"][0];
    assert_eq!(input["kind"], "dante", "{input:#}");
    let left = common::to_f64(&common::channel(&samples, 2, 0));
    // Skip the first 100 ms (SRT start).
    let steady = &left[4_800.min(left.len())..];
    assert!(steady.len() > 48_000, "only {} frames", steady.len());
    let f = common::frequency(steady, 48_000.0);
    assert!((f - 1000.0).abs() < 2.0, "frequency {f} Hz");
    let peak = steady.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let peak_db = 20.0 * peak.log10();
    assert!((peak_db + 12.0).abs() < 0.2, "peak {peak_db} dBFS");
}

/// A's bundle goes through `estuary impair` (2 % loss, seeded) from its group to a second
/// group, which B joins instead (`rx_group_remap`): B's output is A's sequence bit-exact
/// except silence of exactly the dropped packets' length, and B counts exactly the packets
/// the relay dropped.
#[test]
fn dante_multicast_through_a_lossy_relay_is_exact_except_the_drops_which_are_counted() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = "\n[[dante.multicast]]\nchannels = [1, 2]\ngroup = \"239.255.7.1\"\n";
    let remap = "rx_group_remap = [{ from = \"239.255.7.1:4321\", to = \"239.255.7.2:4321\" }]\n";
    let report = dir.path().join("impair.json");
    let mut relay: Option<Proc> = None;
    let received = dante_to_srt(
        dir.path(),
        "signal = \"sequence\"",
        4,
        Some(bundle),
        remap,
        &mut || {
            // RX 3 (not the input's) listens to A's TX 3 over a unicast flow: its packets
            // must not show in the input's counters.
            netaudio_ok(&[
                "subscription",
                "add",
                "--tx",
                "3@Estuary-A",
                "--rx",
                "3@Estuary-B",
            ]);
            // 1500 packets/s: 0.3 s clean for B to lock, then 2 s of 2 % loss, all within
            // the 4 s decoded.
            let mut cmd = Command::new(common::ESTUARY);
            cmd.args([
                "impair",
                "--listen",
                "239.255.7.1:4321",
                "--listen-interface",
                "lo",
                "--to",
                "239.255.7.2:4321",
                "--to-interface",
                "lo",
                "--loss",
                "2%",
                "--seed",
                "8",
                "--skip",
                "500",
                "--count",
                "3000",
                "--report",
            ])
            .arg(&report)
            .stdout(std::process::Stdio::null());
            relay = Some(Proc::spawn("impair", &mut cmd, dir.path()));
        },
    );
    let mut relay = relay.expect("relay started");
    relay.interrupt(Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !report.exists() {
        assert!(Instant::now() < deadline, "no report: {}", relay.stderr());
        std::thread::sleep(Duration::from_millis(20));
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).expect("report")).expect("json");
    let (samples, status) = (&received.samples, &received.status);
    let input = &status["inputs"][0];
    let counter = |name: &str| input["counters"][name].as_u64().unwrap_or(0);
    let lost = report["lost"].as_u64().expect("lost");
    // Two flows: the bundle (RX 1-2, the input's) and A's unicast flow to RX 3.
    let dante = &status["dante"];
    let flows = dante["rx_flows"].as_array().expect("rx flows");
    let bundle_flow = flows
        .iter()
        .find(|f| f["multicast_group"] == "239.255.7.1:4321")
        .unwrap_or_else(|| panic!("{dante:#}"));
    let unicast = flows
        .iter()
        .find(|f| f["channels"] == serde_json::json!([3]))
        .unwrap_or_else(|| panic!("{dante:#}"));
    assert_eq!(
        bundle_flow["channels"],
        serde_json::json!([1, 2]),
        "{dante:#}"
    );
    assert_eq!(dante["rx_channels"][2]["status"], "unicast", "{dante:#}");
    let flow_counter =
        |f: &serde_json::Value, name: &str| f["counters"][name].as_u64().unwrap_or(0);
    let unicast_packets = flow_counter(unicast, "packets_received");
    assert!(unicast_packets > 1000, "{dante:#}");
    // The input counts the bundle only (its snapshot and the flows' differ by < 0.2 s).
    let device_packets = dante["rx_counters"]["packets_received"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        device_packets >= counter("packets_received") + unicast_packets / 2,
        "device {device_packets}, input {input:#}, {dante:#}"
    );
    // Net of its late packets, the flow lost what the relay dropped, plus what a stalled A
    // did not send (counted by A); the snapshots differ by a moment, so each is checked
    // against its own late count.
    let skipped = received.a_tx["packets_skipped"].as_u64().unwrap_or(0);
    let relay_lost = report["lost"].as_u64().expect("lost");
    let beyond_relay = |lost: u64, late: u64| lost.checked_sub(late + relay_lost);
    assert!(
        beyond_relay(
            flow_counter(bundle_flow, "packets_lost"),
            flow_counter(bundle_flow, "packets_late")
        )
        .is_some_and(|n| n <= skipped),
        "relay {report}\nA {:#}\n{dante:#}",
        received.a_tx
    );
    eprintln!("relay: {report}\nB: {input:#}");
    assert!(lost >= 30, "the seed should drop some packets: {report}");
    // A packet held past its playout time (a loaded machine) is late and played as a loss:
    // with none late and none skipped by A, B's losses are exactly the relay's.
    assert!(
        beyond_relay(counter("packets_lost"), counter("packets_late"))
            .is_some_and(|n| n <= skipped),
        "relay {report}\nA {:#}\nB {input:#}",
        received.a_tx
    );
    // Every lost packet is concealed whole; a packet that came partly after its play-out
    // (a loaded machine) has just its missed frames concealed, counted on top.
    let partly_late = counter("frames_concealed")
        .checked_sub(32 * counter("packets_lost"))
        .unwrap_or_else(|| panic!("lost packets not concealed whole: {input:#}"));

    // In the decoded audio every silent run is whole packets, and the sequence resumes
    // exactly where the dropped packets would have left it; the only exceptions are what A
    // counted as a starved transmitter (silence, then skipped audio), frame for frame.
    let frames: Vec<(i32, i32)> = samples.chunks_exact(2).map(|f| (f[0], f[1])).collect();
    let advance =
        |v: i32, n: u32| (((v as u32 >> 8).wrapping_add(64 * n) & 0x00ff_ffff) << 8) as i32;
    // How many frames `actual` is ahead of (positive) or behind `expected`.
    let offset = |actual: i32, expected: i32| {
        let units = ((actual as u32 >> 8).wrapping_sub(expected as u32 >> 8) & 0x00ff_ffff) / 64;
        if units >= 1 << 17 {
            i64::from(units) - (1 << 18)
        } else {
            i64::from(units)
        }
    };
    let (mut gaps, mut exact) = (0usize, 0usize);
    // Silences that are not whole packets, and jumps in the sequence: (at, frames).
    let (mut odd, mut jumps) = (Vec::new(), Vec::new());
    let mut i = 1;
    while i < frames.len() {
        let prev = frames[i - 1].0;
        if frames[i] == (0, 0) && prev != 0 {
            let run = frames[i..].iter().take_while(|&&f| f == (0, 0)).count();
            if i + run == frames.len() {
                break;
            }
            if run % 32 != 0 {
                odd.push((i, run as i64));
            }
            let jump = offset(frames[i + run].0, advance(prev, run as u32 + 1));
            if jump != 0 {
                jumps.push((i + run, jump));
            }
            gaps += 1;
            i += run;
            continue;
        }
        if prev != 0 {
            let jump = offset(frames[i].0, advance(prev, 1));
            if jump == 0 {
                exact += 1;
            } else {
                jumps.push((i, jump));
            }
            let next_unit = ((frames[i].0 as u32 >> 8).wrapping_add(1) & 0x00ff_ffff) << 8;
            assert_eq!(frames[i].1 as u32, next_unit, "frame {i}: channel 2");
        }
        i += 1;
    }
    assert!(gaps >= 10, "{gaps} gaps decoded; relay {report}");
    eprintln!("silences that are not whole packets and jumps (at, frames): {odd:?} {jumps:?}");
    let frames_in = |events: &[(usize, i64)]| events.iter().map(|&(_, n)| n.unsigned_abs()).sum();
    let (odd_frames, jump_frames): (u64, u64) = (frames_in(&odd), frames_in(&jumps));
    // A starved transmitter sends counted silence (`underrun_frames`); the audio then
    // follows late (a jump back by as much) or A skips what piled up (`dropped_frames`, a
    // jump ahead). So silences are bounded by B's partial concealment and A's underruns,
    // and jumps by A's count.
    let underrun = received.a_tx["underrun_frames"].as_u64().unwrap_or(0);
    assert!(
        odd_frames <= partly_late + underrun,
        "odd silences {odd:?} (jumps {jumps:?}) beyond what B ({partly_late} frames \
         concealed of partly late packets) and A counted: {:#}",
        received.a_tx
    );
    assert!(
        jump_frames <= received.a_glitch_frames(),
        "jumps {jumps:?} beyond what A counted: {:#}",
        received.a_tx
    );
    assert!(exact >= 48_000 * 3, "{exact} exact frames");
}

/// A bundle with no configured group derives one from the device name; when another
/// device's bundle already holds that group (heard by mDNS at start), the device claims the
/// next candidate instead and sends there.
#[test]
fn a_derived_bundle_group_another_device_holds_is_not_taken() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let bundle = |group: &str| {
        format!(
            "tx_input = \"gen\"\n\n[[dante.multicast]]\nchannels = [1, 2]\n{group}\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nchannels = 2\nmeters = false\n"
        )
    };
    // The bundle shows in the status once the transmitter has started (a moment after the
    // API answers, longer on a loaded machine).
    let group_of = |api: u16| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let status = api_status(api);
            if let Some(group) = status["dante"]["tx_bundles"][0]["group"].as_str() {
                return group.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no bundle: {:#}",
                status["dante"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    // A alone: its derived group.
    let mut a = start_device_with(dir.path(), "Estuary-A", 4440, 18480, &bundle(""));
    let derived = group_of(18480);
    a.interrupt(Duration::from_secs(5));
    drop(a);

    // R holds that group; A, started again, hears R's bundle and takes another.
    let held = derived.split(':').next().expect("ip").to_owned();
    let _r = start_device_with(
        dir.path(),
        "Estuary-R",
        4441,
        18481,
        &bundle(&format!("group = \"{held}\"\n")),
    );
    assert_eq!(group_of(18481), derived);
    let a = start_device_with(dir.path(), "Estuary-A", 4440, 18480, &bundle(""));
    let claimed = group_of(18480);
    assert_ne!(claimed, derived, "{}", a.stderr());
    let addr: std::net::SocketAddrV4 = claimed.parse().expect("group:port");
    assert!(
        addr.ip().octets()[..2] == [239, 255] && addr.port() == 4321,
        "{claimed}"
    );
    assert!(a.stderr().contains("claimed another"), "{}", a.stderr());

    // A sends its bundle to the group it claimed.
    let lo = estuary_io::mcast::resolve_interface("lo").expect("lo");
    let socket =
        estuary_io::mcast::open_receive_socket(std::net::SocketAddr::V4(addr), None, Some(&lo))
            .expect("join");
    socket.set_nonblocking(false).expect("blocking");
    socket
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let mut buf = [0u8; 2048];
    let n = socket.recv(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no packet on the claimed group ({e}): {}\n{:#}",
            a.stderr(),
            api_status(18480)["dante"]
        )
    });
    estuary_wire::dante::audio::AudioPacket::parse(&buf[..n]).expect("Dante audio");
}

/// Two devices in separate network namespaces joined by a veth pair, as two boxes on a
/// LAN: A (in the peer namespace) transmits a counting sequence, netaudio on B's side
/// subscribes B's RX 1-2 to it, lists the subscriptions connected, B receives A's audio,
/// and removing the subscriptions stops A's flow.
#[test]
fn netaudio_routes_audio_between_devices_in_separate_namespaces() {
    use estuary_io::netns::PeerNamespace;
    isolate();
    let ns = PeerNamespace::create("estn").expect("veth pair");
    NETAUDIO_INTERFACE.with(|i| i.set(PeerNamespace::LOCAL_INTERFACE));
    let dir = tempfile::tempdir().expect("tempdir");
    let config = |name: &str, interface: &str, api: std::net::Ipv4Addr| {
        format!(
            "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"{api}:18486\"\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = 2\nmeters = false\n\n\
             [dante]\nname = \"{name}\"\ninterface = \"{interface}\"\ntx_channels = 2\n\
             rx_channels = 2\ntx_input = \"gen\"\nstate_file = \"{}\"\n",
            dir.path().join(format!("{name}.json")).display()
        )
    };
    let mut a = run_device(
        dir.path(),
        "Estuary-A",
        ns.command(common::ESTUARY),
        &config(
            "Estuary-A",
            PeerNamespace::PEER_INTERFACE,
            PeerNamespace::PEER_ADDRESS,
        ),
    );
    let b = run_device(
        dir.path(),
        "Estuary-B",
        Command::new(common::ESTUARY),
        &config(
            "Estuary-B",
            PeerNamespace::LOCAL_INTERFACE,
            PeerNamespace::LOCAL_ADDRESS,
        ),
    );
    subscribe_b_to_a();
    let live = |s: &&(u64, String, String, String, String)| {
        s.1 == "Estuary-B"
            && s.3 == "Estuary-A"
            && (s.4.contains("unicast") || s.4 == "connected" || s.4 == "subscribed")
    };
    let rows = subscriptions_until(|r| r.iter().filter(live).count() == 2);
    let connected: Vec<_> = rows.iter().filter(live).collect();
    assert_eq!(connected.len(), 2, "{rows:?}");
    for row in &connected {
        assert_eq!(row.2, format!("0{}", row.0), "{rows:?}");
    }

    // B receives A's flow over the veth pair.
    let b_api = format!("http://{}:18486", PeerNamespace::LOCAL_ADDRESS);
    let status = common::wait_for_json(
        (b_api.as_str(), "/api/status"),
        "A's audio at B",
        Duration::from_secs(20),
        &b,
        |s| {
            s["dante"]["rx_counters"]["packets_received"]
                .as_u64()
                .is_some_and(|n| n > 1_000)
        },
    );
    let flows = status["dante"]["rx_flows"].as_array().expect("rx flows");
    assert_eq!(flows.len(), 1, "{:#}", status["dante"]);
    assert_eq!(
        flows[0]["channels"],
        serde_json::json!([1, 2]),
        "{flows:#?}"
    );

    // Unrouting stops A's flow.
    netaudio_ok(&["subscription", "remove", "--rx", "1@Estuary-B"]);
    netaudio_ok(&["subscription", "remove", "--rx", "2@Estuary-B"]);
    a.wait_for_stderr("flows=0", Duration::from_secs(15));
}

/// `clock = "ptpv2"`, a device in AES67 mode: the media clock is the `[clock]` section's PTP
/// time, here following linuxptp's ptp4l over a veth pair. The device reports the lock and
/// ptp4l's grandmaster, its multicast bundle carries media times that are PTP time × rate
/// when sent, and heartbeats carry the PTP servo's frequency correction. (On one host
/// ptp4l's software-timestamped PTP time is the host's clock, which the `local` clock also
/// reads: the timestamps show alignment, the status shows which clock is followed.)
#[test]
fn a_dante_device_on_ptpv2_times_its_audio_by_ptp4l() {
    use estuary_io::netns::PeerNamespace;
    use estuary_wire::dante::audio::AudioPacket;
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let (ns, _gm) = common::ptp4l_grandmaster("estd", dir.path());
    let lo = estuary_io::mcast::resolve_interface("lo").expect("lo");
    let join = |group: &str| {
        let socket =
            estuary_io::mcast::open_receive_socket(group.parse().expect("group"), None, Some(&lo))
                .expect("join");
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        socket
    };
    let bundle = join("239.255.7.9:4321");
    let heartbeats = join("224.0.0.233:8708");
    let estuary = common::start_estuary(
        dir.path(),
        &format!(
            "[api]\nbind = \"127.0.0.1:18484\"\n[discovery]\nsap = false\nravenna = false\n\n\
             [clock]\nmode = \"follower\"\ninterface = \"{}\"\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = 2\nmeters = false\n\n\
             [dante]\nname = \"Estuary-P\"\naddress = \"127.0.0.1\"\ntx_channels = 2\n\
             rx_channels = 2\nclock = \"ptpv2\"\ntx_input = \"gen\"\nstate_file = \"{}\"\n\
             multicast = [{{ channels = [1, 2], group = \"239.255.7.9\" }}]\n",
            PeerNamespace::LOCAL_INTERFACE,
            dir.path().join("dante.json").display()
        ),
    );
    let api = "http://127.0.0.1:18484";
    let status = common::wait_for_json(
        (api, "/api/status"),
        "the Dante clock locked to ptp4l",
        Duration::from_secs(60),
        &estuary,
        |s| s["dante"]["clock"]["locked"] == true,
    );
    let clock = &status["dante"]["clock"];
    assert_eq!(clock["source"], "ptpv2", "{clock:#}");
    assert_eq!(
        clock["leader"],
        common::peer_identity(&ns).as_str(),
        "{clock:#}"
    );
    assert!(clock["syncs_received"].as_u64() > Some(0), "{clock:#}");

    // ptp4l stamps from the host clock we read too: PTP time is the host's UTC plus whole
    // seconds (the timescale's offset).
    let ptp_minus_utc = common::api_json(api, "/api/clock")["ptp"]["ptp_minus_utc_ns"]
        .as_f64()
        .expect("ptp_minus_utc_ns") as i64;
    let whole_s = (ptp_minus_utc + 500_000_000).div_euclid(1_000_000_000);
    let mut buf = [0u8; 2048];
    bundle.set_nonblocking(true).expect("nonblocking");
    while bundle.recv(&mut buf).is_ok() {}
    bundle.set_nonblocking(false).expect("blocking");
    let mut lags = Vec::new();
    for _ in 0..300 {
        let n = bundle.recv(&mut buf).expect("a bundle packet");
        let arrived = estuary_io::clock::realtime_now_ns() as i64 + whole_s * 1_000_000_000;
        let packet = AudioPacket::parse(&buf[..n]).expect("Dante audio");
        let sent = packet.header.media_time(48_000).expect("media time") as i64;
        lags.push((i128::from(arrived) * 48_000 / 1_000_000_000) as i64 - sent);
    }
    lags.sort_unstable();
    eprintln!(
        "bundle media time behind PTP time at arrival, frames: min {} p50 {} max {}",
        lags[0],
        lags[lags.len() / 2],
        lags[lags.len() - 1]
    );
    // A packet leaves once its last frame's media time has come: it arrives a packet's
    // length (32 frames) or more after its timestamp, less the servo's error.
    assert!(lags[0] >= 0, "a packet stamped ahead of PTP time: {lags:?}");
    assert!(
        lags[lags.len() / 2] <= 32 + 240,
        "median lag over 5 ms past a packet: {lags:?}"
    );

    let ppb = clock["drift_ppb"].as_f64().expect("drift_ppb");
    let seen = receive_conmon(&heartbeats, Duration::from_secs(5), |c| {
        matches!(c, Conmon::Heartbeat(h)
            if h.frequency_offset_ppb().is_some_and(|p| (f64::from(p) - ppb).abs() < 20_000.0))
    });
    assert!(seen, "no heartbeat near the PTP servo's {ppb} ppb");
}

/// netaudio 0.2.5, the legacy-dialect release that renames channels (0.4.2 renames them in a
/// newer dialect; 0.2.4 does not run on Debian 12's Python): installed by `scripts/deps.sh
/// test` into its own venv.
const NETAUDIO_LEGACY: &str = "/opt/estuary-venv-netaudio02/bin/netaudio";

/// Runs a netaudio 0.2.5 command until it succeeds, as [`netaudio_ok`] does.
fn legacy_ok(args: &[&str]) {
    retry_until_ok(NETAUDIO_LEGACY, args);
}

/// The device `host` as netaudio 0.4.2 lists it: (name, TX 02's friendly name, RX 03's
/// name), once `done` holds or after 30 s.
fn names_until(
    host: &str,
    done: impl Fn(&(String, String, String)) -> bool,
) -> (String, String, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let channels = netaudio(&["channel", "list"]);
        let d = &channels[host];
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        let rx3 = d["rx_channels"]
            .as_object()
            .and_then(|rx| rx.values().find(|c| c["number"] == 3))
            .map(|c| text(&c["name"]))
            .unwrap_or_default();
        let names = (
            text(&d["name"]),
            text(&d["tx_channels"]["02"]["friendly_name"]),
            rx3,
        );
        if done(&names) || Instant::now() > deadline {
            return names;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Renames from controllers: netaudio 0.2.5 renames a TX and an RX channel, netaudio 0.4.2
/// the device. netaudio 0.4.2 then lists the new names on the device's new host name (the
/// records re-published in place, never `NAME (2)`), and they survive a restart.
#[test]
fn netaudio_renames_channels_and_the_device_and_the_names_survive_a_restart() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut device = start_device(dir.path(), "Estuary-R", 4440, 18480);
    legacy_ok(&[
        "-n",
        "Estuary-R",
        "channel",
        "name",
        "--type",
        "tx",
        "2",
        "Vocals",
    ]);
    legacy_ok(&[
        "-n",
        "Estuary-R",
        "channel",
        "name",
        "--type",
        "rx",
        "3",
        "Mic3",
    ]);
    let expected = |name: &str| (name.to_owned(), "Vocals".to_owned(), "Mic3".to_owned());
    let names = names_until("Estuary-R.local.", |n| *n == expected("Estuary-R"));
    assert_eq!(names, expected("Estuary-R"));
    netaudio_ok(&["-n", "Estuary-R", "device", "name", "Stage-Box"]);
    let names = names_until("Stage-Box.local.", |n| *n == expected("Stage-Box"));
    assert_eq!(names, expected("Stage-Box"), "{}", device.stderr());

    device.terminate(Duration::from_secs(10));
    let _device = start_device(dir.path(), "Estuary-R", 4440, 18480);
    let names = names_until("Stage-Box.local.", |n| *n == expected("Stage-Box"));
    assert_eq!(names, expected("Stage-Box"));
}

/// netaudio sends conmon requests only to a device on an interface with a MAC, so this
/// device sits on a veth pair (10.77.0.1 on `vd0`) in the test's namespace: `device list`
/// reads the `_netaudio-cmc` record (port, TXT, the id it shows as the MAC) and the make,
/// model and version Estuary answers over conmon.
#[test]
fn netaudio_shows_the_cmc_record_and_estuarys_make_and_model_over_a_veth_pair() {
    isolate();
    for args in [
        &["link", "add", "vd0", "type", "veth", "peer", "name", "vd1"][..],
        &["addr", "add", "10.77.0.1/24", "dev", "vd0"],
        &["link", "set", "vd0", "up"],
        &["link", "set", "vd1", "up"],
        &["route", "replace", "224.0.0.0/4", "dev", "vd0"],
    ] {
        let status = Command::new("ip").args(args).status().expect("ip");
        assert!(status.success(), "ip {args:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("v.toml");
    std::fs::write(
        &config,
        format!(
            "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:18482\"\n\n\
             [dante]\nname = \"Estuary-V\"\ninterface = \"vd0\"\ntx_channels = 2\nrx_channels = 2\n\
             state_file = \"{}\"\n",
            dir.path().join("v.json").display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(common::ESTUARY);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut device = Proc::spawn("Estuary-V", &mut cmd, dir.path());
    device.wait_for_stderr("Dante device published", Duration::from_secs(20));

    let deadline = Instant::now() + Duration::from_secs(40);
    let found = loop {
        let mut cmd = Command::new(NETAUDIO);
        cmd.args([
            "--timeout",
            "3",
            "--interface",
            "vd0",
            "-o",
            "json",
            "device",
            "list",
        ]);
        let (_, stdout, _) = run_with_timeout(&mut cmd, Duration::from_secs(30));
        let list: serde_json::Value = serde_json::from_slice(&stdout).unwrap_or_default();
        let d = list["dante"]["Estuary-V.local."].clone();
        if d["product_version"].is_string() || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let cmc = &found["services"]["Estuary-V._netaudio-cmc._udp.local."];
    assert_eq!(cmc["port"], 8800, "{found:#}");
    assert_eq!(cmc["ipv4"], "10.77.0.1", "{cmc:#}");
    // A locally administered pseudo-MAC (02, ARC port − 4440, the IPv4 address), then 0000.
    assert_eq!(cmc["properties"]["id"], "02000a4d00010000", "{cmc:#}");
    assert_eq!(cmc["properties"]["process"], "0", "{cmc:#}");
    assert_eq!(cmc["properties"]["cmcp_vers"], "1.2.0", "{cmc:#}");
    assert_eq!(found["mac_address"], "02000a4d00010000", "{found:#}");
    // Conmon's make/model (0x00C0) and Dante model (0x0060) answers.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(found["manufacturer"], "Estuary", "{found:#}");
    assert_eq!(found["product_name"], "Estuary", "{found:#}");
    assert_eq!(found["product_version"], version, "{found:#}");
    assert_eq!(found["platform_model_name"], "Estuary", "{found:#}");
    assert_eq!(found["platform_software_version"], version, "{found:#}");

    let status = api_status(18482);
    assert_eq!(status["dante"]["ports"]["cmc"], 8800, "{status:#}");
    assert_eq!(status["dante"]["address"], "10.77.0.1", "{status:#}");
    assert_eq!(status["dante"]["clock"]["source"], "local", "{status:#}");
}

/// `[dante] clock = "ptpv1"`: a PTPv1 leader simulated here with our own encoder (one-step
/// Syncs every 100 ms in subdomain `_DFLT`, its clock CLOCK_TAI + 5.000123456 s, answering
/// Delay_Reqs) on 224.0.1.129 in the test's namespace; the device's API reports the leader,
/// a lock and that offset.
#[test]
fn dante_ptpv1_follower_locks_to_a_simulated_leader_at_its_offset() {
    use estuary_wire::dante::ptpv1::{
        self, Control, PortIdentity, SyncBody, Timestamp, V1Body, V1Header, V1Message,
    };
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("p.toml");
    std::fs::write(
        &config,
        format!(
            "[discovery]\nsap = false\nravenna = false\n\n[api]\nbind = \"127.0.0.1:18483\"\n\n\
             [dante]\nname = \"Estuary-P\"\naddress = \"127.0.0.1\"\nclock = \"ptpv1\"\n\
             state_file = \"{}\"\n",
            dir.path().join("p.json").display()
        ),
    )
    .expect("config");
    let mut cmd = Command::new(common::ESTUARY);
    cmd.arg("run")
        .arg("-c")
        .arg(&config)
        .env("RUST_LOG", "info");
    let mut device = Proc::spawn("Estuary-P", &mut cmd, dir.path());
    device.wait_for_stderr("Dante device published", Duration::from_secs(20));

    const OFFSET_NS: i128 = 5_000_123_456;
    let leader_uuid = [0x00, 0x1d, 0xc1, 0x0a, 0x0b, 0x0c];
    let leader_now = || i128::from(estuary_io::clock::tai_now_ns()) + OFFSET_NS;
    let timestamp = |ns: i128| Timestamp {
        seconds: (ns / 1_000_000_000) as u32,
        nanoseconds: (ns % 1_000_000_000) as i32,
    };
    let header = |control: Control, message_type: u8, sequence: u16| V1Header {
        version_network: 1,
        subdomain: V1Header::subdomain_field(ptpv1::DEFAULT_SUBDOMAIN),
        message_type,
        source: PortIdentity {
            technology: 1,
            uuid: leader_uuid,
            port: 1,
        },
        sequence,
        control,
        flags: 0,
    };
    let lo = estuary_io::mcast::resolve_interface("lo").expect("lo");
    let group = |port: u16| std::net::SocketAddr::from((ptpv1::MULTICAST, port));
    let event = estuary_io::mcast::open_receive_socket(group(319), None, Some(&lo)).expect("319");
    event
        .set_read_timeout(Some(Duration::from_millis(5)))
        .expect("timeout");
    let send = estuary_io::mcast::open_send_socket(group(319), Some(&lo), 1, 0).expect("send");

    let deadline = Instant::now() + Duration::from_secs(40);
    let mut next_sync = Instant::now();
    let mut sequence = 0u16;
    let mut buf = [0u8; 512];
    let mut last_check = Instant::now();
    let clock = loop {
        if Instant::now() >= next_sync {
            next_sync += Duration::from_millis(100);
            sequence = sequence.wrapping_add(1);
            let sync = V1Message {
                header: header(Control::Sync, 1, sequence),
                body: V1Body::Sync(SyncBody {
                    origin: timestamp(leader_now()),
                    grandmaster: PortIdentity {
                        technology: 1,
                        uuid: leader_uuid,
                        port: 1,
                    },
                    grandmaster_stratum: 1,
                    sync_interval: -3,
                    ..SyncBody::default()
                }),
            };
            send.send_to(&sync.to_bytes(), group(319)).expect("sync");
        }
        if let Ok(n) = event.recv(&mut buf) {
            let receipt = leader_now();
            if let Ok(m) = ptpv1::parse(&buf[..n])
                && m.header.control == Control::DelayReq
                && m.header.source.uuid != leader_uuid
            {
                let resp = V1Message {
                    header: header(Control::DelayResp, 2, sequence),
                    body: V1Body::DelayResp {
                        receipt: timestamp(receipt),
                        requester: m.header.source,
                        requester_sequence: m.header.sequence,
                    },
                };
                send.send_to(&resp.to_bytes(), group(320))
                    .expect("delay resp");
            }
        }
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            let clock = api_status(18483)["dante"]["clock"].clone();
            if clock["locked"] == true || Instant::now() > deadline {
                break clock;
            }
        }
    };
    assert_eq!(clock["source"], "ptpv1", "{clock:#}");
    assert_eq!(clock["locked"], true, "{clock:#}");
    assert_eq!(clock["leader"], "00:1d:c1:0a:0b:0c", "{clock:#}");
    // Loopback: no path delay but the software timestamps' scheduling delays.
    let offset = i128::from(clock["offset_ns"].as_i64().expect("offset"));
    assert!((offset - OFFSET_NS).abs() < 2_000_000, "{clock:#}");
    assert!(
        clock["path_delay_ns"]
            .as_i64()
            .is_some_and(|d| d < 2_000_000),
        "{clock:#}"
    );
    assert!(
        clock["syncs_received"].as_u64().unwrap_or(0) >= 4,
        "{clock:#}"
    );
    assert!(
        clock["delay_responses_received"].as_u64().unwrap_or(0) >= 1,
        "{clock:#}"
    );
    // The leader runs at the host's rate: the estimate at lock comes from a handful of
    // software-timestamped syncs (56 ppm seen on a loaded host), so this only bounds it
    // against unit errors, which read in the thousands of ppm and beyond.
    let drift = clock["drift_ppb"].as_f64().expect("drift");
    assert!(drift.abs() < 1_000_000.0, "{clock:#}");
}
