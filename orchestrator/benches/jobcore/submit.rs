//! Submit throughput: `App::submit` (admission checks, the durable insert with its `queued`
//! outbox event, the durable enqueue) from concurrent submitters.

use std::time::{Duration, Instant};

use protocol::{JobId, Source};
use refrain_orchestrator::service::{App, JobMeta};

use crate::fanout::spec;
use crate::stats::{Latency, Table};

/// Submits jobs from `submitters` concurrent tasks until the store holds `to` jobs (it holds
/// `from`). Returns the newest job (`None` when there was nothing to submit).
pub async fn run(
    app: &App,
    submitters: usize,
    from: usize,
    to: usize,
    table: &mut Table,
) -> Option<JobId> {
    let jobs = to.checked_sub(from).filter(|&n| n > 0)?;
    let submitters = submitters.clamp(1, jobs);
    let begin = Instant::now();
    let mut tasks = Vec::with_capacity(submitters);
    for s in 0..submitters {
        let share = jobs / submitters + usize::from(s < jobs % submitters);
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            let mut newest: Option<(u64, JobId)> = None;
            for i in 0..share {
                let seed = (from + s * share + i) as u64;
                let t = Instant::now();
                let record = app
                    .submit(spec(seed), JobMeta::anonymous(Source::DiffRhythmApi))
                    .await
                    .expect("submit");
                latencies.push(t.elapsed());
                if newest
                    .as_ref()
                    .is_none_or(|(at, _)| record.created_ms >= *at)
                {
                    newest = Some((record.created_ms, record.id));
                }
            }
            (latencies, newest)
        }));
    }
    let mut latencies: Vec<Duration> = Vec::with_capacity(jobs);
    let mut newest: Option<(u64, JobId)> = None;
    for task in tasks {
        let (l, n) = task.await.expect("submitter");
        latencies.extend(l);
        if let Some((at, id)) = n {
            if newest.as_ref().is_none_or(|(best, _)| at >= *best) {
                newest = Some((at, id));
            }
        }
    }
    let rate = jobs as f64 / begin.elapsed().as_secs_f64();
    table.add(
        format!("`App::submit`, {submitters} submitters, store {from} → {to} jobs"),
        jobs,
        Latency::of(&mut latencies),
        rate,
        "jobs/s",
    );
    newest.map(|(_, id)| id)
}
