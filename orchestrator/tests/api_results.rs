//! In-process tests of what the DiffRhythm API and the status endpoints answer once jobs ran:
//! results served with Range and HEAD, failed jobs, `/healthz`, `/readyz`, `/status`,
//! `/files`, `/metrics`, and live progress of a running job. A real service
//! (`service::start`, see `support`) with idle nodes; finished and running jobs are made by
//! driving the job core directly, as a node would.

use crate::support;

use protocol::JobState;
use refrain_orchestrator::jobs::Expect;
use reqwest::multipart::Part;
use reqwest::StatusCode;
use serde_json::Value;
use support::http::{assert_field_error, basic_form, job_id, wav};
use support::{start, start_with};

#[tokio::test]
async fn results_are_served_with_range_and_head() {
    let s = start().await;
    let body = s.accepted(basic_form().text("output_dir", "album")).await;
    let id = job_id(&body);
    let song = wav(1.0, 8000);
    let file = s.succeed(&id, &song).await;
    assert_eq!(file, format!("album/{id}.wav"));
    let url = format!("{}{}", s.base, body["url"].as_str().unwrap());

    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.headers()["cache-control"], "public, max-age=86400");
    assert_eq!(
        r.headers()["content-length"],
        song.len().to_string().as_str()
    );
    assert!(r.headers().contains_key("last-modified"));
    assert_eq!(r.bytes().await.unwrap().as_ref(), song.as_slice());

    let r = s
        .client
        .get(&url)
        .header("range", "bytes=0-9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.bytes().await.unwrap().as_ref(), &song[..10]);

    let r = s.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(
        r.headers()["content-length"],
        song.len().to_string().as_str()
    );
    assert!(r.bytes().await.unwrap().is_empty());

    // /files lists it.
    let (status, _, files) = s.get_json("/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        files["files"],
        serde_json::json!([{"file": file, "url": format!("/output/{file}"), "size_bytes": song.len()}])
    );

    // It can be edited by name or URL; a queued job's file cannot.
    for name in [file.clone(), format!("/output/{file}")] {
        let form = basic_form()
            .text("edit", "true")
            .text("ref_song", name)
            .text("edit_segments", "[[-1, 30], [90, -1]]");
        let edit = s.accepted(form).await;
        let record = s.app.job(&job_id(&edit)).unwrap().unwrap();
        let e = record.spec.edit.unwrap();
        assert_eq!(e.song, protocol::SongRef::Output(id.clone()));
        assert_eq!(e.segments, vec![(-1.0, 30.0), (90.0, -1.0)]);
        let (_, _, p) = s.get_json(edit["url"].as_str().unwrap()).await;
        assert_eq!(p["parameters"]["edit"], true);
        assert_eq!(
            p["parameters"]["edit_segments"],
            serde_json::json!([[-1, 30], [90, -1]])
        );
    }
    let queued = s.accepted(basic_form()).await;
    let form = basic_form()
        .text("edit", "true")
        .text("ref_song", format!("{}.wav", job_id(&queued)))
        .text("edit_segments", "[[0, 10]]");
    let (status, _, b) = s.post(form).await;
    assert_field_error(status, &b, StatusCode::BAD_REQUEST, "ref_song");

    // An uploaded song to edit.
    let form = basic_form()
        .text("edit", "on")
        .part(
            "ref_song",
            Part::bytes(wav(3.0, 8000)).file_name("mine.wav"),
        )
        .text("edit_segments", "[[0, 10]]");
    let edit = s.accepted(form).await;
    let record = s.app.job(&job_id(&edit)).unwrap().unwrap();
    assert!(matches!(
        record.spec.edit.unwrap().song,
        protocol::SongRef::Upload(_)
    ));

    // Deleted by retention: 404.
    s.app.outputs().delete(&file).await.unwrap();
    let r = s.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let form = basic_form()
        .text("edit", "true")
        .text("ref_song", file.clone())
        .text("edit_segments", "[[0, 10]]");
    let (status, _, b) = s.post(form).await;
    assert_field_error(status, &b, StatusCode::BAD_REQUEST, "ref_song");
}

