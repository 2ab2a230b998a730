//! The Dante audio datagram (unicast flows and multicast bundles alike): a 9-byte header
//! with the media time of the first frame, then big-endian PCM interleaved frame by frame.
//!
//! Samples are exchanged as left-justified `i32`, as everywhere in Estuary: a 24-bit sample
//! `v` is `v << 8`, a 16-bit one `v << 16`.

use super::DanteError;

/// Bytes before the samples.
pub const HEADER_LEN: usize = 9;
/// The first byte; its meaning is unknown and receivers ignore it.
const MARKER: u8 = 0x02;

/// Media time of a packet's first frame, split as devices send it: whole seconds and the
/// sample index within the second, both at the flow's sample rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioHeader {
    pub seconds: u32,
    pub subsec: u32,
}

impl AudioHeader {
    /// Splits media time `t` (samples since the PTP epoch). The seconds wrap at 2³², as on
    /// the wire.
    pub fn from_media_time(t: u64, sample_rate: u32) -> AudioHeader {
        let rate = u64::from(sample_rate.max(1));
        AudioHeader {
            seconds: (t / rate) as u32,
            subsec: (t % rate) as u32,
        }
    }

    /// The media time in samples (modulo 2³² seconds). A sample index that is not within
    /// one second is invalid.
    pub fn media_time(&self, sample_rate: u32) -> Result<u64, DanteError> {
        if self.subsec >= sample_rate {
            return Err(DanteError::Invalid {
                field: "sample index",
                value: u64::from(self.subsec),
            });
        }
        Ok(u64::from(self.seconds) * u64::from(sample_rate) + u64::from(self.subsec))
    }
}

/// A parsed audio datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioPacket<'a> {
    pub header: AudioHeader,
    pub payload: &'a [u8],
}

impl<'a> AudioPacket<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<AudioPacket<'a>, DanteError> {
        let head = bytes.get(..HEADER_LEN).ok_or(DanteError::Truncated {
            expected: HEADER_LEN,
            actual: bytes.len(),
        })?;
        Ok(AudioPacket {
            header: AudioHeader {
                seconds: u32::from_be_bytes([head[1], head[2], head[3], head[4]]),
                subsec: u32::from_be_bytes([head[5], head[6], head[7], head[8]]),
            },
            payload: &bytes[HEADER_LEN..],
        })
    }

    /// Frames in the packet for a flow of `channels` slots of `bytes_per_sample`; the
    /// payload must hold whole frames.
    pub fn frames(&self, channels: usize, bytes_per_sample: usize) -> Result<usize, DanteError> {
        let frame = check_width(bytes_per_sample)?
            .checked_mul(channels)
            .filter(|&f| f > 0)
            .ok_or(DanteError::Invalid {
                field: "channels",
                value: channels as u64,
            })?;
        if !self.payload.len().is_multiple_of(frame) {
            return Err(DanteError::Invalid {
                field: "payload length",
                value: self.payload.len() as u64,
            });
        }
        Ok(self.payload.len() / frame)
    }

    /// Decodes every sample into `out` (interleaved, left-justified) and returns how many.
    /// `out` must hold them all.
    pub fn decode_into(
        &self,
        bytes_per_sample: usize,
        out: &mut [i32],
    ) -> Result<usize, DanteError> {
        let width = check_width(bytes_per_sample)?;
        let count = self.payload.len() / width;
        let available = out.len();
        let out = out.get_mut(..count).ok_or(DanteError::Truncated {
            expected: count,
            actual: available,
        })?;
        for (o, b) in out.iter_mut().zip(self.payload.chunks_exact(width)) {
            let mut word = [0u8; 4];
            word[..width].copy_from_slice(b);
            *o = i32::from_be_bytes(word);
        }
        Ok(count)
    }
}

fn check_width(bytes_per_sample: usize) -> Result<usize, DanteError> {
    match bytes_per_sample {
        2..=4 => Ok(bytes_per_sample),
        other => Err(DanteError::Invalid {
            field: "bytes per sample",
            value: other as u64,
        }),
    }
}

/// Appends an audio datagram to `out`: the header, then `samples` (interleaved,
/// left-justified) cut to `bytes_per_sample` big-endian bytes each.
pub fn write(
    header: AudioHeader,
    samples: &[i32],
    bytes_per_sample: usize,
    out: &mut Vec<u8>,
) -> Result<(), DanteError> {
    let width = check_width(bytes_per_sample)?;
    out.reserve(HEADER_LEN + samples.len() * width);
    out.push(MARKER);
    out.extend_from_slice(&header.seconds.to_be_bytes());
    out.extend_from_slice(&header.subsec.to_be_bytes());
    for s in samples {
        out.extend_from_slice(&s.to_be_bytes()[..width]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_spec_example_packet_size() {
        // 8 channels × 24-bit × 32 frames = 777 bytes.
        let samples = vec![0i32; 8 * 32];
        let mut out = Vec::new();
        write(
            AudioHeader::from_media_time(96_001, 48_000),
            &samples,
            3,
            &mut out,
        )
        .expect("w");
        assert_eq!(out.len(), 777);
        let p = AudioPacket::parse(&out).expect("parses");
        assert_eq!(
            p.header,
            AudioHeader {
                seconds: 2,
                subsec: 1
            }
        );
        assert_eq!(p.header.media_time(48_000), Ok(96_001));
        assert_eq!(p.frames(8, 3), Ok(32));
        assert!(p.frames(7, 3).is_err());
    }

    #[test]
    fn a_sample_index_past_the_second_is_invalid() {
        let h = AudioHeader {
            seconds: 0,
            subsec: 48_000,
        };
        assert!(h.media_time(48_000).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), width in 0usize..6) {
            if let Ok(p) = AudioPacket::parse(&bytes) {
                let _ = p.header.media_time(48_000);
                let _ = p.frames(2, width);
                let mut out = [0i32; 256];
                let _ = p.decode_into(width, &mut out);
            }
        }

        #[test]
        fn samples_round_trip_at_each_width(raw in proptest::collection::vec(any::<i32>(), 0..128), width in 2usize..=4, t in any::<u32>()) {
            let shift = 8 * (4 - width) as u32;
            // Only the top `width` bytes survive.
            let samples: Vec<i32> = raw.iter().map(|&v| (v >> shift) << shift).collect();
            let header = AudioHeader::from_media_time(u64::from(t), 48_000);
            let mut out = Vec::new();
            write(header, &samples, width, &mut out).expect("w");
            let p = AudioPacket::parse(&out).expect("parses");
            let mut back = vec![0i32; samples.len()];
            prop_assert_eq!(p.decode_into(width, &mut back), Ok(samples.len()));
            prop_assert_eq!(back, samples);
            prop_assert_eq!(p.header.media_time(48_000), Ok(u64::from(t)));
        }
    }
}
