//! End-to-end tests of the distributed deployment: a real nats-server (JetStream on disk, random
//! port), the real `refrain` binary as orchestrator (`serve --config config/distributed.toml`)
//! and as inference nodes (`refrain node`), all on 127.0.0.1, driven through the DiffRhythm API
//! (`POST /generate`, `GET /output/<id>.wav`) as a client would.
//!
//! They cover the client flow and the faults the design must survive: two nodes sharing many
//! jobs (each exactly once, one at a time per node), a node killed mid-job, a nats-server
//! restart, an orchestrator killed while nodes work (and one killed holding events it had not
//! acknowledged), a job a node rejects, a killed node using up no attempt, and the guard
//! against a job whose nodes keep dying. Jobs are followed on their event streams (`GET /api/v1/jobs/{id}/events`); what
//! no job's events tell — which node ran a job, one job at a time per node, what the nodes did
//! while the orchestrator was down — is read from the nodes' logs (the worker loop's
//! `job started` / `job succeeded` lines). The tests run one at a time (they time fault windows
//! on 2 cores) and each has its own directory, server and ports. Without nats-server (tools/fetch-nats-server.sh)
//! or ONNX Runtime (tools/fetch-onnxruntime.sh) they are skipped with a message, except in CI
//! (`CI` set), where they fail.

mod support;

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
    let Some(mut app) = TestApp::nats().steps(2).nodes(&["a", "b"]).start() else {
        return;
    };
    let api = app.api();
    let nodes = app.wait_nodes(2);
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

    let started = app.node_starts();
    let all: Vec<&String> = jobs
        .iter()
        .map(|(id, _)| id)
        .chain([&edit_id, &styled_id])
        .collect();
    for id in &all {
        let runs = started.get(*id).cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "job {id} ran {runs:?}");
        assert_eq!(runs[0].1, 1, "job {id} was delivered again: {runs:?}");
        assert_eq!(api.started_attempts(id), [1], "job {id}");
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
    app.nats_server().kill();
}

#[test]
fn killed_node_job_is_redelivered_and_progress_restarts() {
    let _serial = serial();
    // A long job (285 s song, 1000 steps: several seconds of sampling) and a short ack_wait.
    let Some(mut app) = TestApp::nats()
        .steps(1000)
        .ack_wait(4)
        .nodes(&["a"])
        .start()
    else {
        return;
    };
    let api = app.api();
    let (id, url) = api.submit_prompt(285, 7);

    // Node a runs it: wait for real sampling progress of attempt 1.
    let mut events = api.events(&id);
    let progress = events.wait_for("sampling progress of attempt 1 at 10 %", |e| {
        e.kind == "progress"
            && e.attempt() == 1
            && e.stage() == Some("sampling")
            && e.percent() >= Some(10.0)
    });
    let first_percent = progress.percent().unwrap();
    let killed_at = progress.seq;
    // Killed before the other node starts, so that a slow start cannot let `a` finish first;
    // the job waits in the stream for `b`.
    app.node_mut("a").kill();
    app.add_node("b");

    // The job comes back to node b after ack_wait as the same attempt (a kill is not the
    // job's fault) with one interruption, and its progress starts over.
    let events = events.read_all();
    let last = events.last().unwrap();
    assert_eq!(last.kind, "succeeded", "{:?}", last.data);
    wav(api.wait(&url, GENEROUS), &id);
    let after: Vec<&JobEvent> = events.iter().filter(|e| e.seq > killed_at).collect();
    let requeued = after
        .iter()
        .position(|e| e.kind == "requeued")
        .unwrap_or_else(|| panic!("no requeued event after the kill: {after:?}"));
    let second: Vec<f64> = after[requeued..]
        .iter()
        .filter(|e| e.kind == "progress")
        .filter_map(|e| e.percent())
        .collect();
    assert!(!second.is_empty(), "the second run never showed: {after:?}");
    assert!(
        second[0] < first_percent,
        "progress did not restart: the first run was at {first_percent}%, the second began at {}%",
        second[0]
    );
    assert!(
        second.windows(2).all(|w| w[0] <= w[1]),
        "the second run's progress went back: {second:?}"
    );
    assert!(
        after.iter().all(|e| e.attempt() == 1),
        "a kill used up an attempt: {after:?}"
    );
    assert_eq!(api.started_attempts(&id), [1, 1]);
    let job = api.job(&id);
    assert_eq!(job["attempt"], 1, "{job}");
    assert_eq!(job["interruptions"], 1, "{job}");

    // Which node ran which run: only the nodes' logs tell.
    assert_eq!(
        app.node("a").log_events(),
        vec![NodeLogEvent::Started {
            job: id.clone(),
            attempt: 1
        }],
        "node a"
    );
    let on_b = one_at_a_time("b", &app.node("b").log_events());
    assert_eq!(on_b, vec![(id.clone(), 1)], "node b");
}

