//! The DiffRhythm server API (`shared/specs/diffrhythm-server-api.md`), compatible with the
//! reference server `mgraffam/DiffRhythm-webapi`, minus its weaknesses:
//!
//! * `POST /generate` — `multipart/form-data` only. Every field is validated before a job
//!   exists (length against the bundle, lyrics through the real LRC parser and G2P, the style
//!   prompt, an uploaded `ref_audio` is decoded and must last at least 10 s). Jobs are queued
//!   durably; 503 + `Retry-After` only when the queue is at capacity (`queue.capacity = 0` gives
//!   the reference's single-job behaviour). `seed` is an extension (default: random, fixed at
//!   admission and shown in the status).
//! * `ref_song` is never a server path: it is either the name of an earlier result of this
//!   server (`<id>.wav`, `sub/<id>.wav` or `/output/<id>.wav`, of a succeeded job) or an uploaded
//!   file. `output_dir` may only name a sub-folder of the output root, and `GET` honours it: the
//!   202's `url` is where the result will be.
//! * `GET`/`HEAD /output/{file}` — the result (`audio/wav`, with Range, Content-Length,
//!   Last-Modified and `Cache-Control: public, max-age=86400`) once the job succeeded; while it
//!   is queued or running, 200 JSON with every field of the spec's `processing` example, real
//!   step-level progress and ETA from the node, plus `state`, `stage`, `step`, `total_steps`,
//!   `attempt` and `queue_position` (0-based, while queued).
//! * **Failed and cancelled jobs answer 200 JSON** with `status: "failed"` / `"cancelled"` and
//!   the `error`: the reference answered 404 (indistinguishable from an unknown file);
//!   compatible clients parse JSON on any 200 that is not `audio/wav` and see the status, so
//!   they stop polling instead of polling a 404 forever. Unknown files, and results deleted by
//!   retention, answer 404 `not_found`.
//! * `GET /status` and `GET /files` — the reference's extras: server state, and the result files.
//!
//! The file name of `/output/…` is percent-decoded exactly once and must be plain relative
//! components (see [`super::paths`]).

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use protocol::{EditSpec, JobId, JobRecord, JobSpec, JobState, SongRef, Source, StyleSpec};
use refrain_model::audio::{self, AudioError};
use serde_json::{json, Map, Value};
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::error::{field_error, io_error, not_found};
use super::form::{parse_bool, truncate, Form, FormLimits, Kind, Part, Upload};
use super::paths::{check_result_name, decode_output_file, output_url};
use crate::error::OrchestratorError;
use crate::outputs::{OutputError, OutputStore};
use crate::service::{App, JobMeta};
use crate::store::now_ms;

/// Shortest reference recording accepted for `ref_audio`, seconds (the style clip length).
pub const MIN_REFERENCE_SECONDS: f64 = audio::STYLE_CLIP_SECONDS as f64;

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

/// The DiffRhythm API routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/generate", post(generate))
        .route("/output/{*file}", get(output))
        .route("/status", get(status))
        .route("/files", get(files))
}

// ---------------------------------------------------------------------------------------------
// POST /generate
// ---------------------------------------------------------------------------------------------

/// A validated request whose uploads are not stored yet.
struct Parsed {
    lyrics: String,
    style: StyleSource,
    seconds: u32,
    seed: u64,
    variants: u32,
    chunked: bool,
    edit: Option<(SongSource, Vec<(f64, f64)>)>,
    output_subdir: Option<String>,
}

enum StyleSource {
    Prompt(String),
    Upload(Upload, Option<String>),
}

enum SongSource {
    Output(JobId),
    Upload(Upload, Option<String>),
}

