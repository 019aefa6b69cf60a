//! Statistics of timed runs: medians, quantiles, rates. Rule: arithmetic
//! on numbers already measured; nothing here measures or prints.

use std::time::Duration;

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// The `q` quantile (0..=1) of latencies in nanoseconds, in microseconds.
pub(super) fn quantile_us(sorted: &[u64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Rate and latency of one timed run.
#[derive(Debug, Clone, Copy)]
pub struct RunStats {
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub count: usize,
}

impl RunStats {
    pub(super) fn from(mut lat: Vec<u64>, elapsed: Duration) -> RunStats {
        lat.sort_unstable();
        RunStats {
            rate: lat.len() as f64 / elapsed.as_secs_f64(),
            p50_us: quantile_us(&lat, 0.50),
            p99_us: quantile_us(&lat, 0.99),
            count: lat.len(),
        }
    }

    pub(super) fn median_of(runs: &[RunStats]) -> RunStats {
        RunStats {
            rate: median(runs.iter().map(|r| r.rate).collect()),
            p50_us: median(runs.iter().map(|r| r.p50_us).collect()),
            p99_us: median(runs.iter().map(|r| r.p99_us).collect()),
            count: runs.iter().map(|r| r.count).sum(),
        }
    }
}

pub(super) fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
}

pub(super) fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}
