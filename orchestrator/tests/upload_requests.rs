//! Uploads through the job core's request mechanisms, on both front ends that take them
//! (`POST /api/v1/uploads` and `POST /riffusion/upload`, one path: `App::upload`): an
//! `Idempotency-Key` makes a retried upload answer the same upload (nothing stored again),
//! another upload under the key is a 409 in each API's error shape, keys are per owner; and
//! `[limits.uploads]` refuses an owner's upload over a window with 429 and `Retry-After`,
//! storing nothing, while other owners and retries under a key still pass.

use crate::riffusion_common;
use crate::support;

use refrain_orchestrator::uploads::UploadLimits;
use reqwest::StatusCode;
use riffusion_common::{add_key, refused};
use serde_json::{json, Value};
use support::http::{audio_store, wav};
use support::{start_with, TestService};

/// `POST /api/v1/uploads` of `bytes` as a multipart `file`, with an optional key.
async fn v1_upload(
    s: &TestService,
    api_key: Option<&str>,
    idem: Option<&str>,
    bytes: Vec<u8>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let part = reqwest::multipart::Part::bytes(bytes).file_name("ref.wav");
    let form = reqwest::multipart::Form::new().part("file", part);
    let mut request = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .multipart(form);
    if let Some(k) = api_key {
        request = request.bearer_auth(k);
    }
    if let Some(k) = idem {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.headers().clone(), r.json().await.unwrap())
}

/// `POST /riffusion/upload` of `body` (JSON) or of `bytes` (multipart), with an optional key.
async fn riff_upload(
    s: &TestService,
    api_key: &str,
    idem: Option<&str>,
    body: Result<Value, Vec<u8>>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = s
        .client
        .post(format!("{}/riffusion/upload", s.base))
        .bearer_auth(api_key);
    request = match body {
        Ok(json) => request.json(&json),
        Err(bytes) => {
            let part = reqwest::multipart::Part::bytes(bytes).file_name("song.wav");
            request.multipart(reqwest::multipart::Form::new().part("file", part))
        }
    };
    if let Some(k) = idem {
        request = request.header("Idempotency-Key", k);
    }
    let r = request.send().await.unwrap();
    (r.status(), r.headers().clone(), r.json().await.unwrap())
}

/// Files in the upload directory.
fn stored(s: &TestService) -> usize {
    std::fs::read_dir(s.app.config().blobs_dir())
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            !name.to_string_lossy().starts_with('.')
        })
        .count()
}

async fn ready(configure: impl FnOnce(&mut refrain_orchestrator::Config)) -> TestService {
    let s = start_with(configure).await;
    s.app.set_ready(true);
    s
}

