//! SMPTE ST 302M: linear PCM (AES3 subframes) carried in MPEG-2 transport streams.
//!
//! An access unit is a 4-byte AES3 header followed by packed sample pairs (ST 302M §4 / §5):
//!
//! ```text
//!  audio_packet_size (16) | number_channels (2) | channel_identification (8)
//!  | bits_per_sample (2) | alignment_bits (4)
//! ```
//!
//! `audio_packet_size` counts the payload bytes after the header; `number_channels` codes
//! 2/4/6/8 channels as 0..=3; `bits_per_sample` codes 16/20/24 bits as 0..=2. Each pair of
//! channels is sent as two AES3 subframes, each `n` audio bits followed by the four V, U, C, F
//! bits, with every field sent least significant bit first while bytes are filled most
//! significant bit first. So a pair is `2n + 8` bits: 5 bytes at 16 bits, 6 at 20, 7 at 24.
//! This is exactly what FFmpeg's `s302m` decoder reads; `tests/ts_ffmpeg.rs` checks it bit-exactly.
//!
//! The sample rate of 302M in transport streams is always 48 kHz.
//!
//! Samples are interleaved `i32`, MSB-aligned (full scale = `i32` range). Packing keeps the top
//! `bits` bits (truncation); unpacking returns them MSB-aligned with zeros below.
//!
//! Every length is checked with `get(..)` before use, so no function here panics on any input.

use thiserror::Error;

/// Length of the AES3 header that starts every 302M access unit.
pub const AES3_HEADER_LEN: usize = 4;

/// Sample rate of SMPTE 302M audio in MPEG-TS (ST 302M §5.1).
pub const SAMPLE_RATE: u32 = 48_000;

/// Channel count and word length of a 302M stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct S302mFormat {
    /// 2, 4, 6 or 8.
    pub channels: u8,
    /// 16, 20 or 24.
    pub bits: u8,
}

impl S302mFormat {
    /// A checked format.
    pub fn new(channels: u8, bits: u8) -> Result<Self, S302mError> {
        let format = Self { channels, bits };
        format.validate()?;
        Ok(format)
    }

    /// Checks that the channel count and word length are ones 302M can carry.
    pub fn validate(self) -> Result<(), S302mError> {
        if !matches!(self.channels, 2 | 4 | 6 | 8) {
            return Err(S302mError::InvalidChannels {
                channels: self.channels,
            });
        }
        if !matches!(self.bits, 16 | 20 | 24) {
            return Err(S302mError::InvalidBits { bits: self.bits });
        }
        Ok(())
    }

    /// Bytes for one pair of channels in one sample period (two AES3 subframes).
    pub fn pair_len(self) -> usize {
        (2 * usize::from(self.bits) + 8) / 8
    }

    /// Payload bytes for one sample period of all channels.
    pub fn frame_len(self) -> usize {
        self.pair_len() * usize::from(self.channels / 2)
    }
}

/// Errors from packing or unpacking 302M access units.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum S302mError {
    /// 302M carries 2, 4, 6 or 8 channels.
    #[error("302M carries 2, 4, 6 or 8 channels, not {channels}")]
    InvalidChannels { channels: u8 },
    /// 302M carries 16, 20 or 24 bits per sample.
    #[error("302M carries 16, 20 or 24 bits per sample, not {bits}")]
    InvalidBits { bits: u8 },
    /// The interleaved sample slice does not hold whole frames.
    #[error("{samples} samples is not a whole number of {channels}-channel frames")]
    PartialFrame { samples: usize, channels: u8 },
    /// The payload would not fit the 16-bit `audio_packet_size` field.
    #[error("302M payload of {len} bytes exceeds the 65535 bytes audio_packet_size can express")]
    TooLarge { len: usize },
    /// The output buffer is too small.
    #[error("output buffer too small: need {needed} bytes, have {available}")]
    BufferTooSmall { needed: usize, available: usize },
    /// The input ends before the AES3 header does.
    #[error("302M access unit truncated: expected at least {expected} bytes, got {actual}")]
    Truncated { expected: usize, actual: usize },
    /// `audio_packet_size` disagrees with the bytes present.
    #[error("302M audio_packet_size says {declared} payload bytes but {actual} are present")]
    LengthMismatch { declared: usize, actual: usize },
    /// The payload is not a whole number of frames for the header's format.
    #[error("302M payload of {len} bytes is not a multiple of the {frame_len}-byte frame")]
    PartialPayload { len: usize, frame_len: usize },
}

