//! Downloads sized for a chat's upload limit: a lossy format at another bitrate of the ladder
//! (`?kbps=`), and signed, expiring links (`POST /api/v1/jobs/{id}/links` → `/dl/…`) that serve
//! a song without an API key until their time, and never after it or once tampered with.

use crate::support;

use base64::Engine;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::http::wav;
use support::{start, TestService};

/// A job made as a node would make it: two variants of a 20 s song, asked for as MP3.
async fn finished_job(s: &TestService) -> String {
    let body = json!({
        "lyrics": "[00:01.00] Links that end\n[00:05.00] la la",
        "style": {"prompt": "warm piano ballad"},
        "length_seconds": 95,
        "seed": 7,
        "format": "mp3",
        "variants": 2,
    });
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    let id = protocol::JobId::parse(job["id"].as_str().unwrap()).unwrap();
    let record = s.app.store().get(&id).unwrap().unwrap();
    s.app.lifecycle().start(&id, 1, 1).await.unwrap();
    let song = wav(20.0, 44_100);
    let result = refrain_orchestrator::jobs::results::store_variants(
        s.app.outputs(),
        &id,
        &record.spec,
        1,
        &[song.clone(), song],
        20.0,
    )
    .await
    .unwrap();
    s.app.lifecycle().succeed(&id, 1, result).await.unwrap();
    id.to_string()
}

async fn get(s: &TestService, path: &str) -> reqwest::Response {
    s.client
        .get(format!("{}{path}", s.base))
        .send()
        .await
        .unwrap()
}

async fn link(s: &TestService, id: &str, body: Value) -> (StatusCode, Value) {
    let r = s
        .client
        .post(format!("{}/api/v1/jobs/{id}/links", s.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn lower_bitrates_make_smaller_files() {
    let s = start().await;
    let id = finished_job(&s).await;
    let usual = get(&s, &format!("/api/v1/jobs/{id}/audio")).await;
    assert_eq!(usual.status(), StatusCode::OK);
    let usual = usual.bytes().await.unwrap().len();
    let low = get(&s, &format!("/api/v1/jobs/{id}/audio/1?format=mp3&kbps=64")).await;
    assert_eq!(low.status(), StatusCode::OK);
    assert_eq!(low.headers()["content-type"], "audio/mpeg");
    let low = low.bytes().await.unwrap().len();
    assert!(low * 2 < usual, "64 kbps {low} bytes vs 192 kbps {usual}");
    let opus = get(&s, &format!("/api/v1/jobs/{id}/audio/2?format=ogg&kbps=32")).await;
    assert_eq!(opus.status(), StatusCode::OK);
    let bytes = opus.bytes().await.unwrap();
    assert_eq!(&bytes[..4], b"OggS");
    assert!(
        bytes.len() < low,
        "Opus at 32 kbps is smaller than MP3 at 64"
    );
    // Off the ladder, or a bitrate for WAV: the field is named.
    for query in [
        "format=mp3&kbps=100",
        "format=wav&kbps=64",
        "format=mp3&kbps=x",
    ] {
        let r = get(&s, &format!("/api/v1/jobs/{id}/audio/1?{query}")).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
        let body: Value = r.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
}

#[tokio::test]
async fn signed_links_serve_until_they_expire() {
    let s = start().await;
    let id = finished_job(&s).await;
    let (status, made) = link(
        &s,
        &id,
        json!({"variant": 2, "format": "mp3", "kbps": 96, "expires_in_seconds": 600}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let path = made["path"].as_str().unwrap();
    assert!(path.starts_with("/dl/"), "{made}");
    assert_eq!(made["url"], format!("{}{path}", s.app.public_url()));
    let expires = chrono::DateTime::parse_from_rfc3339(made["expires_at"].as_str().unwrap())
        .unwrap()
        .timestamp();
    let in_ten = chrono::Utc::now().timestamp() + 600;
    assert!((expires - in_ten).abs() <= 5, "{made}");

    // No key needed; the same bytes as the API serves, with a file name.
    let by_link = get(&s, path).await;
    assert_eq!(by_link.status(), StatusCode::OK);
    assert_eq!(by_link.headers()["content-type"], "audio/mpeg");
    assert_eq!(
        by_link.headers()["content-disposition"],
        "attachment; filename=\"links-that-end-2.mp3\""
    );
    let by_link = by_link.bytes().await.unwrap();
    let by_api = get(&s, &format!("/api/v1/jobs/{id}/audio/2?format=mp3&kbps=96")).await;
    assert_eq!(by_api.bytes().await.unwrap(), by_link);
    // Ranges work as on every download.
    let r = s
        .client
        .get(format!("{}{path}", s.base))
        .header("range", "bytes=0-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);

    // Tampered with (another variant, a later time): as unknown.
    let other = path.replacen(&format!("{id}.2."), &format!("{id}.1."), 1);
    assert_ne!(other, path);
    let r = get(&s, &other).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(
        get(&s, "/dl/nonsense").await.status(),
        StatusCode::NOT_FOUND
    );

    // A genuine link past its time: 410, signed here with the server's own key.
    let key = std::fs::read_to_string(s.app.config().data_dir.join("download-links.key")).unwrap();
    let key: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&key[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let payload = format!("{id}.1.mp3.0.1000");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(payload.as_bytes());
    let signature =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let r = get(&s, &format!("/dl/{payload}.{signature}")).await;
    assert_eq!(r.status(), StatusCode::GONE);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "link_expired");

    // What a link cannot be made for.
    for (body, status) in [
        (json!({"expires_in_seconds": 10}), StatusCode::BAD_REQUEST),
        (
            json!({"expires_in_seconds": 30 * 24 * 3600}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"format": "flac"}), StatusCode::BAD_REQUEST),
        (
            json!({"format": "mp3", "kbps": 100}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"variant": 3}), StatusCode::NOT_FOUND),
        (json!({"colour": "red"}), StatusCode::BAD_REQUEST),
    ] {
        let (got, answer) = link(&s, &id, body.clone()).await;
        assert_eq!(got, status, "{body}: {answer}");
    }
    // An empty body: variant 1, the job's format, a day.
    let r = s
        .client
        .post(format!("{}/api/v1/jobs/{id}/links", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let made: Value = r.json().await.unwrap();
    let r = get(&s, made["path"].as_str().unwrap()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
}

#[tokio::test]
async fn no_link_for_a_song_not_made_yet() {
    let s = start().await;
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&json!({
            "lyrics": "[00:01.00] not yet",
            "style": {"prompt": "pop"},
            "length_seconds": 95,
        }))
        .send()
        .await
        .unwrap();
    let job: Value = r.json().await.unwrap();
    let (status, body) = link(&s, job["id"].as_str().unwrap(), json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = link(&s, "0123", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
