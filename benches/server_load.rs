//! Load benchmark of `refrain serve`, the embedded deployment (`cargo bench --bench server_load`).
//!
//! Starts the release binary on 127.0.0.1 (port 0, a temporary data directory, the committed
//! test bundle) with `REFRAIN_INFERENCE__STEPS=2` (one Euler step: the model is not the
//! bottleneck) and a queue capacity no submission reaches, then measures over HTTP with async
//! reqwest clients:
//!
//! 1. **Submit to first step** on an idle server: from the 202 until the status JSON of the job
//!    shows it running, and until it shows the first sampler step done (`stage` `sampling`, or
//!    anything later). Polled every millisecond, so each figure is at most one poll late.
//! 2. **Submissions accepted per second**: `POST /generate` (multipart, text prompt, lyrics,
//!    95 s) from one sequential client, then from many concurrent clients. Every submission is
//!    durable (sled insert + enqueue, flushed) before its 202. The node keeps generating the
//!    queued jobs meanwhile, on the same cores.
//! 3. **Status poll latency**: `GET /output/<file>.wav` of jobs deep in the queue (the JSON
//!    path, with `queue_position`) from 64 concurrent pollers, p50/p99.
//! 4. **Finished result HEAD latency**: `HEAD /output/<file>.wav` of a finished WAV from 64
//!    concurrent pollers, p50/p99.
//!
//! Prints a Markdown table (pasted into the README). Knobs (environment): `BENCH_SEQUENTIAL`
//! (submissions of the sequential client, default 200), `BENCH_CLIENTS` × `BENCH_PER_CLIENT`
//! (concurrent submitters, default 16 × 25), `BENCH_POLLERS` (default 64), `BENCH_POLLS`
//! (requests per poller, default 150), `BENCH_FIRST_STEP_RUNS` (default 20). Without ONNX
//! Runtime (tools/fetch-onnxruntime.sh) it prints a message and does nothing.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use reqwest::multipart::Form;
use reqwest::{header, Client, StatusCode};
use serde_json::Value;
use support::*;

const PROMPT: &str = "bright acoustic pop with piano";
const LYRICS: &str = "[00:01.00]hello from the load bench\n[00:05.00]la la la\n";

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn form(seed: u64) -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", PROMPT)
        .text("lrc", LYRICS)
        .text("audio_length", "95")
        .text("seed", seed.to_string())
}

/// Milliseconds at percentile `p` (nearest rank) of `samples`.
fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    if samples.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1000.0
}

fn summary(samples: &mut [Duration]) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(samples, 50.0),
        percentile(samples, 99.0),
        percentile(samples, 100.0)
    )
}

/// `POST /generate`; the URL of an accepted job and the request's latency.
async fn submit(client: &Client, base: &str, seed: u64) -> (Option<String>, Duration) {
    let t = Instant::now();
    let r = client
        .post(format!("{base}/generate"))
        .multipart(form(seed))
        .send()
        .await
        .expect("POST /generate");
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    let elapsed = t.elapsed();
    if status == StatusCode::ACCEPTED {
        (body["url"].as_str().map(str::to_string), elapsed)
    } else {
        eprintln!("submission refused: {status} {body}");
        (None, elapsed)
    }
}

/// What a `GET` of a job URL showed.
enum Seen {
    Wav,
    Json(Value),
}

async fn look(client: &Client, url: &str) -> Seen {
    let r = client.get(url).send().await.expect("GET");
    assert!(r.status().is_success(), "{url}: {}", r.status());
    let wav = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v == "audio/wav");
    if wav {
        let _ = r.bytes().await;
        Seen::Wav
    } else {
        Seen::Json(r.json().await.expect("status JSON"))
    }
}

