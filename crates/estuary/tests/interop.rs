//! AES67 in → SRT out, end to end, against independent implementations:
//! GStreamer (`rtpL24pay`) and FFmpeg (`-f rtp`) send, FFmpeg and srt-live-transmit receive,
//! and every check decodes what the peer got: bit-exact samples for PCM (SMPTE 302M), tone
//! frequency and level for Opus. Each test runs in its own network namespace.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const SECOND: usize = 48_000;

fn input_l24(name: &str, address: &str) -> String {
    format!(
        "[[inputs]]\nname = \"{name}\"\nkind = \"aes67\"\naddress = \"{address}\"\nformat = \"L24\"\n\
         channels = 2\npayload_type = 98\ninterface = \"lo\"\nlatency = \"40ms\"\n\n"
    )
}

fn srt_listener(input: &str, port: u16, codec: &str) -> String {
    format!(
        "[[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"{input}\"\nmode = \"listener\"\n\
         address = \"127.0.0.1:{port}\"\ncodec = \"{codec}\"\n"
    )
}

/// Asserts that a long run of decoded stereo samples appears bit-exactly in what was sent.
fn assert_bit_exact(decoded: &[i32], sent: &[i32], seconds: usize) {
    let start = first_active(decoded, 1 << 12).expect("decoded audio is silent") / 2 * 2;
    let len = (seconds * SECOND * 2).min(decoded.len() - start);
    assert!(
        len >= SECOND * 2,
        "only {} decoded frames after the start of the tone",
        len / 2
    );
    let run = &decoded[start..start + len];
    if find_exact(sent, run).is_some() {
        return;
    }
    // A packet a loaded machine delivered past its playout time is played as silence and
    // counted: then each stretch between such silences must be exact, and counted silence
    // there must be.
    let stretches = between_silences(run);
    let concealed = api_json("http://127.0.0.1:8480", "/api/status")["inputs"][0]["counters"]
        ["frames_concealed"]
        .as_u64()
        .unwrap_or(0);
    assert!(
        stretches.len() > 1 && concealed > 0,
        "{} decoded frames are not a bit-exact copy of any run of the {} sent frames \
         (first decoded: {:?}, first sent: {:?}; {} stretches between silences, {concealed} \
         frames concealed)",
        len / 2,
        sent.len() / 2,
        &run[..8],
        &sent[..8.min(sent.len())],
        stretches.len()
    );
    for stretch in stretches.iter().filter(|s| s.len() >= 2 * 480) {
        assert!(
            find_exact(sent, stretch).is_some(),
            "a stretch of {} decoded frames between concealed silences is not a bit-exact \
             copy of what was sent",
            stretch.len() / 2
        );
    }
}

/// The parts of interleaved stereo `samples` between runs of at least a packet (48 frames)
/// of all-zero frames, which a tone at −6 dBFS never has but concealment does.
fn between_silences(samples: &[i32]) -> Vec<&[i32]> {
    const PACKET: usize = 48;
    let frames = samples.len() / 2;
    let silent = |f: usize| samples[2 * f] == 0 && samples[2 * f + 1] == 0;
    let mut out = Vec::new();
    let (mut begin, mut f) = (0, 0);
    while f < frames {
        let run = (f..frames).take_while(|&k| silent(k)).count();
        if run >= PACKET {
            if f > begin {
                out.push(&samples[2 * begin..2 * f]);
            }
            begin = f + run;
            f += run;
        } else {
            f += run.max(1);
        }
    }
    if frames > begin {
        out.push(&samples[2 * begin..2 * frames]);
    }
    out
}

#[test]
fn gstreamer_l24_multicast_to_srt_pcm_is_bit_exact() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = input_l24("gst", "239.69.1.1:5004") + &srt_listener("gst", 9000, "pcm");
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));

    let out = dir.path().join("out.raw");
    let sent = dir.path().join("sent.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &out);
    std::thread::sleep(Duration::from_millis(300));
    let _sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.1", 0.5, 6), &sent);
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    assert_bit_exact(&decoded, &sent, 2);
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died"
    );
}

