//! FLAC container pieces the recorder and `estuary repair` need, sans-IO: the `fLaC` header
//! (STREAMINFO and VORBIS_COMMENT) written and parsed, and a scanner that finds whole,
//! CRC-checked frames in a file cut by a crash. The audio frames themselves are encoded by
//! `flacenc`; decoding is left to `flac`, FFmpeg and sox, which check us in the tests.

use thiserror::Error;

/// STREAMINFO starts here in every file Estuary writes: right after `fLaC` and the block
/// header, so it can be rewritten in place.
pub const STREAMINFO_AT: u64 = 8;
/// Body length of STREAMINFO.
const STREAMINFO_LEN: usize = 34;
/// Vorbis comments longer than this are not ours and not worth reading.
const MAX_COMMENTS: usize = 256;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamInfo {
    pub min_block: u16,
    pub max_block: u16,
    /// Bytes; 0 = unknown.
    pub min_frame: u32,
    pub max_frame: u32,
    pub sample_rate: u32,
    pub channels: u8,
    pub bits: u8,
    /// Frames (per channel); 0 = unknown, as while recording.
    pub total_samples: u64,
    /// MD5 of the decoded samples; all zero = not computed.
    pub md5: [u8; 16],
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FlacError {
    #[error("not a FLAC file (no fLaC marker)")]
    NotFlac,
    #[error("truncated header")]
    Truncated,
    #[error("the first metadata block is not STREAMINFO")]
    NoStreamInfo,
    #[error("invalid STREAMINFO: {0}")]
    BadStreamInfo(&'static str),
}

impl StreamInfo {
    /// The 34-byte STREAMINFO body.
    pub fn encode(&self) -> [u8; STREAMINFO_LEN] {
        let mut out = [0u8; STREAMINFO_LEN];
        out[0..2].copy_from_slice(&self.min_block.to_be_bytes());
        out[2..4].copy_from_slice(&self.max_block.to_be_bytes());
        out[4..7].copy_from_slice(&self.min_frame.min(0xff_ffff).to_be_bytes()[1..]);
        out[7..10].copy_from_slice(&self.max_frame.min(0xff_ffff).to_be_bytes()[1..]);
        let packed = (u64::from(self.sample_rate & 0xf_ffff) << 44)
            | (u64::from(self.channels.saturating_sub(1) & 7) << 41)
            | (u64::from(self.bits.saturating_sub(1) & 31) << 36)
            | (self.total_samples & 0xf_ffff_ffff);
        out[10..18].copy_from_slice(&packed.to_be_bytes());
        out[18..34].copy_from_slice(&self.md5);
        out
    }

    fn decode(b: &[u8]) -> Result<Self, FlacError> {
        let b: &[u8; STREAMINFO_LEN] = b
            .get(..STREAMINFO_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FlacError::Truncated)?;
        let u24 = |s: &[u8]| u32::from_be_bytes([0, s[0], s[1], s[2]]);
        let mut packed = [0u8; 8];
        packed.copy_from_slice(&b[10..18]);
        let packed = u64::from_be_bytes(packed);
        let mut md5 = [0u8; 16];
        md5.copy_from_slice(&b[18..34]);
        let info = Self {
            min_block: u16::from_be_bytes([b[0], b[1]]),
            max_block: u16::from_be_bytes([b[2], b[3]]),
            min_frame: u24(&b[4..7]),
            max_frame: u24(&b[7..10]),
            sample_rate: (packed >> 44) as u32,
            channels: ((packed >> 41) & 7) as u8 + 1,
            bits: ((packed >> 36) & 31) as u8 + 1,
            total_samples: packed & 0xf_ffff_ffff,
            md5,
        };
        if info.sample_rate == 0 {
            return Err(FlacError::BadStreamInfo("sample rate 0"));
        }
        if info.bits < 4 {
            return Err(FlacError::BadStreamInfo("fewer than 4 bits per sample"));
        }
        Ok(info)
    }
}

/// The header of a new file: `fLaC`, STREAMINFO, and a VORBIS_COMMENT with `comments`
/// (`KEY=value`), which is the last metadata block. Frames follow it.
pub fn encode_header(info: &StreamInfo, vendor: &str, comments: &[String]) -> Vec<u8> {
    let mut out = b"fLaC".to_vec();
    block_header(&mut out, false, 0, STREAMINFO_LEN);
    out.extend_from_slice(&info.encode());
    let mut body = Vec::new();
    let mut put = |s: &str| {
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
    };
    put(vendor);
    let comments: Vec<&String> = comments.iter().take(MAX_COMMENTS).collect();
    let mut body2 = (comments.len() as u32).to_le_bytes().to_vec();
    for c in comments {
        body2.extend_from_slice(&(c.len() as u32).to_le_bytes());
        body2.extend_from_slice(c.as_bytes());
    }
    body.extend_from_slice(&body2);
    block_header(&mut out, true, 4, body.len());
    out.extend_from_slice(&body);
    out
}

fn block_header(out: &mut Vec<u8>, last: bool, kind: u8, len: usize) {
    out.push(u8::from(last) << 7 | kind);
    out.extend_from_slice(&(len.min(0xff_ffff) as u32).to_be_bytes()[1..]);
}

/// What the header of a FLAC file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub stream: StreamInfo,
    /// Offset of the first frame.
    pub audio_start: u64,
    /// Vorbis comments, `KEY=value` (at most 256).
    pub comments: Vec<String>,
}

/// Parses `fLaC` and the metadata blocks; `bytes` must hold at least all of them.
pub fn parse(bytes: &[u8]) -> Result<Info, FlacError> {
    if bytes.get(..4) != Some(b"fLaC") {
        return Err(FlacError::NotFlac);
    }
    let mut at = 4usize;
    let mut stream = None;
    let mut comments = Vec::new();
    loop {
        let h = bytes.get(at..at + 4).ok_or(FlacError::Truncated)?;
        let (last, kind) = (h[0] & 0x80 != 0, h[0] & 0x7f);
        let len = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let body = bytes
            .get(at + 4..at + 4 + len)
            .ok_or(FlacError::Truncated)?;
        match kind {
            0 if stream.is_none() && at == 4 => stream = Some(StreamInfo::decode(body)?),
            _ if stream.is_none() => return Err(FlacError::NoStreamInfo),
            4 => comments = parse_comments(body),
            _ => {}
        }
        at += 4 + len;
        if last {
            break;
        }
    }
    Ok(Info {
        stream: stream.ok_or(FlacError::NoStreamInfo)?,
        audio_start: at as u64,
        comments,
    })
}

/// Vorbis comments; a malformed list gives what was read before the fault.
fn parse_comments(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let u32_at = |at: usize| {
        body.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let Some(vendor) = u32_at(0) else {
        return out;
    };
    let mut at = 4usize.saturating_add(vendor);
    let Some(count) = u32_at(at) else {
        return out;
    };
    at += 4;
    for _ in 0..count.min(MAX_COMMENTS) {
        let Some(len) = u32_at(at) else { break };
        let Some(text) = body.get(at + 4..(at + 4).saturating_add(len)) else {
            break;
        };
        out.push(String::from_utf8_lossy(text).into_owned());
        at += 4 + len;
    }
    out
}

/// One whole frame found by [`scan_frames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Offset from the start of the scanned bytes.
    pub offset: usize,
    pub len: usize,
    /// Frames (samples per channel) it holds.
    pub block_size: u32,
}

/// Finds the whole frames at the start of `bytes`, which begins on a frame: each must have a
/// valid header (CRC-8) and end where its CRC-16 matches, just before the next header or
/// the end of the file (`at_eof`, where zeros may follow it). Stops at the first thing that is not such a frame, or at
/// a frame that may continue past `bytes` when not `at_eof`.
pub fn scan_frames(bytes: &[u8], at_eof: bool) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut pos = 0;
    while let Some((header_len, block_size)) = frame_header(&bytes[pos..]) {
        let Some(len) = frame_len(&bytes[pos..], header_len, at_eof) else {
            break;
        };
        frames.push(Frame {
            offset: pos,
            len,
            block_size,
        });
        pos += len;
    }
    frames
}

