//! `kind = "dante"` inputs: the Dante receiver thread (crate::dante) plays the device's RX
//! channels out by media time and hands each block here, where the input's channels are
//! taken out and fed to its rings exactly as the ingest thread feeds a received input's.

use std::sync::{Arc, Mutex};

use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;

use super::InputSnapshot;
use super::ingest::{OutputFeed, feed_rings};
use crate::dante::{RxBlock, RxSink};
use estuary_engine::dante::rx::RxGap;

pub(super) struct DanteInput {
    name: String,
    channels: usize,
    rings: Vec<OutputFeed>,
    shared: Arc<Mutex<InputSnapshot>>,
    scratch: Vec<i32>,
    /// The block's gaps on this input's channels, merged.
    gaps: Vec<(u64, usize)>,
    ring_overruns: u64,
}

impl DanteInput {
    pub fn new(
        name: String,
        channels: usize,
        rings: Vec<OutputFeed>,
        shared: Arc<Mutex<InputSnapshot>>,
    ) -> Self {
        Self {
            name,
            channels,
            rings,
            shared,
            scratch: Vec::new(),
            gaps: Vec::new(),
            ring_overruns: 0,
        }
    }
}

impl RxSink for DanteInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn feed(&mut self, block: &RxBlock<'_>) {
        let n = self.channels.min(block.channels);
        self.scratch.clear();
        for frame in block.samples.chunks_exact(block.channels) {
            self.scratch.extend_from_slice(&frame[..n]);
            self.scratch
                .extend(std::iter::repeat_n(0, self.channels - n));
        }
        own_gaps(block.gaps, self.channels, &mut self.gaps);
        for &(position, frames) in &self.gaps {
            for feed in &mut self.rings {
                feed.gap(position, frames);
            }
        }
        self.ring_overruns += feed_rings(
            &mut self.rings,
            &self.scratch,
            self.channels,
            block.now,
            Some(block.position),
        );
    }

    fn channels(&self) -> usize {
        self.channels
    }

    fn publish(&mut self, stats: &StreamStats, last_packet: Option<(MonoTime, u64)>) {
        if let Ok(mut shared) = self.shared.try_lock() {
            shared.stats = *stats;
            shared.ring_overruns = self.ring_overruns;
            shared.last_packet = last_packet;
        }
    }
}

/// The runs of `gaps` that fell on RX channels below `channels` (the input's), in order and
/// merged where flows' runs overlap or touch, into `out`.
fn own_gaps(gaps: &[RxGap], channels: usize, out: &mut Vec<(u64, usize)>) {
    out.clear();
    out.extend(
        gaps.iter()
            .filter(|g| g.first_channel < channels)
            .map(|g| (g.position, g.frames)),
    );
    out.sort_unstable();
    let mut merged = 0;
    for k in 0..out.len() {
        let (at, n) = out[k];
        if merged > 0 {
            let (last_at, last_n) = &mut out[merged - 1];
            let last_end = *last_at + *last_n as u64;
            if at <= last_end {
                *last_n = (last_end.max(at + n as u64) - *last_at) as usize;
                continue;
            }
        }
        out[merged] = (at, n);
        merged += 1;
    }
    out.truncate(merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gap(position: u64, frames: usize, first_channel: usize) -> RxGap {
        RxGap {
            position,
            frames,
            first_channel,
        }
    }

    /// A flow feeding only channels past the input's is not the input's gap; two flows
    /// missing the same frames make one gap.
    #[test]
    fn an_input_takes_the_gaps_on_its_channels_merged() {
        let mut out = Vec::new();
        let gaps = [
            gap(200, 32, 1),
            gap(100, 32, 0),
            gap(116, 32, 1),
            gap(300, 32, 2),
            gap(148, 4, 0),
        ];
        own_gaps(&gaps, 2, &mut out);
        assert_eq!(out, [(100, 52), (200, 32)]);
        own_gaps(&gaps, 1, &mut out);
        assert_eq!(out, [(100, 32), (148, 4)]);
    }
}
