//! A Dante receiver's playout buffer: the audio of every flow, placed by media time.
//!
//! Dante packets carry no sequence number, only the media time `T` of their first frame
//! (PTP time × rate). Each flow's packets fill some of the device's RX channels, so the
//! buffer is one ring of frames × RX channels indexed by `T`: a packet writes its slots'
//! columns at its frames' positions, and playout reads frame `T` when the media clock says
//! `T + latency` has come. Whatever no flow wrote plays as silence, so the output never
//! shifts in time and several transmitters line up by their media time.
//!
//! Per flow, a tag per frame (`T + 1` of the frame it last wrote) tells a duplicate from new
//! audio and, at playout, a frame the flow missed. Missing runs between audio the flow did
//! deliver count as lost packets (run length / frames per packet, rounded up), in the same
//! [`StreamStats`] the RTP jitter buffer keeps.
//!
//! Neither [`RxBuffer::push`] nor [`RxBuffer::pull`] allocates; adding a flow does.

use core::time::Duration;

use estuary_wire::dante::audio::AudioPacket;

use crate::stats::StreamStats;

/// Most RX channels one buffer holds (the largest Dante devices have 512).
pub const MAX_CHANNELS: usize = 512;

/// A flow that sent nothing for this long no longer counts frames it misses as lost.
const FLOW_IDLE: Duration = Duration::from_secs(1);

/// What to buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxConfig {
    /// RX channels (columns of every frame).
    pub channels: usize,
    pub sample_rate: u32,
    /// Playout delay behind the media clock.
    pub latency: Duration,
    /// Ring size; at least twice the latency.
    pub capacity: Duration,
}

/// One flow feeding the buffer.
#[derive(Debug, Clone)]
struct Flow {
    id: u32,
    /// RX channel (0-based) of each slot of the flow's frames; `None` for an unused slot.
    slots: Vec<Option<usize>>,
    bytes_per_sample: usize,
    /// `T + 1` of the frame this flow last wrote at each ring index (0: never).
    tags: Vec<u64>,
    /// Media time of its first packet: frames before it are not its losses.
    first: Option<u64>,
    /// End (`T` after the last frame) of the furthest packet stored.
    end: Option<u64>,
    /// Frames per packet, learned from the packets.
    fpp: u64,
    /// Missing frames in the current run (not yet followed by audio).
    missing: u64,
    /// Media time of the last packet stored, to tell a flow that stopped.
    last_seen: u64,
    /// This flow's share of the buffer's counters (a frame it missed is concealed here
    /// even when another flow delivered the same frame's other channels).
    stats: StreamStats,
    /// The run of frames it missed in the pull under way: (first, frames).
    gap: Option<(u64, usize)>,
}

impl Flow {
    /// The lowest RX channel it feeds (`usize::MAX` for none).
    fn first_channel(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .copied()
            .min()
            .unwrap_or(usize::MAX)
    }

    /// Ends its run of missed frames, if any, as a gap.
    fn close_gap(&mut self, on_gap: &mut impl FnMut(RxGap)) {
        if let Some((position, frames)) = self.gap.take() {
            on_gap(RxGap {
                position,
                frames,
                first_channel: self.first_channel(),
            });
        }
    }
}

/// A run of frames a flow missed, played as silence on its channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxGap {
    /// Media time of the first frame.
    pub position: u64,
    pub frames: usize,
    /// The lowest RX channel (0-based) of the flow that missed them: an input taking RX
    /// channels below it lost nothing (0 when the whole buffer skipped).
    pub first_channel: usize,
}

/// What a pull wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pulled {
    /// Frames written (`frames × channels` samples).
    pub frames: usize,
    /// Media time of the first.
    pub position: u64,
}

/// Why a packet was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    Stored {
        position: u64,
        frames: usize,
    },
    /// Stored behind a packet of the same flow that came first.
    Reordered {
        position: u64,
        frames: usize,
    },
    Duplicate,
    /// Some of its frames were already played out.
    Late,
    /// Further ahead than the ring holds: the transmitter's clock is not ours.
    TooEarly,
    /// Not a whole packet of the flow's format, or an unknown flow.
    Malformed,
}

/// The buffer (see the module doc).
#[derive(Debug, Clone)]
pub struct RxBuffer {
    config: RxConfig,
    capacity: u64,
    latency: u64,
    samples: Vec<i32>,
    flows: Vec<Flow>,
    /// Next frame to play.
    read: u64,
    stats: StreamStats,
}

