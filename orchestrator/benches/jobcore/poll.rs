//! Status polling: many concurrent pollers of one endpoint, through the real router in process
//! ([`router`]), or over HTTP (`crate::http`, through [`concurrently`]).

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

/// Polls `GET uri` through `router` (no sockets): `polls` requests from `pollers` tasks.
pub async fn router(
    router: &Router,
    uri: &str,
    stored: usize,
    pollers: usize,
    polls: usize,
    table: &mut Table,
) {
    // A queued job's status JSON, not its WAV: check once before measuring.
    let body = get(router.clone(), uri.to_string()).await;
    if uri.starts_with("/output/") {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("status JSON");
        assert_eq!(json["state"], "queued", "{json}");
    }
    let job_state = if uri.starts_with("/api/v1/jobs/") {
        let json: serde_json::Value = serde_json::from_slice(&body).expect("job JSON");
        json["state"].as_str().expect("a state").to_string()
    } else {
        String::new()
    };
    let (router, uri_owned) = (router.clone(), uri.to_string());
    let (mut latencies, rate) = concurrently(pollers, polls, move || {
        let (router, uri) = (router.clone(), uri_owned.clone());
        async move {
            get(router, uri).await;
        }
    })
    .await;
    let shown = if uri.starts_with("/output/") {
        "/output/<queued>.wav".to_string()
    } else if !job_state.is_empty() {
        format!("/api/v1/jobs/<{job_state}>")
    } else {
        uri.to_string()
    };
    table.add(
        format!("`GET {shown}`, router in process, {pollers} pollers, {stored} jobs stored"),
        latencies.len(),
        Latency::of(&mut latencies),
        rate,
        "req/s",
    );
}
