//! Feeds arbitrary bytes to the TS demuxer in arbitrary chunks, then checks the round-trip
//! oracle: every Opus / 302M access unit it found, muxed again, demuxes to the same unit.
#![no_main]

use estuary_wire::s302m::S302mFormat;
use estuary_wire::ts::{TsAudio, TsAudioKind, TsConfig, TsDemuxer, TsMuxer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let mut demux = TsDemuxer::new();
    let mut units = Vec::new();
    for piece in bytes.chunks(usize::from(chunk).max(1)) {
        units.extend(demux.push(piece));
    }
    units.extend(demux.flush());

    for au in units {
        let stream = match au.stream {
            TsAudioKind::Opus { channels } if (1..=8).contains(&channels) => {
                TsAudio::Opus { channels }
            }
            TsAudioKind::S302m => TsAudio::S302m {
                format: S302mFormat {
                    channels: 2,
                    bits: 24,
                },
            },
            _ => continue,
        };
        let Some(pts) = au.pts else { continue };
        let Ok(mut muxer) = TsMuxer::new(TsConfig::new(stream)) else {
            continue;
        };
        let mut out = Vec::new();
        if muxer.write_access_unit(pts, &au.data, &mut out).is_err() {
            continue;
        }
        let mut again = TsDemuxer::new();
        let mut back = again.push(&out);
        back.extend(again.flush());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].pts, Some(pts));
        assert_eq!(back[0].data, au.data);
        assert_eq!(back[0].stream, au.stream);
    }
});
