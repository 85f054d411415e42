//! Refrain's own API under `/api/v1` (documented in `docs/api.md`): jobs with live events,
//! uploads, downloads in every format, and the node list. Every route goes through
//! [`auth::authenticate`] (API keys, the caller as job owner); errors are rendered by
//! [`crate::api::error::ApiError`] as `{"error": {"code", "message", "field"}}`.
//!
//! - [`create`]: `POST /api/v1/jobs` (JSON → admission draft, `Idempotency-Key`);
//! - [`jobs`]: `GET /api/v1/jobs` (newest first, cursor pages), `GET`/`DELETE
//!   /api/v1/jobs/{id}`, `GET /api/v1/jobs/{id}/audio[/{variant}]?format=`;
//! - [`links`]: `POST /api/v1/jobs/{id}/links` (signed, expiring download links) and the
//!   public `GET /dl/{token}` that serves them;
//! - [`events`]: `GET /api/v1/jobs/{id}/events` (Server-Sent Events from the outbox);
//! - [`uploads`]: `POST /api/v1/uploads`;
//! - [`schedules`]: `/api/v1/schedules` (cron schedules of batches);
//! - [`view`]: the job's JSON shape.

pub mod auth;
pub mod create;
pub mod events;
pub mod jobs;
pub mod links;
pub mod schedules;
pub mod uploads;
pub mod view;

use axum::middleware;

use crate::api::routing::Routes;
use crate::app::App;

/// The `/api/v1` job routes, behind the API-key check.
pub fn routes(app: App) -> Routes {
    Routes::new()
        .post("/api/v1/jobs", create::create)
        .get("/api/v1/jobs", jobs::list)
        .get("/api/v1/jobs/{id}", jobs::get)
        .delete("/api/v1/jobs/{id}", jobs::cancel)
        .patch("/api/v1/jobs/{id}", jobs::update)
        .get("/api/v1/jobs/{id}/events", events::events)
        .get("/api/v1/jobs/{id}/audio", jobs::audio_first)
        .get("/api/v1/jobs/{id}/audio/{variant}", jobs::audio_variant)
        .post("/api/v1/jobs/{id}/links", links::create)
        .post("/api/v1/uploads", uploads::upload)
        .merge(crate::api::nodes::routes())
        .post("/api/v1/admin/backup", crate::api::admin::backup_now)
        .get("/api/v1/schedules", schedules::list)
        .post("/api/v1/schedules", schedules::create)
        .get("/api/v1/schedules/{name}", schedules::get)
        .put("/api/v1/schedules/{name}", schedules::update)
        .delete("/api/v1/schedules/{name}", schedules::delete)
        .post("/api/v1/schedules/{name}/pause", schedules::pause)
        .post("/api/v1/schedules/{name}/resume", schedules::resume)
        .post("/api/v1/schedules/{name}/run", schedules::run)
        .map_router(|router| {
            router.route_layer(middleware::from_fn_with_state(app, auth::authenticate))
        })
}