#[test]
fn nats_restart_loses_and_duplicates_nothing() {
    let _serial = serial();
    let Some(mut app) = TestApp::nats().steps(200).nodes(&["a", "b"]).start() else {
        return;
    };
    let api = app.api();

    let jobs: Vec<(String, String)> = (0..8).map(|i| api.submit_prompt(95, 100 + i)).collect();
    // Restart the server while one job runs and others wait.
    api.events(&jobs[0].0).wait_kind("started");
    let waiting = jobs
        .iter()
        .filter(|(_, url)| matches!(api.poll(url), Err(b) if b["state"] == "queued"))
        .count();
    assert!(
        waiting > 0,
        "every job already left the queue: the test did not restart with jobs waiting"
    );
    app.nats_server().restart();

    for (id, url) in &jobs {
        assert_eq!(api.events(id).final_event().kind, "succeeded", "job {id}");
        wav(api.wait(url, GENEROUS), id);
    }
    let started = app.node_starts();
    for (id, _) in &jobs {
        let runs = started.get(id).cloned().unwrap_or_default();
        assert_eq!(runs.len(), 1, "job {id} ran {runs:?}");
        assert_eq!(runs[0].1, 1, "job {id} was delivered again: {runs:?}");
        assert_eq!(api.started_attempts(id), [1], "job {id}");
    }
    assert_eq!(started.len(), jobs.len(), "{started:?}");
    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], jobs.len(), "{status}");
}

