//! ST 2022-7 transmit, end to end: a generator's counting sequence goes out of an AES67
//! output on two paths (two veth pairs: `dupa0 → dupa1`, `dupb0 → dupb1`); GStreamer
//! records each path, and Estuary's own 2022-7 receiver merges them and relays the result
//! to FFmpeg, which reads it from the SDP Estuary wrote. Path A's receiving end goes down
//! a second in: the merged stream must still be the sequence without a missing or
//! altered sample, path B alone must be complete, and path A must really have stopped.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const RATE: usize = 48_000;
const CHANNELS: usize = 2;

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sysctl(key: &str, value: &str) {
    std::fs::write(format!("/proc/sys/{}", key.replace('.', "/")), value)
        .unwrap_or_else(|e| panic!("{key}: {e}"));
}

/// Two point-to-point links inside this test's namespace. Both ends are local addresses,
/// so the receiving ends must accept packets from a local source.
fn two_paths() {
    for (path, net) in [("a", 1), ("b", 2)] {
        let (tx, rx) = (format!("dup{path}0"), format!("dup{path}1"));
        ip(&["link", "add", &tx, "type", "veth", "peer", "name", &rx]);
        ip(&["addr", "add", &format!("10.70.{net}.1/24"), "dev", &tx]);
        ip(&["addr", "add", &format!("10.70.{net}.2/24"), "dev", &rx]);
        for dev in [&tx, &rx] {
            ip(&["link", "set", dev, "up"]);
        }
        sysctl(&format!("net.ipv4.conf.{rx}.accept_local"), "1");
        sysctl(&format!("net.ipv4.conf.{rx}.rp_filter"), "0");
    }
    sysctl("net.ipv4.conf.all.rp_filter", "0");
}

fn wait_for_file(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains(needle)
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many frames from the start of `samples` are consecutive frames of the counting
/// sequence; panics at the first frame that is not the next one.
fn sequence_run(samples: &[i32], what: &str) -> usize {
    assert!(samples.len() >= CHANNELS, "{what}: nothing received");
    let first = (samples[0] as u32 >> 8) as u64 / 64;
    for (i, frame) in samples.chunks_exact(CHANNELS).enumerate() {
        let want: Vec<i32> = (0..CHANNELS)
            .map(|ch| estuary_io::tx::sequence_sample(first + i as u64, ch))
            .collect();
        assert_eq!(
            frame,
            &want[..],
            "{what}: frame {i} of {} is not the sequence's next",
            samples.len() / CHANNELS
        );
    }
    samples.len() / CHANNELS
}

fn gst_path_recorder(
    dir: &Path,
    name: &str,
    group: &str,
    iface: &str,
) -> (Proc, std::path::PathBuf) {
    let out = dir.join(format!("{name}.raw"));
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec timeout -s INT 4 gst-launch-1.0 -q -e udpsrc address={group} port=5004 \
         multicast-iface={iface} caps=\"application/x-rtp,media=audio,clock-rate=48000,\
         encoding-name=L24,channels={CHANNELS},payload=98\" ! rtpjitterbuffer latency=20 \
         ! rtpL24depay ! filesink location={}",
        out.display()
    ));
    (Proc::spawn(name, &mut cmd, dir), out)
}

#[test]
fn st2022_7_transmit_survives_losing_a_path_bit_exact() {
    isolate();
    two_paths();
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx_sdp, merged_sdp) = (dir.path().join("tx.sdp"), dir.path().join("merged.sdp"));
    let mut estuary = start_estuary(
        dir.path(),
        &format!(
            "[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = {CHANNELS}\nmeters = false\n\n\
             [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gen\"\n\
             address = \"239.69.21.1:5004\"\ninterface = \"dupa0\"\nttl = 1\nsap = false\n\
             sdp_file = \"{}\"\n\
             redundant = {{ address = \"239.69.22.1:5004\", interface = \"dupb0\" }}\n\n\
             [[inputs]]\nname = \"rx\"\nkind = \"aes67\"\naddress = \"239.69.21.1:5004\"\n\
             interface = \"dupa1\"\nformat = \"L24\"\nchannels = {CHANNELS}\npayload_type = 98\n\
             latency = \"20ms\"\nmeters = false\n\
             redundant = {{ address = \"239.69.22.1:5004\", interface = \"dupb1\" }}\n\n\
             [[outputs]]\nname = \"merged\"\nkind = \"aes67\"\ninput = \"rx\"\n\
             address = \"127.0.0.1:5010\"\nsap = false\nsdp_file = \"{}\"\n",
            tx_sdp.display(),
            merged_sdp.display()
        ),
    );
    let sdp = wait_for_file(&tx_sdp, "a=group:DUP");
    for line in [
        "a=group:DUP 1 2",
        "c=IN IP4 239.69.21.1/1",
        "c=IN IP4 239.69.22.1/1",
        "a=mid:1",
        "a=mid:2",
    ] {
        assert!(sdp.contains(line), "SDP lacks {line:?}:\n{sdp}");
    }
    wait_for_file(&merged_sdp, "m=audio");

    let (mut path_a, a_out) = gst_path_recorder(dir.path(), "path-a", "239.69.21.1", "dupa1");
    let (mut path_b, b_out) = gst_path_recorder(dir.path(), "path-b", "239.69.22.1", "dupb1");
    let merged_out = dir.path().join("merged.raw");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&merged_sdp)
        .args(["-t", "3", "-f", "s32le", "-acodec", "pcm_s32le"])
        .arg(&merged_out);
    let mut merged = Proc::spawn("ffmpeg-merged", &mut cmd, dir.path());
    std::thread::sleep(Duration::from_millis(1200));
    // Path A disappears entirely.
    ip(&["link", "set", "dupa1", "down"]);

    let status = merged.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", merged.stderr());
    path_a.wait_exit(Duration::from_secs(20));
    path_b.wait_exit(Duration::from_secs(20));

    let merged_frames = sequence_run(
        &s32le(&std::fs::read(&merged_out).expect("merged")),
        "merged",
    );
    assert!(
        merged_frames >= 2 * RATE,
        "merged: only {merged_frames} frames\n{}",
        estuary.stderr()
    );
    let b_frames = sequence_run(&s24be(&std::fs::read(&b_out).expect("path b")), "path b");
    let a_frames = sequence_run(&s24be(&std::fs::read(&a_out).expect("path a")), "path a");
    assert!(b_frames >= 3 * RATE, "path b: only {b_frames} frames");
    assert!(
        a_frames >= RATE / 2 && a_frames + RATE < b_frames,
        "path a should have stopped when its link went down: {a_frames} frames vs {b_frames}"
    );
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died\n{}",
        estuary.stderr()
    );
}
