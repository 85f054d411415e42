//! Property-based fuzzing of what clients send to the orchestrator: multipart forms to
//! `POST /generate`, JSON to `POST /api/v1/jobs`, `Range` headers on result downloads, and the
//! file names of `GET /output/…` (with output path resolution). Whatever arrives, the answer is
//! a 2xx or a 4xx in the API's JSON error shape (or 503 when the queue is full) — never a 500,
//! a panic or a dropped connection — and no path leaves the output folder.
//!
//! CI runs `PROPTEST_CASES` cases per property (64 by default here: each is an HTTP round
//! trip); a longer run is `PROPTEST_CASES=20000 cargo test --release -p refrain-orchestrator
//! --test fuzz_inputs`. Failing inputs are shrunk and saved next to this file
//! (`fuzz_inputs.proptest-regressions`, committed, replayed first) and get a named regression
//! test once fixed.

use crate::support;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use refrain_orchestrator::api::paths::{decode_output_file, output_url};
use refrain_orchestrator::outputs::OutputStore;
use reqwest::StatusCode;
use serde_json::Value;
use support::http::{basic_form, job_id, wav};
use support::{start, TestService};

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"),
        )),
        ..Config::default()
    })
}

/// A 4xx must carry the API's JSON error body; a 5xx other than 503 (queue full) is a bug.
fn check_answer(what: &str, status: StatusCode, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(
        status.is_success()
            || status.is_client_error()
            || status == StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {status} {}",
        String::from_utf8_lossy(body)
    );
    if !status.is_success() {
        let json: Result<Value, _> = serde_json::from_slice(body);
        prop_assert!(
            json.is_ok(),
            "{what}: {status} without a JSON body: {}",
            String::from_utf8_lossy(body)
        );
    }
    Ok(())
}

/// One form field: a known field name or a random one, a text value or a file part.
fn field() -> impl Strategy<Value = (String, Vec<u8>, Option<String>)> {
    let name = prop_oneof![
        Just("lrc".to_string()),
        Just("ref_prompt".to_string()),
        Just("ref_audio".to_string()),
        Just("audio_length".to_string()),
        Just("batch_infer_num".to_string()),
        Just("output_dir".to_string()),
        Just("edit".to_string()),
        Just("edit_segments".to_string()),
        Just("ref_song".to_string()),
        Just("seed".to_string()),
        Just("chunked".to_string()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        "\\PC{0,60}".prop_map(String::into_bytes),
        "[0-9.-]{0,8}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 0..300),
        Just(b"[00:01.00] hi\n[00:05.00] there".to_vec()),
    ];
    let filename = prop::option::of(prop_oneof![
        Just("a.wav".to_string()),
        Just("../../etc/passwd".to_string()),
        "\\PC{0,20}",
    ]);
    (name, value, filename)
}

fn multipart(fields: &[(String, Vec<u8>, Option<String>)], boundary: &str) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value, filename) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => {
                format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n")
            }
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

async fn post(
    s: &TestService,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let r = s
        .client
        .post(format!("{}{path}", s.base))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = r.status();
    (status, r.bytes().await.expect("a whole body").to_vec())
}

#[test]
fn generate_takes_any_multipart_form() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let forms = prop::collection::vec(field(), 0..8);
    runner(64)
        .run(&forms, |fields| {
            let body = multipart(&fields, "XyZboundary");
            let (status, answer) = rt.block_on(post(
                &s,
                "/generate",
                "multipart/form-data; boundary=XyZboundary",
                body,
            ));
            check_answer("POST /generate", status, &answer)
        })
        .unwrap();
}

#[test]
fn generate_takes_any_bytes_as_multipart() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let bodies = prop::collection::vec(any::<u8>(), 0..2000);
    runner(64)
        .run(&bodies, |body| {
            let (status, answer) = rt.block_on(post(
                &s,
                "/generate",
                "multipart/form-data; boundary=XyZboundary",
                body.clone(),
            ));
            check_answer("POST /generate (bytes)", status, &answer)?;
            let (status, answer) = rt.block_on(post(
                &s,
                "/api/v1/uploads",
                "multipart/form-data; boundary=XyZboundary",
                body,
            ));
            check_answer("POST /api/v1/uploads", status, &answer)
        })
        .unwrap();
}