async fn generate(State(app): State<App>, request: Request) -> Result<Response, OrchestratorError> {
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
    if essence != "multipart/form-data" {
        return Err(OrchestratorError::invalid(
            "Content-Type",
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
            field: "body".into(),
            limit: limits.max_body_bytes,
        });
    }
    let mut multipart = Multipart::from_request(request, &app)
        .await
        .map_err(|rejection| OrchestratorError::invalid("Content-Type", rejection.body_text()))?;
    let form_limits = FormLimits {
        upload: limits.max_upload_bytes,
        text: limits.max_lyrics_bytes.max(MIN_TEXT_LIMIT),
        body: limits.max_body_bytes,
    };
    let form = Form::read(&mut multipart, FIELDS, form_limits).await?;
    drop(multipart);

    let parsed = parse(&app, form).await?;
    let (spec, blobs) = store_uploads(&app, parsed).await?;
    let record = match app
        .submit(spec, JobMeta::anonymous(Source::DiffRhythmApi))
        .await
    {
        Ok(r) => r,
        Err(e) => {
            // Refused before anything was stored: the uploads are nobody's. (After a store or
            // queue failure the record may exist and be re-enqueued at start: keep them.)
            let refused = matches!(
                e,
                OrchestratorError::Busy { .. }
                    | OrchestratorError::NotReady(_)
                    | OrchestratorError::OwnerLimit { .. }
                    | OrchestratorError::Invalid { .. }
            );
            for blob in blobs.iter().filter(|_| refused) {
                if let Err(de) = app.blobs().delete(blob).await {
                    tracing::warn!(%blob, error = %de, "cannot delete the upload of a refused job");
                }
            }
            return Err(e);
        }
    };
    let file = OutputStore::relative(record.spec.output_subdir.as_deref(), &record.id);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "status": "accepted",
            "url": output_url(&file),
            "job_id": record.id,
            "message": "Generation started. Check the URL later for the result.",
        })),
    )
        .into_response())
}

/// Validates every field; decodes uploads; resolves a named `ref_song`.
async fn parse(app: &App, mut form: Form) -> Result<Parsed, OrchestratorError> {
    let validator = app.validator();
    let max_ref = app.config().limits.max_reference_seconds;

    // audio_length
    let seconds = match form.text("audio_length") {
        None => {
            return Err(OrchestratorError::invalid(
                "audio_length",
                format!(
                    "required: the song length in seconds ({})",
                    app.node().lengths
                ),
            ))
        }
        Some(v) => v.trim().parse::<u32>().map_err(|_| {
            OrchestratorError::invalid(
                "audio_length",
                format!("expected a whole number of seconds, not {:?}", truncate(v)),
            )
        })?,
    };
    validator.check_length(seconds)?;

    // style: exactly one of ref_prompt / ref_audio
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
    let style =
        match (prompt, ref_audio) {
            (Some(_), Some(_)) => {
                return Err(OrchestratorError::invalid(
                    "ref_prompt",
                    "give either ref_prompt or ref_audio, not both",
                ))
            }
            (None, None) => return Err(OrchestratorError::invalid(
                "ref_prompt",
                "either ref_prompt (a style description) or ref_audio (a recording) is required",
            )),
            (Some(p), None) => {
                validator.check_prompt(&p)?;
                StyleSource::Prompt(p)
            }
            (None, Some(u)) => {
                let hint = u.extension_hint();
                StyleSource::Upload(u, hint)
            }
        };

    // lyrics
    let lyrics = form.text("lrc").unwrap_or("").to_string();
    validator.check_lyrics(&lyrics, seconds)?;

    // flags and numbers
    let chunked = form
        .text("chunked")
        .map(|v| parse_bool("chunked", v))
        .transpose()?
        .unwrap_or(false);
    let edit = form
        .text("edit")
        .map(|v| parse_bool("edit", v))
        .transpose()?
        .unwrap_or(false);
    let max_variants = app.config().limits.max_variants;
    let variants = match form.text("batch_infer_num") {
        None => 1,
        Some(v) => v
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=max_variants).contains(n))
            .ok_or_else(|| {
                OrchestratorError::invalid(
                    "batch_infer_num",
                    format!(
                        "expected a whole number from 1 to {max_variants}, not {:?}",
                        truncate(v)
                    ),
                )
            })?,
    };
    let seed = match form.text("seed") {
        None => rand::random::<u64>(),
        Some(v) => v.trim().parse::<u64>().map_err(|_| {
            OrchestratorError::invalid(
                "seed",
                format!(
                    "expected a whole number from 0 to {}, not {:?}",
                    u64::MAX,
                    truncate(v)
                ),
            )
        })?,
    };
    let output_subdir = match form.text("output_dir") {
        None => None,
        Some(v) => Some(OutputStore::validate_subdir(v.trim()).map_err(OrchestratorError::from)?),
    };

    // edit mode
    let segments = form.text("edit_segments").map(str::to_owned);
    let song = form.take("ref_song");
    let edit = if edit {
        let has_song = song.is_some();
        let (Some(song), Some(segments)) = (song, segments) else {
            let missing = if has_song {
                "edit_segments"
            } else {
                "ref_song"
            };
            return Err(OrchestratorError::invalid(
                missing,
                "edit=true needs both ref_song (the song to edit) and edit_segments ([[start, end], …])",
            ));
        };
        let segments = refrain_model::edit::parse_edit_segments(&segments).map_err(|e| {
            let message = match e {
                refrain_model::ModelError::InvalidRequest(m) => m,
                other => other.to_string(),
            };
            let message = message
                .strip_prefix("edit_segments: ")
                .unwrap_or(&message)
                .to_string();
            OrchestratorError::invalid("edit_segments", message)
        })?;
        let song = match song {
            Part::Text(name) => SongSource::Output(resolve_ref_song(app, &name).await?),
            Part::File(u) => {
                let hint = u.extension_hint();
                SongSource::Upload(u, hint)
            }
        };
        Some((song, segments))
    } else {
        for (field, given) in [
            ("ref_song", song.is_some()),
            ("edit_segments", segments.is_some()),
        ] {
            if given {
                return Err(OrchestratorError::invalid(
                    field,
                    "only used in edit mode: add edit=true",
                ));
            }
        }
        None
    };

    // Decode uploads last (the expensive checks).
    let style = match style {
        StyleSource::Upload(u, hint) => {
            let (u, duration) = check_audio("ref_audio", u, hint.clone(), max_ref).await?;
            if duration < MIN_REFERENCE_SECONDS {
                let e = AudioError::TooShort {
                    needed_seconds: MIN_REFERENCE_SECONDS,
                    actual_seconds: duration,
                };
                return Err(OrchestratorError::invalid("ref_audio", e.to_string()));
            }
            StyleSource::Upload(u, hint)
        }
        s => s,
    };
    let edit = match edit {
        Some((SongSource::Upload(u, hint), segments)) => {
            let (u, _) = check_audio("ref_song", u, hint.clone(), max_ref).await?;
            Some((SongSource::Upload(u, hint), segments))
        }
        e => e,
    };

    Ok(Parsed {
        lyrics,
        style,
        seconds,
        seed,
        variants,
        chunked,
        edit,
        output_subdir,
    })
}

