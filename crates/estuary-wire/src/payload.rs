//! AES67 / ST 2110-30 / ST 2110-31 linear PCM payloads (RFC 3551 §4.5.11 L16, RFC 3190 L24,
//! L32, and AM824 per ST 2110-31).
//!
//! Samples inside Estuary are `i32`, MSB-aligned: full scale is the whole `i32` range, so an
//! L16 sample `v` becomes `v << 16` and an L24 sample `v << 8`. Payload samples are
//! big-endian and interleaved by frame (one sample per channel). Encoding truncates the low
//! bits that the format cannot carry.
//!
//! The decode and encode loops walk `chunks_exact` pairs, so after the length checks at the
//! top no access can go out of bounds, and nothing allocates.

// `usize::is_multiple_of` needs Rust 1.87; the workspace declares rust-version 1.85.

/// Sample format of an RTP audio payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SampleFormat {
    /// 16-bit big-endian two's complement (RFC 3551 §4.5.11).
    L16,
    /// 24-bit big-endian two's complement (RFC 3190 §4).
    L24,
    /// 32-bit big-endian two's complement.
    L32,
    /// AM824 (ST 2110-31): one flag byte (IEC 60958 B/F/P/C/U/V) then 24-bit audio.
    Am824,
}

/// AM824 flag bits in the first byte of each 4-byte subframe (ST 2110-31, after the
/// IEC 61883-6 IEC 60958-conformant label): block start, frame start, parity, channel
/// status, user data, validity.
pub mod am824_flags {
    /// B: first subframe(s) of an IEC 60958 block (every 192 frames).
    pub const B: u8 = 0x20;
    /// F: first subframe of a frame.
    pub const F: u8 = 0x10;
    /// P: parity bit.
    pub const P: u8 = 0x08;
    /// C: channel status bit.
    pub const C: u8 = 0x04;
    /// U: user data bit.
    pub const U: u8 = 0x02;
    /// V: validity bit.
    pub const V: u8 = 0x01;
}

/// Frames in one IEC 60958 block (the channel-status block period).
pub const IEC60958_BLOCK_FRAMES: u64 = 192;

impl SampleFormat {
    /// Bytes one sample of one channel occupies on the wire.
    pub const fn bytes_per_sample(self) -> usize {
        match self {
            SampleFormat::L16 => 2,
            SampleFormat::L24 => 3,
            SampleFormat::L32 | SampleFormat::Am824 => 4,
        }
    }

    /// Maps an SDP `a=rtpmap` encoding name (case-insensitive) to a format.
    pub fn from_encoding_name(name: &str) -> Option<SampleFormat> {
        [
            SampleFormat::L16,
            SampleFormat::L24,
            SampleFormat::L32,
            SampleFormat::Am824,
        ]
        .into_iter()
        .find(|f| f.encoding_name().eq_ignore_ascii_case(name))
    }

    /// The canonical SDP encoding name ("L16", "L24", "L32", "AM824").
    pub const fn encoding_name(self) -> &'static str {
        match self {
            SampleFormat::L16 => "L16",
            SampleFormat::L24 => "L24",
            SampleFormat::L32 => "L32",
            SampleFormat::Am824 => "AM824",
        }
    }
}

/// Why a payload cannot be decoded or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// `channels` was zero.
    #[error("channel count must be at least 1")]
    ZeroChannels,
    /// The payload is not a whole number of frames.
    #[error("payload of {len} bytes is not a whole number of {frame_size}-byte frames")]
    PartialFrame {
        /// Payload length in bytes.
        len: usize,
        /// Bytes per frame (channels × bytes per sample).
        frame_size: usize,
    },
    /// The output buffer cannot hold the result.
    #[error("output buffer too small: need {needed}, have {available}")]
    OutputTooSmall {
        /// Elements (samples or bytes) needed.
        needed: usize,
        /// Elements available.
        available: usize,
    },
}