#[test]
fn gstreamer_l24_to_srt_opus_keeps_frequency_and_level() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = input_l24("gst", "239.69.1.2:5004") + &srt_listener("gst", 9000, "opus");
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));

    let out = dir.path().join("out.raw");
    let sent_path = dir.path().join("sent.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &out);
    std::thread::sleep(Duration::from_millis(300));
    let _sender = gst_l24_sender(
        dir.path(),
        &GstTone::stereo("239.69.1.2", 0.25, 6),
        &sent_path,
    );
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let sent = s24be(&std::fs::read(&sent_path).expect("sent"));
    let left = channel(&decoded, 2, 0);
    let start = first_active(&left, 1 << 20).expect("silent") + SECOND / 2;
    assert!(left.len() >= start + SECOND, "too little audio decoded");
    let window = to_f64(&left[start..start + SECOND]);
    let sent_left = to_f64(&channel(&sent, 2, 0)[SECOND..2 * SECOND]);

    let f = frequency(&window, 48_000.0);
    assert!(
        (f - 997.0).abs() < 1.0,
        "decoded tone at {f:.2} Hz, sent 997 Hz"
    );
    let (got, want) = (rms_dbfs(&window), rms_dbfs(&sent_left));
    assert!(
        (got - want).abs() < 0.5,
        "decoded level {got:.2} dBFS, sent {want:.2} dBFS"
    );
}

#[test]
fn ffmpeg_rtp_l16_sender_with_its_own_sdp_to_srt_pcm_is_bit_exact() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let sdp = dir.path().join("ffmpeg.sdp");
    let sent = dir.path().join("sent.raw");
    // FFmpeg sends first: Estuary reads the SDP FFmpeg wrote, as a user would.
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000:duration=8",
        ])
        .args(["-ac", "2", "-c:a", "pcm_s16be", "-payload_type", "97"])
        .args(["-f", "rtp", "-sdp_file"])
        .arg(&sdp)
        .arg("rtp://239.69.1.3:5006?ttl=1&pkt_size=204")
        .args(["-ac", "2", "-c:a", "pcm_s16be", "-f", "s16be"])
        .arg(&sent);
    let _sender = Proc::spawn("ffmpeg-sender", &mut cmd, dir.path());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sdp.exists() || std::fs::read_to_string(&sdp).map_or(true, |s| !s.contains("m=audio")) {
        assert!(std::time::Instant::now() < deadline, "ffmpeg wrote no SDP");
        std::thread::sleep(Duration::from_millis(50));
    }
    let config = format!(
        "[[inputs]]\nname = \"ff\"\nkind = \"aes67\"\nsdp_file = \"{}\"\ninterface = \"lo\"\nlatency = \"20ms\"\n\n{}",
        sdp.display(),
        srt_listener("ff", 9000, "pcm")
    );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &out);
    let status = decoder.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());

    let decoded = s32le(&std::fs::read(&out).expect("decoded"));
    let sent = s16be(&std::fs::read(&sent).expect("sent"));
    assert_bit_exact(&decoded, &sent, 2);
}

/// Estuary as caller to srt-live-transmit listening with a passphrase; what srt-live-transmit
/// writes is decoded by FFmpeg.
#[test]
fn srt_caller_to_srt_live_transmit_listener_with_passphrase() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let ts = dir.path().join("received.ts");
    let passphrase = "estuary-interop-secret";
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec srt-live-transmit -q 'srt://:9100?mode=listener&passphrase={passphrase}&pbkeylen=32' file://con > {}",
        ts.display()
    ));
    let mut slt = Proc::spawn("srt-live-transmit", &mut cmd, dir.path());
    let config = input_l24("gst", "239.69.1.4:5004")
        + &format!(
            "[[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"gst\"\nmode = \"caller\"\n\
             address = \"127.0.0.1:9100\"\npassphrase = \"{passphrase}\"\nkey_length = 32\ncodec = \"pcm\"\n"
        );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    let sent = dir.path().join("sent.raw");
    let mut sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.4", 0.5, 3), &sent);
    sender.wait_exit(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    slt.interrupt(Duration::from_secs(5));

    let decoded = decode_ts_file(&ts);
    let sent = s24be(&std::fs::read(&sent).expect("sent"));
    assert_bit_exact(&decoded, &sent, 1);
}

