//! `POST /api/v1/jobs`: Refrain's own JSON request, translated into an admission
//! [`Draft`] — nothing is decided here. The body shape is in `docs/api.md`; unknown fields are
//! refused so that a misspelt option is never silently ignored.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use protocol::{AudioFormat, JobId, Owner, Source};
use serde::Deserialize;
use utoipa::ToSchema;

use super::auth::Caller;
use super::view::JobView;
use crate::admission::{
    AudioInput, Draft, EditInput, InitInput, SegmentsInput, SongInput, StyleInput,
};
use crate::api::error::{ApiError, ErrorBody};
use crate::app::{App, JobMeta};
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::jobs::limits::Quota;

/// The JSON body of `POST /api/v1/jobs`. Unknown fields are refused (400 `invalid_field`,
/// `body`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "lyrics": "[00:10.00] first line\n[00:15.00] second line",
    "style": {"prompt": "bright acoustic pop with piano"},
    "length_seconds": 95,
    "variants": 1,
    "format": "mp3"
}))]
pub struct CreateJob {
    /// LRC lyrics: `[mm:ss.xx]` time tags, one line each.
    #[serde(default)]
    pub lyrics: String,
    /// The style: exactly one of a text prompt or reference audio.
    pub style: Option<StyleBody>,
    /// 95, or 96 to 285 (what the bundle can make).
    #[schema(example = 95)]
    pub length_seconds: Option<u32>,
    /// Default: random, fixed at admission and shown in the job.
    pub seed: Option<u64>,
    /// How many songs to make from the request, 1 to 5 (default 1).
    #[schema(minimum = 1, maximum = 5)]
    pub variants: Option<u32>,
    /// `wav` (default), `mp3` or `ogg`.
    #[schema(example = "mp3")]
    pub format: Option<String>,
    /// Decode the latent in chunks (less memory, a little slower).
    #[serde(default)]
    pub chunked: bool,
    /// Change parts of an existing song instead of making a new one.
    pub edit: Option<EditBody>,
    /// Start the sampler from an existing song partly re-noised instead of pure noise (same
    /// lyrics or new ones, a new style; Refrain's addition to DiffRhythm). Not with `edit`.
    pub init: Option<InitBody>,
    /// Create the job for an end user of a front end (a chat bot's user): only for API keys
    /// made with `refrain keys add NAME --on-behalf-of KIND` for that owner kind.
    pub on_behalf_of: Option<OnBehalfOf>,
    /// Opaque text (at most 2048 bytes) kept on the job and shown with it unchanged.
    #[schema(example = "telegram:chat=42;message=7")]
    pub client_data: Option<String>,
    /// The song's title (at most 200 characters): shown with the job and used for the download
    /// file name.
    #[schema(example = "Night Drive")]
    pub title: Option<String>,
}

/// The end user a trusted key creates a job for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OnBehalfOf {
    /// `<kind>:<id>`, e.g. `telegram:123456`; the kind must be one the key may act for. The
    /// job's owner (limits, fair share) is this user.
    #[schema(example = "telegram:123456")]
    pub user: String,
    /// Per-user limits the front end applies (0 or absent: none); the stricter of these and
    /// the server's `limits` apply.
    #[serde(default)]
    pub limits: Option<UserLimits>,
}

/// Per-user limits of [`OnBehalfOf`].
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UserLimits {
    /// Jobs queued or running at once.
    pub concurrent: usize,
    /// Jobs created in any 60 seconds.
    pub per_minute: usize,
    /// Jobs created in any 24 hours.
    pub per_day: usize,
}

/// Exactly one way of giving audio or a prompt.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StyleBody {
    /// A text prompt for the style encoder.
    pub prompt: Option<String>,
    /// An `http(s)` URL of a reference recording the server fetches.
    pub audio_url: Option<String>,
    /// A reference recording, base64 or a `data:audio/…;base64,` URL.
    pub audio_base64: Option<String>,
    /// A recording uploaded with `POST /api/v1/uploads`.
    pub upload_id: Option<String>,
}

/// An edit: which song, and which of its segments to make anew.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditBody {
    pub song: SongBody,
    /// `[start, end]` pairs in seconds; `-1` is the song's start or end.
    #[schema(example = json!([[10, 30], [60, -1]]))]
    pub segments: Vec<(f64, f64)>,
}

/// A sampler start from an existing song: which song, and how much noise it gets.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"song": {"job": "3f0c…"}, "strength": 0.5}))]
pub struct InitBody {
    /// The song to start from (as `edit.song`); it must last at least as long as the new song.
    pub song: SongBody,
    /// Noise strength from 0 (the song itself, no sampler step) to 1 (a new song, as without
    /// `init`); the sampler runs the steps after `t0 = 1 - strength`.
    #[schema(minimum = 0.0, maximum = 1.0, example = 0.5)]
    pub strength: f64,
}