/// Decodes an interleaved big-endian payload into MSB-aligned `i32` samples.
///
/// Returns the number of frames decoded; `out[..frames * channels]` is written.
pub fn decode_into(
    format: SampleFormat,
    channels: u16,
    payload: &[u8],
    out: &mut [i32],
) -> Result<usize, PayloadError> {
    if channels == 0 {
        return Err(PayloadError::ZeroChannels);
    }
    let bps = format.bytes_per_sample();
    let frame_size = bps * usize::from(channels);
    if !payload.len().is_multiple_of(frame_size) {
        return Err(PayloadError::PartialFrame {
            len: payload.len(),
            frame_size,
        });
    }
    let samples = payload.len() / bps;
    let available = out.len();
    let out = out.get_mut(..samples).ok_or(PayloadError::OutputTooSmall {
        needed: samples,
        available,
    })?;
    match format {
        SampleFormat::L16 => {
            for (o, c) in out.iter_mut().zip(payload.chunks_exact(2)) {
                if let [a, b] = *c {
                    *o = i32::from(i16::from_be_bytes([a, b])) << 16;
                }
            }
        }
        SampleFormat::L24 => {
            for (o, c) in out.iter_mut().zip(payload.chunks_exact(3)) {
                if let [a, b, d] = *c {
                    *o = i32::from_be_bytes([a, b, d, 0]);
                }
            }
        }
        SampleFormat::L32 => {
            for (o, c) in out.iter_mut().zip(payload.chunks_exact(4)) {
                if let [a, b, d, e] = *c {
                    *o = i32::from_be_bytes([a, b, d, e]);
                }
            }
        }
        SampleFormat::Am824 => {
            // Byte 0 carries the flags; the audio is the 24 bits after it, MSB first.
            for (o, c) in out.iter_mut().zip(payload.chunks_exact(4)) {
                if let [_flags, a, b, d] = *c {
                    *o = i32::from_be_bytes([a, b, d, 0]);
                }
            }
        }
    }
    Ok(samples / usize::from(channels))
}

/// Encodes MSB-aligned `i32` samples into a big-endian payload, truncating the low bits.
///
/// For AM824 every flag byte is 0; use [`encode_am824_into`] for IEC 60958 block framing.
/// Returns the number of bytes written.
pub fn encode_into(
    format: SampleFormat,
    samples: &[i32],
    out: &mut [u8],
) -> Result<usize, PayloadError> {
    let bps = format.bytes_per_sample();
    let needed = samples.len() * bps;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(PayloadError::OutputTooSmall { needed, available })?;
    match format {
        SampleFormat::L16 => {
            for (c, s) in out.chunks_exact_mut(2).zip(samples) {
                c.copy_from_slice(&((s >> 16) as i16).to_be_bytes());
            }
        }
        SampleFormat::L24 => {
            // Four samples make 12 bytes at once: byte by byte, this was a tenth of an
            // AES67 sender's CPU.
            let mut quads = samples.chunks_exact(4);
            let mut out12 = out.chunks_exact_mut(12);
            for (c, q) in (&mut out12).zip(&mut quads) {
                let top = |s: i32| u128::from(s as u32 >> 8);
                let packed =
                    (top(q[0]) << 104) | (top(q[1]) << 80) | (top(q[2]) << 56) | (top(q[3]) << 32);
                c.copy_from_slice(&packed.to_be_bytes()[..12]);
            }
            let rest = out12.into_remainder();
            for (c, s) in rest.chunks_exact_mut(3).zip(quads.remainder()) {
                let [a, b, d, _] = s.to_be_bytes();
                c.copy_from_slice(&[a, b, d]);
            }
        }
        SampleFormat::L32 => {
            for (c, s) in out.chunks_exact_mut(4).zip(samples) {
                c.copy_from_slice(&s.to_be_bytes());
            }
        }
        SampleFormat::Am824 => {
            for (c, s) in out.chunks_exact_mut(4).zip(samples) {
                let [a, b, d, _] = s.to_be_bytes();
                c.copy_from_slice(&[0, a, b, d]);
            }
        }
    }
    Ok(needed)
}

