//! In-process tests of the HTTP APIs: a real `App` (sled store, embedded queue, blob and output
//! stores, the test bundle's validator) behind `axum::serve` on 127.0.0.1, driven with reqwest
//! and, for paths a URL library would normalise, raw HTTP/1.1 over TCP. No worker runs, so
//! admitted jobs stay queued; finished jobs are made by driving the store directly.

use refrain_orchestrator::jobs::{Expect, Hub, Lifecycle, RunningJobs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protocol::{JobId, JobResult, JobState};
use refrain_model::bundle::Bundle;
use refrain_model::lyrics::lrc::LyricsLimits;
use refrain_orchestrator::blobs::BlobStore;
use refrain_orchestrator::distributed::registry::NodeRegistry;
use refrain_orchestrator::metrics::Metrics;
use refrain_orchestrator::outputs::OutputStore;
use refrain_orchestrator::progress::{EmbeddedBus, ProgressBoard, ProgressBus};
use refrain_orchestrator::queue::{EmbeddedQueue, Queue};
use refrain_orchestrator::service::{App, AppParts, NodeInfo, Validator};
use refrain_orchestrator::store::JobStore;
use refrain_orchestrator::Config;
use reqwest::multipart::{Form, Part};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

struct Server {
    base: String,
    addr: std::net::SocketAddr,
    app: App,
    client: reqwest::Client,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn bundle_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle")
}

async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        bundle: bundle_path(),
        ..Config::default()
    };
    configure(&mut config);
    let bundle = Bundle::load(&config.bundle).unwrap();
    let node = NodeInfo::describe(&bundle, "cpu".into());
    assert_eq!(node.lengths, "95 or 96 to 285");
    let validator = Validator::new(bundle, LyricsLimits::default()).unwrap();
    let store = JobStore::open(&config.store_dir()).unwrap();
    let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(store.db()).unwrap());
    let bus: Arc<dyn ProgressBus> = Arc::new(EmbeddedBus::new());
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Metrics::new();
    let lifecycle = Lifecycle::new(store, Hub::new(), metrics.clone(), 3);
    let board = ProgressBoard::spawn(bus.as_ref(), lifecycle.clone(), &tracker, cancel.clone());
    let blobs = BlobStore::open(&config.blobs_dir()).unwrap();
    let outputs = OutputStore::open(&config.output_root()).unwrap();
    let nodes = NodeRegistry::new(metrics.nodes.clone());
    let app = App::new(AppParts {
        config,
        lifecycle,
        queue,
        bus,
        board,
        blobs,
        outputs,
        metrics,
        node,
        validator,
        nodes,
        running: RunningJobs::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = refrain_orchestrator::api::router(app.clone());
    let shutdown = cancel.clone();
    tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .unwrap();
    });
    Server {
        base: format!("http://{addr}"),
        addr,
        app,
        client: reqwest::Client::builder().no_proxy().build().unwrap(),
        cancel,
        _dir: dir,
    }
}

async fn start() -> Server {
    let s = start_with(|_| {}).await;
    s.app.set_ready(true);
    s
}

/// A 16-bit mono PCM WAV of a 440 Hz tone.
fn wav(seconds: f64, rate: u32) -> Vec<u8> {
    let n = (seconds * f64::from(rate)) as u32;
    let data_len = n * 2;
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..n {
        let t = f64::from(i) / f64::from(rate);
        let s = ((t * 440.0 * std::f64::consts::TAU).sin() * 8000.0) as i16;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The spec's Python client's form: `_dummy`, `ref_prompt`, `audio_length`, `lrc`.
fn basic_form() -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", "upbeat electronic dance")
        .text("audio_length", "120")
        .text("lrc", "[00:00.00] Let's dance\n[00:05.00] All night long")
}

fn form_from(fields: &[(&str, &str)]) -> Form {
    fields.iter().fold(Form::new(), |f, (k, v)| {
        f.text(k.to_string(), v.to_string())
    })
}

impl Server {
    async fn post(&self, form: Form) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .post(format!("{}/generate", self.base))
            .multipart(form)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, headers, body)
    }

    async fn get_json(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
        (status, headers, body)
    }

    async fn accepted(&self, form: Form) -> Value {
        let (status, _, body) = self.post(form).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Sends `request` verbatim over TCP and returns the status code and the whole response.
    async fn raw(&self, request: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        // The server may answer before reading the whole request and then reset the
        // connection: keep whatever arrived.
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        while let Ok(n) = stream.read(&mut chunk).await {
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&buf).into_owned();
        let code = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        (code, text)
    }

    async fn raw_get(&self, path: &str) -> (u16, String) {
        self.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Drives a queued job to Succeeded and writes its result file.
    async fn succeed(&self, id: &JobId, bytes: &[u8]) -> String {
        let record = self.app.store().get(id).unwrap().unwrap();
        let file = OutputStore::relative(record.spec.output_subdir.as_deref(), id);
        self.app.outputs().write(&file, bytes).await.unwrap();
        let lifecycle = self.app.lifecycle();
        lifecycle.start(id, 1, 1).await.unwrap();
        let result = JobResult {
            file: file.clone(),
            bytes: bytes.len() as u64,
            duration_seconds: 1.0,
            attempt: 1,
            files: Vec::new(),
        };
        lifecycle.succeed(id, 1, result).await.unwrap();
        file
    }
}

fn job_id(body: &Value) -> JobId {
    JobId::parse(body["job_id"].as_str().unwrap()).unwrap()
}

fn assert_field_error(status: StatusCode, body: &Value, code: StatusCode, field: &str) {
    assert_eq!(status, code, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["field"], field, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("{field}: ")), "{body}");
}

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
            base(&[("lrc", "[00:00.00]你好世界\n[00:05.00]我爱音乐")]),
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
    for _ in 0..100 {
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
