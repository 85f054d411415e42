//! End-to-end tests of the distributed deployment: a real nats-server (JetStream on disk, random
//! port), the real `refrain` binary as orchestrator (`serve --config config/distributed.toml`)
//! and as inference nodes (`refrain node`), all on 127.0.0.1, driven through the DiffRhythm API
//! (`POST /generate`, `GET /output/<id>.wav`) as a client would.
//!
//! They cover the client flow and the faults the design must survive: two nodes sharing many
//! jobs (each exactly once, one at a time per node), a node killed mid-job, a nats-server
//! restart, an orchestrator killed while nodes work, a job a node rejects, and a job out of
//! deliveries. What a node did is read from its log (the worker loop's `job started` /
//! `job succeeded` lines). The tests run one at a time (they time fault windows on 2 cores) and
//! each has its own directory, server and ports. Without nats-server (tools/fetch-nats-server.sh)
//! or ONNX Runtime (tools/fetch-onnxruntime.sh) they are skipped with a message, except in CI
//! (`CI` set), where they fail.

mod support;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;
use support::*;

/// The tests of this file run one after another.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GENEROUS: Duration = Duration::from_secs(240);

/// All `job started` lines of some nodes: job → [(node, attempt)].
fn starts(nodes: &[(&str, &Proc)]) -> HashMap<String, Vec<(String, u32)>> {
    let mut out: HashMap<String, Vec<(String, u32)>> = HashMap::new();
    for (name, proc) in nodes {
        for (job, attempt) in one_at_a_time(name, &node_events(&proc.log_text())) {
            out.entry(job)
                .or_default()
                .push((name.to_string(), attempt));
        }
    }
    out
}

fn wav(done: Done, what: &str) -> Vec<u8> {
    match done {
        Done::Wav(bytes) => {
            assert!(
                bytes.len() > 44 && &bytes[..4] == b"RIFF",
                "{what}: not a WAV"
            );
            bytes
        }
        Done::Failed(body) => panic!("{what} failed: {body}"),
    }
}

#[test]
fn two_nodes_share_many_jobs_each_exactly_once() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let mut nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    let env = Env::new(2, 30);
    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let a = start_node(dir.path(), &nats.url(), "a", &env);
    let b = start_node(dir.path(), &nats.url(), "b", &env);
    let api = Api::new(&orchestrator.base);
    let nodes = api.wait_nodes(2, GENEROUS);
    assert!(
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["device"] == "cpu"),
        "{nodes}"
    );

    let jobs: Vec<(String, String)> = (0..16).map(|i| api.submit_prompt(95, i)).collect();
    for (id, url) in &jobs {
        wav(api.wait(url, GENEROUS), id);
    }

    // An edit job starting from an earlier result, and a job styled by an uploaded recording:
    // both inputs reach the nodes through the object store.
    let (first, _) = &jobs[0];
    let edit = Form::new()
        .text("audio_length", "95")
        .text("ref_prompt", "calm strings")
        .text("edit", "true")
        .text("ref_song", format!("{first}.wav"))
        .text("edit_segments", "[[10, 20]]");
    let (edit_id, edit_url) = api.submit(edit);
    let styled = Form::new().text("audio_length", "95").part(
        "ref_audio",
        Part::bytes(sine_wav(12.0))
            .file_name("style.wav")
            .mime_str("audio/wav")
            .unwrap(),
    );
    let (styled_id, styled_url) = api.submit(styled);
    wav(api.wait(&edit_url, GENEROUS), &edit_id);
    wav(api.wait(&styled_url, GENEROUS), &styled_id);

    let started = starts(&[("a", &a), ("b", &b)]);
    let all: Vec<&String> = jobs
        .iter()
        .map(|(id, _)| id)
        .chain([&edit_id, &styled_id])
        .collect();
    for id in &all {
        let runs = started.get(*id).cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "job {id} ran {runs:?}");
        assert_eq!(runs[0].1, 1, "job {id} was delivered again: {runs:?}");
    }
    assert_eq!(
        started.len(),
        all.len(),
        "nodes ran jobs nobody submitted: {started:?}"
    );
    let per_node = |n: &str| started.values().filter(|runs| runs[0].0 == n).count();
    assert!(
        per_node("a") > 0 && per_node("b") > 0,
        "both nodes must get work: a {} b {}",
        per_node("a"),
        per_node("b")
    );

    let metrics = api.metrics();
    assert!(metrics.contains("refrain_nodes 2"), "{metrics}");
    assert!(
        metrics.contains(&format!(
            "refrain_jobs_completed_total{{outcome=\"succeeded\"}} {}",
            all.len()
        )),
        "{metrics}"
    );
    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], all.len(), "{status}");
    nats.kill();
}

