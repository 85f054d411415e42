//! In-process tests of the DiffRhythm API's admission: a real service (`service::start` on
//! 127.0.0.1, sled store, embedded queue, blob and output stores, the test bundle's validator,
//! see `support`) driven with reqwest and, for paths a URL library would normalise, raw
//! HTTP/1.1 over TCP. Its nodes are idle, so admitted jobs stay queued. The answers for
//! results, failures and the status endpoints are in `api_results.rs`.

use crate::support;

use protocol::JobState;
use reqwest::multipart::Part;
use reqwest::StatusCode;
use serde_json::Value;
use support::http::{assert_field_error, basic_form, form_from, job_id, wav};
use support::{start, start_with};

#[tokio::test]
async fn generate_then_poll_processing() {
    let s = start().await;
    let body = s.accepted(basic_form()).await;
    assert_eq!(body["status"], "accepted");
    assert_eq!(
        body["message"],
        "Generation started. Check the URL later for the result."
    );
    let id = job_id(&body);
    assert_eq!(body["url"], format!("/output/{id}.wav"));
    assert_eq!(body.as_object().unwrap().len(), 4, "{body}");

    let second = s
        .accepted(
            basic_form()
                .text("seed", "42")
                .text("output_dir", "my/sub//"),
        )
        .await;
    let id2 = job_id(&second);
    assert_eq!(second["url"], format!("/output/my/sub/{id2}.wav"));

    let (status, headers, p) = s.get_json(body["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_eq!(p["status"], "processing");
    assert_eq!(p["job_id"], id.as_str());
    assert_eq!(p["file"], format!("{id}.wav"));
    let elapsed = p["elapsed_time"].as_str().unwrap();
    assert!(
        elapsed.ends_with(" seconds") && elapsed.split(' ').next().unwrap().parse::<f64>().is_ok(),
        "{p}"
    );
    // Always "N.N seconds" (an estimate from the learnt pace while queued): clients parse it.
    let remaining = p["estimated_remaining"].as_str().unwrap();
    let (number, unit) = remaining.split_once(' ').unwrap();
    assert_eq!(unit, "seconds", "{p}");
    assert!(number.parse::<f64>().unwrap() > 0.0, "{p}");
    assert_eq!(
        p["variants"],
        serde_json::json!([format!("/output/{id}.wav")]),
        "{p}"
    );
    assert_eq!(p["progress_percent"], 0);
    let params = &p["parameters"];
    assert_eq!(
        params["lrc"],
        "[00:00.00] Let's dance\n[00:05.00] All night long"
    );
    assert_eq!(params["ref_prompt"], "upbeat electronic dance");
    assert_eq!(params["audio_length"], 120);
    assert_eq!(params["chunked"], false);
    assert_eq!(params["batch_infer_num"], 1);
    assert_eq!(params["edit"], false);
    assert!(params["edit_segments"].is_null());
    assert!(params["output_dir"].is_null());
    assert!(params["seed"].is_u64());
    assert_eq!(p["server_busy"], true);
    let goodies = &p["other_goodies"];
    assert_eq!(goodies["device"], "cpu");
    assert_eq!(goodies["max_frames"], 6144);
    let now = goodies["current_time"].as_str().unwrap();
    assert!(
        chrono::NaiveDateTime::parse_from_str(now, "%Y-%m-%d %H:%M:%S UTC").is_ok(),
        "{now}"
    );
    assert!(goodies["uptime"].as_str().unwrap().ends_with(" seconds"));
    assert_eq!(p["state"], "queued");
    assert_eq!(p["queue_position"], 0);
    assert_eq!(p["attempt"], 1);
    for key in ["stage", "step", "total_steps"] {
        assert!(p.get(key).is_some(), "{key} missing in {p}");
    }

    let (status, _, p2) = s.get_json(second["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p2["file"], format!("my/sub/{id2}.wav"));
    assert_eq!(p2["queue_position"], 1);
    assert_eq!(p2["parameters"]["seed"], 42);
    assert_eq!(p2["parameters"]["output_dir"], "my/sub");
    // The same job is not reachable under another folder.
    let (status, _, _) = s.get_json(&format!("/output/{id2}.wav")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // HEAD: same status and headers, no body.
    let r = s
        .client
        .head(format!("{}{}", s.base, body["url"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(r.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_results_are_404() {
    let s = start().await;
    let unknown = format!("/output/{}.wav", "0".repeat(32));
    let (status, _, body) = s.get_json(&unknown).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        serde_json::json!({"status":"not_found","message":"No active job for this file or file does not exist."})
    );
    let r = s
        .client
        .head(format!("{}{unknown}", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(r.bytes().await.unwrap().is_empty());
    let (status, _, _) = s.get_json("/output/nothing.wav").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = s.get_json("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_bad_field_is_a_400_naming_it() {
    let s = start().await;
    let base = |extra: &[(&'static str, &'static str)]| {
        let mut fields = vec![("ref_prompt", "calm piano"), ("audio_length", "95")];
        for (k, v) in extra {
            fields.retain(|(f, _)| f != k);
            fields.push((k, v));
        }
        fields
    };
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("ref_prompt", "calm piano")], "audio_length"),
        (base(&[("audio_length", "60")]), "audio_length"),
        (base(&[("audio_length", "300")]), "audio_length"),
        (base(&[("audio_length", "ninety")]), "audio_length"),
        (base(&[("audio_length", "120.5")]), "audio_length"),
        (vec![("audio_length", "95")], "ref_prompt"),
        (base(&[("chunked", "maybe")]), "chunked"),
        (base(&[("edit", "sure")]), "edit"),
        (base(&[("batch_infer_num", "0")]), "batch_infer_num"),
        (base(&[("batch_infer_num", "6")]), "batch_infer_num"),
        (base(&[("batch_infer_num", "x")]), "batch_infer_num"),
        (base(&[("seed", "-1")]), "seed"),
        (base(&[("edit", "true")]), "ref_song"),
        (
            base(&[("edit", "true"), ("ref_song", "abc.wav")]),
            "edit_segments",
        ),
        (base(&[("edit_segments", "[[0,10]]")]), "edit_segments"),
        (base(&[("ref_song", "abc.wav")]), "ref_song"),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "/etc/passwd"),
                ("edit_segments", "[[0,10]]"),
            ]),
            "ref_song",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "../x.wav"),
                ("edit_segments", "[[0,10]]"),
            ]),
            "ref_song",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "/output/../../etc/passwd.wav"),
                ("edit_segments", "[[0,10]]"),
            ]),
            "ref_song",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "00000000000000000000000000000000.wav"),
                ("edit_segments", "[[0,10]]"),
            ]),
            "ref_song",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "x.wav"),
                ("edit_segments", "[[10,5]]"),
            ]),
            "edit_segments",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "x.wav"),
                ("edit_segments", "not json"),
            ]),
            "edit_segments",
        ),
        (
            base(&[
                ("edit", "true"),
                ("ref_song", "x.wav"),
                ("edit_segments", "[]"),
            ]),
            "edit_segments",
        ),
        (base(&[("output_dir", "../../etc")]), "output_dir"),
        (base(&[("output_dir", "/abs")]), "output_dir"),
        (base(&[("output_dir", "a/../../b")]), "output_dir"),
        (base(&[("output_dir", "%2e%2e")]), "output_dir"),
        (base(&[("output_dir", "a\\b")]), "output_dir"),
        (
            // Chinese is sung (the test bundle has a Mandarin lexicon); the bad timestamp is not
            base(&[("lrc", "[00:00.00]你好世界\n[00:75.00]我爱音乐")]),
            "lrc",
        ),
    ];
    for (fields, field) in cases {
        let (status, _, body) = s.post(form_from(&fields)).await;
        assert_field_error(status, &body, StatusCode::BAD_REQUEST, field);
    }
    // Both styles at once.
    let form = form_from(&[("ref_prompt", "calm piano"), ("audio_length", "95")]).part(
        "ref_audio",
        Part::bytes(wav(12.0, 8000)).file_name("ref.wav"),
    );
    let (status, _, body) = s.post(form).await;
    assert_field_error(status, &body, StatusCode::BAD_REQUEST, "ref_prompt");
    assert!(
        body["error"].as_str().unwrap().contains("ref_audio"),
        "{body}"
    );
    // A field given twice.
    let form = form_from(&[
        ("ref_prompt", "a"),
        ("audio_length", "95"),
        ("audio_length", "96"),
    ]);
    let (status, _, body) = s.post(form).await;
    assert_field_error(status, &body, StatusCode::BAD_REQUEST, "audio_length");
    // Nothing was admitted.
    assert_eq!(s.app.store().count(JobState::Queued).unwrap(), 0);
}

