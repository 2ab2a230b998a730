//! Property tests: the demuxer survives any bytes, and mux → demux is lossless.

use estuary_wire::s302m::S302mFormat;
use estuary_wire::ts::{
    AccessUnit, TS_PACKET_LEN, TsAudio, TsAudioKind, TsConfig, TsDemuxer, TsMuxer,
};
use proptest::prelude::*;

fn feed_in_chunks(demux: &mut TsDemuxer, bytes: &[u8], chunk: usize) -> Vec<AccessUnit> {
    let mut units = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        units.extend(demux.push(piece));
    }
    units.extend(demux.flush());
    units
}

fn stream_strategy() -> impl Strategy<Value = TsAudio> {
    prop_oneof![
        (1u8..=8).prop_map(|channels| TsAudio::Opus { channels }),
        (
            prop::sample::select(vec![2u8, 4, 6, 8]),
            prop::sample::select(vec![16u8, 20, 24])
        )
            .prop_map(|(c, b)| TsAudio::S302m {
                format: S302mFormat::new(c, b).expect("valid format"),
            }),
    ]
}

fn mux_all(stream: TsAudio, start: u64, step: u64, units: &[Vec<u8>]) -> Vec<u8> {
    let mut muxer = TsMuxer::new(TsConfig::new(stream)).expect("config");
    let mut out = Vec::new();
    for (i, au) in units.iter().enumerate() {
        muxer
            .write_access_unit(start + i as u64 * step, au, &mut out)
            .expect("mux");
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn demuxer_never_panics_on_random_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..4000),
        chunk in 1usize..400,
    ) {
        let mut demux = TsDemuxer::new();
        let _ = feed_in_chunks(&mut demux, &bytes, chunk);
    }

    #[test]
    fn demuxer_never_panics_on_corrupted_streams(
        stream in stream_strategy(),
        units in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..40),
        cut in any::<prop::sample::Index>(),
        chunk in 1usize..500,
    ) {
        let mut bytes = mux_all(stream, 1000, 1800, &units);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let end = cut.index(bytes.len() + 1);
        let mut demux = TsDemuxer::new();
        let _ = feed_in_chunks(&mut demux, &bytes[..end], chunk);
    }

    #[test]
    fn mux_then_demux_returns_the_same_units(
        stream in stream_strategy(),
        units in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..3000), 1..12),
        start in 0u64..(1u64 << 33),
        step in 0u64..20_000,
        chunk in 1usize..2000,
        garbage in prop::collection::vec(1u8..0x47, 0..50),
    ) {
        let mut bytes = garbage.clone();
        bytes.extend(mux_all(stream, start, step, &units));
        prop_assert_eq!((bytes.len() - garbage.len()) % TS_PACKET_LEN, 0);
        let mut demux = TsDemuxer::new();
        let got = feed_in_chunks(&mut demux, &bytes, chunk);
        let kind = match stream {
            TsAudio::Opus { channels } => TsAudioKind::Opus { channels },
            TsAudio::S302m { .. } => TsAudioKind::S302m,
        };
        prop_assert_eq!(got.len(), units.len());
        for (i, (au, data)) in got.iter().zip(&units).enumerate() {
            prop_assert_eq!(au.pid, 0x0100);
            prop_assert_eq!(au.stream, kind);
            prop_assert_eq!(au.pts, Some((start + i as u64 * step) % (1 << 33)));
            prop_assert_eq!(&au.data, data);
        }
        let stats = demux.stats();
        prop_assert_eq!(stats.continuity_errors, 0);
        prop_assert_eq!(stats.malformed, 0);
        prop_assert_eq!(stats.skipped_bytes, garbage.len() as u64);
    }
}

#[test]
fn continuity_error_is_counted_and_stream_recovers() {
    let units: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8; 500]).collect();
    let bytes = mux_all(TsAudio::Opus { channels: 2 }, 0, 1800, &units);
    // Drop the 4th packet (the second packet of the first PES: PAT, PMT, PES1 = 3 packets).
    let mut cut = bytes[..3 * TS_PACKET_LEN].to_vec();
    cut.extend_from_slice(&bytes[4 * TS_PACKET_LEN..]);
    let mut demux = TsDemuxer::new();
    let got = feed_in_chunks(&mut demux, &cut, 188);
    assert_eq!(demux.stats().continuity_errors, 1);
    assert_eq!(got.len(), 5, "first unit lost, the rest intact");
    assert_eq!(got[0].data, units[1]);
}
