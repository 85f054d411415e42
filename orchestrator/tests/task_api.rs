//! The PiAPI / Qubico task API in process: keys and the spec's error shapes, every input error
//! with its own code, SSRF refusals with loopback spellings only (nothing allow-listed), a task
//! run to completion in both spellings with its MP3, result URLs on `[task_api] public_url`,
//! cancel, per-key limits with `Retry-After`, reference audio by base64 and by URL. (Webhooks:
//! `task_api_webhooks.rs`; the real binary, a restart between a failed delivery and its retry,
//! and an independent signature verifier: `tests/task_api.rs` at the workspace root.)

use crate::support;
use crate::task_common;

use protocol::JobId;
use refrain_orchestrator::jobs::limits::Quota;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::http::{audio_store, wav};
use support::{start, start_with};
use task_common::{add_key, call, finish, lyrics, task};

#[tokio::test]
async fn keys_are_required_and_refusals_use_the_spec_shape() {
    let s = start().await;
    let body = task("txt2audio-base", json!({"lyrics": lyrics()}));
    // No key configured at all: the task API is closed (Refrain's own API is open).
    let (status, _, e) = call(&s, Method::POST, "/v1/inference", None, Some(&body)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(e["error"]["code"], "UNAUTHORIZED", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refrain keys add"),
        "{e}"
    );
    let key = add_key(&s, "client");
    for (path, key) in [
        ("/v1/inference", None),
        ("/v1/inference", Some("rf_not_a_key")),
        ("/api/v1/task", None),
    ] {
        let (status, _, e) = call(&s, Method::POST, path, key, Some(&body)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {key:?}");
        assert_eq!(e["error"]["code"], "UNAUTHORIZED", "{e}");
        if path == "/api/v1/task" {
            // PiAPI's envelope around the same error object.
            assert_eq!(e["code"], 401, "{e}");
            assert_eq!(e["data"], Value::Null, "{e}");
        }
    }
    let (status, _, _) = call(&s, Method::GET, "/v1/tasks/0123", Some(&key), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_bad_input_has_its_own_code() {
    let s = start().await;
    let key = add_key(&s, "client");
    let post = |body: Value| {
        let s = &s;
        let key = key.clone();
        async move { call(s, Method::POST, "/v1/inference", Some(&key), Some(&body)).await }
    };
    // Exactly the spec's error object.
    for input in [
        json!({}),
        json!({"lyrics": "", "style_prompt": " ", "style_audio": ""}),
    ] {
        let (status, _, e) = post(task("txt2audio-base", input)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e,
            json!({"error": {
                "code": "MISSING_INPUT_PARAMETERS",
                "message": "At least one of 'lyrics', 'style_prompt', or 'style_audio' must be provided",
                "details": {"required_parameters": ["lyrics", "style_prompt", "style_audio"],
                            "constraint": "at_least_one"}}})
        );
    }
    let cases: Vec<(Value, &str, Option<&str>)> = vec![
        (
            json!({"model": "Qubico/other", "task_type": "txt2audio-base", "input": {"lyrics": "x"}}),
            "INVALID_MODEL",
            Some("model"),
        ),
        (
            json!({"model": "Qubico/diffrhythm", "task_type": "txt2audio-long", "input": {"lyrics": "x"}}),
            "INVALID_TASK_TYPE",
            Some("task_type"),
        ),
        (
            json!({"model": "Qubico/diffrhythm", "task_type": "txt2audio-base", "input": {"lyrics": 5}}),
            "INVALID_JSON",
            None,
        ),
        (
            task(
                "txt2audio-base",
                json!({"lyrics": "[00:75.00] no such second"}),
            ),
            "INVALID_LYRICS",
            Some("input.lyrics"),
        ),
        (
            task("txt2audio-base", json!({"style_audio": "bm90IGF1ZGlv"})),
            "INVALID_AUDIO",
            Some("input.style_audio"),
        ),
    ];
    for (body, code, field) in cases {
        let (status, _, e) = post(body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {e}");
        assert_eq!(e["error"]["code"], code, "{body}: {e}");
        if let Some(field) = field {
            assert_eq!(e["error"]["details"]["field"], field, "{body}: {e}");
        }
    }
    let r = s
        .client
        .post(format!("{}/api/v1/task", s.base))
        .header("x-api-key", &key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(
        (e["code"].clone(), e["error"]["code"].clone()),
        (json!(400), json!("INVALID_JSON"))
    );

    // Loopback in every spelling, as style audio and as webhook endpoint: refused before any
    // connection (nothing is allow-listed), and no job is made.
    let port = s.addr.port();
    for host in [
        "127.0.0.1".to_string(),
        "127.1".into(),
        "2130706433".into(),
        "[::1]".into(),
        "[::ffff:127.0.0.1]".into(),
        "localhost".into(),
    ] {
        let url = format!("http://{host}:{port}/output/x.wav");
        let (status, _, e) = post(task("txt2audio-base", json!({"style_audio": url}))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {e}");
        assert_eq!(e["error"]["code"], "INVALID_URL", "{url}: {e}");
        let mut body = task("txt2audio-base", json!({"lyrics": lyrics()}));
        body["config"] = json!({"webhook_config": {"endpoint": url, "secret": "s"}});
        let (status, _, e) = post(body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {e}");
        assert_eq!(e["error"]["code"], "INVALID_WEBHOOK", "{url}: {e}");
        assert_eq!(
            e["error"]["details"]["field"],
            "config.webhook_config.endpoint"
        );
    }
    let mut body = task("txt2audio-base", json!({"lyrics": lyrics()}));
    body["config"] = json!({"webhook_config": {"endpoint": "ftp://example.com/x", "secret": ""}});
    assert_eq!(post(body).await.2["error"]["code"], "INVALID_WEBHOOK");
    assert_eq!(s.app.store().count(protocol::JobState::Queued).unwrap(), 0);
}

#[tokio::test]
async fn a_task_runs_to_completed_in_both_spellings() {
    let s = start().await;
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");

    // The PiAPI documentation's example body, unchanged (empty lyrics, audio and webhook).
    let example = json!({
        "model": "Qubico/diffrhythm",
        "task_type": "txt2audio-base",
        "input": {"lyrics": "", "style_prompt": "pop", "style_audio": ""},
        "config": {"webhook_config": {"endpoint": "", "secret": ""}}
    });
    let (status, _, created) =
        call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&example)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["data"]["status"], "Pending");
    let id = JobId::parse(created["data"]["task_id"].as_str().unwrap()).unwrap();
    assert!(s.app.webhooks().target(&id).unwrap().is_none());
    s.app.cancel(&id).await.unwrap();

    // PiAPI: lyrics only, the style defaults to pop.
    let (status, _, created) = call(
        &s,
        Method::POST,
        "/api/v1/task",
        Some(&key),
        Some(&task(
            "txt2audio-base",
            json!({"lyrics": lyrics(), "style_prompt": "", "style_audio": ""}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(
        (created["code"].clone(), created["message"].clone()),
        (json!(200), json!("success"))
    );
    let data = &created["data"];
    assert_eq!(data["status"], "Pending");
    assert_eq!(data["model"], "Qubico/diffrhythm");
    assert_eq!(data["task_type"], "txt2audio-base");
    assert_eq!(data["input"]["style_prompt"], "pop");
    assert_eq!(data["output"], Value::Null);
    assert_eq!(data["meta"]["started_at"], "0001-01-01T00:00:00Z");
    assert_eq!(data["error"]["code"], 0);
    let piapi = data["task_id"].as_str().unwrap().to_string();

    // Qubico: a style prompt only, the full length.
    let (status, _, created) = call(
        &s,
        Method::POST,
        "/v1/inference",
        Some(&key),
        Some(&task(
            "txt2audio-full",
            json!({"style_prompt": "upbeat pop with electronic elements"}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["task_type"], "txt2audio-full");
    assert!(created["estimated_time"].as_u64().unwrap() > 0, "{created}");
    assert!(created["created_at"].as_str().unwrap().ends_with('Z'));
    let qubico = created["task_id"].as_str().unwrap().to_string();
    let record = s
        .app
        .store()
        .get(&JobId::parse(&qubico).unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(record.spec.seconds, 285);
    assert_eq!(record.owner.to_string(), "key:client");

    // Another key sees neither.
    for path in [
        format!("/api/v1/task/{piapi}"),
        format!("/v1/tasks/{qubico}"),
    ] {
        let (status, _, e) = call(&s, Method::GET, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(e["error"]["code"], "TASK_NOT_FOUND");
    }

    finish(&s, &piapi).await;
    finish(&s, &qubico).await;

    let (_, _, got) = call(
        &s,
        Method::GET,
        &format!("/api/v1/task/{piapi}"),
        Some(&key),
        None,
    )
    .await;
    let data = &got["data"];
    assert_eq!(data["status"], "Completed", "{got}");
    assert_ne!(data["meta"]["ended_at"], "0001-01-01T00:00:00Z");
    let url = data["output"]["audio_url"].as_str().unwrap();
    assert!(url.starts_with(&s.base) && url.ends_with(".mp3"), "{url}");
    let (_, _, got) = call(
        &s,
        Method::GET,
        &format!("/v1/tasks/{qubico}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(got["status"], "completed", "{got}");
    assert!(got["completed_at"].is_string());
    assert_eq!(got["usage"], json!({"credits_used": 1}));
    let result = &got["results"][0];
    assert_eq!(
        (
            result["format"].clone(),
            result["sample_rate"].clone(),
            result["channels"].clone()
        ),
        (json!("mp3"), json!(44100), json!(2))
    );
    assert!(
        (result["duration"].as_f64().unwrap() - 1.0).abs() < 0.1,
        "{result}"
    );
    let mp3 = s
        .client
        .get(result["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(mp3.status(), StatusCode::OK);
    assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
    assert!(mp3.bytes().await.unwrap().len() > 1000);

    // A finished task cannot be cancelled; a pending one can.
    let (status, _, e) = call(
        &s,
        Method::DELETE,
        &format!("/v1/tasks/{qubico}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(e["error"]["code"], "TASK_NOT_CANCELLABLE");
    let (_, _, created) = call(
        &s,
        Method::POST,
        "/api/v1/task",
        Some(&key),
        Some(&task("txt2audio-base", json!({"style_prompt": "jazz"}))),
    )
    .await;
    let id = created["data"]["task_id"].as_str().unwrap();
    let (status, _, cancelled) = call(
        &s,
        Method::DELETE,
        &format!("/api/v1/task/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    assert_eq!(cancelled["data"]["status"], "Failed");
    assert_eq!(
        cancelled["data"]["error"]["message"],
        "cancelled by request"
    );
    let (_, _, got) = call(
        &s,
        Method::GET,
        &format!("/v1/tasks/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(got["status"], "failed");
    assert_eq!(got["error"]["code"], "TASK_CANCELLED");
}

#[tokio::test]
async fn per_key_limits_answer_429_with_retry_after() {
    let s = start().await; // the hosted service's defaults: 3 at once, 10 a minute, 100 a day
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let body = task("txt2audio-base", json!({"style_prompt": "pop"}));
    for _ in 0..3 {
        let (status, _, e) = call(&s, Method::POST, "/v1/inference", Some(&key), Some(&body)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{e}");
    }
    let (status, headers, e) =
        call(&s, Method::POST, "/v1/inference", Some(&key), Some(&body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["error"]["code"], "RATE_LIMIT_EXCEEDED");
    assert!(headers.contains_key("retry-after"));
    // Limits are per key.
    let (status, _, _) = call(&s, Method::POST, "/v1/inference", Some(&other), Some(&body)).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Per minute and per day, with the exact wait.
    for (quota, window) in [
        (
            Quota {
                concurrent: 0,
                per_minute: 2,
                per_day: 0,
            },
            60,
        ),
        (
            Quota {
                concurrent: 0,
                per_minute: 0,
                per_day: 2,
            },
            86_400,
        ),
    ] {
        let s = start_with(|c| c.task_api.limits = quota).await;
        s.app.set_ready(true);
        let key = add_key(&s, "client");
        for _ in 0..2 {
            let (status, _, _) =
                call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&body)).await;
            assert_eq!(status, StatusCode::OK);
        }
        let (status, headers, e) =
            call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&body)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
        assert_eq!(e["code"], 429);
        let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            wait >= window - 5 && wait <= window,
            "{wait} for a {window} s window"
        );
        assert_eq!(e["error"]["details"]["retry_after"], wait);
    }
}

#[tokio::test]
async fn style_audio_by_base64_and_by_allow_listed_url() {
    use base64::Engine;
    let clip = wav(12.0, 22_050);
    // The audio store on its own loopback address, the only one allow-listed.
    let store = audio_store("127.0.0.3", clip.clone()).await;
    let s = start_with(|c| c.fetch.allow = vec!["127.0.0.3/32".parse().unwrap()]).await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    for audio in [
        format!("http://{store}/song.wav"),
        base64::engine::general_purpose::STANDARD.encode(&clip),
        format!(
            "data:audio/wav;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&clip)
        ),
    ] {
        let (status, _, got) = call(
            &s,
            Method::POST,
            "/api/v1/task",
            Some(&key),
            Some(&task(
                "txt2audio-base",
                json!({"lyrics": lyrics(), "style_audio": audio}),
            )),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(got["data"]["input"]["style_audio"], "(reference audio)");
        let id = JobId::parse(got["data"]["task_id"].as_str().unwrap()).unwrap();
        let record = s.app.store().get(&id).unwrap().unwrap();
        assert!(
            matches!(record.spec.style, protocol::StyleSpec::Upload(_)),
            "{:?}",
            record.spec.style
        );
        s.app.cancel(&id).await.unwrap();
    }
    // A redirect from the allow-listed store to loopback is refused at the second hop.
    let (status, _, e) = call(
        &s,
        Method::POST,
        "/v1/inference",
        Some(&key),
        Some(&task(
            "txt2audio-base",
            json!({"style_audio": format!("http://{store}/elsewhere.wav")}),
        )),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{e}");
    assert_eq!(e["error"]["code"], "INVALID_URL", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1"),
        "{e}"
    );
}

#[tokio::test]
async fn result_urls_are_on_the_configured_public_url() {
    // The address clients see (a reverse proxy's) differs from the one the server is bound to;
    // nothing is sent to it: the test fetches the same path from the server on loopback.
    let public = "https://songs.example.com/refrain";
    let s = start_with(|c| c.task_api.public_url = Some(format!("{public}/"))).await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let body = task("txt2audio-base", json!({"lyrics": lyrics()}));
    let (status, _, created) =
        call(&s, Method::POST, "/api/v1/task", Some(&key), Some(&body)).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["data"]["task_id"].as_str().unwrap().to_string();
    finish(&s, &id).await;

    let path = format!("/api/v1/task/{id}");
    let (_, _, piapi) = call(&s, Method::GET, &path, Some(&key), None).await;
    let url = piapi["data"]["output"]["audio_url"].as_str().unwrap();
    let (_, _, qubico) = call(
        &s,
        Method::GET,
        &format!("/v1/tasks/{id}"),
        Some(&key),
        None,
    )
    .await;
    assert_eq!(qubico["results"][0]["url"], url, "{qubico}");
    let below = url
        .strip_prefix(public)
        .unwrap_or_else(|| panic!("{url} is not on {public}"));
    assert!(
        below.starts_with("/output/") && below.ends_with(".mp3"),
        "{url}"
    );
    assert!(!url.contains(&s.base), "{url}");
    let mp3 = s
        .client
        .get(format!("{}{below}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(mp3.status(), StatusCode::OK);
    assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
}
