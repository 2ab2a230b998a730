//! AES67 transmit, end to end: GStreamer sends L24 into Estuary, Estuary routes it to an
//! `[[outputs]] kind = "aes67"`, and independent receivers (GStreamer's `rtpL24depay`, FFmpeg
//! reading the SDP Estuary wrote) must get exactly the samples GStreamer sent. Each test runs
//! in its own network namespace.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const SECOND: usize = 48_000;

fn config(output: &str) -> String {
    format!(
        "[discovery]\nsap = false\nravenna = false\n\n\
         [[inputs]]\nname = \"gst\"\nkind = \"aes67\"\naddress = \"239.69.1.1:5004\"\n\
         format = \"L24\"\nchannels = 2\npayload_type = 98\ninterface = \"lo\"\n\
         latency = \"40ms\"\nmeters = false\n\n\
         [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gst\"\ninterface = \"lo\"\n\
         ttl = 1\n{output}"
    )
}

/// Asserts that at least `seconds` of received stereo audio are a bit-exact copy of `sent`.
/// A loaded machine may stall the transmitter past its few milliseconds of slack: then the
/// run may break into stretches (audio skipped or silence sent), but only when the daemon
/// counted underruns or dropped frames, and every stretch between breaks must itself be an
/// exact copy of what was sent.
fn assert_exact_run(received: &[i32], sent: &[i32], seconds: usize, estuary: &Proc) {
    let start = first_active(received, 1 << 12).expect("received audio is silent") / 2 * 2;
    let len = (seconds * SECOND * 2).min(received.len() - start);
    assert!(
        len >= seconds * SECOND * 2,
        "only {} received frames after the start of the tone",
        len / 2
    );
    let run = &received[start..start + len];
    let breaks = exact_stretches(run, sent).unwrap_or_else(|e| panic!("{e}\n{}", estuary.stderr()));
    let counters = &api_json(API, "/api/status")["outputs"][0]["counters"];
    assert_breaks_counted(breaks, counters, estuary);
}

const API: &str = "http://127.0.0.1:8480";
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

#[test]
fn gstreamer_receives_the_exact_samples_estuary_transmits() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut estuary = start_estuary(
        dir.path(),
        &config("address = \"239.69.2.1:5006\"\nsap = false\n"),
    );
    estuary.wait_for_stderr("transmitting AES67", Duration::from_secs(10));

    let received = dir.path().join("received.raw");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec timeout -s INT 5 gst-launch-1.0 -q -e udpsrc address=239.69.2.1 port=5006 \
         multicast-iface=lo caps=\"application/x-rtp,media=audio,clock-rate=48000,\
         encoding-name=L24,channels=2,payload=98\" ! rtpjitterbuffer latency=20 \
         ! rtpL24depay ! filesink location={}",
        received.display()
    ));
    let mut receiver = Proc::spawn("gst-receiver", &mut cmd, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let sent = dir.path().join("sent.raw");
    let _sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.1", 0.5, 6), &sent);
    receiver.wait_exit(Duration::from_secs(20));

    let received = s24be(&std::fs::read(&received).expect("received"));
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    assert_exact_run(&received, &sent, 3, &estuary);
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died"
    );
}

/// FFmpeg receives from nothing but the SDP Estuary wrote (L16, 125 µs packets, a channel
/// map): the samples are GStreamer's, truncated to 16 bits.
#[test]
fn ffmpeg_reads_estuarys_sdp_and_receives_l16_at_125us_exactly() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let sdp = dir.path().join("tx.sdp");
    let mut estuary = start_estuary(
        dir.path(),
        &config(&format!(
            "address = \"239.69.2.2:5006\"\nformat = \"L16\"\nptime = 0.125\n\
             channels = [2, 1]\ndscp = \"EF\"\nsap = false\nsdp_file = \"{}\"\n",
            sdp.display()
        )),
    );
    estuary.wait_for_stderr("transmitting AES67", Duration::from_secs(10));
    let text = wait_for_file(&sdp, "m=audio");
    for line in [
        "a=rtpmap:98 L16/48000/2",
        "a=ptime:0.125",
        "a=mediaclk:direct=0",
        "a=ts-refclk:",
        "c=IN IP4 239.69.2.2/1",
    ] {
        assert!(text.contains(line), "SDP lacks {line:?}:\n{text}");
    }

    let received = dir.path().join("received.raw");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&sdp)
        .args(["-t", "4", "-f", "s16be", "-acodec", "pcm_s16be"])
        .arg(&received);
    let mut receiver = Proc::spawn("ffmpeg-receiver", &mut cmd, dir.path());
    std::thread::sleep(Duration::from_millis(500));
    let sent = dir.path().join("sent.raw");
    let _sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.1", 0.5, 7), &sent);
    let status = receiver.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", receiver.stderr());

    let received = s16be(&std::fs::read(&received).expect("received"));
    let sent: Vec<i32> = s24be(&std::fs::read(&sent).expect("sent"))
        .chunks_exact(2)
        .flat_map(|f| [f[1] & !0xffff, f[0] & !0xffff])
        .collect();
    assert_exact_run(&received, &sent, 2, &estuary);
}

