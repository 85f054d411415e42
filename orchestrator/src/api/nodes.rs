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
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::ErrorBody;
use crate::api::routing::Routes;
use crate::distributed::registry::NodeView;
use crate::service::App;

/// The node routes.
pub fn routes() -> Routes {
    Routes::new().get("/api/v1/nodes", nodes)
}

/// The body of `GET /api/v1/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeList {
    /// Nodes neither `stopped` nor `lost` (the `refrain_nodes` gauge).
    pub live: usize,
    pub nodes: Vec<NodeView>,
}

/// The inference nodes and what they do.
#[utoipa::path(
    get,
    path = "/api/v1/nodes",
    operation_id = "listNodes",
    tag = "nodes",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "Every node heard from, in-process ones included.",
            body = NodeList),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
    ),
)]
pub(crate) async fn nodes(State(app): State<App>) -> Json<NodeList> {
    let registry = app.nodes();
    Json(NodeList {
        live: registry.live(),
        nodes: registry.list(),
    })
}
