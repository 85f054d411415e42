//! Status polling: many concurrent pollers of one endpoint, through the real router in process
//! ([`round`], in rounds summed up by [`add_rounds`]), or over HTTP (`crate::http`, through [`concurrently`]).

use std::future::Future;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use crate::stats::{Latency, Table};

/// Runs `request` `total` times from `pollers` concurrent tasks; returns every latency and the
/// requests per second over the whole run.
pub async fn concurrently<F, Fut>(pollers: usize, total: usize, request: F) -> (Vec<Duration>, f64)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let pollers = pollers.clamp(1, total.max(1));
    let begin = Instant::now();
    let mut tasks = Vec::with_capacity(pollers);
    for p in 0..pollers {
        let share = total / pollers + usize::from(p < total % pollers);
        let request = request.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let t = Instant::now();
                request().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("poller"));
    }
    let rate = latencies.len() as f64 / begin.elapsed().as_secs_f64();
    (latencies, rate)
}

/// `GET uri` through the router, body read to the end; panics unless it answers 200.
async fn get(router: Router, uri: String) -> axum::body::Bytes {
    let request = Request::get(uri.as_str())
        .body(Body::empty())
        .expect("request");
    let response = router.oneshot(request).await.expect("infallible");
    assert_eq!(response.status(), StatusCode::OK, "GET {uri}");
    axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body")
}

/// Checks `GET uri` once and returns how the table shows it: a job's URI by the job's state
/// (`/api/v1/jobs/<queued>`), others as they are. Panics unless it answers 200 (and, for
/// `/output/`, with a queued job's status JSON rather than its WAV).
pub async fn label(router: &Router, uri: &str) -> String {
    let body = get(router.clone(), uri.to_string()).await;
    if uri.starts_with("/output/") {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
        assert_eq!(json["state"], "queued", "{json}");
        return "/output/<queued>.wav".to_string();
    }
    if uri.starts_with("/api/v1/jobs/") {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("job JSON");
        let state = json["state"].as_str().expect("a state");
        return format!("/api/v1/jobs/<{state}>");
    }
    uri.to_string()
}

/// One round of polling `GET uri` through `router` (no sockets): `polls` requests from
/// `pollers` tasks. Returns the round's latencies and its requests per second.
pub async fn round(router: &Router, uri: &str, pollers: usize, polls: usize) -> Round {
    let (router, uri) = (router.clone(), uri.to_string());
    let (mut latencies, rate) = concurrently(pollers, polls, move || {
        let (router, uri) = (router.clone(), uri.clone());
        async move {
            get(router, uri).await;
        }
    })
    .await;
    Round {
        count: latencies.len(),
        latency: Latency::of(&mut latencies),
        rate,
    }
}

/// What one round of polling measured.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub count: usize,
    pub latency: Latency,
    pub rate: f64,
}

/// Adds one row for several rounds of the same measurement: the median round's p50, p99 and
/// rate (each taken separately), the largest latency of any round, and every request counted.
/// A microsecond-scale p99 of one round moves by tens of percent with a single scheduler delay
/// on a small machine; the median of a few interleaved rounds does not.
pub fn add_rounds(table: &mut Table, what: String, rounds: &[Round]) {
    fn median(mut v: Vec<f64>) -> f64 {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    }
    let p99s: Vec<f64> = rounds.iter().map(|r| r.latency.p99).collect();
    let (lo, hi) = p99s.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), &p| {
        (lo.min(p), hi.max(p))
    });
    let latency = Latency {
        p50: median(rounds.iter().map(|r| r.latency.p50).collect()),
        p99: median(p99s),
        max: rounds.iter().map(|r| r.latency.max).fold(0.0, f64::max),
    };
    let rate = median(rounds.iter().map(|r| r.rate).collect());
    let count = rounds.iter().map(|r| r.count).sum();
    let what = format!(
        "{what} (median of {} rounds; p99 {lo:.3}–{hi:.3} ms)",
        rounds.len()
    );
    table.add(what, count, latency, rate, "req/s");
}
