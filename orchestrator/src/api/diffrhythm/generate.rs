//! `POST /generate`: reads the multipart form, translates the DiffRhythm field names and
//! encodings into a [`Draft`] and hands it to admission. Only what is particular to this API
//! lives here: the multipart transport, its field names, `edit=true` gating `ref_song` and
//! `edit_segments`, the `/output/…` spelling of a `ref_song`, and the 202 body.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::Source;
use serde::Serialize;
use utoipa::ToSchema;

use super::{DiffRhythmError, DiffRhythmErrorBody};
use crate::admission::{AudioInput, Draft, EditInput, SegmentsInput, SongInput, StyleInput};
use crate::api::form::{parse_bool, truncate, Form, FormLimits, Kind, Part, Upload};
use crate::api::paths::{check_result_name, decode_output_file, output_url};
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::outputs::OutputStore;
use crate::service::{App, JobMeta};

/// Text fields are read up to this many bytes, or `limits.max_lyrics_bytes` if larger.
const MIN_TEXT_LIMIT: usize = 64 * 1024;

/// The fields of `POST /generate` (anything else is ignored).
const FIELDS: &[(&str, Kind)] = &[
    ("lrc", Kind::Text),
    ("ref_prompt", Kind::Text),
    ("ref_audio", Kind::File),
    ("audio_length", Kind::Text),
    ("chunked", Kind::Text),
    ("edit", Kind::Text),
    ("ref_song", Kind::TextOrFile),
    ("edit_segments", Kind::Text),
    ("batch_infer_num", Kind::Text),
    ("output_dir", Kind::Text),
    ("seed", Kind::Text),
];

/// The fields of `POST /generate` (anything else is ignored).
#[derive(ToSchema)]
#[allow(dead_code)] // the form's shape for the OpenAPI document; `FIELDS` is what is read
pub(crate) struct GenerateForm {
    /// LRC lyrics.
    lrc: Option<String>,
    /// A text prompt for the style (this or `ref_audio`).
    ref_prompt: Option<String>,
    /// A reference recording for the style (this or `ref_prompt`).
    #[schema(value_type = Option<String>, format = Binary)]
    ref_audio: Option<Vec<u8>>,
    /// Seconds: 95, or 96 to 285.
    #[schema(example = "95")]
    audio_length: String,
    /// `true`/`false`: decode in chunks.
    chunked: Option<String>,
    /// `true` to change `edit_segments` of `ref_song`.
    edit: Option<String>,
    /// With `edit=true`: an earlier result of this server (`<id>.wav`, `sub/<id>.wav`,
    /// `/output/<id>.wav`) or an uploaded file; never a server path.
    #[schema(value_type = Option<String>, format = Binary)]
    ref_song: Option<Vec<u8>>,
    /// With `edit=true`: `[[start, end], …]` in seconds, `-1` = song start or end.
    #[schema(example = "[[10, 30], [60, -1]]")]
    edit_segments: Option<String>,
    /// Variants, 1 to 5.
    batch_infer_num: Option<String>,
    /// A sub-folder of the output root for the result.
    output_dir: Option<String>,
    /// An extension: the seed (default random, fixed at admission).
    seed: Option<String>,
}

/// The 202 body of `POST /generate`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    /// `accepted`.
    #[schema(example = "accepted")]
    status: &'static str,
    /// Where the result will be: `/output/[<dir>/]<id>.wav`.
    url: String,
    job_id: protocol::JobId,
    message: &'static str,
}

/// Starts a generation.
///
/// The reference server's request; every field is validated before a job exists, and a 503
/// comes only when the queue is at capacity.
#[utoipa::path(
    post,
    path = "/generate",
    operation_id = "generate",
    tag = "diffrhythm",
    request_body(content = GenerateForm, content_type = "multipart/form-data"),
    responses(
        (status = 202, description = "Accepted: poll `url`.", body = Accepted),
        (status = 400, description = "Bad input: the body names the field.",
            body = DiffRhythmErrorBody),
        (status = 409, description = "`conflict`.", body = DiffRhythmErrorBody),
        (status = 413, description = "The body or a file is over its limit.",
            body = DiffRhythmErrorBody),
        (status = 429, description = "Over a per-owner limit.", body = DiffRhythmErrorBody,
            headers(("Retry-After" = u64, description = "Seconds."))),
        (status = 503, description = "The queue is full (`busy`) or the service is not ready.",
            body = DiffRhythmErrorBody,
            headers(("Retry-After" = u64, description = "Seconds."))),
        (status = 500, description = "Internal error.", body = DiffRhythmErrorBody),
    ),
)]
pub(crate) async fn generate(
    State(app): State<App>,
    request: Request,
) -> Result<Response, DiffRhythmError> {
    let form = read_form(&app, request).await?;
    let draft = draft(form)?;
    let submitted = app.admit(draft).await?;
    let record = submitted.record;
    let file = OutputStore::relative(record.spec.output_subdir.as_deref(), &record.id);
    let accepted = Accepted {
        status: "accepted",
        url: output_url(&file),
        job_id: record.id,
        message: "Generation started. Check the URL later for the result.",
    };
    Ok((StatusCode::ACCEPTED, Json(accepted)).into_response())
}