/// Why a [`RxConfig`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RxConfigError {
    #[error("{0} RX channels: must be 1 to {MAX_CHANNELS}")]
    Channels(usize),
    #[error("sample rate {0} Hz is outside 8000..=384000")]
    SampleRate(u32),
    #[error("capacity must be at least twice the latency and hold a packet")]
    Capacity,
}

impl RxBuffer {
    /// A buffer whose playout starts at media time `media_now − latency`.
    pub fn new(config: RxConfig, media_now: u64) -> Result<RxBuffer, RxConfigError> {
        if !(1..=MAX_CHANNELS).contains(&config.channels) {
            return Err(RxConfigError::Channels(config.channels));
        }
        if !crate::jitter::SAMPLE_RATES.contains(&config.sample_rate) {
            return Err(RxConfigError::SampleRate(config.sample_rate));
        }
        let frames =
            |d: Duration| (d.as_nanos() * u128::from(config.sample_rate) / 1_000_000_000) as u64;
        let capacity = frames(config.capacity);
        let latency = frames(config.latency).max(1);
        if capacity < 2 * latency || capacity < 256 {
            return Err(RxConfigError::Capacity);
        }
        Ok(RxBuffer {
            config,
            capacity,
            latency,
            samples: vec![0; capacity as usize * config.channels],
            flows: Vec::new(),
            read: media_now.saturating_sub(latency),
            stats: StreamStats::default(),
        })
    }

    pub fn config(&self) -> &RxConfig {
        &self.config
    }

    pub fn stats(&self) -> &StreamStats {
        &self.stats
    }

    /// Next frame to play.
    pub fn position(&self) -> u64 {
        self.read
    }

    /// Starts (or changes) flow `id`: its slots go to these RX channels (0-based; `None`
    /// for a slot nobody listens to), `bytes_per_sample` wide.
    pub fn set_flow(&mut self, id: u32, slots: Vec<Option<usize>>, bytes_per_sample: usize) {
        let slots = slots
            .into_iter()
            .map(|s| s.filter(|&c| c < self.config.channels))
            .collect();
        if let Some(f) = self.flows.iter_mut().find(|f| f.id == id) {
            f.slots = slots;
            f.bytes_per_sample = bytes_per_sample;
            return;
        }
        self.flows.push(Flow {
            id,
            slots,
            bytes_per_sample,
            tags: vec![0; self.capacity as usize],
            first: None,
            end: None,
            fpp: 1,
            missing: 0,
            last_seen: 0,
            stats: StreamStats::default(),
            gap: None,
        });
    }

    /// Stops flow `id`; returns its counters (what it delivered and missed stays counted).
    pub fn remove_flow(&mut self, id: u32) -> Option<StreamStats> {
        let i = self.flows.iter().position(|f| f.id == id)?;
        Some(self.flows.swap_remove(i).stats)
    }

    /// Flow `id`'s counters, with its buffer fill.
    pub fn flow_stats(&self, id: u32) -> Option<StreamStats> {
        let flow = self.flows.iter().find(|f| f.id == id)?;
        let mut stats = flow.stats;
        stats.buffer_fill_frames = flow.end.map_or(0, |e| e.saturating_sub(self.read));
        Some(stats)
    }

    /// Whether flow `id` feeds any RX channel below `channels` (0-based), the channels of
    /// an input that takes RX 1..=`channels`.
    pub fn flow_feeds(&self, id: u32, channels: usize) -> bool {
        self.flows
            .iter()
            .find(|f| f.id == id)
            .is_some_and(|f| f.slots.iter().flatten().any(|&c| c < channels))
    }

    fn index(&self, t: u64) -> usize {
        (t % self.capacity) as usize
    }

