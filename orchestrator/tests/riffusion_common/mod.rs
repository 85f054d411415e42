//! Helpers of the Riffusion API's in-process tests (`riffusion_api.rs`,
//! `riffusion_transforms.rs`, `riffusion_requests.rs`): the service without per-key limits,
//! keys, requests with a bearer key, the error shape, ids, a take driven to success, a
//! multipart upload.

#![allow(dead_code)]

use protocol::JobId;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{start_with, TestService};

pub const LYRICS: &str = "[Verse]\nCity lights are passing by\nEvery window tells a lie\n\n\
                          [Chorus]\nWe drive into the night\n";

/// The default service, ready, without `[riffusion_api]` per-key limits (the tests make more
/// takes than a minute allows; `riffusion_requests.rs` tests the limits).
pub async fn start() -> TestService {
    let s = start_with(|c| c.riffusion_api.limits = Default::default()).await;
    s.app.set_ready(true);
    s
}

pub fn add_key(s: &TestService, name: &str) -> String {
    s.add_key(name)
}

/// A request with the key as a bearer token, as Riffusion clients send it.
pub async fn call(
    s: &TestService,
    method: Method,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("authorization", b.as_str()))
        .collect();
    let (status, _, body) = s.send(method, path, &headers, body).await;
    (status, body)
}

/// Asserts the API's error shape, status, code and field.
pub fn refused(
    status: StatusCode,
    body: &Value,
    want: StatusCode,
    code: &str,
    field: Option<&str>,
) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}

pub fn ids(created: &Value) -> Vec<JobId> {
    created["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| JobId::parse(v.as_str().unwrap()).unwrap())
        .collect()
}

/// Drives a queued job to succeeded with `seconds` of song, as a node would.
pub async fn finish(s: &TestService, id: &JobId, seconds: f64) {
    s.finish_with_song(id, seconds).await;
}

/// A multipart upload of `bytes` as `name`.
pub async fn upload(s: &TestService, key: &str, bytes: Vec<u8>, name: &str) -> (StatusCode, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name(name.to_string());
    let form = reqwest::multipart::Form::new().part("file", part);
    let r = s
        .client
        .post(format!("{}/riffusion/upload", s.base))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}
