//! A job as the task API shows it: PiAPI's task object (inside its envelope) and Qubico's task
//! body. Times are RFC 3339 in UTC; PiAPI's unset times are `0001-01-01T00:00:00Z`, as the
//! hosted API writes them. A cancelled job is `Failed` / `failed` with the error
//! `TASK_CANCELLED` (neither API has a cancelled status).

use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{AudioFormat, JobRecord, JobState, StyleSpec};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::input::{task_type_of, MODEL};
use crate::api::paths::output_url;

const UNSET: &str = "0001-01-01T00:00:00Z";

/// Unix milliseconds as RFC 3339 in UTC, to `precision`.
pub(super) fn rfc3339(ms: u64, precision: SecondsFormat) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms as i64)
        .unwrap_or_default()
        .to_rfc3339_opts(precision, true)
}

/// A task's times, to the second as the hosted APIs write them.
fn time(ms: u64) -> String {
    rfc3339(ms, SecondsFormat::Secs)
}

/// PiAPI's status of a state.
pub fn piapi_status(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "Pending",
        JobState::Running => "Processing",
        JobState::Succeeded => "Completed",
        JobState::Failed | JobState::Cancelled => "Failed",
    }
}

/// Qubico's status of a state.
pub fn qubico_status(state: JobState) -> &'static str {
    match state {
        JobState::Queued => "pending",
        JobState::Running => "processing",
        JobState::Succeeded => "completed",
        JobState::Failed | JobState::Cancelled => "failed",
    }
}

/// The MP3 of each variant, as absolute URLs with their durations.
fn mp3s(record: &JobRecord, base: &str) -> Vec<(String, f64)> {
    let Some(result) = &record.result else {
        return Vec::new();
    };
    let mut files: Vec<_> = result
        .files
        .iter()
        .filter(|f| f.format == AudioFormat::Mp3)
        .collect();
    files.sort_by_key(|f| f.variant);
    files
        .into_iter()
        .map(|f| (format!("{base}{}", output_url(&f.file)), f.duration_seconds))
        .collect()
}

/// The error of a failed or cancelled job: `(code, message)`.
fn failure(record: &JobRecord) -> Option<(&'static str, String)> {
    match record.state {
        JobState::Failed => Some((
            "GENERATION_FAILED",
            record
                .error
                .clone()
                .unwrap_or_else(|| "the generation failed".into()),
        )),
        JobState::Cancelled => Some((
            "TASK_CANCELLED",
            record.error.clone().unwrap_or_else(|| "cancelled".into()),
        )),
        _ => None,
    }
}

/// PiAPI's unified envelope: `{code: 200, data, message: "success"}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PiapiEnvelope<T> {
    pub code: u16,
    pub data: T,
    pub message: String,
}

impl<T> PiapiEnvelope<T> {
    pub fn success(data: T) -> PiapiEnvelope<T> {
        PiapiEnvelope {
            code: 200,
            data,
            message: "success".into(),
        }
    }
}

/// A task in PiAPI's unified schema.
#[derive(Debug, Serialize, ToSchema)]
pub struct PiapiTask {
    pub task_id: String,
    pub model: String,
    pub task_type: String,
    /// `Pending`, `Processing`, `Completed` or `Failed`.
    pub status: String,
    #[schema(value_type = Object)]
    pub config: Value,
    pub input: PiapiInput,
    /// `{audio_url, audio_urls, duration}` once completed.
    #[schema(value_type = Option<Object>)]
    pub output: Option<Value>,
    pub meta: PiapiMeta,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
    /// Status changes so far, oldest first.
    pub logs: Vec<String>,
    pub error: PiapiError,
}