/// Decodes an upload off the async threads; returns it with its duration in seconds.
async fn check_audio(
    field: &'static str,
    upload: Upload,
    hint: Option<String>,
    max_seconds: f64,
) -> Result<(Upload, f64), OrchestratorError> {
    let joined = tokio::task::spawn_blocking(move || {
        let result = audio::decode(&upload.bytes, hint.as_deref(), max_seconds)
            .map(|d| d.duration_seconds());
        (upload, result)
    })
    .await;
    match joined {
        Ok((upload, Ok(duration))) => Ok((upload, duration)),
        Ok((_, Err(e))) => Err(OrchestratorError::invalid(field, e.to_string())),
        Err(e) => {
            tracing::warn!(field, error = %e, "the audio decoder panicked on an upload");
            Err(OrchestratorError::invalid(
                field,
                "the audio data could not be decoded",
            ))
        }
    }
}

/// A text `ref_song`: the name of a succeeded result of this server, never a server path.
async fn resolve_ref_song(app: &App, name: &str) -> Result<JobId, OrchestratorError> {
    let name = name.trim();
    let bad = |why: String| {
        OrchestratorError::invalid(
            "ref_song",
            format!(
                "{why}; give the file name or /output/ URL of a finished result of this server, \
                 or upload the song as a file"
            ),
        )
    };
    let file = match name.strip_prefix("/output/") {
        Some(rest) => decode_output_file(rest).map_err(bad)?,
        None => {
            check_result_name(name).map_err(bad)?;
            name.to_string()
        }
    };
    let record = app.job_by_file(&file)?.ok_or_else(|| {
        bad(format!(
            "{:?} is not a result of this server",
            truncate(&file)
        ))
    })?;
    if record.state != JobState::Succeeded {
        return Err(bad(format!(
            "job {} has not succeeded (it is {})",
            record.id, record.state
        )));
    }
    let path = match result_path(app, &record, &file) {
        Ok(p) => p,
        Err(OutputError::Io { context, source }) => {
            return Err(OrchestratorError::Io { context, source })
        }
        Err(_) => return Err(bad(format!("{:?} is not a result file", truncate(&file)))),
    };
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => Ok(record.id),
        _ => Err(bad(format!(
            "the result {:?} no longer exists",
            truncate(&file)
        ))),
    }
}

