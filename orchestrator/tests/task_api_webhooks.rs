//! Webhooks of the task API in process: a receiver that fails twice, then gets every status
//! change signed, in order, with a delivery log and a redelivery. Receivers listen on loopback
//! only (127.0.0.2, allow-listed).

mod support;
mod task_common;

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

/// A webhook receiver on 127.0.0.2 that answers 500 to its first `fail` requests.
async fn receiver(fail: usize) -> (String, Arc<Mutex<Vec<Received>>>) {
    let got: Arc<Mutex<Vec<Received>>> = Arc::default();
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().unwrap();
                let answered = if seen.len() < fail { 500 } else { 200 };
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
    (format!("http://{addr}/hook"), got)
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
    let (endpoint, got) = receiver(2).await;
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
