//! The Riffusion-style API in process: bearer keys, two takes per request with their own seeds,
//! automatic timing of structured lyrics, the topic mode, the feed with real progress and MP3
//! URLs, uploads by multipart and by URL (loopback refused by the outbound guard), the
//! `normalized_*` controls, and every error in the one shape. (Transforms:
//! `riffusion_transforms.rs`; the real binary and ONNX Runtime, with the oracle: `tests/riffusion_api.rs` at the
//! workspace root.)

use crate::riffusion_common;
use crate::support;

use protocol::{ProgressEvent, Stage, StyleSpec};
use refrain_orchestrator::jobs::results::store_variants;
use reqwest::{Method, StatusCode};
use riffusion_common::start;
use riffusion_common::{add_key, call, ids, refused, upload, LYRICS};
use serde_json::{json, Value};
use support::http::{audio_store, wav};
use support::start_with;

#[tokio::test]
async fn bearer_keys_are_required() {
    let s = start().await;
    let body = json!({"lyrics": LYRICS});
    let (status, e) = call(&s, Method::POST, "/riffusion/generate", None, Some(&body)).await;
    refused(status, &e, StatusCode::UNAUTHORIZED, "unauthorized", None);
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("refrain keys add"),
        "{e}"
    );
    let key = add_key(&s, "client");
    for (path, key) in [
        ("/riffusion/generate", None),
        ("/riffusion/generate", Some("rf_not_a_key")),
        ("/riffusion/generate/topic", None),
        ("/riffusion/feed/0123", None),
        ("/riffusion/upload", None),
    ] {
        let method = if path.contains("feed") {
            Method::GET
        } else {
            Method::POST
        };
        let (status, e) = call(&s, method, path, key, Some(&body)).await;
        refused(status, &e, StatusCode::UNAUTHORIZED, "unauthorized", None);
    }
    // x-api-key is accepted too.
    let r = s
        .client
        .get(format!("{}/riffusion/feed/0123", s.base))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn generate_makes_two_timed_takes_and_the_feed_follows_them() {
    let s = start().await;
    let key = add_key(&s, "client");
    let other = add_key(&s, "other");
    let body = json!({"title": "Night Drive", "lyrics": LYRICS,
                      "tags": ["synthwave", " female vocals ", ""]});
    let (status, created) = call(
        &s,
        Method::POST,
        "/riffusion/generate",
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["title"], "Night Drive");
    assert_eq!(created["mode"], "generate");
    assert_eq!(created["style"], "synthwave, female vocals");
    assert_eq!(created["length_seconds"], 95);
    let ids = ids(&created);
    assert_eq!(ids.len(), 2);
    assert_ne!(ids[0], ids[1]);
    let a = s.app.store().get(&ids[0]).unwrap().unwrap();
    let b = s.app.store().get(&ids[1]).unwrap().unwrap();
    assert_ne!(a.spec.seed, b.spec.seed, "independent takes");
    assert_eq!(a.spec.lyrics, b.spec.lyrics);
    assert_eq!(a.owner.as_str(), "key:client");
    assert_eq!(a.source, protocol::Source::RiffusionApi);
    assert_eq!(a.spec.format, protocol::AudioFormat::Mp3);
    assert_eq!(
        a.spec.cfg_strength, None,
        "the bundle's CFG without controls"
    );
    // The section rule: a 9.5 s intro, then the verse; the chorus after a 3.8 s break; each
    // line gets (95 − 9.5 intro − 4.75 tail − 3.8 break) / 3 = 25.65 s.
    assert_eq!(created["lyrics"], a.spec.lyrics.as_str());
    let lines: Vec<&str> = a.spec.lyrics.lines().collect();
    assert_eq!(
        lines,
        [
            "[00:09.50] City lights are passing by",
            "[00:35.15] Every window tells a lie",
            "[01:04.60] We drive into the night",
        ]
    );

    // Feed: queued, then running with the node's progress, then success with the MP3.
    let path = format!("/riffusion/feed/{},{}", ids[0], ids[1]);
    let (status, feed) = call(&s, Method::GET, &path, Some(&key), None).await;
    assert_eq!(status, StatusCode::OK, "{feed}");
    assert_eq!(feed.as_array().unwrap().len(), 2);
    assert_eq!(feed[0]["id"], ids[0].as_str());
    assert_eq!(feed[1]["id"], ids[1].as_str());
    assert_eq!(
        (&feed[0]["status"], &feed[0]["process"], &feed[0]["stage"]),
        (&json!("process"), &json!(0), &json!("queued"))
    );
    assert_eq!(feed[0]["audio_url"], Value::Null);
    assert_eq!(feed[0]["generations"][0]["audio_url"], Value::Null);
    s.app.lifecycle().start(&ids[0], 1, 1).await.unwrap();
    let event = ProgressEvent {
        stage: Stage::Sampling,
        step: 12,
        total: 31,
        percent: 42.7,
        eta_seconds: Some(3.0),
        elapsed_seconds: 2.0,
    };
    s.app
        .lifecycle()
        .progress(&ids[0], 1, &event, true)
        .await
        .unwrap();
    let (_, feed) = call(&s, Method::GET, &path, Some(&key), None).await;
    assert_eq!(
        (&feed[0]["status"], &feed[0]["process"], &feed[0]["stage"]),
        (&json!("process"), &json!(42), &json!("sampling"))
    );
    let record = s.app.store().get(&ids[0]).unwrap().unwrap();
    let song = wav(2.0, 44_100);
    let result = store_variants(s.app.outputs(), &ids[0], &record.spec, 1, &[song], 2.0)
        .await
        .unwrap();
    s.app.lifecycle().succeed(&ids[0], 1, result).await.unwrap();
    s.app.cancel(&ids[1]).await.unwrap();
    let (_, feed) = call(&s, Method::GET, &path, Some(&key), None).await;
    assert_eq!(
        (&feed[0]["status"], &feed[0]["process"]),
        (&json!("success"), &json!(100))
    );
    let url = feed[0]["audio_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/output/{}.mp3", s.base, ids[0]));
    assert_eq!(feed[0]["generations"][0]["audio_url"], url);
    assert_eq!(feed[0]["generations"][0]["duration"], 2.0);
    let mp3 = s.client.get(url).send().await.unwrap();
    assert_eq!(mp3.status(), StatusCode::OK);
    assert_eq!(mp3.headers()["content-type"], "audio/mpeg");
    assert_eq!(feed[1]["status"], "failure");
    assert_eq!(feed[1]["error"], "cancelled");

    // Another key's takes, unknown ids and bad lists.
    let (status, e) = call(&s, Method::GET, &path, Some(&other), None).await;
    refused(status, &e, StatusCode::NOT_FOUND, "not_found", None);
    let (status, e) = call(&s, Method::GET, "/riffusion/feed/nope", Some(&key), None).await;
    refused(status, &e, StatusCode::NOT_FOUND, "not_found", None);
    let eleven = vec![ids[0].to_string(); 11].join(",");
    for list in [",", eleven.as_str()] {
        let (status, e) = call(
            &s,
            Method::GET,
            &format!("/riffusion/feed/{list}"),
            Some(&key),
            None,
        )
        .await;
        refused(
            status,
            &e,
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some("ids"),
        );
    }
}

