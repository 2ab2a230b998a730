//! FLV tag splitting: arbitrary bytes, pushed in arbitrary pieces, never panic, and the tags
//! read are the same whether the stream arrives whole or byte by byte.
#![no_main]

use estuary_wire::flv::FlvReader;
use libfuzzer_sys::fuzz_target;

fn tags(pieces: impl Iterator<Item = Vec<u8>>) -> Vec<(u8, u32, Vec<u8>)> {
    let mut reader = FlvReader::new();
    let mut out = Vec::new();
    for piece in pieces {
        reader.push(&piece);
        while let Ok(Some(tag)) = reader.next_tag() {
            out.push((tag.kind, tag.timestamp, tag.data));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let whole = tags(std::iter::once(data.to_vec()));
    let bytewise = tags(data.iter().map(|&b| vec![b]));
    assert_eq!(whole, bytewise);
    let _ = estuary_wire::flv::parse_tag(data);
});
