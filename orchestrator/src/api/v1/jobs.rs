//! Reading, listing, cancelling and downloading jobs in Refrain's own API:
//! `GET /api/v1/jobs`, `GET`/`PATCH`/`DELETE /api/v1/jobs/{id}`,
//! `GET /api/v1/jobs/{id}/audio[/{n}]`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{AudioFormat, JobId, JobRecord, JobState, Source};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::view::JobView;
use crate::api::audio;
use crate::api::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::jobs::results::{self, ResultError};
use crate::store::list::ListFilter;

/// Most jobs one page lists.
pub const MAX_PAGE: usize = 100;

/// A query string that does not parse (an unknown parameter, a wrong type) as this API's 400.
pub(super) fn query_error(rejection: QueryRejection) -> OrchestratorError {
    OrchestratorError::invalid(Field::Named("query".into()), rejection.body_text())
}

pub(super) fn parse_id(raw: &str) -> Result<JobId, OrchestratorError> {
    JobId::parse(raw).ok_or_else(|| OrchestratorError::NotFound(raw.chars().take(64).collect()))
}

pub(super) fn find(app: &App, raw: &str) -> Result<JobRecord, OrchestratorError> {
    let id = parse_id(raw)?;
    app.job(&id)?
        .ok_or_else(|| OrchestratorError::NotFound(id.to_string()))
}

/// The job.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    operation_id = "getJob",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "The job.", body = JobView),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&app, &id)?;
    Ok(Json(JobView::of(&app, &record).await?).into_response())
}

/// What `PATCH /api/v1/jobs/{id}` may change: only the client's own note.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobPatch {
    /// The new opaque text kept on the job (at most 2048 bytes); null (or absent) removes it.
    #[schema(example = "telegram:chat=42;message=7;delivered")]
    pub client_data: Option<String>,
}

/// Replaces the job's `client_data`, in any state (a chat bot notes there that it delivered
/// the song). No event is published: nothing about the job itself changes.
#[utoipa::path(
    patch,
    path = "/api/v1/jobs/{id}",
    operation_id = "updateJob",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "The job's id.")),
    request_body = JobPatch,
    responses(
        (status = 200, description = "The job, with its new `client_data`.", body = JobView),
        (status = 400, description = "`invalid_field`: not a JSON object with only \
            `client_data`.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = ErrorBody),
        (status = 413, description = "`too_large`: `client_data` over 2048 bytes.",
            body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let patch: JobPatch = serde_json::from_slice(&body).map_err(|e| {
        OrchestratorError::invalid(Field::Body, format!("not a valid job update: {e}"))
    })?;
    let id = parse_id(&id)?;
    let record = app.set_client_data(&id, patch.client_data).await?;
    Ok(Json(JobView::of(&app, &record).await?).into_response())
}

/// Cancels a queued or running job.
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    operation_id = "cancelJob",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "The job's id.")),
    responses(
        (status = 200, description = "Cancelled: the job.", body = JobView),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = ErrorBody),
        (status = 409, description = "`job_finished`: it has already ended.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
        (status = 503, description = "`not_ready`: the queue cannot be reached.",
            body = ErrorBody),
    ),
)]
pub(crate) async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let record = app.cancel(&id).await?;
    Ok(Json(JobView::of(&app, &record).await?).into_response())
}

/// The filters and page of `GET /api/v1/jobs` (unknown parameters are refused).
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only jobs in this state.
    #[param(value_type = Option<JobState>)]
    state: Option<String>,
    /// Only jobs from this front end.
    #[param(value_type = Option<Source>)]
    source: Option<String>,
    /// Jobs per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// One page of `GET /api/v1/jobs`.
