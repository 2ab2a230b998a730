//! Decoders for the audio an SRT input carries in MPEG-TS: AAC-LC (ADTS), MPEG-1/2 layer I/II,
//! Opus and SMPTE 302M.
//!
//! AAC and MPEG audio go through Symphonia's pure-Rust decoders, Opus through the system
//! libopus (the library the Opus output already links), 302M through Estuary's own bit-exact
//! unpacker ([`estuary_wire::s302m`]). Each access unit (one PES payload, or one Opus packet)
//! may hold several frames; [`EsDecoder::decode`] appends all of them to `out` as interleaved
//! MSB-aligned `i32`, Estuary's internal format, and says the rate and channel count.
//!
//! A decoder error concerns one frame: it is counted and the next frame decodes normally.

use std::ffi::c_int;

use estuary_wire::audio_frames::{AdtsHeader, FrameSplitter, Framing, SplitterStats};
use estuary_wire::s302m;
use estuary_wire::ts::TsAudioKind;
use symphonia_core::audio::Channels;
use symphonia_core::codecs::audio::well_known::{CODEC_ID_AAC, CODEC_ID_MP2};
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration as Ticks, Timestamp};

/// The format of decoded audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcmFormat {
    pub sample_rate: u32,
    pub channels: usize,
}

/// Errors from creating a decoder or decoding a frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("no decoder for {0}")]
    Unsupported(String),
    #[error("{codec} frame: {message}")]
    Frame {
        codec: &'static str,
        message: String,
    },
}

/// Counters of an [`EsDecoder`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Frames decoded.
    pub frames: u64,
    /// Frames that failed to decode (their audio is missing; the gap is concealed).
    pub errors: u64,
    /// Framing: bytes skipped, unsupported headers.
    pub framing: SplitterStats,
}

/// One elementary stream's decoder.
pub struct EsDecoder {
    codec: Codec,
    stats: DecodeStats,
    scratch: Vec<i32>,
}

impl std::fmt::Debug for EsDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsDecoder")
            .field("codec", &self.name())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

enum Codec {
    Aac {
        splitter: FrameSplitter,
        /// The decoder and the (rate, channel configuration) it was made for.
        decoder: Option<(Box<dyn AudioDecoder>, u32, u8)>,
    },
    Mpa {
        splitter: FrameSplitter,
        decoder: Box<dyn AudioDecoder>,
    },
    Opus(OpusDecoder),
    S302m,
}

impl EsDecoder {
    /// A decoder for the stream the PMT describes.
    pub fn new(kind: TsAudioKind) -> Result<Self, DecodeError> {
        let codec = match kind {
            TsAudioKind::Aac => Codec::Aac {
                splitter: FrameSplitter::new(Framing::Adts),
                decoder: None,
            },
            TsAudioKind::Mp2 => {
                let mut params = AudioCodecParameters::new();
                params.for_codec(CODEC_ID_MP2);
                let decoder = symphonia_bundle_mp3::MpaDecoder::try_new(
                    &params,
                    &AudioDecoderOptions::default(),
                )
                .map_err(|e| DecodeError::Unsupported(format!("MPEG audio: {e}")))?;
                Codec::Mpa {
                    splitter: FrameSplitter::new(Framing::Mpa),
                    decoder: Box::new(decoder),
                }
            }
            TsAudioKind::Opus { channels } => {
                // channel_config_code 0 is dual mono; a PMT that does not say is taken as stereo.
                let channels = if channels == 1 { 1 } else { 2 };
                Codec::Opus(OpusDecoder::new(channels)?)
            }
            TsAudioKind::S302m => Codec::S302m,
            other => return Err(DecodeError::Unsupported(format!("{other:?}"))),
        };
        Ok(Self {
            codec,
            stats: DecodeStats::default(),
            scratch: Vec::with_capacity(8 * 2048),
        })
    }

