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
//! 4. **Fail-over**, with the default NATS timings of `config/distributed.toml`: node `kill -9`
//!    → its job started on the other node; orchestrator `kill -9` and start → the events the
//!    nodes published meanwhile applied; nats-server `kill -9` and start (at once, and after
//!    5 s down) → a new job started.
//!    `BENCH_FAILOVER_RUNS` rounds each (default 3).
//! 5. **Idle gap**: `BENCH_GAP_JOBS` (12) jobs of 95 s at `BENCH_GAP_STEPS` (32) submitted
//!    together to one node, NATS and embedded; each node logs, for every job after the first,
//!    the time its device was idle before the job's first sampler step (`node idle gap`:
//!    `idle_ms` from the previous generation's end, `after_last_step_ms` from the previous
//!    job's last sampler step, so with its VAE decode) and whether its inputs were prepared
//!    while the previous job ran (`prepared_ahead`).
//!
//! `BENCH_SECTIONS` picks sections (`4`, `1,3`; default all).
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

    let sections = std::env::var("BENCH_SECTIONS").unwrap_or_else(|_| "1,2,3,4".into());
    let section = |n: &str| sections.split(',').any(|s| s.trim() == n);
    if section("1") {
        throughput_section(jobs);
    }
    if section("2") {
        latency_section(runs);
    }
    if section("3") {
        let dir = TestDir::new();
        let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
        object_store(&nats.url());
    }
    if section("4") {
        failover(env_number("BENCH_FAILOVER_RUNS", 3));
    }
    if section("5") {
        idle_gap_section(
            env_number("BENCH_GAP_JOBS", 12),
            env_number("BENCH_GAP_STEPS", 32) as u32,
        );
    }
}

/// A number field (`name=1.5`) of a log line.
fn log_number(line: &str, name: &str) -> Option<f64> {
    let start = line.find(&format!(" {name}="))? + name.len() + 2;
    line[start..].split_whitespace().next()?.parse().ok()
}

/// One `node idle gap` line of a log.
struct Gap {
    idle: f64,
    after_last_step: f64,
    report_wait: f64,
    take: f64,
    prepared_ahead: bool,
}

/// The `node idle gap` lines of a log.
fn idle_gaps(log: &str) -> Vec<Gap> {
    log.lines()
        .filter(|l| l.contains("node idle gap"))
        .filter_map(|l| {
            Some(Gap {
                idle: log_number(l, "idle_ms")?,
                after_last_step: log_number(l, "after_last_step_ms")?,
                report_wait: log_number(l, "report_wait_ms").unwrap_or(f64::NAN),
                take: log_number(l, "take_ms").unwrap_or(f64::NAN),
                prepared_ahead: l.contains("prepared_ahead=true"),
            })
        })
        .collect()
}

fn print_gaps(what: &str, gaps: &[Gap]) {
    let Some(worst) = gaps.iter().max_by(|a, b| a.idle.total_cmp(&b.idle)) else {
        println!("   {what}: no idle gap logged");
        return;
    };
    let idle: Vec<f64> = gaps.iter().map(|g| g.idle).collect();
    let after: Vec<f64> = gaps.iter().map(|g| g.after_last_step).collect();
    let mut sorted = idle.clone();
    sorted.sort_by(f64::total_cmp);
    let p90 = sorted[(sorted.len() * 9 / 10).min(sorted.len() - 1)];
    let ahead = gaps.iter().filter(|g| g.prepared_ahead).count();
    println!(
        "   {what}: idle median {:.1} ms, p90 {p90:.1} ms, max {:.1} ms (of which waiting for a report {:.1} ms, taking the job {:.1} ms; medians {:.1} and {:.1} ms); last step → next first step median {:.1} ms; {ahead}/{} prepared ahead",
        median(idle),
        worst.idle,
        worst.report_wait,
        worst.take,
        median(gaps.iter().map(|g| g.report_wait).collect()),
        median(gaps.iter().map(|g| g.take).collect()),
        median(after),
        gaps.len()
    );
}

/// Submits `jobs` at once and waits for all of them.
fn back_to_back(api: &Api, jobs: usize, seed: u64) {
    let submitted: Vec<(String, String)> = (0..jobs)
        .map(|i| api.submit_prompt(95, seed + i as u64))
        .collect();
    for (id, url) in &submitted {
        if let Done::Failed(body) = api.wait(url, Duration::from_secs(600)) {
            panic!("job {id} failed: {body}");
        }
    }
}

/// 5. The device's idle time between back-to-back jobs, NATS and embedded.
fn idle_gap_section(jobs: usize, steps: u32) {
    println!("\n5. node idle gap between back-to-back jobs: {jobs} jobs of 95 s at steps = {steps} submitted together, one node of one thread");
    {
        let app = TestApp::nats()
            .steps(steps)
            .ack_wait(60)
            .env("REFRAIN_INTRA_THREADS", 1)
            .nodes(&["a"])
            .start()
            .expect("nats-server and ONNX Runtime");
        back_to_back(&app.api(), jobs, 7000);
        print_gaps("NATS    ", &idle_gaps(&app.node("a").log_text()));
    }
    {
        let app = TestApp::embedded()
            .steps(steps)
            .env("REFRAIN_INTRA_THREADS", 1)
            .start()
            .expect("ONNX Runtime");
        back_to_back(&app.api(), jobs, 7000);
        print_gaps("embedded", &idle_gaps(&app.server.all_logs()));
    }
}

