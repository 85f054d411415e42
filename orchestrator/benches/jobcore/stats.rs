//! Latency samples, percentiles and the result table every measurement of the benchmark
//! appends a row to.

use std::time::Duration;

/// Latency percentiles of one measurement, in milliseconds (nearest rank).
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(samples: &mut [Duration]) -> Latency {
        samples.sort_unstable();
        let at = |p: f64| -> f64 {
            if samples.is_empty() {
                return f64::NAN;
            }
            let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
        };
        Latency {
            p50: at(50.0),
            p99: at(99.0),
            max: at(100.0),
        }
    }
}

struct Row {
    what: String,
    count: usize,
    latency: Latency,
    rate: f64,
    unit: &'static str,
}

/// The rows measured so far, printed as a Markdown table at the end.
#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

impl Table {
    /// Adds a row: `count` operations with `latency`, at `rate` `unit` (e.g. "req/s").
    pub fn add(
        &mut self,
        what: impl Into<String>,
        count: usize,
        latency: Latency,
        rate: f64,
        unit: &'static str,
    ) {
        let row = Row {
            what: what.into(),
            count,
            latency,
            rate,
            unit,
        };
        // Progress on stderr while the benchmark runs; the table goes to stdout at the end.
        eprintln!(
            "  {}: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, {:.0} {}",
            row.what, row.latency.p50, row.latency.p99, row.latency.max, row.rate, row.unit
        );
        self.rows.push(row);
    }

    /// The latency and rate of the row added last.
    pub fn last(&self) -> Option<(Latency, f64)> {
        self.rows.last().map(|r| (r.latency, r.rate))
    }

    pub fn print(&self) {
        println!();
        println!("| measurement | n | p50 (ms) | p99 (ms) | max (ms) | throughput |");
        println!("|---|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            println!(
                "| {} | {} | {:.3} | {:.3} | {:.3} | {:.0} {} |",
                r.what, r.count, r.latency.p50, r.latency.p99, r.latency.max, r.rate, r.unit
            );
        }
    }
}