#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    /// Newest first; without live queue positions.
    pub jobs: Vec<JobView>,
    /// The `cursor` of the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The jobs, newest first, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    operation_id = "listJobs",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of jobs.", body = JobList),
        (status = 400, description = "`invalid_field`: a bad filter, limit or cursor, or an \
            unknown parameter.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn list(
    State(app): State<App>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let named = |field: &str| Field::Named(field.to_string());
    let state = match q.state.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            JobState::ALL
                .into_iter()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| {
                    OrchestratorError::invalid(
                        named("state"),
                        "expected queued, running, succeeded, failed or cancelled",
                    )
                })?,
        ),
    };
    let source = match q.source.as_deref() {
        None | Some("") => None,
        Some(s) => Some(Source::parse(s).ok_or_else(|| {
            OrchestratorError::invalid(named("source"), format!("no source {s:?}"))
        })?),
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(OrchestratorError::invalid(
            named("limit"),
            format!("expected 1 to {MAX_PAGE}"),
        )
        .into());
    }
    let page = app
        .store()
        .list(ListFilter { state, source }, q.cursor.as_deref(), limit)?
        .map_err(|e| OrchestratorError::invalid(named("cursor"), e.to_string()))?;
    let jobs: Vec<JobView> = page.jobs.iter().map(JobView::stored).collect();
    Ok(Json(JobList {
        jobs,
        next_cursor: page.next_cursor,
    })
    .into_response())
}

/// The format of a download.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AudioQuery {
    /// `wav`, `mp3` or `ogg` (default: the job's own format); made on first request.
    #[param(example = "mp3")]
    pub(crate) format: Option<String>,
    /// A lossy format at another bitrate: MP3 64, 96, 128, 160, 192, 256 or 320; Ogg/Opus 24,
    /// 32, 48, 64, 96, 128 or 160 (default: the server's configured bitrate).
    #[param(example = 96)]
    pub(crate) kbps: Option<u32>,
}