/// 1. Jobs per second, NATS and embedded.
fn throughput_section(jobs: usize) {
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
}

/// 2. Submit to first step, NATS and embedded.
fn latency_section(runs: usize) {
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
}

/// The system with the default NATS timings (`TestApp::nats` shortens some for the tests).
fn default_timings() -> TestAppBuilder {
    let defaults = NatsConfig::default();
    TestApp::nats()
        .env("REFRAIN_NATS__ACK_WAIT_SECONDS", defaults.ack_wait_seconds)
        .env(
            "REFRAIN_NATS__FETCH_EXPIRES_SECONDS",
            defaults.fetch_expires_seconds,
        )
        .env(
            "REFRAIN_NATS__HEARTBEAT_SECONDS",
            defaults.heartbeat_seconds,
        )
}

fn print_times(what: &str, target: f64, times: &[f64]) {
    let worst = times.iter().cloned().fold(0.0, f64::max);
    let shown: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
    println!(
        "   {what:<46} {} s (worst {worst:.1} s; target {target} s)",
        shown.join(", ")
    );
}

/// Seconds from each fault to the system working again, `runs` times each.
fn failover(runs: usize) {
    let defaults = NatsConfig::default();
    println!(
        "\n4. fail-over, default timings (ack_wait {} s, pulls of {} s), {runs} rounds",
        defaults.ack_wait_seconds, defaults.fetch_expires_seconds
    );
    // Node killed mid-job → the job started again on the other node.
    let mut node_kill = Vec::new();
    {
        let mut app = default_timings()
            .steps(1000)
            .nodes(&["n0", "n1"])
            .start()
            .expect("nats-server and ONNX Runtime");
        let api = app.api();
        for round in 0..runs {
            let (id, _) = api.submit_prompt(285, 7000 + round as u64);
            let mut events = api.events(&id);
            let started = events.wait_kind("started");
            // The node logs the start just after publishing it: wait for the line.
            let deadline = Instant::now() + Duration::from_secs(30);
            let runner = loop {
                let runner = app.nodes().iter().find(|n| {
                    n.log_events()
                        .iter()
                        .any(|e| matches!(e, NodeLogEvent::Started { job, .. } if *job == id))
                });
                if let Some(node) = runner {
                    break node.name.clone();
                }
                assert!(Instant::now() < deadline, "no node logged the job's start");
                std::thread::sleep(Duration::from_millis(20));
            };
            let killed = Instant::now();
            app.node_mut(&runner).kill();
            events.wait_for("the job started again", |e| {
                e.kind == "started" && e.seq > started.seq
            });
            node_kill.push(killed.elapsed().as_secs_f64());
            app.node_mut(&runner).restart();
            let _ = api.cancel(&id);
            app.wait_nodes(2);
        }
    }
    print_times(
        "node kill -9 → job running on another node",
        15.0,
        &node_kill,
    );

    // Orchestrator killed while a node finishes a job → the result recorded after the start.
    let mut events_applied = Vec::new();
    {
        let mut app = default_timings()
            .steps(2)
            .nodes(&["n0"])
            .start()
            .expect("nats-server and ONNX Runtime");
        for round in 0..runs {
            let api = app.api();
            let (id, _) = api.submit_prompt(95, 7100 + round as u64);
            api.events(&id).wait_kind("started");
            app.server.kill();
            let deadline = Instant::now() + Duration::from_secs(120);
            while !app
                .node("n0")
                .log_events()
                .iter()
                .any(|e| matches!(e, NodeLogEvent::Finished { job, .. } if *job == id))
            {
                assert!(Instant::now() < deadline, "the node did not finish");
                std::thread::sleep(Duration::from_millis(20));
            }
            app.server.restart();
            let started = Instant::now();
            let api = app.api();
            while api.job(&id)["state"] != "succeeded" {
                std::thread::sleep(Duration::from_millis(10));
            }
            events_applied.push(started.elapsed().as_secs_f64());
        }
    }
    print_times(
        "orchestrator restart → pending events applied",
        2.0,
        &events_applied,
    );

    // nats-server killed and started again → the next job running.
    let mut flowing = Vec::new();
    let mut flowing_after_outage = Vec::new();
    {
        let mut app = default_timings()
            .steps(2)
            .nodes(&["n0"])
            .start()
            .expect("nats-server and ONNX Runtime");
        for round in 0..runs {
            app.nats_server().restart();
            let back = Instant::now();
            let api = app.api();
            let (id, _) = api.submit_prompt(95, 7200 + round as u64);
            api.events(&id).wait_kind("started");
            flowing.push(back.elapsed().as_secs_f64());
            api.events(&id).final_event();
        }
        // Down for a while: the clients' reconnect attempts have backed off to
        // `reconnect_max_delay_ms` by the time it is back.
        for round in 0..runs {
            app.nats_server().kill();
            std::thread::sleep(Duration::from_secs(5));
            app.nats_server().restart();
            let back = Instant::now();
            let api = app.api();
            let (id, _) = api.submit_prompt(95, 7300 + round as u64);
            api.events(&id).wait_kind("started");
            flowing_after_outage.push(back.elapsed().as_secs_f64());
            api.events(&id).final_event();
        }
    }
    print_times("nats-server back → next job running", 5.0, &flowing);
    print_times(
        "nats-server down 5 s, back → next job running",
        5.0,
        &flowing_after_outage,
    );
}
