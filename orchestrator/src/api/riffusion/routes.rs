//! The handlers: each translates the request ([`super::input`]), calls the job core
//! (`App::admit_takes` for the two takes, with the `Idempotency-Key` and the per-key limits of
//! `[riffusion_api]`; `App::upload` for uploads, with the `Idempotency-Key` and
//! `[limits.uploads]`) and renders the answer ([`super::view`])
//! or the error ([`RiffError`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderMap};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::RiffErrorBody;
use super::input::{self, GenerateRequest, TopicRequest};
use super::view::{self, Created, Riff, Uploaded};
use super::{KeyOwner, RiffError};
use crate::admission::{AudioInput, Draft, NewUpload};
use crate::api::error::multipart_error;
use crate::app::App;
use crate::error::{Field, OrchestratorError};

/// Most ids one feed request may name.
pub const MAX_FEED_IDS: usize = 10;

/// Takes per request.
pub const TAKES: u32 = 2;

/// Admits `draft` as the request's two takes (own seeds, all or none) through the core, with
/// the request's `Idempotency-Key` and this API's per-key limits.
async fn two_takes(
    app: &App,
    mut draft: Draft,
    headers: &HeaderMap,
) -> Result<Vec<protocol::JobRecord>, RiffError> {
    draft.meta.idempotency_key = crate::api::headers::idempotency_key(headers)?;
    draft.meta.quota = Some(app.config().riffusion_api.limits);
    let takes = app.admit_takes(draft, TAKES).await?;
    Ok(takes.into_iter().map(|t| t.record).collect())
}

/// Creates two takes of a song: from structured lyrics and tags, or a transform (`morph`).
#[utoipa::path(
    post, path = "/riffusion/generate", operation_id = "riffusionGenerate", tag = "riffusion",
    security(("bearer" = [])),
    request_body(content = GenerateRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Printable ASCII, at most 255: the same key and body return the same \
                two takes; the same key with another body is 409 `idempotency_conflict`."),
    ),
    responses(
        (status = 200, description = "Two takes, queued.", body = Created),
        (status = 400, description = "`missing_field`, `invalid_field` (e.g. a `normalized_*` \
            outside 0–1), `invalid_lyrics`, `invalid_style_prompt`, `invalid_length`, \
            `invalid_audio`, `invalid_edit`, `invalid_reference`.", body = RiffErrorBody),
        (status = 401, description = "No or an unknown key.", body = RiffErrorBody),
        (status = 404, description = "`not_found`: `morph.riff_id` is not a take of this key.",
            body = RiffErrorBody),
        (status = 413, description = "The body is over the limit.", body = RiffErrorBody),
        (status = 409, description = "`idempotency_conflict`: the Idempotency-Key was used \
            for another request.", body = RiffErrorBody),
        (status = 422, description = "`unsupported`: `swap_vocals`, with the reason.",
            body = RiffErrorBody),
        (status = 429, description = "`owner_limit`: over a per-key limit (`[riffusion_api] \
            limits`, counted in takes; `Retry-After`).", body = RiffErrorBody),
        (status = 503, description = "Busy or not ready (`Retry-After`).", body = RiffErrorBody),
    ),
)]
pub async fn generate(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Created>, RiffError> {
    let request: GenerateRequest = input::parse(&body)?;
    let mode = request
        .morph
        .as_ref()
        .and_then(|m| m.transform.clone())
        .unwrap_or_else(|| "generate".into());
    let draft = input::generate_draft(&app, request, &owner).await?;
    let records = two_takes(&app, draft, &headers).await?;
    Ok(Json(view::created(&records, &mode)))
}

/// Creates two takes from a theme only: instrumentals with the theme as their style prompt.
#[utoipa::path(
    post, path = "/riffusion/generate/topic", operation_id = "riffusionGenerateTopic",
    tag = "riffusion", security(("bearer" = [])),
    request_body(content = TopicRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Printable ASCII, at most 255: the same key and body return the same \
                two takes; the same key with another body is 409 `idempotency_conflict`."),
    ),
    responses(
        (status = 200, description = "Two instrumental takes, queued.", body = Created),
        (status = 400, description = "`missing_field` (`topic`), `invalid_style_prompt`, \
            `invalid_length`, `invalid_field`.", body = RiffErrorBody),
        (status = 401, description = "No or an unknown key.", body = RiffErrorBody),
        (status = 409, description = "`idempotency_conflict`.", body = RiffErrorBody),
        (status = 429, description = "`owner_limit`: over a per-key limit.", body = RiffErrorBody),
        (status = 503, description = "Busy or not ready.", body = RiffErrorBody),
    ),
)]
pub async fn generate_topic(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Created>, RiffError> {
    let request: TopicRequest = input::parse(&body)?;
    let draft = input::topic_draft(request, &owner)?;
    let records = two_takes(&app, draft, &headers).await?;
    Ok(Json(view::created(&records, "topic")))
}

/// The takes named, with their status, progress and audio.
#[utoipa::path(
    get, path = "/riffusion/feed/{ids}", operation_id = "riffusionFeed", tag = "riffusion",
    security(("bearer" = [])),
    params(("ids" = String, Path, description = "One to ten take ids, comma-separated.")),
    responses(
        (status = 200, description = "The takes in the order named.", body = [Riff]),
        (status = 400, description = "`invalid_field`: no id, or more than ten.",
            body = RiffErrorBody),
        (status = 401, description = "No or an unknown key.", body = RiffErrorBody),
        (status = 404, description = "`not_found`: an id that is not a take of this key.",
            body = RiffErrorBody),
    ),
)]
pub async fn feed(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(ids): Path<String>,
) -> Result<Json<Vec<Riff>>, RiffError> {
    let ids: Vec<&str> = ids
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > MAX_FEED_IDS {
        return Err(OrchestratorError::invalid(
            Field::Named("ids".into()),
            format!("name 1 to {MAX_FEED_IDS} take ids, comma-separated"),
        )
        .into());
    }
    let mut riffs = Vec::with_capacity(ids.len());
    for id in ids {
        let record = input::owned(&app, &owner, id)?;
        let progress = app.progress(&record).await;
        riffs.push(view::riff(&record, progress, app.public_url()));
    }
    Ok(Json(riffs))
}

