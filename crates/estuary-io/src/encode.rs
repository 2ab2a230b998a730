//! Compressed audio for the network outputs (Icecast, RTMP, HTTP listen-in): MP3, AAC-LC,
//! Opus and FLAC, muxed as the listener expects them (raw MP3, ADTS, Ogg, FLV).
//!
//! The encoders are FFmpeg's, through `ac-ffmpeg` over Debian's FFmpeg 5.1 libraries:
//! `libmp3lame` for MP3, FFmpeg's native `aac` for AAC-LC (the only AAC encoder usable under
//! GPL-3.0; FDK-AAC is GPL-incompatible), `libopus` and the native `flac`. `libswresample`
//! converts the sample format and, when the output's rate differs from the input's, the rate
//! (48 kHz → 44.1 kHz for MP3, say); FFmpeg's muxers write the containers.
//!
//! Input is Estuary's internal format: interleaved, MSB-aligned `i32` at the input's rate,
//! already reduced to the output's channels. Output bytes are appended to a `Vec` the caller
//! drains; nothing here touches a socket.

use std::fmt;

use ac_ffmpeg::codec::audio::{
    AudioEncoder, AudioFrameMut, AudioResampler, ChannelLayout, SampleFormat,
};
use ac_ffmpeg::codec::{Encoder as _, audio};
use ac_ffmpeg::format::io::{IO, MemWriter};
use ac_ffmpeg::format::muxer::{Muxer, OutputFormat};
use ac_ffmpeg::time::{TimeBase, Timestamp};

/// A compressed audio format and its container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// MPEG-1/2 Layer III, raw frames (`audio/mpeg`).
    Mp3,
    /// AAC-LC in ADTS (`audio/aac`).
    Aac,
    /// Opus in Ogg (`audio/ogg`), always at 48 kHz.
    Opus,
    /// FLAC in Ogg (`audio/ogg`), 16-bit, or 24-bit when the input carries more than 16.
    Flac,
    /// AAC-LC in FLV, for RTMP publishing.
    FlvAac,
}

impl Codec {
    /// The HTTP `Content-Type` a listener (or Icecast) expects.
    pub fn content_type(self) -> &'static str {
        match self {
            Codec::Mp3 => "audio/mpeg",
            Codec::Aac => "audio/aac",
            Codec::Opus | Codec::Flac => "audio/ogg",
            Codec::FlvAac => "video/x-flv",
        }
    }

    /// Whether the stream carries its title in-band (Ogg comments), so a title change starts
    /// a new chained stream rather than going through Icecast's admin interface.
    pub fn is_ogg(self) -> bool {
        matches!(self, Codec::Opus | Codec::Flac)
    }

    /// The sample rates the codec (and its container) can carry.
    pub fn supports_rate(self, rate: u32) -> bool {
        match self {
            Codec::Mp3 => [32_000, 44_100, 48_000].contains(&rate),
            Codec::Opus => rate == 48_000,
            Codec::Aac | Codec::FlvAac => {
                [22_050, 24_000, 32_000, 44_100, 48_000, 88_200, 96_000].contains(&rate)
            }
            Codec::Flac => (8_000..=192_000).contains(&rate),
        }
    }

    fn encoder_name(self) -> &'static str {
        match self {
            Codec::Mp3 => "libmp3lame",
            Codec::Aac | Codec::FlvAac => "aac",
            Codec::Opus => "libopus",
            Codec::Flac => "flac",
        }
    }

    /// The encoder's sample format; FLAC's follows the input's bits (FFmpeg 5.1 encodes
    /// `s32` as 24-bit FLAC, the most it writes).
    fn sample_format(self, input_bits: u8) -> &'static str {
        match self {
            Codec::Mp3 | Codec::Aac | Codec::FlvAac => "fltp",
            Codec::Opus => "flt",
            Codec::Flac if input_bits > 16 => "s32",
            Codec::Flac => "s16",
        }
    }

    fn muxer_name(self) -> &'static str {
        match self {
            Codec::Mp3 => "mp3",
            Codec::Aac => "adts",
            Codec::Opus | Codec::Flac => "ogg",
            Codec::FlvAac => "flv",
        }
    }
}

