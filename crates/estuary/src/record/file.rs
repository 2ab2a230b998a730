//! One open recording file: buffered appends, and the header rewritten in place.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use estuary_wire::flac as wire_flac;
use estuary_wire::wav::{self, Header};

use super::flac::{Counts, FlacEncoder};

/// Bytes buffered before a write(2): 1024 mono 24-bit files make about 2300 calls a second,
/// and hold 64 MiB.
const WRITE_BUFFER: usize = 64 * 1024;

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
    file: File,
    /// Bytes before the audio.
    audio_start: u64,
    body: Body,
    /// Audio bytes on disk (written with success).
    pub data_bytes: u64,
    /// Audio bytes waiting in `buffer` (FLAC: whole encoded frames).
    pub buffer: Vec<u8>,
}

impl TrackFile {
    fn open(path: &Path, header: &[u8]) -> std::io::Result<File> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
        if let Err(e) = file.write_all(header) {
            // A file whose header did not fit (disk full) is not a recording: leave none.
            drop(file);
            let _ = std::fs::remove_file(path);
            return Err(e);
        }
        Ok(file)
    }

    pub fn create(path: &Path, header: Header, rf64_allowed: bool) -> std::io::Result<Self> {
        let bytes = header.encode(0);
        let file = Self::open(path, &bytes)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            audio_start: bytes.len() as u64,
            body: Body::Pcm {
                header,
                rf64_allowed,
                header_says: 0,
                cues_said: 0,
            },
            data_bytes: 0,
            buffer: Vec::new(),
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
        let file = Self::open(path, &bytes)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            audio_start: bytes.len() as u64,
            body: Body::Flac {
                encoder: Box::new(encoder),
                info,
                written: Counts::default(),
                finished: false,
            },
            data_bytes: 0,
            buffer: Vec::new(),
        })
    }

    /// Whether `more` bytes still fit (RIFF: 32-bit sizes; FLAC: no limit that matters).
    pub fn fits(&self, more: u64) -> bool {
        let total = self.data_bytes + self.buffer.len() as u64 + more;
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

    pub fn pending(&self) -> u64 {
        self.data_bytes + self.buffer.len() as u64
    }

    /// Appends `channels` of each frame of `data` (frames of `stride` samples).
    pub fn append(
        &mut self,
        data: &[i32],
        (stride, channels): (usize, &[usize]),
        bits: u8,
    ) -> std::io::Result<()> {
        match &mut self.body {
            Body::Pcm { .. } if channels.iter().copied().eq(0..stride) => {
                wav::pack(data, bits, &mut self.buffer);
            }
            Body::Pcm { .. } => {
                wav::pack_channels(data, stride, channels, bits, &mut self.buffer);
            }
            Body::Flac { encoder, .. } => {
                encoder.push(data, (stride, channels), &mut self.buffer)?;
            }
        }
        self.flush_if_full()
    }

    /// Writes the buffer once it holds [`WRITE_BUFFER`] bytes.
    fn flush_if_full(&mut self) -> std::io::Result<()> {
        if self.buffer.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the buffer. On error the file is cut back to the audio written before, so it
    /// stays valid.
    pub fn flush(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.file.write_all(&self.buffer);
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
            let end = self.audio_start + self.data_bytes;
            let _ = self.file.set_len(end);
            let _ = std::io::Seek::seek(&mut self.file, std::io::SeekFrom::Start(end));
            self.buffer.clear();
            return Err(e);
        }
        self.data_bytes += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
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
            && (*header_says != self.data_bytes || *cues_said != cues.len())
        {
            self.file
                .write_all_at(&header.encode_with_cues(self.data_bytes, cues), 0)?;
            *header_says = self.data_bytes;
            *cues_said = cues.len();
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
            encoded = encoder.finish(&mut self.buffer);
        }
        let synced = self.sync_header(false, cues);
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
        .map(|(t, f)| (t.channels.as_slice(), &mut f.buffer))
        .collect();
    wav::pack_tracks(data, stride, &mut outs, bits);
    files.iter_mut().try_for_each(TrackFile::flush_if_full)
}
