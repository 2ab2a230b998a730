//! PCM payloads: decode arbitrary bytes in every format; what decodes must re-encode to the
//! same bytes (L16/L24/L32) or the same audio (AM824, whose flags are not kept).
#![no_main]

use estuary_wire::payload::{SampleFormat, decode_into, encode_into};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Some((&sel, data)) = input.split_first() else {
        return;
    };
    let format = match sel & 3 {
        0 => SampleFormat::L16,
        1 => SampleFormat::L24,
        2 => SampleFormat::L32,
        _ => SampleFormat::Am824,
    };
    let channels = u16::from(sel >> 2);
    let mut samples = [0i32; 2048];
    let Ok(frames) = decode_into(format, channels, data, &mut samples) else {
        return;
    };
    let n = frames * usize::from(channels);
    let mut out = vec![0u8; data.len()];
    let written = encode_into(format, &samples[..n], &mut out).expect("sized");
    assert_eq!(written, data.len());
    if format == SampleFormat::Am824 {
        for (a, b) in out.chunks_exact(4).zip(data.chunks_exact(4)) {
            assert_eq!(a[1..], b[1..]);
        }
    } else {
        assert_eq!(out, data);
    }
});