/// srt-live-transmit calls Estuary's listener with the right passphrase.
#[test]
fn srt_listener_serves_srt_live_transmit_caller_with_passphrase() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let passphrase = "another-interop-secret";
    let config = input_l24("gst", "239.69.1.5:5004")
        + &format!(
            "[[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"gst\"\nmode = \"listener\"\n\
             address = \"127.0.0.1:9101\"\npassphrase = \"{passphrase}\"\ncodec = \"opus\"\n"
        );
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));
    let ts = dir.path().join("received.ts");
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "exec srt-live-transmit -q 'srt://127.0.0.1:9101?mode=caller&passphrase={passphrase}' file://con > {}",
        ts.display()
    ));
    let mut slt = Proc::spawn("srt-live-transmit", &mut cmd, dir.path());
    let sent = dir.path().join("sent.raw");
    // Six seconds of Opus is well over the 64 KiB srt-live-transmit buffers on stdout.
    let mut sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.5", 0.25, 6), &sent);
    sender.wait_exit(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    slt.interrupt(Duration::from_secs(5));

    let left = channel(&decode_ts_file(&ts), 2, 0);
    let start = first_active(&left, 1 << 20).expect("silent") + SECOND / 4;
    assert!(
        left.len() >= start + SECOND,
        "too little audio: {} frames",
        left.len()
    );
    let f = frequency(&to_f64(&left[start..start + SECOND]), 48_000.0);
    assert!((f - 997.0).abs() < 1.0, "decoded {f:.2} Hz");
}

#[test]
fn wrong_passphrase_is_reported_clearly_and_does_not_hang() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("exec srt-live-transmit -q 'srt://:9102?mode=listener&passphrase=the-right-secret' file://con > /dev/null");
    let _slt = Proc::spawn("srt-live-transmit", &mut cmd, dir.path());
    let config = input_l24("gst", "239.69.1.6:5004")
        + "[[outputs]]\nname = \"srt\"\nkind = \"srt\"\ninput = \"gst\"\nmode = \"caller\"\n\
           address = \"127.0.0.1:9102\"\npassphrase = \"a-wrong-secret\"\ncodec = \"opus\"\n";
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("passphrase", Duration::from_secs(15));
    // Still running, and stops promptly on SIGTERM.
    assert!(estuary.child.try_wait().expect("alive").is_none());
    let status = estuary.terminate(Duration::from_secs(5));
    assert!(status.success(), "exit after SIGTERM: {status}");
}

/// The SRT peer goes away and comes back; the AES67 sender stops and restarts with a new
/// SSRC; garbage arrives in between. Audio resumes each time and every cause is logged once.
#[test]
fn survives_peer_restart_sender_restart_and_garbage() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = input_l24("gst", "239.69.1.7:5004") + &srt_listener("gst", 9000, "pcm");
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));

    // First sender and first listener session.
    let sent1 = dir.path().join("sent1.raw");
    let out1 = dir.path().join("out1.raw");
    let mut sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.7", 0.5, 4), &sent1);
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 2, &out1);
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        decoder.stderr()
    );
    sender.wait_exit(Duration::from_secs(20));

    // Garbage, truncated RTP and a wrong payload type, while no sender is on air.
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
    let dest = "239.69.1.7:5004";
    for i in 0..50u8 {
        socket.send_to(&[i; 7], dest).expect("garbage");
        socket.send_to(&[0x80, 98, 0, i], dest).expect("truncated");
        let mut wrong_pt = vec![0x80, 11, 0, i, 0, 0, 0, i, 1, 2, 3, 4];
        wrong_pt.extend_from_slice(&[0; 288]);
        socket.send_to(&wrong_pt, dest).expect("wrong pt");
    }

    // A new sender (new SSRC, new timestamps) and a new listener session.
    let sent2 = dir.path().join("sent2.raw");
    let out2 = dir.path().join("out2.raw");
    let _sender = gst_l24_sender(dir.path(), &GstTone::stereo("239.69.1.7", 0.5, 5), &sent2);
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &out2);
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        decoder.stderr()
    );

    let decoded1 = s32le(&std::fs::read(&out1).expect("out1"));
    let decoded2 = s32le(&std::fs::read(&out2).expect("out2"));
    assert_bit_exact(&decoded1, &s24be(&std::fs::read(&sent1).expect("sent1")), 1);
    // The second session may start in the silence between senders: look past it.
    assert_bit_exact(&decoded2, &s24be(&std::fs::read(&sent2).expect("sent2")), 1);

    let log = estuary.stderr();
    for cause in ["malformed packets", "unexpected payload type"] {
        assert_eq!(
            log.matches(cause).count(),
            1,
            "{cause:?} should be logged exactly once:\n{log}"
        );
    }
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died"
    );
    assert!(estuary.terminate(Duration::from_secs(5)).success());
}

