//! Webhooks of the task API in process: a receiver that fails twice, then gets every status
//! change signed, in order, with a delivery log and a redelivery; a receiver that always fails,
//! given up after `webhooks.retry_for_seconds` (failed in the log), then redelivered. Receivers
//! listen on loopback only (127.0.0.2, allow-listed).

use crate::support;
use crate::task_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::start_with;
use task_common::{add_key, call, finish, lyrics, task};

/// One request the receiver got: its headers and body, and the status it answered.
#[derive(Debug, Clone)]
struct Received {
    headers: axum::http::HeaderMap,
    body: String,
    answered: u16,
}

/// A webhook receiver on 127.0.0.2 that answers 500 to its first `fail` requests (the test
/// may move that count as it goes, through the third value), 200 after.
async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<Received>>>, Arc<AtomicUsize>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let failing = Arc::new(AtomicUsize::new(fail));
    let fail = failing.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let answered = if seen.len() < fail.load(Ordering::SeqCst) {
                    500
                } else {
                    200
                };
                seen.push(Received {
                    headers,
                    body,
                    answered,
                });
                StatusCode::from_u16(answered).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got, failing)
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn webhooks_are_retried_signed_in_order_and_logged() {
    let (endpoint, got, _) = receiver(2).await;
    let s = start_with(|c| {
        c.fetch.allow = vec!["127.0.0.2/32".parse().unwrap()];
        c.webhooks.first_retry_ms = 50;
    })
    .await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let mut body = task("txt2audio-base", json!({"lyrics": lyrics()}));
    body["config"] = json!({"webhook_config": {"endpoint": endpoint, "secret": secret}});
    let (status, _, created) =
        call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["data"]["task_id"].as_str().unwrap().to_string();
    finish(&s, &id).await;

    let all = wait_for("the completed delivery", || {
        let got = got.lock().unwrap();
        got.iter()
            .any(|r| r.answered == 200 && r.body.contains("\"Completed\""))
            .then(|| got.clone())
    })
    .await;
    // Two failures, then each status change once, in order.
    let answered: Vec<u16> = all.iter().map(|r| r.answered).collect();
    assert_eq!(answered, [500, 500, 200, 200, 200], "{all:?}");
    let statuses: Vec<String> = all
        .iter()
        .map(|r| {
            serde_json::from_str::<Value>(&r.body).unwrap()["data"]["status"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        statuses,
        ["Pending", "Pending", "Pending", "Processing", "Completed"]
    );
    for r in &all {
        let h = |name: &str| r.headers[name].to_str().unwrap().to_string();
        assert_eq!(h("x-webhook-secret"), secret);
        let timestamp: u64 = h("webhook-timestamp").parse().unwrap();
        assert_eq!(
            h("webhook-signature"),
            refrain_orchestrator::webhooks::sign::signature(
                secret,
                &h("webhook-id"),
                timestamp,
                r.body.as_bytes()
            )
        );
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert!(body["timestamp"].is_u64());
        assert_eq!(body["data"]["task_id"], id);
    }
    // The same id on every attempt of one delivery.
    assert_eq!(all[0].headers["webhook-id"], all[2].headers["webhook-id"]);
    let completed: Value = serde_json::from_str(&all[4].body).unwrap();
    assert!(completed["data"]["output"]["audio_url"]
        .as_str()
        .unwrap()
        .ends_with(".mp3"));

    // The log shows it all; a redelivery sends the same delivery again.
    let (status, _, log) = call(
        &s,
        Method::GET,
        &format!("/api/v1/task/{id}/webhooks"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let deliveries = log["data"]["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3, "{log}");
    assert_eq!(log["data"]["endpoint"], endpoint);
    assert!(
        !log.to_string().contains(secret),
        "the secret is never shown"
    );
    let first = &deliveries[0];
    assert_eq!(
        (first["event"].clone(), first["state"].clone()),
        (json!("queued"), json!("delivered"))
    );
    let statuses: Vec<Value> = first["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)]);
    let delivery = deliveries[2]["id"].as_str().unwrap();
    let (status, _, again) = call(
        &s,
        Method::POST,
        &format!("/v1/tasks/{id}/webhooks/{delivery}/redeliver"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let redelivered = wait_for("the redelivery", || {
        let got = got.lock().unwrap();
        (got.len() == 6).then(|| got[5].clone())
    })
    .await;
    assert_eq!(redelivered.headers["webhook-id"], delivery);
    assert_eq!(redelivered.body, all[4].body);
    let (status, _, e) = call(
        &s,
        Method::POST,
        &format!("/v1/tasks/{id}/webhooks/msg_nope/redeliver"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "DELIVERY_NOT_FOUND");
}

/// The delivery log of task `id`.
async fn delivery_log(s: &support::TestService, key: &str, id: &str) -> Value {
    let path = format!("/api/v1/task/{id}/webhooks");
    let (status, _, log) = call(s, Method::GET, &path, Some(key), None).await;
    assert_eq!(status, StatusCode::OK, "{log}");
    log
}

/// Polls the delivery log of task `id` until `done` holds for its first delivery.
async fn wait_delivery(
    s: &support::TestService,
    key: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let log = delivery_log(s, key, id).await;
        let first = &log["data"]["deliveries"][0];
        if done(first) {
            return first.clone();
        }
        assert!(std::time::Instant::now() < deadline, "{log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ms_of(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp_millis()
}

#[tokio::test]
async fn a_delivery_is_given_up_after_retry_for_seconds_then_redelivered() {
    // Every request is answered 500 until the test says otherwise.
    let (endpoint, got, fail) = receiver(usize::MAX).await;
    let s = start_with(|c| {
        c.fetch.allow = vec!["127.0.0.2/32".parse().unwrap()];
        c.webhooks.retry_for_seconds = 1;
        c.webhooks.first_retry_ms = 50;
        c.webhooks.max_retry_seconds = 1;
    })
    .await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let mut body = task("txt2audio-base", json!({"lyrics": lyrics()}));
    body["config"] = json!({"webhook_config": {"endpoint": endpoint, "secret": "k"}});
    let (status, _, created) =
        call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["data"]["task_id"].as_str().unwrap().to_string();

    // The task stays pending: one delivery, tried until a second has passed, then given up.
    let failed = wait_delivery(&s, &key, &id, |d| d["state"] != "pending").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["event"], "queued", "{failed}");
    assert_eq!(failed["next_attempt_at"], Value::Null, "{failed}");
    let attempts = failed["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 2, "retried before giving up: {failed}");
    for a in attempts {
        assert_eq!(a["status"], 500, "{failed}");
        assert!(a["error"].is_string(), "{failed}");
    }
    let last = attempts.last().unwrap();
    let ended = |a: &Value| ms_of(&a["at"]) + a["duration_ms"].as_i64().unwrap();
    let created = ms_of(&failed["created_at"]);
    assert!(
        ended(last) - created >= 1000,
        "given up only once retry_for_seconds had passed: {failed}"
    );
    assert!(
        attempts[..attempts.len() - 1]
            .iter()
            .all(|a| ended(a) - created < 1000),
        "not given up before: {failed}"
    );
    let delivery = failed["id"].as_str().unwrap().to_string();
    {
        let got = got.lock().unwrap();
        assert_eq!(got.len(), attempts.len(), "no attempt after giving up");
        assert!(got
            .iter()
            .all(|r| r.headers["webhook-id"] == delivery.as_str()));
    }
    let log = delivery_log(&s, &key, &id).await;
    assert_eq!(log["data"]["deliveries"].as_array().unwrap().len(), 1);

    // The receiver is fixed; a redelivery sends the same delivery again, and it is delivered.
    fail.store(0, Ordering::SeqCst);
    let (status, _, again) = call(
        &s,
        Method::POST,
        &format!("/v1/tasks/{id}/webhooks/{delivery}/redeliver"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{again}");
    let delivered = wait_delivery(&s, &key, &id, |d| d["state"] == "delivered").await;
    let attempts_now = delivered["attempts"].as_array().unwrap();
    assert_eq!(attempts_now.len(), attempts.len() + 1, "{delivered}");
    assert_eq!(attempts_now.last().unwrap()["status"], 200, "{delivered}");
    let got = got.lock().unwrap();
    let received = got.last().unwrap();
    assert_eq!(received.answered, 200);
    assert_eq!(received.headers["webhook-id"], delivery.as_str());
    assert_eq!(received.body, got[0].body, "the same body again");
}
