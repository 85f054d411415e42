//! A client of a job's event stream, `GET /api/v1/jobs/{id}/events` (Server-Sent Events: `id:`
//! the event's sequence number, `event:` its kind, `data:` the event as JSON; `Last-Event-ID`
//! resumes after a number; the stream ends after the final event). Tests wait on it for a job
//! to reach a kind or a state — started, a sampling step, cancelled — instead of polling or
//! reading logs, and check the whole history a job went through.

use std::io::{BufRead, BufReader, Lines};
use std::time::Duration;

use reqwest::blocking::Response;
use serde_json::Value;

use super::http::Api;

/// How long one stream may stay open: only against hangs (a stream waits for the job).
const STREAM_TIMEOUT: Duration = Duration::from_secs(600);

/// One event of a job's stream.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    /// The `id:` line: the job's event sequence number.
    pub seq: u64,
    /// The `event:` line: `queued`, `started`, `progress`, `retrying`, `requeued`,
    /// `succeeded`, `failed`, `cancelled` or `expired`.
    pub kind: String,
    /// The `data:` JSON: job, seq, kind, state, attempt, stage, step, total, percent,
    /// queue_position, error, result.
    pub data: Value,
}

impl JobEvent {
    /// The job's state after the event (`queued`, `running`, `succeeded`, …).
    pub fn state(&self) -> &str {
        self.data["state"].as_str().unwrap_or_default()
    }

    pub fn attempt(&self) -> u64 {
        self.data["attempt"].as_u64().unwrap_or_default()
    }

    /// The stage of a progress event (`sampling`, `decoding`, …).
    pub fn stage(&self) -> Option<&str> {
        self.data["stage"].as_str()
    }

    pub fn step(&self) -> Option<u64> {
        self.data["step"].as_u64()
    }

    pub fn percent(&self) -> Option<f64> {
        self.data["percent"].as_f64()
    }

    /// Whether nothing follows it (the stream ends).
    pub fn is_final(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "succeeded" | "failed" | "cancelled" | "expired"
        )
    }
}

/// An open event stream of one job.
pub struct EventStream {
    job: String,
    lines: Lines<BufReader<Response>>,
    seen: Vec<JobEvent>,
    ended: bool,
}

impl EventStream {
    /// Opens the stream of `job` at `base`, from the first event or after `after`
    /// (`Last-Event-ID`).
    pub fn open(base: &str, job: &str, after: Option<u64>) -> EventStream {
        Self::open_keyed(base, job, after, None)
    }

    /// [`EventStream::open`] with an API key (`Authorization: Bearer`), for servers that
    /// have keys.
    pub fn open_keyed(base: &str, job: &str, after: Option<u64>, key: Option<&str>) -> EventStream {
        let http = reqwest::blocking::Client::builder()
            .no_proxy()
            .timeout(STREAM_TIMEOUT)
            .build()
            .expect("HTTP client");
        let mut request = http.get(format!("{base}/api/v1/jobs/{job}/events"));
        if let Some(after) = after {
            request = request.header("Last-Event-ID", after.to_string());
        }
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().expect("GET /api/v1/jobs/{id}/events");
        assert_eq!(response.status().as_u16(), 200, "events of {job}");
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert_eq!(content_type, "text/event-stream", "events of {job}");
        EventStream {
            job: job.to_string(),
            lines: BufReader::new(response).lines(),
            seen: Vec::new(),
            ended: false,
        }
    }

