//! FLAC encoding for one recording file, a block at a time.
//!
//! flacenc's top-level API encodes a whole source into a `Stream` held in memory, useless
//! for a recording that runs for days; its per-frame API (`encode_fixed_size_frame`) is
//! used instead, each frame serialised into the file's write buffer as soon as its 4096
//! frames are in. STREAMINFO says "length unknown" (0) while recording, which every decoder
//! accepts, and is rewritten with the totals, frame sizes and MD5 at close.

use flacenc::component::BitRepr as _;
use flacenc::error::Verify as _;
use flacenc::source::{Fill as _, FrameBuf};
use md5::Digest as _;

use estuary_wire::flac::StreamInfo;

/// Frames per FLAC frame (85 ms at 48 kHz): what the reference encoder uses by default, and
/// the most audio a crash can cost beyond the last header interval.
pub const BLOCK: usize = 4096;

/// What has been encoded, for STREAMINFO.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counts {
    pub samples: u64,
    pub frames: u64,
    pub min_frame: u32,
    pub max_frame: u32,
}

impl Counts {
    fn add_frame(&mut self, len: usize, samples: usize) {
        let len = len as u32;
        self.min_frame = if self.frames == 0 {
            len
        } else {
            self.min_frame.min(len)
        };
        self.max_frame = self.max_frame.max(len);
        self.frames += 1;
        self.samples += samples as u64;
    }

    pub fn merge(&mut self, other: &Counts) {
        if other.frames == 0 {
            return;
        }
        self.min_frame = if self.frames == 0 {
            other.min_frame
        } else {
            self.min_frame.min(other.min_frame)
        };
        self.max_frame = self.max_frame.max(other.max_frame);
        self.frames += other.frames;
        self.samples += other.samples;
    }
}

pub struct FlacEncoder {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    stream_info: flacenc::component::StreamInfo,
    framebuf: FrameBuf,
    /// Right-justified interleaved samples of the block being filled.
    block: Vec<i32>,
    channels: usize,
    bits: u8,
    frame_number: usize,
    sink: flacenc::bitsink::ByteSink,
    md5: md5::Md5,
    md5_bytes: Vec<u8>,
    /// Frames encoded into the caller's buffer and not yet written.
    pub unwritten: Counts,
    /// Samples (per channel) encoded since the start: what the MD5 covers.
    pub encoded: u64,
}

impl FlacEncoder {
    pub fn new(channels: usize, sample_rate: u32, bits: u8) -> std::io::Result<Self> {
        let bad = |e: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut config = flacenc::config::Encoder::default();
        config.block_size = BLOCK;
        config.multithread = false;
        let config = config
            .into_verified()
            .map_err(|(_, e)| bad(format!("FLAC encoder: {e}")))?;
        let stream_info =
            flacenc::component::StreamInfo::new(sample_rate as usize, channels, usize::from(bits))
                .map_err(|e| bad(format!("FLAC: {e}")))?;
        let framebuf =
            FrameBuf::with_size(channels, BLOCK).map_err(|e| bad(format!("FLAC: {e}")))?;
        Ok(Self {
            config,
            stream_info,
            framebuf,
            block: Vec::with_capacity(BLOCK * channels),
            channels,
            bits,
            frame_number: 0,
            sink: flacenc::bitsink::ByteSink::new(),
            md5: md5::Md5::new(),
            md5_bytes: Vec::new(),
            unwritten: Counts::default(),
            encoded: 0,
        })
    }

    /// STREAMINFO while recording: sizes and length unknown.
    pub fn initial_info(channels: u8, sample_rate: u32, bits: u8) -> StreamInfo {
        StreamInfo {
            min_block: BLOCK as u16,
            max_block: BLOCK as u16,
            sample_rate,
            channels,
            bits,
            ..StreamInfo::default()
        }
    }

    /// Adds `channels` of each frame of `data` (left-justified, frames of `stride`), and
    /// appends each completed FLAC frame to `out`.
    pub fn push(
        &mut self,
        data: &[i32],
        (stride, channels): (usize, &[usize]),
        out: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        let shift = 32 - u32::from(self.bits);
        for frame in data.chunks_exact(stride.max(1)) {
            self.block.extend(
                channels
                    .iter()
                    .map(|&c| frame.get(c).copied().unwrap_or(0) >> shift),
            );
            if self.block.len() == BLOCK * self.channels {
                self.encode_block(out)?;
            }
        }
        Ok(())
    }

    /// Encodes what is left (a shorter last frame); nothing may be pushed after.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.encode_block(out)
    }

    fn encode_block(&mut self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let frames = self.block.len() / self.channels;
        self.update_md5();
        self.framebuf
            .fill_interleaved(&self.block)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.framebuf,
            self.frame_number,
            &self.stream_info,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.sink.clear();
        frame
            .write(&mut self.sink)
            .map_err(|e| std::io::Error::other(format!("FLAC frame: {e:?}")))?;
        out.extend_from_slice(self.sink.as_slice());
        self.unwritten.add_frame(self.sink.as_slice().len(), frames);
        self.frame_number += 1;
        self.encoded += frames as u64;
        self.block.clear();
        Ok(())
    }

    /// The MD5 STREAMINFO carries is of the samples as signed little-endian integers of
    /// the sample width, interleaved.
    fn update_md5(&mut self) {
        let width = usize::from(self.bits).div_ceil(8);
        self.md5_bytes.clear();
        for &s in &self.block {
            self.md5_bytes.extend_from_slice(&s.to_le_bytes()[..width]);
        }
        self.md5.update(&self.md5_bytes);
    }

    /// The MD5 of every sample encoded so far.
    pub fn md5(&self) -> [u8; 16] {
        self.md5.clone().finalize().into()
    }
}
