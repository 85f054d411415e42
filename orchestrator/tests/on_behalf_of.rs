//! `on_behalf_of` and `client_data` of `POST /api/v1/jobs` (what `refrain bots` relies on): a
//! key trusted for an owner kind creates jobs owned by that kind's end users, whose per-user
//! limits the core enforces; other keys are refused; `client_data` comes back unchanged.

use crate::support;

use refrain_orchestrator::api::v1::auth::{add_key, add_key_for};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::{start, TestService};

fn song(extra: Value) -> Value {
    let mut body = json!({
        "lyrics": "[00:01.00] hello",
        "style": {"prompt": "warm piano ballad"},
        "length_seconds": 95,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

async fn post(s: &TestService, key: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_trusted_key_creates_jobs_owned_by_end_users_with_their_limits() {
    let s = start().await;
    let path = s.app.config().api_keys_path();
    let bot = add_key_for(&path, "bot", &["telegram".into()]).unwrap();
    let plain = add_key(&path, "plain").unwrap();

    let body = song(json!({
        "on_behalf_of": {"user": "telegram:42", "limits": {"concurrent": 1}},
        "client_data": "chat=42;message=7",
    }));
    let (status, job) = post(&s, &bot, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["owner"], "telegram:42");
    assert_eq!(job["client_data"], "chat=42;message=7");
    let id = job["id"].as_str().unwrap();
    let r = s
        .client
        .get(format!("{}/api/v1/jobs/{id}", s.base))
        .bearer_auth(&bot)
        .send()
        .await
        .unwrap();
    let again: Value = r.json().await.unwrap();
    assert_eq!(again["client_data"], "chat=42;message=7");

    // The user's own limit (one at a time) is the core's: a second job is 429.
    let (status, e) = post(&s, &bot, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["error"]["code"], "owner_limit");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("telegram:42"),
        "{e}"
    );
    // Another user of the same bot is not held back by it.
    let other = song(json!({"on_behalf_of": {"user": "telegram:43", "limits": {"concurrent": 1}}}));
    let (status, job) = post(&s, &bot, other).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["owner"], "telegram:43");
    assert_eq!(job["client_data"], Value::Null);

    // Kinds the key is not trusted for, and keys trusted for none, are refused.
    let discord = song(json!({"on_behalf_of": {"user": "discord:1"}}));
    let (status, e) = post(&s, &bot, discord).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["field"], "on_behalf_of.user");
    let (status, e) = post(
        &s,
        &plain,
        song(json!({"on_behalf_of": {"user": "telegram:42"}})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--on-behalf-of telegram"),
        "{e}"
    );
    for bad in ["telegram", "telegram:", "key:alice"] {
        let (status, e) = post(&s, &bot, song(json!({"on_behalf_of": {"user": bad}}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {e}");
    }
}

#[tokio::test]
async fn without_keys_any_caller_may_act_for_end_users_of_delegable_kinds() {
    let s = start().await;
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&song(json!({"on_behalf_of": {"user": "telegram:5"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["owner"], "telegram:5");
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&song(json!({"on_behalf_of": {"user": "key:alice"}})))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "reserved kinds stay refused"
    );
}

#[tokio::test]
async fn client_data_is_limited_in_size() {
    let s = start().await;
    let key = add_key(&s.app.config().api_keys_path(), "alice").unwrap();
    let (status, e) = post(&s, &key, song(json!({"client_data": "x".repeat(2049)}))).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{e}");
    let (status, job) = post(&s, &key, song(json!({"client_data": "x".repeat(2048)}))).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["owner"], "key:alice");
}
