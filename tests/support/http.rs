//! A blocking HTTP client of the APIs `refrain serve` offers on 127.0.0.1: the DiffRhythm API
//! (`POST /generate`, polling `GET /output/<file>`), the status and metrics endpoints and the
//! node list, plus the request forms several tests share.

use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use serde_json::Value;

use super::audio::sine_wav;

/// A blocking HTTP client for 127.0.0.1 (no proxy; a generous timeout, only against hangs).
pub fn local_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()
        .expect("HTTP client")
}

/// What polling a result ended with.
#[derive(Debug)]
pub enum Done {
    Wav(Vec<u8>),
    Failed(Value),
}

/// A blocking client of the DiffRhythm API.
pub struct Api {
    pub http: reqwest::blocking::Client,
    pub base: String,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            http: local_client(),
            base: base.to_string(),
        }
    }

    /// `POST /generate`; returns (job id, result URL).
    pub fn submit(&self, form: Form) -> (String, String) {
        let response = self
            .http
            .post(format!("{}/generate", self.base))
            .multipart(form)
            .send()
            .expect("POST /generate");
        let status = response.status();
        let body: Value = response.json().expect("JSON reply");
        assert_eq!(status.as_u16(), 202, "POST /generate: {body}");
        (
            body["job_id"].as_str().expect("job_id").to_string(),
            body["url"].as_str().expect("url").to_string(),
        )
    }

    /// A plain text-prompt job of `seconds`.
    pub fn submit_prompt(&self, seconds: u32, seed: u64) -> (String, String) {
        let form = Form::new()
            .text("audio_length", seconds.to_string())
            .text("ref_prompt", "bright acoustic pop with piano")
            .text("lrc", "[00:01.00]hello from a node\n[00:05.00]la la la")
            .text("seed", seed.to_string());
        self.submit(form)
    }

    /// `GET url`: `Ok(Done)` when finished, `Err(json)` while processing.
    pub fn poll(&self, url: &str) -> Result<Done, Value> {
        let response = match self.http.get(format!("{}{url}", self.base)).send() {
            Ok(r) => r,
            Err(e) => return Err(serde_json::json!({"transport_error": e.to_string()})),
        };
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let status = response.status().as_u16();
        if status == 200 && content_type.starts_with("audio/wav") {
            return Ok(Done::Wav(response.bytes().expect("WAV body").to_vec()));
        }
        let body: Value = response.json().unwrap_or(Value::Null);
        match body["status"].as_str() {
            Some("failed") | Some("cancelled") => Ok(Done::Failed(body)),
            _ => Err(body),
        }
    }

    /// Polls until finished.
    pub fn wait(&self, url: &str, timeout: Duration) -> Done {
        let deadline = Instant::now() + timeout;
        loop {
            match self.poll(url) {
                Ok(done) => return done,
                Err(body) => assert!(
                    Instant::now() < deadline,
                    "{url} did not finish in {timeout:?}: {body}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn get_json(&self, path: &str) -> Value {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .and_then(|r| r.json())
            .unwrap_or(Value::Null)
    }

    /// `GET /api/v1/jobs/{id}`: the job record (state, attempt, progress, queue position).
    pub fn job(&self, id: &str) -> Value {
        self.get_json(&format!("/api/v1/jobs/{id}"))
    }

    /// `DELETE /api/v1/jobs/{id}`: the status code and the JSON answer.
    pub fn cancel(&self, id: &str) -> (u16, Value) {
        let response = self
            .http
            .delete(format!("{}/api/v1/jobs/{id}", self.base))
            .send()
            .expect("DELETE /api/v1/jobs/{id}");
        let status = response.status().as_u16();
        (status, response.json().unwrap_or(Value::Null))
    }

    pub fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default()
    }

    /// Waits until `GET /api/v1/nodes` reports `live` nodes.
    pub fn wait_nodes(&self, live: u64, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.get_json("/api/v1/nodes");
            if v["live"].as_u64() == Some(live) {
                return v;
            }
            assert!(Instant::now() < deadline, "expected {live} live nodes: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A valid upload that only the node can refuse, at run time: a 5 s recording is too short a
/// song to edit into 95 s.
pub fn rejected_at_run_time_form() -> Form {
    Form::new()
        .text("audio_length", "95")
        .text("ref_prompt", "pop")
        .text("edit", "true")
        .text("edit_segments", "[[1, 3]]")
        .part(
            "ref_song",
            Part::bytes(sine_wav(5.0))
                .file_name("short.wav")
                .mime_str("audio/wav")
                .expect("valid MIME type"),
        )
}

/// Polls a job's JSON until `pred` holds for it (e.g. it is running and has made a step);
/// panics after `timeout` or if the job finished first.
pub fn wait_json(api: &Api, url: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        match api.poll(url) {
            Ok(Done::Wav(_)) => panic!("{url} finished before the awaited moment"),
            Ok(Done::Failed(body)) => panic!("{url} failed: {body}"),
            Err(body) if pred(&body) => return body,
            Err(body) => assert!(Instant::now() < deadline, "{url}: still {body}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