#[tokio::test]
async fn accepted_variants() {
    let s = start().await;
    for fields in [
        vec![("ref_prompt", "jazz"), ("audio_length", "95")],
        vec![
            ("ref_prompt", "jazz"),
            ("audio_length", "285"),
            ("chunked", "YES"),
            ("batch_infer_num", "4"),
        ],
        vec![
            ("ref_prompt", "jazz"),
            ("audio_length", " 96 "),
            ("chunked", "off"),
            ("edit", "0"),
            ("lrc", ""),
        ],
        // HTML forms send empty optional fields.
        vec![
            ("ref_prompt", "jazz"),
            ("audio_length", "95"),
            ("output_dir", ""),
            ("seed", ""),
            ("ref_song", ""),
        ],
    ] {
        s.accepted(form_from(&fields)).await;
    }
    let body = s
        .accepted(form_from(&[
            ("ref_prompt", "jazz"),
            ("audio_length", "120"),
            ("chunked", "1"),
            ("seed", "7"),
        ]))
        .await;
    let record = s.app.job(&job_id(&body)).unwrap().unwrap();
    assert!(record.spec.chunked);
    assert_eq!(record.spec.seed, 7);
    assert_eq!(record.spec.seconds, 120);
}

#[tokio::test]
async fn non_multipart_bodies_are_400() {
    let s = start().await;
    for (ct, body) in [
        (
            Some("application/json"),
            r#"{"ref_prompt":"x","audio_length":95}"#,
        ),
        (
            Some("application/x-www-form-urlencoded"),
            "ref_prompt=x&audio_length=95",
        ),
        (Some("multipart/form-data"), "no boundary"),
        (None, "ref_prompt=x"),
    ] {
        let mut req = s.client.post(format!("{}/generate", s.base)).body(body);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap();
        assert_field_error(status, &body, StatusCode::BAD_REQUEST, "Content-Type");
    }
    // A malformed multipart body.
    let r = s
        .client
        .post(format!("{}/generate", s.base))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"audio_length\"\r\n\r\n95")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "error");
}

