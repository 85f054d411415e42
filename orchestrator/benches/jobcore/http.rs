//! The HTTP mode (`REFRAIN_BENCH_URL`): submit and status polling against an already-running
//! `refrain serve`, through the DiffRhythm API only (`POST /generate`, `GET /status`,
//! `GET /output/<id>.wav`), which builds of older commits serve the same way.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::multipart::Form;
use reqwest::{Client, StatusCode};
use serde_json::Value;

use crate::poll::concurrently;
use crate::stats::{Latency, Table};
use crate::{knob, store_sizes};

fn form(seed: u64) -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", "bright acoustic pop")
        .text("lrc", "[00:01.00]hello from the job-core bench\n")
        .text("audio_length", "95")
        .text("seed", seed.to_string())
}

async fn get_json(client: &Client, url: &str) -> Value {
    let response = client.get(url).send().await.expect("GET");
    assert_eq!(response.status(), StatusCode::OK, "GET {url}");
    response.json().await.expect("JSON body")
}

/// Jobs in the server's store, by `GET /status`.
async fn stored(client: &Client, base: &str) -> usize {
    let status = get_json(client, &format!("{base}/status")).await;
    status["jobs"].as_object().map_or(0, |jobs| {
        jobs.values().filter_map(Value::as_u64).sum::<u64>() as usize
    })
}

/// `POST /generate` from `clients` concurrent clients, `jobs` in all; returns the `url` of the
/// last job accepted.
async fn submit(
    client: &Client,
    base: &str,
    clients: usize,
    jobs: usize,
    label: String,
    table: &mut Table,
) -> String {
    static SEED: AtomicU64 = AtomicU64::new(1);
    let newest = Arc::new(Mutex::new((Instant::now(), String::new())));
    let (client, url, last) = (client.clone(), format!("{base}/generate"), newest.clone());
    let (mut latencies, rate) = concurrently(clients, jobs, move || {
        let (client, url, last) = (client.clone(), url.clone(), last.clone());
        async move {
            let seed = SEED.fetch_add(1, Ordering::Relaxed);
            let response = client
                .post(&url)
                .multipart(form(seed))
                .send()
                .await
                .expect("POST /generate");
            let status = response.status();
            let body: Value = response.json().await.expect("JSON body");
            assert_eq!(
                status,
                StatusCode::ACCEPTED,
                "POST /generate: {body} (start the server with REFRAIN_QUEUE__CAPACITY=1000000)"
            );
            let job_url = body["url"].as_str().expect("url").to_string();
            let now = Instant::now();
            let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
            if now >= last.0 {
                *last = (now, job_url);
            }
        }
    })
    .await;
    table.add(
        label,
        latencies.len(),
        Latency::of(&mut latencies),
        rate,
        "jobs/s",
    );
    let newest = newest.lock().unwrap_or_else(|p| p.into_inner()).1.clone();
    newest
}

async fn poll(
    client: &Client,
    url: String,
    shown: &str,
    stored: usize,
    pollers: usize,
    polls: usize,
    table: &mut Table,
) {
    let client = client.clone();
    let (mut latencies, rate) = concurrently(pollers, polls, move || {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client.get(&url).send().await.expect("GET");
            assert_eq!(response.status(), StatusCode::OK, "GET {url}");
            response.bytes().await.expect("body");
        }
    })
    .await;
    table.add(
        format!("`GET {shown}`, HTTP, {pollers} pollers, {stored} jobs stored"),
        latencies.len(),
        Latency::of(&mut latencies),
        rate,
        "req/s",
    );
}

pub async fn run(base: &str, table: &mut Table) {
    let client = Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let clients = knob("BENCH_SUBMITTERS", 16);
    let pollers = knob("BENCH_POLLERS", 16);
    let polls = knob("BENCH_POLLS", 2000);
    for size in store_sizes() {
        let now = stored(&client, base).await;
        let Some(jobs) = size.checked_sub(now).filter(|&n| n > 0) else {
            eprintln!("the server already holds {now} jobs (>= {size}): size skipped");
            continue;
        };
        let label = format!("`POST /generate`, HTTP, {clients} clients, store {now} → {size} jobs");
        let job = submit(&client, base, clients, jobs, label, table).await;
        let output = format!("{base}{job}");
        let status = get_json(&client, &output).await;
        assert_eq!(status["state"], "queued", "{status}");
        let stored = stored(&client, base).await;
        poll(
            &client,
            format!("{base}/status"),
            "/status",
            stored,
            pollers,
            polls,
            table,
        )
        .await;
        let shown = "/output/<queued>.wav";
        poll(
            &client,
            output.clone(),
            shown,
            stored,
            pollers,
            polls,
            table,
        )
        .await;
        // The server's node may have run jobs meanwhile, but never this one.
        let status = get_json(&client, &output).await;
        assert_eq!(status["state"], "queued", "{status}");
    }
}
