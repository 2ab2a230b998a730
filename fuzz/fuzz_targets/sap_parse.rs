//! SAP: parse arbitrary bytes; whatever parses (encrypted packets are an error, so never
//! here) must re-encode and parse back to an equal packet.
#![no_main]

use estuary_wire::sap;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = sap::parse(data) else {
        return;
    };
    let bytes = p.to_bytes().expect("a parsed packet re-encodes");
    let q = sap::parse(&bytes).expect("re-encoded packet parses");
    assert_eq!(p, q);
    // Without authentication data, R or compression, the re-encoding is byte-identical.
    // (R, which we ignore and write as 0, must be clear too.)
    let plain_header = data.get(1) == Some(&0) && data.first().is_some_and(|b| b & 0x08 == 0);
    if plain_header && !p.compressed {
        assert_eq!(bytes, data);
    }
});
