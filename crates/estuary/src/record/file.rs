//! One open recording file: appends staged in memory and written in large blocks (with
//! `O_DIRECT` where the filesystem allows it, see [`super::direct`]), and the header
//! rewritten in place.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use tracing::warn;

use estuary_io::disk_writer;
use estuary_wire::flac as wire_flac;
use estuary_wire::wav::{self, Header};

use super::direct::{self, ALIGN, Staging};
use super::flac::{Counts, FlacEncoder};

/// Bytes staged before a write: large writes cost less per byte. A mono 24-bit file holds
/// 144 kB a second, so it is written at each header rewrite instead (at most the header
/// interval is lost to kill -9).
const WRITE_BUFFER: usize = 256 * 1024;
/// Room reserved in each file's staging buffer (only what is used becomes resident).
const STAGING: usize = 2 * WRITE_BUFFER;
/// Space allocated ahead of a direct file's audio (29 s of a mono 24-bit track): a write
/// into allocated space completes asynchronously, one that extends the file does not (see
/// [`flush_together`]).
const ALLOCATE_AHEAD: u64 = 4 << 20;

/// What the file holds and how its header is kept up to date.
enum Body {
    Pcm {
        header: Header,
        /// Whether the header on disk is RIFF and may not grow past 4 GiB.
        rf64_allowed: bool,
        /// The header on disk says this many data bytes…
        header_says: u64,
        /// …and marks this many cues.
        cues_said: usize,
    },
    Flac {
        encoder: Box<FlacEncoder>,
        info: wire_flac::StreamInfo,
        /// Frames on disk.
        written: Counts,
        finished: bool,
    },
}

pub struct TrackFile {
    pub path: PathBuf,
    /// Through the page cache: the header, the last partial block at close, fsync, and every
    /// write of a file without `direct`.
    file: File,
    /// The same file opened with `O_DIRECT`: whole aligned blocks of audio.
    direct: Option<File>,
    /// Bytes before the audio.
    audio_start: u64,
    body: Body,
    /// Audio bytes on disk (written with success).
    pub data_bytes: u64,
    /// The file's bytes not yet written (FLAC: whole encoded frames).
    staging: Staging,
    /// The file is this long (zeros past the audio) while it is written: space allocated
    /// ahead, cut back at close. 0: never allocated ahead.
    allocated: u64,
}

