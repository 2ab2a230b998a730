//! Framing of compressed audio elementary streams: ADTS (AAC, ISO/IEC 14496-3 §1.A.2.2) and
//! MPEG-1/2 audio layer I/II/III frame headers (ISO/IEC 11172-3 §2.4.2.3, 13818-3).
//!
//! A transport stream PES carries one or more whole frames, but nothing forbids a frame to
//! straddle two PES, so [`FrameSplitter`] keeps the tail of one payload for the next. It finds
//! frames by their sync word and checks each header; bytes that are not a frame are skipped
//! and counted. Untrusted bytes are only read through `get(..)`; nothing here panics.

use thiserror::Error;

/// ADTS sampling_frequency_index → rate (ISO/IEC 14496-3 Table 1.18).
const AAC_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Longest frame kept while waiting for its end (an ADTS frame is at most 8191 bytes).
const MAX_FRAME: usize = 8192;

/// Errors from parsing a frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame header truncated: need {expected} bytes, have {actual}")]
    Truncated { expected: usize, actual: usize },
    #[error("no sync word")]
    NoSync,
    #[error("invalid header field `{0}`")]
    Invalid(&'static str),
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// The fields of an ADTS header a decoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdtsHeader {
    /// `profile_ObjectType` + 1: 2 is AAC-LC.
    pub object_type: u8,
    pub sample_rate: u32,
    /// `channel_configuration` (1..=7; 0 means a PCE describes them).
    pub channel_configuration: u8,
    /// Whole frame length, header included.
    pub frame_length: usize,
    /// Header length: 7, or 9 with a CRC.
    pub header_length: usize,
}

impl AdtsHeader {
    pub const MIN_LEN: usize = 7;

    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, FrameError> {
        let h = b.get(..Self::MIN_LEN).ok_or(FrameError::Truncated {
            expected: Self::MIN_LEN,
            actual: b.len(),
        })?;
        if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
            return Err(FrameError::NoSync);
        }
        let protection_absent = h[1] & 0x01 != 0;
        let object_type = (h[2] >> 6) + 1;
        let sample_rate = *AAC_RATES
            .get(usize::from((h[2] >> 2) & 0x0f))
            .ok_or(FrameError::Invalid("sampling_frequency_index"))?;
        let channel_configuration = ((h[2] & 0x01) << 2) | (h[3] >> 6);
        let frame_length =
            (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let header_length = if protection_absent { 7 } else { 9 };
        if frame_length <= header_length {
            return Err(FrameError::Invalid("aac_frame_length"));
        }
        if h[6] & 0x03 != 0 {
            return Err(FrameError::Unsupported(
                "several raw data blocks in one ADTS frame",
            ));
        }
        Ok(Self {
            object_type,
            sample_rate,
            channel_configuration,
            frame_length,
            header_length,
        })
    }
}

/// MPEG audio layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MpaLayer {
    I,
    II,
    III,
}

/// The fields of an MPEG audio frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MpaHeader {
    pub layer: MpaLayer,
    /// MPEG-1 (false) or MPEG-2/2.5 low sampling frequencies (true).
    pub lsf: bool,
    pub sample_rate: u32,
    pub bitrate_kbps: u32,
    pub channels: u8,
    /// Whole frame length, header included.
    pub frame_length: usize,
    /// Samples per channel in the frame.
    pub samples: u32,
}

impl MpaHeader {
    pub const LEN: usize = 4;

    /// Parses the header at the start of `b`.
    pub fn parse(b: &[u8]) -> Result<Self, FrameError> {
        let h = b.get(..Self::LEN).ok_or(FrameError::Truncated {
            expected: Self::LEN,
            actual: b.len(),
        })?;
        if h[0] != 0xff || h[1] & 0xe0 != 0xe0 {
            return Err(FrameError::NoSync);
        }
        let version = (h[1] >> 3) & 0x03; // 0: 2.5, 2: 2, 3: 1
        let layer = match (h[1] >> 1) & 0x03 {
            3 => MpaLayer::I,
            2 => MpaLayer::II,
            1 => MpaLayer::III,
            _ => return Err(FrameError::Invalid("layer")),
        };
        let base_rate = match (h[2] >> 2) & 0x03 {
            0 => 44_100,
            1 => 48_000,
            2 => 32_000,
            _ => return Err(FrameError::Invalid("sampling_frequency")),
        };
        let (lsf, sample_rate) = match version {
            3 => (false, base_rate),
            2 => (true, base_rate / 2),
            0 => (true, base_rate / 4),
            _ => return Err(FrameError::Invalid("version")),
        };
        let index = usize::from(h[2] >> 4);
        if index == 0 {
            return Err(FrameError::Unsupported("free-format bitrate"));
        }
        let table: &[u32; 15] = match (lsf, layer) {
            (false, MpaLayer::I) => &[
                0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
            ],
            (false, MpaLayer::II) => &[
                0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
            ],
            (false, MpaLayer::III) => &[
                0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
            ],
            (true, MpaLayer::I) => &[
                0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
            ],
            (true, _) => &[0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
        };
        let bitrate_kbps = *table.get(index).ok_or(FrameError::Invalid("bitrate"))?;
        let padding = usize::from((h[2] >> 1) & 0x01);
        let channels = if h[3] >> 6 == 3 { 1 } else { 2 };
        let bitrate = bitrate_kbps as usize * 1000;
        let rate = sample_rate as usize;
        let (frame_length, samples) = match layer {
            MpaLayer::I => ((12 * bitrate / rate + padding) * 4, 384),
            MpaLayer::II => (144 * bitrate / rate + padding, 1152),
            MpaLayer::III if lsf => (72 * bitrate / rate + padding, 576),
            MpaLayer::III => (144 * bitrate / rate + padding, 1152),
        };
        if frame_length <= Self::LEN {
            return Err(FrameError::Invalid("frame length"));
        }
        Ok(Self {
            layer,
            lsf,
            sample_rate,
            bitrate_kbps,
            channels,
            frame_length,
            samples,
        })
    }
}

/// Which framing a [`FrameSplitter`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Adts,
    Mpa,
}

