//! Dante conmon (settings requests, replies, change notices, heartbeats) and CMC: parse
//! arbitrary bytes with every reader; a decoded notice or make/model reply re-encodes and
//! decodes back to the same value.
#![no_main]

use estuary_wire::dante::Message;
use estuary_wire::dante::conmon::{self, Conmon, ConmonMessage, cmc};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::parse(data) {
        let _ = cmc::parse_register(&m);
        let _ = cmc::Registered::parse(&m);
    }
    let Ok(m) = ConmonMessage::parse(data) else {
        return;
    };
    let Ok(decoded) = m.decode() else {
        return;
    };
    let body = match &decoded {
        Conmon::ChannelsChanged { channels, .. } => conmon::channels_changed_body(channels).ok(),
        Conmon::MakeModel(mm) => Some(mm.body()),
        _ => None,
    };
    if let Some(body) = body {
        let bytes = conmon::write(&m.header, &body).expect("re-encodes");
        let again = ConmonMessage::parse(&bytes).expect("valid header");
        let again = again.decode().expect("decodes");
        match (&decoded, &again) {
            // Names are cut at their NUL and lossily decoded: compare what re-encoding keeps.
            (Conmon::MakeModel(a), Conmon::MakeModel(b)) => {
                assert_eq!((a.version, a.firmware), (b.version, b.firmware));
            }
            _ => assert_eq!(decoded, again),
        }
    }
});
