//! RTSP: feed arbitrary bytes in two reads (split at the first byte's value); never
//! panics. Oracle: every message parsed, written back and parsed again is equal, and
//! re-feeding the re-written stream one byte at a time yields the same messages.
#![no_main]

use estuary_wire::rtsp::{Limits, RtspMessage, RtspParser};
use libfuzzer_sys::fuzz_target;

/// Small limits so the fuzzer also reaches the size errors.
const LIMITS: Limits = Limits {
    max_head: 4096,
    max_body: 8192,
};
/// Re-written heads may be longer than what was parsed: invalid UTF-8 bytes become
/// U+FFFD (3 bytes), bare LF becomes CRLF and `name:v` becomes `name: v`; under 4x.
const REWRITE_LIMITS: Limits = Limits {
    max_head: 4 * 4096,
    max_body: 8192,
};

fn parse_stream(chunks: &[&[u8]], limits: Limits) -> (Vec<RtspMessage>, bool) {
    let mut p = RtspParser::with_limits(limits);
    let mut out = Vec::new();
    for chunk in chunks {
        p.push(chunk);
        loop {
            match p.next_message() {
                Ok(Some(m)) => out.push(m),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let split = usize::from(data.first().copied().unwrap_or(0)).min(data.len());
    let (a, b) = data.split_at(split);
    let (messages, _failed) = parse_stream(&[a, b], LIMITS);
    let mut rewritten = Vec::new();
    for m in &messages {
        m.write_to(&mut rewritten)
            .expect("a parsed message is always writable");
    }
    let (again, failed) = parse_stream(&[&rewritten], REWRITE_LIMITS);
    assert!(!failed, "re-written stream does not parse");
    assert_eq!(again, messages);
    let bytes: Vec<&[u8]> = rewritten.chunks(1).collect();
    let (byte_wise, failed) = parse_stream(&bytes, REWRITE_LIMITS);
    assert!(!failed);
    assert_eq!(byte_wise, messages);
});
