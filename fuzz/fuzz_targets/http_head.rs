//! HTTP heads (listen-in requests, Icecast answers): arbitrary bytes never panic, a complete
//! head never claims more bytes than it was given, and bytes after a complete head do not
//! change what it says.
#![no_main]

use estuary_wire::http::{Parsed, parse_request, parse_response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Parsed::Complete { head, len }) = parse_request(data) {
        assert!(len <= data.len());
        let again = parse_request(&[&data[..len], b"trailing bytes"].concat());
        assert_eq!(again, Ok(Parsed::Complete { head, len }));
    }
    if let Ok(Parsed::Complete { head, len }) = parse_response(data) {
        assert!(len <= data.len());
        let again = parse_response(&[&data[..len], b"trailing bytes"].concat());
        assert_eq!(again, Ok(Parsed::Complete { head, len }));
    }
});
