//! FLAC: parse arbitrary header bytes and scan arbitrary frame bytes; whatever the scanner
//! accepts is contiguous and inside the input, and a STREAMINFO rewritten from the totals
//! parses back to them.
#![no_main]

use estuary_wire::flac;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let start = match flac::parse(data) {
        Ok(info) => info.audio_start as usize,
        Err(_) => 0,
    };
    let audio = &data[start.min(data.len())..];
    let mut totals = flac::Totals::default();
    let mut end = 0;
    for frame in flac::scan_frames(audio, true) {
        assert_eq!(frame.offset, end);
        end += frame.len;
        totals.add(start as u64, &frame);
    }
    assert!(end <= audio.len());
    if let Ok(info) = flac::parse(data) {
        let fixed = totals.apply(&info.stream);
        let header = flac::encode_header(&fixed, "fuzz", &info.comments);
        let again = flac::parse(&header).expect("a rewritten header parses");
        assert_eq!(again.stream.total_samples, totals.samples & 0xf_ffff_ffff);
    }
});
