//! The DiffRhythm server API, compatible with the reference server `mgraffam/DiffRhythm-webapi`
//! (see the README's API section), minus its weaknesses. This module only translates: requests
//! become [`crate::admission::Draft`]s, jobs and errors become the reference's JSON shapes.
//!
//! * [`generate`] — `POST /generate` (`multipart/form-data`). Every field is validated by
//!   admission before a job exists; 503 + `Retry-After` only when the queue is at capacity
//!   (`queue.capacity = 0` gives the reference's single-job behaviour). `seed` is an extension
//!   (default: random, fixed at admission and shown in the status). `ref_song` is never a server
//!   path: the name of an earlier result of this server (`<id>.wav`, `sub/<id>.wav` or
//!   `/output/<id>.wav`, of a succeeded job) or an uploaded file. `output_dir` may only name a
//!   sub-folder of the output root, and `GET` honours it.
//! * [`output`] — `GET`/`HEAD /output/{file}`: the first variant's WAV once the job succeeded
//!   (Range, Content-Length, Last-Modified, `Cache-Control: public, max-age=86400`); while it
//!   is queued or running, 200 JSON with every field of the reference's `processing` example
//!   plus real progress; failed and cancelled jobs answer 200 JSON with `status: "failed"` /
//!   `"cancelled"` (the reference answered 404, indistinguishable from an unknown file).
//! * [`status`] — `GET /status` and `GET /files`, the reference's extras.
//!
//! Errors are rendered by [`DiffRhythmError`] in the reference's shapes, with this API's field
//! names ([`field_name`]) and the catalogue code added as `code`.

pub(crate) mod generate;
pub(crate) mod output;
pub(crate) mod status;

use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa::ToSchema;

