//! The job core's order and cancel on the NATS deployment, end to end: a real nats-server
//! (JetStream on disk, random port), the orchestrator in this test process
//! (`support::Orchestrator`: `service::start` with `queue.backend = "nats"` and no in-process
//! nodes) and `refrain node` processes, all on 127.0.0.1.
//!
//! The orchestrator runs in this process because owners and priorities come from the front
//! ends that know them — bots, the scheduler, keyed APIs — which call `App::submit` with a
//! `JobMeta`; the DiffRhythm API's jobs are anonymous and interactive, and it is used for those.
//! Jobs are observed through the HTTP API only: each job's event stream
//! (`GET /api/v1/jobs/{id}/events`), `GET /api/v1/jobs/{id}` and `GET /api/v1/nodes`. The order
//! jobs ran in on a node is the order of their `started` events.
//!
//! Skipped with a message without nats-server (tools/fetch-nats-server.sh) or ONNX Runtime
//! (tools/fetch-onnxruntime.sh), except in CI. The tests run one after another (2 cores).

mod support;

use std::io::{BufRead, BufReader};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use protocol::{JobId, Owner, Source};
use refrain_nats::jobs::JobConsumer;
use refrain_nats::{JetStream, Role, Settings};
use refrain_orchestrator::config::NatsConfig;
use serde_json::Value;
use support::*;
use tokio_util::sync::CancellationToken;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GENEROUS: Duration = Duration::from_secs(300);

/// A job's whole event stream (it ends after the final event), as the events' JSON.
fn events(api: &Api, id: &str) -> Vec<Value> {
    events_until(api, id, |_| {})
}

/// A job's whole event stream; `on_event` sees each event as it arrives.
fn events_until(api: &Api, id: &str, mut on_event: impl FnMut(&Value)) -> Vec<Value> {
    let response = api
        .http
        .get(format!("{}/api/v1/jobs/{id}/events", api.base))
        .timeout(GENEROUS)
        .send()
        .expect("GET events");
    assert_eq!(response.status(), 200, "events of {id}");
    let mut out = Vec::new();
    for line in BufReader::new(response).lines() {
        let line = line.expect("event stream");
        if let Some(data) = line.strip_prefix("data:") {
            let event: Value = serde_json::from_str(data.trim_start()).expect("event JSON");
            on_event(&event);
            out.push(event);
        }
    }
    out
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("?"))
        .collect()
}

/// Waits for every job to end, checks each succeeded after exactly one start, and returns the
/// jobs in the order they started.
fn run_order(api: &Api, jobs: &[String]) -> Vec<String> {
    let mut started: Vec<(u64, String)> = jobs
        .iter()
        .map(|id| {
            let all = events(api, id);
            let k = kinds(&all);
            assert_eq!(k.last(), Some(&"succeeded"), "job {id}: {k:?}");
            let starts: Vec<&Value> = all.iter().filter(|e| e["kind"] == "started").collect();
            assert_eq!(starts.len(), 1, "job {id} started more than once: {k:?}");
            (starts[0]["at_ms"].as_u64().expect("at_ms"), id.clone())
        })
        .collect();
    started.sort();
    assert!(
        started.windows(2).all(|w| w[0].0 < w[1].0),
        "one node runs one job at a time: {started:?}"
    );
    started.into_iter().map(|(_, id)| id).collect()
}

fn position(api: &Api, id: &str) -> Value {
    let job = api.get_json(&format!("/api/v1/jobs/{id}"));
    assert_eq!(job["state"], "queued", "{job}");
    job["queue_position"].clone()
}

#[test]
fn one_owners_many_jobs_do_not_starve_anothers_single_job() {
    let _serial = serial();
    let Some(mut fabric) = NatsFabric::start() else {
        return;
    };
    // No prefetch: a job is published only when the node can take it.
    let orchestrator = Orchestrator::start(&fabric, 0);
    let api = &orchestrator.api;
    let (alice, bob) = (Owner::new("key", "alice"), Owner::new("key", "bob"));

    // Everything is queued before any node exists, so the order does not depend on timing.
    let alices: Vec<String> = (0..6)
        .map(|n| orchestrator.submit(Source::TaskApi, &alice, 95, 2, n))
        .collect();
    let bobs = orchestrator.submit(Source::TaskApi, &bob, 95, 2, 100);
    assert_eq!(position(api, &alices[0]), 0);
    assert_eq!(
        position(api, &bobs),
        1,
        "bob's job waits for one of alice's, not six"
    );
    assert_eq!(position(api, &alices[1]), 2);

    fabric.add_node("a", Some(2));
    let mut all = alices.clone();
    all.push(bobs.clone());
    let order = run_order(api, &all);
    let mut expected = vec![alices[0].clone(), bobs];
    expected.extend(alices[1..].iter().cloned());
    assert_eq!(order, expected);
}

