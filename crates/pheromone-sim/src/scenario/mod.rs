//! Ready-made simulation experiments, each a function from parameters to a report that
//! serialises to one JSON object.
//!
//! Scenarios build their topology from the seed, drive the [`Sim`](crate::Sim), and measure;
//! they assert nothing themselves (the tests do). [`broadcast`], [`kad`] and [`route`] run
//! one overlay each; [`mesh`] runs the whole production stack of overlays together.

pub mod adversary;
pub mod adversary_kad;
pub mod broadcast;
pub mod kad;
pub mod mesh;
pub mod route;

/// Percentile `p` (0–100) of sorted `values`, nearest-rank; 0 for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// FNV-1a, 64 bits: a cheap, stable digest for "same seed, same run" checks.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    /// Mixes `bytes` in.
    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// Mixes a number in.
    pub fn write_u64(&mut self, value: u64) {
        self.write(&value.to_le_bytes());
    }

    /// The digest so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&v, 100.0), 100.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[7.0], 1.0), 7.0);
    }
}
