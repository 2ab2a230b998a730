//! EBU R128 loudness (ITU-R BS.1770-4) of groups of channels of an input.
//!
//! The K-weighting filter runs in the monitor's per-sample pass over all channels at once
//! ([`KWeighting`], in `f64` across channels so it vectorises), which hands each group the
//! K-weighted energy of every channel per 100 ms block. A [`LoudnessMeter`] keeps a ring of
//! its group's block energies (3 s) and, as BS.1770-4 §2.8 and EBU Tech 3342 prescribe, adds a
//! 400 ms gating block every 100 ms and a 3 s short-term block every second to fixed 1000-bin
//! histograms (0.1 LU bins, −70…+30 LUFS), from which integrated loudness and LRA are derived.
//!
//! This is the `ebur128` crate's algorithm in histogram mode (same filter design, same bin
//! edges, same gating and percentile arithmetic), restructured so that the filter is shared
//! and vectorised across channels instead of run per group and per channel, and so that the
//! 400 ms and 3 s energies come from per-window sums instead of re-squaring 3 s of stored audio.
//! Those sums are kept as windows come and go, and integrated loudness and LRA are derived
//! when a histogram changes, over its non-empty bins, so reading the levels costs nothing.
//! `tests/meters.rs` checks the EBU Tech 3341/3342 cases within 0.1 LU.
//! Momentary and short-term loudness end at the last complete 100 ms block, so they change
//! 10 times a second (EBU Tech 3341 asks for at least that). Blocks rather than 10 ms windows
//! keep each group's ring at 30 values and its work to one call per 100 ms: with a thousand
//! channels metered, a 300-window ring per group fell out of the cache between two windows,
//! and every window then paid two misses.
//!
//! Nothing here allocates after construction.

use std::sync::OnceLock;

use super::true_peak::{LANES, Lane};

/// Histogram bins (0.1 LU from −70 LUFS).
const BINS: usize = 1000;

/// `10·log10(energy) − 0.691`, BS.1770's mean square to LUFS.
pub(crate) fn energy_to_loudness(energy: f64) -> f64 {
    10.0 * energy.log10() - 0.691
}

/// Bin edges and bin-centre energies, as `ebur128` generates them.
struct Bins {
    boundaries: [f64; BINS + 1],
    energies: [f64; BINS],
}

fn bins() -> &'static Bins {
    static BINS_TABLE: OnceLock<Box<Bins>> = OnceLock::new();
    BINS_TABLE.get_or_init(|| {
        let mut b = Box::new(Bins {
            boundaries: [0.0; BINS + 1],
            energies: [0.0; BINS],
        });
        for (i, o) in b.energies.iter_mut().enumerate() {
            *o = 10f64.powf((i as f64 / 10.0 - 69.95 + 0.691) / 10.0);
        }
        for (i, o) in b.boundaries.iter_mut().enumerate() {
            *o = 10f64.powf((i as f64 / 10.0 - 70.0 + 0.691) / 10.0);
        }
        b
    })
}

/// Index of the bin holding `energy` (which is at least the lowest edge).
fn bin_of(b: &Bins, energy: f64) -> usize {
    let (mut min, mut max) = (0, BINS);
    while max - min > 1 {
        let mid = (min + max) / 2;
        if energy >= b.boundaries[mid] {
            min = mid;
        } else {
            max = mid;
        }
    }
    min
}

/// First bin at or above the gate `threshold` (an energy).
fn gate_start(b: &Bins, threshold: f64) -> usize {
    if threshold < b.boundaries[0] {
        return 0;
    }
    let i = bin_of(b, threshold);
    if threshold > b.energies[i] { i + 1 } else { i }
}