#[tokio::test]
async fn topic_mode_makes_two_instrumentals_in_the_themes_style() {
    let s = start().await;
    let key = add_key(&s, "client");
    let body = json!({"topic": "a calm morning by the sea", "tags": "piano, ambient"});
    let (status, created) = call(
        &s,
        Method::POST,
        "/riffusion/generate/topic",
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["mode"], "topic");
    assert_eq!(created["lyrics"], "");
    assert_eq!(
        created["style"],
        "a calm morning by the sea, piano, ambient"
    );
    let ids = ids(&created);
    assert_eq!(ids.len(), 2);
    let record = s.app.store().get(&ids[1]).unwrap().unwrap();
    assert_eq!(
        record.spec.style,
        StyleSpec::Prompt("a calm morning by the sea, piano, ambient".into())
    );
    for (body, code, field) in [
        (json!({}), "missing_field", "topic"),
        (json!({"topic": "  "}), "missing_field", "topic"),
        (
            json!({"topic": "sea", "length_seconds": 90}),
            "invalid_length",
            "length_seconds",
        ),
        (
            json!({"topic": "sea ".repeat(600)}),
            "invalid_style_prompt",
            "tags",
        ),
    ] {
        let (status, e) = call(
            &s,
            Method::POST,
            "/riffusion/generate/topic",
            Some(&key),
            Some(&body),
        )
        .await;
        refused(status, &e, StatusCode::BAD_REQUEST, code, Some(field));
    }
}