    /// The codec's name, for the status.
    pub fn name(&self) -> &'static str {
        match self.codec {
            Codec::Aac { .. } => "aac",
            Codec::Mpa { .. } => "mp2",
            Codec::Opus(_) => "opus",
            Codec::S302m => "s302m",
        }
    }

    /// Whether decoding loses nothing (the drift buffer then keeps samples bit-exact).
    pub fn lossless(&self) -> bool {
        matches!(self.codec, Codec::S302m)
    }

    pub fn stats(&self) -> DecodeStats {
        let mut stats = self.stats;
        if let Codec::Aac { splitter, .. } | Codec::Mpa { splitter, .. } = &self.codec {
            stats.framing = splitter.stats();
        }
        stats
    }

    /// Forgets partial frames after a discontinuity (lost packets, a new connection).
    pub fn reset(&mut self) {
        match &mut self.codec {
            Codec::Aac { splitter, .. } | Codec::Mpa { splitter, .. } => splitter.reset(),
            Codec::Opus(_) | Codec::S302m => {}
        }
    }

    /// Decodes one access unit, calling `emit` with each decoded block (interleaved
    /// MSB-aligned samples and their format).
    pub fn decode(&mut self, unit: &[u8], mut emit: impl FnMut(&[i32], PcmFormat)) {
        let stats = &mut self.stats;
        let scratch = &mut self.scratch;
        match &mut self.codec {
            Codec::Aac { splitter, decoder } => {
                splitter.push(unit, |frame| match decode_adts(decoder, frame, scratch) {
                    Ok(format) => {
                        stats.frames += 1;
                        emit(scratch, format);
                    }
                    Err(_) => stats.errors += 1,
                })
            }
            Codec::Mpa { splitter, decoder } => {
                splitter.push(unit, |frame| {
                    match symphonia_decode(decoder.as_mut(), frame, 1152, scratch) {
                        Ok(format) => {
                            stats.frames += 1;
                            emit(scratch, format);
                        }
                        Err(_) => stats.errors += 1,
                    }
                })
            }
            Codec::Opus(opus) => match opus.decode(unit, scratch) {
                Ok(format) => {
                    stats.frames += 1;
                    emit(scratch, format);
                }
                Err(_) => stats.errors += 1,
            },
            Codec::S302m => {
                scratch.clear();
                match s302m::unpack_into(unit, scratch) {
                    Ok(format) => {
                        stats.frames += 1;
                        let format = PcmFormat {
                            sample_rate: s302m::SAMPLE_RATE,
                            channels: usize::from(format.channels),
                        };
                        emit(scratch, format);
                    }
                    Err(_) => stats.errors += 1,
                }
            }
        }
    }
}

/// Decodes one ADTS frame, (re)creating the AAC decoder when the stream's format changes.
fn decode_adts(
    decoder: &mut Option<(Box<dyn AudioDecoder>, u32, u8)>,
    frame: &[u8],
    out: &mut Vec<i32>,
) -> Result<PcmFormat, DecodeError> {
    let header = AdtsHeader::parse(frame).map_err(|e| aac_error(e.to_string()))?;
    if header.object_type != 2 {
        return Err(aac_error(format!(
            "audio object type {} (only AAC-LC is decoded)",
            header.object_type
        )));
    }
    let key = (header.sample_rate, header.channel_configuration);
    if decoder.as_ref().map(|(_, r, c)| (*r, *c)) != Some(key) {
        let channels = match header.channel_configuration {
            1 => Channels::Discrete(1),
            2 => Channels::Discrete(2),
            other => return Err(aac_error(format!("channel configuration {other}"))),
        };
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_sample_rate(header.sample_rate)
            .with_channels(channels);
        let made =
            symphonia_codec_aac::AacDecoder::try_new(&params, &AudioDecoderOptions::default())
                .map_err(|e| aac_error(e.to_string()))?;
        *decoder = Some((Box::new(made), key.0, key.1));
    }
    let Some((aac, _, _)) = decoder.as_mut() else {
        return Err(aac_error("no decoder".into()));
    };
    let raw = frame.get(header.header_length..).unwrap_or_default();
    symphonia_decode(aac.as_mut(), raw, 1024, out)
}

fn aac_error(message: String) -> DecodeError {
    DecodeError::Frame {
        codec: "aac",
        message,
    }
}

fn symphonia_decode(
    decoder: &mut dyn AudioDecoder,
    data: &[u8],
    frames: u64,
    out: &mut Vec<i32>,
) -> Result<PcmFormat, DecodeError> {
    let packet = PacketRef::new(0, Timestamp::new(0), Ticks::new(frames), data);
    let decoded = decoder
        .decode_ref(&packet)
        .map_err(|e| DecodeError::Frame {
            codec: "symphonia",
            message: e.to_string(),
        })?;
    let format = PcmFormat {
        sample_rate: decoded.spec().rate(),
        channels: decoded.spec().channels().count(),
    };
    decoded.copy_to_vec_interleaved::<i32>(out);
    Ok(format)
}

mod opus_ffi {
    use std::ffi::c_int;

    /// Opaque `OpusDecoder`.
    #[repr(C)]
    pub(super) struct OpusDecoder {
        _private: [u8; 0],
    }

    // Linked by build.rs (pkg-config `opus`).
    unsafe extern "C" {
        pub(super) fn opus_decoder_create(
            fs: i32,
            channels: c_int,
            error: *mut c_int,
        ) -> *mut OpusDecoder;
        pub(super) fn opus_decode_float(
            st: *mut OpusDecoder,
            data: *const u8,
            len: i32,
            pcm: *mut f32,
            frame_size: c_int,
            decode_fec: c_int,
        ) -> c_int;
        pub(super) fn opus_decoder_destroy(st: *mut OpusDecoder);
    }
}

/// Longest Opus packet: 120 ms at 48 kHz (RFC 6716 §3.2.5).
const OPUS_MAX_FRAMES: usize = 5760;

