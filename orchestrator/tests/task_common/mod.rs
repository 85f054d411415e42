//! Helpers of the task API's in-process tests (`task_api.rs`, `task_api_webhooks.rs`): keys,
//! requests with `x-api-key`, a task body, lyrics, and a queued job driven to success.

#![allow(dead_code)]

use protocol::JobId;
use refrain_orchestrator::jobs::results::store_variants;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::http::wav;
use crate::support::TestService;

pub fn add_key(s: &TestService, name: &str) -> String {
    refrain_orchestrator::api::v1::auth::add_key(&s.app.config().api_keys_path(), name).unwrap()
}

pub async fn call(
    s: &TestService,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = s.client.request(method, format!("{}{path}", s.base));
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

pub fn task(task_type: &str, input: Value) -> Value {
    json!({"model": "Qubico/diffrhythm", "task_type": task_type, "input": input})
}

pub fn lyrics() -> &'static str {
    "[00:10.00] Walking down the street, feeling the beat\n[00:17.00] every light is green"
}

/// Drives a queued job to succeeded with `variants` one-second songs, as a node would.
pub async fn finish(s: &TestService, id: &str) {
    let id = JobId::parse(id).unwrap();
    let record = s.app.store().get(&id).unwrap().unwrap();
    s.app.lifecycle().start(&id, 1, 1).await.unwrap();
    let song = wav(1.0, 44_100);
    let result = store_variants(s.app.outputs(), &id, &record.spec, 1, &[song], 1.0)
        .await
        .unwrap();
    s.app.lifecycle().succeed(&id, 1, result).await.unwrap();
}