/// The input as the task has it (reference audio is not echoed).
#[derive(Debug, Serialize, ToSchema)]
pub struct PiapiInput {
    pub lyrics: String,
    pub style_prompt: String,
    /// `""`, or `"(reference audio)"` when the style came from audio.
    pub style_audio: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PiapiMeta {
    pub created_at: String,
    pub started_at: String,
    pub ended_at: String,
    #[schema(value_type = Object)]
    pub usage: Value,
    pub is_using_private_pool: bool,
}

/// `code` 0 and empty strings when there is no error.
#[derive(Debug, Serialize, ToSchema)]
pub struct PiapiError {
    pub code: u16,
    pub raw_message: String,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub detail: Option<Value>,
}

/// `record` as PiAPI's task object, URLs on `base`.
pub fn piapi_task(record: &JobRecord, base: &str) -> PiapiTask {
    let mp3s = mp3s(record, base);
    let output = (record.state == JobState::Succeeded && !mp3s.is_empty()).then(|| {
        serde_json::json!({
            "audio_url": mp3s[0].0,
            "audio_urls": mp3s.iter().map(|(u, _)| u.clone()).collect::<Vec<_>>(),
            "duration": mp3s[0].1,
        })
    });
    let (prompt, audio) = match &record.spec.style {
        StyleSpec::Prompt(p) => (p.clone(), String::new()),
        _ => (String::new(), "(reference audio)".to_string()),
    };
    let error = match failure(record) {
        Some((_, message)) => PiapiError {
            code: 500,
            raw_message: message.clone(),
            message,
            detail: None,
        },
        None => PiapiError {
            code: 0,
            raw_message: String::new(),
            message: String::new(),
            detail: None,
        },
    };
    let mut logs = vec![format!("{} created", time(record.created_ms))];
    if let Some(ms) = record.started_ms {
        logs.push(format!(
            "{} processing (attempt {})",
            time(ms),
            record.attempt
        ));
    }
    if let Some(ms) = record.finished_ms {
        logs.push(format!("{} {}", time(ms), record.state));
    }
    PiapiTask {
        task_id: record.id.to_string(),
        model: MODEL.into(),
        task_type: task_type_of(record.spec.seconds).into(),
        status: piapi_status(record.state).into(),
        config: serde_json::json!({"service_mode": "", "webhook_config": {"endpoint": "", "secret": ""}}),
        input: PiapiInput {
            lyrics: record.spec.lyrics.clone(),
            style_prompt: prompt,
            style_audio: audio,
        },
        output,
        meta: PiapiMeta {
            created_at: time(record.created_ms),
            started_at: record.started_ms.map_or_else(|| UNSET.into(), time),
            ended_at: record.finished_ms.map_or_else(|| UNSET.into(), time),
            usage: serde_json::json!({"type": "point", "frozen": 0, "consume": 0}),
            is_using_private_pool: false,
        },
        detail: None,
        logs,
        error,
    }
}

/// Qubico's answer to `POST /v1/inference` (202).
#[derive(Debug, Serialize, ToSchema)]
pub struct QubicoCreated {
    pub task_id: String,
    /// `pending`.
    pub status: String,
    pub model: String,
    pub task_type: String,
    pub created_at: String,
    /// Seconds until the song is expected to be done (queue and run, at the learnt pace).
    pub estimated_time: u64,
}

/// A task as `GET /v1/tasks/{task_id}` shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct QubicoTask {
    pub task_id: String,
    /// `pending`, `processing`, `completed` or `failed`.
    pub status: String,
    pub model: String,
    pub task_type: String,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub results: Option<Vec<QubicoResult>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
    /// `{code, message}` of a failed task.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<Value>,
}

/// One song of a completed task.
#[derive(Debug, Serialize, ToSchema)]
pub struct QubicoResult {
    pub url: String,
    pub duration: f64,
    /// `mp3`.
    pub format: String,
    pub sample_rate: u32,
    pub channels: u32,
}

/// `record` as Qubico's task body, URLs on `base`.
pub fn qubico_task(record: &JobRecord, base: &str) -> QubicoTask {
    let done = record.state == JobState::Succeeded;
    QubicoTask {
        task_id: record.id.to_string(),
        status: qubico_status(record.state).into(),
        model: MODEL.into(),
        task_type: task_type_of(record.spec.seconds).into(),
        created_at: time(record.created_ms),
        completed_at: record.finished_ms.filter(|_| done).map(time),
        results: done.then(|| {
            mp3s(record, base)
                .into_iter()
                .map(|(url, duration)| QubicoResult {
                    url,
                    duration,
                    format: "mp3".into(),
                    sample_rate: refrain_model::audio::VAE_SAMPLE_RATE,
                    channels: 2,
                })
                .collect()
        }),
        usage: done.then(|| serde_json::json!({"credits_used": 1})),
        error: failure(record)
            .map(|(code, message)| serde_json::json!({"code": code, "message": message})),
    }
}

/// Qubico's answer to a create.
pub fn qubico_created(record: &JobRecord, estimated_seconds: f64) -> QubicoCreated {
    QubicoCreated {
        task_id: record.id.to_string(),
        status: "pending".into(),
        model: MODEL.into(),
        task_type: task_type_of(record.spec.seconds).into(),
        created_at: time(record.created_ms),
        estimated_time: estimated_seconds.max(0.0).ceil() as u64,
    }
}
