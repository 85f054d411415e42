//! Cost against the number of stored jobs: the store is filled to each size of
//! `BENCH_STORE_SIZES` (1k, 10k, 100k by default), a tenth of it queued (through `App::submit`,
//! so in the queue too) and the rest finished (stored, started and succeeded through the
//! `Lifecycle`, as a node's jobs are), then at each size: submit latency and throughput with 1
//! and with 16 clients, and through the real router `GET /api/v1/jobs/{id}` of a queued and of
//! a finished job, `GET /status` and `GET /metrics`.
//!
//! Between the fill and the measurements the store is flushed and left alone for
//! `BENCH_SETTLE_MS` (2,000 ms), so that sled's background write-out of the fill is not
//! measured as the submits' cost, and the submit phases are long enough (1,000 and 4,000 jobs
//! by default) that sled's own periodic work is averaged rather than caught or missed. With
//! the earlier 300 and 2,000 submits straight after the fill, one run (debug build) went from
//! 2,511 single-client submits/s at 1k to 1,400 at 100k, while 6,000 single-client submits ran
//! at 1,249 jobs/s from 1k to 7k and 1,240 from 100k to 106k: a short phase at 1k measures
//! trees of a few hundred keys, which sled writes faster (see docs/benchmarks.md).

use std::time::Instant;

use axum::Router;
use protocol::{JobId, JobRecord, JobResult, JobState, Owner, Priority, Source};
use refrain_orchestrator::service::{new_job_id, App};

use crate::fanout::spec;
use crate::stats::Table;
use crate::{knob, poll, submit};

/// Stores one finished job (submitted, started, succeeded), outside the queue.
async fn finished_job(app: &App, seed: u64) -> JobId {
    let now = refrain_orchestrator::store::now_ms();
    let record = JobRecord {
        id: new_job_id(),
        spec: spec(seed),
        state: JobState::Queued,
        attempt: 1,
        interruptions: 0,
        source: Source::Cli,
        created_ms: now,
        updated_ms: now,
        started_ms: None,
        finished_ms: None,
        progress: None,
        result: None,
        error: None,
        priority: Priority::Batch,
        owner: Owner::new("bench", &format!("owner{}", seed % 64)),
        idempotency_key: None,
        request_hash: None,
        event_seq: 0,
        client_data: None,
        title: None,
    };
    let lifecycle = app.lifecycle();
    let record = lifecycle.submit(record, None).await.expect("store");
    lifecycle.start(&record.id, 1, 1).await.expect("start");
    let result = JobResult {
        file: record.id.file_name(),
        bytes: 0,
        duration_seconds: 95.0,
        attempt: 1,
        files: Vec::new(),
    };
    lifecycle
        .succeed(&record.id, 1, result)
        .await
        .expect("succeed");
    record.id
}

/// Adds `n` finished jobs from `tasks` concurrent tasks; returns one of them.
async fn fill_finished(app: &App, tasks: usize, n: usize, seed: u64) -> Option<JobId> {
    let mut handles = Vec::new();
    for t in 0..tasks.min(n.max(1)) {
        let share = n / tasks + usize::from(t < n % tasks);
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let mut last = None;
            for i in 0..share {
                last = Some(finished_job(&app, seed + (t * share + i) as u64).await);
            }
            last
        }));
    }
    let mut any = None;
    for h in handles {
        if let Some(id) = h.await.expect("filler") {
            any = Some(id);
        }
    }
    any
}

fn stored(app: &App) -> usize {
    app.counts().expect("counts").values().sum()
}

/// Fills to each size and measures there.
pub async fn run(app: &App, router: &Router, sizes: &[usize], table: &mut Table) {
    let submitters = knob("BENCH_SUBMITTERS", 16);
    let pollers = knob("BENCH_POLLERS", 16);
    let polls = knob("BENCH_POLLS", 2000);
    let single = knob("BENCH_SINGLE_SUBMITS", 1000);
    let burst = knob("BENCH_BURST_SUBMITS", 4000);
    let settle = std::time::Duration::from_millis(knob("BENCH_SETTLE_MS", 2000) as u64);
    let mut finished = None;
    for &size in sizes {
        let now = stored(app);
        let Some(missing) = size.checked_sub(now).filter(|&n| n > 0) else {
            eprintln!("the store already holds {now} jobs (>= {size}): size skipped");
            continue;
        };
        let began = Instant::now();
        let queued = missing / 10;
        let mut table_fill = Table::default();
        submit::run(app, submitters, now, now + queued, &mut table_fill).await;
        if let Some(id) = fill_finished(app, submitters, missing - queued, now as u64).await {
            finished = Some(id);
        }
        eprintln!(
            "filled the store to {} jobs in {:.1} s",
            stored(app),
            began.elapsed().as_secs_f64()
        );
        app.store().flush().await.expect("flush");
        tokio::time::sleep(settle).await;
        let at = stored(app);
        submit::run(app, 1, at, at + single, table).await;
        let at = stored(app);
        let newest = submit::run(app, submitters, at, at + burst, table)
            .await
            .expect("jobs were submitted");
        let at = stored(app);
        let queued_uri = format!("/api/v1/jobs/{newest}");
        poll::router(router, &queued_uri, at, pollers, polls, table).await;
        if let Some(done) = &finished {
            let uri = format!("/api/v1/jobs/{done}");
            poll::router(router, &uri, at, pollers, polls, table).await;
        }
        for uri in ["/status", "/metrics"] {
            poll::router(router, uri, at, pollers, polls, table).await;
        }
    }
}