#[tokio::test]
async fn api_v1_uploads_are_idempotent_under_a_key() {
    let s = ready(|_| {}).await;
    let clip = wav(12.0, 22_050);
    let (status, _, first) = v1_upload(&s, None, Some("up-1"), clip.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    // The retry answers the same upload with 200, and stores nothing new.
    let (status, _, again) = v1_upload(&s, None, Some("up-1"), clip.clone()).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    assert_eq!(stored(&s), 1);
    // Without a key, the same audio is a new upload.
    let (status, _, other) = v1_upload(&s, None, None, clip.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    assert_ne!(other["upload_id"], first["upload_id"]);
    // Other audio under the key: 409 in this API's shape, nothing stored.
    let (status, _, e) = v1_upload(&s, None, Some("up-1"), wav(11.0, 22_050)).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    assert_eq!(e["error"]["code"], "idempotency_conflict");
    assert_eq!(e["error"]["field"], "Idempotency-Key");
    assert_eq!(stored(&s), 2);
    // A malformed key is refused before anything is read; undecodable audio under a fresh key
    // leaves the key unused.
    let (status, _, e) = v1_upload(&s, None, Some(&"k".repeat(256)), clip.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["field"], "Idempotency-Key");
    let (status, _, e) = v1_upload(&s, None, Some("up-2"), b"not audio".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["code"], "invalid_audio");
    let (status, _, ok) = v1_upload(&s, None, Some("up-2"), clip.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{ok}");
    // The upload is usable by id, and the key still names it after a job used it.
    let job = json!({"lyrics": "", "length_seconds": 95,
        "style": {"upload_id": first["upload_id"]}});
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&job)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, _, again) = v1_upload(&s, None, Some("up-1"), clip).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
}

#[tokio::test]
async fn riffusion_uploads_are_idempotent_and_keys_are_per_api_key() {
    let clip = wav(12.0, 22_050);
    let store = audio_store("127.0.0.5", clip.clone()).await;
    let s = ready(|c| c.fetch.allow = vec!["127.0.0.5/32".parse().unwrap()]).await;
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let by_url = json!({"url": format!("http://{store}/song.wav")});
    let (status, _, first) = riff_upload(&s, &key, Some("u-1"), Ok(by_url.clone())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _, again) = riff_upload(&s, &key, Some("u-1"), Ok(by_url.clone())).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again, first);
    assert_eq!(stored(&s), 1);
    // Another URL (or a file) under the key: a conflict in this API's error shape.
    let elsewhere = json!({"url": format!("http://{store}/other.wav")});
    let (status, _, e) = riff_upload(&s, &key, Some("u-1"), Ok(elsewhere)).await;
    refused(
        status,
        &e,
        StatusCode::CONFLICT,
        "idempotency_conflict",
        Some("Idempotency-Key"),
    );
    let (status, _, e) = riff_upload(&s, &key, Some("u-1"), Err(clip.clone())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{e}");
    // Another API key has keys of its own.
    let (status, _, theirs) = riff_upload(&s, &other, Some("u-1"), Err(clip.clone())).await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
    // Multipart retries are idempotent too; the two front ends share the owner's keys.
    let (_, _, m1) = riff_upload(&s, &other, Some("u-2"), Err(clip.clone())).await;
    let (_, _, m2) = riff_upload(&s, &other, Some("u-2"), Err(clip.clone())).await;
    assert_eq!(m1, m2);
    let (status, _, v1) = v1_upload(&s, Some(&other), Some("u-2"), clip).await;
    assert_eq!(status, StatusCode::OK, "{v1}");
    assert_eq!(v1["upload_id"], m1["id"]);
    assert_eq!(stored(&s), 3);
}

#[tokio::test]
async fn the_upload_limits_refuse_with_retry_after_on_both_routes() {
    let s = ready(|c| {
        c.limits.uploads = UploadLimits {
            per_minute: 2,
            per_day: 0,
        }
    })
    .await;
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let clip = wav(12.0, 22_050);
    let (status, _, first) = riff_upload(&s, &key, Some("a"), Err(clip.clone())).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let (status, _, _) = v1_upload(&s, Some(&key), None, clip.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    // The third in a minute, on either route: 429 with Retry-After, nothing stored.
    let (status, headers, e) = riff_upload(&s, &key, None, Err(clip.clone())).await;
    refused(
        status,
        &e,
        StatusCode::TOO_MANY_REQUESTS,
        "owner_limit",
        None,
    );
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(e["error"]["retry_after"], retry);
    let (status, headers, e) = v1_upload(&s, Some(&key), None, clip.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["error"]["code"], "owner_limit");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(stored(&s), 2);
    // A retry under a key answers its upload all the same; another key has its own limit.
    let (status, _, again) = riff_upload(&s, &key, Some("a"), Err(clip.clone())).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let (status, _, _) = riff_upload(&s, &other, None, Err(clip.clone())).await;
    assert_eq!(status, StatusCode::OK);

    // A day's limit, and 0 for none.
    let s = ready(|c| {
        c.limits.uploads = UploadLimits {
            per_minute: 0,
            per_day: 1,
        }
    })
    .await;
    let (status, _, _) = v1_upload(&s, None, None, clip.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, headers, e) = v1_upload(&s, None, None, clip.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry > 23 * 3600, "{retry}");
    let s = ready(|c| {
        c.limits.uploads = UploadLimits {
            per_minute: 0,
            per_day: 0,
        }
    })
    .await;
    for _ in 0..25 {
        let (status, _, _) = v1_upload(&s, None, None, clip.clone()).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // The defaults: 20 a minute, 200 a day.
    assert_eq!(
        UploadLimits::default(),
        UploadLimits {
            per_minute: 20,
            per_day: 200
        }
    );
}

#[tokio::test]
async fn unused_uploads_expire_and_used_ones_stay_with_their_jobs() {
    let s = ready(|_| {}).await;
    let clip = wav(12.0, 22_050);
    let (_, _, unused) = v1_upload(&s, None, Some("unused"), clip.clone()).await;
    let (_, _, used) = v1_upload(&s, None, None, clip.clone()).await;
    let job = json!({"lyrics": "", "length_seconds": 95,
        "style": {"upload_id": used["upload_id"]}});
    let create = |body: Value| {
        s.client
            .post(format!("{}/api/v1/jobs", s.base))
            .json(&body)
            .send()
    };
    assert_eq!(create(job).await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(stored(&s), 2);

    // Within 24 hours nothing expires.
    let now = refrain_orchestrator::store::now_ms();
    assert_eq!(s.app.expire_uploads(now, 100).await.unwrap(), 0);
    assert_eq!(stored(&s), 2);
    // A day and an hour later the unused upload's file is gone; the used one stays (retention
    // deletes it with its job).
    let later = now + 25 * 3600 * 1000;
    assert_eq!(s.app.expire_uploads(later, 100).await.unwrap(), 1);
    assert_eq!(stored(&s), 1);
    let path = s.app.blobs().path(used["upload_id"].as_str().unwrap());
    assert!(path.unwrap().exists(), "the used upload was deleted");
    // The expired id is refused as unknown, and its key no longer names it.
    let job = json!({"lyrics": "", "length_seconds": 95,
        "style": {"upload_id": unused["upload_id"]}});
    let r = create(job).await.unwrap();
    let status = r.status();
    let e: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    let (status, _, again) = v1_upload(&s, None, Some("unused"), clip).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    assert_ne!(again["upload_id"], unused["upload_id"]);
    // At that later time the new upload expires too; the used one still stays.
    assert_eq!(s.app.expire_uploads(later, 100).await.unwrap(), 1);
    assert_eq!(stored(&s), 1);
    assert_eq!(s.app.expire_uploads(later, 100).await.unwrap(), 0);
}
