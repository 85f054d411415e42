//! Refrain's own API under `/api/v1` (documented in `docs/api.md`): jobs with live events,
//! uploads, downloads in every format, and the node list. Every route goes through
//! [`auth::authenticate`] (API keys, the caller as job owner); errors are rendered by
//! [`crate::api::error::ApiError`] as `{"error": {"code", "message", "field"}}`.
//!
//! - [`create`]: `POST /api/v1/jobs` (JSON → admission draft, `Idempotency-Key`);
//! - [`jobs`]: `GET /api/v1/jobs` (newest first, cursor pages), `GET`/`DELETE
//!   /api/v1/jobs/{id}`, `GET /api/v1/jobs/{id}/audio[/{variant}]?format=`;
//! - [`events`]: `GET /api/v1/jobs/{id}/events` (Server-Sent Events from the outbox);
//! - [`uploads`]: `POST /api/v1/uploads`;
//! - [`view`]: the job's JSON shape.

pub mod auth;
pub mod create;
pub mod events;
pub mod jobs;
pub mod uploads;
pub mod view;

use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

use crate::app::App;

/// The `/api/v1` job routes, behind the API-key check.
pub fn routes(app: App) -> Router<App> {
    Router::new()
        .route("/api/v1/jobs", post(create::create).get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/api/v1/jobs/{id}/events", get(events::events))
        .route("/api/v1/jobs/{id}/audio", get(jobs::audio_first))
        .route(
            "/api/v1/jobs/{id}/audio/{variant}",
            get(jobs::audio_variant),
        )
        .route("/api/v1/uploads", post(uploads::upload))
        .merge(crate::api::nodes::routes())
        .route_layer(middleware::from_fn_with_state(app, auth::authenticate))
}