impl TrackFile {
    /// Creates `path` with `header` on disk; with `O_DIRECT` if `try_direct` and the
    /// filesystem allows it.
    fn open(
        path: &Path,
        header: &[u8],
        try_direct: bool,
    ) -> std::io::Result<(File, Option<File>, Staging)> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().write(true).create_new(true).open(path)?;
        match Self::start(&file, path, header, try_direct) {
            Ok((direct, staging)) => Ok((file, direct, staging)),
            Err(e) => {
                // A file whose header did not fit (disk full) is not a recording: leave none.
                drop(file);
                let _ = std::fs::remove_file(path);
                Err(e)
            }
        }
    }

    fn start(
        file: &File,
        path: &Path,
        header: &[u8],
        try_direct: bool,
    ) -> std::io::Result<(Option<File>, Staging)> {
        let direct = if try_direct {
            direct::open(path)?
        } else {
            None
        };
        if let Some(d) = &direct {
            // The header's blocks go out direct (padded, then cut back): the page cache never
            // holds a block that a direct write replaces later. It stays staged, so the first
            // direct write of audio carries it (and its rewrites) along.
            let mut staging = Staging::new(0, STAGING);
            let padded = header.len().next_multiple_of(ALIGN);
            staging.vec().extend_from_slice(header);
            staging.resize(padded);
            match d.write_all_at(staging.bytes(), 0) {
                Ok(()) => {
                    staging.resize(header.len());
                    file.set_len(header.len() as u64)?;
                    return Ok((direct, staging));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    warn!(file = %path.display(), "direct writes refused; writing through the page cache");
                }
                Err(e) => return Err(e),
            }
        }
        file.write_all_at(header, 0)?;
        Ok((None, Staging::new(header.len() as u64, STAGING)))
    }

    pub fn create(path: &Path, header: Header, rf64_allowed: bool) -> std::io::Result<Self> {
        let bytes = header.encode(0);
        let (file, direct, staging) = Self::open(path, &bytes, true)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            direct,
            audio_start: bytes.len() as u64,
            body: Body::Pcm {
                header,
                rf64_allowed,
                header_says: 0,
                cues_said: 0,
            },
            data_bytes: 0,
            staging,
            allocated: 0,
        })
    }

    /// A FLAC file of `spec`, with Vorbis comments (`KEY=value`).
    pub fn create_flac(path: &Path, spec: wav::Spec, comments: &[String]) -> std::io::Result<Self> {
        let channels = u8::try_from(spec.channels)
            .ok()
            .filter(|c| (1..=8).contains(c))
            .ok_or_else(|| std::io::Error::other("FLAC holds 1 to 8 channels"))?;
        let encoder = FlacEncoder::new(usize::from(channels), spec.sample_rate, spec.bits)?;
        let info = FlacEncoder::initial_info(channels, spec.sample_rate, spec.bits);
        let bytes = wire_flac::encode_header(&info, "Estuary", comments);
        // FLAC stays in the page cache: its frames are a fraction of the PCM's bytes, and
        // the encoder costs far more than the copy.
        let (file, direct, staging) = Self::open(path, &bytes, false)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            direct,
            audio_start: bytes.len() as u64,
            body: Body::Flac {
                encoder: Box::new(encoder),
                info,
                written: Counts::default(),
                finished: false,
            },
            data_bytes: 0,
            staging,
            allocated: 0,
        })
    }

    /// Whether the audio goes out with `O_DIRECT`.
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Whether `more` bytes still fit (RIFF: 32-bit sizes; FLAC: no limit that matters).
    pub fn fits(&self, more: u64) -> bool {
        let total = self.pending() + more;
        match &self.body {
            Body::Pcm {
                header,
                rf64_allowed,
                ..
            } => *rf64_allowed || !header.needs_rf64(total),
            Body::Flac { .. } => true,
        }
    }

    /// Another descriptor of the file, for an fsync on another thread.
    pub fn clone_fd(&self) -> std::io::Result<File> {
        self.file.try_clone()
    }

    /// Audio bytes appended, on disk or staged.
    pub fn pending(&self) -> u64 {
        (self.staging.base + self.staging.len() as u64).saturating_sub(self.audio_start)
    }

    /// Appends `channels` of each frame of `data` (frames of `stride` samples).
    pub fn append(
        &mut self,
        data: &[i32],
        (stride, channels): (usize, &[usize]),
        bits: u8,
    ) -> std::io::Result<()> {
        match &mut self.body {
            Body::Pcm { .. } => {
                super::pack::pack_tracks(data, stride, &mut [(channels, self.staging.vec())], bits);
            }
            Body::Flac { encoder, .. } => {
                encoder.push(data, (stride, channels), self.staging.vec())?;
            }
        }
        self.flush_if_full()
    }

    /// Writes once [`WRITE_BUFFER`] bytes are staged.
    fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.staging.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is staged (with `O_DIRECT`: the whole blocks; the rest waits for more).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.write_out(false)
    }

    /// Writes what is staged, all of it if `all`. On error the file is cut back to the audio
    /// written before, so it stays valid.
    fn write_out(&mut self, all: bool) -> std::io::Result<()> {
        let len = self.staging.len();
        let n = if self.direct.is_some() && !all {
            len / ALIGN * ALIGN
        } else {
            len
        };
        if n == 0 {
            return Ok(());
        }
        let before = self.data_bytes;
        let result = self.put(n);
        if let Body::Flac {
            encoder, written, ..
        } = &mut self.body
        {
            if result.is_ok() {
                written.merge(&encoder.unwritten);
            }
            encoder.unwritten = Counts::default();
        }
        if let Err(e) = result {
            let keep = before - before % self.frame_bytes();
            let end = self.audio_start + keep;
            let _ = self.file.set_len(end);
            self.allocated = 0;
            self.staging.reset(end);
            self.direct = None;
            self.data_bytes = keep;
            return Err(e);
        }
        self.data_bytes = self.staging.base.saturating_sub(self.audio_start);
        Ok(())
    }

    /// Writes the first `n` staged bytes where they belong: the whole blocks direct, the
    /// rest (and everything, without `direct`) through the page cache.
    fn put(&mut self, n: usize) -> std::io::Result<()> {
        let mut left = n;
        if let Some(d) = &self.direct {
            let whole = n / ALIGN * ALIGN;
            self.staging.realign();
            let (done, error) = write_some(d, &self.staging.bytes()[..whole], self.staging.base);
            self.staging.consume(done);
            left -= done;
            match error {
                None if done == whole => {}
                // Refused after all (an alignment this device does not take), or cut short
                // off a block boundary: the page cache from here on.
                Some(e) if e.raw_os_error() != Some(libc::EINVAL) => return Err(e),
                _ => {
                    warn!(file = %self.path.display(), "direct writes failed; writing through the page cache");
                    self.direct = None;
                }
            }
        }
        if left > 0 {
            self.file
                .write_all_at(&self.staging.bytes()[..left], self.staging.base)?;
            self.staging.consume(left);
        }
        Ok(())
    }

    /// Makes the file's space reach `end`: [`ALLOCATE_AHEAD`] more, or only up to `end` on
    /// a disk too full for that.
    fn allocate(&mut self, end: u64) -> std::io::Result<()> {
        if end <= self.allocated {
            return Ok(());
        }
        let ahead = (end + ALLOCATE_AHEAD).next_multiple_of(ALIGN as u64);
        let at = self.allocated;
        let fallocate = |to: u64| disk_writer::allocate(&self.file, at, to - at).map(|()| to);
        self.allocated = fallocate(ahead).or_else(|_| fallocate(end))?;
        Ok(())
    }

    /// Bytes of a whole frame of audio (the header only ever states whole frames).
    fn frame_bytes(&self) -> u64 {
        match &self.body {
            Body::Pcm { header, .. } => header.spec.bytes_per_frame().max(1),
            Body::Flac { .. } => 1,
        }
    }

    /// Flushes, then states the size on disk and marks `cues` in the header. A FLAC file's
    /// STREAMINFO keeps "length unknown" until [`close`](Self::close): its frames are
    /// complete on their own, and its gaps are in the sidecar only.
    pub fn sync_header(&mut self, fsync: bool, cues: &[wav::Cue]) -> std::io::Result<()> {
        let flushed = self.flush();
        if let Body::Pcm {
            header,
            header_says,
            cues_said,
            ..
        } = &mut self.body
        {
            // With O_DIRECT the disk may end inside a frame until the next block goes out.
            let frame = header.spec.bytes_per_frame().max(1);
            let says = self.data_bytes - self.data_bytes % frame;
            if *header_says != says || *cues_said != cues.len() {
                let bytes = header.encode_with_cues(says, cues);
                rewrite(&self.file, &mut self.staging, &bytes)?;
                *header_says = says;
                *cues_said = cues.len();
            }
        }
        if fsync {
            self.file.sync_data()?;
        }
        flushed
    }

    /// Writes what is left and the final header.
    pub fn close(&mut self, fsync: bool, cues: &[wav::Cue]) -> std::io::Result<()> {
        let mut encoded = Ok(());
        if let Body::Flac {
            encoder, finished, ..
        } = &mut self.body
            && !*finished
        {
            *finished = true;
            encoded = encoder.finish(self.staging.vec());
        }
        // The last partial block too (through the page cache), so the header states it all.
        let mut written = self.write_out(true);
        if self.allocated > 0 {
            // The space allocated ahead goes; the file ends with its audio.
            written = written.and(self.file.set_len(self.staging.base));
            self.allocated = 0;
        }
        let synced = self.sync_header(false, cues).and(written);
        if let Body::Flac {
            encoder,
            info,
            written,
            ..
        } = &self.body
        {
            let final_info = wire_flac::StreamInfo {
                min_frame: written.min_frame,
                max_frame: written.max_frame,
                total_samples: written.samples,
                // Covers the samples encoded: only valid if all of them reached the disk.
                md5: if written.samples == encoder.encoded {
                    encoder.md5()
                } else {
                    [0; 16]
                },
                ..info.clone()
            };
            self.file
                .write_all_at(&final_info.encode(), wire_flac::STREAMINFO_AT)?;
        }
        if fsync {
            self.file.sync_data()?;
        }
        encoded.and(synced)
    }
}

