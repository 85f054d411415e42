//! Operational endpoints: liveness (`GET /healthz`, always `ok` while the process serves),
//! readiness (`GET /readyz`, 200 `{"ready":true}` once every node has loaded its bundle, 503
//! `{"ready":false}` while loading or shutting down) and Prometheus metrics (`GET /metrics`,
//! text exposition format 0.0.4; the per-state job gauges and the queue depth are refreshed
//! from the store and the queue on every scrape).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::routing::Routes;
use crate::service::App;

/// The operational routes.
pub fn routes() -> Routes {
    Routes::new()
        .get("/healthz", healthz)
        .get("/readyz", readyz)
        .get("/metrics", metrics)
}

/// Liveness: `ok` while the process serves.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "ops",
    responses((status = 200, description = "The process serves.", body = String,
        content_type = "text/plain", example = "ok")),
)]
pub(crate) async fn healthz() -> &'static str {
    "ok"
}

/// The body of `GET /readyz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether every node has loaded its bundle and the service is not shutting down.
    pub ready: bool,
}

/// Readiness: whether jobs can run now.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "ops",
    responses(
        (status = 200, description = "Ready: every node has loaded its bundle.", body = Readiness,
            example = json!({"ready": true})),
        (status = 503, description = "Not ready: loading, or shutting down.", body = Readiness,
            example = json!({"ready": false})),
    ),
)]
pub(crate) async fn readyz(State(app): State<App>) -> Response {
    let ready = app.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Readiness { ready })).into_response()
}

/// Prometheus metrics.
///
/// Text exposition format 0.0.4; the job and queue gauges are refreshed on every scrape.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "ops",
    responses(
        (status = 200, description = "The metrics.", body = String,
            content_type = "text/plain; version=0.0.4"),
        (status = 500, description = "The store or the queue cannot be read.", body = ErrorBody),
        (status = 503, description = "The queue cannot be reached.", body = ErrorBody),
    ),
)]
pub(crate) async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let m = app.metrics();
    for (state, count) in app.counts()? {
        m.jobs
            .with_label_values(&[state.as_str()])
            .set(count as i64);
    }
    let depth = app.queue().depth().await?;
    m.queue_depth.set(depth as i64);
    Ok((
        [(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        m.render(),
    )
        .into_response())
}
