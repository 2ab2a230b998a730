//! `estuary repair FILE…`: makes the sizes in a WAV/BWF/RF64 header match the file, after a
//! recording was cut by kill -9 or a power loss; for FLAC, cuts a partial last frame and
//! writes STREAMINFO (length, frame sizes) from the frames found.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use anyhow::Context as _;

use estuary_wire::{flac, wav};

/// Headers longer than this (huge iXML) are not expected from any recorder.
const MAX_HEADER: u64 = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// WAV, BWF, RF64 or FLAC files to fix in place.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only say what would change.
    #[arg(long)]
    dry_run: bool,
}

pub fn run(args: &RepairArgs) -> anyhow::Result<()> {
    let mut failed = 0;
    for path in &args.files {
        match repair_file(path, args.dry_run) {
            Ok(line) => println!("{}: {line}", path.display()),
            Err(e) => {
                eprintln!("{}: {e:#}", path.display());
                failed += 1;
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} file(s) could not be repaired");
    }
    Ok(())
}

/// Repairs one file; says what it did.
pub fn repair_file(path: &std::path::Path, dry_run: bool) -> anyhow::Result<String> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(!dry_run)
        .open(path)
        .context("cannot open")?;
    let size = file.metadata()?.len();
    let mut magic = [0u8; 4];
    if file.read_exact_at(&mut magic, 0).is_ok() && &magic == b"fLaC" {
        return repair_flac(&file, size, dry_run);
    }
    // A WAV recording's space is allocated ahead of its audio (zeros past it) until it is
    // closed: the audio ends where the last data written ends.
    let len = estuary_io::disk_writer::written_end(&file, 0).context("cannot read")?;
    let mut header = Vec::new();
    (&mut file)
        .take(MAX_HEADER)
        .read_to_end(&mut header)
        .context("cannot read")?;
    let plan = wav::repair(&header, len).map_err(|e| anyhow::anyhow!("{e}"))?;
    let info = wav::parse(&header).map_err(|e| anyhow::anyhow!("{e}"))?;
    let seconds = plan.data_size as f64
        / info.spec.bytes_per_frame() as f64
        / f64::from(info.spec.sample_rate);
    if plan.is_noop(len) && len == size {
        return Ok(format!("already consistent ({seconds:.3} s)"));
    }
    if !dry_run {
        for (at, bytes) in &plan.patches {
            file.write_all_at(bytes, *at).context("cannot write")?;
        }
        file.set_len(plan.truncate_to).context("cannot truncate")?;
        file.sync_all().context("cannot sync")?;
    }
    Ok(format!(
        "{} sizes for {} bytes of audio ({seconds:.3} s){}",
        if dry_run { "would fix" } else { "fixed" },
        plan.data_size,
        if plan.truncate_to < size {
            format!(", {} trailing bytes cut", size - plan.truncate_to)
        } else {
            String::new()
        }
    ))
}

/// Reads this much more of a FLAC file at a time while scanning its frames (a frame of 8
/// channels of 24-bit audio is at most about 100 KiB).
const SCAN_CHUNK: usize = 1 << 20;
/// A frame bigger than this is not a frame: the rest of the file is not audio.
const MAX_FRAME: usize = 16 << 20;

fn repair_flac(file: &std::fs::File, len: u64, dry_run: bool) -> anyhow::Result<String> {
    let mut header = vec![0u8; len.min(MAX_HEADER) as usize];
    file.read_exact_at(&mut header, 0).context("cannot read")?;
    let info = flac::parse(&header).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut totals = flac::Totals {
        end: info.audio_start,
        ..flac::Totals::default()
    };
    // Scan the frames a chunk at a time; `base` is the file offset of `buf[0]`.
    let mut buf: Vec<u8> = Vec::new();
    let mut base = info.audio_start;
    let mut read_to = info.audio_start;
    loop {
        let more = (len - read_to).min(SCAN_CHUNK as u64) as usize;
        let start = buf.len();
        buf.resize(start + more, 0);
        file.read_exact_at(&mut buf[start..], read_to)
            .context("cannot read")?;
        read_to += more as u64;
        let at_eof = read_to == len;
        let frames = flac::scan_frames(&buf, at_eof);
        for frame in &frames {
            totals.add(base, frame);
        }
        let used = frames.last().map_or(0, |f| f.offset + f.len);
        buf.drain(..used);
        base += used as u64;
        if at_eof || (frames.is_empty() && buf.len() > MAX_FRAME) {
            break;
        }
    }
    let fixed = totals.apply(&info.stream);
    let seconds = totals.samples as f64 / f64::from(info.stream.sample_rate);
    if fixed == info.stream && totals.end == len {
        return Ok(format!("already consistent ({seconds:.3} s)"));
    }
    if !dry_run {
        file.write_all_at(&fixed.encode(), flac::STREAMINFO_AT)
            .context("cannot write")?;
        file.set_len(totals.end).context("cannot truncate")?;
        file.sync_all().context("cannot sync")?;
    }
    Ok(format!(
        "{} STREAMINFO for {} frames, {} samples ({seconds:.3} s){}",
        if dry_run { "would fix" } else { "fixed" },
        totals.frames,
        totals.samples,
        if totals.end < len {
            format!(", {} trailing bytes cut", len - totals.end)
        } else {
            String::new()
        }
    ))
}
