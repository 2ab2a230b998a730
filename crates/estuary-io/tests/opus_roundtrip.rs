//! `OpusEncoder` checked against libopus' own decoder: a 1 kHz sine at −20 dBFS survives the
//! round trip with its frequency (within 1 Hz) and level (within 0.5 dB), and packet sizes
//! match the bitrate.

use std::ffi::c_int;
use std::ptr::NonNull;

use estuary_io::opus::{MAX_PACKET_SIZE, OpusEncoder, OpusError};

const RATE: u32 = 48_000;
const TONE_HZ: f64 = 1_000.0;
/// −20 dBFS peak.
const AMPLITUDE: f64 = 0.1;

/// Test-only binding of the libopus decoder (the library is linked by estuary-io's build.rs).
mod decoder {
    use std::ffi::c_int;

    #[repr(C)]
    pub struct OpusDecoder {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        pub fn opus_decoder_create(fs: i32, channels: c_int, error: *mut c_int)
        -> *mut OpusDecoder;
        pub fn opus_decode_float(
            st: *mut OpusDecoder,
            data: *const u8,
            len: i32,
            pcm: *mut f32,
            frame_size: c_int,
            decode_fec: c_int,
        ) -> c_int;
        pub fn opus_decoder_destroy(st: *mut OpusDecoder);
    }
}

struct Decoder {
    state: NonNull<decoder::OpusDecoder>,
    channels: usize,
}

impl Decoder {
    fn new(channels: usize) -> Self {
        let mut error: c_int = 0;
        // SAFETY: valid rate and channel count; `error` is a valid out pointer.
        let raw =
            unsafe { decoder::opus_decoder_create(RATE as i32, channels as c_int, &mut error) };
        let state = NonNull::new(raw).unwrap_or_else(|| panic!("opus_decoder_create: {error}"));
        Self { state, channels }
    }

    /// Decodes one packet, appending interleaved samples to `pcm`.
    fn decode(&mut self, packet: &[u8], pcm: &mut Vec<f32>) {
        let mut frame = vec![0.0_f32; 5760 * self.channels];
        // SAFETY: `packet` is readable for its length; `frame` holds 5760 samples per channel
        // (the 120 ms maximum frame size libopus may return).
        let samples = unsafe {
            decoder::opus_decode_float(
                self.state.as_ptr(),
                packet.as_ptr(),
                packet.len() as i32,
                frame.as_mut_ptr(),
                5760,
                0,
            )
        };
        assert!(samples > 0, "opus_decode_float: {samples}");
        pcm.extend_from_slice(&frame[..samples as usize * self.channels]);
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: created by opus_decoder_create, destroyed once.
        unsafe { decoder::opus_decoder_destroy(self.state.as_ptr()) };
    }
}

/// MSB-aligned i32 sine frames of `seconds` length, the same signal in every channel.
fn sine(channels: usize, frames: usize, frame_samples: usize) -> Vec<Vec<i32>> {
    (0..frames)
        .map(|f| {
            (0..frame_samples)
                .flat_map(|i| {
                    let n = (f * frame_samples + i) as f64;
                    let x =
                        AMPLITUDE * (2.0 * std::f64::consts::PI * TONE_HZ * n / RATE as f64).sin();
                    std::iter::repeat_n((x * 2_147_483_648.0) as i32, channels)
                })
                .collect()
        })
        .collect()
}

/// Frequency from the first and last positive-going zero crossings, linearly interpolated.
fn frequency(signal: &[f32]) -> f64 {
    let mut crossings = Vec::new();
    for (i, pair) in signal.windows(2).enumerate() {
        let (a, b) = (f64::from(pair[0]), f64::from(pair[1]));
        if a < 0.0 && b >= 0.0 {
            crossings.push(i as f64 + a / (a - b));
        }
    }
    assert!(
        crossings.len() > 10,
        "too few zero crossings: {}",
        crossings.len()
    );
    let first = crossings[0];
    let last = crossings[crossings.len() - 1];
    (crossings.len() - 1) as f64 * RATE as f64 / (last - first)
}

fn rms_db(signal: &[f32]) -> f64 {
    let power = signal.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / signal.len() as f64;
    10.0 * power.log10()
}

fn round_trip(channels: u16, bitrate: u32) -> Result<(), OpusError> {
    let mut encoder = OpusEncoder::new(RATE, channels, bitrate)?;
    let frame_samples = encoder.frame_samples();
    assert_eq!(frame_samples, 960);
    let pre_skip = encoder.lookahead() as usize;
    assert_eq!(pre_skip, 312);

    // 1 s of tone plus one frame to push the lookahead out.
    let frames = sine(usize::from(channels), 51, frame_samples);
    let mut decoder = Decoder::new(usize::from(channels));
    let mut packet = [0u8; MAX_PACKET_SIZE];
    let mut total_bytes = 0;
    let mut decoded = Vec::new();
    for frame in &frames {
        let len = encoder.encode(frame, &mut packet)?;
        assert!(len > 2 && len <= 1275, "packet length {len}");
        total_bytes += len;
        decoder.decode(&packet[..len], &mut decoded);
    }
    // VBR: the total for 1 s stays near the bitrate (a pure tone needs less).
    let bits_per_second = (total_bytes * 8) as f64 * 50.0 / 51.0;
    assert!(
        bits_per_second > 0.3 * f64::from(bitrate) && bits_per_second < 1.2 * f64::from(bitrate),
        "{bits_per_second} b/s for a {bitrate} b/s encoder"
    );

    let channels = usize::from(channels);
    for channel in 0..channels {
        // Skip the pre-skip and 100 ms of settling; analyse the next 0.8 s.
        let start = pre_skip + RATE as usize / 10;
        let signal: Vec<f32> = decoded
            .iter()
            .skip(channel)
            .step_by(channels)
            .skip(start)
            .take(RATE as usize * 8 / 10)
            .copied()
            .collect();
        let f = frequency(&signal);
        assert!((f - TONE_HZ).abs() < 1.0, "channel {channel}: {f} Hz");
        let level = rms_db(&signal);
        let expected = 20.0 * (AMPLITUDE / 2.0_f64.sqrt()).log10(); // −23.01 dB RMS
        assert!(
            (level - expected).abs() < 0.5,
            "channel {channel}: {level:.2} dB RMS, expected {expected:.2}"
        );
    }
    Ok(())
}

#[test]
fn opus_mono_sine_round_trip() -> Result<(), OpusError> {
    round_trip(1, 64_000)
}

#[test]
fn opus_stereo_sine_round_trip() -> Result<(), OpusError> {
    round_trip(2, 128_000)
}

#[test]
fn opus_encoder_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<OpusEncoder>();
}