/// The 4-byte AES3 header of a 302M access unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aes3Header {
    /// Payload bytes after the header.
    pub audio_packet_size: u16,
    /// Channels and word length.
    pub format: S302mFormat,
    /// `channel_identification` (8 bits); Estuary writes 0.
    pub channel_identification: u8,
}

impl Aes3Header {
    /// Parses the header at the start of `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, S302mError> {
        let head: [u8; AES3_HEADER_LEN] = bytes
            .get(..AES3_HEADER_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(S302mError::Truncated {
                expected: AES3_HEADER_LEN,
                actual: bytes.len(),
            })?;
        let h = u32::from_be_bytes(head);
        let channels = (((h >> 14) & 0x3) as u8 + 1) * 2;
        let bits_code = ((h >> 4) & 0x3) as u8;
        let bits = 16 + 4 * bits_code;
        let format = S302mFormat { channels, bits };
        format.validate()?;
        Ok(Self {
            audio_packet_size: (h >> 16) as u16,
            format,
            channel_identification: ((h >> 6) & 0xff) as u8,
        })
    }

    /// The header as it goes on the wire (alignment bits zero).
    pub fn to_bytes(self) -> [u8; AES3_HEADER_LEN] {
        let h = (u32::from(self.audio_packet_size) << 16)
            | (u32::from(self.format.channels / 2 - 1) << 14)
            | (u32::from(self.channel_identification) << 6)
            | (u32::from((self.format.bits - 16) / 4) << 4);
        h.to_be_bytes()
    }
}

/// Total access-unit length (header + payload) for `frames` sample periods.
pub fn packed_len(format: S302mFormat, frames: usize) -> usize {
    AES3_HEADER_LEN + frames * format.frame_len()
}

/// Packs interleaved MSB-aligned samples into one 302M access unit in `out`.
///
/// Returns the bytes written ([`packed_len`]). V, U and C bits are zero; the F bit (start of
/// an AES3 block) is set in the first subframe of each pair on frame 0, as if the unit started a 192-frame block. Use
/// [`pack_into_at`] to keep the block phase across units.
pub fn pack_into(
    format: S302mFormat,
    samples: &[i32],
    out: &mut [u8],
) -> Result<usize, S302mError> {
    pack_into_at(format, 0, samples, out)
}

/// Like [`pack_into`], with `frame_index` the stream position of the first frame, so the F bit
/// marks every 192nd frame (AES3 block start) across access units.
pub fn pack_into_at(
    format: S302mFormat,
    frame_index: u64,
    samples: &[i32],
    out: &mut [u8],
) -> Result<usize, S302mError> {
    format.validate()?;
    let channels = usize::from(format.channels);
    if samples.len().checked_rem(channels) != Some(0) {
        return Err(S302mError::PartialFrame {
            samples: samples.len(),
            channels: format.channels,
        });
    }
    let frames = samples.len() / channels;
    let payload_len = frames * format.frame_len();
    let audio_packet_size =
        u16::try_from(payload_len).map_err(|_| S302mError::TooLarge { len: payload_len })?;
    let needed = AES3_HEADER_LEN + payload_len;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(S302mError::BufferTooSmall { needed, available })?;
    let (head, payload) = out.split_at_mut(AES3_HEADER_LEN);
    head.copy_from_slice(
        &Aes3Header {
            audio_packet_size,
            format,
            channel_identification: 0,
        }
        .to_bytes(),
    );

    let n = u32::from(format.bits);
    let pair_len = format.pair_len();
    let pair_bits = 2 * n + 8;
    let mut block_phase = (frame_index % 192) as u32;
    for (frame, chunk) in samples
        .chunks_exact(channels)
        .zip(payload.chunks_exact_mut(format.frame_len()))
    {
        // F (the last of V, U, C, F, so bit 3 when sent LSB first) marks an AES3 block start.
        let vucf: u64 = if block_phase == 0 { 0x8 } else { 0 };
        for (pair, dst) in frame.chunks_exact(2).zip(chunk.chunks_exact_mut(pair_len)) {
            let (a, b) = match pair {
                [a, b] => (*a, *b),
                _ => continue,
            };
            let s0 = u64::from((a as u32) >> (32 - n));
            let s1 = u64::from((b as u32) >> (32 - n));
            // `w` holds the pair in transmission order, bit 0 first.
            // F goes on the first subframe only: an AES3 block starts at channel A (the Z
            // preamble), as FFmpeg's encoder writes it.
            let w = s0 | (vucf << n) | (s1 << (n + 4));
            // Bytes are filled MSB first: reverse the word, emit big-endian.
            let r = w.reverse_bits() >> (64 - pair_bits);
            let bytes = r.to_be_bytes();
            if let Some(src) = bytes.get(8 - pair_len..) {
                dst.copy_from_slice(src);
            }
        }
        block_phase = (block_phase + 1) % 192;
    }
    Ok(needed)
}