/// The BS.1770-4 K-weighting of `rate` as its two sections: the pre-filter (shelf) `(b, a)`
/// and the RLB high-pass `a` (its `b` is `[1, −2, 1]`), with `a[0] = 1`.
#[allow(non_snake_case)]
fn k_sections(rate: f64) -> (([f64; 3], [f64; 3]), [f64; 3]) {
    let f0 = 1681.974450955533;
    let G = 3.999843853973347;
    let Q = 0.7071752369554196;
    let K = (core::f64::consts::PI * f0 / rate).tan();
    let Vh = 10f64.powf(G / 20.0);
    let Vb = Vh.powf(0.4996667741545416);
    let a0 = 1.0 + K / Q + K * K;
    let pb = [
        (Vh + Vb * K / Q + K * K) / a0,
        2.0 * (K * K - Vh) / a0,
        (Vh - Vb * K / Q + K * K) / a0,
    ];
    let pa = [1.0, 2.0 * (K * K - 1.0) / a0, (1.0 - K / Q + K * K) / a0];
    let f0 = 38.13547087602444;
    let Q = 0.5003270373238773;
    let K = (core::f64::consts::PI * f0 / rate).tan();
    let rb = [1.0, -2.0, 1.0];
    let ra = [
        1.0,
        2.0 * (K * K - 1.0) / (1.0 + K / Q + K * K),
        (1.0 - K / Q + K * K) / (1.0 + K / Q + K * K),
    ];
    debug_assert_eq!(rb, [1.0, -2.0, 1.0]);
    ((pb, pa), ra)
}

/// K-weighting state of every channel of an input, in lane groups (see
/// [`super::true_peak::LANES`]) so the per-frame loop runs on whole vectors of channels.
///
/// It runs in `f32` as two direct-form I sections (shelf, then high-pass), which is twice the
/// lanes of `ebur128`'s `f64` 4th-order direct form II. That form would not do in `f32` (its
/// 4th-order coefficients lose the 38 Hz poles), but the sections do: the high-pass numerator
/// `x − 2x₁ + x₂` is exact, and the Tech 3341/3342 cases stay within 0.1 LU.
#[derive(Debug, Clone)]
pub(crate) struct KWeighting {
    /// Shelf `b0 b1 b2 a1 a2`.
    pub(crate) shelf: [f32; 5],
    /// High-pass `a1 a2`.
    pub(crate) high_pass: [f32; 2],
    /// Per lane group: `x[n−1] x[n−2]` (input), `y[n−1] y[n−2]` (shelf output),
    /// `z[n−1] z[n−2]` (output).
    pub(crate) state: Vec<[Lane; 6]>,
    /// Σ (K-weighted sample)² of the current 100 ms block, per lane group (in sample order,
    /// so how the audio is cut into pieces changes nothing).
    pub(crate) sum: Vec<Lane>,
    /// The same per channel in `f64` (padded to whole groups), at a block end.
    pub(crate) energy: Vec<f64>,
}

impl KWeighting {
    pub(crate) fn new(groups: usize, sample_rate: u32) -> Self {
        let ((b, a), hp) = k_sections(f64::from(sample_rate));
        KWeighting {
            shelf: [b[0], b[1], b[2], a[1], a[2]].map(|c| c as f32),
            high_pass: [hp[1] as f32, hp[2] as f32],
            state: vec![[[0.0; LANES]; 6]; groups],
            sum: vec![[0.0; LANES]; groups],
            energy: vec![0.0; groups * LANES],
        }
    }

    /// At a block end: moves the sums to `energy`.
    pub(crate) fn close_block(&mut self) {
        for (e, s) in self.energy.iter_mut().zip(self.sum.as_flattened()) {
            *e = f64::from(*s);
        }
    }

    /// After a block end: clears the sums and flushes states that decayed below −400 dB
    /// (after long silence), which would otherwise become subnormal and slow every operation
    /// on them; they are far below anything the meter can show.
    pub(crate) fn end_block(&mut self) {
        self.sum.fill([0.0; LANES]);
        for v in self.state.iter_mut().flatten().flatten() {
            if v.abs() < 1e-20 {
                *v = 0.0;
            }
        }
    }
}

/// Loudness of one group at one instant, in LUFS (LU for `range`). A value is
/// `f64::NEG_INFINITY` while there is no (ungated) energy to measure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoudnessLevels {
    /// Momentary loudness (400 ms window), EBU Tech 3341 §2.
    pub momentary: f64,
    /// Short-term loudness (3 s window).
    pub short_term: f64,
    /// Integrated (gated) loudness since the start (BS.1770-4 §2.8: −70 LUFS absolute gate,
    /// −10 LU relative gate).
    pub integrated: f64,
    /// Loudness range, EBU Tech 3342 (10th to 95th percentile of gated short-term values);
    /// 0 until there is enough signal.
    pub range: f64,
}

