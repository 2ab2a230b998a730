//! A fixed-size latency histogram for the real-time threads: recording allocates nothing.

use std::time::Duration;

/// Bin width; 20 ms of range covers every hand-off that is not a fault.
const BIN_NS: u64 = 50_000;
const BINS: usize = 400;

/// Counts of durations in 50 µs bins up to 20 ms, plus an overflow bin and the maximum.
#[derive(Debug, Clone, Copy)]
pub struct LatencyHistogram {
    bins: [u64; BINS],
    overflow: u64,
    count: u64,
    max_ns: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            bins: [0; BINS],
            overflow: 0,
            count: 0,
            max_ns: 0,
        }
    }
}

impl LatencyHistogram {
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        match self
            .bins
            .get_mut(usize::try_from(ns / BIN_NS).unwrap_or(usize::MAX))
        {
            Some(bin) => *bin += 1,
            None => self.overflow += 1,
        }
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }

    /// The upper edge of the bin holding quantile `q` (0..=1); the maximum when it overflowed.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.count == 0 {
            return Duration::ZERO;
        }
        let rank = ((self.count as f64) * q.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.bins.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Duration::from_nanos((i as u64 + 1) * BIN_NS).min(self.max());
            }
        }
        self.max()
    }

    /// "p50 0.10 ms, p99 0.25 ms, max 1.20 ms (n)".
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.max()),
            self.count()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_bins_and_never_exceed_the_maximum() {
        let mut h = LatencyHistogram::default();
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us * 10));
        }
        assert_eq!(h.count(), 100);
        assert_eq!(h.max(), Duration::from_micros(1000));
        assert_eq!(h.quantile(0.5), Duration::from_micros(550));
        assert_eq!(h.quantile(0.99), Duration::from_micros(1000));
        assert_eq!(h.quantile(1.0), Duration::from_micros(1000));
    }

    #[test]
    fn overflow_is_counted_and_reported_as_the_maximum() {
        let mut h = LatencyHistogram::default();
        h.record(Duration::from_millis(1));
        h.record(Duration::from_secs(1));
        assert_eq!(h.count(), 2);
        assert_eq!(h.quantile(1.0), Duration::from_secs(1));
        assert_eq!(h.quantile(0.5), Duration::from_micros(1050));
    }

    #[test]
    fn empty_histogram_reads_zero() {
        let h = LatencyHistogram::default();
        assert_eq!(h.quantile(0.99), Duration::ZERO);
        assert!(h.summary().contains("0 samples"));
    }
}
