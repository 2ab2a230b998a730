//! Scenarios of the running pipeline on loopback: live reconfiguration keeps what did not
//! change, and the meters measure what is sent.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::{Options, Running};
use crate::config;
use crate::send::{self, StartedSender, ToneSpec};

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    socket.local_addr().expect("addr").port()
}

fn free_tcp_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn tone(port: u16, level_dbfs: f64) -> StartedSender {
    let spec = ToneSpec {
        destination: SocketAddr::from(([127, 0, 0, 1], port)),
        level_dbfs,
        ..ToneSpec::default()
    };
    send::start(&spec, None).expect("tone sender")
}

fn input(name: &str, port: u16) -> String {
    format!(
        "[[inputs]]\nname = \"{name}\"\nkind = \"aes67\"\naddress = \"127.0.0.1:{port}\"\nformat = \"L24\"\nchannels = 2\nsample_rate = 48000\n\n"
    )
}

fn output(name: &str, input: &str, port: u16) -> String {
    format!(
        "[[outputs]]\nname = \"{name}\"\nkind = \"srt\"\ninput = \"{input}\"\nmode = \"listener\"\naddress = \"127.0.0.1:{port}\"\ncodec = \"pcm\"\n\n"
    )
}

fn parse(text: &str) -> config::Config {
    config::parse(text, Path::new(".")).expect("valid config")
}

fn options() -> Options {
    Options {
        meters: true,
        ..Options::default()
    }
}

fn packets(running: &Running, name: &str) -> u64 {
    running
        .input_stats()
        .into_iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, s)| s.stats.packets_received)
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn apply_restarts_only_what_changed() {
    let (a_port, b_port, srt_port) = (free_udp_port(), free_udp_port(), free_tcp_port());
    let mut a_tone = tone(a_port, -18.0);
    let mut b_tone = tone(b_port, -18.0);
    let first = parse(&(input("a", a_port) + &input("b", b_port)));
    let mut running = Running::start_with(&first, options()).expect("start");
    wait_for("both inputs to receive", || {
        packets(&running, "a") > 100 && packets(&running, "b") > 100
    });

    // Add an output to b: a keeps running untouched, b restarts.
    let second = parse(&(input("a", a_port) + &input("b", b_port) + &output("out", "b", srt_port)));
    let before_a = packets(&running, "a");
    let total_b = |running: &Running| {
        running
            .status()
            .inputs
            .iter()
            .find(|i| i.name == "b")
            .map_or(0, |i| i.counters.packets_received)
    };
    let before_b = total_b(&running);
    let report = running.apply(&second).expect("applied");
    assert!(
        total_b(&running) >= before_b,
        "a restarted input's totals carry over"
    );
    assert_eq!(report.unchanged, ["a"]);
    assert_eq!(report.restarted, ["b"]);
    assert!(report.added.is_empty() && report.removed.is_empty());
    assert!(
        packets(&running, "a") >= before_a,
        "the unchanged input kept its counters"
    );
    wait_for("b to receive again", || packets(&running, "b") > 100);
    assert_eq!(running.output_status().len(), 1);

    // Remove a; change b's latency: b restarts, its unchanged SRT output is the same sender.
    let sender_before =
        std::sync::Arc::as_ptr(running.routes[1].outputs[0].sink.srt().expect("srt"));
    let third = parse(
        &(input("b", b_port).replace(
            "sample_rate = 48000",
            "sample_rate = 48000\nlatency = \"20ms\"",
        ) + &output("out", "b", srt_port)),
    );
    let report = running.apply(&third).expect("applied");
    assert_eq!(report.removed, ["a"]);
    assert_eq!(report.restarted, ["b"]);
    assert_eq!(running.routes.len(), 1);
    assert_eq!(
        std::sync::Arc::as_ptr(running.routes[0].outputs[0].sink.srt().expect("srt")),
        sender_before,
        "an unchanged output keeps its SRT sender (and its caller)"
    );

    // Applying the same configuration again changes nothing.
    let report = running.apply(&third).expect("applied");
    assert_eq!(report.unchanged, ["b"]);
    assert_eq!(report.to_string(), "nothing changed");
    a_tone.sender.stop();
    b_tone.sender.stop();
    running.shutdown();
}

#[test]
fn a_change_that_cannot_start_restores_the_running_config() {
    let port = free_udp_port();
    // Something else holds this port, unicast and without SO_REUSEPORT.
    let blocker = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let busy = blocker.local_addr().expect("addr").port();
    let mut sender = tone(port, -18.0);
    let first = parse(&input("a", port));
    let mut running = Running::start_with(&first, options()).expect("start");
    wait_for("a to receive", || packets(&running, "a") > 50);
    let second = parse(&(input("a", port) + &input("b", busy)));
    // The receive socket asks for SO_REUSEPORT, which the blocker did not set: EADDRINUSE.
    let e = running.apply(&second).expect_err("b cannot bind");
    assert_eq!(e.field.as_deref(), Some("inputs[1]"));
    assert!(e.message.contains(&busy.to_string()), "{}", e.message);
    assert_eq!(running.routes.len(), 1, "b was not left behind");
    assert_eq!(running.config, first, "the running config is the old one");
    let before = packets(&running, "a");
    wait_for("a to keep receiving", || {
        packets(&running, "a") > before + 50
    });
    drop(blocker);
    sender.sender.stop();
    running.shutdown();
}