/// R128 meter of `count` consecutive channels starting at `first` of an input, fed the
/// K-weighted energies of each 10 ms window.
#[derive(Debug)]
pub struct LoudnessMeter {
    first: usize,
    count: usize,
    /// BS.1770 channel weights of the group (the `ebur128` default channel map).
    weights: Vec<f64>,
    window_frames: f64,
    /// Weighted group energy (Σ over the block, not yet divided by frames) of the last 3 s
    /// of blocks.
    ring: [f64; BLOCKS],
    next: usize,
    /// Σ of the ring's last [`MOMENTARY`] windows and of all of it, kept as blocks come and
    /// go (and summed afresh at every turn of the ring, so rounding never accumulates).
    momentary_sum: f64,
    short_term_sum: f64,
    windows: u64,
    blocks: Histogram,
    short_terms: Histogram,
    /// Derived from the histograms when they change (every 100 ms and 1 s), not at every
    /// read of the levels.
    integrated: f64,
    range: f64,
}

/// Windows per 100 ms, 400 ms and 3 s.
const STEP: usize = 10;
/// Windows in one block of [`LoudnessMeter::push_block`].
pub(crate) const WINDOWS_PER_BLOCK: u64 = STEP as u64;
const MOMENTARY: usize = 40;
const SHORT_TERM: usize = 300;
/// 100 ms blocks in the ring (3 s), of which the last [`MOMENTARY_BLOCKS`] are 400 ms.
const BLOCKS: usize = SHORT_TERM / STEP;
const MOMENTARY_BLOCKS: usize = MOMENTARY / STEP;

impl LoudnessMeter {
    /// A meter of channels `first..first + count` of an input analysed in windows of
    /// `window_frames`. One or two channels are weighted 1 (L, R); a larger group gets the
    /// BS.1770 weights of L R C LFE Ls Rs (4 channels: L R Ls Rs; 5: L R C Ls Rs), channels
    /// beyond the sixth weight 0.
    pub fn new(first: u16, count: u16, window_frames: u64) -> Self {
        let count = usize::from(count);
        let weights = match count {
            4 => vec![1.0, 1.0, 1.41, 1.41],
            5 => vec![1.0, 1.0, 1.0, 1.41, 1.41],
            _ => (0..count)
                .map(|c| {
                    [1.0, 1.0, 1.0, 0.0, 1.41, 1.41]
                        .get(c)
                        .copied()
                        .unwrap_or(0.0)
                })
                .collect(),
        };
        let _ = bins();
        LoudnessMeter {
            first: usize::from(first),
            count,
            weights,
            window_frames: window_frames.max(1) as f64,
            ring: [0.0; BLOCKS],
            next: 0,
            momentary_sum: 0.0,
            short_term_sum: 0.0,
            windows: 0,
            blocks: Histogram::new(),
            short_terms: Histogram::new(),
            integrated: f64::NEG_INFINITY,
            range: 0.0,
        }
    }

    /// First channel of the group (index in the input).
    pub fn first_channel(&self) -> u16 {
        self.first as u16
    }

    /// Channels in the group.
    pub fn channels(&self) -> u16 {
        self.count as u16
    }

    /// Accounts a complete 100 ms block ([`WINDOWS_PER_BLOCK`] windows), given the
    /// K-weighted energy of every channel of the input over it.
    pub fn push_block(&mut self, channel_energy: &[f64]) {
        let group = channel_energy
            .get(self.first..self.first + self.count)
            .unwrap_or_default();
        let energy = group
            .iter()
            .zip(&self.weights)
            .map(|(e, w)| e * w)
            .sum::<f64>();
        self.windows += STEP as u64;
        let w = self.windows;
        let leaving_momentary = self.ring[(self.next + BLOCKS - MOMENTARY_BLOCKS) % BLOCKS];
        let leaving_short_term = std::mem::replace(&mut self.ring[self.next], energy);
        self.momentary_sum += energy - leaving_momentary;
        self.short_term_sum += energy - leaving_short_term;
        self.next = (self.next + 1) % BLOCKS;
        if self.next == 0 {
            self.momentary_sum = self.ring[BLOCKS - MOMENTARY_BLOCKS..].iter().sum();
            self.short_term_sum = self.ring.iter().sum();
        }
        let b = bins();
        if w >= MOMENTARY as u64 {
            let e = self.mean_energy(self.momentary_sum, MOMENTARY);
            if e >= b.boundaries[0] {
                self.blocks.add(bin_of(b, e));
                self.integrated = integrated(&self.blocks);
            }
        }
        if w >= SHORT_TERM as u64 && (w - SHORT_TERM as u64).is_multiple_of(10 * STEP as u64) {
            let e = self.mean_energy(self.short_term_sum, SHORT_TERM);
            if e >= b.boundaries[0] {
                self.short_terms.add(bin_of(b, e));
                self.range = range(&self.short_terms);
            }
        }
    }

