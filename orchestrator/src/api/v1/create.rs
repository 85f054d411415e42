//! `POST /api/v1/jobs`: Refrain's own JSON request, translated into an admission
//! [`Draft`] — nothing is decided here. The body shape is in `docs/api.md`; unknown fields are
//! refused so that a misspelt option is never silently ignored.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use protocol::{AudioFormat, JobId, Source};
use serde::Deserialize;

use super::auth::Caller;
use super::view::JobView;
use crate::admission::{AudioInput, Draft, EditInput, SegmentsInput, SongInput, StyleInput};
use crate::api::error::ApiError;
use crate::app::{App, JobMeta};
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The JSON body of `POST /api/v1/jobs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    #[serde(default)]
    pub lyrics: String,
    pub style: Option<StyleBody>,
    pub length_seconds: Option<u32>,
    pub seed: Option<u64>,
    pub variants: Option<u32>,
    pub format: Option<String>,
    #[serde(default)]
    pub chunked: bool,
    pub edit: Option<EditBody>,
}

/// Exactly one way of giving audio or a prompt.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StyleBody {
    pub prompt: Option<String>,
    pub audio_url: Option<String>,
    pub audio_base64: Option<String>,
    pub upload_id: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    pub song: SongBody,
    pub segments: Vec<(f64, f64)>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SongBody {
    pub job: Option<String>,
    pub upload_id: Option<String>,
    pub audio_url: Option<String>,
    pub audio_base64: Option<String>,
}

pub(super) async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateJob = serde_json::from_slice(&body).map_err(|e| {
        OrchestratorError::invalid(Field::Body, format!("not a valid job request: {e}"))
    })?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    OrchestratorError::invalid(Field::IdempotencyKey, "not printable ASCII")
                })?
                .to_string(),
        ),
    };
    let mut meta = JobMeta::anonymous(Source::RefrainApi);
    meta.owner = caller.owner;
    meta.idempotency_key = idempotency_key;
    let submitted = app.admit(draft(body, meta)?).await?;
    let view = JobView::of(&app, &submitted.record).await?;
    let status = if submitted.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(view)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/jobs/{}", submitted.record.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// The body as a draft: which style and song inputs were given is checked here (exactly one
/// each); everything else is admission's.
pub fn draft(body: CreateJob, meta: JobMeta) -> Result<Draft, OrchestratorError> {
    let mut draft = Draft::new(meta);
    draft.lyrics = body.lyrics;
    draft.seconds = body.length_seconds;
    draft.seed = body.seed;
    draft.variants = body.variants;
    draft.chunked = body.chunked;
    if let Some(format) = body.format {
        draft.format = AudioFormat::parse(&format).ok_or_else(|| {
            OrchestratorError::coded(
                ErrorCode::InvalidFormat,
                Field::Format,
                format!("expected wav, mp3 or ogg, not {format:?}"),
            )
        })?;
    }
    draft.style = match body.style {
        None => None,
        Some(style) => Some(style_input(style)?),
    };
    draft.edit = match body.edit {
        None => None,
        Some(edit) => Some(EditInput {
            song: song_input(edit.song)?,
            segments: SegmentsInput::List(edit.segments),
        }),
    };
    Ok(draft)
}

fn style_input(style: StyleBody) -> Result<StyleInput, OrchestratorError> {
    let given = [
        style.prompt.is_some(),
        style.audio_url.is_some(),
        style.audio_base64.is_some(),
        style.upload_id.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(OrchestratorError::invalid(
            Field::Style,
            "give exactly one of prompt, audio_url, audio_base64 or upload_id",
        ));
    }
    Ok(if let Some(p) = style.prompt {
        StyleInput::Prompt(p)
    } else if let Some(u) = style.audio_url {
        StyleInput::Audio(AudioInput::Url(u))
    } else if let Some(b) = style.audio_base64 {
        StyleInput::Audio(AudioInput::Base64(b))
    } else {
        StyleInput::Audio(AudioInput::UploadId(style.upload_id.unwrap_or_default()))
    })
}

fn song_input(song: SongBody) -> Result<SongInput, OrchestratorError> {
    let given = [
        song.job.is_some(),
        song.upload_id.is_some(),
        song.audio_url.is_some(),
        song.audio_base64.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(OrchestratorError::invalid(
            Field::EditSong,
            "give exactly one of job, upload_id, audio_url or audio_base64",
        ));
    }
    Ok(if let Some(job) = song.job {
        let id = JobId::parse(job.trim()).ok_or_else(|| {
            OrchestratorError::coded(
                ErrorCode::InvalidReference,
                Field::EditSong,
                format!(
                    "{:?} is not a job id",
                    job.chars().take(40).collect::<String>()
                ),
            )
        })?;
        SongInput::Job(id)
    } else if let Some(u) = song.upload_id {
        SongInput::Audio(AudioInput::UploadId(u))
    } else if let Some(u) = song.audio_url {
        SongInput::Audio(AudioInput::Url(u))
    } else {
        SongInput::Audio(AudioInput::Base64(song.audio_base64.unwrap_or_default()))
    })
}
