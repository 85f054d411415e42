//! Every error the router itself writes is JSON in the shape of the API the path belongs to: a
//! path no route has (404) and a method a path does not take (405, with `Allow`); and `Range`
//! as RFC 9110 has it: an unparseable range set is ignored (the whole file), one past the end of
//! the file is the API's 416 error.

use crate::support;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::http::{basic_form, job_id, wav};
use support::start;

#[tokio::test]
async fn unknown_paths_and_methods_answer_in_each_apis_shape() {
    let s = start().await;
    let ask = |method: Method, path: &str| {
        let request = s.client.request(method, format!("{}{path}", s.base));
        async move {
            let r = request.send().await.unwrap();
            let status = r.status();
            let allow = r
                .headers()
                .get("allow")
                .map(|v| v.to_str().unwrap().to_string());
            let content_type = r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string());
            let body: Value = r.json().await.unwrap_or(Value::Null);
            (status, allow, content_type, body)
        }
    };
    // 405 with Allow, in each API's shape.
    let (status, allow, ct, body) = ask(Method::PUT, "/generate").await;
    assert_eq!(
        (status, allow.as_deref()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
    );
    assert_eq!(ct.as_deref(), Some("application/json"));
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    let (status, allow, _, body) = ask(Method::DELETE, "/api/v1/uploads").await;
    assert_eq!(
        (status, allow.as_deref()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("POST"))
    );
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    let (status, allow, _, body) = ask(
        Method::POST,
        "/api/v1/jobs/0123456789abcdef0123456789abcdef",
    )
    .await;
    assert_eq!(
        (status, allow.as_deref()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            Some("DELETE, GET, HEAD, PATCH")
        )
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("POST is not allowed"),
        "{body}"
    );
    let (status, _, _, body) = ask(Method::PUT, "/v1/inference").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED", "{body}");
    let (status, _, _, body) = ask(Method::PATCH, "/api/v1/task").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        (body["code"].clone(), body["error"]["code"].clone()),
        (Value::from(405), Value::from("METHOD_NOT_ALLOWED"))
    );

    // 404 for paths no route has.
    let (status, _, _, body) = ask(Method::GET, "/generate/extra").await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _, _, body) = ask(Method::GET, "/api/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found", "{body}");
    let (status, _, _, body) = ask(Method::GET, "/v1/nothing").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "NOT_FOUND", "{body}");
    let (status, _, ct, _) = ask(Method::GET, "/no/such/page").await;
    assert_eq!(
        (status, ct.as_deref()),
        (StatusCode::NOT_FOUND, Some("application/json"))
    );
}

#[tokio::test]
async fn ranges_are_served_ignored_or_refused_as_rfc_9110_says() {
    let s = start().await;
    let body = s.accepted(basic_form()).await;
    let id = job_id(&body);
    let song = wav(1.0, 8000);
    s.succeed(&id, &song).await;
    for (path, json_error) in [
        (format!("/output/{id}.wav"), "code"),
        (format!("/api/v1/jobs/{id}/audio/1?format=wav"), "error"),
    ] {
        let get = |range: &str| {
            s.client
                .get(format!("{}{path}", s.base))
                .header("range", range)
                .send()
        };
        for ignored in ["bytes=abc", "items=0-1", "bytes=9-3"] {
            let r = get(ignored).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{path} {ignored}");
            assert_eq!(
                r.bytes().await.unwrap().len(),
                song.len(),
                "{path} {ignored}"
            );
        }
        let r = get("bytes=0-3").await.unwrap();
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.bytes().await.unwrap().as_ref(), b"RIFF");
        let r = get("bytes=999999999-").await.unwrap();
        assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{path}");
        assert_eq!(r.headers()["content-type"], "application/json");
        let e: Value = r.json().await.unwrap();
        let code = if json_error == "code" {
            &e["code"]
        } else {
            &e["error"]["code"]
        };
        assert_eq!(code, "range_not_satisfiable", "{path}: {e}");
    }
}

/// What can only fail later is refused at admission: reference audio with NaN or infinite
/// samples, and an output folder whose name starts with a dot.
#[tokio::test]
async fn admission_refuses_what_could_only_fail_later() {
    let s = start().await;
    // A float WAV with one NaN sample.
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"RIFF");
    let frames = 8000u32 * 12;
    let data_len = frames * 4;
    bytes.extend_from_slice(&(36 + data_len).to_le_bytes());
    bytes.extend_from_slice(b"WAVEfmt ");
    bytes.extend_from_slice(&16u32.to_le_bytes());
    bytes.extend_from_slice(&3u16.to_le_bytes()); // IEEE float
    bytes.extend_from_slice(&1u16.to_le_bytes());
    bytes.extend_from_slice(&8000u32.to_le_bytes());
    bytes.extend_from_slice(&(8000u32 * 4).to_le_bytes());
    bytes.extend_from_slice(&4u16.to_le_bytes());
    bytes.extend_from_slice(&32u16.to_le_bytes());
    bytes.extend_from_slice(b"data");
    bytes.extend_from_slice(&data_len.to_le_bytes());
    for i in 0..frames {
        let x: f32 = if i == 500 { f32::NAN } else { 0.25 };
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let r = s
        .client
        .post(format!("{}/api/v1/uploads", s.base))
        .header("content-type", "audio/wav")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "invalid_audio", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not numbers"),
        "{e}"
    );

    let (status, _, e) = s
        .post(basic_form().text("output_dir", "album/.hidden"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], "invalid_output_dir", "{e}");
    assert_eq!(e["field"], "output_dir", "{e}");
}

/// An output folder that is a symbolic link to a place outside the output root is refused at
/// admission (before, it was accepted and failed when the result was written).
#[tokio::test]
async fn an_output_folder_through_a_symlink_is_refused_at_admission() {
    let s = start().await;
    let outside = tempfile::tempdir().unwrap();
    let root = s.app.outputs().resolve("x.wav").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.with_file_name("escape")).unwrap();
    for dir in ["escape", "escape/deeper"] {
        let (status, _, e) = s.post(basic_form().text("output_dir", dir)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{dir}: {e}");
        assert_eq!(e["code"], "invalid_output_dir", "{dir}: {e}");
    }
    let (status, _, e) = s.post(basic_form().text("output_dir", "inside/ok")).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{e}");
}