#[test]
fn demo_serves_its_tone_over_srt() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(ESTUARY);
    cmd.args([
        "demo",
        "--seconds",
        "12",
        "--srt-port",
        "9300",
        "--rtp-port",
        "5310",
    ]);
    let mut demo = Proc::spawn("demo", &mut cmd, dir.path());
    demo.wait_for_stderr("receiving", Duration::from_secs(10));
    let out = dir.path().join("out.raw");
    let mut decoder = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9300", 3, &out);
    assert!(
        decoder.wait_exit(Duration::from_secs(20)).success(),
        "{}",
        decoder.stderr()
    );
    let left = channel(&s32le(&std::fs::read(&out).expect("decoded")), 2, 0);
    let start = first_active(&left, 1 << 20).expect("silent") + SECOND / 2;
    assert!(left.len() >= start + SECOND, "too little audio");
    let window = to_f64(&left[start..start + SECOND]);
    let f = frequency(&window, 48_000.0);
    assert!((f - 1000.0).abs() < 1.0, "demo tone at {f:.2} Hz");
    // -18 dBFS sine (AES17: re a full-scale sine) is -21.01 dB RMS re full-scale DC.
    let level = rms_dbfs(&window);
    assert!(
        (level - (-21.01)).abs() < 0.5,
        "demo level {level:.2} dB RMS"
    );
    assert!(demo.terminate(Duration::from_secs(5)).success());
}

/// A 96 kHz stream (as ST 2110-30 and RAVENNA devices send) on an SRT output, whose codecs
/// run at 48 kHz: the output converts the rate, and FFmpeg decodes the tone at its frequency
/// and level, on both codecs.
#[test]
fn gstreamer_l24_at_96khz_to_srt_is_converted_to_48khz() {
    isolate();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = "[[inputs]]\nname = \"hd\"\nkind = \"aes67\"\naddress = \"239.69.1.3:5004\"\n\
                 format = \"L24\"\nchannels = 2\nsample_rate = 96000\npayload_type = 98\n\
                 interface = \"lo\"\nlatency = \"10ms\"\n\n";
    let mut opus = srt_listener("hd", 9001, "opus");
    opus = opus.replace("name = \"srt\"", "name = \"srt-opus\"");
    let config = input.to_string() + &srt_listener("hd", 9000, "pcm") + "\n" + &opus;
    let mut estuary = start_estuary(dir.path(), &config);
    estuary.wait_for_stderr("receiving", Duration::from_secs(10));

    let (pcm_out, opus_out) = (dir.path().join("pcm.raw"), dir.path().join("opus.raw"));
    let mut pcm = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9000", 3, &pcm_out);
    let mut opus = ffmpeg_srt_decoder(dir.path(), "srt://127.0.0.1:9001", 3, &opus_out);
    std::thread::sleep(Duration::from_millis(300));
    // 0.5 of full scale, sine: −9.03 dBFS RMS.
    let pipeline = "audiotestsrc wave=sine freq=997 volume=0.5 samplesperbuffer=96 num-buffers=6000 is-live=true \
         ! audio/x-raw,format=S32LE,rate=96000,channels=2 \
         ! audioconvert dithering=none noise-shaping=none ! audio/x-raw,format=S24BE,rate=96000,channels=2 \
         ! rtpL24pay pt=98 mtu=1500 min-ptime=1000000 max-ptime=1000000 \
         ! udpsink host=239.69.1.3 port=5004 auto-multicast=true multicast-iface=lo ttl-mc=1 sync=false async=false";
    let _sender = Proc::spawn(
        "gst-96k",
        Command::new("sh")
            .arg("-c")
            .arg(format!("exec gst-launch-1.0 -q {pipeline}")),
        dir.path(),
    );
    for (decoder, out) in [(&mut pcm, &pcm_out), (&mut opus, &opus_out)] {
        let status = decoder.wait_exit(Duration::from_secs(30));
        assert!(status.success(), "ffmpeg failed:\n{}", decoder.stderr());
        let decoded = s32le(&std::fs::read(out).expect("decoded"));
        for ch in 0..2 {
            let samples = channel(&decoded, 2, ch);
            let start = first_active(&samples, 1 << 20).expect("silent") + SECOND / 2;
            assert!(samples.len() >= start + SECOND, "too little audio decoded");
            let window = to_f64(&samples[start..start + SECOND]);
            let f = frequency(&window, 48_000.0);
            assert!(
                (f - 997.0).abs() < 1.0,
                "{}: tone at {f:.2} Hz, sent 997 Hz",
                out.display()
            );
            let level = rms_dbfs(&window);
            assert!(
                (level - (-9.03)).abs() < 0.3,
                "{}: level {level:.2} dBFS, sent −9.03 dBFS",
                out.display()
            );
        }
    }
    assert!(
        estuary.child.try_wait().expect("alive").is_none(),
        "estuary died"
    );
}