#[test]
fn killed_node_job_is_redelivered_and_progress_restarts() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    // A long job (285 s song, 1000 steps: several seconds of sampling) and a short ack_wait.
    let env = Env::new(1000, 4);
    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let api = Api::new(&orchestrator.base);
    let mut a = start_node(dir.path(), &nats.url(), "a", &env);
    api.wait_nodes(1, GENEROUS);
    let (id, url) = api.submit_prompt(285, 7);

    // Node a runs it: wait for real sampling progress of attempt 1.
    let deadline = Instant::now() + GENEROUS;
    let first_percent = loop {
        match api.poll(&url) {
            Err(body)
                if body["attempt"] == 1
                    && body["stage"] == "sampling"
                    && body["progress_percent"].as_u64() >= Some(10) =>
            {
                break body["progress_percent"].as_u64().unwrap();
            }
            Err(_) => {}
            Ok(done) => panic!("finished before the node was killed: {done:?}"),
        }
        assert!(
            Instant::now() < deadline,
            "no progress from node a:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let b = start_node(dir.path(), &nats.url(), "b", &env);
    api.wait_nodes(2, GENEROUS);
    a.kill();

    // The job comes back to node b after ack_wait, as attempt 2, and its progress starts over.
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + GENEROUS;
    let result = loop {
        match api.poll(&url) {
            Ok(done) => break done,
            Err(body) => {
                if let (Some(attempt), Some(percent)) =
                    (body["attempt"].as_u64(), body["progress_percent"].as_u64())
                {
                    samples.push((attempt, percent));
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "job not finished after the kill:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    wav(result, &id);
    let second: Vec<u64> = samples
        .iter()
        .filter(|(a, _)| *a == 2)
        .map(|(_, p)| *p)
        .collect();
    assert!(!second.is_empty(), "attempt 2 never showed: {samples:?}");
    assert!(
        second[0] < first_percent,
        "progress did not restart: attempt 1 was at {first_percent}%, attempt 2 began at {}%",
        second[0]
    );
    assert!(
        second.windows(2).all(|w| w[0] <= w[1]),
        "attempt 2 progress went back: {second:?}"
    );
    let first_two = samples.iter().position(|(a, _)| *a == 2).unwrap();
    assert!(
        samples[first_two..].iter().all(|(a, _)| *a == 2),
        "an older attempt showed again: {samples:?}"
    );
    assert!(samples.iter().all(|(a, _)| *a <= 2), "{samples:?}");

    let on_a: Vec<_> = node_events(&a.log_text());
    assert_eq!(
        on_a,
        vec![NodeLogEvent::Started {
            job: id.clone(),
            attempt: 1
        }],
        "node a"
    );
    let on_b = one_at_a_time("b", &node_events(&b.log_text()));
    assert_eq!(on_b, vec![(id.clone(), 2)], "node b");
}

#[test]
fn nats_restart_loses_and_duplicates_nothing() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let mut nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    let env = Env::new(200, 30);
    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let a = start_node(dir.path(), &nats.url(), "a", &env);
    let b = start_node(dir.path(), &nats.url(), "b", &env);
    let api = Api::new(&orchestrator.base);
    api.wait_nodes(2, GENEROUS);

    let jobs: Vec<(String, String)> = (0..8).map(|i| api.submit_prompt(95, 100 + i)).collect();
    // Restart the server while one job runs and others wait.
    let deadline = Instant::now() + GENEROUS;
    loop {
        let running = jobs
            .iter()
            .any(|(_, url)| matches!(api.poll(url), Err(b) if b["state"] == "running"));
        if running {
            break;
        }
        assert!(Instant::now() < deadline, "no job started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting = jobs
        .iter()
        .filter(|(_, url)| matches!(api.poll(url), Err(b) if b["state"] == "queued"))
        .count();
    assert!(
        waiting > 0,
        "every job already left the queue: the test did not restart with jobs waiting"
    );
    nats.restart();

    for (id, url) in &jobs {
        wav(api.wait(url, GENEROUS), id);
    }
    let started = starts(&[("a", &a), ("b", &b)]);
    for (id, _) in &jobs {
        let runs = started.get(id).cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "job {id} ran {runs:?}");
        assert_eq!(runs[0].1, 1, "job {id} was delivered again: {runs:?}");
    }
    assert_eq!(started.len(), jobs.len(), "{started:?}");
    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], jobs.len(), "{status}");
}

#[test]
fn results_arriving_while_the_orchestrator_is_down_are_recorded() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    let env = Env::new(200, 30);
    let mut orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let a = start_node(dir.path(), &nats.url(), "a", &env);
    let b = start_node(dir.path(), &nats.url(), "b", &env);
    let api = Api::new(&orchestrator.base);
    api.wait_nodes(2, GENEROUS);

    let jobs: Vec<(String, String)> = (0..6).map(|i| api.submit_prompt(95, 200 + i)).collect();
    let deadline = Instant::now() + GENEROUS;
    let running = loop {
        let running = jobs
            .iter()
            .filter(|(_, url)| matches!(api.poll(url), Err(b) if b["state"] == "running"))
            .count();
        if running > 0 {
            break running;
        }
        assert!(Instant::now() < deadline, "no job started");
        std::thread::sleep(Duration::from_millis(50));
    };
    orchestrator.proc.kill();

    // The nodes finish the jobs they run while the orchestrator is down (the jobs not yet
    // published wait in its backlog: it publishes one per live node plus queue.prefetch).
    let deadline = Instant::now() + GENEROUS;
    loop {
        let succeeded: usize = [&a, &b]
            .iter()
            .map(|p| {
                node_events(&p.log_text())
                    .iter()
                    .filter(
                        |e| matches!(e, NodeLogEvent::Finished { how, .. } if how == "succeeded"),
                    )
                    .count()
            })
            .sum();
        if succeeded >= running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nodes did not finish the jobs:\n{}\n{}",
            a.log_text(),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let api = Api::new(&orchestrator.base);
    for (id, url) in &jobs {
        wav(api.wait(url, GENEROUS), id);
    }
    let started = starts(&[("a", &a), ("b", &b)]);
    for (id, _) in &jobs {
        assert_eq!(
            started.get(id).map(Vec::len),
            Some(1),
            "job {id}: {started:?}"
        );
    }
    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], jobs.len(), "{status}");
}

#[test]
fn a_job_the_node_rejects_fails_with_its_message_once() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    let env = Env::new(2, 5);
    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let a = start_node(dir.path(), &nats.url(), "a", &env);
    let api = Api::new(&orchestrator.base);
    api.wait_nodes(1, GENEROUS);

    // A valid recording, but shorter than the song to generate: only the node finds out.
    let (id, url) = api.submit(rejected_at_run_time_form());
    let body = match api.wait(&url, GENEROUS) {
        Done::Failed(body) => body,
        Done::Wav(_) => panic!("a 5 s reference song cannot be edited into a 95 s song"),
    };
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("shorter than"), "the node's message: {body}");

    // Not delivered again (wait past ack_wait and a retry delay).
    std::thread::sleep(Duration::from_secs(8));
    let runs = one_at_a_time("a", &node_events(&a.log_text()));
    assert_eq!(runs, vec![(id.clone(), 1)], "node a ran: {runs:?}");
    assert!(matches!(api.poll(&url), Ok(Done::Failed(_))));
    let metrics = api.metrics();
    assert!(
        metrics.contains("refrain_jobs_completed_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("refrain_queue_depth 0"), "{metrics}");
}

#[test]
fn a_job_out_of_deliveries_ends_failed() {
    let _serial = serial();
    let Some(nats_bin) = prerequisites() else {
        return;
    };
    let dir = TestDir::new();
    let nats = NatsServer::start(&nats_bin, &dir.path().join("nats"));
    // One attempt allowed; the node running it dies.
    let env = Env::new(1000, 3).with("REFRAIN_INFERENCE__MAX_ATTEMPTS", "1");
    let orchestrator = Orchestrator::start(dir.path(), &nats.url(), &env);
    let api = Api::new(&orchestrator.base);
    let mut a = start_node(dir.path(), &nats.url(), "a", &env);
    api.wait_nodes(1, GENEROUS);
    let (id, url) = api.submit_prompt(285, 9);
    let deadline = Instant::now() + GENEROUS;
    while !matches!(api.poll(&url), Err(b) if b["state"] == "running") {
        assert!(
            Instant::now() < deadline,
            "the job did not start:\n{}",
            a.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = start_node(dir.path(), &nats.url(), "b", &env);
    api.wait_nodes(2, GENEROUS);
    a.kill();
    let body: Value = match api.wait(&url, GENEROUS) {
        Done::Failed(body) => body,
        Done::Wav(_) => panic!("job {id} ran again though one attempt was allowed"),
    };
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("gave up after 1 attempt"),
        "{body}"
    );
    assert!(
        node_events(&b.log_text()).is_empty(),
        "node b must not run it:\n{}",
        b.log_text()
    );
}