#[tokio::test]
async fn failed_jobs_answer_200_with_the_error() {
    let s = start().await;
    let body = s.accepted(basic_form()).await;
    let id = job_id(&body);
    s.app
        .lifecycle()
        .fail(
            &id,
            Expect::new(JobState::Queued, 1),
            1,
            "the node ran out of memory".into(),
        )
        .await
        .unwrap();
    let (status, _, p) = s.get_json(body["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(p["status"], "failed");
    assert_eq!(p["job_id"], id.as_str());
    assert_eq!(p["file"], format!("{id}.wav"));
    assert_eq!(p["error"], "the node ran out of memory");
    assert_eq!(p["parameters"]["audio_length"], 120);
}

#[tokio::test]
async fn ops_and_status_endpoints() {
    let s = start_with(|_| {}).await;
    let r = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ok");
    let (status, _, body) = s.get_json("/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, serde_json::json!({"ready": false}));
    s.app.set_ready(true);
    let (status, _, body) = s.get_json("/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"ready": true}));

    let (_, _, st) = s.get_json("/status").await;
    assert_eq!(st["server_busy"], false);
    s.accepted(basic_form()).await;
    let (status, _, st) = s.get_json("/status").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(st["status"], "ok");
    assert_eq!(st["server_busy"], true);
    assert_eq!(st["jobs"]["queued"], 1);
    assert_eq!(st["jobs"]["succeeded"], 0);
    assert_eq!(st["queue"]["depth"], 1);
    assert_eq!(st["queue"]["capacity"], 100);
    assert_eq!(st["queue"]["backend"], "embedded");
    assert_eq!(st["device"], "cpu");
    assert_eq!(st["bundle"]["name"], "refrain-test-bundle");
    assert_eq!(st["bundle"]["version"], "1.0.0");
    assert_eq!(st["max_frames"], 6144);
    assert_eq!(st["lengths"], "95 or 96 to 285");
    assert!(st["uptime"].as_str().unwrap().ends_with(" seconds"));
    assert!(st["current_time"].as_str().unwrap().ends_with(" UTC"));

    let (status, _, files) = s.get_json("/files").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(files, serde_json::json!({"files": []}));

    let r = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = r.text().await.unwrap();
    for needle in [
        "refrain_jobs{state=\"queued\"} 1",
        "refrain_jobs{state=\"running\"} 0",
        "refrain_jobs_submitted_total 1",
        "refrain_queue_depth 1",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

#[tokio::test]
async fn running_jobs_show_real_progress() {
    use protocol::{ProgressEvent, Stage};
    use refrain_orchestrator::progress::ProgressMessage;

    let s = start().await;
    let body = s.accepted(basic_form()).await;
    let id = job_id(&body);
    s.app.lifecycle().start(&id, 1, 1).await.unwrap();
    let event = ProgressEvent {
        stage: Stage::Sampling,
        step: 12,
        total: 31,
        percent: 38.9,
        eta_seconds: Some(68.74),
        elapsed_seconds: 42.3,
    };
    s.app
        .bus()
        .publish(ProgressMessage {
            id: id.clone(),
            attempt: 1,
            event,
        })
        .await
        .unwrap();
    let url = body["url"].as_str().unwrap().to_string();
    let mut p = Value::Null;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        p = s.get_json(&url).await.2;
        if p["stage"] == "sampling" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(p["status"], "processing", "{p}");
    assert_eq!(p["state"], "running");
    assert_eq!(p["stage"], "sampling");
    assert_eq!(p["step"], 12);
    assert_eq!(p["total_steps"], 31);
    assert_eq!(p["progress_percent"], 38);
    assert_eq!(p["estimated_remaining"], "68.7 seconds");
    assert_eq!(p["server_busy"], true);
    assert!(p.get("queue_position").is_none(), "{p}");
}

#[tokio::test]
async fn every_variant_is_served_in_every_format() {
    let s = start().await;
    let body = s.accepted(basic_form().text("batch_infer_num", "2")).await;
    let id = job_id(&body);
    let record = s.app.store().get(&id).unwrap().unwrap();
    let lifecycle = s.app.lifecycle();
    lifecycle.start(&id, 1, 1).await.unwrap();
    let wavs = vec![wav(1.0, 44_100), wav(1.0, 44_100)];
    let result = refrain_orchestrator::jobs::results::store_variants(
        s.app.outputs(),
        &id,
        &record.spec,
        1,
        &wavs,
        1.0,
    )
    .await
    .unwrap();
    lifecycle.succeed(&id, 1, result).await.unwrap();

    let get = |path: String| {
        let url = format!("{}/output/{path}", s.base);
        let client = s.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    let r = get(format!("{id}-2.wav")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "audio/wav");
    assert_eq!(r.bytes().await.unwrap().as_ref(), wavs[1].as_slice());
    for (path, content_type, magic) in [
        (format!("{id}.mp3"), "audio/mpeg", None),
        (format!("{id}-2.ogg"), "audio/ogg", Some(b"OggS")),
    ] {
        let r = get(path.clone()).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_eq!(r.headers()["content-type"], content_type, "{path}");
        let bytes = r.bytes().await.unwrap();
        assert!(bytes.len() > 100, "{path}");
        if let Some(magic) = magic {
            assert_eq!(&bytes[..4], magic, "{path}");
        }
    }
    for missing in [format!("{id}-3.wav"), format!("{id}-0.wav")] {
        assert_eq!(
            get(missing.clone()).await.status(),
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    let flac = format!("{id}.flac");
    assert_eq!(get(flac).await.status(), StatusCode::BAD_REQUEST);
}

/// `batch_infer_num=5` (the reference's own scripts use 5) is accepted; the status JSON lists
/// all five variants from the start, and once the job finished every listed URL serves its own
/// variant, as Refrain's API lists them.
#[tokio::test]
async fn five_variants_are_listed_and_served() {
    let s = start().await;
    let body = s.accepted(basic_form().text("batch_infer_num", "5")).await;
    let id = job_id(&body);
    let expected: Vec<String> = std::iter::once(format!("/output/{id}.wav"))
        .chain((2..=5).map(|v| format!("/output/{id}-{v}.wav")))
        .collect();
    let (status, _, p) = s.get_json(body["url"].as_str().unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{p}");
    assert_eq!(p["parameters"]["batch_infer_num"], 5, "{p}");
    assert_eq!(p["variants"], serde_json::json!(expected), "{p}");

    let record = s.app.store().get(&id).unwrap().unwrap();
    assert_eq!(record.spec.variants, 5);
    let lifecycle = s.app.lifecycle();
    lifecycle.start(&id, 1, 1).await.unwrap();
    let (_, _, running) = s.get_json(body["url"].as_str().unwrap()).await;
    assert_eq!(running["state"], "running", "{running}");
    assert_eq!(
        running["variants"],
        serde_json::json!(expected),
        "{running}"
    );
    // Five different songs, as a node makes them in one batch.
    let wavs: Vec<Vec<u8>> = (0..5)
        .map(|v| wav(1.0 + f64::from(v) / 10.0, 44_100))
        .collect();
    let result = refrain_orchestrator::jobs::results::store_variants(
        s.app.outputs(),
        &id,
        &record.spec,
        1,
        &wavs,
        1.0,
    )
    .await
    .unwrap();
    lifecycle.succeed(&id, 1, result).await.unwrap();

    for (url, wav) in expected.iter().zip(&wavs) {
        let r = s
            .client
            .get(format!("{}{url}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert_eq!(r.headers()["content-type"], "audio/wav", "{url}");
        assert_eq!(r.bytes().await.unwrap().as_ref(), wav.as_slice(), "{url}");
    }
    let (status, _, job) = s.get_json(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{job}");
    let files = job["result"]["files"].as_array().unwrap();
    let listed: Vec<(u64, &str)> = files
        .iter()
        .map(|f| {
            (
                f["variant"].as_u64().unwrap(),
                f["public_url"].as_str().unwrap(),
            )
        })
        .collect();
    let wanted: Vec<(u64, &str)> = (1..=5).zip(expected.iter().map(String::as_str)).collect();
    assert_eq!(listed, wanted, "{job}");
}
