//! `kind = "dante"` inputs: the Dante receiver thread (crate::dante) plays the device's RX
//! channels out by media time and hands each block here, where the input's channels are
//! taken out and fed to its rings exactly as the ingest thread feeds a received input's.

use std::sync::{Arc, Mutex};

use estuary_engine::stats::StreamStats;
use estuary_engine::time::MonoTime;

use super::InputSnapshot;
use super::ingest::{OutputFeed, feed_rings};
use crate::dante::{RxBlock, RxSink};

pub(super) struct DanteInput {
    name: String,
    channels: usize,
    rings: Vec<OutputFeed>,
    shared: Arc<Mutex<InputSnapshot>>,
    scratch: Vec<i32>,
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
        for &(position, frames) in block.gaps {
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