/// Checks the content type and the declared length, then reads the known fields.
async fn read_form(app: &App, request: Request) -> Result<Form, OrchestratorError> {
    let limits = app.config().limits.clone();
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let content_type_field = || Field::Named("Content-Type".into());
    if essence != "multipart/form-data" {
        return Err(OrchestratorError::invalid(
            content_type_field(),
            if content_type.is_empty() {
                "must be multipart/form-data (none given)".to_string()
            } else {
                format!(
                    "must be multipart/form-data, not {:?}",
                    truncate(&content_type)
                )
            },
        ));
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return Err(OrchestratorError::TooLarge {
            field: Field::Body,
            limit: limits.max_body_bytes,
        });
    }
    let mut multipart = Multipart::from_request(request, app)
        .await
        .map_err(|rejection| {
            OrchestratorError::invalid(content_type_field(), rejection.body_text())
        })?;
    let form_limits = FormLimits {
        upload: limits.max_upload_bytes,
        text: limits.max_lyrics_bytes.max(MIN_TEXT_LIMIT),
        body: limits.max_body_bytes,
    };
    Form::read(&mut multipart, FIELDS, form_limits).await
}

/// Translates the form into a draft. Field syntax is checked here (numbers, booleans, which
/// fields go together in this API); what the values mean is admission's business.
fn draft(mut form: Form) -> Result<Draft, OrchestratorError> {
    let mut draft = Draft::new(JobMeta::anonymous(Source::DiffRhythmApi));
    draft.seconds = match form.text("audio_length") {
        None => None,
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| {
            OrchestratorError::coded(
                ErrorCode::InvalidLength,
                Field::Length,
                format!("expected a whole number of seconds, not {:?}", truncate(v)),
            )
        })?),
    };

    let prompt = form.text("ref_prompt").map(str::to_owned);
    let ref_audio = match form.take("ref_audio") {
        Some(Part::File(u)) => Some(u),
        Some(Part::Text(t)) => Some(Upload {
            bytes: t.into_bytes(),
            file_name: None,
            content_type: None,
        }),
        None => None,
    };
    draft.style =
        match (prompt, ref_audio) {
            (Some(_), Some(_)) => {
                return Err(OrchestratorError::invalid(
                    Field::StylePrompt,
                    "give either ref_prompt or ref_audio, not both",
                ))
            }
            (None, None) => return Err(OrchestratorError::missing(
                Field::StylePrompt,
                "either ref_prompt (a style description) or ref_audio (a recording) is required",
            )),
            (Some(p), None) => Some(StyleInput::Prompt(p)),
            (None, Some(u)) => Some(StyleInput::Audio(audio(u))),
        };
    draft.lyrics = form.text("lrc").unwrap_or("").to_string();

    let flag = |form: &Form, name: &str| {
        form.text(name)
            .map(|v| parse_bool(name, v))
            .transpose()
            .map(|v| v.unwrap_or(false))
    };
    draft.chunked = flag(&form, "chunked")?;
    let edit = flag(&form, "edit")?;
    draft.variants = form
        .text("batch_infer_num")
        .map(|v| {
            v.trim().parse::<u32>().map_err(|_| {
                OrchestratorError::invalid(
                    Field::Variants,
                    format!("expected a whole number, not {:?}", truncate(v)),
                )
            })
        })
        .transpose()?;
    draft.seed = form
        .text("seed")
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                OrchestratorError::invalid(
                    Field::Seed,
                    format!(
                        "expected a whole number from 0 to {}, not {:?}",
                        u64::MAX,
                        truncate(v)
                    ),
                )
            })
        })
        .transpose()?;
    draft.output_subdir = form.text("output_dir").map(str::to_owned);

    let segments = form.text("edit_segments").map(str::to_owned);
    let song = form.take("ref_song");
    if edit {
        let has_song = song.is_some();
        let (Some(song), Some(segments)) = (song, segments) else {
            return Err(OrchestratorError::missing(
                if has_song { Field::EditSegments } else { Field::EditSong },
                "edit=true needs both ref_song (the song to edit) and edit_segments ([[start, end], …])",
            ));
        };
        let song = match song {
            Part::Text(name) => SongInput::ResultFile(result_name(&name)?),
            Part::File(u) => SongInput::Audio(audio(u)),
        };
        draft.edit = Some(EditInput {
            song,
            segments: SegmentsInput::Json(segments),
        });
    } else {
        for (field, given) in [
            (Field::EditSong, song.is_some()),
            (Field::EditSegments, segments.is_some()),
        ] {
            if given {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidEdit,
                    field,
                    "only used in edit mode: add edit=true",
                ));
            }
        }
    }
    Ok(draft)
}

fn audio(upload: Upload) -> AudioInput {
    let hint = upload.extension_hint();
    AudioInput::Bytes {
        bytes: upload.bytes,
        hint,
    }
}

/// A text `ref_song`: a result file name, or its `/output/` URL path (percent-decoded once).
fn result_name(name: &str) -> Result<String, OrchestratorError> {
    let name = name.trim();
    let bad = |why: String| {
        OrchestratorError::coded(
            ErrorCode::InvalidReference,
            Field::EditSong,
            format!(
                "{why}; give the file name or /output/ URL of a finished result of this server, \
                 or upload the song as a file"
            ),
        )
    };
    match name.strip_prefix("/output/") {
        Some(rest) => {
            let file = decode_output_file(rest).map_err(bad)?;
            check_result_name(&file).map_err(bad)?;
            Ok(file)
        }
        None => {
            check_result_name(name).map_err(bad)?;
            Ok(name.to_string())
        }
    }
}