    /// The next event; `None` once the stream ended (after the final event).
    pub fn next_event(&mut self) -> Option<JobEvent> {
        if self.ended {
            return None;
        }
        let (mut seq, mut kind, mut data) = (None, String::new(), String::new());
        loop {
            let Some(line) = self.lines.next() else {
                self.ended = true;
                return None;
            };
            let line = line.unwrap_or_else(|e| panic!("events of {}: {e}", self.job));
            if line.is_empty() {
                // The end of an event; a keep-alive comment alone has no id.
                if let Some(seq) = seq.take() {
                    let data: Value = serde_json::from_str(&data)
                        .unwrap_or_else(|e| panic!("event data of {}: {e}: {data}", self.job));
                    let event = JobEvent {
                        seq,
                        kind: std::mem::take(&mut kind),
                        data,
                    };
                    self.seen.push(event.clone());
                    return Some(event);
                }
                data.clear();
            } else if let Some(v) = line.strip_prefix("id:") {
                seq = Some(v.trim().parse().expect("a numeric event id"));
            } else if let Some(v) = line.strip_prefix("event:") {
                kind = v.trim().to_string();
            } else if let Some(v) = line.strip_prefix("data:") {
                data.push_str(v.trim_start());
            }
        }
    }

    /// Reads until an event satisfies `pred` and returns it; panics (with the events seen) if
    /// the stream ends first.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&JobEvent) -> bool) -> JobEvent {
        while let Some(event) = self.next_event() {
            if pred(&event) {
                return event;
            }
        }
        panic!(
            "the events of {} ended before {what}: {:?}",
            self.job,
            self.kinds()
        )
    }

    /// Reads until an event of `kind` (e.g. `started`).
    pub fn wait_kind(&mut self, kind: &str) -> JobEvent {
        self.wait_for(kind, |e| e.kind == kind)
    }

    /// Reads until the job is in `state` (e.g. `running`).
    pub fn wait_state(&mut self, state: &str) -> JobEvent {
        self.wait_for(&format!("state {state}"), |e| e.state() == state)
    }

    /// Reads until a progress event of the sampler at step `step` or later.
    pub fn wait_sampling(&mut self, step: u64) -> JobEvent {
        self.wait_for(&format!("sampling step {step}"), |e| {
            e.kind == "progress" && e.stage() == Some("sampling") && e.step() >= Some(step)
        })
    }

    /// Reads to the end of the stream and returns every event read from it, in order.
    pub fn read_all(mut self) -> Vec<JobEvent> {
        while self.next_event().is_some() {}
        self.seen
    }

    /// Reads to the final event and returns it.
    pub fn final_event(self) -> JobEvent {
        let job = self.job.clone();
        let events = self.read_all();
        match events.last() {
            Some(last) if last.is_final() => last.clone(),
            _ => panic!("the events of {job} ended without a final event: {events:?}"),
        }
    }

    /// The events read so far.
    pub fn seen(&self) -> &[JobEvent] {
        &self.seen
    }

    /// The kinds of the events read so far.
    pub fn kinds(&self) -> Vec<String> {
        self.seen.iter().map(|e| e.kind.clone()).collect()
    }
}

impl Iterator for EventStream {
    type Item = JobEvent;

    fn next(&mut self) -> Option<JobEvent> {
        self.next_event()
    }
}

impl Api {
    /// Follows the events of `job` from the first one.
    pub fn events(&self, job: &str) -> EventStream {
        EventStream::open(&self.base, job, None)
    }

    /// Follows the events of `job` after sequence number `after` (`Last-Event-ID`).
    pub fn events_after(&self, job: &str, after: u64) -> EventStream {
        EventStream::open(&self.base, job, Some(after))
    }

    /// The whole history of a finished job (or, for an unfinished one, everything up to its
    /// final event, waiting for it).
    pub fn history(&self, job: &str) -> Vec<JobEvent> {
        self.events(job).read_all()
    }

    /// The attempts of the runs a job started (its `started` events), in order.
    pub fn started_attempts(&self, job: &str) -> Vec<u64> {
        self.history(job)
            .iter()
            .filter(|e| e.kind == "started")
            .map(JobEvent::attempt)
            .collect()
    }

    /// The kinds of a finished job's events, in order.
    pub fn history_kinds(&self, job: &str) -> Vec<String> {
        self.history(job).into_iter().map(|e| e.kind).collect()
    }
}
