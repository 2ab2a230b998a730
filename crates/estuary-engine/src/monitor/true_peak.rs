//! True peak per ITU-R BS.1770-4 Annex 2: oversample by 4 with the recommendation's 48-tap
//! polyphase interpolation filter (4 phases × 12 taps) and take the largest absolute value.
//!
//! The `ebur128` crate has its own interpolator, but on the Annex's own kind of test signal
//! (fs/4 sine at 45°, samples at −3.01 dBFS, true peak 0 dBTP) it reads +0.10 dB, while the
//! Annex 2 filter reads +0.04 dB; on a 1 kHz sine the Annex filter is within 0.01 dB. So the
//! Annex filter is implemented here. Computation is in `f32` floating point (relative error
//! about 1e-6, i.e. 1e-5 dB, and twice as many lanes per vector as `f64`), so the Annex's
//! −12.04 dB input attenuation (headroom for fixed-point arithmetic) is not needed.
//!
//! The filter is defined for 48 kHz (4× to 192 kHz); as the recommendation suggests, lower rates
//! use the same 4×, rates from 96 kHz use every second phase (2×), and from 192 kHz the
//! samples themselves are dense enough (true peak = sample peak).

/// Taps per phase.
const TAPS: usize = 12;

/// BS.1770-4 Annex 2, phase 0 (phase 3 is its reverse).
const PHASE_0: [f64; TAPS] = [
    0.001_708_984_375_0,
    0.010_986_328_125_0,
    -0.019_653_320_312_5,
    0.033_203_125_000_0,
    -0.059_448_242_187_5,
    0.137_329_101_562_5,
    0.972_167_968_750_0,
    -0.102_294_921_875_0,
    0.047_607_421_875_0,
    -0.026_611_328_125_0,
    0.014_892_578_125_0,
    -0.008_300_781_250_0,
];

/// BS.1770-4 Annex 2, phase 1 (phase 2 is its reverse).
const PHASE_1: [f64; TAPS] = [
    -0.029_174_804_687_5,
    0.029_296_875_000_0,
    -0.051_757_812_500_0,
    0.089_111_328_125_0,
    -0.166_503_906_250_0,
    0.465_087_890_625_0,
    0.779_785_156_250_0,
    -0.200_317_382_812_5,
    0.101_562_500_000_0,
    -0.058_227_539_062_5,
    0.033_081_054_687_5,
    -0.018_920_898_437_5,
];

/// How a rate is oversampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Oversampling {
    Four,
    Two,
    None,
}

impl Oversampling {
    pub(crate) fn of(sample_rate: u32) -> Self {
        match sample_rate {
            0..96_000 => Oversampling::Four,
            96_000..192_000 => Oversampling::Two,
            _ => Oversampling::None,
        }
    }
}

/// Frames of history a filter output needs besides its own.
pub(crate) const HISTORY: usize = TAPS - 1;

/// Taps of the symmetric and antisymmetric halves of a phase `h` and its reverse:
/// `h[k] ± h[11 − k]` for `k < 6`.
const fn halves(h: &[f64; TAPS]) -> ([f32; 6], [f32; 6]) {
    let mut sym = [0.0; 6];
    let mut anti = [0.0; 6];
    let mut k = 0;
    while k < 6 {
        sym[k] = (h[k] + h[TAPS - 1 - k]) as f32;
        anti[k] = (h[k] - h[TAPS - 1 - k]) as f32;
        k += 1;
    }
    (sym, anti)
}

const HALVES_0: ([f32; 6], [f32; 6]) = halves(&PHASE_0);
const HALVES_1: ([f32; 6], [f32; 6]) = halves(&PHASE_1);

/// `a·b + c`, fused where the code runs with FMA (a library call elsewhere, so not there).
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Channels per lane group: every per-sample quantity is computed on groups of this many
/// channels at once (8 × `f32` is one AVX2 register, two NEON registers), the channels of an
/// input padded with silent lanes to a multiple of it.
pub(crate) const LANES: usize = 8;
/// One frame of one lane group.
pub(crate) type Lane = [f32; LANES];