    /// Takes one datagram of flow `id`.
    pub fn push(&mut self, id: u32, datagram: &[u8]) -> PushOutcome {
        self.stats.packets_received += 1;
        self.stats.bytes_received += datagram.len() as u64;
        let Some(fi) = self.flows.iter().position(|f| f.id == id) else {
            self.stats.malformed += 1;
            return PushOutcome::Malformed;
        };
        self.flows[fi].stats.packets_received += 1;
        self.flows[fi].stats.bytes_received += datagram.len() as u64;
        let (width, nslots) = (self.flows[fi].bytes_per_sample, self.flows[fi].slots.len());
        let parsed = AudioPacket::parse(datagram).and_then(|p| {
            let frames = p.frames(nslots, width)?;
            let t = p.header.media_time(self.config.sample_rate)?;
            Ok((p, frames, t))
        });
        let Ok((packet, frames, t)) = parsed else {
            self.stats.malformed += 1;
            self.flows[fi].stats.malformed += 1;
            return PushOutcome::Malformed;
        };
        if frames == 0 || frames as u64 > self.capacity / 2 {
            self.stats.malformed += 1;
            self.flows[fi].stats.malformed += 1;
            return PushOutcome::Malformed;
        }
        let end = t + frames as u64;
        if t < self.read {
            self.stats.packets_late += 1;
            self.flows[fi].stats.packets_late += 1;
            return PushOutcome::Late;
        }
        if end > self.read + self.capacity {
            self.stats.frames_discarded += frames as u64;
            self.flows[fi].stats.frames_discarded += frames as u64;
            return PushOutcome::TooEarly;
        }
        let flow = &self.flows[fi];
        if (t..end).any(|p| flow.tags[(p % self.capacity) as usize] == p + 1) {
            self.stats.packets_duplicate += 1;
            self.flows[fi].stats.packets_duplicate += 1;
            return PushOutcome::Duplicate;
        }
        let channels = self.config.channels;
        for (f, frame) in packet.payload.chunks_exact(width * nslots).enumerate() {
            let p = t + f as u64;
            let base = self.index(p) * channels;
            for (slot, bytes) in self.flows[fi].slots.iter().zip(frame.chunks_exact(width)) {
                if let Some(ch) = slot {
                    let mut word = [0u8; 4];
                    word[..width].copy_from_slice(bytes);
                    self.samples[base + ch] = i32::from_be_bytes(word);
                }
            }
        }
        let capacity = self.capacity;
        let flow = &mut self.flows[fi];
        for p in t..end {
            flow.tags[(p % capacity) as usize] = p + 1;
        }
        flow.fpp = frames as u64;
        flow.last_seen = t;
        flow.first = Some(flow.first.map_or(t, |f| f.min(t)));
        let reordered = flow.end.is_some_and(|e| t < e);
        flow.end = Some(flow.end.map_or(end, |e| e.max(end)));
        if reordered {
            self.stats.packets_reordered += 1;
            flow.stats.packets_reordered += 1;
            PushOutcome::Reordered {
                position: t,
                frames,
            }
        } else {
            PushOutcome::Stored {
                position: t,
                frames,
            }
        }
    }