/// What one output encodes.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub codec: Codec,
    /// Bits per second (ignored by FLAC).
    pub bitrate: u32,
    pub input_rate: u32,
    pub output_rate: u32,
    pub channels: u16,
    /// Significant bits of the input (L16: 16, L24 and AM824: 24); lossless FLAC keeps them.
    pub input_bits: u8,
    /// The stream title written into Ogg comments (ignored by the other containers).
    pub title: Option<String>,
}

/// Why an encoder could not be built or fed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EncodeError(pub String);

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EncodeError {}

fn ff(context: &'static str) -> impl Fn(ac_ffmpeg::Error) -> EncodeError {
    move |e| EncodeError(format!("{context}: {e}"))
}

/// Resampler, encoder and muxer of one output stream.
pub struct StreamEncoder {
    config: EncoderConfig,
    resampler: AudioResampler,
    encoder: AudioEncoder,
    muxer: Muxer<MemWriter>,
    in_layout: ChannelLayout,
    in_format: SampleFormat,
    /// Input frames pushed, the input side's presentation time.
    frames_in: i64,
}

impl fmt::Debug for StreamEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncoder")
            .field("config", &self.config)
            .field("frames_in", &self.frames_in)
            .finish_non_exhaustive()
    }
}

impl StreamEncoder {
    /// Builds the chain and writes the container header into `out`.
    pub fn new(config: EncoderConfig, out: &mut Vec<u8>) -> Result<Self, EncodeError> {
        let codec = config.codec;
        if !codec.supports_rate(config.output_rate) {
            return Err(EncodeError(format!(
                "{codec:?} cannot carry {} Hz",
                config.output_rate
            )));
        }
        let layout = ChannelLayout::from_channels(u32::from(config.channels))
            .ok_or_else(|| EncodeError(format!("no layout for {} channels", config.channels)))?;
        let target_format = audio::frame::get_sample_format(codec.sample_format(config.input_bits));
        let mut builder = AudioEncoder::builder(codec.encoder_name())
            .map_err(ff("encoder"))?
            .sample_format(target_format)
            .sample_rate(config.output_rate)
            .channel_layout(layout.clone())
            .time_base(TimeBase::new(1, config.output_rate as i32));
        if codec != Codec::Flac {
            builder = builder.bit_rate(u64::from(config.bitrate));
        } else if config.input_bits > 16 {
            builder = builder.set_option("bits_per_raw_sample", "24");
        }
        let encoder = builder.build().map_err(ff("encoder"))?;
        let in_format = audio::frame::get_sample_format("s32");
        let resampler = AudioResampler::builder()
            .source_channel_layout(layout.clone())
            .source_sample_format(in_format)
            .source_sample_rate(config.input_rate)
            .target_channel_layout(layout.clone())
            .target_sample_format(target_format)
            .target_sample_rate(config.output_rate)
            .target_frame_samples(encoder.samples_per_frame())
            .build()
            .map_err(ff("resampler"))?;
        let mut mux = Muxer::builder()
            // Every packet goes out at once: a listener should not wait on a 4 KiB buffer.
            .set_option("flush_packets", "1");
        if codec == Codec::Mp3 {
            // No ID3 tag: a listener joining a live stream never sees the start anyway.
            mux = mux.set_option("id3v2_version", "0");
        }
        if codec.is_ogg() {
            // Short pages: Icecast forwards whole pages, so this bounds the added latency.
            mux = mux.set_option("page_duration", "100000");
        }
        mux.add_stream(&encoder.codec_parameters().into())
            .map_err(ff("muxer"))?;
        if let Some(title) = &config.title {
            let title = title.replace('\0', "");
            mux.streams_mut()[0].set_metadata("title", &title);
            mux = mux.set_metadata("title", &title);
        }
        let format = OutputFormat::find_by_name(codec.muxer_name())
            .ok_or_else(|| EncodeError(format!("no {} muxer", codec.muxer_name())))?;
        let muxer = mux
            .build(IO::from_write_stream(MemWriter::default()), format)
            .map_err(ff("muxer"))?;
        let mut this = Self {
            config,
            resampler,
            encoder,
            muxer,
            in_layout: layout,
            in_format,
            frames_in: 0,
        };
        this.drain_output(out);
        Ok(this)
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Encodes `interleaved` (frames × channels, MSB-aligned) and appends what the muxer
    /// wrote to `out`.
    pub fn push(&mut self, interleaved: &[i32], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        let channels = usize::from(self.config.channels);
        let frames = interleaved.len() / channels;
        if frames == 0 {
            return Ok(());
        }
        let mut frame = AudioFrameMut::silence(
            &self.in_layout,
            self.in_format,
            self.config.input_rate,
            frames,
        );
        {
            let mut planes = frame.planes_mut();
            let bytes = planes[0].data_mut();
            for (dst, s) in bytes
                .chunks_exact_mut(4)
                .zip(&interleaved[..frames * channels])
            {
                dst.copy_from_slice(&s.to_ne_bytes());
            }
        }
        let pts = Timestamp::new(
            self.frames_in,
            TimeBase::new(1, self.config.input_rate as i32),
        );
        let frame = frame
            .with_time_base(TimeBase::new(1, self.config.input_rate as i32))
            .with_pts(pts)
            .freeze();
        self.frames_in += frames as i64;
        self.resampler.push(frame).map_err(ff("resample"))?;
        self.pump(out)
    }

    /// Flushes the encoder and writes the container's trailer (Ogg: the end-of-stream page,
    /// so a following stream chains cleanly).
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        self.resampler.flush().map_err(ff("resample"))?;
        self.pump(out)?;
        self.encoder.flush().map_err(ff("encode"))?;
        self.mux_ready(out)?;
        let mut io = self.muxer.close().map_err(ff("muxer"))?;
        out.extend_from_slice(&io.stream_mut().take_data());
        Ok(())
    }