#[test]
fn results_arriving_while_the_orchestrator_is_down_are_recorded() {
    let _serial = serial();
    let Some(mut app) = TestApp::nats().steps(200).nodes(&["a", "b"]).start() else {
        return;
    };
    let api = app.api();

    let jobs: Vec<(String, String)> = (0..6).map(|i| api.submit_prompt(95, 200 + i)).collect();
    api.events(&jobs[0].0).wait_kind("started");
    // The jobs running now are finished by the nodes while the orchestrator is down; the
    // others wait in its backlog (it publishes one per live node plus queue.prefetch). A job
    // that starts between this count and the kill only adds to what the nodes finish.
    let running = jobs
        .iter()
        .filter(|(id, _)| api.job(id)["state"] == "running")
        .count()
        .max(1);
    app.server.kill();

    // No event stream to follow while the orchestrator is down: only the nodes' logs.
    let deadline = Instant::now() + GENEROUS;
    loop {
        let succeeded: usize = app
            .nodes()
            .iter()
            .map(|node| {
                node.log_events()
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
            app.node("a").log_text(),
            app.node("b").log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The orchestrator again, on the same data directory: it records what the nodes did.
    app.server.restart();
    let api = app.api();
    for (id, url) in &jobs {
        assert_eq!(api.events(id).final_event().kind, "succeeded", "job {id}");
        wav(api.wait(url, GENEROUS), id);
    }
    let started = app.node_starts();
    for (id, _) in &jobs {
        assert_eq!(
            started.get(id).map(Vec::len),
            Some(1),
            "job {id}: {started:?}"
        );
        assert_eq!(api.started_attempts(id), [1], "job {id}");
    }
    let status = api.get_json("/status");
    assert_eq!(status["jobs"]["succeeded"], jobs.len(), "{status}");
}

/// Node events that an orchestrator had taken from its consumer but not acknowledged when it
/// died are applied as soon as it starts again, not after the consumer's ack wait (here ten
/// minutes, far longer than this test waits).
#[test]
fn events_taken_by_a_dead_orchestrator_are_applied_when_it_starts_again() {
    let _serial = serial();
    let Some(mut app) = TestApp::nats()
        .steps(2)
        .env("REFRAIN_NATS__EVENTS_ACK_WAIT_SECONDS", 600)
        .nodes(&["a"])
        .start()
    else {
        return;
    };
    let api = app.api();
    let (id, url) = api.submit_prompt(95, 300);
    api.events(&id).wait_kind("started");
    app.server.kill();
    // The node finishes the job with the orchestrator down.
    let deadline = Instant::now() + GENEROUS;
    while !app.node("a").log_events().iter().any(
        |e| matches!(e, NodeLogEvent::Finished { job, how } if *job == id && how == "succeeded"),
    ) {
        assert!(Instant::now() < deadline, "{}", app.node("a").log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // What the dead orchestrator would have done: take the pending events, never ack them.
    let taken = take_events_without_ack(&app.nats_server().url());
    assert!(taken > 0, "no pending node event to take");

    app.server.restart();
    let api = app.api();
    assert_eq!(api.events(&id).final_event().kind, "succeeded");
    wav(api.wait(&url, GENEROUS), &id);
}

/// Pulls the pending messages of the orchestrator's events consumer (waiting for the first)
/// and drops them unacknowledged, as an orchestrator killed while applying them leaves them;
/// their count.
fn take_events_without_ack(url: &str) -> usize {
    use futures_util::StreamExt;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = async_nats::connect(url).await.expect("connect to NATS");
        let js = async_nats::jetstream::new(client);
        let stream = js
            .get_stream(refrain_nats::wire::EVENTS_STREAM)
            .await
            .expect("the events stream");
        let consumer: async_nats::jetstream::consumer::PullConsumer = stream
            .get_consumer(refrain_nats::wire::EVENTS_CONSUMER)
            .await
            .expect("the orchestrator's events consumer");
        // The node logs the job's end before it has uploaded the result and published the
        // event: pull until something came (or the deadline), not once.
        let deadline = Instant::now() + GENEROUS;
        let mut taken = 0;
        while taken == 0 && Instant::now() < deadline {
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_secs(2))
                .messages()
                .await
                .expect("pull events");
            while let Some(message) = batch.next().await {
                message.expect("an event");
                taken += 1;
            }
        }
        taken
    })
}

#[test]
fn a_job_the_node_rejects_fails_with_its_message_once() {
    let _serial = serial();
    let Some(app) = TestApp::nats().steps(2).ack_wait(5).nodes(&["a"]).start() else {
        return;
    };
    let api = app.api();

    // A valid recording, but shorter than the song to generate: only the node finds out.
    let (id, url) = api.submit(rejected_at_run_time_form());
    let failed = api.events(&id).final_event();
    assert_eq!(failed.kind, "failed", "{:?}", failed.data);
    assert!(
        failed.data["error"]
            .as_str()
            .is_some_and(|e| e.contains("shorter than")),
        "{:?}",
        failed.data
    );
    let kinds = api.history_kinds(&id);
    assert_eq!(api.started_attempts(&id), [1], "{kinds:?}");
    assert!(!kinds.iter().any(|k| k == "retrying"), "{kinds:?}");
    let body = match api.wait(&url, GENEROUS) {
        Done::Failed(body) => body,
        Done::Wav(_) => panic!("a 5 s reference song cannot be edited into a 95 s song"),
    };
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("shorter than"), "the node's message: {body}");

    // Not delivered again to the node (wait past ack_wait and a retry delay): the job's events
    // end with `failed`, so only the node's log could show a redelivery.
    std::thread::sleep(Duration::from_secs(8));
    let runs = one_at_a_time("a", &app.node("a").log_events());
    assert_eq!(runs, vec![(id.clone(), 1)], "node a ran: {runs:?}");
    assert!(matches!(api.poll(&url), Ok(Done::Failed(_))));
    let metrics = api.metrics();
    assert!(
        metrics.contains("refrain_jobs_completed_total{outcome=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("refrain_queue_depth 0"), "{metrics}");
}

/// Submits a long job, waits until node `a` runs it, kills `a`, then starts node `b` (in that
/// order, so that a slow start cannot let `a` finish first): the job, its download URL and its
/// event stream.
fn kill_the_node_running_a_long_job(app: &mut TestApp) -> (String, String, EventStream) {
    let api = app.api();
    let (id, url) = api.submit_prompt(285, 9);
    let mut events = api.events(&id);
    events.wait_kind("started");
    app.node_mut("a").kill();
    app.add_node("b");
    (id, url, events)
}

/// A node killed under a job does not use up its attempts (here only one is allowed): the job
/// runs again on the other node and succeeds.
#[test]
fn a_killed_node_uses_up_no_attempt() {
    let _serial = serial();
    let Some(mut app) = TestApp::nats()
        .steps(1000)
        .ack_wait(3)
        .max_attempts(1)
        .nodes(&["a"])
        .start()
    else {
        return;
    };
    let api = app.api();
    let (id, url, events) = kill_the_node_running_a_long_job(&mut app);
    let done = events.final_event();
    assert_eq!(done.kind, "succeeded", "{:?}", done.data);
    wav(api.wait(&url, GENEROUS), &id);
    assert_eq!(api.started_attempts(&id), [1, 1]);
    assert_eq!(
        one_at_a_time("b", &app.node("b").log_events()),
        vec![(id.clone(), 1)]
    );
}

/// The guard against a job that kills every node it runs on: with
/// `inference.max_interruptions = 1`, the first node lost under the job ends it `failed` with
/// a message saying why, and no other node runs it.
#[test]
fn a_job_whose_nodes_keep_dying_ends_failed() {
    let _serial = serial();
    let Some(mut app) = TestApp::nats()
        .steps(1000)
        .ack_wait(3)
        .env("REFRAIN_INFERENCE__MAX_INTERRUPTIONS", 1)
        .nodes(&["a"])
        .start()
    else {
        return;
    };
    let api = app.api();
    let (id, url, events) = kill_the_node_running_a_long_job(&mut app);
    let failed = events.final_event();
    assert_eq!(failed.kind, "failed", "{:?}", failed.data);
    assert_eq!(api.started_attempts(&id), [1]);
    let body: Value = match api.wait(&url, GENEROUS) {
        Done::Failed(body) => body,
        Done::Wav(_) => panic!("job {id} ran again though its node died under it"),
    };
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("suspected of crashing them"),
        "{body}"
    );
    let b = app.node("b");
    assert!(
        b.log_events().is_empty(),
        "node b must not run it:\n{}",
        b.log_text()
    );
}