    /// Writes the frames due at media time `media_now` (as many as fit in `out`,
    /// interleaved over every RX channel) and calls `on_gap` for each run of frames a flow
    /// missed (a run per flow: an input can tell the gaps on its own channels).
    pub fn pull(
        &mut self,
        media_now: u64,
        out: &mut [i32],
        mut on_gap: impl FnMut(RxGap),
    ) -> Pulled {
        let due_end = media_now.saturating_sub(self.latency);
        let channels = self.config.channels;
        // Stalled for longer than the ring: skip to what is still buffered.
        if due_end > self.read + self.capacity {
            let skipped = due_end - self.capacity - self.read;
            self.stats.frames_concealed += skipped;
            on_gap(RxGap {
                position: self.read,
                frames: skipped as usize,
                first_channel: 0,
            });
            self.read += skipped;
        }
        let frames = (due_end.saturating_sub(self.read) as usize).min(out.len() / channels);
        let position = self.read;
        let idle =
            (FLOW_IDLE.as_nanos() * u128::from(self.config.sample_rate) / 1_000_000_000) as u64;
        for (k, frame_out) in out.chunks_exact_mut(channels).take(frames).enumerate() {
            let p = position + k as u64;
            let i = self.index(p);
            let frame = &mut self.samples[i * channels..(i + 1) * channels];
            frame_out.copy_from_slice(frame);
            frame.fill(0);
            let mut concealed = false;
            for flow in &mut self.flows {
                if flow.tags[i] == p + 1 {
                    if flow.missing > 0 {
                        let lost = flow.missing.div_ceil(flow.fpp.max(1));
                        self.stats.packets_lost += lost;
                        flow.stats.packets_lost += lost;
                        flow.missing = 0;
                    }
                    flow.close_gap(&mut on_gap);
                } else if flow.first.is_some_and(|f| p > f)
                    && p.saturating_sub(flow.last_seen) < idle
                {
                    flow.missing += 1;
                    flow.stats.frames_concealed += 1;
                    concealed = true;
                    match &mut flow.gap {
                        Some((_, n)) => *n += 1,
                        None => flow.gap = Some((p, 1)),
                    }
                } else {
                    flow.close_gap(&mut on_gap);
                }
            }
            if concealed {
                self.stats.frames_concealed += 1;
            }
        }
        for flow in &mut self.flows {
            flow.close_gap(&mut on_gap);
        }
        self.read += frames as u64;
        self.stats.buffer_fill_frames = self
            .flows
            .iter()
            .filter_map(|f| f.end)
            .max()
            .map_or(0, |e| e.saturating_sub(self.read));
        Pulled { frames, position }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use estuary_wire::dante::audio::{AudioHeader, write};
    use proptest::prelude::*;

    const RATE: u32 = 48_000;

    fn buffer(channels: usize, now: u64) -> RxBuffer {
        RxBuffer::new(
            RxConfig {
                channels,
                sample_rate: RATE,
                latency: Duration::from_millis(2),
                capacity: Duration::from_millis(100),
            },
            now,
        )
        .expect("config")
    }

    /// A 24-bit packet of `frames` frames of `slots` channels; sample = channel × 1000 + frame
    /// index from `t`.
    fn packet(t: u64, frames: usize, slots: usize) -> Vec<u8> {
        let samples: Vec<i32> = (0..frames)
            .flat_map(|f| {
                (0..slots).map(move |s| ((s as i32 + 1) * 1000 + (t as i32 + f as i32)) << 8)
            })
            .collect();
        let mut out = Vec::new();
        write(AudioHeader::from_media_time(t, RATE), &samples, 3, &mut out).expect("w");
        out
    }

    #[test]
    fn two_flows_fill_their_channels_in_media_time() {
        let start = 1_000_000;
        let mut b = buffer(4, start);
        // Flow 1 carries TX channels to RX 1 and 3; flow 2 to RX 2 and nothing.
        b.set_flow(1, vec![Some(0), Some(2)], 3);
        b.set_flow(2, vec![Some(1), None], 3);
        let t0 = b.position();
        for k in 0..4 {
            let t = t0 + 16 * k;
            assert!(matches!(
                b.push(1, &packet(t, 16, 2)),
                PushOutcome::Stored { .. }
            ));
            assert!(matches!(
                b.push(2, &packet(t, 16, 2)),
                PushOutcome::Stored { .. }
            ));
        }
        let mut out = vec![0; 64 * 4];
        // Nothing is due before the latency has passed.
        assert_eq!(b.pull(start, &mut out, |_| {}).frames, 0);
        let pulled = b.pull(start + 64, &mut out, |_| panic!("no gap"));
        assert_eq!(
            pulled,
            Pulled {
                frames: 64,
                position: t0
            }
        );
        for f in 0..64 {
            let t = (t0 + f as u64) as i32;
            assert_eq!(
                &out[f * 4..f * 4 + 4],
                &[(1000 + t) << 8, (1000 + t) << 8, (2000 + t) << 8, 0]
            );
        }
        assert_eq!(b.stats().packets_received, 8);
        assert_eq!(b.stats().packets_lost, 0);
    }

    #[test]
    fn loss_is_silence_of_exactly_its_length_and_counted() {
        let mut b = buffer(2, 10_000);
        b.set_flow(7, vec![Some(0), Some(1)], 3);
        let t0 = b.position();
        for k in [0u64, 1, 3, 4, 5] {
            b.push(7, &packet(t0 + 32 * k, 32, 2));
        }
        let mut out = vec![0; 6 * 32 * 2];
        let mut gaps = Vec::new();
        let pulled = b.pull(t0 + 96 + 192, &mut out, |g| gaps.push(g));
        assert_eq!(pulled.frames, 192);
        assert_eq!(
            gaps,
            [RxGap {
                position: t0 + 64,
                frames: 32,
                first_channel: 0
            }]
        );
        assert!(out[64 * 2..96 * 2].iter().all(|&s| s == 0));
        assert_eq!(out[96 * 2], (1000 + (t0 + 96) as i32) << 8);
        assert_eq!(b.stats().packets_lost, 1);
        assert_eq!(b.stats().frames_concealed, 32);
    }

    #[test]
    fn each_flow_counts_only_its_own_packets_and_losses() {
        let mut b = buffer(4, 10_000);
        // Flow 1 feeds RX 1-2, flow 2 feeds RX 3-4; flow 2 loses one packet of four.
        b.set_flow(1, vec![Some(0), Some(1)], 3);
        b.set_flow(2, vec![Some(2), Some(3)], 3);
        let t0 = b.position();
        for k in 0..4u64 {
            b.push(1, &packet(t0 + 32 * k, 32, 2));
            if k != 1 {
                b.push(2, &packet(t0 + 32 * k, 32, 2));
            }
        }
        b.push(2, &packet(t0, 32, 2));
        let mut out = vec![0; 128 * 4];
        let mut gaps = Vec::new();
        b.pull(t0 + 96 + 128, &mut out, |g| gaps.push(g));
        // The gap is flow 2's, on RX 3-4: an input of RX 1-2 lost nothing.
        assert_eq!(
            gaps,
            [RxGap {
                position: t0 + 32,
                frames: 32,
                first_channel: 2
            }]
        );
        let one = b.flow_stats(1).expect("flow 1");
        let two = b.flow_stats(2).expect("flow 2");
        assert_eq!((one.packets_received, one.packets_lost), (4, 0));
        assert_eq!(one.frames_concealed, 0);
        assert_eq!((two.packets_received, two.packets_lost), (4, 1));
        assert_eq!((two.frames_concealed, two.packets_duplicate), (32, 1));
        assert_eq!(b.stats().packets_received, 8);
        assert!(b.flow_feeds(1, 2) && !b.flow_feeds(2, 2) && b.flow_feeds(2, 3));
        // A stopped flow hands its counters back.
        assert_eq!(b.remove_flow(2), Some(two));
        assert_eq!(b.flow_stats(2), None);
    }

    #[test]
    fn frames_before_a_flow_starts_are_not_its_losses() {
        let mut b = buffer(2, 10_000);
        b.set_flow(1, vec![Some(0), Some(1)], 3);
        let t0 = b.position();
        b.push(1, &packet(t0 + 100, 32, 2));
        let mut out = vec![0; 200 * 2];
        b.pull(t0 + 96 + 132, &mut out, |g| {
            panic!("gap {} {}", g.position - t0, g.frames)
        });
        assert_eq!(b.stats().frames_concealed, 0);
        assert_eq!(b.stats().packets_lost, 0);
    }

    #[test]
    fn late_duplicate_reordered_and_too_early_are_counted() {
        let mut b = buffer(2, 10_000);
        b.set_flow(1, vec![Some(0), Some(1)], 3);
        let t0 = b.position();
        assert!(matches!(
            b.push(1, &packet(t0 + 32, 32, 2)),
            PushOutcome::Stored { .. }
        ));
        assert!(matches!(
            b.push(1, &packet(t0, 32, 2)),
            PushOutcome::Reordered { .. }
        ));
        assert_eq!(b.push(1, &packet(t0, 32, 2)), PushOutcome::Duplicate);
        assert_eq!(
            b.push(1, &packet(t0 + 1_000_000, 32, 2)),
            PushOutcome::TooEarly
        );
        let mut out = vec![0; 64 * 2];
        b.pull(t0 + 96 + 64, &mut out, |_| {});
        assert_eq!(b.push(1, &packet(t0 + 32, 32, 2)), PushOutcome::Late);
        assert_eq!(b.push(9, &packet(t0 + 96, 32, 2)), PushOutcome::Malformed);
        let s = b.stats();
        assert_eq!(
            (
                s.packets_reordered,
                s.packets_duplicate,
                s.packets_late,
                s.malformed
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(s.frames_discarded, 32);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400), now in 0u64..u64::MAX / 4) {
            let mut b = buffer(3, now);
            b.set_flow(1, vec![Some(0), None, Some(2)], 3);
            let _ = b.push(1, &bytes);
            let mut out = vec![0; 300];
            let _ = b.pull(now.saturating_add(500), &mut out, |_| {});
        }
    }
}
