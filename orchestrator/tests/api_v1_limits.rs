//! Limits over time on the real service in process, with idle nodes (jobs stay queued):
//! `limits.per_owner_daily` (jobs an owner may create in any 24 hours, cancelled ones
//! included; over it 429 `owner_limit` with `Retry-After`, on every API the owner uses) and the
//! idempotency window `limits.idempotency_hours` (after it, the same key and body make a new
//! job, which the key then names).

use crate::support;

use std::time::Duration;

use protocol::{Owner, Source};
use refrain_orchestrator::admission::{Draft, StyleInput};
use refrain_orchestrator::service::JobMeta;
use refrain_orchestrator::store::now_ms;
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::http::basic_form;
use support::{start_with, TestService};

fn song() -> Value {
    json!({
        "lyrics": "[00:01.00] hello there",
        "style": {"prompt": "warm piano ballad"},
        "length_seconds": 95,
        "seed": 7,
    })
}

async fn create(
    s: &TestService,
    key: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&song());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds")
}

#[tokio::test]
async fn the_third_job_of_the_day_is_429_with_retry_after() {
    let s = start_with(|c| c.limits.per_owner_daily = 2).await;
    s.app.set_ready(true);
    for _ in 0..2 {
        let (status, _, job) = create(&s, None).await;
        assert_eq!(status, StatusCode::CREATED, "{job}");
        // Cancelled at once: the daily limit counts jobs created, not jobs active.
        let r = s
            .client
            .delete(format!(
                "{}/api/v1/jobs/{}",
                s.base,
                job["id"].as_str().unwrap()
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }

    let (status, headers, e) = create(&s, None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["error"]["code"], "owner_limit", "{e}");
    // The window frees when the first job is 24 hours old: just under a day from now.
    let wait = retry_after(&headers);
    assert!((86_000..=86_400).contains(&wait), "Retry-After: {wait}");
    let message = e["error"]["message"].as_str().unwrap();
    assert!(message.contains("24 hours"), "{message}");

    // The same owner (anonymous) on the DiffRhythm API: refused the same way.
    let (status, headers, e) = s.post(basic_form()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert!((86_000..=86_400).contains(&retry_after(&headers)), "{e}");

    // Another owner is not held back by it.
    let mut meta = JobMeta::anonymous(Source::RefrainApi);
    meta.owner = Owner::new("key", "bob");
    let mut d = Draft::new(meta);
    d.lyrics = "[00:01.00] hello there".into();
    d.style = Some(StyleInput::Prompt("warm piano ballad".into()));
    d.seconds = Some(95);
    assert!(s.app.admit(d).await.unwrap().created);
}

#[tokio::test]
async fn an_idempotency_key_names_a_new_job_after_its_window() {
    // 0.001 hours: 3.6 s.
    let window = Duration::from_millis(3_600);
    let s = start_with(|c| c.limits.idempotency_hours = 0.001).await;
    s.app.set_ready(true);

    let (status, _, first) = create(&s, Some("nightly-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The window runs from the job's creation as the server stamped it, on the same clock.
    let id = protocol::JobId::parse(first["id"].as_str().unwrap()).unwrap();
    let created_ms = s.app.job(&id).unwrap().unwrap().created_ms;
    let since_created = || Duration::from_millis(now_ms().saturating_sub(created_ms));
    // Within the window: the same job.
    let (status, _, again) = create(&s, Some("nightly-1")).await;
    assert!(
        since_created() < window,
        "the machine is too slow for this test"
    );
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["id"], first["id"]);

    // After it: the same key and body make a new job…
    tokio::time::sleep((window + Duration::from_millis(300)).saturating_sub(since_created())).await;
    let (status, _, second) = create(&s, Some("nightly-1")).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(second["id"], first["id"]);
    // …which the key names from then on.
    let (status, _, replay) = create(&s, Some("nightly-1")).await;
    assert_eq!(status, StatusCode::OK, "{replay}");
    assert_eq!(replay["id"], second["id"]);
    // The first job is still there, untouched.
    let r = s
        .client
        .get(format!(
            "{}/api/v1/jobs/{}",
            s.base,
            first["id"].as_str().unwrap()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["state"], "queued", "{job}");
}
