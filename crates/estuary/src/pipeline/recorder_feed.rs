//! A recorder's event ring as the ingest thread fills it: contiguous blocks are told as one
//! chunk of up to [`SPAN`] frames instead of one event per pulled millisecond.
//!
//! Each event was a store into a line of the ring last written seconds before, so a miss to
//! memory per few events and recorder, on the ingest thread. The recorder only reads its
//! ring every quarter of a second and joins contiguous chunks anyway; the samples of a chunk
//! not told yet wait in the sample ring (the recorder pops samples for the chunks it is told
//! of, never more).

use crate::record::FeedEvent;

/// Frames joined into one chunk before it is told (20 ms at 48 kHz): 20 times fewer events,
/// and a recorder rewriting its header learns of all but the last 20 ms in its ring, which
/// is what a kill -9 can cost on top of the header interval.
pub(super) const SPAN: u32 = 960;

/// While a chunk is pending, one slot of the ring is free for it: nothing else is pushed
/// before the pending chunk, so the recorder always learns of samples already in its ring.
pub(super) struct RecorderEvents {
    ring: rtrb::Producer<FeedEvent>,
    /// (media position, frames) of the contiguous blocks pushed and not told yet.
    pending: Option<(u64, u32)>,
}

impl RecorderEvents {
    pub fn new(ring: rtrb::Producer<FeedEvent>) -> Self {
        Self {
            ring,
            pending: None,
        }
    }

    /// Whether a block of `frames` from `position` can be told of once its samples are in
    /// the ring. A pending chunk it does not continue is told first.
    pub fn ready_for(&mut self, position: u64, frames: u32) -> bool {
        if let Some((start, n)) = self.pending {
            if start + u64::from(n) == position && n + frames <= SPAN {
                return true;
            }
            self.flush();
        }
        super::ingest::has_room(&self.ring, 1)
    }

    /// The samples of a block [`ready_for`](Self::ready_for) said yes to are in the ring.
    pub fn pushed(&mut self, position: u64, frames: u32) {
        let (_, n) = self.pending.get_or_insert((position, 0));
        *n += frames;
        if *n >= SPAN {
            self.flush();
        }
    }

    /// Tells the pending chunk, if any (its slot was free when it started).
    pub fn flush(&mut self) {
        if let Some((position, frames)) = self.pending.take() {
            let told = self.ring.push(FeedEvent::Chunk { position, frames });
            debug_assert!(told.is_ok(), "a pending chunk's slot was taken");
        }
    }

    /// Pushes a gap or late event after the chunks before it; `false` if it did not fit.
    pub fn push(&mut self, event: FeedEvent) -> bool {
        self.flush();
        self.ring.push(event).is_ok()
    }
}

impl Drop for RecorderEvents {
    /// The ingest lets go of an input before its recorders' last drain: they hear of every
    /// sample it pushed.
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(rx: &mut rtrb::Consumer<FeedEvent>) -> Vec<FeedEvent> {
        std::iter::from_fn(|| rx.pop().ok()).collect()
    }

    #[test]
    fn joins_contiguous_blocks_and_keeps_the_order_of_gaps() {
        let (ring, mut rx) = rtrb::RingBuffer::new(16);
        let mut events = RecorderEvents::new(ring);
        for k in 0..3 {
            assert!(events.ready_for(100 + 48 * k, 48));
            events.pushed(100 + 48 * k, 48);
        }
        assert_eq!(drain(&mut rx), [], "told at a flush, not per block");
        // A gap in the next block: the chunks before it come first.
        assert!(events.push(FeedEvent::Gap {
            position: 250,
            frames: 2
        }));
        assert!(events.ready_for(244, 48));
        events.pushed(244, 48);
        // A jump: the chunk before it is told when the next block does not continue it.
        assert!(events.ready_for(1_000, 48));
        events.pushed(1_000, 48);
        assert!(events.push(FeedEvent::Late));
        drop(events);
        assert_eq!(
            drain(&mut rx),
            [
                FeedEvent::Chunk {
                    position: 100,
                    frames: 144
                },
                FeedEvent::Gap {
                    position: 250,
                    frames: 2
                },
                FeedEvent::Chunk {
                    position: 244,
                    frames: 48
                },
                FeedEvent::Chunk {
                    position: 1_000,
                    frames: 48
                },
                FeedEvent::Late,
            ]
        );
    }

    #[test]
    fn tells_a_chunk_once_it_spans_enough_frames() {
        let (ring, mut rx) = rtrb::RingBuffer::new(16);
        let mut events = RecorderEvents::new(ring);
        let block = 48;
        let mut position = 0;
        while position < u64::from(SPAN) {
            assert!(events.ready_for(position, block));
            events.pushed(position, block);
            position += u64::from(block);
        }
        assert_eq!(
            drain(&mut rx),
            [FeedEvent::Chunk {
                position: 0,
                frames: SPAN
            }]
        );
    }

    /// A full ring refuses a new chunk, but never the pending one's event.
    #[test]
    fn a_pending_chunk_always_has_its_slot() {
        let (ring, mut rx) = rtrb::RingBuffer::new(2);
        let mut events = RecorderEvents::new(ring);
        assert!(events.ready_for(0, 48));
        events.pushed(0, 48);
        // A gap takes the last slot after the pending chunk is told.
        assert!(events.push(FeedEvent::Gap {
            position: 48,
            frames: 1
        }));
        assert!(!events.ready_for(48, 48), "no slot for a new chunk");
        assert!(!events.push(FeedEvent::Late), "full");
        assert_eq!(drain(&mut rx).len(), 2);
        assert!(events.ready_for(48, 48));
        events.pushed(48, 48);
        assert!(events.ready_for(96, 48), "continues the pending chunk");
        events.pushed(96, 48);
        drop(events);
        assert_eq!(
            drain(&mut rx),
            [FeedEvent::Chunk {
                position: 48,
                frames: 96
            }]
        );
    }
}
