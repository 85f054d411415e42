//! HTTP helpers of the orchestrator's in-process API tests: requests to a [`TestService`]
//! (multipart `POST /generate`, JSON `GET`s, raw HTTP/1.1 over TCP for paths a URL library
//! would normalise), the spec client's forms, a WAV to upload, an audio store to fetch from, and
//! driving a queued job to success through the job core as a node would.

use protocol::{JobId, JobResult};
use refrain_orchestrator::outputs::OutputStore;
use reqwest::multipart::Form;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::TestService;

/// An audio store for URL fetches, on its own loopback address `ip` (`127.0.0.3`…), so a test
/// can allow-list that address alone: `/song.wav` serves `clip` as `audio/wav`, and
/// `/elsewhere.wav` redirects to a loopback address that is not allow-listed
/// (`127.0.0.1:9`). Returns the store's address.
pub async fn audio_store(ip: &str, clip: Vec<u8>) -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/song.wav",
            axum::routing::get(move || {
                let clip = clip.clone();
                async move { ([("content-type", "audio/wav")], clip) }
            }),
        )
        .route(
            "/elsewhere.wav",
            axum::routing::get(|| async {
                axum::response::Redirect::temporary("http://127.0.0.1:9/song.wav")
            }),
        );
    let listener = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .expect("a loopback address");
    let addr = listener.local_addr().expect("bound");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A 16-bit mono PCM WAV of a 440 Hz tone.
pub fn wav(seconds: f64, rate: u32) -> Vec<u8> {
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
pub fn basic_form() -> Form {
    Form::new()
        .text("_dummy", "")
        .text("ref_prompt", "upbeat electronic dance")
        .text("audio_length", "120")
        .text("lrc", "[00:00.00] Let's dance\n[00:05.00] All night long")
}

pub fn form_from(fields: &[(&str, &str)]) -> Form {
    fields.iter().fold(Form::new(), |f, (k, v)| {
        f.text(k.to_string(), v.to_string())
    })
}

impl TestService {
    pub async fn post(&self, form: Form) -> (StatusCode, reqwest::header::HeaderMap, Value) {
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

    pub async fn get_json(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Value) {
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

    pub async fn accepted(&self, form: Form) -> Value {
        let (status, _, body) = self.post(form).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body
    }

    /// Sends `request` verbatim over TCP and returns the status code and the whole response.
    pub async fn raw(&self, request: &str) -> (u16, String) {
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

    pub async fn raw_get(&self, path: &str) -> (u16, String) {
        self.raw(&format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ))
        .await
    }

    /// Adds an API key named `name`, as `refrain keys add` does; the key.
    pub fn add_key(&self, name: &str) -> String {
        refrain_orchestrator::api::v1::auth::add_key(&self.app.config().api_keys_path(), name)
            .unwrap()
    }

    /// `method path` with `headers` and an optional JSON body: the status, the headers and the
    /// body as JSON (a JSON string when it is not JSON).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, headers, body)
    }

    /// Drives a queued job to Succeeded as a node would, with a `seconds` s song as its one
    /// variant stored through the job core (so in every format the job asks for).
    pub async fn finish_with_song(&self, id: &JobId, seconds: f64) {
        let record = self.app.store().get(id).unwrap().unwrap();
        self.app.lifecycle().start(id, 1, 1).await.unwrap();
        let song = wav(seconds, 44_100);
        let result = refrain_orchestrator::jobs::results::store_variants(
            self.app.outputs(),
            id,
            &record.spec,
            1,
            &[song],
            seconds,
        )
        .await
        .unwrap();
        self.app.lifecycle().succeed(id, 1, result).await.unwrap();
    }

    /// Drives a queued job to Succeeded and writes its result file.
    pub async fn succeed(&self, id: &JobId, bytes: &[u8]) -> String {
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

pub fn job_id(body: &Value) -> JobId {
    JobId::parse(body["job_id"].as_str().unwrap()).unwrap()
}

pub fn assert_field_error(status: StatusCode, body: &Value, code: StatusCode, field: &str) {
    assert_eq!(status, code, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["field"], field, "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.starts_with(&format!("{field}: ")), "{body}");
}