#[tokio::test]
async fn bad_generate_requests_and_the_controls() {
    let s = start().await;
    let key = add_key(&s, "client");
    let post = |body: Value| {
        let (s, key) = (&s, key.clone());
        async move {
            call(
                s,
                Method::POST,
                "/riffusion/generate",
                Some(&key),
                Some(&body),
            )
            .await
        }
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "missing_field", "lyrics"),
        (json!({"lyrics": " \n"}), "missing_field", "lyrics"),
        (
            json!({"lyrics": LYRICS, "length_seconds": 300}),
            "invalid_length",
            "length_seconds",
        ),
        (
            json!({"lyrics": "la\n".repeat(90)}),
            "invalid_lyrics",
            "lyrics",
        ),
        (
            // Chinese is sung; a line over the 500-character limit is not
            json!({"lyrics": format!("[Verse]\n你好世界\n{}\n", "你".repeat(501))}),
            "invalid_lyrics",
            "lyrics",
        ),
        (
            json!({"lyrics": LYRICS, "tags": 7}),
            "invalid_field",
            "body",
        ),
        (
            json!({"lyrics": LYRICS, "title": "t".repeat(201)}),
            "invalid_field",
            "title",
        ),
        (
            json!({"lyrics": LYRICS, "morph": {"normalized_weirdness": 1.5}}),
            "invalid_field",
            "morph.normalized_weirdness",
        ),
        (
            json!({"lyrics": LYRICS, "morph": {"normalized_lyrics_strength": -0.1}}),
            "invalid_field",
            "morph.normalized_lyrics_strength",
        ),
        (
            json!({"lyrics": LYRICS, "morph": {"transform": "remix"}}),
            "invalid_field",
            "morph.transform",
        ),
    ];
    for (body, code, field) in cases {
        let (status, e) = post(body.clone()).await;
        refused(status, &e, StatusCode::BAD_REQUEST, code, Some(field));
    }
    let r = s
        .client
        .post(format!("{}/riffusion/generate", s.base))
        .bearer_auth(&key)
        .body("{not json")
        .send()
        .await
        .unwrap();
    let status = r.status();
    let e: Value = r.json().await.unwrap();
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("body"),
    );
    // Timestamped lyrics are used as given.
    let (status, created) = post(json!({"lyrics": "[00:12.00] hello there"})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["lyrics"], "[00:12.00] hello there");

    // Lyrics and sound-prompt strengths set the CFG strength: 8 × their mean.
    for (morph, cfg) in [
        (
            json!({"normalized_lyrics_strength": 0.25, "normalized_sound_prompt_strength": 0.75}),
            4.0,
        ),
        (
            json!({"normalized_sound_prompt_strength": 1.0, "normalized_weirdness": 0.3}),
            8.0,
        ),
        (json!({"normalized_lyrics_strength": 0.0}), 0.0),
    ] {
        let (status, created) = post(json!({"lyrics": LYRICS, "morph": morph})).await;
        assert_eq!(status, StatusCode::OK, "{created}");
        for id in ids(&created) {
            let record = s.app.store().get(&id).unwrap().unwrap();
            assert_eq!(record.spec.cfg_strength, Some(cfg), "{morph}");
        }
    }
}

