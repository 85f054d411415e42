//! [`JobView`]: how Refrain's own API shows a job — a stable JSON shape for clients (the web
//! page, the CLI, bots), built from the stored record and its live progress. The stored
//! [`JobRecord`] stays an internal format.

use chrono::{DateTime, SecondsFormat, Utc};
use protocol::{
    EditSpec, InitSpec, JobRecord, JobState, ProgressEvent, SongRef, Source, Stage, StyleSpec,
};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::app::App;
use crate::error::OrchestratorError;

/// A job as Refrain's API shows it (see `docs/api.md`).
#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    /// 32 lower-case hex digits.
    #[schema(example = "3f0c9a1e8b7d4c2f9e6a5b4c3d2e1f00")]
    pub id: String,
    #[schema(value_type = JobState)]
    pub state: &'static str,
    /// The front end the job came from.
    #[schema(value_type = Source)]
    pub source: &'static str,
    /// `anonymous`, or `key:<name>` of the API key that created it.
    #[schema(example = "anonymous")]
    pub owner: String,
    /// `interactive`, or `batch` for scheduled jobs: interactive jobs are served first.
    #[schema(example = "interactive")]
    pub priority: &'static str,
    /// RFC 3339, UTC, with milliseconds.
    #[schema(example = "2026-12-02T14:00:00.000Z")]
    pub created_at: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// 1 for the first run, +1 for every retry after an error of the job.
    pub attempt: u32,
    /// Runs in a row cut short because the service or node running the job died (they use up
    /// no attempt; see `inference.max_interruptions`).
    pub interruptions: u32,
    /// 0 = next; only while queued.
    pub queue_position: Option<usize>,
    /// Once a node reported.
    pub progress: Option<ProgressView>,
    /// Why the job failed.
    pub error: Option<String>,
    /// The request parameters in this API's field names; reference audio shows as
    /// `{"audio": "uploaded"}`.
    #[schema(value_type = Object, example = json!({"lyrics": "…", "style": {"prompt": "…"},
        "length_seconds": 95, "seed": 42, "variants": 1, "format": "mp3", "chunked": false,
        "edit": null, "init": null}))]
    pub request: Value,
    /// Only when succeeded.
    pub result: Option<ResultView>,
    /// The sequence number of the job's latest event (for `Last-Event-ID`).
    pub last_event: u64,
    /// The `client_data` given at creation, unchanged.
    pub client_data: Option<String>,
    /// The title given at creation.
    pub title: Option<String>,
    pub links: Links,
}

/// Where a queued or running job is.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    #[schema(value_type = Stage)]
    pub stage: &'static str,
    /// Units of this stage done.
    pub step: u32,
    /// Units of this stage in all.
    pub total: u32,
    /// Of the whole generation.
    pub percent: f32,
    /// Seconds left, from the step times measured so far.
    pub eta_seconds: Option<f64>,
}

/// The songs of a succeeded job.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultView {
    pub duration_seconds: f64,
    pub files: Vec<FileView>,
}

/// One file of a result.
#[derive(Debug, Serialize, ToSchema)]
pub struct FileView {
    /// 1-based.
    pub variant: u32,
    /// `wav`, `mp3` or `ogg`.
    #[schema(example = "wav")]
    pub format: &'static str,
    pub bytes: u64,
    /// `/api/v1/jobs/<id>/audio/<variant>?format=<format>` (needs the API key when keys are set).
    pub url: String,
    /// The same file at `/output/[<dir>/]<id>[-<variant>].<format>`, which needs no key: for
    /// players and download links, which cannot send one. Anyone holding this link can fetch
    /// the file; the 128-bit random job id in it is the secret.
    pub public_url: String,
}

/// The job's own URLs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: String,
    pub events: String,
    pub audio: String,
}

/// RFC 3339 with milliseconds, UTC.
pub fn timestamp(ms: u64) -> String {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl JobView {
    /// The view of `record`, with its live progress and queue position.
    pub async fn of(app: &App, record: &JobRecord) -> Result<JobView, OrchestratorError> {
        let queue_position = if record.state == JobState::Queued {
            app.queue_position(&record.id).await?
        } else {
            None
        };
        let progress = app.progress(record).await;
        Ok(JobView::build(record, queue_position, progress))
    }

    /// The view without live data (for lists: no per-job queue lookups).
    pub fn stored(record: &JobRecord) -> JobView {
        JobView::build(record, None, record.progress.clone())
    }

    fn build(
        record: &JobRecord,
        queue_position: Option<usize>,
        progress: Option<ProgressEvent>,
    ) -> JobView {
        let id = record.id.to_string();
        let base = format!("/api/v1/jobs/{id}");
        let result = record.result.as_ref().map(|r| ResultView {
            duration_seconds: r.duration_seconds,
            files: r
                .files
                .iter()
                .map(|f| FileView {
                    variant: f.variant,
                    format: f.format.extension(),
                    bytes: f.bytes,
                    url: format!("{base}/audio/{}?format={}", f.variant, f.format.extension()),
                    public_url: crate::api::paths::output_url(&f.file),
                })
                .collect(),
        });
        JobView {
            state: record.state.as_str(),
            source: record.source.as_str(),
            owner: record.owner.to_string(),
            priority: record.priority.as_str(),
            created_at: timestamp(record.created_ms),
            started_at: record.started_ms.map(timestamp),
            finished_at: record.finished_ms.map(timestamp),
            attempt: record.attempt,
            interruptions: record.interruptions,
            queue_position,
            progress: progress.map(|p| ProgressView {
                stage: p.stage.as_str(),
                step: p.step,
                total: p.total,
                percent: p.percent,
                eta_seconds: p.eta_seconds.filter(|s| s.is_finite()),
            }),
            error: record.error.clone(),
            client_data: record.client_data.clone(),
            title: record.title.clone(),
            request: request(record),
            result: if record.state == JobState::Succeeded {
                result
            } else {
                None
            },
            last_event: record.event_seq,
            links: Links {
                this: base.clone(),
                events: format!("{base}/events"),
                audio: format!("{base}/audio"),
            },
            id,
        }
    }
}

/// The request parameters, in this API's field names (uploaded audio is not echoed).
fn request(record: &JobRecord) -> Value {
    let spec = &record.spec;
    let style = match &spec.style {
        StyleSpec::Prompt(p) => json!({"prompt": p}),
        StyleSpec::Upload(_) => json!({"audio": "uploaded"}),
    };
    let edit = spec.edit.as_ref().map(|EditSpec { song, segments }| {
        let song = match song {
            SongRef::Output(id) => json!({"job": id}),
            SongRef::Upload(_) => json!({"audio": "uploaded"}),
        };
        json!({"song": song, "segments": segments})
    });
    let init = spec.init.as_ref().map(|InitSpec { song, strength }| {
        let song = match song {
            SongRef::Output(id) => json!({"job": id}),
            SongRef::Upload(_) => json!({"audio": "uploaded"}),
        };
        // As given (an f32 in the spec: 0.3 would show as 0.30000001192092896).
        let strength = (f64::from(*strength) * 1e6).round() / 1e6;
        json!({"song": song, "strength": strength})
    });
    json!({
        "lyrics": spec.lyrics,
        "style": style,
        "length_seconds": spec.seconds,
        "seed": spec.seed,
        "variants": spec.variants,
        "format": spec.format.extension(),
        "chunked": spec.chunked,
        "edit": edit,
        "init": init,
    })
}
