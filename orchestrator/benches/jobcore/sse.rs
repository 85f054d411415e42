//! Event fan-out over HTTP: `BENCH_SSE_STREAMS` (1,000) clients follow one running job on
//! `GET /api/v1/jobs/{id}/events` (Server-Sent Events through the real server on 127.0.0.1)
//! while its progress and end go through `Lifecycle`. Every stream must receive every event, in
//! order; the delay is from just before the `Lifecycle` call to the client's receipt of the
//! event's `data:` line. Memory per stream is the growth of this process's resident set while
//! the streams are open, divided by their number — the clients' buffers included, so it is an
//! upper bound for the server's share.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{JobResult, ProgressEvent, Source, Stage};
use refrain_orchestrator::service::{App, JobMeta};

use crate::fanout::spec;
use crate::stats::{Latency, Table};

/// Resident set size of this process in bytes (Linux `/proc/self/statm`).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

pub async fn run(app: &App, base_url: &str, streams: usize, events: usize, table: &mut Table) {
    let record = app
        .submit(spec(2), JobMeta::anonymous(Source::Cli))
        .await
        .expect("submit");
    let id = record.id.clone();
    let lifecycle = app.lifecycle().clone();
    let started = lifecycle.start(&id, 1, 1).await.expect("start");
    let base = started.event_seq;
    let total = events + 1;
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");

    let before = rss_bytes();
    let epoch = Instant::now();
    let sent: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let ready = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(streams);
    for _ in 0..streams {
        let url = format!("{base_url}/api/v1/jobs/{id}/events");
        let (client, sent, ready) = (client.clone(), sent.clone(), ready.clone());
        tasks.push(tokio::spawn(async move {
            let mut response = client
                .get(url)
                .header("last-event-id", (base - 1).to_string())
                .send()
                .await
                .expect("GET events");
            assert_eq!(response.status(), 200);
            let mut buffer = String::new();
            let mut delays = Vec::with_capacity(total);
            let mut expect = base;
            while let Some(chunk) = response.chunk().await.expect("stream") {
                let now = epoch.elapsed();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(seq) = block
                        .lines()
                        .find_map(|l| l.strip_prefix("id:"))
                        .and_then(|v| v.trim().parse::<u64>().ok())
                    else {
                        continue; // a keep-alive comment
                    };
                    assert_eq!(seq, expect, "events arrive in order, each once");
                    if seq == base {
                        ready.fetch_add(1, Ordering::SeqCst);
                    } else {
                        let at = sent[(seq - base - 1) as usize].load(Ordering::Acquire);
                        delays.push(now.saturating_sub(Duration::from_nanos(at)));
                    }
                    expect += 1;
                }
            }
            assert_eq!(expect, base + 1 + total as u64, "every event arrived");
            delays
        }));
    }
    while ready.load(Ordering::SeqCst) < streams {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let per_stream = match (before, rss_bytes()) {
        (Some(b), Some(a)) => Some(a.saturating_sub(b) / streams.max(1) as u64),
        _ => None,
    };

    let begin = epoch.elapsed();
    for step in 1..=events {
        sent[step - 1].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
        let event = ProgressEvent {
            stage: Stage::Sampling,
            step: step as u32,
            total: events as u32,
            percent: 100.0 * step as f32 / events as f32,
            eta_seconds: Some(1.0),
            elapsed_seconds: 0.1,
        };
        lifecycle
            .progress(&id, 1, &event, false)
            .await
            .expect("progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent[events].store(epoch.elapsed().as_nanos() as u64, Ordering::Release);
    let result = JobResult {
        file: id.file_name(),
        bytes: 0,
        duration_seconds: 95.0,
        attempt: 1,
        files: Vec::new(),
    };
    lifecycle.succeed(&id, 1, result).await.expect("succeed");

    let mut delays = Vec::with_capacity(streams * total);
    for task in tasks {
        delays.extend(task.await.expect("stream task"));
    }
    let delivered = delays.len();
    assert_eq!(delivered, streams * total);
    let elapsed = (epoch.elapsed() - begin).as_secs_f64();
    let memory = per_stream.map_or_else(|| "?".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0));
    table.add(
        format!(
            "SSE over HTTP: {streams} streams × {total} events (one every 20 ms), \
             state change → receipt; memory ≤ {memory} per stream"
        ),
        delivered,
        Latency::of(&mut delays),
        delivered as f64 / elapsed,
        "events/s",
    );
}
