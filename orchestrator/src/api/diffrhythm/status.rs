//! `GET /status` and `GET /files`, the reference server's extras, and the small formatting
//! helpers the DiffRhythm bodies share (`"N.N seconds"`, the UTC clock, `other_goodies`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::JobState;
use serde::Serialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use super::{DiffRhythmError, DiffRhythmErrorBody};
use crate::api::paths::output_url;
use crate::service::App;

/// `"12.3 seconds"`: how the reference spells a duration (its clients parse it).
pub(super) fn seconds_text(seconds: f64) -> String {
    let seconds = if seconds.is_finite() {
        seconds.max(0.0)
    } else {
        0.0
    };
    format!("{seconds:.1} seconds")
}

fn utc_now_text() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string()
}

pub(super) fn other_goodies(app: &App) -> Value {
    json!({
        "device": app.node().device,
        "max_frames": app.node().max_frames,
        "current_time": utc_now_text(),
        "uptime": seconds_text(app.uptime_seconds()),
    })
}

/// The service's state: jobs per state, queue, device, bundle, lengths, uptime.
#[utoipa::path(
    get,
    path = "/status",
    operation_id = "status",
    tag = "diffrhythm",
    responses(
        (status = 200, description = "The state.", body = Object, example = json!({
            "status": "ok", "ready": true, "server_busy": false,
            "jobs": {"queued": 0, "running": 0, "succeeded": 3, "failed": 0, "cancelled": 0},
            "queue": {"depth": 0, "capacity": 16, "backend": "embedded"},
            "device": "cuda:0", "bundle": {"name": "…", "version": "…"},
            "max_frames": 6144, "lengths": "95 or 96 to 285", "uptime": "12.3 seconds",
            "current_time": "2026-12-02 14:00:00 UTC"})),
        (status = 500, description = "Internal error.", body = DiffRhythmErrorBody),
        (status = 503, description = "The queue cannot be reached.", body = DiffRhythmErrorBody),
    ),
)]
pub(crate) async fn status(State(app): State<App>) -> Result<Response, DiffRhythmError> {
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

/// One result file.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct OutputFile {
    /// The name under the output root.
    file: String,
    /// `/output/<file>`.
    url: String,
    size_bytes: u64,
}

/// The body of `GET /files`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileList {
    files: Vec<OutputFile>,
}

/// Every result file under the output root.
#[utoipa::path(
    get,
    path = "/files",
    operation_id = "files",
    tag = "diffrhythm",
    responses(
        (status = 200, description = "The files.", body = FileList),
        (status = 500, description = "Internal error.", body = DiffRhythmErrorBody),
    ),
)]
pub(crate) async fn files(State(app): State<App>) -> Result<Response, DiffRhythmError> {
    let list = app.outputs().list().await?;
    let files = list
        .into_iter()
        .map(|(file, size_bytes)| OutputFile {
            url: output_url(&file),
            file,
            size_bytes,
        })
        .collect();
    Ok(Json(FileList { files }).into_response())
}