#[tokio::test]
async fn oversized_uploads_are_413() {
    let s = start_with(|c| {
        c.limits.max_upload_bytes = 4096;
        c.limits.max_body_bytes = 16384;
    })
    .await;
    s.app.set_ready(true);
    let form = form_from(&[("audio_length", "95")])
        .part("ref_audio", Part::bytes(vec![0u8; 5000]).file_name("a.wav"));
    let (status, _, body) = s.post(form).await;
    assert_field_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "ref_audio");

    // The whole body, announced by Content-Length.
    let form = basic_form().text("junk", "x".repeat(20000));
    let (status, _, body) = s.post(form).await;
    assert_field_error(status, &body, StatusCode::PAYLOAD_TOO_LARGE, "body");

    // The whole body, streamed (chunked transfer encoding, no Content-Length).
    let junk = "x".repeat(20000);
    let payload = format!(
        "--B\r\nContent-Disposition: form-data; name=\"audio_length\"\r\n\r\n95\r\n\
         --B\r\nContent-Disposition: form-data; name=\"junk\"\r\n\r\n{junk}\r\n--B--\r\n"
    );
    let request = format!(
        "POST /generate HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary=B\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{payload}\r\n0\r\n\r\n",
        payload.len()
    );
    let (code, text) = s.raw(&request).await;
    assert_eq!(code, 413, "{text}");
    assert!(text.contains("\"field\":\"body\""), "{text}");
}

