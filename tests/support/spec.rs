//! The seed-000 DiffRhythm server API as the README describes it, for
//! the tests that hold `refrain serve` to it: the spec client's request (the `_dummy` part
//! its Python client sends, plus our `seed`), and the checks of the spec's answers — the 202,
//! a `processing` body, headers, metrics lines — and a raw `GET` for paths a URL library
//! would normalise.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use reqwest::blocking::multipart::Form;
use reqwest::blocking::Response;
use reqwest::header;
use serde_json::Value;

pub const PROMPT: &str = "bright acoustic pop with piano";
pub const LYRICS: &str = "[00:01.00]hello from the server\n[00:05.00]la la la\n";

/// The spec's request: text fields plus the `_dummy` part its Python client sends to force
/// multipart, and our `seed` extension.
pub fn song_form(seconds: u32, seed: u64) -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", PROMPT)
        .text("audio_length", seconds.to_string())
        .text("lrc", LYRICS)
        .text("seed", seed.to_string())
}

pub fn header_of(r: &Response, name: header::HeaderName) -> String {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// Checks a 202 answer against the spec; returns (job id, url).
pub fn accepted(r: Response) -> (String, String) {
    assert_eq!(r.status().as_u16(), 202, "POST /generate");
    assert!(header_of(&r, header::CONTENT_TYPE).starts_with("application/json"));
    let body: Value = r.json().expect("JSON 202 body");
    let keys: BTreeSet<&str> = body
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["status", "url", "job_id", "message"]),
        "{body}"
    );
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        body["message"],
        "Generation started. Check the URL later for the result."
    );
    let id = body["job_id"].as_str().expect("job_id").to_string();
    let url = body["url"].as_str().expect("url").to_string();
    assert!(!id.is_empty());
    assert!(
        url.starts_with("/output/") && url.ends_with(".wav"),
        "{url}"
    );
    (id, url)
}

pub fn seconds_text(v: &Value, what: &str) -> f64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is a string: {v}"));
    s.strip_suffix(" seconds")
        .and_then(|n| n.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{what} is \"<x> seconds\": {s:?}"))
}

/// Checks a `processing` answer against the spec's example; returns its `progress_percent`.
pub fn check_processing(body: &Value, id: &str, file: &str, seconds: u32) -> u64 {
    assert_eq!(body["status"], "processing", "{body}");
    assert_eq!(body["job_id"], id, "{body}");
    assert_eq!(body["file"], file, "{body}");
    seconds_text(&body["elapsed_time"], "elapsed_time");
    if body["estimated_remaining"] != "unknown" {
        seconds_text(&body["estimated_remaining"], "estimated_remaining");
    }
    let percent = body["progress_percent"]
        .as_u64()
        .unwrap_or_else(|| panic!("progress_percent is a whole number: {body}"));
    assert!(percent <= 100, "{body}");
    let p = &body["parameters"];
    assert_eq!(p["lrc"], LYRICS, "{body}");
    assert_eq!(p["ref_prompt"], PROMPT, "{body}");
    assert_eq!(p["audio_length"], seconds, "{body}");
    assert_eq!(body["server_busy"], true, "{body}");
    let g = &body["other_goodies"];
    assert_eq!(g["device"], "cpu", "{body}");
    assert!(
        g["max_frames"].as_u64().is_some_and(|f| f >= 2048),
        "{body}"
    );
    assert!(
        g["current_time"]
            .as_str()
            .is_some_and(|t| t.ends_with(" UTC")),
        "{body}"
    );
    seconds_text(&g["uptime"], "uptime");
    assert!(
        matches!(body["state"].as_str(), Some("queued" | "running")),
        "{body}"
    );
    percent
}

/// One metric's value from the Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `GET` with a raw request line (no client-side normalisation of the path).
pub fn raw_get(base: &str, path: &str) -> (u16, String) {
    let addr = base.strip_prefix("http://").expect("http base");
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, text)
}