#[test]
fn meters_measure_the_tone_sent() {
    let port = free_udp_port();
    let mut sender = tone(port, -20.0);
    let config = parse(&input("a", port));
    let running = Running::start_with(&config, options()).expect("start");
    // A sine whose peak is −20 dBFS has an RMS 3.01 dB lower. The 300 ms RMS window needs
    // clean audio to read it: on a loaded machine a late packet (concealed, and counted) can
    // dip it for a moment, so the levels must be right at some point within a few seconds.
    let levels_right = |m: &crate::status::InputMeters| {
        m.channels.len() == 2
            && m.channels.iter().all(|ch| {
                (ch.peak - -20.0).abs() < 0.2
                    && (ch.rms - -23.01).abs() < 0.2
                    && ch.true_peak >= ch.peak - 0.01
            })
    };
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let meters = running.meters();
        let settled = meters.first().filter(|m| m.frames > 48_000);
        if settled.is_some_and(levels_right) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "levels never matched the tone: {meters:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let status = running.status();
    assert_eq!(status.inputs[0].state, "receiving");
    // A loaded machine may delay packets (a `late` warning is the truth then), but a steady
    // tone is never silent, stuck or clipped.
    let health = &status.inputs[0].health;
    assert_ne!(health.level, "critical", "{health:?}");
    assert!(
        !health.conditions.iter().any(|c| c.starts_with("silence")
            || c.starts_with("stuck")
            || c.starts_with("clipping")),
        "{health:?}"
    );
    sender.sender.stop();
    running.shutdown();
}

#[test]
fn a_new_alarm_threshold_retunes_the_meters_without_restarting_audio() {
    let port = free_udp_port();
    let mut sender = tone(port, -18.0);
    let rule = |threshold: f64| {
        format!(
            "[[alarms.rules]]\nname = \"quiet\"\ncondition = \"silence\"\ninputs = [\"*\"]\nthreshold = {threshold:.1}\nraise_after = \"2s\"\nseverity = \"warning\"\n\n"
        )
    };
    let first = parse(&(input("a", port) + &rule(-60.0)));
    let mut running = Running::start_with(&first, options()).expect("start");
    wait_for("a to receive", || packets(&running, "a") > 100);
    let before = packets(&running, "a");
    let report = running
        .apply(&parse(&(input("a", port) + &rule(-10.0))))
        .expect("applied");
    assert_eq!(report.retuned, ["a"]);
    assert!(report.restarted.is_empty(), "{report}");
    // The jitter buffer was not replaced: its counters only grew.
    assert!(packets(&running, "a") >= before);
    // The tone (−18 dBFS peak) is "silent" for a −10 dBFS threshold: the new rule is live.
    wait_for("the retuned silence detector to raise", || {
        running.status().inputs[0]
            .health
            .conditions
            .iter()
            .any(|c| c.starts_with("silence"))
    });
    sender.sender.stop();
    running.shutdown();
}

#[test]
fn removing_an_input_clears_its_raised_alarms_before_apply_returns() {
    use crate::gateway::{Condition, Signal};
    let (a_port, b_port) = (free_udp_port(), free_udp_port());
    let mut a_tone = tone(a_port, -18.0);
    let mut b_tone = tone(b_port, -18.0);
    // The tone (−18 dBFS peak) is "silent" for a −10 dBFS threshold: raised at once.
    let rule = "[[alarms.rules]]\nname = \"quiet\"\ncondition = \"silence\"\ninputs = [\"*\"]\nthreshold = -10.0\nraise_after = \"0s\"\nseverity = \"warning\"\n\n";
    let (signals, received) = std::sync::mpsc::channel::<Signal>();
    let options = Options {
        signals: Some(signals),
        ..options()
    };
    let both = parse(&(input("a", a_port) + &input("b", b_port) + rule));
    let mut running = Running::start_with(&both, options).expect("start");
    let mut seen = Vec::new();
    let is_silence =
        |s: &Signal, input: &str| s.subject == input && s.condition == Condition::Silence;
    wait_for("silence raised on both inputs", || {
        seen.extend(received.try_iter());
        ["a", "b"]
            .iter()
            .all(|i| seen.iter().any(|s| is_silence(s, i) && s.raised))
    });
    running
        .apply(&parse(&(input("b", b_port) + rule)))
        .expect("applied");
    // The meter thread let go of a's worker, which cleared what it had raised, before the
    // route was gone: the clears are already here.
    seen.extend(received.try_iter());
    for channel in [Some(1), Some(2)] {
        let last = seen
            .iter()
            .rfind(|s| is_silence(s, "a") && s.channel == channel)
            .expect("a signal of a's channel");
        assert!(!last.raised, "{channel:?} still raised: {seen:?}");
    }
    // b, still running, keeps its alarm raised.
    let last_b = seen
        .iter()
        .rfind(|s| is_silence(s, "b"))
        .expect("a signal of b");
    assert!(last_b.raised, "{seen:?}");
    a_tone.sender.stop();
    b_tone.sender.stop();
    running.shutdown();
}