/// Appends each track's channels of `data` (frames of `stride`) to its PCM file, all files
/// in one pass over the block: the block is read once, whatever the number of files.
pub fn append_pcm(
    files: &mut [TrackFile],
    tracks: &[super::config::Track],
    data: &[i32],
    stride: usize,
    bits: u8,
) -> std::io::Result<()> {
    let mut outs: Vec<(&[usize], &mut Vec<u8>)> = tracks
        .iter()
        .zip(files.iter_mut())
        .map(|(t, f)| (t.channels.as_slice(), f.staging.vec()))
        .collect();
    super::pack::pack_tracks(data, stride, &mut outs, bits);
    files.iter_mut().try_for_each(TrackFile::flush_if_full)
}

/// Writes the whole staged blocks of every direct file at once, through the process's disk
/// writer: the recorder's thread sleeps once for all of them, instead of once per file in a
/// blocking `pwrite`, and the writes go into space allocated ahead, which the kernel
/// completes without waiting on the submitting thread. What is not written here (no
/// io_uring, an error, a short write, space that could not be allocated) stays staged for
/// [`TrackFile::flush`], which writes it with `pwrite` and reports any error. Without the
/// disk writer, nothing is allocated ahead either: the files grow as they are written.
pub fn flush_together(files: &mut [TrackFile]) {
    if !disk_writer::available() {
        return;
    }
    let mut ready: Vec<(usize, usize)> = Vec::with_capacity(files.len());
    for (i, f) in files.iter_mut().enumerate() {
        let whole = f.staging.len() / ALIGN * ALIGN;
        if f.direct.is_none() || whole == 0 {
            continue;
        }
        f.staging.realign();
        if f.allocate(f.staging.base + whole as u64).is_ok() {
            ready.push((i, whole));
        }
    }
    if ready.is_empty() {
        return;
    }
    let writes: Vec<disk_writer::Write<'_>> = ready
        .iter()
        .filter_map(|&(i, whole)| {
            let f = &files[i];
            Some(disk_writer::Write {
                file: f.direct.as_ref()?,
                bytes: &f.staging.bytes()[..whole],
                at: f.staging.base,
            })
        })
        .collect();
    let Some(results) = disk_writer::write_together(&writes) else {
        return;
    };
    for (&(i, _), result) in ready.iter().zip(results) {
        if let Ok(n) = result {
            let f = &mut files[i];
            f.staging.consume(n);
            f.data_bytes = f.staging.base.saturating_sub(f.audio_start);
        }
    }
}

