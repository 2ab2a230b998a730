//! RTP: parse arbitrary bytes; whatever parses must re-encode to the same length and parse
//! back to an equal view (padding contents are not compared: the writer zeroes them).
#![no_main]

use estuary_wire::rtp::{RtpPacket, RtpPacketBuilder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = RtpPacket::parse(data) else {
        return;
    };
    let mut csrcs = [0u32; 15];
    let mut n = 0;
    for (slot, c) in csrcs.iter_mut().zip(p.csrcs()) {
        *slot = c;
        n += 1;
    }
    let b = RtpPacketBuilder {
        csrcs: &csrcs[..n],
        ..p.to_builder()
    };
    let mut buf = vec![0u8; b.wire_size()];
    let written = b.write_into(&mut buf).expect("buffer sized by wire_size");
    assert_eq!(written, data.len());
    let q = RtpPacket::parse(&buf).expect("re-encoded packet parses");
    assert_eq!(p, q);
    // Header bytes (everything before the padding) are byte-identical.
    let unpadded = data.len() - usize::from(p.padding_len());
    assert_eq!(&buf[..unpadded], &data[..unpadded]);
});
