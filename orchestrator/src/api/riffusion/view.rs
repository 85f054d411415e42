//! What the Riffusion API answers: the two ids of a request ([`Created`]), a take in the feed
//! ([`Riff`]) and an upload ([`Uploaded`]).
//!
//! A take's `status` is `process` while it is queued or running, `success` once it succeeded
//! and `failure` when it failed or was cancelled (with `error`). `process` is 0–100 from the
//! job's real progress (the node's stage and sampler steps; 0 while queued, 100 when it
//! succeeded). `audio_url` and `generations[].audio_url` are absolute MP3 URLs (on `[task_api]
//! public_url`) once it succeeded, `null` before.

use protocol::{AudioFormat, JobRecord, JobState, ProgressEvent, StyleSpec};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::paths::output_url;
use crate::api::v1::view::timestamp;

/// The answer of both generate routes: two takes of the same request.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    /// The two task ids, for `GET /riffusion/feed/{id1},{id2}`.
    pub ids: Vec<String>,
    /// The title, as stored (trimmed; absent when none was given).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// `generate`, `topic`, or the transform.
    pub mode: String,
    /// The lyrics as they will be sung: LRC, with the automatic timing applied.
    pub lyrics: String,
    /// The style prompt (`null` when the style comes from audio).
    pub style: Option<String>,
    pub length_seconds: u32,
}

/// One take in the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Riff {
    pub id: String,
    /// The request's title, `null` when none was given.
    pub title: Option<String>,
    /// `process`, `success` or `failure`.
    pub status: &'static str,
    /// Progress, 0–100.
    pub process: u32,
    /// The stage now (`queued`, `tokenize`, `style`, `encode`, `sampling`, `decode`, `done`).
    pub stage: String,
    /// The MP3 once `success`, else `null`.
    pub audio_url: Option<String>,
    /// One per variant (one here), each with its MP3 once `success`.
    pub generations: Vec<Generation>,
    /// Why it failed (`failure` only).
    pub error: Option<String>,
    pub lyrics: String,
    pub style: Option<String>,
    pub length_seconds: u32,
    pub created_at: String,
}

/// One generated track of a take.
#[derive(Debug, Serialize, ToSchema)]
pub struct Generation {
    pub id: String,
    pub audio_url: Option<String>,
    pub duration: Option<f64>,
}

/// The answer of `POST /riffusion/upload`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Uploaded {
    /// Use as `morph.audio_upload_id`.
    pub id: String,
    pub duration_seconds: f64,
}

fn style(record: &JobRecord) -> Option<String> {
    match &record.spec.style {
        StyleSpec::Prompt(p) => Some(p.clone()),
        StyleSpec::Upload(_) => None,
    }
}

/// The answer of a generate route for its two jobs.
pub fn created(records: &[JobRecord], mode: &str) -> Created {
    let first = &records[0];
    Created {
        ids: records.iter().map(|r| r.id.to_string()).collect(),
        title: first.title.clone(),
        mode: mode.to_string(),
        lyrics: first.spec.lyrics.clone(),
        style: style(first),
        length_seconds: first.spec.seconds,
    }
}

/// A take as the feed shows it; `progress` is the job's live progress, if any.
pub fn riff(record: &JobRecord, progress: Option<ProgressEvent>, base: &str) -> Riff {
    let (status, process) = match record.state {
        JobState::Queued => ("process", 0),
        JobState::Running => (
            "process",
            progress
                .as_ref()
                .map_or(0, |p| p.percent.clamp(0.0, 99.0).floor() as u32),
        ),
        JobState::Succeeded => ("success", 100),
        JobState::Failed | JobState::Cancelled => ("failure", 0),
    };
    let stage = match (record.state, &progress) {
        (JobState::Queued, _) => "queued".to_string(),
        (JobState::Succeeded, _) => "done".to_string(),
        (_, Some(p)) => p.stage.as_str().to_string(),
        (_, None) => record.state.as_str().to_string(),
    };
    let mut generations: Vec<Generation> = Vec::new();
    if let (JobState::Succeeded, Some(result)) = (record.state, &record.result) {
        let mut mp3s: Vec<_> = result
            .files
            .iter()
            .filter(|f| f.format == AudioFormat::Mp3)
            .collect();
        mp3s.sort_by_key(|f| f.variant);
        generations = mp3s
            .into_iter()
            .map(|f| Generation {
                id: if f.variant == 1 {
                    record.id.to_string()
                } else {
                    format!("{}-{}", record.id, f.variant)
                },
                audio_url: Some(format!("{base}{}", output_url(&f.file))),
                duration: Some(f.duration_seconds),
            })
            .collect();
    }
    if generations.is_empty() {
        generations.push(Generation {
            id: record.id.to_string(),
            audio_url: None,
            duration: None,
        });
    }
    let error = match record.state {
        JobState::Failed => Some(record.error.clone().unwrap_or_else(|| "failed".into())),
        JobState::Cancelled => Some("cancelled".into()),
        _ => None,
    };
    Riff {
        id: record.id.to_string(),
        title: record.title.clone(),
        status,
        process,
        stage,
        audio_url: generations[0].audio_url.clone(),
        generations,
        error,
        lyrics: record.spec.lyrics.clone(),
        style: style(record),
        length_seconds: record.spec.seconds,
        created_at: timestamp(record.created_ms),
    }
}