#[test]
fn jobs_api_takes_any_json() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,40}".prop_map(Value::from),
    ];
    let json = leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("lyrics".to_string()),
                    Just("style".to_string()),
                    Just("prompt".to_string()),
                    Just("length_seconds".to_string()),
                    Just("variants".to_string()),
                    Just("format".to_string()),
                    Just("edit".to_string()),
                    Just("audio_url".to_string()),
                    "[a-z_]{1,10}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    runner(64)
        .run(&json, |value| {
            let body = serde_json::to_vec(&value).unwrap();
            let (status, answer) = rt.block_on(post(&s, "/api/v1/jobs", "application/json", body));
            check_answer("POST /api/v1/jobs", status, &answer)
        })
        .unwrap();
}

#[test]
fn downloads_take_any_range_header() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = rt.block_on(start());
    let song = wav(1.0, 8000);
    let id = rt.block_on(async {
        let id = job_id(&s.accepted(basic_form()).await);
        s.succeed(&id, &song).await;
        id
    });
    let ranges = prop_oneof![
        "\\PC{0,30}",
        "bytes=[0-9]{0,6}-[0-9]{0,6}(,[0-9]{0,6}-[0-9]{0,6}){0,3}",
        "bytes=-[0-9]{0,8}",
        "[a-z]{0,6}=[0-9, -]{0,12}",
    ];
    runner(128)
        .run(&ranges, |range| {
            for path in [
                format!("/output/{id}.wav"),
                format!("/api/v1/jobs/{id}/audio/1?format=wav"),
            ] {
                let (status, headers, body) = rt.block_on(async {
                    let r = s
                        .client
                        .get(format!("{}{path}", s.base))
                        .header("range", &range)
                        .send()
                        .await
                        .expect("an answer");
                    (
                        r.status(),
                        r.headers().clone(),
                        r.bytes().await.expect("a body").to_vec(),
                    )
                });
                prop_assert!(
                    [
                        StatusCode::OK,
                        StatusCode::PARTIAL_CONTENT,
                        StatusCode::RANGE_NOT_SATISFIABLE
                    ]
                    .contains(&status),
                    "{path} {range:?}: {status}"
                );
                if status == StatusCode::OK {
                    prop_assert_eq!(body.len(), song.len());
                }
                if status == StatusCode::PARTIAL_CONTENT
                    && !headers
                        .get("content-type")
                        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("multipart/"))
                {
                    // Content-Range: bytes first-last/size, and the body is those bytes.
                    let cr = headers["content-range"].to_str().unwrap().to_string();
                    let span = cr
                        .strip_prefix("bytes ")
                        .and_then(|r| r.split_once('/'))
                        .and_then(|(span, _)| span.split_once('-'));
                    let (first, last): (usize, usize) = match span {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => {
                            return Err(TestCaseError::fail(format!(
                                "{path} {range:?}: Content-Range {cr}"
                            )))
                        }
                    };
                    prop_assert_eq!(&body[..], &song[first..=last], "{} {:?}", path, range);
                }
                check_answer(&format!("GET {path}"), status, &body).or_else(|e| {
                    if status.is_success() {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
            }
            Ok(())
        })
        .unwrap();
}

proptest! {
    /// A name `GET /output/…` accepts never climbs out of the output folder, and resolving it
    /// stays under the root.
    #[test]
    fn output_names_stay_in_the_output_folder(raw in "[a-zA-Z0-9%./\\\\_-]{0,40}(\\.wav|\\.mp3|\\.ogg)?") {
        let dir = tempfile::tempdir().unwrap();
        let store = OutputStore::open(dir.path()).unwrap();
        if let Ok(name) = decode_output_file(&raw) {
            prop_assert!(!name.starts_with('/') && !name.contains('\\'), "{name}");
            prop_assert!(name.split('/').all(|c| !c.is_empty() && c != "." && c != ".."), "{name}");
            // What we produce for a name decodes back to it.
            let url = output_url(&name);
            prop_assert_eq!(decode_output_file(url.strip_prefix("/output/").unwrap()).unwrap(), name.clone());
            if let Ok(path) = store.resolve(&name) {
                let root = dir.path().canonicalize().unwrap();
                prop_assert!(path.starts_with(&root) || path.starts_with(dir.path()), "{}", path.display());
            }
        }
    }
}