/// `POST /riffusion/upload` as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"url": "https://example.com/song.mp3"}))]
pub struct UploadRequest {
    /// An `http(s)` URL of the audio, fetched through the outbound guard.
    pub url: String,
}

/// Stores audio (by URL, or a multipart `file` part) for use as `morph.audio_upload_id`.
#[utoipa::path(
    post, path = "/riffusion/upload", operation_id = "riffusionUpload", tag = "riffusion",
    security(("bearer" = [])),
    request_body(description = "`{\"url\": …}` as JSON, or `multipart/form-data` with a \
        `file` part.", content(
            (UploadRequest = "application/json"),
            (crate::api::v1::uploads::UploadForm = "multipart/form-data"),
        )),
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Printable ASCII, at most 255: the same key and audio (the same URL, \
                or the same file) return the same upload; the same key with other audio is \
                409 `idempotency_conflict`."),
    ),
    responses(
        (status = 200, description = "Stored (or the upload this Idempotency-Key made).",
            body = Uploaded),
        (status = 400, description = "`missing_field`, `invalid_field`, `invalid_url` (a \
            private or loopback address…), `fetch_failed`, `invalid_audio`.",
            body = RiffErrorBody),
        (status = 401, description = "No or an unknown key.", body = RiffErrorBody),
        (status = 409, description = "`idempotency_conflict`.", body = RiffErrorBody),
        (status = 413, description = "`too_large`.", body = RiffErrorBody),
        (status = 429, description = "`owner_limit`: over the key's `[limits.uploads]` \
            (`Retry-After`).", body = RiffErrorBody),
    ),
)]
pub async fn upload(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    request: Request,
) -> Result<Json<Uploaded>, RiffError> {
    let idempotency_key = crate::api::headers::idempotency_key(request.headers())?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let (field, input) = if content_type.starts_with("multipart/form-data") {
        (
            Field::Named("file".into()),
            multipart_file(&app, request).await?,
        )
    } else {
        let limit = app.config().limits.max_body_bytes;
        let body = axum::body::to_bytes(request.into_body(), limit)
            .await
            .map_err(|_| OrchestratorError::TooLarge {
                field: Field::Body,
                limit,
            })?;
        let request: UploadRequest = input::parse(&body)?;
        let url = request.url.trim().to_string();
        if url.is_empty() {
            return Err(OrchestratorError::missing(Field::Named("url".into()), "required").into());
        }
        (Field::Named("url".into()), AudioInput::Url(url))
    };
    let stored = app
        .upload(NewUpload {
            owner: owner.0,
            idempotency_key,
            field,
            input,
        })
        .await?;
    Ok(Json(Uploaded {
        id: stored.upload_id,
        duration_seconds: stored.duration_seconds,
    }))
}

/// The `file` part of a multipart upload.
async fn multipart_file(app: &App, request: Request) -> Result<AudioInput, OrchestratorError> {
    let field_name = Field::Named("file".into());
    let limit = app.config().limits.max_upload_bytes;
    let body_limit = app.config().limits.max_body_bytes;
    let mut multipart = Multipart::from_request(request, app)
        .await
        .map_err(|r| OrchestratorError::invalid(Field::Body, r.body_text()))?;
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
            .or_else(|| {
                field
                    .content_type()
                    .and_then(crate::outbound::hint_from_content_type)
            });
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(e, body_limit))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(OrchestratorError::TooLarge {
                    field: field_name,
                    limit,
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        if bytes.is_empty() {
            return Err(OrchestratorError::missing(field_name, "the file is empty"));
        }
        return Ok(AudioInput::Bytes { bytes, hint });
    }
    Err(OrchestratorError::missing(
        field_name,
        "a `file` part is required (or send {\"url\": …} as JSON)",
    ))
}
