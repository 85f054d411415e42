//! Helpers of the task API's in-process tests (`task_api.rs`, `task_api_webhooks.rs`): keys,
//! requests with `x-api-key`, a task body, lyrics, and a queued job driven to success.

#![allow(dead_code)]

use protocol::JobId;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::TestService;

pub fn add_key(s: &TestService, name: &str) -> String {
    s.add_key(name)
}

/// A request with the key in `x-api-key`, as the task API's clients send it.
pub async fn call(
    s: &TestService,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let headers: Vec<(&str, &str)> = key.iter().map(|k| ("x-api-key", *k)).collect();
    s.send(method, path, &headers, body).await
}

pub fn task(task_type: &str, input: Value) -> Value {
    json!({"model": "Qubico/diffrhythm", "task_type": task_type, "input": input})
}

pub fn lyrics() -> &'static str {
    "[00:10.00] Walking down the street, feeling the beat\n[00:17.00] every light is green"
}

/// Drives a queued job to succeeded with `variants` one-second songs, as a node would.
pub async fn finish(s: &TestService, id: &str) {
    s.finish_with_song(&JobId::parse(id).unwrap(), 1.0).await;
}
