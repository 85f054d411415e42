//! Prometheus metrics of the service, served as text by `GET /metrics` (see `api::ops`).
//!
//! Counters are bumped where things happen (admission in `service`, completion and step times in
//! `worker`); the per-state job gauges and the queue depth are refreshed from the store and the
//! queue when the endpoint is scraped, so they can never drift from the durable truth.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets of one sampling step: 1 ms to 60 s.
const STEP_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of one job's run time: 0.1 s to 1 h.
const JOB_BUCKETS: &[f64] = &[
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0,
    3600.0,
];

/// The service's metrics and the registry they are exposed from. Cheap to clone (every metric
/// is a shared handle).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    /// Jobs admitted (`refrain_jobs_submitted_total`).
    pub submitted: IntCounter,
    /// Submissions refused because the queue was full (`refrain_jobs_rejected_busy_total`).
    pub rejected_busy: IntCounter,
    /// Finished jobs by `outcome`: succeeded, failed, cancelled (`refrain_jobs_completed_total`).
    pub completed: IntCounterVec,
    /// Jobs in the store by `state` (`refrain_jobs`), refreshed at scrape time.
    pub jobs: IntGaugeVec,
    /// Messages waiting in the queue (`refrain_queue_depth`), refreshed at scrape time.
    pub queue_depth: IntGauge,
    /// Time of one sampling step, seconds (`refrain_sampling_step_seconds`).
    pub step_seconds: Histogram,
    /// Run time of one job attempt, seconds (`refrain_job_run_seconds`).
    pub job_seconds: Histogram,
    /// Live inference nodes (`refrain_nodes`): in-process ones, and remote ones heard from
    /// recently (kept up to date by `distributed::registry`).
    pub nodes: IntGauge,
    /// Runs cut short by the death of the process running them
    /// (`refrain_job_interruptions_total`); they do not use up attempts.
    pub interruptions: IntCounter,
    /// Fires, missed fires, catch-ups and jobs per schedule.
    pub schedules: crate::schedules::runner::ScheduleCounters,
}

impl Metrics {
    /// Creates every metric and registers it.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let submitted = IntCounter::new(
            "refrain_jobs_submitted_total",
            "Jobs admitted to the queue.",
        )
        .expect("valid metric");
        let rejected_busy = IntCounter::new(
            "refrain_jobs_rejected_busy_total",
            "Submissions refused with 503 because the queue was at capacity.",
        )
        .expect("valid metric");
        let completed = IntCounterVec::new(
            Opts::new(
                "refrain_jobs_completed_total",
                "Jobs that finished, by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let jobs = IntGaugeVec::new(
            Opts::new("refrain_jobs", "Jobs in the store, by state."),
            &["state"],
        )
        .expect("valid metric");
        let queue_depth = IntGauge::new("refrain_queue_depth", "Messages waiting in the queue.")
            .expect("valid metric");
        let step_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "refrain_sampling_step_seconds",
                "Time of one sampling step.",
            )
            .buckets(STEP_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let job_seconds = Histogram::with_opts(
            HistogramOpts::new("refrain_job_run_seconds", "Run time of one job attempt.")
                .buckets(JOB_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let nodes = IntGauge::new("refrain_nodes", "Live inference nodes.").expect("valid metric");
        let interruptions = IntCounter::new(
            "refrain_job_interruptions_total",
            "Job runs cut short by the death of the process running them (not counted as attempts).",
        )
        .expect("valid metric");

        for outcome in ["succeeded", "failed", "cancelled"] {
            completed.with_label_values(&[outcome]);
        }
        for state in protocol::JobState::ALL {
            jobs.with_label_values(&[state.as_str()]);
        }

        for c in [
            Box::new(submitted.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(rejected_busy.clone()),
            Box::new(completed.clone()),
            Box::new(jobs.clone()),
            Box::new(queue_depth.clone()),
            Box::new(step_seconds.clone()),
            Box::new(job_seconds.clone()),
            Box::new(nodes.clone()),
            Box::new(interruptions.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        let schedules = crate::schedules::runner::ScheduleCounters::new();
        schedules
            .register(&registry)
            .expect("metric names are unique");
        Metrics {
            registry,
            submitted,
            rejected_busy,
            completed,
            jobs,
            queue_depth,
            step_seconds,
            job_seconds,
            nodes,
            interruptions,
            schedules,
        }
    }

    /// The registry, for callers that want to add their own collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new();
        m.submitted.inc();
        m.completed.with_label_values(&["failed"]).inc();
        m.jobs.with_label_values(&["queued"]).set(3);
        m.step_seconds.observe(0.02);
        m.job_seconds.observe(12.0);
        m.nodes.set(1);
        let text = m.render();
        for needle in [
            "refrain_jobs_submitted_total 1",
            "refrain_jobs_rejected_busy_total 0",
            "refrain_jobs_completed_total{outcome=\"failed\"} 1",
            "refrain_jobs_completed_total{outcome=\"succeeded\"} 0",
            "refrain_jobs{state=\"queued\"} 3",
            "refrain_queue_depth 0",
            "refrain_sampling_step_seconds_bucket{le=\"0.001\"} 0",
            "refrain_sampling_step_seconds_bucket{le=\"60\"} 1",
            "refrain_job_run_seconds_bucket{le=\"3600\"} 1",
            "refrain_nodes 1",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
