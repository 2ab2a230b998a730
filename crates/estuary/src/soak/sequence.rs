//! The known sequence the soak sends ([`sequence_sample`]: every sample says which frame and
//! channel it is), and the checks of what comes out of the gateway against it.
//!
//! A frame index `n` counts frames from the sender's first packet; packet `k` holds frames
//! `k × fpp .. (k + 1) × fpp`. A lost packet must come out as exactly its frames of silence.

use estuary_io::tx::sequence_sample;

/// The sequence's value is 24 bits of `n × 64 + ch`: it repeats every 2^18 frames (5.46 s).
const PERIOD: u64 = 1 << 18;

/// The frame index modulo [`PERIOD`] a sample of source channel `ch` carries, if it is a
/// value of the sequence at all.
pub fn frame_of(sample: i32, ch: usize) -> Option<u64> {
    let s = sample as u32;
    if s & 0xff != 0 {
        return None;
    }
    let v = (s >> 8).wrapping_sub(ch as u32) & 0x00ff_ffff;
    (v & 63 == 0).then_some(u64::from(v >> 6))
}

/// The frame index congruent to `m` modulo [`PERIOD`] nearest to `expected`.
fn unwrap_near(m: u64, expected: u64) -> u64 {
    let base = expected - expected % PERIOD + m;
    [
        base.checked_sub(PERIOD),
        Some(base),
        base.checked_add(PERIOD),
    ]
    .into_iter()
    .flatten()
    .min_by_key(|c| c.abs_diff(expected))
    .unwrap_or(base)
}

/// What one output frame is, against the frame `n` of the sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    Exact,
    Silent,
    Wrong,
}

/// Compares `frame` (one sample per entry of `sources`, the sender's 0-based channels) with
/// frame `n` of the sequence.
pub fn classify(n: u64, frame: &[i32], sources: &[usize]) -> Frame {
    if frame
        .iter()
        .zip(sources)
        .all(|(&s, &c)| s == sequence_sample(n, c))
    {
        Frame::Exact
    } else if frame.iter().all(|&s| s == 0) {
        Frame::Silent
    } else {
        Frame::Wrong
    }
}

/// Faults found by a check: counted, the first few described.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    pub count: u64,
    pub first: Vec<String>,
}

impl Faults {
    pub fn add(&mut self, what: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.len() < 5 {
            self.first.push(what());
        }
    }
}

/// Runs of silent frames turned into the packets they replace; a run that is not whole
/// packets is a fault (a lost packet must be silence of exactly its length).
#[derive(Debug)]
pub struct GapTracker {
    fpp: u64,
    run: Option<(u64, u64)>,
    pub packets: Vec<u64>,
    pub faults: Faults,
}

impl GapTracker {
    pub fn new(fpp: u64) -> Self {
        Self {
            fpp: fpp.max(1),
            run: None,
            packets: Vec::new(),
            faults: Faults::default(),
        }
    }

    /// Frame `n` is silent where audio was sent.
    pub fn silent(&mut self, n: u64) {
        match &mut self.run {
            Some((start, len)) if *start + *len == n => *len += 1,
            _ => {
                self.close();
                self.run = Some((n, 1));
            }
        }
    }

    /// Ends the current run of silence.
    pub fn close(&mut self) {
        if let Some((start, len)) = self.run.take() {
            if start % self.fpp != 0 || len % self.fpp != 0 {
                self.faults.add(|| {
                    format!("{len} silent frames from frame {start} are not whole packets")
                });
            } else {
                self.packets
                    .extend(start / self.fpp..(start + len) / self.fpp);
            }
        }
    }
}

/// Checks a stream that carries no timestamps (the decoded SRT output): each frame's values
/// say which frame it is, so the check follows the sequence and measures each silent run
/// between two frames of audio against the frames it skipped.
#[derive(Debug)]
pub struct StreamCheck {
    sources: Vec<usize>,
    next: Option<u64>,
    silent_run: u64,
    pub first_frame: Option<u64>,
    pub exact: u64,
    pub gaps: GapTracker,
    pub faults: Faults,
}

impl StreamCheck {
    /// `sources`: the sender's 0-based channel of each channel of the stream. The first frame
    /// of audio must come within the sequence's first period (5.46 s) of the sender's start.
    pub fn new(sources: Vec<usize>, fpp: u64) -> Self {
        Self {
            sources,
            next: None,
            silent_run: 0,
            first_frame: None,
            exact: 0,
            gaps: GapTracker::new(fpp),
            faults: Faults::default(),
        }
    }

    /// The last frame of audio seen.
    pub fn last_frame(&self) -> Option<u64> {
        self.next.map(|n| n.saturating_sub(1))
    }

    /// Interleaved samples, `sources.len()` per frame. Silence before the first frame of
    /// audio and after the last one is not judged.
    pub fn push(&mut self, samples: &[i32]) {
        let width = self.sources.len().max(1);
        for frame in samples.chunks_exact(width) {
            self.push_frame(frame);
        }
    }