#[tokio::test]
async fn a_request_over_a_limit_makes_no_take() {
    let s = start_with(|c| c.limits.per_owner_active = 1).await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let (status, e) = call(
        &s,
        Method::POST,
        "/riffusion/generate",
        Some(&key),
        Some(&json!({"lyrics": LYRICS})),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{e}");
    assert_eq!(e["error"]["code"], "owner_limit");
    assert!(e["error"]["retry_after"].as_u64().is_some(), "{e}");
    let counts = s.app.counts().unwrap();
    // Both takes are admitted together or not at all: nothing was made.
    assert_eq!(counts.values().sum::<usize>(), 0);
}

#[tokio::test]
async fn uploads_by_multipart_and_url() {
    let s = start().await;
    let key = add_key(&s, "client");
    let (status, up) = upload(&s, &key, wav(12.0, 44_100), "song.wav").await;
    assert_eq!(status, StatusCode::OK, "{up}");
    assert!(
        (up["duration_seconds"].as_f64().unwrap() - 12.0).abs() < 0.01,
        "{up}"
    );
    assert!(s.app.blobs().read(up["id"].as_str().unwrap()).await.is_ok());
    let (status, e) = upload(&s, &key, b"not audio at all".to_vec(), "x.wav").await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_audio",
        Some("file"),
    );
    let (status, e) = upload(&s, &key, Vec::new(), "x.wav").await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "missing_field",
        Some("file"),
    );
    for (body, code) in [
        (json!({"url": "http://127.0.0.1:9/song.wav"}), "invalid_url"),
        (json!({"url": "http://2130706433/song.wav"}), "invalid_url"),
        (json!({"url": "ftp://example.com/a.wav"}), "invalid_url"),
        (json!({"url": " "}), "missing_field"),
    ] {
        let (status, e) = call(
            &s,
            Method::POST,
            "/riffusion/upload",
            Some(&key),
            Some(&body),
        )
        .await;
        refused(status, &e, StatusCode::BAD_REQUEST, code, Some("url"));
    }
    let (status, e) = call(
        &s,
        Method::POST,
        "/riffusion/upload",
        Some(&key),
        Some(&json!({})),
    )
    .await;
    refused(
        status,
        &e,
        StatusCode::BAD_REQUEST,
        "invalid_field",
        Some("body"),
    );
}

#[tokio::test]
async fn uploads_by_url_from_an_allow_listed_store_become_sources() {
    let clip = wav(12.0, 22_050);
    // The audio store on its own loopback address, the only one allow-listed.
    let store = audio_store("127.0.0.4", clip.clone()).await;
    let s = start_with(|c| c.fetch.allow = vec!["127.0.0.4/32".parse().unwrap()]).await;
    s.app.set_ready(true);
    let key = add_key(&s, "client");
    let body = json!({"url": format!("http://{store}/song.wav")});
    let (status, up) = call(
        &s,
        Method::POST,
        "/riffusion/upload",
        Some(&key),
        Some(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{up}");
    let id = up["id"].as_str().unwrap();
    assert!(
        (up["duration_seconds"].as_f64().unwrap() - 12.0).abs() < 0.01,
        "{up}"
    );
    assert_eq!(s.app.blobs().read(id).await.unwrap(), clip);
    // The upload is a cover's source.
    let morph = json!({"transform": "cover", "audio_upload_id": id});
    let (status, created) = call(
        &s,
        Method::POST,
        "/riffusion/generate",
        Some(&key),
        Some(&json!({"lyrics": LYRICS, "morph": morph})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let record = s.app.store().get(&ids(&created)[0]).unwrap().unwrap();
    assert_eq!(record.spec.style, StyleSpec::Upload(id.to_string()));
    // A redirect from the store to loopback is refused at the second hop; a missing file is a
    // fetch failure.
    for (path, code) in [
        ("/elsewhere.wav", "invalid_url"),
        ("/missing.wav", "fetch_failed"),
    ] {
        let body = json!({"url": format!("http://{store}{path}")});
        let (status, e) = call(
            &s,
            Method::POST,
            "/riffusion/upload",
            Some(&key),
            Some(&body),
        )
        .await;
        refused(status, &e, StatusCode::BAD_REQUEST, code, Some("url"));
    }
}
