//! The one mapping of [`OrchestratorError`] (and of axum's extractor rejections) to HTTP.
//!
//! | error | status | body |
//! |---|---|---|
//! | `Invalid` | 400 | `{"status":"error","error":"<field>: <message>","field":"<field>"}` |
//! | `TooLarge` | 413 | same shape |
//! | `Busy` | 503 + `Retry-After` | `{"status":"busy","error":"Server is busy …","retry_after":n}` |
//! | `OwnerLimit` | 429 + `Retry-After` | `{"status":"busy","error":"…","retry_after":n}` |
//! | `NotFound` | 404 | `{"status":"not_found","message":"No active job for this file or file does not exist."}` |
//! | `NotReady` | 503 + `Retry-After` | `{"status":"not_ready","error":"…","retry_after":n}` |
//! | `Conflict` | 409 | `{"status":"conflict","error":"…"}` |
//! | `Store`, `Queue`, `Io` | 500 | `{"status":"error","error":"internal error"}` |
//!
//! Internal errors are logged with their detail (`tracing::error!`) and never shown to clients.
//! Multipart errors become 400 (malformed body) or 413 (body over the limit), naming `body`.

use axum::extract::multipart::MultipartError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::blobs::BlobError;
use crate::error::OrchestratorError;
use crate::outputs::OutputError;

/// The message of every 404 of the DiffRhythm API (the reference server's wording).
pub const NOT_FOUND_MESSAGE: &str = "No active job for this file or file does not exist.";

/// Seconds a 503 "not ready" asks the client to wait (the model is loading).
pub const NOT_READY_RETRY_AFTER: u64 = 10;

impl IntoResponse for OrchestratorError {
    fn into_response(self) -> Response {
        match self {
            OrchestratorError::Invalid { field, message } => {
                field_error(StatusCode::BAD_REQUEST, &field, &message)
            }
            OrchestratorError::TooLarge { field, limit } => field_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &field,
                &format!("larger than the limit of {limit} bytes"),
            ),
            OrchestratorError::Busy {
                running,
                queued,
                retry_after,
            } => with_retry_after(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "busy",
                        "error": format!(
                            "Server is busy ({running} running, {queued} queued). \
                             Try again in {retry_after} seconds."
                        ),
                        "retry_after": retry_after,
                    })),
                )
                    .into_response(),
                retry_after,
            ),
            OrchestratorError::OwnerLimit {
                message,
                retry_after,
            } => with_retry_after(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({
                        "status": "busy",
                        "error": message,
                        "retry_after": retry_after,
                    })),
                )
                    .into_response(),
                retry_after,
            ),
            OrchestratorError::NotFound(what) => {
                tracing::debug!(%what, "not found");
                not_found()
            }
            OrchestratorError::NotReady(why) => with_retry_after(
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Json(json!({
                        "status": "not_ready",
                        "error": format!("Service not ready: {why}"),
                        "retry_after": NOT_READY_RETRY_AFTER,
                    })),
                )
                    .into_response(),
                NOT_READY_RETRY_AFTER,
            ),
            e @ OrchestratorError::Conflict(_) => (
                StatusCode::CONFLICT,
                Json(json!({"status": "conflict", "error": e.to_string()})),
            )
                .into_response(),
            e @ (OrchestratorError::Store(_)
            | OrchestratorError::Queue(_)
            | OrchestratorError::Io { .. }) => internal(&e),
        }
    }
}

/// 400/413 body naming a field: `{"status":"error","error":"<field>: <message>","field":…}`.
pub fn field_error(status: StatusCode, field: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "status": "error",
            "error": format!("{field}: {message}"),
            "field": field,
        })),
    )
        .into_response()
}

/// The DiffRhythm API's 404.
pub fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"status": "not_found", "message": NOT_FOUND_MESSAGE})),
    )
        .into_response()
}

/// A 500 that hides its cause from the client and logs it.
pub fn internal(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "internal error while serving a request");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"status": "error", "error": "internal error"})),
    )
        .into_response()
}

/// An I/O failure as the orchestrator error (500, logged with `context`).
pub fn io_error(context: impl Into<String>, source: std::io::Error) -> OrchestratorError {
    OrchestratorError::Io {
        context: context.into(),
        source,
    }
}

/// Maps an error reading a multipart body: over the body limit → 413 naming `body`; anything else
/// (malformed body, broken stream) → 400 naming `body`.
pub fn multipart_error(error: MultipartError, body_limit: usize) -> OrchestratorError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        OrchestratorError::TooLarge {
            field: "body".into(),
            limit: body_limit,
        }
    } else {
        OrchestratorError::invalid(
            "body",
            format!("malformed multipart/form-data body ({})", error.body_text()),
        )
    }
}

/// Upload store errors: a bad upload id is the client's (400 naming `upload`), a missing one
/// 404, I/O 500.
impl From<BlobError> for OrchestratorError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Io { context, source } => OrchestratorError::Io { context, source },
            BlobError::BadId(id) => {
                OrchestratorError::invalid("upload", format!("invalid upload id {id:?}"))
            }
            BlobError::NotFound(id) => OrchestratorError::NotFound(id),
        }
    }
}

/// Output store errors: a bad `output_dir` is 400 naming `output_dir`, a bad result name 400
/// naming `file`, I/O 500.
impl From<OutputError> for OrchestratorError {
    fn from(e: OutputError) -> Self {
        match e {
            OutputError::Io { context, source } => OrchestratorError::Io { context, source },
            OutputError::BadSubdir(why) => OrchestratorError::invalid("output_dir", why),
            OutputError::BadName(why) => OrchestratorError::invalid("file", why),
        }
    }
}

fn with_retry_after(mut response: Response, seconds: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(r: Response) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn shapes() {
        let (s, _, b) =
            body(OrchestratorError::invalid("audio_length", "required").into_response()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            json!({"status":"error","error":"audio_length: required","field":"audio_length"})
        );

        let (s, _, b) = body(
            OrchestratorError::TooLarge {
                field: "ref_audio".into(),
                limit: 10,
            }
            .into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(b["field"], "ref_audio");

        let (s, h, b) = body(
            OrchestratorError::Busy {
                running: 1,
                queued: 0,
                retry_after: 7,
            }
            .into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h[header::RETRY_AFTER], "7");
        assert_eq!(b["status"], "busy");
        assert!(b["error"].as_str().unwrap().starts_with("Server is busy"));

        let (s, _, b) = body(OrchestratorError::NotFound("x".into()).into_response()).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(b, json!({"status":"not_found","message":NOT_FOUND_MESSAGE}));

        let (s, h, _) = body(OrchestratorError::NotReady("loading".into()).into_response()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert!(h.contains_key(header::RETRY_AFTER));

        let (s, _, b) =
            body(io_error("/secret/path", std::io::Error::other("disk on fire")).into_response())
                .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(b, json!({"status":"error","error":"internal error"}));
    }
}
