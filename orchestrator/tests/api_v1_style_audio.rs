//! `POST /api/v1/jobs` with the style as audio inside the JSON body, in process on the real
//! service with idle nodes: `style.audio_base64` (a WAV, plain and as a `data:` URL; bad base64
//! is the API's error shape naming the field) and `style.audio_url` (an audio store on a
//! loopback address that only `fetch.allow` lets the server call; without that entry, and for
//! every loopback URL by default, refused naming the field). Nothing here leaves 127.0.0.0/8
//! and no host name is resolved.

use crate::support;

use base64::Engine as _;
use protocol::{JobId, StyleSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::http::{audio_store, wav};
use support::{start, start_with, TestService};

/// The loopback address of this file's audio store (other test files use 127.0.0.3–5).
const STORE_IP: &str = "127.0.0.6";

async fn create(s: &TestService, style: Value) -> (StatusCode, Value) {
    let body = json!({
        "lyrics": "[00:01.00] hello there",
        "style": style,
        "length_seconds": 95,
    });
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, value)
}

/// The stored reference audio of a created job.
async fn style_audio(s: &TestService, job: &Value) -> Vec<u8> {
    assert_eq!(job["state"], "queued", "{job}");
    assert_eq!(
        job["request"]["style"],
        json!({"audio": "uploaded"}),
        "{job}"
    );
    let id = JobId::parse(job["id"].as_str().unwrap()).unwrap();
    let record = s.app.store().get(&id).unwrap().unwrap();
    let StyleSpec::Upload(blob) = &record.spec.style else {
        panic!("the style is not audio: {:?}", record.spec.style)
    };
    s.app.blobs().read(blob).await.unwrap()
}

/// The API's error shape: `{"error": {"code", "message", "field"}}`.
fn assert_error(status: StatusCode, body: &Value, code: &str, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert_eq!(body["error"]["field"], field, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn audio_base64_in_json_is_stored_and_bad_base64_names_the_field() {
    let s = start().await;
    let clip = wav(12.0, 16_000);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&clip);

    let (status, job) = create(&s, json!({"audio_base64": b64})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(style_audio(&s, &job).await, clip);

    let data_url = format!("data:audio/wav;base64,{b64}");
    let (status, job) = create(&s, json!({"audio_base64": data_url})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(style_audio(&s, &job).await, clip);

    let uploads = std::fs::read_dir(s.app.config().blobs_dir())
        .unwrap()
        .count();
    for bad in ["not base64 at all!", "data:audio/wav,UklGRg=="] {
        let (status, e) = create(&s, json!({"audio_base64": bad})).await;
        assert_error(status, &e, "invalid_audio", "style.audio");
    }
    // Base64 of bytes that are no audio: decoded, then refused as audio.
    let noise = base64::engine::general_purpose::STANDARD.encode([7u8; 4000]);
    let (status, e) = create(&s, json!({"audio_base64": noise})).await;
    assert_error(status, &e, "invalid_audio", "style.audio");
    // A clip shorter than the style clip: refused the same way.
    let short = base64::engine::general_purpose::STANDARD.encode(wav(3.0, 16_000));
    let (status, e) = create(&s, json!({"audio_base64": short})).await;
    assert_error(status, &e, "invalid_audio", "style.audio");
    // Nothing refused was kept, and only the two jobs exist.
    let after = std::fs::read_dir(s.app.config().blobs_dir())
        .unwrap()
        .count();
    assert_eq!(after, uploads);
    let (_, list) = {
        let r = s
            .client
            .get(format!("{}/api/v1/jobs", s.base))
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap())
    };
    assert_eq!(list["jobs"].as_array().unwrap().len(), 2, "{list}");
}

#[tokio::test]
async fn audio_url_on_an_allow_listed_loopback_address_is_fetched() {
    let clip = wav(12.0, 16_000);
    let store = audio_store(STORE_IP, clip.clone()).await;
    let s = start_with(|c| {
        c.fetch.allow = vec![format!("{STORE_IP}/32").parse().unwrap()];
    })
    .await;
    s.app.set_ready(true);

    let (status, job) = create(&s, json!({"audio_url": format!("http://{store}/song.wav")})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(style_audio(&s, &job).await, clip);

    // A file the store does not have: the fetch fails, naming the field.
    let (status, e) = create(&s, json!({"audio_url": format!("http://{store}/nope.wav")})).await;
    assert_error(status, &e, "fetch_failed", "style.audio");
    // A redirect to a loopback address that is not allow-listed: refused at that hop.
    let (status, e) = create(
        &s,
        json!({"audio_url": format!("http://{store}/elsewhere.wav")}),
    )
    .await;
    assert_error(status, &e, "invalid_url", "style.audio");
    // Another loopback address, not allow-listed.
    let (status, e) = create(&s, json!({"audio_url": "http://127.0.0.1:9/song.wav"})).await;
    assert_error(status, &e, "invalid_url", "style.audio");
}

#[tokio::test]
async fn loopback_audio_urls_are_refused_by_default() {
    let clip = wav(12.0, 16_000);
    let store = audio_store(STORE_IP, clip).await;
    let s = start().await;
    for url in [
        format!("http://{store}/song.wav"),
        "http://[::1]:9/song.wav".to_string(),
        "http://0x7f.1:9/song.wav".to_string(),
    ] {
        let (status, e) = create(&s, json!({"audio_url": url})).await;
        assert_error(status, &e, "invalid_url", "style.audio");
    }
    let (status, e) = create(&s, json!({"audio_url": "file:///etc/passwd"})).await;
    assert_error(status, &e, "invalid_url", "style.audio");
}
