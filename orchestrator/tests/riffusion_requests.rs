//! Riffusion requests through the core's request mechanisms: the title is kept with both takes
//! (feed, download file name), an `Idempotency-Key` makes a retried request answer the same two
//! takes (and another request under the key a 409 in this API's error shape), and the per-key
//! limits of `[riffusion_api]` refuse a request whose two takes would go over them (429, no
//! take made).

use crate::riffusion_common;
use crate::support;

use refrain_orchestrator::jobs::limits::Quota;
use reqwest::{Method, StatusCode};
use riffusion_common::{add_key, call, finish, ids, refused, start, LYRICS};
use serde_json::{json, Value};
use support::{start_with, TestService};

/// `POST /riffusion/generate` with an optional Idempotency-Key.
async fn generate(
    s: &TestService,
    key: &str,
    idem: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    let mut request = s
        .client
        .post(format!("{}/riffusion/generate", s.base))
        .bearer_auth(key)
        .json(body);
    if let Some(k) = idem {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test]
async fn the_title_is_kept_shown_in_the_feed_and_names_the_download() {
    let s = start().await;
    let key = add_key(&s, "client");
    let body = json!({"title": "  Night Drive! ", "lyrics": LYRICS});
    let (status, created) = generate(&s, &key, None, &body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["title"], "Night Drive!");
    let takes = ids(&created);
    for id in &takes {
        let record = s.app.store().get(id).unwrap().unwrap();
        assert_eq!(record.title.as_deref(), Some("Night Drive!"));
    }
    finish(&s, &takes[0], 95.2).await;
    let path = format!("/riffusion/feed/{},{}", takes[0], takes[1]);
    let (status, feed) = call(&s, Method::GET, &path, Some(&key), None).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed[0]["title"], "Night Drive!");
    assert_eq!(feed[1]["title"], "Night Drive!");
    // Refrain's own API names the download after the title.
    let r = s
        .client
        .get(format!(
            "{}/api/v1/jobs/{}/audio?format=wav",
            s.base, takes[0]
        ))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"night-drive.wav\""
    );
    // Without a title, the feed says so; a title with a line break is refused by the core.
    let (_, created) = generate(&s, &key, None, &json!({"lyrics": LYRICS})).await;
    assert!(created.get("title").is_none(), "{created}");
    let path = format!("/riffusion/feed/{}", ids(&created)[0]);
    let (_, feed) = call(&s, Method::GET, &path, Some(&key), None).await;
    assert_eq!(feed[0]["title"], Value::Null);
    let (status, e) = generate(&s, &key, None, &json!({"lyrics": LYRICS, "title": "a\nb"})).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("title"),
    );
}

#[tokio::test]
async fn an_idempotency_key_answers_the_same_two_takes() {
    let s = start().await;
    let key = add_key(&s, "client");
    let other_key = add_key(&s, "other");
    let body = json!({"title": "Once", "lyrics": LYRICS, "tags": "pop"});
    let (status, first) = generate(&s, &key, Some("req-1"), &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, again) = generate(&s, &key, Some("req-1"), &body).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(ids(&again), ids(&first));
    assert_ne!(ids(&first)[0], ids(&first)[1]);
    let total = |s: &TestService| s.app.counts().unwrap().values().sum::<usize>();
    assert_eq!(total(&s), 2);

    // The same key with another body: a conflict, in this API's error shape.
    let (status, e) = generate(
        &s,
        &key,
        Some("req-1"),
        &json!({"lyrics": LYRICS, "tags": "rock"}),
    )
    .await;
    refused(
        status,
        &e,
        StatusCode::CONFLICT,
        "idempotency_conflict",
        Some("Idempotency-Key"),
    );
    // Topic mode shares the mechanism; a key is per API key, and a bad key is refused.
    let topic = json!({"topic": "rain on a tin roof"});
    let (status, t1) = call(
        &s,
        Method::POST,
        "/riffusion/generate/topic",
        Some(&key),
        Some(&topic),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{t1}");
    let (status, same) = generate(&s, &other_key, Some("req-1"), &body).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_ne!(ids(&same), ids(&first));
    let (status, e) = generate(&s, &key, Some(&"k".repeat(256)), &body).await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("Idempotency-Key"),
    );
    let r = s
        .client
        .post(format!("{}/riffusion/generate/topic", s.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "topic-1")
        .json(&topic)
        .send()
        .await
        .unwrap();
    let t2: Value = r.json().await.unwrap();
    let r = s
        .client
        .post(format!("{}/riffusion/generate/topic", s.base))
        .bearer_auth(&key)
        .header("Idempotency-Key", "topic-1")
        .json(&topic)
        .send()
        .await
        .unwrap();
    let t3: Value = r.json().await.unwrap();
    assert_eq!(ids(&t2), ids(&t3));
    assert_eq!(total(&s), 2 + 2 + 2 + 2);
}

#[tokio::test]
async fn per_key_limits_count_both_takes() {
    let s = start_with(|c| {
        c.riffusion_api.limits = Quota {
            concurrent: 3,
            per_minute: 0,
            per_day: 0,
        }
    })
    .await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let body = json!({"lyrics": LYRICS});
    let (status, first) = generate(&s, &key, None, &body).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    // Two more takes would make four at once, over three: refused, and no take is made.
    let (status, e) = generate(&s, &key, None, &body).await;
    refused(
        status,
        &e,
        StatusCode::TOO_MANY_REQUESTS,
        "owner_limit",
        None,
    );
    assert!(e["error"]["retry_after"].as_u64().is_some(), "{e}");
    assert_eq!(s.app.counts().unwrap().values().sum::<usize>(), 2);
    // Another key has its own limit; a finished take frees room.
    let (status, _) = generate(&s, &other, None, &body).await;
    assert_eq!(status, StatusCode::OK);
    finish(&s, &ids(&first)[0], 95.2).await;
    let (status, created) = generate(&s, &key, None, &body).await;
    assert_eq!(status, StatusCode::OK, "{created}");

    // A per-minute limit counts takes too.
    let s = start_with(|c| {
        c.riffusion_api.limits = Quota {
            concurrent: 0,
            per_minute: 3,
            per_day: 0,
        }
    })
    .await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let (status, _) = generate(&s, &key, None, &body).await;
    assert_eq!(status, StatusCode::OK);
    let (status, e) = generate(&s, &key, None, &body).await;
    refused(
        status,
        &e,
        StatusCode::TOO_MANY_REQUESTS,
        "owner_limit",
        None,
    );
    let retry = e["error"]["retry_after"].as_u64().unwrap();
    assert!((1..=60).contains(&retry), "{e}");
}
