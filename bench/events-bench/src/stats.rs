//! Percentiles of measured durations.

use std::time::Duration;

/// Durations sorted once, read by nearest rank.
#[derive(Debug)]
pub struct Sorted(Vec<Duration>);

impl Sorted {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Sorted(samples)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-th percentile (0 < p ≤ 100) in milliseconds; `None` without samples.
    pub fn ms(&self, p: f64) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        let index = rank.clamp(1, self.0.len()) - 1;
        Some(self.0[index].as_secs_f64() * 1000.0)
    }

    /// p50, p90, p99 and the maximum, in milliseconds, as a JSON object.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "p50": self.ms(50.0),
            "p90": self.ms(90.0),
            "p99": self.ms(99.0),
            "max": self.ms(100.0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let sorted = Sorted::new((1..=100).rev().map(Duration::from_millis).collect());
        assert_eq!(sorted.ms(50.0), Some(50.0));
        assert_eq!(sorted.ms(99.0), Some(99.0));
        assert_eq!(sorted.ms(100.0), Some(100.0));
        assert_eq!(Sorted::new(Vec::new()).ms(50.0), None);
    }
}
