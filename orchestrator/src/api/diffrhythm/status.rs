//! `GET /status` and `GET /files`, the reference server's extras, and the small formatting
//! helpers the DiffRhythm bodies share (`"N.N seconds"`, the UTC clock, `other_goodies`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::JobState;
use serde_json::{json, Map, Value};

use super::DiffRhythmError;
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

pub(super) async fn status(State(app): State<App>) -> Result<Response, DiffRhythmError> {
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

pub(super) async fn files(State(app): State<App>) -> Result<Response, DiffRhythmError> {
    let list = app.outputs().list().await?;
    let files: Vec<Value> = list
        .into_iter()
        .map(|(file, size)| json!({"file": file, "url": output_url(&file), "size_bytes": size}))
        .collect();
    Ok(Json(json!({"files": files})).into_response())
}