    fn pump(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        while let Some(frame) = self.resampler.take().map_err(ff("resample"))? {
            self.encoder.push(frame).map_err(ff("encode"))?;
            self.mux_ready(out)?;
        }
        Ok(())
    }

    fn mux_ready(&mut self, out: &mut Vec<u8>) -> Result<(), EncodeError> {
        while let Some(packet) = self.encoder.take().map_err(ff("encode"))? {
            self.muxer
                .push(packet.with_stream_index(0))
                .map_err(ff("mux"))?;
        }
        self.drain_output(out);
        Ok(())
    }

    fn drain_output(&mut self, out: &mut Vec<u8>) {
        let data = self.muxer.io_mut().stream_mut().take_data();
        out.extend_from_slice(&data);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(frames: usize, channels: usize, rate: u32) -> Vec<i32> {
        (0..frames)
            .flat_map(|i| {
                let v = (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin();
                std::iter::repeat_n((v * 0.25 * 2f64.powi(31)) as i32, channels)
            })
            .collect()
    }

    fn encode(codec: Codec, output_rate: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let mut enc = StreamEncoder::new(
            EncoderConfig {
                codec,
                bitrate: 128_000,
                input_rate: 48_000,
                output_rate,
                channels: 2,
                input_bits: 24,
                title: Some("Test".into()),
            },
            &mut out,
        )
        .expect("encoder");
        let pcm = tone(48_000, 2, 48_000);
        for block in pcm.chunks(480 * 2) {
            enc.push(block, &mut out).expect("push");
        }
        enc.finish(&mut out).expect("finish");
        out
    }

    #[test]
    fn mp3_at_44100_starts_with_a_frame_sync() {
        let out = encode(Codec::Mp3, 44_100);
        assert!(out.len() > 10_000, "{} bytes", out.len());
        assert_eq!(out[0], 0xff);
        assert_eq!(out[1] & 0xe0, 0xe0);
    }

    #[test]
    fn ogg_opus_has_opus_head_and_the_title() {
        let out = encode(Codec::Opus, 48_000);
        assert_eq!(&out[..4], b"OggS");
        let find = |needle: &[u8]| out.windows(needle.len()).any(|w| w == needle);
        assert!(find(b"OpusHead"));
        assert!(find(b"title=Test") || find(b"TITLE=Test"));
    }

    #[test]
    fn adts_and_ogg_flac_and_flv_build() {
        let adts = encode(Codec::Aac, 48_000);
        assert_eq!(adts[0], 0xff);
        assert_eq!(adts[1] & 0xf0, 0xf0);
        let flac = encode(Codec::Flac, 48_000);
        assert!(flac.windows(4).any(|w| w == b"FLAC"));
        let flv = encode(Codec::FlvAac, 48_000);
        assert_eq!(&flv[..3], b"FLV");
    }
}
