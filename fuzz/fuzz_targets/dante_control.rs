//! Dante control messages (ARC, flow control): parse arbitrary bytes with every reader; a
//! request that parses must re-encode and parse back to an equal request.
#![no_main]

use estuary_wire::dante::{Message, arc, flow};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::parse(data) else {
        return;
    };
    let _ = arc::parse_rx_channels(&m);
    let _ = arc::parse_tx_channels(&m);
    let _ = arc::parse_tx_names(&m);
    let _ = arc::parse_device_names(&m);
    let _ = arc::parse_channel_counts(&m);
    let _ = flow::parse_granted(&m);
    if let Ok(request) = arc::Request::parse(&m)
        && let Ok(bytes) = arc::write_request(m.header.protocol, m.header.transaction, &request)
    {
        let again = Message::parse(&bytes).expect("written request has a valid header");
        assert_eq!(arc::Request::parse(&again), Ok(request));
    }
    if let Ok(message) = flow::FlowMessage::parse(&m) {
        let bytes = message.write(m.header.transaction).expect("a parsed flow message re-encodes");
        let again = Message::parse(&bytes).expect("written message has a valid header");
        assert_eq!(flow::FlowMessage::parse(&again), Ok(message));
    }
});
