//! The HTTP front ends of the service, all on one router ([`router`]):
//!
//! * [`diffrhythm`] — the DiffRhythm server API (`POST /generate`, `GET`/`HEAD /output/…`,
//!   `GET /status`, `GET /files`);
//! * [`ops`] — `GET /healthz`, `GET /readyz`, `GET /metrics`; [`admin`] — `POST
//!   /api/v1/admin/backup` (loopback only);
//! * [`nodes`] — `GET /api/v1/nodes`, the inference nodes and their state;
//! * [`v1`] — Refrain's own API under `/api/v1` (jobs, events, audio, uploads, nodes), behind
//!   API keys when they are configured;
//! * [`task`] — the PiAPI / Qubico task API (`/api/v1/task…`, `/v1/inference`, `/v1/tasks/…`),
//!   always behind `x-api-key`, with signed webhooks;
//! * [`riffusion`] — the Riffusion-style API (`/riffusion/…`), two takes per request;
//! * [`web`] — the web page at `/`;
//! * [`openapi`] — `GET /openapi.json`, the OpenAPI 3.1 document of all of these, generated from
//!   the handlers and their types, and `GET /docs`, Swagger UI on it.
//!
//! Every route is registered through [`routing::Routes`], which keeps the table of methods and
//! paths the tests hold the OpenAPI document to.
//!
//! Every error goes through [`error`], the one mapping of `OrchestratorError` to HTTP; a path
//! no route has (404) or a method a path does not take (405) is answered by [`fallback`] in the
//! error shape of the API the path belongs to. The whole
//! request body is bounded by `limits.max_body_bytes` (413), each upload by
//! `limits.max_upload_bytes` (413 naming the field). Requests are traced with
//! `tower_http::trace::TraceLayer`.

pub mod admin;
pub mod audio;
pub mod diffrhythm;
pub mod error;
pub mod fallback;
pub mod form;
pub mod headers;
pub mod nodes;
pub mod openapi;
pub mod ops;
pub mod paths;
pub mod riffusion;
pub mod routing;
pub mod task;
pub mod v1;
pub mod web;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use tower_http::trace::TraceLayer;

use self::routing::Routes;
use crate::service::App;

/// Every route of the service, with the body limit and request tracing.
pub fn router(app: App) -> Router {
    let body_limit = app.config().limits.max_body_bytes;
    let routes = routes(app.clone());
    let table = std::sync::Arc::new(routes.table().to_vec());
    routes
        .into_router()
        .method_not_allowed_fallback(fallback::method_not_allowed(table))
        .fallback(fallback::unknown_route)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// Every route of the service, each recorded with its method and path ([`Routes`]): the OpenAPI
/// document ([`openapi`]) must have an operation for each (`tests/openapi.rs`).
pub fn routes(app: App) -> Routes {
    Routes::new()
        .merge(diffrhythm::routes())
        .merge(ops::routes())
        .merge_router(web::routes(), WEB_ROUTES)
        .merge(v1::routes(app.clone()))
        .merge(v1::links::public_routes())
        .merge(riffusion::routes(app.clone()))
        .merge(task::routes(app))
        .merge(openapi::routes())
}

/// The routes of the plain router [`web::routes`] builds.
const WEB_ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/lib.js"),
    ("GET", "/app.js"),
    ("GET", "/style.css"),
];