/// Stores the uploads of a validated request as blobs and builds the job spec. On error the
/// blobs stored so far are deleted. Returns the spec and the blob names.
async fn store_uploads(
    app: &App,
    parsed: Parsed,
) -> Result<(JobSpec, Vec<String>), OrchestratorError> {
    let mut blobs = Vec::new();
    let result = async {
        let style = match parsed.style {
            StyleSource::Prompt(p) => StyleSpec::Prompt(p),
            StyleSource::Upload(u, hint) => {
                let blob = put_blob(app, &u, hint.as_deref()).await?;
                blobs.push(blob.clone());
                StyleSpec::Upload(blob)
            }
        };
        let edit = match parsed.edit {
            None => None,
            Some((song, segments)) => {
                let song = match song {
                    SongSource::Output(id) => SongRef::Output(id),
                    SongSource::Upload(u, hint) => {
                        let blob = put_blob(app, &u, hint.as_deref()).await?;
                        blobs.push(blob.clone());
                        SongRef::Upload(blob)
                    }
                };
                Some(EditSpec { song, segments })
            }
        };
        Ok::<_, OrchestratorError>(JobSpec {
            lyrics: parsed.lyrics,
            style,
            seconds: parsed.seconds,
            seed: parsed.seed,
            steps: None,
            cfg_strength: None,
            variants: parsed.variants,
            chunked: parsed.chunked,
            edit,
            format: protocol::AudioFormat::Wav,
            output_subdir: parsed.output_subdir,
        })
    }
    .await;
    match result {
        Ok(spec) => Ok((spec, blobs)),
        Err(e) => {
            for blob in &blobs {
                let _ = app.blobs().delete(blob).await;
            }
            Err(e)
        }
    }
}

async fn put_blob(
    app: &App,
    upload: &Upload,
    hint: Option<&str>,
) -> Result<String, OrchestratorError> {
    Ok(app
        .blobs()
        .put(&upload.bytes, hint.unwrap_or("bin"))
        .await?)
}

// ---------------------------------------------------------------------------------------------
// GET / HEAD /output/{*file}
// ---------------------------------------------------------------------------------------------

async fn output(State(app): State<App>, request: Request) -> Result<Response, OrchestratorError> {
    let raw = request
        .uri()
        .path()
        .strip_prefix("/output/")
        .unwrap_or("")
        .to_string();
    let file = match decode_output_file(&raw) {
        Ok(f) => f,
        Err(why) => return Ok(field_error(StatusCode::BAD_REQUEST, "file", &why)),
    };
    let Some(record) = app.job_by_file(&file)? else {
        return Ok(not_found());
    };
    match record.state {
        JobState::Succeeded => serve_result(&app, &record, &file, request).await,
        JobState::Queued | JobState::Running => Ok(no_store(
            Json(processing(&app, &record, &file).await?).into_response(),
        )),
        JobState::Failed | JobState::Cancelled => Ok(no_store(
            Json(finished(&app, &record, &file)).into_response(),
        )),
    }
}

/// The path of a succeeded job's result: the record's own result file when it has one.
fn result_path(app: &App, record: &JobRecord, requested: &str) -> Result<PathBuf, OutputError> {
    let file = record
        .result
        .as_ref()
        .map_or(requested, |r| r.file.as_str());
    app.outputs().resolve(file)
}

async fn serve_result(
    app: &App,
    record: &JobRecord,
    file: &str,
    request: Request,
) -> Result<Response, OrchestratorError> {
    let path = match result_path(app, record, file) {
        Ok(p) => p,
        Err(OutputError::Io { context, source }) => {
            return Err(OrchestratorError::Io { context, source })
        }
        Err(e) => {
            tracing::warn!(job = %record.id, error = %e, "a succeeded job's result name does not resolve");
            return Ok(not_found());
        }
    };
    match tokio::fs::metadata(&path).await {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Ok(not_found()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(not_found()),
        Err(e) => return Err(io_error(format!("reading {}", path.display()), e)),
    }
    let mut response = match ServeFile::new(&path).oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    };
    let status = response.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(not_found()); // deleted between the check and the open
    }
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        );
    }
    Ok(response)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn seconds_text(seconds: f64) -> String {
    format!("{:.1} seconds", seconds.max(0.0))
}

fn utc_now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

fn other_goodies(app: &App) -> Value {
    json!({
        "device": app.node().device,
        "max_frames": app.node().max_frames,
        "current_time": utc_now_text(),
        "uptime": seconds_text(app.uptime_seconds()),
    })
}

/// A whole number as an integer in JSON (`-1`, `30`), anything else as a float.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