#[tokio::test]
async fn reference_audio_must_decode_and_last_10_seconds() {
    let s = start().await;
    let post_audio = |bytes: Vec<u8>, name: &'static str| {
        form_from(&[("audio_length", "95")]).part("ref_audio", Part::bytes(bytes).file_name(name))
    };
    let (status, _, body) = s
        .post(post_audio(b"this is not audio at all".repeat(100), "x.wav"))
        .await;
    assert_field_error(status, &body, StatusCode::BAD_REQUEST, "ref_audio");
    let (status, _, body) = s.post(post_audio(wav(5.0, 8000), "short.wav")).await;
    assert_field_error(status, &body, StatusCode::BAD_REQUEST, "ref_audio");
    assert!(
        body["error"].as_str().unwrap().contains("too short"),
        "{body}"
    );

    let body = s
        .accepted(post_audio(wav(12.0, 8000), "Good Song.WAV"))
        .await;
    let record = s.app.job(&job_id(&body)).unwrap().unwrap();
    let protocol::StyleSpec::Upload(blob) = &record.spec.style else {
        panic!("{:?}", record.spec.style)
    };
    assert!(blob.ends_with(".wav"), "{blob}");
    assert_eq!(s.app.blobs().read(blob).await.unwrap(), wav(12.0, 8000));
    let (_, _, p) = s.get_json(body["url"].as_str().unwrap()).await;
    assert_eq!(p["parameters"]["ref_audio"], "<uploaded>");
    assert!(p["parameters"].get("ref_prompt").is_none());
}

#[tokio::test]
async fn busy_is_503_with_retry_after() {
    let s = start_with(|c| {
        c.queue.capacity = 0;
        c.queue.retry_after_seconds = 17;
    })
    .await;
    // Not ready yet: 503 too.
    let (status, headers, body) = s.post(basic_form()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(headers.contains_key("retry-after"));
    s.app.set_ready(true);

    s.accepted(basic_form()).await;
    let (status, headers, body) = s.post(basic_form()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers["retry-after"], "17");
    assert_eq!(body["status"], "busy");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("Server is busy"),
        "{body}"
    );
    // Refused uploads are not kept.
    let form = form_from(&[("audio_length", "95")])
        .part("ref_audio", Part::bytes(wav(12.0, 8000)).file_name("r.wav"));
    let (status, _, _) = s.post(form).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let uploads = std::fs::read_dir(s.app.config().blobs_dir())
        .unwrap()
        .count();
    assert_eq!(uploads, 0);
    assert!(s
        .app
        .metrics()
        .render()
        .contains("refrain_jobs_rejected_busy_total 2"));
}

#[tokio::test]
async fn path_traversal_in_any_encoding_is_refused() {
    let s = start().await;
    for path in [
        "/output/..%2f..%2fetc%2fpasswd.wav",
        "/output/..%2F..%2Fetc%2Fpasswd.wav",
        "/output/../../etc/passwd.wav",
        "/output/%2e%2e/%2e%2e/etc/passwd.wav",
        "/output/%2e%2e%2f%2e%2e%2fetc%2fpasswd.wav",
        "/output/%252e%252e%252fetc%252fpasswd.wav",
        "/output/..%5c..%5cetc%5cpasswd.wav",
        "/output/%2fetc%2fpasswd.wav",
        "/output//etc/passwd.wav",
        "/output/a/./b.wav",
        "/output/x%00.wav",
        "/output/%c0%ae%c0%ae/x.wav",
        "/output/x.txt",
    ] {
        let (code, text) = s.raw_get(path).await;
        assert_eq!(code, 400, "{path}: {text}");
        assert!(text.contains("\"status\":\"error\""), "{path}: {text}");
    }
}
