//! Opus encoder over the system libopus (Debian `libopus-dev`), 20 ms frames, application AUDIO.
//!
//! The input is Estuary's internal sample format: interleaved, MSB-aligned `i32`. It is
//! converted to `f32` in a buffer allocated once in [`OpusEncoder::new`], so [`encode`] does not
//! allocate.
//!
//! [`encode`]: OpusEncoder::encode

use std::ffi::{CStr, c_int};

/// Frame duration: 20 ms, the common choice for music over networks (RFC 7587 §4.2 default
/// `ptime`; Ogg and MPEG-TS Opus mappings accept it).
const FRAME_MS: u32 = 20;

/// Sample rates libopus accepts.
const SAMPLE_RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Bitrates libopus accepts (`OPUS_SET_BITRATE` clamps outside 500..=512000 b/s).
const BITRATES: std::ops::RangeInclusive<u32> = 6_000..=510_000;

/// Largest Opus packet for one frame (RFC 6716 §3.4: 1275 bytes per frame) plus margin.
pub const MAX_PACKET_SIZE: usize = 1500;

mod ffi {
    use std::ffi::{c_char, c_int};

    /// Opaque `OpusEncoder`.
    #[repr(C)]
    pub(super) struct OpusEncoder {
        _private: [u8; 0],
    }

    pub(super) const OPUS_OK: c_int = 0;
    pub(super) const OPUS_APPLICATION_AUDIO: c_int = 2049;
    pub(super) const OPUS_SET_BITRATE_REQUEST: c_int = 4002;
    pub(super) const OPUS_GET_LOOKAHEAD_REQUEST: c_int = 4027;

    // Linked by build.rs (pkg-config `opus`).
    unsafe extern "C" {
        pub(super) fn opus_encoder_create(
            fs: i32,
            channels: c_int,
            application: c_int,
            error: *mut c_int,
        ) -> *mut OpusEncoder;
        pub(super) fn opus_encode_float(
            st: *mut OpusEncoder,
            pcm: *const f32,
            frame_size: c_int,
            data: *mut u8,
            max_data_bytes: i32,
        ) -> i32;
        pub(super) fn opus_encoder_destroy(st: *mut OpusEncoder);
        /// Variadic in C: each request takes one `opus_int32` or one `opus_int32 *`.
        pub(super) fn opus_encoder_ctl(st: *mut OpusEncoder, request: c_int, ...) -> c_int;
        pub(super) fn opus_strerror(error: c_int) -> *const c_char;
    }
}

/// Errors from the Opus encoder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpusError {
    #[error("Opus sample rate {0} Hz not supported (8000, 12000, 16000, 24000 or 48000)")]
    SampleRate(u32),
    #[error("Opus supports 1 or 2 channels, not {0}")]
    Channels(u16),
    #[error("Opus bitrate {0} b/s out of range (6000..=510000)")]
    Bitrate(u32),
    #[error("Opus frame needs {expected} interleaved samples, got {actual}")]
    FrameSize { expected: usize, actual: usize },
    #[error("libopus {call} failed: {message} ({code})")]
    Library {
        call: &'static str,
        code: i32,
        message: String,
    },
}

impl OpusError {
    fn library(call: &'static str, code: c_int) -> Self {
        // SAFETY: opus_strerror returns a pointer to a static NUL-terminated string for any code.
        let message = unsafe { CStr::from_ptr(ffi::opus_strerror(code)) }
            .to_string_lossy()
            .into_owned();
        Self::Library {
            call,
            code,
            message,
        }
    }
}

/// A libopus encoder with its conversion buffer.
#[derive(Debug)]
pub struct OpusEncoder {
    /// Owned, non-null encoder state from `opus_encoder_create`.
    state: std::ptr::NonNull<ffi::OpusEncoder>,
    channels: u16,
    frame_samples: usize,
    /// Interleaved `f32` frame, `frame_samples * channels` long.
    pcm: Box<[f32]>,
}

// SAFETY: the libopus encoder state is plain memory owned by this value and touched only
// through `&mut self` (or `&self` for the read-only lookahead query), so moving it to another
// thread is sound.
unsafe impl Send for OpusEncoder {}