/// Writes as much of `bytes` at `at` as the file takes: how much, and the error that stopped
/// it.
fn write_some(file: &File, bytes: &[u8], at: u64) -> (usize, Option<std::io::Error>) {
    let mut done = 0;
    while done < bytes.len() {
        match file.write_at(&bytes[done..], at + done as u64) {
            Ok(0) => return (done, Some(std::io::ErrorKind::WriteZero.into())),
            Ok(k) => done += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Puts a new `header` (the file's first bytes) in place: what is still staged is patched
/// there (the next direct write carries it), what is on disk is rewritten through the page
/// cache, which direct writes never touch below the staged offset.
fn rewrite(file: &File, staging: &mut Staging, header: &[u8]) -> std::io::Result<()> {
    let base = usize::try_from(staging.base).unwrap_or(usize::MAX);
    if header.len() > base {
        let k = (header.len() - base).min(staging.len());
        staging.bytes_mut()[..k].copy_from_slice(&header[base..base + k]);
    }
    file.write_all_at(&header[..header.len().min(base)], 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_wire::wav::{Bext, Spec};

    fn header(channels: u16) -> Header {
        Header {
            spec: Spec {
                channels,
                sample_rate: 48_000,
                bits: 24,
            },
            bext: Some(Bext {
                description: "test".into(),
                ..Bext::default()
            }),
            ixml: None,
            cue_slots: 4,
        }
    }

    /// What the file on disk holds now: the frames its header states, and the bytes after
    /// the header written and in the file (more: space allocated ahead).
    fn on_disk(path: &Path) -> (Vec<i32>, u64, u64) {
        let bytes = std::fs::read(path).expect("read");
        let info = wav::parse(&bytes).expect("a valid header");
        let start = info.data_offset as usize;
        let audio = &bytes[start..start + info.data_size as usize];
        let file = File::open(path).expect("open");
        let written = disk_writer::written_end(&file, 0).expect("written");
        (
            wav::unpack(audio, 24),
            written - info.data_offset,
            bytes.len() as u64 - info.data_offset,
        )
    }

    /// Appends in uneven pieces with header rewrites (and cue marks) between them; at each
    /// rewrite the file on disk is valid and holds a prefix of what was appended, less than a
    /// block behind; at close it holds all of it.
    fn round_trip(dir: &Path, direct: bool) {
        let path = dir.join("t.wav");
        let mut file = TrackFile::create(&path, header(2), false).expect("create");
        if !direct {
            // As on a filesystem that refuses O_DIRECT.
            file.direct = None;
        }
        let mut sent: Vec<i32> = Vec::new();
        let mut n = 0i32;
        for (round, frames) in [1usize, 7, 4_800, 333, 50_000, 4_096, 1, 90_001]
            .into_iter()
            .enumerate()
        {
            let block: Vec<i32> = (0..frames * 2)
                .map(|_| {
                    n = n.wrapping_add(0x0123_4567);
                    n & !0xff
                })
                .collect();
            sent.extend_from_slice(&block);
            append_pcm(
                std::slice::from_mut(&mut file),
                &[super::super::config::Track {
                    name: "t".into(),
                    channels: vec![0, 1],
                    channel_names: vec!["a".into(), "b".into()],
                }],
                &block,
                2,
                24,
            )
            .expect("append");
            let cues: Vec<wav::Cue> = (0..round.min(3))
                .map(|k| wav::Cue {
                    offset: k as u32,
                    frames: 1,
                    label: "gap: lost".into(),
                })
                .collect();
            // As the recorder does: all of its files' blocks at once, then the headers (in
            // odd rounds the header rewrite writes them, as where io_uring is missing).
            if round % 2 == 0 {
                flush_together(std::slice::from_mut(&mut file));
            }
            file.sync_header(false, &cues).expect("sync");
            let (got, len, file_len) = on_disk(&path);
            // Once a block went out direct, the space after it is allocated ahead.
            let allocated = direct && round >= 2;
            assert_eq!(
                allocated,
                file_len > len,
                "round {round}: space allocated ahead"
            );
            assert_eq!(got[..], sent[..got.len()], "round {round}");
            assert!(
                got.len() * 3 + ALIGN >= sent.len() * 3,
                "round {round}: {} of {} samples on disk",
                got.len(),
                sent.len()
            );
            assert!(len < got.len() as u64 * 3 + 6, "a partial frame at most");
        }
        file.close(false, &[]).expect("close");
        let (got, len, file_len) = on_disk(&path);
        assert_eq!(got, sent);
        assert_eq!(len, sent.len() as u64 * 3);
        assert_eq!(file_len, len, "the space allocated ahead is cut at close");
        assert_eq!(file.data_bytes, len);
    }

    #[test]
    fn writes_valid_files_direct_or_not() {
        let dir = tempfile::tempdir().expect("tmp");
        round_trip(dir.path(), true);
        let dir = tempfile::tempdir().expect("tmp");
        round_trip(dir.path(), false);
    }
}
