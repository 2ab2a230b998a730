//! Reads the soak's recordings back: every frame at `TimeReference + i` must be the frame of
//! the sequence sent there, or silence inside a gap the sidecar lists; a sidecar gap must be
//! silent. Files are streamed, so an hour of audio needs no more memory than a second.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use estuary_wire::wav;

use super::sequence::{Faults, Frame, GapTracker, classify};

/// What the recordings hold, against the sequence.
#[derive(Debug)]
pub struct FilesCheck {
    pub files: Vec<PathBuf>,
    /// Frames of the sequence found exact.
    pub exact: u64,
    /// The frames the files cover (sequence indices), over all files.
    pub covered: Option<Range<u64>>,
    /// Packets silent in the files (sorted).
    pub gap_packets: Vec<u64>,
    /// Packets the sidecars list as gaps (sorted), and their frames by cause.
    pub sidecar_packets: Vec<u64>,
    pub sidecar_lost_frames: u64,
    pub sidecar_late_frames: u64,
    pub sidecar_dropped_frames: u64,
    /// Frames the recorder dropped (merged ranges): silent, counted, not judged as packets.
    pub dropped: Vec<Range<u64>>,
    pub faults: Faults,
}

/// Checks every `*.wav` in `dir` (one file per take; `sources` are the sender's channels the
/// recorder's files hold). `first_timestamp` is the RTP timestamp of frame 0; frames from
/// `sent_frames` on were never sent and are not judged.
pub fn check_dir(
    dir: &Path,
    sources: &[usize],
    fpp: u64,
    first_timestamp: u64,
    sent_frames: u64,
) -> anyhow::Result<FilesCheck> {
    let mut files = Vec::new();
    let mut sidecars = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if name.ends_with(".wav") {
            files.push(path);
        } else if name.ends_with("gaps.json") {
            sidecars.push(path);
        }
    }
    files.sort();
    let mut out = FilesCheck {
        files: files.clone(),
        exact: 0,
        covered: None,
        gap_packets: Vec::new(),
        sidecar_packets: Vec::new(),
        sidecar_lost_frames: 0,
        sidecar_late_frames: 0,
        sidecar_dropped_frames: 0,
        dropped: Vec::new(),
        faults: Faults::default(),
    };
    let mut sidecar_frames: Vec<Range<u64>> = Vec::new();
    let mut dropped_frames: Vec<Range<u64>> = Vec::new();
    for path in &sidecars {
        let text = std::fs::read_to_string(path)?;
        let json: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        for gap in json["gaps"].as_array().into_iter().flatten() {
            let (Some(position), Some(frames)) = (gap["position"].as_u64(), gap["frames"].as_u64())
            else {
                out.faults
                    .add(|| format!("{}: a gap without position/frames", path.display()));
                continue;
            };
            let start = position.saturating_sub(first_timestamp);
            let end = (start + frames).min(sent_frames);
            if start >= end {
                continue; // the silence after the sender stopped
            }
            match gap["cause"].as_str() {
                Some("lost") => out.sidecar_lost_frames += end - start,
                Some("late") => out.sidecar_late_frames += end - start,
                _ => {
                    out.sidecar_dropped_frames += end - start;
                    dropped_frames.push(start..end);
                }
            }
            sidecar_frames.push(start..end);
        }
    }
    // A recorder that could not keep up writes silence of what it dropped (cause `dropped`):
    // counted, but not whole packets, so kept apart from the network's gaps.
    let sidecar_frames = merge(sidecar_frames);
    let dropped_frames = merge(dropped_frames);
    let mut sidecar = GapTracker::new(fpp);
    for r in &sidecar_frames {
        for n in r.clone().filter(|&n| !in_ranges(&dropped_frames, n)) {
            sidecar.silent(n);
        }
    }
    sidecar.close();
    out.sidecar_packets = sidecar.packets;
    out.dropped = dropped_frames.clone();
    out.sidecar_packets.dedup();
    for f in sidecar.faults.first {
        out.faults.add(|| format!("sidecar: {f}"));
    }

    let mut gaps = GapTracker::new(fpp);
    for path in &files {
        check_file(
            path,
            sources,
            first_timestamp,
            sent_frames,
            (&sidecar_frames, &dropped_frames),
            &mut gaps,
            &mut out,
        )
        .with_context(|| format!("{}", path.display()))?;
    }
    gaps.close();
    out.gap_packets = gaps.packets;
    out.gap_packets.sort_unstable();
    out.gap_packets.dedup();
    for f in gaps.faults.first {
        out.faults.add(|| f);
    }
    Ok(out)
}

/// Sorted, overlapping or touching ranges joined.
fn merge(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Whether `n` is in one of `ranges` (merged, sorted).
pub fn in_ranges(ranges: &[Range<u64>], n: u64) -> bool {
    let i = ranges.partition_point(|r| r.start <= n);
    i > 0 && ranges[i - 1].contains(&n)
}

fn check_file(
    path: &Path,
    sources: &[usize],
    first_timestamp: u64,
    sent_frames: u64,
    (sidecar, dropped): (&[Range<u64>], &[Range<u64>]),
    gaps: &mut GapTracker,
    out: &mut FilesCheck,
) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut head = vec![0u8; 1 << 16];
    let got = file.read(&mut head)?;
    let info = wav::parse(&head[..got]).map_err(|e| anyhow::anyhow!("{e}"))?;
    anyhow::ensure!(
        usize::from(info.spec.channels) == sources.len(),
        "{} channels, expected {}",
        info.spec.channels,
        sources.len()
    );
    let time_reference = info.bext.as_ref().context("no bext chunk")?.time_reference;
    let first = time_reference
        .checked_sub(first_timestamp)
        .context("TimeReference before the first packet")?;
    let bytes_per_frame = info.spec.bytes_per_frame();
    let frames = info.data_size / bytes_per_frame;
    file.seek(SeekFrom::Start(info.data_offset))?;
    let mut buf = vec![0u8; 4_800 * bytes_per_frame as usize];
    let mut n = first;
    let end = first + frames;
    while n < end {
        let chunk = ((end - n) as usize).min(4_800);
        let bytes = &mut buf[..chunk * bytes_per_frame as usize];
        file.read_exact(bytes)?;
        let samples = wav::unpack(bytes, info.spec.bits);
        for frame in samples.chunks_exact(sources.len()) {
            if n < sent_frames {
                match classify(n, frame, sources) {
                    Frame::Exact => {
                        out.exact += 1;
                        if in_ranges(sidecar, n) {
                            out.faults
                                .add(|| format!("frame {n} is audio inside a gap of the sidecar"));
                        }
                    }
                    Frame::Silent if in_ranges(dropped, n) => {}
                    Frame::Silent => {
                        gaps.silent(n);
                        if !in_ranges(sidecar, n) {
                            out.faults.add(|| {
                                format!("frame {n} is silent but in no gap of the sidecar")
                            });
                        }
                    }
                    Frame::Wrong => out
                        .faults
                        .add(|| format!("{}: frame {n} differs: {frame:08x?}", path.display())),
                }
            }
            n += 1;
        }
    }
    let upto = end.min(sent_frames);
    out.covered = Some(match out.covered.take() {
        Some(r) => r.start.min(first)..r.end.max(upto),
        None => first..upto,
    });
    Ok(())
}
