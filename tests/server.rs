//! End-to-end tests of `refrain serve`, the embedded deployment: the real binary runs as a child
//! process on port 0 with its own data directory (the default `config/default.toml`, the
//! committed test bundle, one in-process CPU node) and is driven over real HTTP on 127.0.0.1,
//! exactly as a client of the DiffRhythm server API (see the README) would.
//!
//! They cover the spec's client flow (202, progress polling with a non-decreasing percent, HEAD
//! vs GET, Range, the WAV's format and length, `output_dir`), the extras (`/status`, `/files`,
//! `/metrics`), a job the node rejects at run time and error answers over the wire. Load,
//! capacity 0 and SIGTERM are in `tests/server_queue.rs`.
//!
//! The tests run one at a time (some time a running job on 2 cores). Without ONNX Runtime
//! (tools/fetch-onnxruntime.sh) they are skipped with a message, except in CI (`CI` set), where
//! they fail. A failed test keeps its directory (server logs included) and prints its path.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::blocking::multipart::{Form, Part};
use reqwest::header;
use serde_json::Value;
use support::spec::*;
use support::*;

/// The tests of this file run one after another.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

const GENEROUS: Duration = Duration::from_secs(120);

#[test]
fn spec_client_flow_over_http() {
    let _serial = serial();
    // 199 Euler steps of a 130 s song: about a second of sampling, so polls see it move.
    let Some(app) = TestApp::embedded().steps(200).start() else {
        return;
    };
    let server = &app.server;
    let api = server.api();
    let http = &api.http;

    let (id, url) = accepted(
        http.post(server.url("/generate"))
            .multipart(song_form(130, 7))
            .send()
            .unwrap(),
    );
    let file = url.strip_prefix("/output/").unwrap().to_string();

    // Poll as the spec's client does until the answer is audio/wav.
    let mut last = 0;
    let mut percents = BTreeSet::new();
    let mut stages = BTreeSet::new();
    let mut polls = 0;
    let deadline = Instant::now() + GENEROUS;
    let wav = loop {
        let r = http.get(server.url(&url)).send().unwrap();
        assert_eq!(r.status().as_u16(), 200, "GET {url}");
        if header_of(&r, header::CONTENT_TYPE) == "audio/wav" {
            let length = header_of(&r, header::CONTENT_LENGTH);
            let bytes = r.bytes().unwrap().to_vec();
            assert_eq!(length, bytes.len().to_string(), "Content-Length");
            break bytes;
        }
        let body: Value = r.json().expect("JSON while processing");
        let percent = check_processing(&body, &id, &file, 130);
        assert!(percent >= last, "progress went back: {last} → {body}");
        last = percent;
        percents.insert(percent);
        if let Some(stage) = body["stage"].as_str() {
            stages.insert(stage.to_string());
        }
        polls += 1;
        // HEAD while processing: the same status and JSON type, no body.
        if polls % 10 == 1 {
            let h = http.head(server.url(&url)).send().unwrap();
            assert_eq!(h.status().as_u16(), 200);
            let content_type = header_of(&h, header::CONTENT_TYPE);
            if content_type != "audio/wav" {
                assert!(
                    content_type.starts_with("application/json"),
                    "{content_type}"
                );
            }
            assert!(h.bytes().unwrap().is_empty(), "HEAD has no body");
        }
        assert!(Instant::now() < deadline, "{url} did not finish: {body}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        stages.contains("sampling"),
        "polls saw the sampler's steps: {stages:?}"
    );
    assert!(percents.len() >= 2, "progress moved: {percents:?}");

    // The WAV: 16-bit stereo 44.1 kHz, int(130 * 44100 / 2048) = 2799 frames of 2048 samples.
    assert_eq!(latent_frames(130), 2799);
    assert_song_wav(&wav, 2799);
    let on_disk = std::fs::read(server.data_dir().join("outputs").join(&file)).unwrap();
    assert_eq!(on_disk, wav);

    // HEAD vs GET of the result: same status and headers, no body.
    let get = http.get(server.url(&url)).send().unwrap();
    let head = http.head(server.url(&url)).send().unwrap();
    assert_eq!(get.status(), head.status());
    for name in [
        header::CONTENT_TYPE,
        header::CONTENT_LENGTH,
        header::CACHE_CONTROL,
        header::LAST_MODIFIED,
        header::ACCEPT_RANGES,
    ] {
        assert_eq!(
            header_of(&get, name.clone()),
            header_of(&head, name.clone()),
            "{name}"
        );
    }
    assert_eq!(header_of(&head, header::CONTENT_TYPE), "audio/wav");
    assert_eq!(
        header_of(&head, header::CONTENT_LENGTH),
        wav.len().to_string()
    );
    assert!(head.bytes().unwrap().is_empty(), "HEAD has no body");
    assert_eq!(get.bytes().unwrap().to_vec(), wav);

    // Range requests.
    let r = http
        .get(server.url(&url))
        .header(header::RANGE, "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(
        header_of(&r, header::CONTENT_RANGE),
        format!("bytes 1000-1999/{}", wav.len())
    );
    assert_eq!(header_of(&r, header::CONTENT_TYPE), "audio/wav");
    assert_eq!(r.bytes().unwrap().as_ref(), &wav[1000..2000]);
    let r = http
        .get(server.url(&url))
        .header(header::RANGE, "bytes=-16")
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 206);
    assert_eq!(r.bytes().unwrap().as_ref(), &wav[wav.len() - 16..]);

    // output_dir: the result is under the sub-folder, and so is its URL. 95 s: 2048 frames.
    let (id2, url2) = accepted(
        http.post(server.url("/generate"))
            .multipart(song_form(95, 8).text("output_dir", "album/2025"))
            .send()
            .unwrap(),
    );
    assert_eq!(url2, format!("/output/album/2025/{id2}.wav"));
    let wav2 = match api.wait(&url2, GENEROUS) {
        Done::Wav(bytes) => bytes,
        Done::Failed(body) => panic!("{body}"),
    };
    assert_song_wav(&wav2, 2048);
    let file2 = format!("album/2025/{id2}.wav");
    assert_eq!(
        std::fs::read(server.data_dir().join("outputs").join(&file2)).unwrap(),
        wav2
    );

    // A job the node rejects at run time: 200 JSON, status "failed", the node's message.
    let r = http
        .post(server.url("/generate"))
        .multipart(rejected_at_run_time_form())
        .send()
        .unwrap();
    let (id3, url3) = accepted(r);
    let body = match api.wait(&url3, GENEROUS) {
        Done::Failed(body) => body,
        Done::Wav(_) => panic!("a 5 s song cannot be edited into a 95 s song"),
    };
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["job_id"], id3.as_str());
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("shorter than")),
        "{body}"
    );
    let h = http.head(server.url(&url3)).send().unwrap();
    assert_eq!(h.status().as_u16(), 200);
    assert!(header_of(&h, header::CONTENT_TYPE).starts_with("application/json"));

    // /status, /files and /metrics after the runs.
    let status = api.get_json("/status");
    assert_eq!(status["status"], "ok", "{status}");
    assert_eq!(status["ready"], true, "{status}");
    assert_eq!(status["server_busy"], false, "{status}");
    assert_eq!(status["jobs"]["succeeded"], 2, "{status}");
    assert_eq!(status["jobs"]["failed"], 1, "{status}");
    assert_eq!(status["jobs"]["queued"], 0, "{status}");
    assert_eq!(status["jobs"]["running"], 0, "{status}");
    assert_eq!(status["queue"]["backend"], "embedded", "{status}");
    assert_eq!(status["queue"]["depth"], 0, "{status}");
    assert_eq!(status["device"], "cpu", "{status}");

    let files = api.get_json("/files");
    let mut listed: Vec<(String, String, u64)> = files["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["url"].as_str().unwrap().to_string(),
                f["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    listed.sort();
    let mut expected = vec![
        (file.clone(), url.clone(), wav.len() as u64),
        (file2, url2, wav2.len() as u64),
    ];
    expected.sort();
    assert_eq!(listed, expected, "{files}");

    // A job's end is counted once its state change is on disk, a moment after it can be read:
    // wait for the counts rather than take the first scrape.
    let settled = |m: &str| {
        metric(m, "refrain_jobs_completed_total{outcome=\"failed\"}") == Some(1.0)
            && metric(m, "refrain_jobs_completed_total{outcome=\"succeeded\"}") == Some(2.0)
            && metric(m, "refrain_job_run_seconds_count").is_some_and(|n| n >= 3.0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut metrics = api.metrics();
    while !settled(&metrics) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        metrics = api.metrics();
    }
    let succeeded = metric(
        &metrics,
        "refrain_jobs_completed_total{outcome=\"succeeded\"}",
    );
    assert_eq!(succeeded, Some(2.0), "{metrics}");
    assert_eq!(
        metric(&metrics, "refrain_jobs_completed_total{outcome=\"failed\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "refrain_jobs_submitted_total"),
        Some(3.0),
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "refrain_jobs{state=\"succeeded\"}"),
        Some(2.0)
    );
    assert_eq!(metric(&metrics, "refrain_queue_depth"), Some(0.0));
    assert!(
        metric(&metrics, "refrain_sampling_step_seconds_count").is_some_and(|n| n >= 199.0),
        "{metrics}"
    );
    assert!(
        metric(&metrics, "refrain_job_run_seconds_count").is_some_and(|n| n >= 3.0),
        "{metrics}"
    );

    // The rejected job ran once and was not retried.
    let runs = one_at_a_time("cpu", &node_events(&server.proc.log_text()));
    assert_eq!(
        runs,
        vec![(id, 1), (id2, 1), (id3, 1)],
        "the node's runs: {runs:?}"
    );
}

#[test]
fn error_answers_over_the_wire() {
    let _serial = serial();
    let Some(app) = TestApp::embedded()
        .steps(2)
        .env("REFRAIN_LIMITS__MAX_UPLOAD_BYTES", 100000)
        .start()
    else {
        return;
    };
    let server = &app.server;
    let api = server.api();
    let http = &api.http;
    let post = |form: Form| -> (u16, Value) {
        let r = http
            .post(server.url("/generate"))
            .multipart(form)
            .send()
            .unwrap();
        let code = r.status().as_u16();
        (code, r.json().unwrap_or(Value::Null))
    };
    let field_error = |(code, body): (u16, Value), want: u16, field: &str| {
        assert_eq!(code, want, "{field}: {body}");
        assert_eq!(body["status"], "error", "{body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(body["error"].as_str().is_some_and(|e| e.starts_with(field)));
    };

    // 404 not_found, for GET and HEAD.
    let unknown = format!("/output/{}.wav", "0f".repeat(16));
    let r = http.get(server.url(&unknown)).send().unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let body: Value = r.json().unwrap();
    assert_eq!(body["status"], "not_found");
    assert_eq!(
        body["message"],
        "No active job for this file or file does not exist."
    );
    assert_eq!(
        http.head(server.url(&unknown))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        404
    );

    // 400 with the field.
    field_error(
        post(Form::new().text("ref_prompt", PROMPT)),
        400,
        "audio_length",
    );
    field_error(post(song_form(30, 1)), 400, "audio_length");
    field_error(
        post(song_form(95, 1).text("output_dir", "../escape")),
        400,
        "output_dir",
    );
    field_error(
        post(song_form(95, 1).text("output_dir", "/etc")),
        400,
        "output_dir",
    );
    let garbage = Part::bytes(vec![0x5a; 50_000])
        .file_name("style.wav")
        .mime_str("audio/wav")
        .unwrap();
    field_error(
        post(
            Form::new()
                .text("audio_length", "95")
                .part("ref_audio", garbage),
        ),
        400,
        "ref_audio",
    );
    let r = http
        .post(server.url("/generate"))
        .form(&[("audio_length", "95"), ("ref_prompt", PROMPT)])
        .send()
        .unwrap();
    let code = r.status().as_u16();
    field_error((code, r.json().unwrap()), 400, "Content-Type");

    // 413 for an upload over the limit. (The server answers before it has read the whole
    // body; the blocking client's streamed multipart would report the closed connection
    // instead of the answer, so the body is sent as one buffer.)
    let boundary = "refrain-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"audio_length\"\r\n\r\n95\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"ref_audio\"; \
             filename=\"style.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&sine_wav(2.0));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let r = http
        .post(server.url("/generate"))
        .header(
            header::CONTENT_TYPE,
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(body)
        .send()
        .unwrap();
    let code = r.status().as_u16();
    field_error((code, r.json().unwrap()), 413, "ref_audio");

    // Path traversal, raw on the wire: refused (400) or unknown (404), never a file.
    for path in [
        "/output/../jobs.sled/conf",
        "/output/../../etc/passwd.wav",
        "/output/%2e%2e/%2e%2e/etc/passwd.wav",
        "/output/..%2f..%2fetc%2fpasswd.wav",
        "/output/%252e%252e%252fx.wav",
        "/output/%2fetc%2fpasswd.wav",
        "/output/sub%5c..%5c..%5cx.wav",
    ] {
        let (code, text) = raw_get(&server.base, path);
        assert!(code == 400 || code == 404, "{path}: {text}");
        assert!(!text.contains("audio/wav"), "{path}: {text}");
    }

    // Nothing was admitted.
    let status = api.get_json("/status");
    for state in ["queued", "running", "succeeded", "failed"] {
        assert_eq!(status["jobs"][state], 0, "{status}");
    }
}
