//! `GET /api/v1/nodes`: the inference nodes and what they do — in-process nodes of the embedded
//! deployment, and with NATS every `refrain node` heard from (see
//! [`crate::distributed::registry`]):
//!
//! ```json
//! {"live": 2, "nodes": [{"node": "gpu1-cuda_0-3f2a", "host": "gpu1", "device": "cuda:0",
//!   "bundle_name": "…", "bundle_version": "…", "state": "busy",
//!   "job": {"id": "…", "attempt": 1, "percent": 42.0}, "jobs_done": 17,
//!   "last_seen_seconds": 1.2, "started_ms": 1790000000000, "in_process": false, "version": "0.1.0"}]}
//! ```
//!
//! `state` is `starting`, `idle`, `busy`, `stopped` (shut down cleanly) or `lost` (no heartbeat
//! for three intervals); `live` counts the nodes that are neither, like `refrain_nodes`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::service::App;

/// The node routes.
pub fn routes() -> Router<App> {
    Router::new().route("/api/v1/nodes", get(nodes))
}

async fn nodes(State(app): State<App>) -> Response {
    let registry = app.nodes();
    Json(json!({"live": registry.live(), "nodes": registry.list()})).into_response()
}