    fn push_frame(&mut self, frame: &[i32]) {
        if frame.iter().all(|&s| s == 0) {
            if self.next.is_some() {
                self.silent_run += 1;
            }
            return;
        }
        let expected = self.next.map(|next| next + self.silent_run);
        let Some(m) = frame_of(frame[0], self.sources[0]) else {
            self.faults
                .add(|| format!("a frame after frame {expected:?} is not of the sequence"));
            self.next = expected.map(|e| e + 1);
            self.silent_run = 0;
            return;
        };
        let n = match (self.next, expected) {
            (Some(next), Some(expected)) => {
                let n = unwrap_near(m, expected);
                if n != expected {
                    self.faults.add(|| {
                        format!(
                            "frame {n} follows frame {} after {} silent frames",
                            next - 1,
                            self.silent_run
                        )
                    });
                } else {
                    for s in next..expected {
                        self.gaps.silent(s);
                    }
                    self.gaps.close();
                }
                n
            }
            _ => {
                self.first_frame = Some(m);
                m
            }
        };
        self.silent_run = 0;
        match classify(n, frame, &self.sources) {
            Frame::Exact => self.exact += 1,
            _ => self
                .faults
                .add(|| format!("frame {n} differs from the sequence: {frame:08x?}")),
        }
        self.next = Some(n + 1);
    }
}

/// The packets of `a` in `range` that are not in `b` (both sorted).
pub fn missing_in(a: &[u64], b: &[u64], range: std::ops::Range<u64>) -> Vec<u64> {
    a.iter()
        .copied()
        .filter(|k| range.contains(k) && b.binary_search(k).is_err())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPP: u64 = 6;

    fn frames(range: std::ops::Range<u64>, sources: &[usize]) -> Vec<i32> {
        range
            .flat_map(|n| sources.iter().map(move |&c| sequence_sample(n, c)))
            .collect()
    }

    #[test]
    fn every_sample_names_its_frame() {
        for n in [0, 1, 5, 262_143, 262_144, 1_000_003] {
            for ch in [0, 7, 63] {
                assert_eq!(frame_of(sequence_sample(n, ch), ch), Some(n % PERIOD));
            }
        }
        assert_eq!(frame_of(0x0102_0301, 0), None);
        assert_eq!(unwrap_near(3, PERIOD * 2 - 2), PERIOD * 2 + 3);
        assert_eq!(unwrap_near(PERIOD - 1, PERIOD + 1), PERIOD - 1);
    }

    #[test]
    fn a_lost_packet_is_one_gap_and_the_rest_is_exact() {
        let src = [0, 1, 2, 3];
        let mut check = StreamCheck::new(src.to_vec(), FPP);
        let mut s = vec![0; 4 * 10];
        s.extend(frames(0..300_000, &src));
        // Packet 43_690 (across the sequence's wrap) and packets 10..12 come out silent.
        for n in (43_690 * FPP..43_691 * FPP).chain(10 * FPP..12 * FPP) {
            let i = n as usize * 4 + 40;
            s[i..i + 4].fill(0);
        }
        s.extend([0; 4 * 30]);
        check.push(&s[..1232]);
        check.push(&s[1232..]);
        check.gaps.close();
        assert_eq!(check.faults.count, 0, "{:?}", check.faults);
        assert_eq!(check.gaps.faults.count, 0);
        assert_eq!(check.gaps.packets, vec![10, 11, 43_690]);
        assert_eq!(check.first_frame, Some(0));
        assert_eq!(check.last_frame(), Some(299_999));
        assert_eq!(check.exact, 300_000 - 3 * FPP);
    }

    #[test]
    fn partial_silence_a_jump_and_a_wrong_sample_are_faults() {
        let src = [8, 9];
        let mut check = StreamCheck::new(src.to_vec(), FPP);
        let mut s = frames(0..100, &src);
        s[2 * 20..2 * 23].fill(0); // 3 frames: not a whole packet
        s[2 * 50 + 1] ^= 0x100; // one sample off
        s.extend(frames(200..210, &src)); // a jump with no silence
        check.push(&s);
        check.gaps.close();
        assert_eq!(check.faults.count, 2, "{:?}", check.faults);
        assert_eq!(check.gaps.faults.count, 1);
        assert!(check.gaps.packets.is_empty());
    }

    #[test]
    fn file_frames_are_classified_by_position() {
        let src = [56, 63];
        let f = frames(7..8, &src);
        assert_eq!(classify(7, &f, &src), Frame::Exact);
        assert_eq!(classify(8, &f, &src), Frame::Wrong);
        assert_eq!(classify(8, &[0, 0], &src), Frame::Silent);
        assert_eq!(missing_in(&[1, 4, 9], &[4], 0..5), vec![1]);
    }
}