/// A libopus decoder at 48 kHz.
struct OpusDecoder {
    state: std::ptr::NonNull<opus_ffi::OpusDecoder>,
    channels: usize,
    pcm: Vec<f32>,
}

// SAFETY: the decoder state is owned by this value and only used through `&mut self`; libopus
// decoder state has no thread affinity.
unsafe impl Send for OpusDecoder {}

impl OpusDecoder {
    fn new(channels: usize) -> Result<Self, DecodeError> {
        let mut error: c_int = 0;
        // SAFETY: plain constructor call; `error` is a valid out pointer.
        let raw = unsafe { opus_ffi::opus_decoder_create(48_000, channels as c_int, &mut error) };
        let state = std::ptr::NonNull::new(raw)
            .filter(|_| error == 0)
            .ok_or_else(|| DecodeError::Unsupported(format!("libopus decoder (error {error})")))?;
        Ok(Self {
            state,
            channels,
            pcm: vec![0.0; OPUS_MAX_FRAMES * channels],
        })
    }

    fn decode(&mut self, packet: &[u8], out: &mut Vec<i32>) -> Result<PcmFormat, DecodeError> {
        let len = i32::try_from(packet.len()).map_err(|_| opus_error(-1))?;
        // SAFETY: `state` is a live decoder; `packet` is readable for `len` bytes; `pcm` holds
        // OPUS_MAX_FRAMES frames of `channels` floats, the frame_size we pass.
        let frames = unsafe {
            opus_ffi::opus_decode_float(
                self.state.as_ptr(),
                packet.as_ptr(),
                len,
                self.pcm.as_mut_ptr(),
                OPUS_MAX_FRAMES as c_int,
                0,
            )
        };
        let frames = usize::try_from(frames).map_err(|_| opus_error(frames))?;
        out.clear();
        out.extend(self.pcm[..frames * self.channels].iter().map(|&s| {
            (f64::from(s) * 2_147_483_648.0).clamp(-2_147_483_648.0, 2_147_483_647.0) as i32
        }));
        Ok(PcmFormat {
            sample_rate: 48_000,
            channels: self.channels,
        })
    }
}

fn opus_error(code: c_int) -> DecodeError {
    DecodeError::Frame {
        codec: "opus",
        message: format!("libopus error {code}"),
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create and destroyed exactly once.
        unsafe { opus_ffi::opus_decoder_destroy(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s302m_decodes_bit_exact() {
        let format = s302m::S302mFormat::new(2, 24).expect("format");
        let samples: Vec<i32> = (0..96).map(|i| (i * 65_537) << 8).collect();
        let mut unit = vec![0; s302m::packed_len(format, 48)];
        s302m::pack_into(format, &samples, &mut unit).expect("pack");
        let mut decoder = EsDecoder::new(TsAudioKind::S302m).expect("decoder");
        let mut got = Vec::new();
        decoder.decode(&unit, |s, f| {
            assert_eq!(
                f,
                PcmFormat {
                    sample_rate: 48_000,
                    channels: 2
                }
            );
            got.extend_from_slice(s);
        });
        assert_eq!(got, samples);
        assert!(decoder.lossless());
    }

    #[test]
    fn opus_round_trip_through_libopus() {
        let mut encoder = crate::opus::OpusEncoder::new(48_000, 2, 128_000).expect("encoder");
        let mut decoder = EsDecoder::new(TsAudioKind::Opus { channels: 2 }).expect("decoder");
        let frame = encoder.frame_samples();
        let mut packet = vec![0; crate::opus::MAX_PACKET_SIZE];
        let mut decoded = 0;
        for _ in 0..10 {
            let pcm: Vec<i32> = (0..frame * 2)
                .map(|i| ((i as f64 * 0.05).sin() * 1e9) as i32)
                .collect();
            let n = encoder.encode(&pcm, &mut packet).expect("encode");
            decoder.decode(&packet[..n], |s, f| {
                assert_eq!(f.channels, 2);
                decoded += s.len();
            });
        }
        assert_eq!(decoded, 10 * frame * 2);
        assert_eq!(decoder.stats().errors, 0);
    }

    #[test]
    fn garbage_counts_errors_without_panicking() {
        for kind in [
            TsAudioKind::Aac,
            TsAudioKind::Mp2,
            TsAudioKind::S302m,
            TsAudioKind::Opus { channels: 2 },
        ] {
            let mut decoder = EsDecoder::new(kind).expect("decoder");
            let garbage: Vec<u8> = (0..3000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect();
            decoder.decode(&garbage, |_, _| {});
            decoder.decode(
                &[0xff, 0xf1, 0x4c, 0x80, 0x02, 0x1f, 0xfc, 1, 2, 3],
                |_, _| {},
            );
        }
        assert!(EsDecoder::new(TsAudioKind::Unknown(0x81)).is_err());
    }
}