    /// Mean square of `sum` over `windows` windows (zeros before the start, as `ebur128`'s
    /// zero-filled buffer); a sum kept by adding and subtracting may dip just below 0.
    fn mean_energy(&self, sum: f64, windows: usize) -> f64 {
        sum.max(0.0) / (windows as f64 * self.window_frames)
    }

    fn loudness_of(energy: f64) -> f64 {
        if energy <= 0.0 {
            f64::NEG_INFINITY
        } else {
            energy_to_loudness(energy)
        }
    }

    /// The current values.
    pub fn levels(&self) -> LoudnessLevels {
        LoudnessLevels {
            momentary: Self::loudness_of(self.mean_energy(self.momentary_sum, MOMENTARY)),
            short_term: Self::loudness_of(self.mean_energy(self.short_term_sum, SHORT_TERM)),
            integrated: self.integrated,
            range: self.range,
        }
    }
}

/// A histogram of block energies over the [`Bins`], and the span of its non-empty bins: a
/// programme's blocks fill a few dozen of the 1000 bins, and the sums below walk only those
/// (skipping empty bins adds exact zeros, so the results are the same).
#[derive(Debug)]
struct Histogram {
    counts: Box<[u64; BINS]>,
    /// Non-empty bins are within `lo..hi` (empty: `lo >= hi`).
    lo: usize,
    hi: usize,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            counts: Box::new([0; BINS]),
            lo: BINS,
            hi: 0,
        }
    }

    fn add(&mut self, bin: usize) {
        if let Some(c) = self.counts.get_mut(bin) {
            *c += 1;
            self.lo = self.lo.min(bin);
            self.hi = self.hi.max(bin + 1);
        }
    }

    /// The counts and bin energies of bins `from..` that may be non-empty.
    fn occupied(&self, from: usize) -> (&[u64], &[f64]) {
        let range = from.max(self.lo)..self.hi.max(from.max(self.lo));
        (&self.counts[range.clone()], &bins().energies[range])
    }
}

/// Gated loudness of a histogram of 400 ms blocks (BS.1770-4 §2.8).
fn integrated(h: &Histogram) -> f64 {
    let b = bins();
    let sums = |(counts, energies): (&[u64], &[f64])| {
        counts
            .iter()
            .zip(energies)
            .fold((0u64, 0.0), |(n, p), (c, e)| (n + c, p + *c as f64 * e))
    };
    let (count, power) = sums(h.occupied(0));
    if count == 0 {
        return f64::NEG_INFINITY;
    }
    let start = gate_start(b, power / count as f64 * 0.1);
    let (count, power) = sums(h.occupied(start));
    if count == 0 {
        return f64::NEG_INFINITY;
    }
    energy_to_loudness(power / count as f64)
}