/// Unpacks one 302M access unit, appending interleaved MSB-aligned samples to `out`.
pub fn unpack_into(bytes: &[u8], out: &mut Vec<i32>) -> Result<S302mFormat, S302mError> {
    let header = Aes3Header::parse(bytes)?;
    let format = header.format;
    let payload = bytes.get(AES3_HEADER_LEN..).unwrap_or_default();
    let declared = usize::from(header.audio_packet_size);
    if declared != payload.len() {
        return Err(S302mError::LengthMismatch {
            declared,
            actual: payload.len(),
        });
    }
    let frame_len = format.frame_len();
    if payload.len().checked_rem(frame_len) != Some(0) {
        return Err(S302mError::PartialPayload {
            len: payload.len(),
            frame_len,
        });
    }
    let n = u32::from(format.bits);
    let pair_len = format.pair_len();
    let pair_bits = 2 * n + 8;
    let mask = (1u64 << n) - 1;
    out.reserve(payload.len() / pair_len * 2);
    for pair in payload.chunks_exact(pair_len) {
        let mut be = [0u8; 8];
        if let Some(dst) = be.get_mut(8 - pair_len..) {
            dst.copy_from_slice(pair);
        }
        let w = u64::from_be_bytes(be).reverse_bits() >> (64 - pair_bits);
        let s0 = (w & mask) as u32;
        let s1 = ((w >> (n + 4)) & mask) as u32;
        out.push((s0 << (32 - n)) as i32);
        out.push((s1 << (32 - n)) as i32);
    }
    Ok(format)
}

