//! Event fan-out: many subscribers follow one running job through `App::subscribe` while the
//! job's progress and its end go through `Lifecycle`, the only code that changes a job.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{JobResult, JobSpec, ProgressEvent, Source, Stage, StyleSpec};
use refrain_orchestrator::service::{App, JobMeta};

use crate::stats::{Latency, Table};

/// The spec of every benchmark job (valid for the test bundle; never run).
pub fn spec(seed: u64) -> JobSpec {
    JobSpec {
        lyrics: "[00:01.00]hello from the job-core bench".into(),
        style: StyleSpec::Prompt("bright acoustic pop".into()),
        seconds: 95,
        seed,
        steps: None,
        cfg_strength: None,
        variants: 1,
        chunked: false,
        edit: None,
        init: None,
        output_subdir: None,
        format: Default::default(),
    }
}

fn progress(step: u32, total: u32) -> ProgressEvent {
    ProgressEvent {
        stage: Stage::Sampling,
        step,
        total,
        percent: 100.0 * step as f32 / total as f32,
        eta_seconds: Some(1.0),
        elapsed_seconds: 0.1,
    }
}

/// What one subscriber saw: its delays and when it received the final event.
struct Seen {
    delays: Vec<Duration>,
    last: Duration,
}

/// `events` progress events and the final `succeeded` of a fresh running job, followed by
/// `subscribers` subscriptions; `interval`: the pause between two events (`None`: a burst).
pub async fn run(
    app: &App,
    subscribers: usize,
    events: usize,
    interval: Option<Duration>,
    table: &mut Table,
) {
    let record = app
        .submit(spec(1), JobMeta::anonymous(Source::Cli))
        .await
        .expect("submit");
    let id = record.id.clone();
    let lifecycle = app.lifecycle().clone();
    let started = lifecycle.start(&id, 1, 1).await.expect("start");
    let base = started.event_seq;
    let total = events + 1;

    // Nanoseconds since `epoch` at which event `base + 1 + i` was handed to the lifecycle.
    let epoch = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(subscribers);
    for _ in 0..subscribers {
        // From the `started` event: the first `next` reads it from the outbox, after which the
        // subscriber waits on the live channel.
        let mut sub = app.subscribe(&id, base - 1);
        let (sent, ready) = (sent.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let first = sub.next().await.expect("next").expect("the started event");
            assert_eq!(first.seq, base);
            ready.fetch_add(1, Ordering::SeqCst);
            let mut seen = Seen {
                delays: Vec::with_capacity(total),
                last: Duration::ZERO,
            };
            let mut expect = base + 1;
            while let Some(event) = sub.next().await.expect("next") {
                let now = epoch.elapsed();
                assert_eq!(event.seq, expect, "events arrive in order, each once");
                let at = sent[(event.seq - base - 1) as usize].load(Ordering::Acquire);
                seen.delays
                    .push(now.saturating_sub(Duration::from_nanos(at)));
                seen.last = now;
                expect += 1;
            }
            assert_eq!(expect, base + 1 + total as u64, "every event arrived");
            seen
        }));
    }
    while ready.load(Ordering::SeqCst) < subscribers {
        tokio::task::yield_now().await;
    }
    // Let every subscriber reach its wait on the live channel.
    tokio::time::sleep(Duration::from_millis(50)).await;

    let begin = epoch.elapsed();
    for step in 1..=events {
        sent[step - 1].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        lifecycle
            .progress(&id, 1, &progress(step as u32, events as u32), false)
            .await
            .expect("progress");
        if let Some(pause) = interval {
            tokio::time::sleep(pause).await;
        }
    }
    let result = JobResult {
        file: id.file_name(),
        bytes: 0,
        duration_seconds: 95.0,
        attempt: 1,
        files: Vec::new(),
    };
    sent[events].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
    lifecycle.succeed(&id, 1, result).await.expect("succeed");

    let mut delays = Vec::with_capacity(subscribers * total);
    let mut last = begin;
    for task in tasks {
        let seen = task.await.expect("subscriber");
        delays.extend(seen.delays);
        last = last.max(seen.last);
    }
    let delivered = delays.len();
    assert_eq!(delivered, subscribers * total);
    let rate = delivered as f64 / (last - begin).as_secs_f64();
    let pacing = match interval {
        Some(pause) => format!("one every {} ms", pause.as_millis()),
        None => "burst".into(),
    };
    table.add(
        format!("fan-out: {subscribers} subscribers × {total} events ({pacing}), state change → receipt"),
        delivered,
        Latency::of(&mut delays),
        rate,
        "events/s",
    );
}
