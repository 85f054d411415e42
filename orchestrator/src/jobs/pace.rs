//! [`Pace`]: how fast this deployment makes songs, learnt from the attempts that succeeded, so
//! that a queued job can be given an estimate of its remaining time (the DiffRhythm API's
//! `estimated_remaining` is always a number of seconds: its clients parse it).
//!
//! The pace is the run time per second of song, as an exponentially weighted mean (weight 0.2
//! for the newest run), kept in one atomic. Until a job has succeeded it is 1.0 (real time),
//! a deliberately cautious prior: the estimate is an estimate, never a promise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Weight of the newest run in the mean.
const WEIGHT: f64 = 0.2;
/// Seconds of run time per second of song before anything has run.
const PRIOR: f64 = 1.0;

/// The learnt pace. Cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Pace {
    /// `f64` bits of the mean; 0 = nothing learnt yet.
    bits: Arc<AtomicU64>,
}

impl Pace {
    /// Learns from one successful attempt.
    pub fn observe(&self, run_seconds: f64, song_seconds: u32) {
        if song_seconds == 0 || !run_seconds.is_finite() || run_seconds < 0.0 {
            return;
        }
        let sample = run_seconds / f64::from(song_seconds);
        let _ = self
            .bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                let mean = match f64::from_bits(old) {
                    m if m > 0.0 => m + WEIGHT * (sample - m),
                    _ => sample,
                };
                Some(mean.max(f64::MIN_POSITIVE).to_bits())
            });
    }

    /// Run-time seconds per second of song.
    pub fn per_song_second(&self) -> f64 {
        match f64::from_bits(self.bits.load(Ordering::Relaxed)) {
            m if m > 0.0 => m,
            _ => PRIOR,
        }
    }

    /// Estimated seconds until a queued job of `song_seconds` is done, with `ahead` jobs before
    /// it in the queue and `nodes` nodes: its share of the jobs ahead plus its own run.
    pub fn queued_remaining(&self, song_seconds: u32, ahead: usize, nodes: usize) -> f64 {
        let run = self.per_song_second() * f64::from(song_seconds);
        let nodes = nodes.max(1) as f64;
        (ahead as f64 / nodes + 1.0) * run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_and_estimates() {
        let pace = Pace::default();
        assert_eq!(pace.per_song_second(), PRIOR);
        pace.observe(50.0, 100);
        assert!((pace.per_song_second() - 0.5).abs() < 1e-9);
        pace.observe(150.0, 100);
        assert!((pace.per_song_second() - 0.7).abs() < 1e-9);
        pace.observe(f64::NAN, 100);
        pace.observe(1.0, 0);
        assert!((pace.per_song_second() - 0.7).abs() < 1e-9);
        // 3 ahead on 2 nodes: 1.5 runs of waiting, then its own run.
        assert!((pace.queued_remaining(100, 3, 2) - 2.5 * 70.0).abs() < 1e-9);
        assert!((pace.queued_remaining(100, 0, 0) - 70.0).abs() < 1e-9);
    }
}