/// The job's first song.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/audio",
    operation_id = "jobAudio",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(("id" = String, Path, description = "The job's id."), AudioQuery),
    responses(
        (status = 200, description = AUDIO_OK, headers(
            ("ETag" = String), ("Last-Modified" = String),
            ("Content-Disposition" = String,
                description = "`attachment; filename=\"<first lyric line>.<ext>\"`")),
            content(
                (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg"))),
        (status = 206, description = "The `Range` asked for.", content(
            (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg"))),
        (status = 304, description = "Not modified (`If-None-Match`, `If-Modified-Since`)."),
        (status = 400, description = "`invalid_format`.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = AUDIO_NOT_FOUND, body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the `Range` starts past the end \
            of the file (a `Range` that does not parse is ignored).", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn audio_first(
    State(app): State<App>,
    Path(id): Path<String>,
    q: Result<Query<AudioQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    serve_audio(&app, &id, 1, q, request).await
}

/// One song of the job.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/audio/{variant}",
    operation_id = "jobAudioVariant",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("id" = String, Path, description = "The job's id."),
        ("variant" = u32, Path, minimum = 1, description = "1-based variant number."),
        AudioQuery,
    ),
    responses(
        (status = 200, description = AUDIO_OK, headers(
            ("ETag" = String), ("Last-Modified" = String),
            ("Content-Disposition" = String,
                description = "`attachment; filename=\"<first lyric line>-<n>.<ext>\"`")),
            content(
                (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg"))),
        (status = 206, description = "The `Range` asked for.", content(
            (Vec<u8> = "audio/wav"), (Vec<u8> = "audio/mpeg"), (Vec<u8> = "audio/ogg"))),
        (status = 304, description = "Not modified (`If-None-Match`, `If-Modified-Since`)."),
        (status = 400, description = "`invalid_format`.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = AUDIO_NOT_FOUND, body = ErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the `Range` starts past the end \
            of the file (a `Range` that does not parse is ignored).", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn audio_variant(
    State(app): State<App>,
    Path((id, variant)): Path<(String, String)>,
    q: Result<Query<AudioQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let variant = variant
        .parse::<u32>()
        .map_err(|_| OrchestratorError::NotFound(format!("{id} variant {variant}")))?;
    serve_audio(&app, &id, variant, q, request).await
}

const AUDIO_OK: &str = "The song, with `Range`, `ETag` and `Last-Modified` support; \
    `Cache-Control: public`, or `private` when the request carried an API key.";
const AUDIO_NOT_FOUND: &str = "`not_found`: no such job or variant, or the job has not \
    succeeded (yet).";

/// The format a download asks for (`None`: the job's own).
pub(crate) fn audio_format(raw: Option<&str>) -> Result<Option<AudioFormat>, OrchestratorError> {
    raw.map(|f| {
        AudioFormat::parse(f).ok_or_else(|| {
            OrchestratorError::coded(
                ErrorCode::InvalidFormat,
                Field::Format,
                format!("expected wav, mp3 or ogg, not {f:?}"),
            )
        })
    })
    .transpose()
}

async fn serve_audio(
    app: &App,
    id: &str,
    variant: u32,
    q: AudioQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let record = find(app, id)?;
    let format = audio_format(q.format.as_deref())?.unwrap_or(record.spec.format);
    serve_record_audio(app, record, variant, format, q.kbps, request).await
}

/// Variant `variant` of `record` as `format` (at `kbps`), with `ETag` and a download name.
pub(crate) async fn serve_record_audio(
    app: &App,
    record: JobRecord,
    variant: u32,
    format: AudioFormat,
    kbps: Option<u32>,
    request: Request,
) -> Result<Response, ApiError> {
    if record.state != JobState::Succeeded {
        return Err(OrchestratorError::NotFound(format!(
            "job {} has no audio: it is {}",
            record.id, record.state
        ))
        .into());
    }
    let file = match results::audio_file_at(app.outputs(), &record, variant, format, kbps).await {
        Ok(f) => f,
        Err(e @ ResultError::Bitrate { .. }) => {
            return Err(OrchestratorError::coded(
                ErrorCode::InvalidFormat,
                Field::Named("kbps".into()),
                e.to_string(),
            )
            .into())
        }
        Err(ResultError::NoVariant { id, variant }) => {
            return Err(OrchestratorError::NotFound(format!("{id} variant {variant}")).into())
        }
        Err(ResultError::Output(e)) => return Err(OrchestratorError::from(e).into()),
        Err(e @ ResultError::Format { .. }) => {
            return Err(OrchestratorError::Io {
                context: format!("job {}", record.id),
                source: std::io::Error::other(e.to_string()),
            }
            .into())
        }
    };
    let path = app.outputs().resolve(&file.file)?;
    let Some(mut response) = audio::serve(&path, format, request).await? else {
        return Err(OrchestratorError::NotFound(file.file).into());
    };
    let headers = response.headers_mut();
    let etag = format!(
        "\"{}-{}-{}-{}-{}\"",
        record.id,
        variant,
        format.extension(),
        kbps.unwrap_or(0),
        file.bytes
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    let name = download_name(&record, variant, format);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

/// A file name from the job's title, else its first lyric line (ASCII letters and digits in
/// lower case, other runs as one `-`, at most 60), else the job id; `-<n>` for variants after
/// the first.
pub fn download_name(record: &JobRecord, variant: u32, format: AudioFormat) -> String {
    let first_line = record
        .spec
        .lyrics
        .lines()
        .map(|l| {
            // Drop leading [mm:ss.xx] tags.
            let mut rest = l.trim();
            while let Some(r) = rest.strip_prefix('[').and_then(|r| r.split_once(']')) {
                rest = r.1.trim_start();
            }
            rest
        })
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let stem = [record.title.as_deref().unwrap_or(""), first_line]
        .into_iter()
        .map(file_stem)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| record.id.to_string());
    match variant {
        1 => format!("{stem}.{}", format.extension()),
        n => format!("{stem}-{n}.{}", format.extension()),
    }
}

/// `text` as a file name stem: ASCII letters and digits in lower case, every other run as one
/// `-`, at most 60 characters, no `-` at either end.
fn file_stem(text: &str) -> String {
    let mut stem = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.ends_with('-') && !stem.is_empty() {
            stem.push('-');
        }
        if stem.len() >= 60 {
            break;
        }
    }
    stem.trim_matches('-').to_string()
}
