//! Interop with FFmpeg as the independent peer: our 302M and Opus transport streams must be
//! read by `ffmpeg`/`ffprobe` exactly as intended, and we must read FFmpeg's Opus-in-TS.
//! Each test prints a message and passes when `ffmpeg` is not installed.

use std::path::Path;
use std::process::{Command, Output};

use estuary_wire::s302m::{S302mFormat, pack_into_at, packed_len};
use estuary_wire::ts::{TsAudio, TsAudioKind, TsConfig, TsDemuxer, TsMuxer};

const RATE: f64 = 48_000.0;

fn have_tools() -> bool {
    let ok = ["ffmpeg", "ffprobe"].iter().all(|tool| {
        Command::new(tool)
            .arg("-version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !ok {
        println!("skipping: ffmpeg/ffprobe not installed");
    }
    ok
}

fn run(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd).args(args).output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A 997 Hz 24-bit sine, a different amplitude and phase per channel, MSB-aligned.
fn sine_24(channels: usize, frames: usize) -> Vec<i32> {
    let mut s = Vec::with_capacity(channels * frames);
    for n in 0..frames {
        for c in 0..channels {
            let amp = 0.9 / (c as f64 + 1.0);
            let phase = c as f64 * 0.7;
            let x = (2.0 * std::f64::consts::PI * 997.0 * n as f64 / RATE + phase).sin() * amp;
            let v = (x * 8_388_607.0).round() as i32;
            s.push(v << 8);
        }
    }
    s
}

/// Muxes samples as 302M units of `frames_per_unit` frames, PTS starting at `start`.
fn mux_302m(format: S302mFormat, samples: &[i32], frames_per_unit: usize, start: u64) -> Vec<u8> {
    let channels = usize::from(format.channels);
    let mut muxer = TsMuxer::new(TsConfig::new(TsAudio::S302m { format })).expect("config");
    let mut unit = vec![0u8; packed_len(format, frames_per_unit)];
    let mut out = Vec::new();
    for (i, chunk) in samples.chunks(frames_per_unit * channels).enumerate() {
        let frame0 = (i * frames_per_unit) as u64;
        let n = pack_into_at(format, frame0, chunk, &mut unit).expect("pack");
        let pts = start + frame0 * 90_000 / 48_000;
        muxer
            .write_access_unit(pts, &unit[..n], &mut out)
            .expect("mux");
    }
    out
}

fn decode_s32(path: &Path) -> Vec<i32> {
    let out = run(
        "ffmpeg",
        &["-v", "error", "-i", path_str(path), "-f", "s32le", "-"],
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn probe_stream(path: &Path) -> String {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels",
            "-of",
            "default=nw=1",
            path_str(path),
        ],
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_302m_bit_exact(channels: u8, bits: u8) {
    let format = S302mFormat::new(channels, bits).expect("format");
    let frames = 48_000; // 1 s
    let input = sine_24(usize::from(channels), frames);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.ts");
    std::fs::write(&path, mux_302m(format, &input, 960, 126_000)).expect("write");

    let decoded = decode_s32(&path);
    let keep = !0u32 << (32 - u32::from(bits));
    let expected: Vec<i32> = input.iter().map(|&s| (s as u32 & keep) as i32).collect();
    // Find where our first samples appear (FFmpeg may pad or trim at the start).
    let ch = usize::from(channels);
    let probe = &expected[..64 * ch];
    let offset = (0..decoded.len().saturating_sub(probe.len()))
        .step_by(ch)
        .find(|&o| &decoded[o..o + probe.len()] == probe)
        .expect("input found in FFmpeg's output");
    let got = &decoded[offset..];
    assert!(
        got.len() >= expected.len(),
        "decoded {} samples after offset {offset}, expected {}",
        got.len(),
        expected.len()
    );
    assert!(
        got[..expected.len()] == expected[..],
        "{channels} ch {bits}-bit decode differs"
    );
    println!(
        "302M {channels}ch/{bits}bit: {} frames bit-exact, leading offset {} frames",
        frames,
        offset / ch
    );
}

#[test]
fn s302m_24bit_stereo_is_bit_exact_in_ffmpeg() {
    if have_tools() {
        check_302m_bit_exact(2, 24);
    }
}

#[test]
fn s302m_16bit_stereo_is_bit_exact_in_ffmpeg() {
    if have_tools() {
        check_302m_bit_exact(2, 16);
    }
}

#[test]
fn s302m_20bit_4ch_is_bit_exact_in_ffmpeg() {
    if have_tools() {
        check_302m_bit_exact(4, 20);
    }
}

#[test]
fn s302m_24bit_8ch_is_bit_exact_in_ffmpeg() {
    if have_tools() {
        check_302m_bit_exact(8, 24);
    }
}

#[test]
fn ffprobe_sees_s302m_with_continuous_pts() {
    if !have_tools() {
        return;
    }
    let format = S302mFormat::new(6, 24).expect("format");
    let input = sine_24(6, 48_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("x.ts");
    std::fs::write(&path, mux_302m(format, &input, 1920, 90_000)).expect("write");

    let info = probe_stream(&path);
    assert!(info.contains("codec_name=s302m"), "{info}");
    assert!(info.contains("sample_rate=48000"), "{info}");
    assert!(info.contains("channels=6"), "{info}");

    // Warnings (e.g. PTS discontinuities, CC errors) would appear at -v warning.
    let out = run(
        "ffprobe",
        &[
            "-v",
            "warning",
            "-select_streams",
            "a:0",
            "-show_entries",
            "packet=pts",
            "-of",
            "csv=p=0",
            path_str(&path),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.trim().is_empty(), "ffprobe warned: {stderr}");
    let pts: Vec<i64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect();
    assert_eq!(pts.len(), 25, "25 units of 40 ms");
    for w in pts.windows(2) {
        assert_eq!(w[1] - w[0], 3600, "PTS step of 40 ms: {pts:?}");
    }
}

/// Decodes to interleaved s16 at 48 kHz.
fn decode_s16(path: &Path) -> Vec<i16> {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path_str(path),
            "-f",
            "s16le",
            "-ar",
            "48000",
            "-",
        ],
    );
    out.stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// Rising zero crossings of channel 0 per second.
fn tone_hz(samples: &[i16], channels: usize) -> f64 {
    let ch0: Vec<i16> = samples.iter().step_by(channels).copied().collect();
    let rising = ch0.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    rising as f64 / (ch0.len() as f64 / RATE)
}

fn opus_round_trip(channels: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let theirs = dir.path().join("theirs.ts");
    let ours = dir.path().join("ours.ts");
    let ac = channels.to_string();
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=48000:duration=3",
            "-ac",
            &ac,
            "-c:a",
            "libopus",
            "-b:a",
            "128k",
            "-f",
            "mpegts",
            path_str(&theirs),
        ],
    );

    let mut demux = TsDemuxer::new();
    let bytes = std::fs::read(&theirs).expect("read");
    let mut units = Vec::new();
    for piece in bytes.chunks(1000) {
        units.extend(demux.push(piece));
    }
    units.extend(demux.flush());
    let stats = demux.stats();
    assert_eq!(stats.continuity_errors, 0);
    assert_eq!(stats.malformed, 0);
    assert!(
        units.len() >= 140,
        "3 s of 20 ms packets, got {}",
        units.len()
    );
    for au in &units {
        assert_eq!(au.stream, TsAudioKind::Opus { channels });
    }
    for w in units.windows(2) {
        let (a, b) = (w[0].pts.expect("pts"), w[1].pts.expect("pts"));
        assert_eq!(b - a, 1800, "20 ms Opus packets");
    }

    let mut muxer = TsMuxer::new(TsConfig::new(TsAudio::Opus { channels })).expect("config");
    let mut out = Vec::new();
    for au in &units {
        muxer
            .write_access_unit(au.pts.expect("pts"), &au.data, &mut out)
            .expect("mux");
    }
    std::fs::write(&ours, &out).expect("write");

    let info = probe_stream(&ours);
    assert!(info.contains("codec_name=opus"), "{info}");
    assert!(info.contains("sample_rate=48000"), "{info}");
    assert!(info.contains(&format!("channels={channels}")), "{info}");

    let ch = usize::from(channels);
    let a = decode_s16(&theirs);
    let b = decode_s16(&ours);
    let (da, db) = (a.len() / ch, b.len() / ch);
    // We write no trim fields; FFmpeg 5.1 decodes both files to the same length.
    assert!(
        da.abs_diff(db) <= 960,
        "durations differ: theirs {da} frames, ours {db}"
    );
    assert!(db.abs_diff(144_000) <= 1920, "ours lasts {db} frames");
    let (fa, fb) = (tone_hz(&a, ch), tone_hz(&b, ch));
    assert!((fb - 1000.0).abs() < 10.0, "our tone {fb} Hz");
    assert!((fa - fb).abs() < 0.5, "tones differ: {fa} vs {fb}");
    // Same packets into the same decoder: the PCM should be identical.
    assert!(a == b, "decoded PCM differs between FFmpeg's file and ours");
    println!(
        "Opus {channels}ch: {} units, theirs {da} frames {fa:.1} Hz, ours {db} frames {fb:.1} Hz",
        units.len()
    );
}

#[test]
fn opus_from_ffmpeg_demuxes_and_remuxes_stereo() {
    if have_tools() {
        opus_round_trip(2);
    }
}

#[test]
fn opus_from_ffmpeg_demuxes_and_remuxes_mono() {
    if have_tools() {
        opus_round_trip(1);
    }
}

fn ffmpeg_302m_to_us(channels: u8, bits: u8) {
    let dir = tempfile::tempdir().expect("tempdir");
    let raw = dir.path().join("in.raw");
    let ts = dir.path().join("theirs.ts");
    let ch = usize::from(channels);
    let keep = !0u32 << (32 - u32::from(bits));
    let input: Vec<i32> = sine_24(ch, 48_000)
        .iter()
        .map(|&s| (s as u32 & keep) as i32)
        .collect();
    // 16-bit input as s16 so FFmpeg's encoder picks 16 bits; s32 input gives 24 bits.
    let (sample_fmt, bytes): (&str, Vec<u8>) = if bits == 16 {
        let b = input.iter().flat_map(|s| ((s >> 16) as i16).to_le_bytes());
        ("s16le", b.collect())
    } else {
        (
            "s32le",
            input.iter().flat_map(|s| s.to_le_bytes()).collect(),
        )
    };
    let ac = channels.to_string();
    std::fs::write(&raw, bytes).expect("write");
    run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-f",
            sample_fmt,
            "-ar",
            "48000",
            "-ac",
            &ac,
            "-i",
            path_str(&raw),
            "-c:a",
            "s302m",
            "-strict",
            "-2",
            "-f",
            "mpegts",
            path_str(&ts),
        ],
    );
    let mut demux = TsDemuxer::new();
    let mut units = demux.push(&std::fs::read(&ts).expect("read"));
    units.extend(demux.flush());
    assert_eq!(demux.stats().malformed, 0);
    assert_eq!(demux.stats().continuity_errors, 0);
    let mut samples = Vec::new();
    let mut repacked = Vec::new();
    for au in &units {
        assert_eq!(au.stream, TsAudioKind::S302m);
        let first = samples.len();
        let format = estuary_wire::s302m::unpack_into(&au.data, &mut samples).expect("unpack");
        assert_eq!(format, S302mFormat::new(channels, bits).expect("format"));
        // Golden bytes: our packer reproduces FFmpeg's unit byte for byte (V, U, C, F too).
        repacked.resize(au.data.len(), 0);
        let frame_index = (first / ch) as u64;
        pack_into_at(format, frame_index, &samples[first..], &mut repacked).expect("pack");
        if let Some(i) = (0..au.data.len()).find(|&i| repacked[i] != au.data[i]) {
            let r = i.saturating_sub(4)..(i + 12).min(au.data.len());
            panic!(
                "frame {frame_index}, byte {i}: ours {:02x?} theirs {:02x?}",
                &repacked[r.clone()],
                &au.data[r]
            );
        }
    }
    assert!(samples.len() >= input.len(), "{} samples", samples.len());
    assert!(samples[..input.len()] == input[..], "FFmpeg's 302M differs");
    println!(
        "FFmpeg 302M {channels}ch/{bits}bit: {} units, {} samples bit-exact, bytes identical",
        units.len(),
        input.len()
    );
}

#[test]
fn ffmpeg_s302m_encoder_output_matches_ours_stereo_24() {
    if have_tools() {
        ffmpeg_302m_to_us(2, 24);
    }
}

#[test]
fn ffmpeg_s302m_encoder_output_matches_ours_8ch_24() {
    if have_tools() {
        ffmpeg_302m_to_us(8, 24);
    }
}

#[test]
fn ffmpeg_s302m_encoder_output_matches_ours_stereo_16() {
    if have_tools() {
        ffmpeg_302m_to_us(2, 16);
    }
}