/// The request parameters of a job, with the DiffRhythm API's field names.
pub fn parameters(spec: &JobSpec) -> Value {
    let mut p = Map::new();
    p.insert("lrc".into(), json!(spec.lyrics));
    match &spec.style {
        StyleSpec::Prompt(prompt) => p.insert("ref_prompt".into(), json!(prompt)),
        StyleSpec::Upload(_) => p.insert("ref_audio".into(), json!("<uploaded>")),
    };
    p.insert("audio_length".into(), json!(spec.seconds));
    p.insert("chunked".into(), json!(spec.chunked));
    p.insert("batch_infer_num".into(), json!(spec.variants));
    p.insert("edit".into(), json!(spec.edit.is_some()));
    match &spec.edit {
        Some(edit) => {
            p.insert(
                "ref_song".into(),
                match &edit.song {
                    SongRef::Output(id) => json!(format!("job:{id}")),
                    SongRef::Upload(_) => json!("<uploaded>"),
                },
            );
            p.insert(
                "edit_segments".into(),
                Value::Array(
                    edit.segments
                        .iter()
                        .map(|&(s, e)| json!([number(s), number(e)]))
                        .collect(),
                ),
            );
        }
        None => {
            p.insert("edit_segments".into(), Value::Null);
        }
    }
    p.insert("output_dir".into(), json!(spec.output_subdir));
    p.insert("seed".into(), json!(spec.seed));
    Value::Object(p)
}

/// The `processing` body of a queued or running job.
async fn processing(app: &App, record: &JobRecord, file: &str) -> Result<Value, OrchestratorError> {
    let event = app.progress(record).await;
    let queue_position = if record.state == JobState::Queued {
        app.queue_position(&record.id).await?
    } else {
        None
    };
    let elapsed = now_ms().saturating_sub(record.created_ms) as f64 / 1000.0;
    let percent = event
        .as_ref()
        .map_or(0, |e| e.percent.clamp(0.0, 100.0).floor() as u32);
    let remaining = event
        .as_ref()
        .and_then(|e| e.eta_seconds)
        .filter(|s| s.is_finite())
        .map_or_else(|| "unknown".to_string(), seconds_text);
    let mut body = json!({
        "status": "processing",
        "job_id": record.id,
        "file": file,
        "elapsed_time": seconds_text(elapsed),
        "estimated_remaining": remaining,
        "progress_percent": percent,
        "parameters": parameters(&record.spec),
        "server_busy": true,
        "other_goodies": other_goodies(app),
        "state": record.state.as_str(),
        "stage": event.as_ref().map(|e| e.stage.as_str()),
        "step": event.as_ref().map(|e| e.step),
        "total_steps": event.as_ref().map(|e| e.total),
        "attempt": record.attempt,
    });
    if let Some(position) = queue_position {
        body["queue_position"] = json!(position);
    }
    Ok(body)
}

/// The body of a failed or cancelled job.
fn finished(app: &App, record: &JobRecord, file: &str) -> Value {
    let error = record.error.clone().unwrap_or_else(|| match record.state {
        JobState::Cancelled => "the job was cancelled".into(),
        _ => "the job failed".into(),
    });
    let ran = record
        .finished_ms
        .unwrap_or(record.updated_ms)
        .saturating_sub(record.created_ms) as f64
        / 1000.0;
    json!({
        "status": record.state.as_str(),
        "job_id": record.id,
        "file": file,
        "error": error,
        "elapsed_time": seconds_text(ran),
        "parameters": parameters(&record.spec),
        "state": record.state.as_str(),
        "attempt": record.attempt,
        "server_busy": false,
        "other_goodies": other_goodies(app),
    })
}

// ---------------------------------------------------------------------------------------------
// GET /status, GET /files
// ---------------------------------------------------------------------------------------------

async fn status(State(app): State<App>) -> Result<Response, OrchestratorError> {
    let counts = app.counts()?;
    let count = |s: JobState| counts.get(&s).copied().unwrap_or(0);
    let jobs: Map<String, Value> = JobState::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), json!(count(*s))))
        .collect();
    let depth = app.queue().depth().await?;
    let node = app.node();
    Ok(Json(json!({
        "status": "ok",
        "ready": app.is_ready(),
        "server_busy": count(JobState::Queued) + count(JobState::Running) > 0,
        "jobs": jobs,
        "queue": {
            "depth": depth,
            "capacity": app.config().queue.capacity,
            "backend": app.queue().backend(),
        },
        "device": node.device,
        "bundle": {"name": node.bundle_name, "version": node.bundle_version},
        "max_frames": node.max_frames,
        "lengths": node.lengths,
        "uptime": seconds_text(app.uptime_seconds()),
        "current_time": utc_now_text(),
    }))
    .into_response())
}

async fn files(State(app): State<App>) -> Result<Response, OrchestratorError> {
    let list = app.outputs().list().await?;
    let files: Vec<Value> = list
        .into_iter()
        .map(|(file, size)| json!({"file": file, "url": output_url(&file), "size_bytes": size}))
        .collect();
    Ok(Json(json!({"files": files})).into_response())
}
