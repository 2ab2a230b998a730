//! Dante audio datagrams and PTPv1 clock messages: parse arbitrary bytes; what parses must
//! re-encode and parse back equal.
#![no_main]

use estuary_wire::dante::{audio, ptpv1};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = audio::AudioPacket::parse(data) {
        let _ = p.header.media_time(48_000);
        for width in 2..=4 {
            if p.frames(1, width).is_ok() {
                let mut samples = vec![0i32; p.payload.len() / width];
                p.decode_into(width, &mut samples).expect("room for every sample");
                let mut out = Vec::new();
                audio::write(p.header, &samples, width, &mut out).expect("valid width");
                assert_eq!(&out[audio::HEADER_LEN..], p.payload);
            }
        }
    }
    if let Ok(m) = ptpv1::parse(data) {
        assert_eq!(ptpv1::parse(&m.to_bytes()), Ok(m));
    }
});