impl OpusEncoder {
    /// An encoder for `channels` (1 or 2) at `sample_rate` (48000 for Estuary's outputs) and
    /// `bitrate_bps`, application AUDIO, 20 ms frames.
    pub fn new(sample_rate: u32, channels: u16, bitrate_bps: u32) -> Result<Self, OpusError> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(OpusError::SampleRate(sample_rate));
        }
        if !(1..=2).contains(&channels) {
            return Err(OpusError::Channels(channels));
        }
        if !BITRATES.contains(&bitrate_bps) {
            return Err(OpusError::Bitrate(bitrate_bps));
        }
        let mut error: c_int = 0;
        // SAFETY: arguments were validated above; `error` is a valid out pointer.
        let raw = unsafe {
            ffi::opus_encoder_create(
                sample_rate as i32,
                c_int::from(channels),
                ffi::OPUS_APPLICATION_AUDIO,
                &mut error,
            )
        };
        let Some(state) = std::ptr::NonNull::new(raw) else {
            return Err(OpusError::library("opus_encoder_create", error));
        };
        let frame_samples = (sample_rate * FRAME_MS / 1000) as usize;
        let encoder = Self {
            state,
            channels,
            frame_samples,
            pcm: vec![0.0; frame_samples * usize::from(channels)].into_boxed_slice(),
        };
        // Validated above, so the value fits in opus_int32.
        let bitrate = bitrate_bps as i32;
        // SAFETY: OPUS_SET_BITRATE takes exactly one opus_int32 argument; the state is valid.
        let rc = unsafe {
            ffi::opus_encoder_ctl(
                encoder.state.as_ptr(),
                ffi::OPUS_SET_BITRATE_REQUEST,
                bitrate,
            )
        };
        if rc != ffi::OPUS_OK {
            return Err(OpusError::library("OPUS_SET_BITRATE", rc));
        }
        Ok(encoder)
    }

    /// Samples per channel in one 20 ms frame (960 at 48 kHz).
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// Channels per frame.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Encodes one frame of `frame_samples() * channels()` interleaved MSB-aligned samples into
    /// `out` (give it [`MAX_PACKET_SIZE`] bytes); returns the packet length.
    pub fn encode(&mut self, pcm: &[i32], out: &mut [u8]) -> Result<usize, OpusError> {
        if pcm.len() != self.pcm.len() {
            return Err(OpusError::FrameSize {
                expected: self.pcm.len(),
                actual: pcm.len(),
            });
        }
        // MSB-aligned i32 full scale is 2^31; libopus' float input full scale is ±1.0.
        const SCALE: f32 = 1.0 / 2_147_483_648.0;
        for (dst, &src) in self.pcm.iter_mut().zip(pcm) {
            *dst = src as f32 * SCALE;
        }
        let max = i32::try_from(out.len()).unwrap_or(i32::MAX);
        // SAFETY: `self.pcm` holds `frame_samples * channels` floats (the frame size passed);
        // `out` is writable for `max` bytes; the state is valid and exclusively borrowed.
        let len = unsafe {
            ffi::opus_encode_float(
                self.state.as_ptr(),
                self.pcm.as_ptr(),
                self.frame_samples as c_int,
                out.as_mut_ptr(),
                max,
            )
        };
        usize::try_from(len).map_err(|_| OpusError::library("opus_encode_float", len))
    }

    /// The encoder's lookahead in samples at the encoder's rate: the Ogg Opus pre-skip
    /// (RFC 7845 §4.2) a decoder discards at the start (312 at 48 kHz for application AUDIO).
    pub fn lookahead(&self) -> u32 {
        let mut samples: i32 = 0;
        // SAFETY: OPUS_GET_LOOKAHEAD takes exactly one `opus_int32 *`, valid for the call.
        // The request only reads the state, which nothing else is mutating through `&self`.
        let rc = unsafe {
            ffi::opus_encoder_ctl(
                self.state.as_ptr(),
                ffi::OPUS_GET_LOOKAHEAD_REQUEST,
                &mut samples as *mut i32,
            )
        };
        if rc == ffi::OPUS_OK {
            u32::try_from(samples).unwrap_or(0)
        } else {
            0
        }
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: the state came from opus_encoder_create and is destroyed exactly once.
        unsafe { ffi::opus_encoder_destroy(self.state.as_ptr()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert_eq!(
            OpusEncoder::new(44_100, 2, 128_000).err(),
            Some(OpusError::SampleRate(44_100))
        );
        assert_eq!(
            OpusEncoder::new(48_000, 3, 128_000).err(),
            Some(OpusError::Channels(3))
        );
        assert_eq!(
            OpusEncoder::new(48_000, 2, 1_000).err(),
            Some(OpusError::Bitrate(1_000))
        );
    }

    #[test]
    fn frame_geometry_and_lookahead() -> Result<(), OpusError> {
        let mut encoder = OpusEncoder::new(48_000, 2, 128_000)?;
        assert_eq!(encoder.frame_samples(), 960);
        assert_eq!(encoder.lookahead(), 312);
        let mut out = [0u8; MAX_PACKET_SIZE];
        assert_eq!(
            encoder.encode(&[0; 10], &mut out),
            Err(OpusError::FrameSize {
                expected: 1920,
                actual: 10
            })
        );
        let len = encoder.encode(&[0; 1920], &mut out)?;
        assert!(len > 0 && len < 100, "silence packet is small: {len}");
        Ok(())
    }
}