/// The length of the frame at the start of `b`: the first end where the CRC-16 of what
/// precedes the last two bytes equals them, followed by a frame header or the end.
fn frame_len(b: &[u8], header_len: usize, at_eof: bool) -> Option<usize> {
    // The smallest frame: header, one constant subframe per channel, CRC-16.
    let mut crc = crc16(0, &b[..header_len]);
    let mut end = header_len + 3;
    if b.len() < end {
        return None;
    }
    crc = crc16(crc, &b[header_len..end - 2]);
    loop {
        let stored = u16::from_be_bytes([b[end - 2], b[end - 1]]);
        // A power cut can leave zeros where the last blocks were never written.
        let boundary = if end == b.len() {
            at_eof
        } else {
            frame_header(&b[end..]).is_some() || (at_eof && b[end..].iter().all(|&x| x == 0))
        };
        if boundary && crc == stored {
            return Some(end);
        }
        if end == b.len() {
            return None;
        }
        crc = crc16(crc, &b[end - 2..end - 1]);
        end += 1;
    }
}

/// Parses a frame header: (its length with the CRC-8, block size) when it checks out.
fn frame_header(b: &[u8]) -> Option<(usize, u32)> {
    if b.len() < 6 || b[0] != 0xff || b[1] & 0xfe != 0xf8 {
        return None;
    }
    let (size_code, rate_code) = (b[2] >> 4, b[2] & 0x0f);
    let (channels, sample_size, reserved) = (b[3] >> 4, (b[3] >> 1) & 7, b[3] & 1);
    if size_code == 0 || rate_code == 15 || channels > 10 || sample_size == 3 || reserved != 0 {
        return None;
    }
    // The frame or sample number, coded like UTF-8 (up to 7 bytes).
    let lead = b[4];
    let extra = match lead.leading_ones() {
        0 => 0,
        n @ 2..=7 => n as usize - 1,
        _ => return None,
    };
    let mut at = 5;
    for _ in 0..extra {
        if b.get(at)? & 0xc0 != 0x80 {
            return None;
        }
        at += 1;
    }
    let block_size = match size_code {
        1 => 192,
        2..=5 => 576 << (size_code - 2),
        6 => {
            at += 1;
            u32::from(*b.get(at - 1)?) + 1
        }
        7 => {
            at += 2;
            u32::from(u16::from_be_bytes([*b.get(at - 2)?, *b.get(at - 1)?])) + 1
        }
        _ => 256 << (size_code - 8),
    };
    at += match rate_code {
        12 => 1,
        13 | 14 => 2,
        _ => 0,
    };
    let crc = *b.get(at)?;
    (crc8(&b[..at]) == crc).then_some((at + 1, block_size))
}

