//! `GET`/`HEAD /output/{file}`: a result, or the JSON state of the job that will make it.
//!
//! The file name is percent-decoded exactly once and must be plain relative components (see
//! [`crate::api::paths`]); it is only ever a key for the job store. A succeeded job serves its
//! first variant's WAV (the other variants are listed in `result.files` of Refrain's own API and
//! as `variants` here); a queued or running one the reference's `processing` body with real
//! progress; a failed or cancelled one its `status` and `error`.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::{AudioFormat, JobRecord, JobSpec, JobState, SongRef, StyleSpec};
use serde_json::{json, Map, Value};

use super::status::{other_goodies, seconds_text};
use super::{not_found, DiffRhythmError, DiffRhythmErrorBody};
use crate::api::audio;
use crate::api::openapi::Binary;
use crate::api::paths::{decode_output_file, output_url};
use crate::error::{Field, OrchestratorError};
use crate::jobs::results::{self, ResultError};
use crate::outputs::OutputError;
use crate::service::App;
use crate::store::now_ms;

/// A result, or the state of the job that will make it.
///
/// `file` is `[<dir>/]<id>.wav` (the first variant), `<id>-<n>.wav` for variant n, or
/// `.mp3`/`.ogg` for the other formats; it may contain `/`. `HEAD` answers the same headers.
#[utoipa::path(
    get,
    path = "/output/{file}",
    operation_id = "output",
    tag = "diffrhythm",
    params(("file" = String, Path, description = "The result's name under the output root \
        (percent-decoded once; `/` allowed).", example = "3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00.wav")),
    responses(
        (status = 200, description = "The audio once the job succeeded (`Range`, \
            `Last-Modified`, `Cache-Control: public, max-age=86400`); while it is queued or \
            running the reference's `processing` body with real progress, and for a failed or \
            cancelled job its `status` (`failed`, `cancelled`) and `error` (`Cache-Control: \
            no-store`).",
            content(
                (Binary = "audio/wav"), (Binary = "audio/mpeg"), (Binary = "audio/ogg"),
                (Object = "application/json", example = json!({
                    "status": "processing", "job_id": "3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00",
                    "file": "3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00.wav",
                    "elapsed_time": "4.2 seconds", "estimated_remaining": "20.5 seconds",
                    "progress_percent": 17, "parameters": {"lrc": "…", "audio_length": 95},
                    "server_busy": true, "other_goodies": {}, "state": "running",
                    "stage": "sampling", "step": 5, "total_steps": 32, "attempt": 1,
                    "variants": ["/output/3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00.wav"]})),
            )),
        (status = 206, description = "The `Range` asked for.", content(
            (Binary = "audio/wav"), (Binary = "audio/mpeg"), (Binary = "audio/ogg"))),
        (status = 304, description = "Not modified (`If-Modified-Since`)."),
        (status = 400, description = "A malformed file name.", body = DiffRhythmErrorBody),
        (status = 404, description = "No such job or file.", body = DiffRhythmErrorBody),
        (status = 416, description = "`range_not_satisfiable`: the `Range` starts past the end \
            of the file (a `Range` that does not parse is ignored).", body = DiffRhythmErrorBody),
        (status = 500, description = "Internal error.", body = DiffRhythmErrorBody),
    ),
)]
pub(crate) async fn output(
    State(app): State<App>,
    request: Request,
) -> Result<Response, DiffRhythmError> {
    let raw = request
        .uri()
        .path()
        .strip_prefix("/output/")
        .unwrap_or("")
        .to_string();
    let file = match decode_output_file(&raw) {
        Ok(f) => f,
        Err(why) => return Err(OrchestratorError::invalid(Field::Named("file".into()), why).into()),
    };
    // `<id>.wav` is the job's own name; `<id>-<n>.wav`, `<id>.mp3`, `<id>-<n>.ogg`… name the
    // same job's other variants and formats.
    let (record, variant, format) = match app.job_by_file(&file)? {
        Some(record) => (record, 1, AudioFormat::Wav),
        None => match variant_of(&file) {
            Some((base, variant, format)) => match app.job_by_file(&base)? {
                Some(record) if variant <= record.spec.variants.max(1) => (record, variant, format),
                _ => return Ok(not_found()),
            },
            None => return Ok(not_found()),
        },
    };
    match record.state {
        JobState::Succeeded => {
            let served = match results::audio_file(app.outputs(), &record, variant, format).await {
                Ok(f) => match app.outputs().resolve(&f.file) {
                    Ok(path) => audio::serve(&path, format, request).await?,
                    Err(e) => return Err(OrchestratorError::from(e).into()),
                },
                Err(ResultError::NoVariant { .. }) => None,
                Err(ResultError::Output(OutputError::Io { context, source })) => {
                    return Err(OrchestratorError::Io { context, source }.into())
                }
                Err(e) => {
                    tracing::warn!(job = %record.id, error = %e, "cannot serve a result");
                    None
                }
            };
            Ok(served.unwrap_or_else(not_found))
        }
        JobState::Queued | JobState::Running => Ok(no_store(
            Json(processing(&app, &record, &file).await?).into_response(),
        )),
        JobState::Failed | JobState::Cancelled => Ok(no_store(
            Json(finished(&app, &record, &file)).into_response(),
        )),
    }
}