pub use self::output::parameters;
use super::error::Rendered;
use super::routing::Routes;
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The message of every 404 of the DiffRhythm API (the reference server's wording).
pub const NOT_FOUND_MESSAGE: &str = "No active job for this file or file does not exist.";

/// The DiffRhythm API routes.
pub fn routes() -> Routes {
    Routes::new()
        .post("/generate", generate::generate)
        .get("/output/{*file}", output::output)
        .get("/status", status::status)
        .get("/files", status::files)
}

/// Every error body of the DiffRhythm API; which fields come with which status is in
/// [`DiffRhythmError`].
#[derive(ToSchema)]
#[allow(dead_code)] // the bodies' shape for the OpenAPI document; `DiffRhythmError` builds them
pub(crate) struct DiffRhythmErrorBody {
    /// `error` (bad input, 400/413, or 500), `busy` (503 queue full, 429 over a per-owner
    /// limit), `not_ready` (503), `not_found` (404) or `conflict` (409).
    #[schema(example = "error")]
    status: String,
    /// What went wrong; for bad input `<field>: <message>`.
    #[schema(example = "audio_length: required")]
    error: Option<String>,
    /// 404 only: "No active job for this file or file does not exist."
    message: Option<String>,
    /// The field at fault, in this API's names (`lrc`, `ref_prompt`, `ref_audio`,
    /// `audio_length`, `batch_infer_num`, `ref_song`, `edit_segments`, `output_dir`, …).
    field: Option<String>,
    code: Option<ErrorCode>,
    /// Seconds to wait, as in `Retry-After` (429, 503).
    retry_after: Option<u64>,
}

/// How this API spells a field.
pub fn field_name(field: &Field) -> &str {
    match field {
        Field::Lyrics => "lrc",
        Field::StylePrompt | Field::Style => "ref_prompt",
        Field::StyleAudio => "ref_audio",
        Field::Length => "audio_length",
        Field::Variants => "batch_infer_num",
        Field::EditSong => "ref_song",
        Field::EditSegments => "edit_segments",
        Field::OutputDir => "output_dir",
        other => other.name(),
    }
}

/// An error in the DiffRhythm API's shapes:
///
/// | code | status | body |
/// |---|---|---|
/// | bad input | 400 / 413 | `{"status":"error","error":"<field>: <message>","field":…,"code":…}` |
/// | `busy` | 503 + `Retry-After` | `{"status":"busy","error":"Server is busy …","retry_after":n}` |
/// | `owner_limit` | 429 + `Retry-After` | `{"status":"busy","error":"…","retry_after":n}` |
/// | `not_found` | 404 | `{"status":"not_found","message":"No active job for this file or file does not exist."}` |
/// | `not_ready` | 503 + `Retry-After` | `{"status":"not_ready","error":"Service not ready: …","retry_after":n}` |
/// | `job_finished`, `idempotency_conflict` | 409 | `{"status":"conflict","error":"…"}` |
/// | `internal` | 500 | `{"status":"error","error":"internal error"}` |
#[derive(Debug)]
pub struct DiffRhythmError(pub OrchestratorError);

impl<E: Into<OrchestratorError>> From<E> for DiffRhythmError {
    fn from(e: E) -> Self {
        DiffRhythmError(e.into())
    }
}

impl IntoResponse for DiffRhythmError {
    fn into_response(self) -> Response {
        let r = Rendered::of(&self.0);
        let body = match (r.code, &self.0) {
            (
                ErrorCode::Busy,
                OrchestratorError::Busy {
                    running,
                    queued,
                    retry_after,
                },
            ) => json!({
                "status": "busy",
                "error": format!(
                    "Server is busy ({running} running, {queued} queued). \
                     Try again in {retry_after} seconds."
                ),
                "retry_after": retry_after,
            }),
            (ErrorCode::OwnerLimit, _) => json!({
                "status": "busy", "error": r.message, "retry_after": r.retry_after,
            }),
            (ErrorCode::NotFound, _) => {
                json!({"status": "not_found", "message": NOT_FOUND_MESSAGE})
            }
            (ErrorCode::NotReady, OrchestratorError::NotReady(why)) => json!({
                "status": "not_ready",
                "error": format!("Service not ready: {why}"),
                "retry_after": r.retry_after,
            }),
            (ErrorCode::JobFinished | ErrorCode::IdempotencyConflict, _) => {
                json!({"status": "conflict", "error": r.message, "code": r.code.as_str()})
            }
            (ErrorCode::Internal, _) => json!({"status": "error", "error": r.message}),
            (code, _) => match &r.field {
                Some(field) => {
                    let name = field_name(field);
                    json!({
                        "status": "error",
                        "error": format!("{name}: {}", r.message),
                        "field": name,
                        "code": code.as_str(),
                    })
                }
                None => json!({"status": "error", "error": r.message, "code": code.as_str()}),
            },
        };
        r.respond(body)
    }
}

/// The DiffRhythm API's 404.
pub fn not_found() -> Response {
    DiffRhythmError(OrchestratorError::NotFound(String::new())).into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::{header, StatusCode};

    use super::*;

    async fn body(r: Response) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    fn render(e: OrchestratorError) -> Response {
        DiffRhythmError(e).into_response()
    }

    #[tokio::test]
    async fn shapes() {
        let (s, _, b) = body(render(OrchestratorError::missing(
            Field::Length,
            "required",
        )))
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            json!({"status":"error","error":"audio_length: required","field":"audio_length","code":"missing_field"})
        );
        let (s, _, b) = body(render(OrchestratorError::TooLarge {
            field: Field::StyleAudio,
            limit: 10,
        }))
        .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b["field"], "ref_audio");

        let (s, h, b) = body(render(OrchestratorError::Busy {
            running: 1,
            queued: 0,
            retry_after: 7,
        }))
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h[header::RETRY_AFTER], "7");
        assert_eq!(b["status"], "busy");
        assert!(b["error"].as_str().unwrap().starts_with("Server is busy"));

        let (s, _, b) = body(render(OrchestratorError::NotFound("x".into()))).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b, json!({"status":"not_found","message":NOT_FOUND_MESSAGE}));

        let (s, h, _) = body(render(OrchestratorError::NotReady("loading".into()))).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(h.contains_key(header::RETRY_AFTER));

        let io = OrchestratorError::Io {
            context: "/secret/path".into(),
            source: std::io::Error::other("disk on fire"),
        };
        let (s, _, b) = body(render(io)).await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b, json!({"status":"error","error":"internal error"}));
    }
}
