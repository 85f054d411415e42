//! Operational endpoints: liveness (`GET /healthz`, always `ok` while the process serves),
//! readiness (`GET /readyz`, 200 `{"ready":true}` once every node has loaded its bundle, 503
//! `{"ready":false}` while loading or shutting down) and Prometheus metrics (`GET /metrics`,
//! text exposition format 0.0.4; the per-state job gauges and the queue depth are refreshed
//! from the store and the queue on every scrape).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::error::ApiError;
use crate::service::App;

/// The operational routes.
pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<App>) -> Response {
    if app.is_ready() {
        (StatusCode::OK, Json(json!({"ready": true}))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false})),
        )
            .into_response()
    }
}

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
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
