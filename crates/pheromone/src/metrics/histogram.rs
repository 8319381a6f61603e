//! A histogram made of relaxed atomics: one counter per bucket, a count and a sum, with
//! fixed upper bounds chosen per metric. Observing is a handful of relaxed adds and takes
//! no lock, so it can sit on a request path; reading copies the counters at scrape time.
//!
//! It only counts; encoding is [`super::collector`]'s job.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds in seconds for latencies on one machine or a LAN: handshakes, requests.
pub(crate) const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds for DHT lookup hop counts.
pub(crate) const HOP_BOUNDS: &[f64] = &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0];

/// Buckets, count and sum of one histogram.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    bounds: &'static [f64],
    /// One counter per bound (non-cumulative); `+Inf` is `count` minus their sum.
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    /// Sum of observations in millionths of the unit (microseconds for seconds), so that
    /// it stays an integer add.
    sum_micros: AtomicU64,
}

/// A copy of a histogram's counters, in the form `prometheus_client`'s encoder takes
/// (it makes the buckets cumulative itself).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramSnapshot {
    pub(crate) sum: f64,
    pub(crate) count: u64,
    /// `(upper bound, observations above the previous bound and at or below this one)`,
    /// ending with `+Inf`; they add up to `count`.
    pub(crate) buckets: Vec<(f64, u64)>,
}

impl AtomicHistogram {
    pub(crate) fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `value` (in the histogram's unit).
    pub(crate) fn observe(&self, value: f64) {
        if let Some(i) = self.bounds.iter().position(|b| value <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        // Saturating float-to-int cast: a negative or NaN value adds nothing.
        let micros = (value * 1e6) as u64;
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Counts one duration, in seconds.
    pub(crate) fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        // Buckets first, then `count`: an observation landing in between shows in the
        // count a moment before its bucket, never the other way round, so `+Inf` (the
        // count minus the finite buckets) cannot go negative.
        let mut buckets: Vec<(f64, u64)> = self
            .bounds
            .iter()
            .zip(self.buckets.iter())
            .map(|(bound, n)| (*bound, n.load(Ordering::Relaxed)))
            .collect();
        let finite: u64 = buckets.iter().map(|(_, n)| n).sum();
        let count = self.count.load(Ordering::Relaxed).max(finite);
        buckets.push((f64::INFINITY, count - finite));
        HistogramSnapshot {
            sum: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count,
            buckets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_add_up_to_the_count_and_end_in_inf() {
        let h = AtomicHistogram::new(&[1.0, 2.0, 5.0]);
        for v in [0.5, 1.0, 1.5, 4.0, 7.0, 100.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.count, 6);
        assert_eq!(
            s.buckets,
            vec![(1.0, 2), (2.0, 1), (5.0, 1), (f64::INFINITY, 2)]
        );
        assert!((s.sum - 114.0).abs() < 1e-6);
    }

    #[test]
    fn durations_are_seconds() {
        let h = AtomicHistogram::new(LATENCY_BOUNDS);
        h.observe_duration(Duration::from_micros(300));
        let s = h.snapshot();
        assert_eq!(s.buckets[1], (0.00025, 0));
        assert_eq!(s.buckets[2], (0.0005, 1));
        assert_eq!(s.buckets[3], (0.001, 0));
        assert!((s.sum - 0.0003).abs() < 1e-9);
    }
}
