//! Property tests for PCM payload decode/encode.

use estuary_wire::payload::{SampleFormat, decode_into, encode_am824_into, encode_into};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        ..ProptestConfig::default()
    }
}

fn format() -> impl Strategy<Value = SampleFormat> {
    prop_oneof![
        Just(SampleFormat::L16),
        Just(SampleFormat::L24),
        Just(SampleFormat::L32),
        Just(SampleFormat::Am824),
    ]
}

/// The low bits a format drops.
fn mask(f: SampleFormat) -> i32 {
    match f {
        SampleFormat::L16 => !0xffff,
        SampleFormat::L24 | SampleFormat::Am824 => !0xff,
        SampleFormat::L32 => !0,
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encode_then_decode_round_trips(
        f in format(),
        channels in 1u16..=16,
        frames in 0usize..64,
        seed in proptest::collection::vec(any::<i32>(), 0..1024),
    ) {
        let n = frames * usize::from(channels);
        let samples: Vec<i32> = (0..n)
            .map(|i| seed.get(i % seed.len().max(1)).copied().unwrap_or(i32::MIN))
            .collect();
        let mut bytes = vec![0u8; n * f.bytes_per_sample()];
        prop_assert_eq!(encode_into(f, &samples, &mut bytes), Ok(bytes.len()));
        let mut back = vec![0i32; n];
        prop_assert_eq!(decode_into(f, channels, &bytes, &mut back), Ok(frames));
        let expected: Vec<i32> = samples.iter().map(|s| s & mask(f)).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn decode_then_encode_is_identity(
        f in prop_oneof![Just(SampleFormat::L16), Just(SampleFormat::L24), Just(SampleFormat::L32)],
        channels in 1u16..=8,
        data in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let frame = f.bytes_per_sample() * usize::from(channels);
        let data = &data[..data.len() / frame * frame];
        let mut samples = vec![0i32; data.len() / f.bytes_per_sample()];
        decode_into(f, channels, data, &mut samples).expect("whole frames");
        let mut out = vec![0u8; data.len()];
        encode_into(f, &samples, &mut out).expect("sized");
        prop_assert_eq!(&out[..], data);
    }

    #[test]
    fn am824_framing_round_trips(
        channels in 1u16..=8,
        first_frame: u64,
        samples in proptest::collection::vec(any::<i32>(), 0..256),
    ) {
        let ch = usize::from(channels);
        let samples = &samples[..samples.len() / ch * ch];
        let mut bytes = vec![0u8; samples.len() * 4];
        encode_am824_into(channels, first_frame, samples, &mut bytes).expect("sized");
        let mut back = vec![0i32; samples.len()];
        decode_into(SampleFormat::Am824, channels, &bytes, &mut back).expect("decodes");
        let expected: Vec<i32> = samples.iter().map(|s| s & !0xff).collect();
        prop_assert_eq!(back, expected);
    }

    #[test]
    fn decode_arbitrary_never_panics(
        f in format(),
        channels: u16,
        data in proptest::collection::vec(any::<u8>(), 0..400),
        out_len in 0usize..200,
    ) {
        let mut out = vec![0i32; out_len];
        if let Ok(frames) = decode_into(f, channels, &data, &mut out) {
            prop_assert_eq!(frames * usize::from(channels) * f.bytes_per_sample(), data.len());
        }
    }
}
