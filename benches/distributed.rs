//! Benchmark of the distributed deployment (`cargo bench -p refrain --bench distributed`):
//!
//! 1. **Throughput**: jobs per second end to end (submit → result recorded and served) through
//!    NATS with two `refrain node` processes, at the smallest sampler setting (`steps = 2`, one
//!    Euler step, so the job is almost all VAE decode), next to the embedded deployment with two
//!    in-process nodes on the same machine.
//! 2. **Latency**: submit to first sampling step as the polling endpoint shows it, NATS (one
//!    node) against embedded (one in-process node), median of several idle-queue submissions.
//! 3. **Object store**: put and get of a 50 MB WAV (a 285 s song) through the JetStream object
//!    store, at several chunk sizes.
//!
//! Everything runs on 127.0.0.1 with a private nats-server (tools/fetch-nats-server.sh) and the
//! debug-or-release `refrain` binary cargo built for this bench. `BENCH_JOBS` sets the number of
//! jobs of (1) (default 24), `BENCH_LATENCY_RUNS` the submissions of (2) (default 10).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use refrain_orchestrator::config::NatsConfig;
use refrain_orchestrator::distributed::objects::Bucket;
use refrain_orchestrator::distributed::{self, JetStream, Role, Settings};
use support::*;
use tokio_util::sync::CancellationToken;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Submits `n` jobs, waits for every result; returns jobs per second.
fn throughput(api: &Api, n: usize) -> f64 {
    let started = Instant::now();
    let jobs: Vec<(String, String)> = (0..n)
        .map(|i| api.submit_prompt(95, 1000 + i as u64))
        .collect();
    for (id, url) in &jobs {
        if let Done::Failed(body) = api.wait(url, Duration::from_secs(600)) {
            panic!("job {id} failed: {body}");
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// Milliseconds from submit to the first `sampling` progress seen by polling every 2 ms, and
/// of the `POST /generate` round trip alone (the durable insert and enqueue, then 202).
fn first_step_latency(api: &Api, runs: usize) -> (Vec<f64>, Vec<f64>) {
    let mut out = Vec::new();
    let mut accepted = Vec::new();
    for i in 0..runs {
        let started = Instant::now();
        let (_, url) = api.submit_prompt(95, 5000 + i as u64);
        accepted.push(started.elapsed().as_secs_f64() * 1000.0);
        loop {
            match api.poll(&url) {
                Err(body) if body["stage"] == "sampling" || body["stage"] == "decode" => {
                    out.push(started.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
                Ok(_) => {
                    out.push(started.elapsed().as_secs_f64() * 1000.0);
                    break;
                }
            }
        }
        // Let the job finish so the next one finds an idle node.
        let _ = api.wait(&url, Duration::from_secs(600));
    }
    (out, accepted)
}

fn object_store(url: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let wav = sine_wav(285.0);
    let mb = wav.len() as f64 / 1e6;
    println!("\n3. object store, one {mb:.1} MB WAV (put = upload and server ack of every chunk, get = download and digest check)");
    println!(
        "   {:>10}  {:>12}  {:>12}  {:>12}  {:>12}",
        "chunk", "put median", "put MB/s", "get median", "get MB/s"
    );
    runtime.block_on(async {
        let cancel = CancellationToken::new();
        let config = NatsConfig {
            url: url.into(),
            ..NatsConfig::default()
        };
        let client = distributed::connect(&config, "refrain-bench")
            .await
            .expect("connect");
        for chunk in [128 * 1024, 512 * 1024, 1024 * 1024] {
            let nats = NatsConfig {
                url: url.into(),
                object_chunk_bytes: chunk,
                ..NatsConfig::default()
            };
            let settings = Settings {
                nats,
                max_attempts: 3,
                max_interruptions: 10,
            };
            let js = JetStream::setup(client.clone(), settings, Role::Orchestrator, &cancel)
                .await
                .expect("setup");
            let (mut puts, mut gets) = (Vec::new(), Vec::new());
            for round in 0..5 {
                let name = format!("bench/{chunk}/{round}.wav");
                let t = Instant::now();
                js.objects
                    .put(Bucket::Results, &name, &wav)
                    .await
                    .expect("put");
                puts.push(t.elapsed().as_secs_f64());
                let t = Instant::now();
                let back = js.objects.get(Bucket::Results, &name).await.expect("get");
                gets.push(t.elapsed().as_secs_f64());
                assert_eq!(back.len(), wav.len());
                js.objects
                    .delete(Bucket::Results, &name)
                    .await
                    .expect("delete");
            }
            let (p, g) = (median(puts), median(gets));
            println!(
                "   {:>7} KiB  {:>10.0} ms  {:>12.0}  {:>10.0} ms  {:>12.0}",
                chunk / 1024,
                p * 1000.0,
                mb / p,
                g * 1000.0,
                mb / g
            );
        }
    });
}

fn main() {
    if !ort_available() {
        return;
    }
    let Some(nats_bin) = nats_server_binary() else {
        return;
    };
    let jobs = env_number("BENCH_JOBS", 24);
    let runs = env_number("BENCH_LATENCY_RUNS", 10);
    println!(
        "refrain distributed benchmark ({} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    // 1. Throughput.
    println!("\n1. throughput, {jobs} jobs of 95 s at steps = 2, two nodes, one thread each");
    {
        let app = TestApp::nats()
            .steps(2)
            .ack_wait(60)
            .nodes(&["a", "b"])
            .start()
            .expect("nats-server and ONNX Runtime");
        let api = app.api();
        throughput(&api, 2); // warm-up
        println!(
            "   NATS, 2 node processes:       {:.2} jobs/s",
            throughput(&api, jobs)
        );
    }
    {
        let app = TestApp::embedded()
            .steps(2)
            .env("REFRAIN_DEVICES", "[\"cpu\", \"cpu\"]")
            .env("REFRAIN_INTRA_THREADS", 1)
            .start()
            .expect("ONNX Runtime");
        let api = app.api();
        throughput(&api, 2);
        println!(
            "   embedded, 2 in-process nodes: {:.2} jobs/s",
            throughput(&api, jobs)
        );
    }

    // 2. Latency.
    println!("\n2. submit to first sampling step (polling every 2 ms), {runs} runs at steps = 200, one node");
    let nats_ms = {
        let app = TestApp::nats()
            .steps(200)
            .ack_wait(60)
            .nodes(&["a"])
            .start()
            .expect("nats-server and ONNX Runtime");
        let api = app.api();
        first_step_latency(&api, 2);
        first_step_latency(&api, runs)
    };
    let embedded_ms = {
        let app = TestApp::embedded()
            .steps(200)
            .env("REFRAIN_INTRA_THREADS", 1)
            .start()
            .expect("ONNX Runtime");
        let api = app.api();
        first_step_latency(&api, 2);
        first_step_latency(&api, runs)
    };
    let ((nats_ms, nats_post), (embedded_ms, embedded_post)) = (nats_ms, embedded_ms);
    let (n, e) = (median(nats_ms.clone()), median(embedded_ms.clone()));
    let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "   NATS:     first step median {n:.1} ms (min {:.1} ms); POST /generate median {:.1} ms",
        min(&nats_ms),
        median(nats_post)
    );
    println!(
        "   embedded: first step median {e:.1} ms (min {:.1} ms); POST /generate median {:.1} ms",
        min(&embedded_ms),
        median(embedded_post)
    );
    println!("   added by NATS: {:.1} ms (median)", n - e);

    // 3. Object store.
    let dir = TestDir::new();
    let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    object_store(&nats.url());
}
