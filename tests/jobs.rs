//! The job core end to end on the embedded deployment (`refrain serve` as a child process):
//! the per-job event stream (`GET /api/v1/jobs/{id}/events`, Server-Sent Events) and its resume
//! across a `kill -9` of the server, and cancel (`DELETE /api/v1/jobs/{id}`) of a queued and of
//! a running job. Jobs are observed through the event stream; a log is read only for what a
//! node did, which no job's events tell (that it stopped a cancelled generation).
//!
//! Skipped with a message without ONNX Runtime, except in CI.

mod support;

use reqwest::blocking::multipart::Form;
use support::*;

fn form(seconds: u32, seed: u64) -> Form {
    Form::new()
        .text("ref_prompt", "warm synthwave")
        .text("lrc", "[00:02.00]we were here before\n")
        .text("audio_length", seconds.to_string())
        .text("seed", seed.to_string())
}

fn assert_contiguous(events: &[JobEvent], from: u64) {
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event.seq, from + i as u64, "{events:?}");
        assert_eq!(event.data["seq"].as_u64(), Some(event.seq));
        assert_eq!(event.data["kind"].as_str(), Some(event.kind.as_str()));
    }
}

fn kinds(events: &[JobEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn events_stream_in_order_and_resume_after_a_restart() {
    let Some(mut app) = TestApp::embedded().steps(200).start() else {
        return;
    };
    let (id, url) = app.api().submit(form(130, 3));
    let events = app.events(&id).read_all();
    assert_contiguous(&events, 1);
    let kinds = kinds(&events);
    assert_eq!(kinds.first(), Some(&"queued"));
    assert_eq!(kinds.get(1), Some(&"started"));
    assert_eq!(kinds.last(), Some(&"succeeded"), "{kinds:?}");
    assert!(
        kinds.iter().filter(|k| **k == "progress").count() >= 2,
        "{kinds:?}"
    );
    let done = &events.last().unwrap().data;
    assert_eq!(done["state"], "succeeded");
    assert_eq!(done["result"]["files"][0]["file"], format!("{id}.wav"));
    // Progress is ordered within the attempt.
    let percents: Vec<f64> = events.iter().filter_map(JobEvent::percent).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");

    // kill -9, start again: a subscriber that saw up to seq 2 gets exactly the rest.
    app.server.restart();
    let rest = app.api().events_after(&id, 2).read_all();
    assert_eq!(rest, events[2..].to_vec());
    // The seed-000 URL still serves the song.
    assert!(app.api().poll(&url).is_ok());
}

/// One in-process node: while job 1 runs, job 2 can only wait. 1000 sampler steps (the most a
/// job may take) of a 285 s song keep job 1 sampling for seconds, far longer than the few
/// requests between its first sampling step and its cancel.
#[test]
fn cancel_a_queued_and_a_running_job() {
    let Some(app) = TestApp::embedded().steps(1000).start() else {
        return;
    };
    let api = app.api();
    let (running, _) = api.submit(form(285, 1));
    let mut running_events = api.events(&running);
    let started = running_events.wait_kind("started");
    assert_eq!(started.attempt(), 1);
    running_events.wait_sampling(1);

    // The node is busy with job 1: job 2 waits in the queue.
    let (queued, queued_url) = api.submit(form(285, 2));
    let mut queued_events = api.events(&queued);
    let first = queued_events.next_event().expect("a first event");
    assert_eq!(first.kind, "queued");
    let job = api.job(&queued);
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(job["queue_position"], 0, "{job}");

    // The queued job is cancelled at once and never starts.
    let (status, record) = api.cancel(&queued);
    assert_eq!(status, 200, "{record}");
    assert_eq!(record["state"], "cancelled", "{record}");
    let last = queued_events.final_event();
    assert_eq!(last.kind, "cancelled");
    assert_eq!(api.history_kinds(&queued), ["queued", "cancelled"]);
    let status = api.get_json(&queued_url);
    assert_eq!(status["status"], "cancelled");
    assert_eq!(status["state"], "cancelled");

    // The running job stops between two steps once cancelled.
    let (status, record) = api.cancel(&running);
    assert_eq!(
        status, 200,
        "job 1 must still run when cancelled (did it finish first?): {record}"
    );
    let last = running_events.final_event();
    assert_eq!(last.kind, "cancelled", "{:?}", api.history_kinds(&running));
    assert_eq!(last.attempt(), 1);
    // Cancelling again is a conflict.
    let (again, _) = api.cancel(&running);
    assert_eq!(again, 409);

    // The node is free: a third job runs to success.
    let (third, third_url) = api.submit(form(95, 3));
    assert_eq!(api.events(&third).final_event().kind, "succeeded");
    assert!(matches!(api.poll(&third_url), Ok(Done::Wav(_))));

    // Neither cancelled job ran again: job 1 started once and was not retried, job 2 never
    // started; job 1 left no result.
    let history = api.history(&running);
    let kinds = kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| **k == "started").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        !kinds.iter().any(|k| matches!(*k, "retrying" | "requeued")),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"cancelled"), "{kinds:?}");
    let job = api.job(&running);
    assert_eq!(job["state"], "cancelled", "{job}");
    assert_eq!(job["attempt"], 1, "{job}");
    assert_eq!(api.history_kinds(&queued), ["queued", "cancelled"]);
    // What the node did, which no job's events tell: it stopped job 1 between two steps (it
    // did not run it to the end), then ran the third job; it never ran job 2.
    let log = node_events(&app.server.proc.log_text());
    let runs = one_at_a_time("cpu", &log);
    assert_eq!(runs, [(running.clone(), 1), (third.clone(), 1)], "{log:?}");
    let stopped = NodeLogEvent::Finished {
        job: running.clone(),
        how: "cancelled".into(),
    };
    assert!(log.contains(&stopped), "{log:?}");
    assert!(!app
        .data_dir()
        .join(format!("outputs/{running}.wav"))
        .exists());
}
