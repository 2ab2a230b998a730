//! SDP round-trip oracle: any text the reader accepts, written back by the strict writer,
//! must read back to the same model (warnings aside, since they describe the input's form).
#![no_main]

use estuary_wire::sdp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut first) = sdp::parse(text) else {
        return;
    };
    let written = sdp::write(&first);
    let mut again = match sdp::parse(&written) {
        Ok(d) => d,
        Err(e) => panic!("own output rejected: {e}\n{written}"),
    };
    first.warnings.clear();
    again.warnings.clear();
    assert_eq!(first, again, "written:\n{written}");
    // Writing is a fixed point after one round.
    assert_eq!(sdp::write(&again), written);
});