/// CRC-8, polynomial x^8 + x^2 + x + 1, as FLAC frame headers use.
fn crc8(bytes: &[u8]) -> u8 {
    let mut crc = 0u8;
    for &byte in bytes {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                crc << 1 ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                crc << 1 ^ 0x8005
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-16, polynomial x^16 + x^15 + x^2 + 1, as FLAC frames end with, continued from `crc`.
fn crc16(mut crc: u16, bytes: &[u8]) -> u16 {
    for &byte in bytes {
        crc = crc << 8 ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)];
    }
    crc
}

/// Totals of the frames of a file, to rewrite its STREAMINFO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub frames: u64,
    pub samples: u64,
    pub min_frame: u32,
    pub max_frame: u32,
    /// Offset just after the last whole frame.
    pub end: u64,
}

impl Totals {
    pub fn add(&mut self, base: u64, frame: &Frame) {
        let len = frame.len as u32;
        self.min_frame = if self.frames == 0 {
            len
        } else {
            self.min_frame.min(len)
        };
        self.max_frame = self.max_frame.max(len);
        self.frames += 1;
        self.samples += u64::from(frame.block_size);
        self.end = base + (frame.offset + frame.len) as u64;
    }

    /// STREAMINFO saying what the frames hold. The MD5 is kept only if it covered exactly
    /// these samples (the total was right), since checking it needs a decoder.
    pub fn apply(&self, old: &StreamInfo) -> StreamInfo {
        StreamInfo {
            min_frame: self.min_frame,
            max_frame: self.max_frame,
            total_samples: self.samples,
            md5: if old.total_samples == self.samples {
                old.md5
            } else {
                [0; 16]
            },
            ..old.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info() -> StreamInfo {
        StreamInfo {
            min_block: 4096,
            max_block: 4096,
            min_frame: 14,
            max_frame: 12_345,
            sample_rate: 48_000,
            channels: 8,
            bits: 24,
            total_samples: 0x9_1234_5678,
            md5: [7; 16],
        }
    }

    #[test]
    fn header_round_trips() {
        let comments = vec!["TIME_REFERENCE=123".to_owned(), "TITLE=x".to_owned()];
        let bytes = encode_header(&info(), "Estuary", &comments);
        let parsed = parse(&bytes).expect("parses");
        assert_eq!(parsed.stream, info());
        assert_eq!(parsed.audio_start, bytes.len() as u64);
        assert_eq!(parsed.comments, comments);
        assert_eq!(
            &bytes[STREAMINFO_AT as usize..][..STREAMINFO_LEN],
            &info().encode()
        );
    }

    #[test]
    fn crcs_match_the_spec_check_values() {
        assert_eq!(crc8(b"123456789"), 0xf4);
        assert_eq!(crc16(0, b"123456789"), 0xfee8);
    }

    /// A frame of `block` silent frames, one channel, 16-bit: a constant subframe.
    fn silent_frame(number: u8) -> Vec<u8> {
        // Block size code 12 (4096), rate code 9 (44.1k), mono, 16-bit.
        let mut f = vec![0xff, 0xf8, 0xc9, 0x08, number & 0x7f];
        f.push(crc8(&f));
        f.extend_from_slice(&[0x00, 0x00, 0x00]); // constant subframe, value 0, padded
        let crc = crc16(0, &f);
        f.extend_from_slice(&crc.to_be_bytes());
        f
    }

    #[test]
    fn scanner_finds_whole_frames_and_stops_at_a_cut_one() {
        let mut bytes: Vec<u8> = (0..5).flat_map(silent_frame).collect();
        let whole = bytes.len();
        assert_eq!(scan_frames(&bytes, true).len(), 5);
        // The last frame might go on when more bytes may come.
        assert_eq!(scan_frames(&bytes, false).len(), 4);
        bytes.extend_from_slice(&silent_frame(5)[..7]);
        let frames = scan_frames(&bytes, true);
        assert_eq!(frames.len(), 5);
        let mut totals = Totals::default();
        for f in &frames {
            totals.add(100, f);
        }
        assert_eq!(totals.end, 100 + whole as u64);
        assert_eq!(totals.samples, 5 * 4096);
        assert_eq!(totals.min_frame, 11);
        // Zeros a power cut left after the last frame.
        bytes.truncate(whole);
        bytes.extend_from_slice(&[0; 100]);
        let frames = scan_frames(&bytes, true);
        assert_eq!(frames.len(), 5);
        assert_eq!(frames[4].offset + frames[4].len, whole);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600), eof: bool) {
            let _ = parse(&bytes);
            let frames = scan_frames(&bytes, eof);
            let mut end = 0;
            for f in frames {
                prop_assert_eq!(f.offset, end);
                end += f.len;
            }
            prop_assert!(end <= bytes.len());
        }

        #[test]
        fn a_frame_stream_with_noise_after_it_scans_to_the_frames(n in 1u8..20, tail in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut bytes: Vec<u8> = (0..n).flat_map(silent_frame).collect();
            let whole = bytes.len();
            bytes.extend_from_slice(&tail);
            let frames = scan_frames(&bytes, true);
            // Noise may by chance extend the last frame only if it ends in a matching CRC.
            prop_assert!(frames.len() >= usize::from(n) - 1);
            prop_assert!(frames.iter().take(usize::from(n) - 1).all(|f| f.len == 11));
            if tail.is_empty() {
                prop_assert_eq!(frames.len(), usize::from(n));
                prop_assert_eq!(frames.last().map(|f| f.offset + f.len), Some(whole));
            }
        }
    }
}