/// Folds the true peak of frames into `peak2` (per lane, **twice** the largest absolute
/// oversampled value, see below).
///
/// `buf` holds frames of `groups` lane groups each (full scale 1.0): [`HISTORY`] frames of
/// history, then the frames to measure; `peak2` has one [`Lane`] per group.
///
/// A phase `h` and its reverse (phases 0 and 3, 1 and 2) give `y = Σ h[k]·x[n−k]` and
/// `y' = Σ h[11−k]·x[n−k]`; with `s[k] = x[n−k] + x[n−11+k]` and `d[k] = x[n−k] − x[n−11+k]`,
/// `y + y' = Σ (h[k] + h[11−k])·s[k]` and `y − y' = Σ (h[k] − h[11−k])·d[k]` over `k < 6`, and
/// `2·max(|y|, |y'|) = |y + y'| + |y − y'|`: 4 phases for 24 multiply-adds instead of 48.
#[inline(always)]
pub(crate) fn measure<const FMA: bool>(
    oversampling: Oversampling,
    buf: &[Lane],
    groups: usize,
    peak2: &mut [Lane],
) {
    let frames = (buf.len() / groups.max(1)).saturating_sub(HISTORY);
    for (g, out) in peak2.iter_mut().enumerate().take(groups) {
        // Kept in a local so that it stays in a register across frames.
        let mut m = *out;
        for n in 0..frames {
            // x[n − k] of this group (frame n + HISTORY of `buf` is the output's own).
            let row = |k: usize| {
                buf.get((n + HISTORY - k) * groups + g)
                    .copied()
                    .unwrap_or_default()
            };
            match oversampling {
                Oversampling::Four => {
                    let ((g0, e0), (g1, e1)) = (HALVES_0, HALVES_1);
                    let mut a0 = [0.0f32; LANES];
                    let (mut b0, mut a1, mut b1) = (a0, a0, a0);
                    // Rows are read as needed, not gathered first: fewer live registers.
                    for k in 0..6 {
                        let (x, y) = (row(k), row(TAPS - 1 - k));
                        for c in 0..LANES {
                            let (s, d) = (x[c] + y[c], x[c] - y[c]);
                            a0[c] = madd::<FMA>(g0[k], s, a0[c]);
                            b0[c] = madd::<FMA>(e0[k], d, b0[c]);
                            a1[c] = madd::<FMA>(g1[k], s, a1[c]);
                            b1[c] = madd::<FMA>(e1[k], d, b1[c]);
                        }
                    }
                    for c in 0..LANES {
                        let p0 = a0[c].abs() + b0[c].abs();
                        let p1 = a1[c].abs() + b1[c].abs();
                        m[c] = max(m[c], max(p0, p1));
                    }
                }
                // Positions 0 and ½ of a sample period: phases 0 and 2 (phase 1 reversed).
                Oversampling::Two => {
                    let (mut y0, mut y2) = ([0.0f32; LANES], [0.0f32; LANES]);
                    for k in 0..TAPS {
                        let x = row(k);
                        for c in 0..LANES {
                            y0[c] = madd::<FMA>(PHASE_0[k] as f32, x[c], y0[c]);
                            y2[c] = madd::<FMA>(PHASE_1[TAPS - 1 - k] as f32, x[c], y2[c]);
                        }
                    }
                    for c in 0..LANES {
                        m[c] = max(m[c], 2.0 * max(y0[c].abs(), y2[c].abs()));
                    }
                }
                // Dense enough: the sample peak is the true peak (the monitor takes the max).
                Oversampling::None => return,
            }
        }
        *out = m;
    }
}

/// The larger of two values, as one `maxps` (no NaN handling: the inputs are finite).
#[inline(always)]
pub(crate) fn max(a: f32, b: f32) -> f32 {
    if a > b { a } else { b }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_sum_to_the_published_dc_gains() {
        // The taps are multiples of 2^-13, so these sums are exact: a transcription check.
        // Phase 1 passes DC 0.24 dB low; the peak is the largest phase, so that is harmless.
        assert_eq!(PHASE_0.iter().sum::<f64>(), 1.001_586_914_062_5);
        assert_eq!(PHASE_1.iter().sum::<f64>(), 0.973_022_460_937_5);
    }

    #[test]
    fn settles_on_a_constant() {
        let buf = vec![[0.5f32; LANES]; HISTORY + 4];
        let mut peak2 = [[0.0f32; LANES]];
        measure::<false>(Oversampling::Four, &buf, 1, &mut peak2);
        assert!((peak2[0][0] / 2.0 - 0.5).abs() < 0.01, "{peak2:?}");
    }
}
