//! `POST /api/v1/admin/backup`: a consistent backup of the data folder while the service runs
//! (`refrain backup` calls it when the store is held by a running `refrain serve`; sled lets
//! only one process open it).
//!
//! Only a client on the same machine may ask (the peer address must be loopback), with an API
//! key when keys are configured (the `/api/v1` key check). The client cannot choose where the
//! backup goes: it is written under `<data_dir>/backups/<UTC time>/` (left out of later
//! backups), and the answer names that folder so the local caller can move it where it wants.
//! The copy is made through the open store under its writer lock
//! ([`crate::store::backup`]), on a blocking thread: state changes wait while the store is
//! copied (seconds for a large store), then the files are copied without holding anything.

use std::net::SocketAddr;
use std::path::PathBuf;

use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::error::OrchestratorError;
use crate::store::backup::{backup, BACKUPS_DIR};

/// Where the backup is, and what it holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct BackupMade {
    /// The backup's folder on the server's machine (absolute when the data folder is).
    pub path: String,
    /// Jobs in the copy.
    pub jobs: usize,
    /// Files copied beside the store, and their bytes.
    pub files: usize,
    pub bytes: u64,
}

/// Backs up the data folder.
#[utoipa::path(
    post, path = "/api/v1/admin/backup", operation_id = "backup", tag = "ops",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "The backup is complete, in the folder named.",
            body = BackupMade),
        (status = 401, description = "API keys are configured and none was given.",
            body = ErrorBody),
        (status = 403, description = "Not from the server's own machine (loopback).",
            body = ErrorBody),
        (status = 500, description = "The copy failed (details in the server log).",
            body = ErrorBody),
    ),
)]
pub async fn backup_now(State(app): State<App>, request: Request) -> Response {
    let local = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if !local {
        let body = serde_json::json!({"error": {"code": "forbidden",
            "message": "backups are made only for a client on the server's own machine"}});
        return (StatusCode::FORBIDDEN, Json(body)).into_response();
    }
    let data_dir = app.config().data_dir.clone();
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    let dest: PathBuf = data_dir.join(BACKUPS_DIR).join(stamp);
    let store = app.store().clone();
    let target = dest.clone();
    let made = tokio::task::spawn_blocking(move || backup(&store, &data_dir, &target)).await;
    match made {
        Ok(Ok(summary)) => {
            tracing::info!(path = %dest.display(), jobs = summary.jobs, files = summary.files, "backup made");
            let path = std::path::absolute(&dest).unwrap_or(dest);
            let body = BackupMade {
                path: path.display().to_string(),
                jobs: summary.jobs,
                files: summary.files,
                bytes: summary.bytes,
            };
            (StatusCode::CREATED, Json(body)).into_response()
        }
        Ok(Err(e)) => ApiError(OrchestratorError::Io {
            context: "backup".into(),
            source: std::io::Error::other(e.to_string()),
        })
        .into_response(),
        Err(e) => ApiError(OrchestratorError::Io {
            context: "backup task".into(),
            source: std::io::Error::other(e.to_string()),
        })
        .into_response(),
    }
}
