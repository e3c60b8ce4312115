//! Latency statistics over a set of samples, in nanoseconds.

/// Summary of a latency distribution, nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct LatencyStats {
    /// Samples summarised.
    pub count: u64,
    /// Mean.
    pub avg: f64,
    /// Smallest.
    pub min: f64,
    /// Median (nearest rank).
    pub p50: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl LatencyStats {
    /// Summarises `samples` (any order). All zeros for no samples.
    pub fn of(samples: &[f64]) -> LatencyStats {
        if samples.is_empty() {
            return LatencyStats::default();
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        LatencyStats {
            count: s.len() as u64,
            avg: s.iter().sum::<f64>() / s.len() as f64,
            min: s[0],
            p50: percentile_sorted(&s, 50.0),
            p99: percentile_sorted(&s, 99.0),
            max: s[s.len() - 1],
        }
    }
}

/// The nearest-rank percentile `p` (0..=100) of an ascending, non-empty slice.
///
/// ```
/// use vpmu_workbook::stats::percentile_sorted;
/// let s = [1.0, 2.0, 3.0, 4.0];
/// assert_eq!(percentile_sorted(&s, 50.0), 2.0);
/// assert_eq!(percentile_sorted(&s, 99.0), 4.0);
/// ```
pub fn percentile_sorted(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary() {
        let s = LatencyStats::of(&[5.0, 1.0, 3.0]);
        assert_eq!((s.count, s.min, s.p50, s.max), (3, 1.0, 3.0, 5.0));
        assert_eq!(s.avg, 3.0);
        assert_eq!(LatencyStats::of(&[]).count, 0);
    }
}