/// LRA of a histogram of short-term blocks (EBU Tech 3342): 95th − 10th percentile of the
/// blocks above the −20 LU relative gate.
fn range(h: &Histogram) -> f64 {
    let b = bins();
    let (counts, energies) = h.occupied(0);
    let lo = h.lo;
    // Cumulative counts of the occupied bins (bin `lo + i` at `i`).
    let mut cumulative = [0u64; BINS];
    let (mut size, mut power) = (0u64, 0.0);
    for ((c, sum), e) in counts.iter().zip(cumulative.iter_mut()).zip(energies) {
        size += c;
        *sum = size;
        power += *c as f64 * e;
    }
    if size == 0 {
        return 0.0;
    }
    let cumulative = &cumulative[..counts.len()];
    let index = gate_start(b, power / size as f64 * 0.01);
    // Blocks below the gate: the cumulative count of bin `index − 1`.
    let before = match index.checked_sub(1 + lo) {
        None => 0,
        Some(i) => cumulative.get(i).copied().unwrap_or(size),
    };
    let size = size - before;
    if size == 0 {
        return 0.0;
    }
    // The bin holding the p-th (0-based) gated block: the first whose cumulative count
    // exceeds it.
    let percentile = |p: f64| {
        let rank = ((size - 1) as f64 * p + 0.5) as u64 + before;
        let j = cumulative
            .partition_point(|&v| v <= rank)
            .min(counts.len() - 1);
        energies[j]
    };
    energy_to_loudness(percentile(0.95)) - energy_to_loudness(percentile(0.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator of energies spanning −90…+10 LUFS-ish levels.
    fn energies(seed: u64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            10f64.powf(unit * 10.0 - 9.0)
        }
    }

    #[test]
    fn running_sums_equal_the_ring_summed_afresh() {
        let window_frames = 480;
        let mut meter = LoudnessMeter::new(0, 2, window_frames);
        let mut next = energies(0x5eed);
        // Rounding is relative to the largest block that passed through, not to the sum.
        let mut largest = 0.0_f64;
        for w in 0..5_000 {
            let e = next() * window_frames as f64;
            meter.push_block(&[e, e / 3.0]);
            largest = largest.max(e * 4.0 / 3.0);
            let tolerance = 1e-15 * largest * BLOCKS as f64;
            let last = |n: usize| -> f64 {
                (1..=n)
                    .map(|k| meter.ring[(meter.next + BLOCKS - k) % BLOCKS])
                    .sum()
            };
            let (m, s) = (last(MOMENTARY_BLOCKS), last(BLOCKS));
            assert!((meter.momentary_sum - m).abs() <= tolerance, "block {w}");
            assert!((meter.short_term_sum - s).abs() <= tolerance, "block {w}");
        }
    }

    /// `integrated` and `range` as they were, walking every bin.
    fn integrated_full(h: &[u64; BINS]) -> f64 {
        let b = bins();
        let sum = |from: usize| {
            h[from..]
                .iter()
                .zip(&b.energies[from..])
                .fold((0u64, 0.0), |(n, p), (c, e)| (n + c, p + *c as f64 * e))
        };
        let (count, power) = sum(0);
        if count == 0 {
            return f64::NEG_INFINITY;
        }
        let (count, power) = sum(gate_start(b, power / count as f64 * 0.1));
        if count == 0 {
            return f64::NEG_INFINITY;
        }
        energy_to_loudness(power / count as f64)
    }

    fn range_full(h: &[u64; BINS]) -> f64 {
        let b = bins();
        let mut cumulative = [0u64; BINS];
        let (mut size, mut power) = (0u64, 0.0);
        for ((c, sum), e) in h.iter().zip(cumulative.iter_mut()).zip(&b.energies) {
            size += c;
            *sum = size;
            power += *c as f64 * e;
        }
        if size == 0 {
            return 0.0;
        }
        let index = gate_start(b, power / size as f64 * 0.01);
        let before = index.checked_sub(1).map_or(0, |i| cumulative[i]);
        let size = size - before;
        if size == 0 {
            return 0.0;
        }
        let percentile = |p: f64| {
            let rank = ((size - 1) as f64 * p + 0.5) as u64 + before;
            b.energies[cumulative.partition_point(|&v| v <= rank).min(BINS - 1)]
        };
        energy_to_loudness(percentile(0.95)) - energy_to_loudness(percentile(0.1))
    }

    #[test]
    fn occupied_bins_give_what_every_bin_gives() {
        let b = bins();
        let mut next = energies(0xb1a5);
        let (mut gated, mut ranged) = (0, 0);
        for trial in 0..200 {
            let mut h = Histogram::new();
            assert_eq!(integrated(&h), integrated_full(&h.counts));
            assert_eq!(range(&h), range_full(&h.counts));
            // Clusters of blocks at a few levels, as a programme gives, sometimes one bin.
            let blocks = 1 + trial % 37;
            let spread = 1.0 + (trial % 5) as f64;
            let centre = next();
            for _ in 0..blocks {
                let e = (centre * next().powf(spread / 10.0)).max(b.boundaries[0]);
                h.add(bin_of(b, e));
                assert_eq!(
                    integrated(&h).to_bits(),
                    integrated_full(&h.counts).to_bits(),
                    "trial {trial}"
                );
                assert_eq!(
                    range(&h).to_bits(),
                    range_full(&h.counts).to_bits(),
                    "trial {trial}"
                );
            }
            gated += usize::from(integrated(&h).is_finite());
            ranged += usize::from(range(&h) > 0.0);
        }
        // The trials reach both gates' interesting cases, not only empty histograms.
        assert!(gated > 150 && ranged > 100, "{gated} {ranged}");
    }
}
