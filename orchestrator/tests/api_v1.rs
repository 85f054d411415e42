//! Refrain's own API (`/api/v1`, `docs/api.md`) in process, on the real service with idle nodes:
//! create from JSON (201, `Location`, idempotent replays), the error shape, uploads, listing with
//! cursors and filters, cancel, downloads in every format with `ETag` and a file name from the
//! lyrics, and API keys (401 without, the key's name as owner).

use crate::support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::http::wav;
use support::{start, TestService};

impl TestService {
    async fn post_job(
        &self,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .client
            .post(format!("{}/api/v1/jobs", self.base))
            .json(&body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let r = request.send().await.unwrap();
        let (status, headers) = (r.status(), r.headers().clone());
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    async fn api(&self, method: reqwest::Method, path: &str) -> (StatusCode, Value) {
        let r = self
            .client
            .request(method, format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }
}

fn song() -> Value {
    json!({
        "lyrics": "[00:01.00] Hello, World! again\n[00:05.00] la la",
        "style": {"prompt": "warm piano ballad"},
        "length_seconds": 95,
        "seed": 7,
        "format": "mp3",
    })
}

#[tokio::test]
async fn create_read_list_cancel() {
    let s = start().await;
    let (status, headers, job) = s.post_job(song(), None).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(headers["location"], format!("/api/v1/jobs/{id}"));
    assert_eq!(job["state"], "queued");
    assert_eq!(job["queue_position"], 0);
    assert_eq!(job["source"], "refrain_api");
    assert_eq!(job["owner"], "anonymous");
    assert_eq!(job["request"]["format"], "mp3");
    assert_eq!(
        job["request"]["style"],
        json!({"prompt": "warm piano ballad"})
    );
    assert_eq!(job["links"]["events"], format!("/api/v1/jobs/{id}/events"));
    assert!(job["created_at"].as_str().unwrap().ends_with('Z'));

    // Idempotency: the same key and body → the same job, 200; another body → 409.
    let (s1, _, a) = s.post_job(song(), Some("retry-1")).await;
    let (s2, _, b) = s.post_job(song(), Some("retry-1")).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);
    let mut other = song();
    other["length_seconds"] = json!(120);
    let (s3, _, e) = s.post_job(other, Some("retry-1")).await;
    assert_eq!(s3, StatusCode::CONFLICT);
    assert_eq!(e["error"]["code"], "idempotency_conflict");

    // Listing: newest first, pages, filters.
    let (status, page) = s.api(reqwest::Method::GET, "/api/v1/jobs?limit=1").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["jobs"][0]["id"], a["id"]);
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, page2) = s
        .api(
            reqwest::Method::GET,
            &format!("/api/v1/jobs?limit=5&cursor={cursor}"),
        )
        .await;
    assert_eq!(page2["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(page2["jobs"][0]["id"], id.as_str());
    assert!(page2["next_cursor"].is_null());
    let (_, none) = s
        .api(reqwest::Method::GET, "/api/v1/jobs?state=succeeded")
        .await;
    assert_eq!(none["jobs"], json!([]));
    let (status, bad) = s.api(reqwest::Method::GET, "/api/v1/jobs?limit=1000").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(bad["error"]["field"], "limit");

    // Cancel: 200 with the job, then 409; audio of a cancelled job is 404.
    let (status, c) = s
        .api(reqwest::Method::DELETE, &format!("/api/v1/jobs/{id}"))
        .await;
    assert_eq!(
        (status, c["state"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    let (status, again) = s
        .api(reqwest::Method::DELETE, &format!("/api/v1/jobs/{id}"))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(again["error"]["code"], "job_finished");
    let (status, _) = s
        .api(reqwest::Method::GET, &format!("/api/v1/jobs/{id}/audio"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, e) = s
        .api(
            reqwest::Method::GET,
            "/api/v1/jobs/0123456789abcdef0123456789abcdef",
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(e["error"]["code"], "not_found");
}

#[tokio::test]
async fn the_client_data_can_be_replaced_in_any_state() {
    let s = start().await;
    let mut body = song();
    body["client_data"] = json!("bot;d=0");
    let (status, _, job) = s.post_job(body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    let path = format!("{}/api/v1/jobs/{id}", s.base);
    let patch = |body: Value| s.client.patch(&path).json(&body).send();
    // Ended (cancelled) jobs too: a bot notes the delivery after the end.
    let (status, _) = s
        .api(reqwest::Method::DELETE, &format!("/api/v1/jobs/{id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = patch(json!({"client_data": "bot;d=1"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let j: Value = r.json().await.unwrap();
    assert_eq!(
        (j["client_data"].as_str(), j["state"].as_str()),
        (Some("bot;d=1"), Some("cancelled"))
    );
    let (_, read) = s
        .api(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"))
        .await;
    assert_eq!(read["client_data"], "bot;d=1");
    // Nothing but client_data; at most 2048 bytes; unknown ids are 404; null removes it.
    let r = patch(json!({"state": "queued"})).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["field"], "body", "{e}");
    let r = patch(json!({"client_data": "x".repeat(2049)}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = s
        .client
        .patch(format!(
            "{}/api/v1/jobs/0123456789abcdef0123456789abcdef",
            s.base
        ))
        .json(&json!({"client_data": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = patch(json!({"client_data": null})).await.unwrap();
    let j: Value = r.json().await.unwrap();
    assert!(j["client_data"].is_null(), "{j}");
    // No event was added for these notes.
    assert_eq!(j["last_event"], job["last_event"].as_u64().unwrap() + 1);
}

#[tokio::test]
async fn bad_requests_name_their_field() {
    let s = start().await;
    let cases = [
        (
            json!({"style": {"prompt": "x"}}),
            "missing_field",
            "length_seconds",
        ),
        (json!({"length_seconds": 95}), "missing_field", "style"),
        (
            json!({"length_seconds": 95, "style": {"prompt": "x", "upload_id": "y"}}),
            "invalid_field",
            "style",
        ),
        (
            json!({"length_seconds": 95, "style": {"prompt": "x"}, "format": "flac"}),
            "invalid_format",
            "format",
        ),
        (
            json!({"length_seconds": 50, "style": {"prompt": "x"}}),
            "invalid_length",
            "length_seconds",
        ),
        (
            json!({"length_seconds": 95, "style": {"prompt": "x"}, "lyrics": "[00:75.00] no"}),
            "invalid_lyrics",
            "lyrics",
        ),
        (
            json!({"length_seconds": 95, "style": {"prompt": "x"}, "colour": "blue"}),
            "invalid_field",
            "body",
        ),
        (
            json!({"length_seconds": 95, "style": {"prompt": "x"},
                   "edit": {"song": {"job": "nope"}, "segments": [[0, 10]]}}),
            "invalid_reference",
            "edit.song",
        ),
    ];
    for (body, code, field) in cases {
        let (status, _, e) = s.post_job(body.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        assert_eq!(e["error"]["field"], field, "{body}: {e}");
        assert!(e["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
}

#[tokio::test]
async fn uploads_downloads_and_formats() {
    let s = start().await;
    // An upload as a raw body, then used by id.
    let clip = wav(12.0, 22_050);
    let r = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .header("content-type", "audio/wav")
        .body(clip.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let up: Value = r.json().await.unwrap();
    assert!(
        (up["duration_seconds"].as_f64().unwrap() - 12.0).abs() < 0.01,
        "{up}"
    );
    let mut body = song();
    body["style"] = json!({"upload_id": up["upload_id"]});
    body["variants"] = json!(2);
    let (status, _, job) = s.post_job(body, None).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["request"]["style"], json!({"audio": "uploaded"}));
    // Not audio: refused with its field.
    let r = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .header("content-type", "audio/wav")
        .body("not audio")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // Finish the job as a node would, then download.
    let id = protocol::JobId::parse(job["id"].as_str().unwrap()).unwrap();
    let record = s.app.store().get(&id).unwrap().unwrap();
    s.app.lifecycle().start(&id, 1, 1).await.unwrap();
    let song = wav(1.0, 44_100);
    let result = refrain_orchestrator::jobs::results::store_variants(
        s.app.outputs(),
        &id,
        &record.spec,
        1,
        &[song.clone(), song.clone()],
        1.0,
    )
    .await
    .unwrap();
    s.app.lifecycle().succeed(&id, 1, result).await.unwrap();
    let (_, done) = s
        .api(reqwest::Method::GET, &format!("/api/v1/jobs/{id}"))
        .await;
    assert_eq!(done["state"], "succeeded");
    let files = done["result"]["files"].as_array().unwrap();
    assert_eq!(files.len(), 4, "{done}"); // 2 variants × (wav + the asked-for mp3)
                                          // The succeeded event carries the download URL of each file.
    let event = s.wait_event(&id.to_string(), "succeeded").await;
    assert_eq!(
        event["result"]["files"][1]["url"],
        format!("/api/v1/jobs/{id}/audio/2?format=wav"),
        "{event}"
    );
    // Each file's public link (for players and download links) serves the same file.
    for file in files {
        let public = file["public_url"].as_str().unwrap();
        let ext = file["format"].as_str().unwrap();
        assert!(
            public.starts_with("/output/") && public.ends_with(&format!(".{ext}")),
            "{file}"
        );
        let by_api = s
            .client
            .get(format!("{}{}", s.base, file["url"].as_str().unwrap()));
        let by_link = s.client.get(format!("{}{public}", s.base));
        let (a, b) = (by_api.send().await.unwrap(), by_link.send().await.unwrap());
        assert_eq!(b.status(), StatusCode::OK, "{public}");
        assert_eq!(a.headers()["content-type"], b.headers()["content-type"]);
        assert_eq!(
            a.bytes().await.unwrap(),
            b.bytes().await.unwrap(),
            "{public}"
        );
    }

    let get = |path: String| {
        let client = s.client.clone();
        let url = format!("{}{path}", s.base);
        async move { client.get(url).send().await.unwrap() }
    };
    // Default: variant 1 in the job's format (mp3).
    let r = get(format!("/api/v1/jobs/{id}/audio")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"hello-world-again.mp3\""
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    // Conditional and ranged requests.
    let r = s
        .client
        .get(format!("{}/api/v1/jobs/{id}/audio/2?format=wav", s.base))
        .header("range", "bytes=0-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"RIFF");
    // Asked for with credentials (here ignored: no keys are configured), a shared cache must
    // not keep it.
    let r = s
        .client
        .get(format!("{}/api/v1/jobs/{id}/audio/2?format=wav", s.base))
        .bearer_auth("rf_anything")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["cache-control"], "private, max-age=86400");
    let r = get(format!("/api/v1/jobs/{id}/audio/2?format=ogg")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["content-disposition"],
        "attachment; filename=\"hello-world-again-2.ogg\""
    );
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(
        get(format!("/api/v1/jobs/{id}/audio/3")).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(format!("/api/v1/jobs/{id}/audio/1?format=flac"))
            .await
            .status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn api_keys_guard_the_api_and_name_the_owner() {
    let s = start().await;
    let key =
        refrain_orchestrator::api::v1::auth::add_key(&s.app.config().api_keys_path(), "alice")
            .unwrap();
    let (status, e) = s.api(reqwest::Method::GET, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["code"], "unauthorized");
    let r = s
        .client
        .post(format!("{}/api/v1/jobs", s.base))
        .bearer_auth(&key)
        .json(&song())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let job: Value = r.json().await.unwrap();
    assert_eq!(job["owner"], "key:alice");
    let r = s
        .client
        .get(format!("{}/api/v1/jobs", s.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .get(format!("{}/api/v1/jobs", s.base))
        .bearer_auth("rf_not_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The DiffRhythm API stays as the reference server has it.
    let (status, _) = s.api(reqwest::Method::GET, "/status").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn serving_the_api_beyond_loopback_needs_keys() {
    // Refused before anything is bound: no socket is opened on another address.
    let dir = tempfile::tempdir().unwrap();
    let config = refrain_orchestrator::Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        bundle: std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle"),
        ..refrain_orchestrator::Config::default()
    };
    let refused = refrain_orchestrator::service::start(config, support::idle_nodes()).await;
    let message = refused.err().expect("refused").to_string();
    assert!(message.contains("without API keys"), "{message}");
    assert!(message.contains("refrain keys add"), "{message}");
}
