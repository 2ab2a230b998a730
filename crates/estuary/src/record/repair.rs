//! `estuary repair FILE…`: makes the sizes in a WAV/BWF/RF64 header match the file, after a
//! recording was cut by kill -9 or a power loss.

use std::fs::OpenOptions;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;

use anyhow::Context as _;

use estuary_wire::wav;

/// Headers longer than this (huge iXML) are not expected from any recorder.
const MAX_HEADER: u64 = 1 << 20;

#[derive(Debug, clap::Args)]
pub struct RepairArgs {
    /// WAV, BWF or RF64 files to fix in place.
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
    let len = file.metadata()?.len();
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
    if plan.is_noop(len) {
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
        if plan.truncate_to < len {
            format!(", {} trailing bytes cut", len - plan.truncate_to)
        } else {
            String::new()
        }
    ))
}
