//! The one mapping of [`OrchestratorError`] to HTTP: status from the error-code catalogue
//! ([`ErrorCode::http_status`]), `Retry-After` for the 429/503 cases, internal details logged
//! and never shown. Each API renders the body in its own format on top of [`Rendered`]:
//!
//! * Refrain's own API ([`ApiError`]): `{"error": {"code", "message", "field"}}` with the
//!   neutral field names of [`Field::name`];
//! * the DiffRhythm API: `super::diffrhythm::DiffRhythmError`, the reference server's shapes.
//!
//! Multipart errors become 400 (malformed body) or 413 (body over the limit), naming `body`.

use axum::extract::multipart::MultipartError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::blobs::BlobError;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::outputs::OutputError;

/// Seconds a 503 "not ready" asks the client to wait (the model is loading).
pub const NOT_READY_RETRY_AFTER: u64 = 10;

/// What every API needs to render an error: status, code, client-safe message, field and
/// `Retry-After`.
#[derive(Debug)]
pub struct Rendered {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// Safe to show: internal errors say only "internal error".
    pub message: String,
    pub field: Option<Field>,
    pub retry_after: Option<u64>,
}

impl Rendered {
    /// Classifies `error` (and logs internal ones with their detail).
    pub fn of(error: &OrchestratorError) -> Rendered {
        let code = error.code();
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = match error {
            OrchestratorError::Busy { retry_after, .. }
            | OrchestratorError::OwnerLimit { retry_after, .. } => Some(*retry_after),
            OrchestratorError::NotReady(_) => Some(NOT_READY_RETRY_AFTER),
            _ => None,
        };
        let message = match error {
            OrchestratorError::Invalid { message, .. } => message.clone(),
            OrchestratorError::TooLarge { limit, .. } => {
                format!("larger than the limit of {limit} bytes")
            }
            OrchestratorError::NotFound(what) => {
                tracing::debug!(%what, "not found");
                "no such job or file".to_string()
            }
            e if code == ErrorCode::Internal => {
                tracing::error!(error = %e, "internal error while serving a request");
                "internal error".to_string()
            }
            e => e.to_string(),
        };
        Rendered {
            status,
            code,
            message,
            field: error.field().cloned(),
            retry_after,
        }
    }

    /// `body` with this error's status and `Retry-After`.
    pub fn respond(&self, body: serde_json::Value) -> Response {
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The body of every error of Refrain's own API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong: the code clients branch on, a message to show, the field at fault.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// Safe to show to a person; internal errors say only "internal error".
    pub message: String,
    /// The request field at fault, in this API's names (`lyrics`, `style.prompt`,
    /// `length_seconds`, `edit.segments`, `Idempotency-Key`, `body`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again, as in the `Retry-After` header (429 and 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An error of Refrain's own API: [`ErrorBody`], `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError(pub OrchestratorError);

impl<E: Into<OrchestratorError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let r = Rendered::of(&self.0);
        let body = ErrorBody {
            error: ErrorDetail {
                code: r.code,
                message: r.message.clone(),
                field: r.field.as_ref().map(|f| f.name().to_string()),
                retry_after: r.retry_after,
            },
        };
        r.respond(serde_json::to_value(body).unwrap_or_default())
    }
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
            field: Field::Body,
            limit: body_limit,
        }
    } else {
        OrchestratorError::invalid(
            Field::Body,
            format!("malformed multipart/form-data body ({})", error.body_text()),
        )
    }
}

/// Upload store errors: a bad upload id is the client's (400 naming the style audio), a missing
/// one too (the reference does not resolve), I/O 500.
impl From<BlobError> for OrchestratorError {
    fn from(e: BlobError) -> Self {
        match e {
            BlobError::Io { context, source } => OrchestratorError::Io { context, source },
            BlobError::BadId(id) => OrchestratorError::coded(
                ErrorCode::InvalidReference,
                Field::StyleAudio,
                format!("invalid upload id {id:?}"),
            ),
            BlobError::NotFound(id) => OrchestratorError::coded(
                ErrorCode::InvalidReference,
                Field::StyleAudio,
                format!("no upload {id:?}"),
            ),
        }
    }
}

/// Output store errors: a bad `output_dir` is 400 naming it, a bad result name 400 naming
/// `file`, I/O 500.
impl From<OutputError> for OrchestratorError {
    fn from(e: OutputError) -> Self {
        match e {
            OutputError::Io { context, source } => OrchestratorError::Io { context, source },
            OutputError::BadSubdir(why) => {
                OrchestratorError::coded(ErrorCode::InvalidOutputDir, Field::OutputDir, why)
            }
            OutputError::BadName(why) => {
                OrchestratorError::invalid(Field::Named("file".into()), why)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    async fn body(r: Response) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        (status, headers, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn refrain_api_shapes() {
        let e = OrchestratorError::coded(ErrorCode::InvalidLength, Field::Length, "too long");
        let (s, _, b) = body(ApiError(e).into_response()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(
            b,
            json!({"error": {"code": "invalid_length", "message": "too long", "field": "length_seconds"}})
        );

        let busy = OrchestratorError::Busy {
            running: 1,
            queued: 2,
            retry_after: 7,
        };
        let (s, h, b) = body(ApiError(busy).into_response()).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(h[header::RETRY_AFTER], "7");
        assert_eq!(b["error"]["code"], "busy");
        assert_eq!(b["error"]["retry_after"], 7);

        let (s, _, b) = body(
            ApiError(io_error(
                "/secret/path",
                std::io::Error::other("disk on fire"),
            ))
            .into_response(),
        )
        .await;
        assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            b,
            json!({"error": {"code": "internal", "message": "internal error"}})
        );
    }

    #[test]
    fn statuses_come_from_the_catalogue() {
        let cases = [
            (OrchestratorError::NotFound("x".into()), 404),
            (OrchestratorError::NotReady("loading".into()), 503),
            (
                OrchestratorError::Conflict(protocol::JobId::from_bytes([0; 16])),
                409,
            ),
            (
                OrchestratorError::TooLarge {
                    field: Field::Body,
                    limit: 1,
                },
                413,
            ),
            (
                OrchestratorError::OwnerLimit {
                    message: "slow down".into(),
                    retry_after: 1,
                },
                429,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(Rendered::of(&e).status.as_u16(), status, "{e}");
        }
    }
}