/// Encodes AM824 subframes with IEC 60958 framing flags: F on the first subframe of every
/// frame and B on the subframes of every frame whose index (counted from `first_frame`) is a
/// multiple of 192. P, C, U and V are 0 (no channel status, valid audio).
///
/// `samples` must be a whole number of frames. Returns the number of bytes written.
pub fn encode_am824_into(
    channels: u16,
    first_frame: u64,
    samples: &[i32],
    out: &mut [u8],
) -> Result<usize, PayloadError> {
    if channels == 0 {
        return Err(PayloadError::ZeroChannels);
    }
    let ch = usize::from(channels);
    if !samples.len().is_multiple_of(ch) {
        return Err(PayloadError::PartialFrame {
            len: samples.len() * 4,
            frame_size: ch * 4,
        });
    }
    let needed = samples.len() * 4;
    let available = out.len();
    let out = out
        .get_mut(..needed)
        .ok_or(PayloadError::OutputTooSmall { needed, available })?;
    for (i, (oframe, sframe)) in out
        .chunks_exact_mut(4 * ch)
        .zip(samples.chunks_exact(ch))
        .enumerate()
    {
        let frame = first_frame.wrapping_add(i as u64);
        let block = if frame.is_multiple_of(IEC60958_BLOCK_FRAMES) {
            am824_flags::B
        } else {
            0
        };
        for (j, (c, s)) in oframe.chunks_exact_mut(4).zip(sframe).enumerate() {
            let flags = block | if j == 0 { am824_flags::F } else { 0 };
            let [a, b, d, _] = s.to_be_bytes();
            c.copy_from_slice(&[flags, a, b, d]);
        }
    }
    Ok(needed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            SampleFormat::from_encoding_name("l24"),
            Some(SampleFormat::L24)
        );
        assert_eq!(
            SampleFormat::from_encoding_name("Am824"),
            Some(SampleFormat::Am824)
        );
        assert_eq!(SampleFormat::from_encoding_name("L8"), None);
        assert_eq!(SampleFormat::L32.encoding_name(), "L32");
    }

    #[test]
    fn extremes() {
        let mut out = [0i32; 4];
        let p16 = [0x7f, 0xff, 0x80, 0x00, 0xff, 0xff, 0x00, 0x01];
        assert_eq!(decode_into(SampleFormat::L16, 2, &p16, &mut out), Ok(2));
        assert_eq!(out, [0x7fff_0000, i32::MIN, -0x1_0000, 0x1_0000]);
        let p24 = [0x7f, 0xff, 0xff, 0x80, 0x00, 0x00];
        assert_eq!(decode_into(SampleFormat::L24, 1, &p24, &mut out), Ok(2));
        assert_eq!(&out[..2], &[0x7fff_ff00, i32::MIN]);
        let am = [0x30, 0x80, 0x00, 0x00, 0x20, 0x00, 0x00, 0x01];
        assert_eq!(decode_into(SampleFormat::Am824, 2, &am, &mut out), Ok(1));
        assert_eq!(&out[..2], &[i32::MIN, 0x100]);
        let mut bytes = [0u8; 8];
        assert_eq!(
            encode_into(SampleFormat::L16, &[i32::MAX, i32::MIN], &mut bytes),
            Ok(4)
        );
        assert_eq!(&bytes[..4], &[0x7f, 0xff, 0x80, 0x00]);
        assert_eq!(encode_into(SampleFormat::L24, &[-1], &mut bytes), Ok(3));
        assert_eq!(&bytes[..3], &[0xff, 0xff, 0xff]);
    }

    #[test]
    fn errors() {
        let mut out = [0i32; 2];
        assert_eq!(
            decode_into(SampleFormat::L24, 2, &[0; 5], &mut out),
            Err(PayloadError::PartialFrame {
                len: 5,
                frame_size: 6
            })
        );
        assert_eq!(
            decode_into(SampleFormat::L16, 1, &[0; 6], &mut out),
            Err(PayloadError::OutputTooSmall {
                needed: 3,
                available: 2
            })
        );
        assert_eq!(
            decode_into(SampleFormat::L16, 0, &[], &mut out),
            Err(PayloadError::ZeroChannels)
        );
        assert_eq!(
            encode_into(SampleFormat::L32, &[1, 2], &mut [0u8; 7]),
            Err(PayloadError::OutputTooSmall {
                needed: 8,
                available: 7
            })
        );
    }

    #[test]
    fn am824_block_flags() {
        let mut out = [0u8; 16];
        // 2 frames of stereo starting at frame 191: frame 192 starts a block.
        assert_eq!(
            encode_am824_into(2, 191, &[1 << 8, 2 << 8, 3 << 8, 4 << 8], &mut out),
            Ok(16)
        );
        assert_eq!(out[0], am824_flags::F);
        assert_eq!(out[4], 0);
        assert_eq!(out[8], am824_flags::B | am824_flags::F);
        assert_eq!(out[12], am824_flags::B);
        assert_eq!(&out[13..16], &[0, 0, 4]);
        let mut back = [0i32; 4];
        assert_eq!(decode_into(SampleFormat::Am824, 2, &out, &mut back), Ok(2));
        assert_eq!(back, [1 << 8, 2 << 8, 3 << 8, 4 << 8]);
    }
}
