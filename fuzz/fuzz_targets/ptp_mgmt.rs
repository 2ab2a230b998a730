//! PTP management messages (ptp4l's socket): parse arbitrary bytes; whatever parses must
//! re-encode to a message that parses to the same body.
#![no_main]

use estuary_wire::ptp_mgmt;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = ptp_mgmt::parse(data) else {
        return;
    };
    let again = ptp_mgmt::parse(&m.to_bytes()).expect("a parsed message re-encodes");
    assert_eq!(again.body, m.body);
});
