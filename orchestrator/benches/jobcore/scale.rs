//! Cost against the number of stored jobs: the store is filled to each size of
//! `BENCH_STORE_SIZES` (1k, 10k, 100k by default), a tenth of it queued (through `App::submit`,
//! so in the queue too) and the rest finished (stored, started and succeeded through the
//! `Lifecycle`, as a node's jobs are), then at each size: submit latency and throughput with 1
//! and with 16 clients, and through the real router `GET /api/v1/jobs/{id}` of a queued and of
//! a finished job, `GET /status` and `GET /metrics`, after another settle, in
//! `BENCH_READ_ROUNDS` (5) interleaved rounds of `BENCH_POLLS` (4,000) requests each, reported
//! as the median round. At the end [`Figures::print`] compares each figure at the smallest and
//! the largest size and marks those worse by more than 20 %.
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

/// The figures of one store size that the 1k → 100k comparison looks at, by name; each says
/// whether a larger value is better (throughput) or worse (latency).
#[derive(Default)]
pub struct Figures {
    sizes: Vec<(usize, Vec<Figure>)>,
}

/// One figure at one size.
struct Figure {
    name: String,
    value: f64,
    higher_is_better: bool,
}

impl Figures {
    fn begin(&mut self, size: usize) {
        self.sizes.push((size, Vec::new()));
    }

    fn note(&mut self, name: impl Into<String>, value: f64, higher_is_better: bool) {
        if let Some((_, figures)) = self.sizes.last_mut() {
            figures.push(Figure {
                name: name.into(),
                value,
                higher_is_better,
            });
        }
    }

    /// Notes the p50 and p99 (and, for submits, the throughput) of the row `table` got last.
    fn note_last(&mut self, table: &Table, name: &str, throughput: bool) {
        let Some((latency, rate)) = table.last() else {
            return;
        };
        if throughput {
            self.note(format!("{name}: throughput"), rate, true);
        }
        self.note(format!("{name}: p50"), latency.p50, false);
        self.note(format!("{name}: p99"), latency.p99, false);
    }

    /// Prints each figure at the smallest and the largest size and how much worse it got, with
    /// the ones worse by more than 20 % marked (issue #16's criterion).
    pub fn print(&self) {
        let (Some((small, first)), Some((large, last))) = (self.sizes.first(), self.sizes.last())
        else {
            return;
        };
        if small == large {
            return;
        }
        println!();
        println!("| figure | {small} jobs | {large} jobs | worse by | over 20 % |");
        println!("|---|---:|---:|---:|---|");
        for Figure {
            name,
            value: a,
            higher_is_better,
        } in first
        {
            let Some(b) = last.iter().find(|f| f.name == *name).map(|f| f.value) else {
                continue;
            };
            let worse = if *higher_is_better {
                (a - b) / a
            } else {
                (b - a) / a
            } * 100.0;
            let mark = if worse > 20.0 { "**yes**" } else { "no" };
            println!("| {name} | {a:.3} | {b:.3} | {worse:+.0} % | {mark} |");
        }
    }
}

/// Fills to each size and measures there.
pub async fn run(app: &App, router: &Router, sizes: &[usize], table: &mut Table) -> Figures {
    let submitters = knob("BENCH_SUBMITTERS", 16);
    let pollers = knob("BENCH_POLLERS", 16);
    let polls = knob("BENCH_POLLS", 4000);
    let rounds = knob("BENCH_READ_ROUNDS", 5).max(1);
    let single = knob("BENCH_SINGLE_SUBMITS", 1000);
    let burst = knob("BENCH_BURST_SUBMITS", 4000);
    let settle = std::time::Duration::from_millis(knob("BENCH_SETTLE_MS", 2000) as u64);
    let mut finished = None;
    let mut figures = Figures::default();
    for &size in sizes {
        let now = stored(app);
        let Some(missing) = size.checked_sub(now).filter(|&n| n > 0) else {
            eprintln!("the store already holds {now} jobs (>= {size}): size skipped");
            continue;
        };
        figures.begin(size);
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
        figures.note_last(table, "submit, 1 client", true);
        let at = stored(app);
        let newest = submit::run(app, submitters, at, at + burst, table)
            .await
            .expect("jobs were submitted");
        figures.note_last(table, &format!("submit, {submitters} clients"), true);
        // The reads are measured on a quiet store too, not against the write-out of the burst.
        app.store().flush().await.expect("flush");
        tokio::time::sleep(settle).await;
        let at = stored(app);
        let mut uris = vec![format!("/api/v1/jobs/{newest}")];
        uris.extend(finished.as_ref().map(|done| format!("/api/v1/jobs/{done}")));
        uris.extend(["/status".to_string(), "/metrics".to_string()]);
        let mut labels = Vec::with_capacity(uris.len());
        for uri in &uris {
            labels.push(poll::label(router, uri).await);
        }
        // Rounds interleave the endpoints, so a disturbance of the machine falls on one round
        // of each rather than on every round of one.
        let mut measured = vec![Vec::with_capacity(rounds); uris.len()];
        for _ in 0..rounds {
            for (uri, rounds_of) in uris.iter().zip(&mut measured) {
                rounds_of.push(poll::round(router, uri, pollers, polls).await);
            }
        }
        for (label, rounds_of) in labels.iter().zip(&measured) {
            let what =
                format!("`GET {label}`, router in process, {pollers} pollers, {at} jobs stored");
            poll::add_rounds(table, what, rounds_of);
            figures.note_last(table, &format!("GET {label}"), false);
        }
    }
    figures
}
