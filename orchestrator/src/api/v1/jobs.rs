//! Reading, listing, cancelling and downloading jobs in Refrain's own API:
//! `GET /api/v1/jobs`, `GET`/`DELETE /api/v1/jobs/{id}`, `GET /api/v1/jobs/{id}/audio[/{n}]`.

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{AudioFormat, JobId, JobRecord, JobState, Source};
use serde::Deserialize;
use serde_json::json;

use super::view::JobView;
use crate::api::audio;
use crate::api::error::ApiError;
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::jobs::results::{self, ResultError};
use crate::store::list::ListFilter;

/// Most jobs one page lists.
pub const MAX_PAGE: usize = 100;

pub(super) fn parse_id(raw: &str) -> Result<JobId, OrchestratorError> {
    JobId::parse(raw).ok_or_else(|| OrchestratorError::NotFound(raw.chars().take(64).collect()))
}

pub(super) fn find(app: &App, raw: &str) -> Result<JobRecord, OrchestratorError> {
    let id = parse_id(raw)?;
    app.job(&id)?
        .ok_or_else(|| OrchestratorError::NotFound(id.to_string()))
}

pub(super) async fn get(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let record = find(&app, &id)?;
    Ok(Json(JobView::of(&app, &record).await?).into_response())
}

pub(super) async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let record = app.cancel(&id).await?;
    Ok(Json(JobView::of(&app, &record).await?).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    state: Option<String>,
    source: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(super) async fn list(
    State(app): State<App>,
    Query(q): Query<ListQuery>,
) -> Result<Response, ApiError> {
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
    Ok(Json(json!({"jobs": jobs, "next_cursor": page.next_cursor})).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AudioQuery {
    format: Option<String>,
}

pub(super) async fn audio_first(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(q): Query<AudioQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_audio(&app, &id, 1, q, request).await
}

pub(super) async fn audio_variant(
    State(app): State<App>,
    Path((id, variant)): Path<(String, u32)>,
    Query(q): Query<AudioQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    serve_audio(&app, &id, variant, q, request).await
}

async fn serve_audio(
    app: &App,
    id: &str,
    variant: u32,
    q: AudioQuery,
    request: Request,
) -> Result<Response, ApiError> {
    let record = find(app, id)?;
    let format = match q.format.as_deref() {
        None => record.spec.format,
        Some(f) => AudioFormat::parse(f).ok_or_else(|| {
            OrchestratorError::coded(
                ErrorCode::InvalidFormat,
                Field::Format,
                format!("expected wav, mp3 or ogg, not {f:?}"),
            )
        })?,
    };
    if record.state != JobState::Succeeded {
        return Err(OrchestratorError::NotFound(format!(
            "job {} has no audio: it is {}",
            record.id, record.state
        ))
        .into());
    }
    let file = match results::audio_file(app.outputs(), &record, variant, format).await {
        Ok(f) => f,
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
        "\"{}-{}-{}-{}\"",
        record.id,
        variant,
        format.extension(),
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

/// A file name from the first lyric line (ASCII letters, digits, `-` and `_`, at most 60),
/// else the job id; `-<n>` for variants after the first.
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
    let mut stem = String::new();
    for c in first_line.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.ends_with('-') && !stem.is_empty() {
            stem.push('-');
        }
        if stem.len() >= 60 {
            break;
        }
    }
    let stem = stem.trim_matches('-');
    let stem = if stem.is_empty() {
        record.id.to_string()
    } else {
        stem.to_string()
    };
    match variant {
        1 => format!("{stem}.{}", format.extension()),
        n => format!("{stem}-{n}.{}", format.extension()),
    }
}