async fn wait_finished(client: &Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match look(client, url).await {
            Seen::Wav => return,
            Seen::Json(body) => {
                assert_ne!(body["status"], "failed", "{url}: {body}");
                assert!(Instant::now() < deadline, "{url} did not finish: {body}");
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `pollers` tasks, each sending `polls` requests to `url` one after another; the latencies
/// and the wall time. `check` sees every answer's status and headers.
async fn hammer(
    client: &Client,
    method: reqwest::Method,
    urls: &[String],
    pollers: usize,
    polls: usize,
    check: fn(StatusCode, &header::HeaderMap, &[u8]),
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..pollers {
        let client = client.clone();
        let method = method.clone();
        let url = urls[k % urls.len()].clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(polls);
            for _ in 0..polls {
                let t = Instant::now();
                let r = client
                    .request(method.clone(), &url)
                    .send()
                    .await
                    .expect("request");
                let status = r.status();
                let headers = r.headers().clone();
                let body = r.bytes().await.expect("body");
                latencies.push(t.elapsed());
                check(status, &headers, &body);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("poller"));
    }
    (all, start.elapsed())
}

struct Row {
    what: String,
    n: usize,
    result: String,
}

async fn run(base: String) -> Vec<Row> {
    let client = Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client");
    let mut rows = Vec::new();
    let mut seed = 0u64;
    let mut next_seed = || {
        seed += 1;
        seed
    };

    // Warm-up, and a finished result for the HEAD measurement.
    let (url, _) = submit(&client, &base, next_seed()).await;
    let finished = format!("{base}{}", url.expect("accepted"));
    wait_finished(&client, &finished).await;

    // 1. Submit to first step, one job at a time on an idle server.
    let runs = knob("BENCH_FIRST_STEP_RUNS", 20);
    let (mut to_running, mut to_step) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let (url, _) = submit(&client, &base, next_seed()).await;
        let accepted = Instant::now();
        let url = format!("{base}{}", url.expect("accepted"));
        let mut running = None;
        loop {
            match look(&client, &url).await {
                Seen::Wav => {
                    running.get_or_insert(accepted.elapsed());
                    to_step.push(accepted.elapsed());
                    break;
                }
                Seen::Json(body) => {
                    if body["state"] == "running" {
                        running.get_or_insert(accepted.elapsed());
                    }
                    if matches!(body["stage"].as_str(), Some("sampling" | "decode" | "done")) {
                        to_step.push(accepted.elapsed());
                        break;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        to_running.push(running.expect("seen running"));
        wait_finished(&client, &url).await;
    }
    rows.push(Row {
        what: "202 → job running (idle server)".into(),
        n: runs,
        result: summary(&mut to_running),
    });
    rows.push(Row {
        what: "202 → first sampler step done (idle server)".into(),
        n: runs,
        result: summary(&mut to_step),
    });

    // 2. Submissions: one sequential client, then concurrent ones.
    let sequential = knob("BENCH_SEQUENTIAL", 200);
    let mut latencies = Vec::new();
    let mut queued = Vec::new();
    let start = Instant::now();
    for _ in 0..sequential {
        let (url, latency) = submit(&client, &base, next_seed()).await;
        latencies.push(latency);
        queued.extend(url);
    }
    let elapsed = start.elapsed();
    assert_eq!(queued.len(), sequential, "every submission accepted");
    rows.push(Row {
        what: "POST /generate accepted, 1 sequential client".into(),
        n: sequential,
        result: format!(
            "**{:.0} /s**; {}",
            sequential as f64 / elapsed.as_secs_f64(),
            summary(&mut latencies)
        ),
    });

    let clients = knob("BENCH_CLIENTS", 16);
    let per_client = knob("BENCH_PER_CLIENT", 25);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (client, base) = (client.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for i in 0..per_client {
                out.push(submit(&client, &base, 1_000_000 + (c * per_client + i) as u64).await);
            }
            out
        }));
    }
    let mut latencies = Vec::new();
    let mut accepted = 0;
    for t in tasks {
        for (url, latency) in t.await.expect("submitter") {
            latencies.push(latency);
            if let Some(url) = url {
                accepted += 1;
                queued.push(url);
            }
        }
    }
    let elapsed = start.elapsed();
    let total = clients * per_client;
    assert_eq!(accepted, total, "every submission accepted");
    rows.push(Row {
        what: format!("POST /generate accepted, {clients} concurrent clients"),
        n: total,
        result: format!(
            "**{:.0} /s**; {}",
            total as f64 / elapsed.as_secs_f64(),
            summary(&mut latencies)
        ),
    });

    // 3. Status polls of jobs deep in the queue (the JSON path).
    let pollers = knob("BENCH_POLLERS", 64);
    let polls = knob("BENCH_POLLS", 150);
    let deep: Vec<String> = queued
        .iter()
        .rev()
        .take(pollers)
        .map(|u| format!("{base}{u}"))
        .collect();
    let depth = match look(&client, &deep[0]).await {
        Seen::Json(body) => body["queue_position"].as_u64().unwrap_or(0),
        Seen::Wav => 0,
    };
    let (mut latencies, elapsed) = hammer(
        &client,
        reqwest::Method::GET,
        &deep,
        pollers,
        polls,
        |status, headers, _| {
            assert_eq!(status, StatusCode::OK);
            assert!(
                headers[header::CONTENT_TYPE]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json"),
                "a queued job answers JSON"
            );
        },
    )
    .await;
    let n = latencies.len();
    rows.push(Row {
        what: format!(
            "GET /output/<queued>.wav status JSON, {pollers} concurrent pollers (queue position ≈ {depth})"
        ),
        n,
        result: format!(
            "{}; {:.0} req/s",
            summary(&mut latencies),
            n as f64 / elapsed.as_secs_f64()
        ),
    });

    // 4. HEAD of a finished WAV.
    let (mut latencies, elapsed) = hammer(
        &client,
        reqwest::Method::HEAD,
        std::slice::from_ref(&finished),
        pollers,
        polls,
        |status, headers, body| {
            assert_eq!(status, StatusCode::OK);
            assert_eq!(headers[header::CONTENT_TYPE], "audio/wav");
            assert!(body.is_empty());
        },
    )
    .await;
    let n = latencies.len();
    rows.push(Row {
        what: format!("HEAD /output/<finished>.wav, {pollers} concurrent pollers"),
        n,
        result: format!(
            "{}; {:.0} req/s",
            summary(&mut latencies),
            n as f64 / elapsed.as_secs_f64()
        ),
    });

    let status: Value = client
        .get(format!("{base}/status"))
        .send()
        .await
        .expect("GET /status")
        .json()
        .await
        .expect("status JSON");
    eprintln!("at the end: {}", status["jobs"]);
    rows
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let Some(app) = TestApp::embedded()
        .steps(2)
        .env("REFRAIN_QUEUE__CAPACITY", 1_000_000)
        .start()
    else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let rows = runtime.block_on(run(app.base().to_string()));
    drop(runtime);
    drop(app);

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!();
    println!(
        "refrain serve load bench: embedded deployment, models/test-bundle, \
         REFRAIN_INFERENCE__STEPS=2, 95 s songs, {} build, 127.0.0.1",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!("machine: {cores} cores, {}", cpu_model());
    println!();
    println!("| measurement | requests | result |");
    println!("|---|---:|---|");
    for row in rows {
        println!("| {} | {} | {} |", row.what, row.n, row.result);
    }
}