/// A generator input with the counting sequence, 8 channels of L24 in 250 µs packets, to
/// FFmpeg through the SDP: every frame FFmpeg decodes is the next one of the sequence.
#[test]
fn generator_sequence_reaches_ffmpeg_without_a_missing_or_altered_sample() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let sdp = dir.path().join("gen.sdp");
    let mut estuary = start_estuary(
        dir.path(),
        &format!(
            "[api]\nenabled = false\n[discovery]\nsap = false\nravenna = false\n\n\
             [[inputs]]\nname = \"gen\"\nkind = \"generator\"\nsignal = \"sequence\"\n\
             channels = 8\nmeters = false\n\n\
             [[outputs]]\nname = \"tx\"\nkind = \"aes67\"\ninput = \"gen\"\n\
             address = \"239.69.2.3:5006\"\ninterface = \"lo\"\nttl = 1\nptime = 0.25\n\
             sap = false\nsdp_file = \"{}\"\n",
            sdp.display()
        ),
    );
    estuary.wait_for_stderr("transmitting AES67", Duration::from_secs(10));
    let text = wait_for_file(&sdp, "m=audio");
    assert!(text.contains("a=rtpmap:98 L24/48000/8"), "{text}");
    assert!(text.contains("a=ptime:0.25"), "{text}");

    let received = dir.path().join("received.raw");
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-y"])
        .args(["-protocol_whitelist", "file,udp,rtp", "-i"])
        .arg(&sdp)
        .args(["-t", "2", "-f", "s32le", "-acodec", "pcm_s32le"])
        .arg(&received);
    let mut receiver = Proc::spawn("ffmpeg-receiver", &mut cmd, dir.path());
    let status = receiver.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", receiver.stderr());

    let samples = s32le(&std::fs::read(&received).expect("received"));
    assert!(
        samples.len() >= SECOND * 8,
        "only {} samples",
        samples.len()
    );
    let first = (samples[0] as u32 >> 8) as u64 / 64;
    for (i, frame) in samples.chunks_exact(8).enumerate() {
        let want: Vec<i32> = (0..8)
            .map(|ch| estuary_io::tx::sequence_sample(first + i as u64, ch))
            .collect();
        assert_eq!(
            frame,
            &want[..],
            "frame {i} of {} is not the sequence's next\n{}",
            samples.len() / 8,
            estuary.stderr()
        );
    }
}

/// The glitch-tolerant comparison itself: a skip forward and a packet of silence are breaks;
/// audio that was never sent is not.
#[test]
fn exact_stretches_counts_skips_and_silences_and_rejects_foreign_audio() {
    let sent: Vec<i32> = (1..=20_000).collect();
    assert_eq!(exact_stretches(&sent[100..9_000], &sent), Ok(0));
    let mut skipped = sent[100..3_000].to_vec();
    skipped.extend_from_slice(&sent[4_000..9_000]);
    assert_eq!(exact_stretches(&skipped, &sent), Ok(1));
    let mut silenced = sent[100..3_000].to_vec();
    silenced.extend_from_slice(&[0; 96]);
    silenced.extend_from_slice(&sent[3_000..9_000]);
    assert_eq!(exact_stretches(&silenced, &sent), Ok(1));
    let mut foreign = sent[100..3_000].to_vec();
    foreign.extend_from_slice(&[7; 2_000]);
    assert!(exact_stretches(&foreign, &sent).is_err());
}