/// The song to edit (or to start from): exactly one of these.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SongBody {
    /// A succeeded job of this server.
    pub job: Option<String>,
    /// A recording uploaded with `POST /api/v1/uploads`.
    pub upload_id: Option<String>,
    /// An `http(s)` URL the server fetches.
    pub audio_url: Option<String>,
    /// Base64 audio or a `data:audio/…;base64,` URL.
    pub audio_base64: Option<String>,
}

/// Creates a job.
///
/// Everything is checked before the job exists: a 400 names the field at fault. The job starts
/// `queued`; follow it with `GET /api/v1/jobs/{id}/events` or by polling `GET /api/v1/jobs/{id}`.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    operation_id = "createJob",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    request_body = CreateJob,
    params(
        ("Idempotency-Key" = Option<String>, Header, nullable = false, max_length = 255,
            description = "Printable ASCII, at most 255: the same key and body return the same \
                job (200); the same key with another body is 409 `idempotency_conflict`."),
    ),
    responses(
        (status = 201, description = "Created.", body = JobView,
            headers(("Location" = String, description = "`/api/v1/jobs/<id>`"))),
        (status = 200, description = "The job this Idempotency-Key already created.",
            body = JobView, headers(("Location" = String, description = "`/api/v1/jobs/<id>`"))),
        (status = 400, description = "A field is missing or invalid (`missing_field`, \
            `invalid_field`, `invalid_length`, `invalid_lyrics`, `invalid_style_prompt`, \
            `invalid_audio`, `invalid_edit`, `invalid_reference`, `invalid_format`, \
            `invalid_url`, `fetch_failed`; `init.song`, `init.strength` for `init`).",
            body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 409, description = "`idempotency_conflict`.", body = ErrorBody),
        (status = 413, description = "`too_large`: the body or audio is over its limit.",
            body = ErrorBody),
        (status = 429, description = "`owner_limit`: the caller is over a per-owner limit.",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds."))),
        (status = 503, description = "`busy` (the queue is full) or `not_ready`.",
            body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds."))),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let body: CreateJob = serde_json::from_slice(&body).map_err(|e| {
        OrchestratorError::invalid(Field::Body, format!("not a valid job request: {e}"))
    })?;
    let idempotency_key = crate::api::headers::idempotency_key(&headers)?;
    let mut meta = JobMeta::anonymous(Source::RefrainApi);
    meta.owner = caller.owner.clone();
    meta.idempotency_key = idempotency_key;
    if let Some(on_behalf_of) = &body.on_behalf_of {
        let (owner, quota) = end_user(&caller, on_behalf_of)?;
        meta.owner = owner;
        meta.quota = quota;
    }
    if let Some(data) = &body.client_data {
        crate::app::check_client_data(data)?;
        meta.client_data = Some(data.clone());
    }
    meta.title = body.title.clone();
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

/// The owner and limits of a job a trusted key creates for an end user, or why it may not.
fn end_user(
    caller: &Caller,
    on_behalf_of: &OnBehalfOf,
) -> Result<(Owner, Option<Quota>), OrchestratorError> {
    let field = || Field::Named("on_behalf_of.user".into());
    let Some((kind, id)) = on_behalf_of.user.split_once(':') else {
        return Err(OrchestratorError::invalid(
            field(),
            "expected <kind>:<id>, e.g. telegram:123456",
        ));
    };
    if !caller.may_act_for(kind) {
        return Err(OrchestratorError::invalid(
            field(),
            format!(
                "this API key may not create jobs for {kind:?} users (refrain keys add NAME \
                 --on-behalf-of {kind})"
            ),
        ));
    }
    if id.is_empty() || id.len() > 200 || id.chars().any(char::is_control) {
        return Err(OrchestratorError::invalid(
            field(),
            "the id after the kind is 1 to 200 characters, no control characters",
        ));
    }
    let quota = on_behalf_of.limits.as_ref().map(|l| Quota {
        concurrent: l.concurrent,
        per_minute: l.per_minute,
        per_day: l.per_day,
    });
    Ok((Owner::new(kind, id), quota))
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
            song: song_input(edit.song, Field::EditSong)?,
            segments: SegmentsInput::List(edit.segments),
        }),
    };
    draft.init = match body.init {
        None => None,
        Some(init) => Some(InitInput {
            song: song_input(init.song, Field::InitSong)?,
            strength: init.strength,
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

/// The song of `edit` or `init` (`field`).
fn song_input(song: SongBody, field: Field) -> Result<SongInput, OrchestratorError> {
    let given = [
        song.job.is_some(),
        song.upload_id.is_some(),
        song.audio_url.is_some(),
        song.audio_base64.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        return Err(OrchestratorError::invalid(
            field,
            "give exactly one of job, upload_id, audio_url or audio_base64",
        ));
    }
    Ok(if let Some(job) = song.job {
        let id = JobId::parse(job.trim()).ok_or_else(|| {
            OrchestratorError::coded(
                ErrorCode::InvalidReference,
                field.clone(),
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