/// Counters of a [`FrameSplitter`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SplitterStats {
    pub frames: u64,
    /// Bytes skipped while looking for a valid header.
    pub skipped_bytes: u64,
    /// Headers that parsed but cannot be decoded (several ADTS blocks, free format).
    pub unsupported: u64,
}

/// Cuts an elementary stream, fed in arbitrary pieces, into whole frames.
#[derive(Debug, Clone)]
pub struct FrameSplitter {
    framing: Framing,
    buf: Vec<u8>,
    stats: SplitterStats,
}

impl FrameSplitter {
    pub fn new(framing: Framing) -> Self {
        Self {
            framing,
            buf: Vec::with_capacity(MAX_FRAME * 2),
            stats: SplitterStats::default(),
        }
    }

    pub fn stats(&self) -> SplitterStats {
        self.stats
    }

    /// Forgets any partial frame (after a discontinuity).
    pub fn reset(&mut self) {
        self.buf.clear();
    }

    /// Feeds `bytes`; calls `frame` with every whole frame they complete.
    pub fn push(&mut self, bytes: &[u8], mut frame: impl FnMut(&[u8])) {
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(rest) = self.buf.get(start..) {
            let Some(sync) = rest
                .windows(2)
                .position(|w| w[0] == 0xff && w[1] & 0xe0 == 0xe0)
            else {
                // Keep a trailing 0xFF: it may start the next header.
                let keep = usize::from(rest.last() == Some(&0xff));
                self.stats.skipped_bytes += (rest.len() - keep) as u64;
                start += rest.len() - keep;
                break;
            };
            self.stats.skipped_bytes += sync as u64;
            start += sync;
            let rest = self.buf.get(start..).unwrap_or_default();
            let length = match self.framing {
                Framing::Adts => AdtsHeader::parse(rest).map(|h| h.frame_length),
                Framing::Mpa => MpaHeader::parse(rest).map(|h| h.frame_length),
            };
            match length {
                Ok(len) => match rest.get(..len) {
                    Some(whole) => {
                        self.stats.frames += 1;
                        frame(whole);
                        start += len;
                    }
                    None => break,
                },
                Err(FrameError::Truncated { .. }) => break,
                Err(FrameError::Unsupported(_)) => {
                    self.stats.unsupported += 1;
                    self.stats.skipped_bytes += 1;
                    start += 1;
                }
                Err(_) => {
                    self.stats.skipped_bytes += 1;
                    start += 1;
                }
            }
        }
        self.buf.drain(..start.min(self.buf.len()));
        if self.buf.len() > MAX_FRAME {
            self.stats.skipped_bytes += self.buf.len() as u64;
            self.buf.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An ADTS header for an AAC-LC frame of `len` bytes, 48 kHz stereo, no CRC.
    fn adts(len: usize) -> [u8; 7] {
        [
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (2 << 6) | ((len >> 11) & 0x03) as u8,
            (len >> 3) as u8,
            ((len & 0x07) << 5) as u8 | 0x1f,
            0xfc,
        ]
    }

    #[test]
    fn adts_fields() {
        let h = AdtsHeader::parse(&adts(300)).expect("parse");
        assert_eq!(
            h,
            AdtsHeader {
                object_type: 2,
                sample_rate: 48_000,
                channel_configuration: 2,
                frame_length: 300,
                header_length: 7,
            }
        );
        assert_eq!(
            AdtsHeader::parse(&[0xff, 0xf1]),
            Err(FrameError::Truncated {
                expected: 7,
                actual: 2
            })
        );
    }

    #[test]
    fn mpa_layer2_48k_stereo_192k() {
        // FFmpeg `-c:a mp2 -b:a 192k -ar 48000`: 0xFFFD C4 04.
        let h = MpaHeader::parse(&[0xff, 0xfd, 0xa4, 0x04]).expect("parse");
        assert_eq!(h.layer, MpaLayer::II);
        assert_eq!(h.sample_rate, 48_000);
        assert_eq!(h.bitrate_kbps, 192);
        assert_eq!(h.frame_length, 576);
        assert_eq!(h.samples, 1152);
        assert_eq!(h.channels, 2);
    }

    #[test]
    fn splitter_reassembles_across_pieces_and_skips_garbage() {
        let mut stream = vec![0x00, 0x12, 0xff];
        for len in [20usize, 33, 17] {
            stream.extend_from_slice(&adts(len));
            stream.extend(std::iter::repeat_n(0x11, len - 7));
        }
        let mut splitter = FrameSplitter::new(Framing::Adts);
        let mut lengths = Vec::new();
        for piece in stream.chunks(5) {
            splitter.push(piece, |f| lengths.push(f.len()));
        }
        assert_eq!(lengths, vec![20, 33, 17]);
        assert_eq!(splitter.stats().skipped_bytes, 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn splitter_never_panics(
            bytes in prop::collection::vec(any::<u8>(), 0..4000),
            piece in 1usize..300,
            mpa in any::<bool>(),
        ) {
            let framing = if mpa { Framing::Mpa } else { Framing::Adts };
            let mut splitter = FrameSplitter::new(framing);
            let mut total = 0;
            for p in bytes.chunks(piece) {
                splitter.push(p, |f| total += f.len());
            }
            prop_assert!(total <= bytes.len());
        }
    }
}