/// `[dir/]<id>-<n>.<ext>` or `[dir/]<id>.<ext>` → (`[dir/]<id>.wav`, n, format).
fn variant_of(file: &str) -> Option<(String, u32, AudioFormat)> {
    let (dir, name) = match file.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, file),
    };
    let (stem, ext) = name.rsplit_once('.')?;
    let format = AudioFormat::ALL
        .into_iter()
        .find(|f| f.extension() == ext)?;
    let (id, variant) = match stem.split_once('-') {
        Some((id, n)) => (id, n.parse::<u32>().ok().filter(|n| *n >= 1)?),
        None => (stem, 1),
    };
    let id = protocol::JobId::parse(id)?;
    let base = match dir {
        Some(dir) => format!("{dir}/{}", id.file_name()),
        None => id.file_name(),
    };
    Some((base, variant, format))
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
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
    let remaining = seconds_text(estimate_remaining(
        app,
        record,
        event.as_ref(),
        queue_position,
    ));
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
        "variants": variant_urls(record),
    });
    if let Some(position) = queue_position {
        body["queue_position"] = json!(position);
    }
    Ok(body)
}

/// Seconds until a queued or running job is done: the node's ETA while it runs (else the
/// learnt pace applied to what is left), and for a queued job its share of the jobs ahead plus
/// its own run at the learnt pace ([`crate::jobs::pace::Pace`]). Always a number: the
/// reference's clients parse `estimated_remaining`.
fn estimate_remaining(
    app: &App,
    record: &JobRecord,
    event: Option<&protocol::ProgressEvent>,
    queue_position: Option<usize>,
) -> f64 {
    let pace = app.lifecycle().pace();
    let nodes = app.nodes().live();
    match record.state {
        JobState::Running => event
            .and_then(|e| e.eta_seconds)
            .filter(|s| s.is_finite())
            .unwrap_or_else(|| {
                let done = event.map_or(0.0, |e| f64::from(e.percent.clamp(0.0, 100.0)) / 100.0);
                pace.per_song_second() * f64::from(record.spec.seconds) * (1.0 - done)
            }),
        _ => pace.queued_remaining(record.spec.seconds, queue_position.unwrap_or(0), nodes),
    }
}

/// Where each variant of the job is (or will be) served, first variant first.
fn variant_urls(record: &JobRecord) -> Vec<String> {
    (1..=record.spec.variants.max(1))
        .map(|v| {
            output_url(&crate::outputs::OutputStore::variant_relative(
                record.spec.output_subdir.as_deref(),
                &record.id,
                v,
                protocol::AudioFormat::Wav,
            ))
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_names() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            variant_of(&format!("{id}-2.wav")),
            Some((format!("{id}.wav"), 2, AudioFormat::Wav))
        );
        assert_eq!(
            variant_of(&format!("a/b/{id}.mp3")),
            Some((format!("a/b/{id}.wav"), 1, AudioFormat::Mp3))
        );
        assert_eq!(
            variant_of(&format!("{id}-3.ogg")),
            Some((format!("{id}.wav"), 3, AudioFormat::Opus))
        );
        for bad in [
            format!("{id}-0.wav"),
            format!("{id}-x.wav"),
            format!("{id}.flac"),
            format!("{id}.opus"),
            "nothex.wav".to_string(),
            id.to_string(),
        ] {
            assert_eq!(variant_of(&bad), None, "{bad}");
        }
    }
}