/// Unpacks one 302M access unit into its format and interleaved MSB-aligned samples.
pub fn unpack(bytes: &[u8]) -> Result<(S302mFormat, Vec<i32>), S302mError> {
    let mut samples = Vec::new();
    let format = unpack_into(bytes, &mut samples)?;
    Ok((format, samples))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fmt(channels: u8, bits: u8) -> S302mFormat {
        S302mFormat::new(channels, bits).expect("valid format")
    }

    #[test]
    fn header_fields_follow_302m_layout() {
        let h = Aes3Header {
            audio_packet_size: 0x1234,
            format: fmt(8, 24),
            channel_identification: 0,
        };
        // 8 channels -> 3 (bits 15..14), 24 bits -> 2 (bits 5..4).
        assert_eq!(h.to_bytes(), [0x12, 0x34, 0xc0, 0x20]);
        assert_eq!(Aes3Header::parse(&h.to_bytes()), Ok(h));
        let h16 = Aes3Header {
            audio_packet_size: 5,
            format: fmt(2, 16),
            channel_identification: 0xa5,
        };
        assert_eq!(Aes3Header::parse(&h16.to_bytes()), Ok(h16));
    }

    #[test]
    fn packed_len_counts_pairs() {
        assert_eq!(packed_len(fmt(2, 16), 1), 4 + 5);
        assert_eq!(packed_len(fmt(2, 20), 1), 4 + 6);
        assert_eq!(packed_len(fmt(2, 24), 1), 4 + 7);
        assert_eq!(packed_len(fmt(8, 24), 1920), 4 + 1920 * 28);
    }

    #[test]
    fn lsb_first_bit_order_24() {
        // Sample 0 = 1 (LSB set), sample 1 = 0: first bit on the wire is set.
        let mut out = [0u8; 11];
        let n = pack_into_at(fmt(2, 24), 1, &[1 << 8, 0], &mut out).expect("pack");
        assert_eq!(n, 11);
        assert_eq!(&out[4..], &[0x80, 0, 0, 0, 0, 0, 0]);
        // MSB of sample 1 is the last audio bit before its VUCF nibble.
        let n = pack_into_at(fmt(2, 24), 1, &[0, i32::MIN], &mut out).expect("pack");
        assert_eq!(n, 11);
        assert_eq!(&out[4..], &[0, 0, 0, 0, 0, 0, 0x10]);
    }

    #[test]
    fn f_bit_marks_block_start() {
        let mut out = [0u8; 11];
        pack_into(fmt(2, 24), &[0, 0], &mut out).expect("pack");
        // F of subframe 0 is wire bit 27 (0x10 in byte 3); subframe 1 carries none.
        assert_eq!(&out[4..], &[0, 0, 0, 0x10, 0, 0, 0]);
    }

    #[test]
    fn rejects_bad_input() {
        let mut out = [0u8; 64];
        assert_eq!(
            S302mFormat::new(3, 24),
            Err(S302mError::InvalidChannels { channels: 3 })
        );
        assert_eq!(
            S302mFormat::new(2, 18),
            Err(S302mError::InvalidBits { bits: 18 })
        );
        assert!(matches!(
            pack_into(fmt(4, 16), &[0; 6], &mut out),
            Err(S302mError::PartialFrame { .. })
        ));
        assert!(matches!(
            pack_into(fmt(2, 24), &[0; 20], &mut out),
            Err(S302mError::BufferTooSmall { needed: 74, .. })
        ));
        let big = vec![0; 2 * 10_000];
        let mut big_out = vec![0u8; 80_000];
        assert!(matches!(
            pack_into(fmt(2, 24), &big, &mut big_out),
            Err(S302mError::TooLarge { .. })
        ));
        assert!(matches!(unpack(&[0, 1]), Err(S302mError::Truncated { .. })));
        assert!(matches!(
            unpack(&[0, 7, 0, 0x20, 1, 2]),
            Err(S302mError::LengthMismatch { .. })
        ));
        assert!(matches!(
            unpack(&[0, 3, 0, 0x30, 1, 2, 3]),
            Err(S302mError::InvalidBits { bits: 28 })
        ));
        assert!(matches!(
            unpack(&[0, 3, 0, 0x20, 1, 2, 3]),
            Err(S302mError::PartialPayload { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn pack_unpack_round_trip(
            ch in prop::sample::select(vec![2u8, 4, 6, 8]),
            bits in prop::sample::select(vec![16u8, 20, 24]),
            frames in 0usize..200,
            index in any::<u64>(),
            seed in prop::collection::vec(any::<i32>(), 1..64),
        ) {
            let format = fmt(ch, bits);
            let samples: Vec<i32> = (0..frames * usize::from(ch))
                .map(|i| seed[i % seed.len()].wrapping_mul(i as i32 + 1) & !0xff)
                .collect();
            let mut out = vec![0u8; packed_len(format, frames)];
            let n = pack_into_at(format, index, &samples, &mut out).expect("pack");
            prop_assert_eq!(n, out.len());
            let (got_format, got) = unpack(&out).expect("unpack");
            prop_assert_eq!(got_format, format);
            let keep = !0u32 << (32 - u32::from(bits));
            let expected: Vec<i32> = samples.iter().map(|&s| (s as u32 & keep) as i32).collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn unpack_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = unpack(&bytes);
        }
    }
}
