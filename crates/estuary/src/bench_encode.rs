//! `estuary bench encode`: CPU per stream-second of the network outputs' encoders (MP3,
//! AAC-LC, Opus, FLAC) against the `ffmpeg` command line encoding the same stereo program with
//! the same codec and bitrate, in the same run.
//!
//! Estuary's side is the outputs' own chain (`estuary_io::encode::StreamEncoder`: resampler
//! or sample-format conversion, encoder, muxer) fed 20 ms blocks as an output thread feeds
//! it, timed by the thread's CPU clock. FFmpeg reads the same program from a raw file and
//! writes to /dev/null; its CPU comes from `getrusage(RUSAGE_CHILDREN)`, less that of the
//! same command copying the audio without encoding (start-up and reading the file), so both
//! sides count the encoding alone. Each figure is the median of the rounds.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

use estuary_io::encode::{Codec, EncoderConfig, StreamEncoder};

const RATE: u32 = 48_000;
const BLOCK_FRAMES: usize = 960;

#[derive(Debug, Clone, clap::Args)]
pub struct EncodeArgs {
    /// Seconds of the stereo program encoded per codec and round.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Rounds; medians are reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Bitrate of MP3, AAC and Opus, bit/s.
    #[arg(long, default_value_t = 128_000)]
    bitrate: u32,
}

/// One codec as Estuary configures it and as FFmpeg's command line names it.
struct Case {
    codec: Codec,
    label: &'static str,
    ffmpeg: &'static [&'static str],
}

const CASES: [Case; 4] = [
    Case {
        codec: Codec::Mp3,
        label: "MP3",
        ffmpeg: &["-c:a", "libmp3lame", "-f", "mp3"],
    },
    Case {
        codec: Codec::Aac,
        label: "AAC-LC",
        ffmpeg: &["-c:a", "aac", "-f", "adts"],
    },
    Case {
        codec: Codec::Opus,
        label: "Opus",
        ffmpeg: &["-c:a", "libopus", "-f", "ogg"],
    },
    Case {
        codec: Codec::Flac,
        label: "FLAC 24",
        ffmpeg: &["-c:a", "flac", "-sample_fmt", "s32", "-f", "ogg"],
    },
];

pub fn encode(args: &EncodeArgs) -> anyhow::Result<()> {
    if args.seconds == 0 || args.rounds == 0 {
        bail!("--seconds and --rounds must be at least 1");
    }
    let program = program(args.seconds);
    let dir = tempfile::tempdir().context("temporary directory")?;
    let raw = dir.path().join("program.s32le");
    let bytes: Vec<u8> = program.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(&raw, bytes).context("writing the program for FFmpeg")?;
    let stream_seconds = f64::from(args.seconds);
    println!(
        "stereo 48 kHz 24-bit program, {} s per codec and round, {} rounds, {} kbit/s (FLAC lossless)",
        args.seconds,
        args.rounds,
        args.bitrate / 1000
    );
    println!(
        "\n{:<8} {:>16} {:>16} {:>8} {:>14}",
        "codec", "Estuary ms/s", "FFmpeg ms/s", "ratio", "x real time"
    );
    for case in &CASES {
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..args.rounds {
            ours.push(estuary_cpu(case, args.bitrate, &program)?.as_secs_f64());
            let copy = ffmpeg_cpu(&raw, &["-c:a", "pcm_s32le", "-f", "s32le"], None)?;
            let bitrate = (case.codec != Codec::Flac).then_some(args.bitrate);
            let full = ffmpeg_cpu(&raw, case.ffmpeg, bitrate)?;
            theirs.push(full.saturating_sub(copy).as_secs_f64());
        }
        let (ours, theirs) = (super::median(ours), super::median(theirs));
        println!(
            "{:<8} {:>16.3} {:>16.3} {:>7.2}x {:>14.0}",
            case.label,
            ours * 1e3 / stream_seconds,
            theirs * 1e3 / stream_seconds,
            ours / theirs,
            stream_seconds / ours,
        );
    }
    println!("\nms/s: CPU milliseconds per second of stereo audio; ratio: Estuary / FFmpeg.");
    Ok(())
}

/// A program rather than a pure tone (encoders spend more on noise): two tones a fifth
/// apart, different per channel, over low-level white noise; MSB-aligned 24-bit.
fn program(seconds: u32) -> Vec<i32> {
    let frames = seconds as usize * RATE as usize;
    let mut noise: u32 = 0x1234_5678;
    let mut out = Vec::with_capacity(frames * 2);
    for n in 0..frames {
        let t = n as f64 / f64::from(RATE);
        for (ch, f) in [(0, 440.0), (1, 660.0)] {
            noise ^= noise << 13;
            noise ^= noise >> 17;
            noise ^= noise << 5;
            let white = f64::from(noise) / f64::from(u32::MAX) - 0.5;
            let phase = 2.0 * std::f64::consts::PI * f * t + f64::from(ch);
            let v = 0.3 * phase.sin() + 0.1 * (3.0 * phase).sin() + 0.02 * white;
            out.push(((v * 8_388_607.0) as i32) << 8);
        }
    }
    out
}

fn estuary_cpu(case: &Case, bitrate: u32, program: &[i32]) -> anyhow::Result<Duration> {
    let config = EncoderConfig {
        codec: case.codec,
        bitrate,
        input_rate: RATE,
        output_rate: RATE,
        channels: 2,
        input_bits: 24,
        title: None,
    };
    let mut out = Vec::with_capacity(64 * 1024);
    let start = estuary_io::clock::thread_cpu_time();
    let mut encoder = StreamEncoder::new(config, &mut out).context("encoder")?;
    for block in program.chunks(BLOCK_FRAMES * 2) {
        encoder.push(block, &mut out).context("encoding")?;
        out.clear();
    }
    encoder.finish(&mut out).context("finishing")?;
    Ok(estuary_io::clock::thread_cpu_time().saturating_sub(start))
}

fn ffmpeg_cpu(raw: &Path, codec: &[&str], bitrate: Option<u32>) -> anyhow::Result<Duration> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args([
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-threads",
        "1",
    ])
    .args(["-f", "s32le", "-ar", "48000", "-ac", "2", "-i"])
    .arg(raw)
    .args(codec);
    if let Some(bitrate) = bitrate {
        cmd.args(["-b:a", &bitrate.to_string()]);
    }
    cmd.args(["-y", "/dev/null"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let before = estuary_io::clock::children_cpu_time();
    let status = cmd
        .status()
        .context("running ffmpeg (scripts/deps.sh test)")?;
    if !status.success() {
        bail!("ffmpeg {codec:?} failed: {status}");
    }
    Ok(estuary_io::clock::children_cpu_time().saturating_sub(before))
}