#[test]
fn an_interactive_job_goes_ahead_of_queued_batch_jobs() {
    let _serial = serial();
    let Some(mut fabric) = NatsFabric::start() else {
        return;
    };
    let orchestrator = Orchestrator::start(&fabric, 0);
    let api = &orchestrator.api;

    // A schedule's batch first, then a person's job through the DiffRhythm API.
    let nightly = Owner::new("schedule", "nightly");
    let batch: Vec<String> = (0..4)
        .map(|n| orchestrator.submit(Source::Schedule, &nightly, 95, 2, n))
        .collect();
    let (person, _) = api.submit_prompt(95, 100);
    let job = api.get_json(&format!("/api/v1/jobs/{person}"));
    assert_eq!(
        (job["priority"].as_str(), job["source"].as_str()),
        (Some("interactive"), Some("diff_rhythm_api")),
        "{job}"
    );
    assert_eq!(position(api, &person), 0);
    assert_eq!(position(api, &batch[0]), 1);

    fabric.add_node("a", Some(2));
    let mut all = batch.clone();
    all.push(person.clone());
    let order = run_order(api, &all);
    let mut expected = vec![person];
    expected.extend(batch);
    assert_eq!(order, expected);
}

/// Whether the JetStream work queue holds a message of the job.
fn in_stream(orchestrator: &Orchestrator, nats_url: &str, id: &str) -> bool {
    let id = JobId::parse(id).expect("job id");
    orchestrator.block_on(async {
        let nats = NatsConfig {
            url: nats_url.to_string(),
            ..NatsConfig::default()
        };
        let client = refrain_nats::connect(&nats, "test").await.expect("connect");
        let settings = Settings {
            nats,
            max_attempts: 3,
            max_interruptions: 10,
        };
        let js = JetStream::setup(client, settings, Role::Node, &CancellationToken::new())
            .await
            .expect("JetStream");
        JobConsumer::new(js, Role::Node)
            .holds(&id)
            .await
            .expect("stream look-up")
    })
}

#[test]
fn cancel_of_a_queued_and_a_running_job_ends_cancelled_and_is_not_retried() {
    let _serial = serial();
    let Some(mut fabric) = NatsFabric::start() else {
        return;
    };
    // The default prefetch: one job waits in the stream behind the running one.
    let orchestrator = Orchestrator::start(&fabric, 1);
    let api = &orchestrator.api;
    fabric.add_node("a", None);
    api.wait_nodes(1, GENEROUS);
    let owner = Owner::new("key", "carol");
    // A long job (a 285 s song, 1000 steps: seconds of sampling, more than the test needs).
    let running = orchestrator.submit(Source::TaskApi, &owner, 285, 1000, 1);
    let published = orchestrator.submit(Source::TaskApi, &owner, 95, 2, 2);
    let backlog = orchestrator.submit(Source::TaskApi, &owner, 95, 2, 3);

    let delete = |id: &str| {
        api.http
            .delete(format!("{}/api/v1/jobs/{id}", api.base))
            .send()
            .expect("DELETE")
            .status()
    };
    let mut cancelled_running = false;
    let running_events = events_until(api, &running, |event| {
        if cancelled_running || event["kind"] != "progress" || event["stage"] != "sampling" {
            return;
        }
        // The long job runs on the node. The next job waits in the stream (one live node plus
        // the prefetch of one), the third in the orchestrator's backlog.
        let deadline = Instant::now() + GENEROUS;
        while !in_stream(&orchestrator, &fabric.url(), &published) {
            assert!(
                Instant::now() < deadline,
                "the second job was never published"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!in_stream(&orchestrator, &fabric.url(), &backlog));
        for queued in [&published, &backlog] {
            assert_eq!(delete(queued), 200);
            assert_eq!(kinds(&events(api, queued)), ["queued", "cancelled"]);
        }
        assert!(!in_stream(&orchestrator, &fabric.url(), &published));
        assert_eq!(delete(&running), 200);
        cancelled_running = true;
    });
    assert!(
        cancelled_running,
        "never saw the long job sampling: {running_events:?}"
    );
    let last = running_events.last().expect("events");
    assert_eq!(
        (last["kind"].as_str(), last["attempt"].as_u64()),
        (Some("cancelled"), Some(1))
    );
    assert_eq!(delete(&running), 409, "cancelled is final");

    // The node stops the cancelled job and takes the next one: a new job, not a cancelled one.
    let next = orchestrator.submit(Source::TaskApi, &owner, 95, 2, 4);
    let k = kinds(&events(api, &next)).join(",");
    assert!(
        k.starts_with("queued,started,") && k.ends_with(",succeeded"),
        "{k}"
    );
    let deadline = Instant::now() + GENEROUS;
    let node = loop {
        let nodes = api.get_json("/api/v1/nodes");
        let node = nodes["nodes"][0].clone();
        if node["state"] == "idle" && node["jobs_done"].as_u64() >= Some(2) {
            break node;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not finish: {nodes}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        node["jobs_done"], 2,
        "the node ran the cancelled job and the new one only: {node}"
    );
    // Nothing ran again: the running job started once, the queued ones never.
    let starts = |id: &str| {
        kinds(&events(api, id))
            .iter()
            .filter(|k| **k == "started")
            .count()
    };
    assert_eq!(
        (starts(&running), starts(&published), starts(&backlog)),
        (1, 0, 0)
    );
    for id in [&running, &published, &backlog] {
        let job = api.get_json(&format!("/api/v1/jobs/{id}"));
        assert_eq!(
            (job["state"].as_str(), job["attempt"].as_u64()),
            (Some("cancelled"), Some(1)),
            "{job}"
        );
    }
    assert!(api.metrics().contains("refrain_queue_depth 0"));
}
