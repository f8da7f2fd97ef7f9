//! Small measuring helpers shared by the in-process benchmarks (`pir_bench.rs`,
//! `respire_bench.rs`, `scale_costs.rs`).
#![allow(dead_code)] // each example uses its own subset

use std::time::Duration;

/// A `/proc/self/status` field in KiB (`VmRSS:`, `VmHWM:`), 0 when unreadable.
pub fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_string))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The upper median; NaN for no values.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
