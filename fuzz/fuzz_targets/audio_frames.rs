//! Feeds arbitrary bytes, in arbitrary pieces, to the ADTS and MPEG audio frame splitters
//! (what an SRT input does with each PES payload). Oracle: every frame returned starts with a
//! header that parses and declares exactly the frame's length, and no more bytes come out
//! than went in.
#![no_main]

use estuary_wire::audio_frames::{AdtsHeader, FrameSplitter, Framing, MpaHeader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, bytes)) = data.split_first() else {
        return;
    };
    for framing in [Framing::Adts, Framing::Mpa] {
        let mut splitter = FrameSplitter::new(framing);
        let mut total = 0;
        for chunk in bytes.chunks(usize::from(piece).max(1)) {
            splitter.push(chunk, |frame| {
                total += frame.len();
                let declared = match framing {
                    Framing::Adts => AdtsHeader::parse(frame).map(|h| h.frame_length),
                    Framing::Mpa => MpaHeader::parse(frame).map(|h| h.frame_length),
                };
                assert_eq!(declared, Ok(frame.len()));
            });
        }
        assert!(total <= bytes.len());
    }
});
