//! The job core end to end on the embedded deployment (`refrain serve` as a child process):
//! the per-job event stream (`GET /api/v1/jobs/{id}/events`, Server-Sent Events) and its resume
//! across a `kill -9` of the server, and cancel (`DELETE /api/v1/jobs/{id}`) of a queued and of
//! a running job. Jobs are observed through the event stream, never through logs.
//!
//! Skipped with a message without ONNX Runtime, except in CI.

mod support;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::Form;
use serde_json::Value;
use support::*;

const STEPS: &str = "REFRAIN_INFERENCE__STEPS";

fn form(seconds: u32, seed: u64) -> Form {
    Form::new()
        .text("ref_prompt", "warm synthwave")
        .text("lrc", "[00:02.00]we were here before\n")
        .text("audio_length", seconds.to_string())
        .text("seed", seed.to_string())
}

/// One SSE event: (id, event name, data).
type Sse = (u64, String, Value);

/// Reads the whole event stream of `id` (it ends after the final event), resuming after
/// `after` when given. `on_event` sees each event as it arrives.
fn read_events(
    api: &Api,
    id: &str,
    after: Option<u64>,
    mut on_event: impl FnMut(&Sse),
) -> Vec<Sse> {
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap();
    let mut request = http.get(format!("{}/api/v1/jobs/{id}/events", api.base));
    if let Some(after) = after {
        request = request.header("Last-Event-ID", after.to_string());
    }
    let response = request.send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut events = Vec::new();
    let (mut seq, mut name, mut data) = (None, String::new(), String::new());
    for line in BufReader::new(response).lines() {
        let line = line.unwrap();
        if line.is_empty() {
            if let Some(s) = seq.take() {
                let event = (
                    s,
                    std::mem::take(&mut name),
                    serde_json::from_str(&data).unwrap(),
                );
                on_event(&event);
                events.push(event);
            }
            data.clear();
        } else if let Some(v) = line.strip_prefix("id:") {
            seq = Some(v.trim().parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event:") {
            name = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.trim_start());
        }
    }
    events
}

fn assert_contiguous(events: &[Sse], from: u64) {
    for (i, (seq, name, data)) in events.iter().enumerate() {
        assert_eq!(*seq, from + i as u64, "{events:?}");
        assert_eq!(data["seq"].as_u64(), Some(*seq));
        assert_eq!(data["kind"].as_str(), Some(name.as_str()));
    }
}

#[test]
fn events_stream_in_order_and_resume_after_a_restart() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    let mut server = Server::start(dir.path(), &[(STEPS, "200")]);
    let (id, url) = server.api().submit(form(130, 3));
    let events = read_events(&server.api(), &id, None, |_| {});
    assert_contiguous(&events, 1);
    let kinds: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"queued"));
    assert_eq!(kinds.get(1), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"succeeded"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|k| **k == "progress").count() >= 2,
        "{kinds:?}"
    );
    let done = &events.last().unwrap().2;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["result"]["files"][0]["file"], format!("{id}.wav"));
    // Progress is ordered within the attempt.
    let percents: Vec<f64> = events
        .iter()
        .filter_map(|e| e.2["percent"].as_f64())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    // kill -9, start again: a subscriber that saw up to seq 2 gets exactly the rest.
    server.restart();
    let rest = read_events(&server.api(), &id, Some(2), |_| {});
    assert_eq!(rest, events[2..].to_vec());
    // The seed-000 URL still serves the song.
    assert!(server.api().poll(&url).is_ok());
}

#[test]
#[ignore = "the second job starts before the DELETE: STEPS=3000 does not keep the first job busy; to be fixed"]
fn cancel_a_queued_and_a_running_job() {
    if !ort_available() {
        return;
    }
    let dir = TestDir::new();
    // About ten seconds of sampling for a 285 s song on the test bundle.
    let server = Server::start(dir.path(), &[(STEPS, "3000")]);
    let api = server.api();
    let (running, _) = api.submit(form(285, 1));
    let (queued, queued_url) = api.submit(form(285, 2));
    let http = &api.http;

    // The queued job is cancelled at once and never starts.
    let response = http
        .delete(format!("{}/api/v1/jobs/{queued}", api.base))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let kinds: Vec<String> = read_events(&api, &queued, None, |_| {})
        .into_iter()
        .map(|e| e.1)
        .collect();
    assert_eq!(kinds, ["queued", "cancelled"]);
    let status = api.get_json(&queued_url);
    assert_eq!(status["status"], "failed");
    assert_eq!(status["state"], "cancelled");

    // The running job stops between two steps once cancelled.
    let started = Instant::now();
    let mut cancelled_at = None;
    let events = read_events(&api, &running, None, |(_, name, data)| {
        if name == "progress" && data["stage"] == "sampling" && cancelled_at.is_none() {
            let r = reqwest::blocking::Client::new()
                .delete(format!(
                    "{}/api/v1/jobs/{}",
                    api.base,
                    data["job"].as_str().unwrap()
                ))
                .send()
                .unwrap();
            assert_eq!(r.status(), 200);
            cancelled_at = Some(Instant::now());
        }
    });
    assert!(cancelled_at.is_some(), "never saw a sampling step");
    let last = events.last().unwrap();
    assert_eq!(last.1, "cancelled");
    assert_eq!(last.2["attempt"], 1);
    // Cancelling again is a conflict; the record stays cancelled and is never retried.
    let again = http
        .delete(format!("{}/api/v1/jobs/{running}", api.base))
        .send()
        .unwrap();
    assert_eq!(again.status(), 409);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let job = api.get_json(&format!("/api/v1/jobs/{running}"));
        assert_eq!(job["state"], "cancelled");
        assert_eq!(job["attempt"], 1);
        // The node is idle again (the generation stopped, it did not run to the end).
        let nodes = api.get_json("/api/v1/nodes");
        if nodes["nodes"][0]["state"] == "idle" {
            break;
        }
        assert!(Instant::now() < deadline, "the node kept running: {nodes}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(started.elapsed() < Duration::from_secs(300));
    assert!(!server
        .data_dir()
        .join(format!("outputs/{running}.wav"))
        .exists());
}
