//! `POST /api/v1/uploads`: a reference recording stored once and used by id
//! (`style.upload_id`, `edit.song.upload_id`). Either `multipart/form-data` with a `file` part
//! or the raw body with an `audio/*` (or `application/octet-stream`) Content-Type. The audio is
//! decoded before it is kept, so an id always names usable audio. The job core stores it
//! (`App::upload`), with the `Idempotency-Key` and the caller's `[limits.uploads]`.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::Caller;
use crate::admission::{AudioInput, NewUpload};
use crate::api::error::{multipart_error, ApiError, ErrorBody};
use crate::api::openapi::Binary;
use crate::app::App;
use crate::error::{Field, OrchestratorError};
use crate::outbound::hint_from_content_type;

/// The body of `POST /api/v1/uploads`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upload {
    /// For `style.upload_id` or `edit.song.upload_id`.
    pub upload_id: String,
    pub bytes: usize,
    /// Of the decoded audio.
    pub duration_seconds: f64,
}

/// The multipart form of `POST /api/v1/uploads`.
#[derive(ToSchema)]
#[allow(dead_code)] // the form's shape for the OpenAPI document; the handler reads the parts
pub(crate) struct UploadForm {
    /// The recording: WAV, MP3, FLAC or Ogg.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
}

/// Stores a reference recording (checked by decoding it) for use by id.
#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    operation_id = "upload",
    tag = "uploads",
    security(("bearer" = []), ("api_key" = [])),
    request_body(
        description = "`multipart/form-data` with a `file` part, or the audio itself with an \
            `audio/*` (or `application/octet-stream`) Content-Type.",
        content(
            (UploadForm = "multipart/form-data"),
            (Binary = "audio/*"),
            (Binary = "application/octet-stream"),
        ),
    ),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Printable ASCII, at most 255: the same key and audio return the same \
                upload (200) within `limits.idempotency_hours`; the same key with other audio \
                is 409 `idempotency_conflict`."),
    ),
    responses(
        (status = 201, description = "Stored.", body = Upload),
        (status = 200, description = "The upload this Idempotency-Key already made.",
            body = Upload),
        (status = 400, description = "`missing_field` (no `file` part, an empty upload), \
            `invalid_field` (another Content-Type, a malformed body, a malformed \
            Idempotency-Key) or `invalid_audio` (it does not decode, or is too short or too \
            long).", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`: the Idempotency-Key was used \
            for other audio.", body = ErrorBody),
        (status = 413, description = "`too_large`: over `limits.max_upload_bytes`.",
            body = ErrorBody),
        (status = 429, description = "`owner_limit`: the caller stored as many uploads as \
            `[limits.uploads]` allows in a minute or a day.", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn upload(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    request: Request,
) -> Result<Response, ApiError> {
    let idempotency_key = crate::api::headers::idempotency_key(request.headers())?;
    let limit = app.config().limits.max_upload_bytes;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (bytes, hint) = if content_type.starts_with("multipart/form-data") {
        let body_limit = app.config().limits.max_body_bytes;
        let mut multipart = Multipart::from_request(request, &app)
            .await
            .map_err(|r| OrchestratorError::invalid(Field::Body, r.body_text()))?;
        let mut found = None;
        while let Some(mut field) = multipart
            .next_field()
            .await
            .map_err(|e| multipart_error(e, body_limit))?
        {
            if field.name() != Some("file") {
                continue;
            }
            let hint = field
                .file_name()
                .and_then(crate::outbound::hint_from_path)
                .or_else(|| field.content_type().and_then(hint_from_content_type));
            let mut bytes = Vec::new();
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| multipart_error(e, body_limit))?
            {
                if bytes.len() + chunk.len() > limit {
                    return Err(too_large(limit).into());
                }
                bytes.extend_from_slice(&chunk);
            }
            found = Some((bytes, hint));
            break;
        }
        found.ok_or_else(|| {
            OrchestratorError::missing(Field::Named("file".into()), "a `file` part is required")
        })?
    } else if content_type.starts_with("audio/")
        || content_type.starts_with("application/octet-stream")
    {
        let hint = hint_from_content_type(&content_type);
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| too_large(limit))?;
        (body.to_vec(), hint)
    } else {
        return Err(OrchestratorError::invalid(
            Field::Named("Content-Type".into()),
            "send multipart/form-data with a `file` part, or the audio as the body with an audio/* type",
        )
        .into());
    };
    if bytes.is_empty() {
        return Err(OrchestratorError::missing(Field::Body, "the upload is empty").into());
    }
    let stored = app
        .upload(NewUpload {
            owner: caller.owner,
            idempotency_key,
            field: Field::Named("file".into()),
            input: AudioInput::Bytes { bytes, hint },
        })
        .await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let upload = Upload {
        upload_id: stored.upload_id,
        bytes: stored.bytes,
        duration_seconds: stored.duration_seconds,
    };
    Ok((status, Json(upload)).into_response())
}

fn too_large(limit: usize) -> OrchestratorError {
    OrchestratorError::TooLarge {
        field: Field::Named("file".into()),
        limit,
    }
}
