//! Progress accounting for one generation: turns "sampling step k of n done" into a
//! [`ProgressEvent`] with an overall percent and an ETA from measured times.
//!
//! The percent is split over fixed bands (preparation 0–2 %, sampling 2–90 %, decoding 90–100 %)
//! and never decreases. The ETA uses the mean time of the units already done in the current
//! stage; before decoding has started, decode time is estimated from the previous job on the
//! same node ([`CostModel`]) or, on a node's first job, as a tenth of the sampling time.

use std::time::{Duration, Instant};

use protocol::{ProgressEvent, Stage};

const PREP_END: f32 = 2.0;
const SAMPLING_END: f32 = 90.0;

/// Per-frame costs measured on earlier jobs of this node, for better first estimates.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostModel {
    /// Seconds per solver step per frame per variant.
    pub step_per_frame: Option<f64>,
    /// Seconds of decoding per frame.
    pub decode_per_frame: Option<f64>,
}

/// Tracks one generation and emits events to a sink.
pub struct Tracker<'a> {
    start: Instant,
    sink: &'a mut dyn FnMut(ProgressEvent),
    percent: f32,
    steps: u32,
    step_time: Duration,
    steps_done: u32,
    decodes: u32,
    decode_time: Duration,
    decodes_done: u32,
    stage_start: Instant,
    units: f64,
    cost: CostModel,
}

impl<'a> Tracker<'a> {
    /// `steps` solver steps and `decodes` decoder runs are planned; `units` is frames × variants,
    /// the size the [`CostModel`] scales with.
    pub fn new(
        sink: &'a mut dyn FnMut(ProgressEvent),
        steps: u32,
        decodes: u32,
        units: f64,
        cost: CostModel,
    ) -> Tracker<'a> {
        let now = Instant::now();
        Tracker {
            start: now,
            sink,
            percent: 0.0,
            steps,
            step_time: Duration::ZERO,
            steps_done: 0,
            decodes,
            decode_time: Duration::ZERO,
            decodes_done: 0,
            stage_start: now,
            units,
            cost,
        }
    }

    fn eta(&self) -> Option<f64> {
        let left_steps = (self.steps - self.steps_done) as f64;
        let left_decodes = (self.decodes - self.decodes_done) as f64;
        let per_step = if self.steps_done > 0 {
            Some(self.step_time.as_secs_f64() / self.steps_done as f64)
        } else {
            self.cost.step_per_frame.map(|c| c * self.units)
        }?;
        let per_decode = if self.decodes_done > 0 {
            self.decode_time.as_secs_f64() / self.decodes_done as f64
        } else if let Some(c) = self.cost.decode_per_frame {
            c * self.units / self.decodes.max(1) as f64
        } else {
            per_step * self.steps as f64 / 10.0 / self.decodes.max(1) as f64
        };
        Some(left_steps * per_step + left_decodes * per_decode)
    }

    fn emit(&mut self, stage: Stage, step: u32, total: u32, percent: f32) {
        self.percent = self.percent.max(percent.min(100.0));
        let event = ProgressEvent {
            stage,
            step,
            total,
            percent: self.percent,
            eta_seconds: if stage == Stage::Done {
                Some(0.0)
            } else {
                self.eta()
            },
            elapsed_seconds: self.start.elapsed().as_secs_f64(),
        };
        (self.sink)(event);
    }

    /// A preparation stage (tokenize, style, encode) reached `step` of `total`.
    pub fn prepare(&mut self, stage: Stage, step: u32, total: u32) {
        let p = PREP_END * step as f32 / total.max(1) as f32;
        self.emit(stage, step, total, p.min(PREP_END));
        self.stage_start = Instant::now();
    }

    /// Solver step `step` (1-based) of `total` finished.
    pub fn step(&mut self, step: u32, total: u32) {
        let now = Instant::now();
        self.step_time += now - self.stage_start;
        self.stage_start = now;
        self.steps_done = step;
        self.steps = total;
        let p = PREP_END + (SAMPLING_END - PREP_END) * step as f32 / total.max(1) as f32;
        self.emit(Stage::Sampling, step, total, p);
    }

    /// Decoder run `k` (1-based) of the planned total finished.
    pub fn decoded(&mut self) {
        let now = Instant::now();
        self.decode_time += now - self.stage_start;
        self.stage_start = now;
        self.decodes_done += 1;
        let p = SAMPLING_END
            + (100.0 - SAMPLING_END) * self.decodes_done as f32 / self.decodes.max(1) as f32;
        // 100 % is reserved for Done.
        self.emit(Stage::Decode, self.decodes_done, self.decodes, p.min(99.9));
    }

    /// Decoding starts again with `decodes` decoder runs in all (the VAE fell back to chunked
    /// decoding); the percent stays where it is until the new runs pass it.
    pub fn restart_decoding(&mut self, decodes: u32) {
        self.decodes = decodes;
        self.decodes_done = 0;
        self.decode_time = Duration::ZERO;
        self.stage_start = Instant::now();
    }

    /// The generation finished.
    pub fn done(&mut self) {
        self.emit(Stage::Done, 1, 1, 100.0);
    }

    /// The per-frame costs measured by this generation (for the next job's estimates).
    pub fn measured(&self) -> CostModel {
        let units = self.units.max(1.0);
        CostModel {
            step_per_frame: (self.steps_done > 0)
                .then(|| self.step_time.as_secs_f64() / self.steps_done as f64 / units),
            decode_per_frame: (self.decodes_done > 0 && self.decodes_done == self.decodes)
                .then(|| self.decode_time.as_secs_f64() / units),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_monotonic_and_ends_at_100() {
        let mut events = Vec::new();
        let mut sink = |e: ProgressEvent| events.push(e);
        {
            let mut t = Tracker::new(&mut sink, 3, 2, 100.0, CostModel::default());
            t.prepare(Stage::Tokenize, 1, 2);
            t.prepare(Stage::Style, 2, 2);
            assert!(t.eta().is_none());
            for k in 1..=3 {
                t.step(k, 3);
            }
            assert!(t.eta().is_some());
            t.decoded();
            t.decoded();
            t.done();
        }
        let p: Vec<f32> = events.iter().map(|e| e.percent).collect();
        assert!(p.windows(2).all(|w| w[0] <= w[1]), "{p:?}");
        assert_eq!(*p.last().unwrap(), 100.0);
        assert_eq!(events[4].stage, Stage::Sampling);
        assert_eq!((events[4].step, events[4].total), (3, 3));
        assert_eq!(events[4].percent, 90.0);
        assert_eq!(events.last().unwrap().eta_seconds, Some(0.0));
    }

    #[test]
    fn first_estimate_comes_from_the_cost_model() {
        let mut sink = |_e: ProgressEvent| {};
        let cost = CostModel {
            step_per_frame: Some(0.001),
            decode_per_frame: Some(0.002),
        };
        let t = Tracker::new(&mut sink, 10, 4, 1000.0, cost);
        // 10 steps × 1 s + 4 decodes × 0.5 s.
        assert!((t.eta().unwrap() - 12.0).abs() < 1e-9);
    }
}
