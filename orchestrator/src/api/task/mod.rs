//! The PiAPI / Qubico task API (documented in `docs/task-api.md`): clients written for those
//! hosted DiffRhythm services work against Refrain with only the base URL and key changed.
//!
//! One API in two spellings, translated to and from the job core and nothing more:
//!
//! * PiAPI: `POST /api/v1/task`, `GET`/`DELETE /api/v1/task/{task_id}`, answers in PiAPI's
//!   unified envelope `{code, data: <task>, message}` with statuses `Pending`, `Processing`,
//!   `Completed`, `Failed`;
//! * Qubico: `POST /v1/inference` (202), `GET`/`DELETE /v1/tasks/{task_id}`, lower-case
//!   statuses, `results: [{url, duration, format: "mp3", sample_rate, channels}]`.
//!
//! Both take `{model: "Qubico/diffrhythm", task_type: "txt2audio-base" (95 s) |
//! "txt2audio-full" (285 s), input: {lyrics, style_prompt, style_audio}, config:
//! {webhook_config: {endpoint, secret}}}` ([`input`]). Every route needs `x-api-key` with one of
//! the service's API keys (`refrain keys add NAME`), which owns the task; per-key limits
//! (`[task_api] limits`, by default the hosted service's 10 a minute, 3 at once, 100 a day) are
//! enforced by the core as a [`crate::jobs::limits::Quota`]. Each task's webhook deliveries can
//! be read and sent again ([`hooks`]). Errors use the hosted API's error object
//! `{"error": {"code", "message", "details"}}` ([`error`]), inside PiAPI's envelope on the
//! PiAPI spelling. Result URLs are absolute, on `[task_api] public_url`.

pub mod error;
pub mod hooks;
pub mod input;
pub mod routes;
pub mod view;

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use protocol::Owner;

pub use self::error::TaskError;
use crate::api::routing::Routes;
use crate::app::App;
use crate::config::Config;
use crate::error::OrchestratorError;
use crate::webhooks::dispatch::Render;

/// Which spelling a request used (it decides the shapes of answers and errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    Piapi,
    Qubico,
}

/// The key's owner, put in the request by [`authenticate`].
#[derive(Debug, Clone)]
pub struct KeyOwner(pub Owner);

/// Every task route (both spellings), behind the `x-api-key` check.
pub fn routes(app: App) -> Routes {
    Routes::new()
        .post("/api/v1/task", routes::piapi_create)
        .get("/api/v1/task/{task_id}", routes::piapi_get)
        .delete("/api/v1/task/{task_id}", routes::piapi_cancel)
        .get("/api/v1/task/{task_id}/webhooks", hooks::piapi_log)
        .post(
            "/api/v1/task/{task_id}/webhooks/{delivery_id}/redeliver",
            hooks::piapi_redeliver,
        )
        .post("/v1/inference", routes::qubico_create)
        .get("/v1/tasks/{task_id}", routes::qubico_get)
        .delete("/v1/tasks/{task_id}", routes::qubico_cancel)
        .get("/v1/tasks/{task_id}/webhooks", hooks::qubico_log)
        .post(
            "/v1/tasks/{task_id}/webhooks/{delivery_id}/redeliver",
            hooks::qubico_redeliver,
        )
        .map_router(|router| router.route_layer(middleware::from_fn_with_state(app, authenticate)))
}

/// `x-api-key` (or `Authorization: Bearer`) must name one of the service's keys, on every
/// task route and whether or not Refrain's own API is open: the hosted API always needs one.
async fn authenticate(State(app): State<App>, mut request: Request, next: Next) -> Response {
    let spelling = if request.uri().path().starts_with("/v1/") {
        Spelling::Qubico
    } else {
        Spelling::Piapi
    };
    let keys = app.api_keys();
    let presented = crate::api::v1::auth::presented(request.headers());
    match presented.and_then(|k| keys.check(k)) {
        Some(name) => {
            request
                .extensions_mut()
                .insert(KeyOwner(Owner::new("key", &name)));
            next.run(request).await
        }
        None => {
            let why = if keys.current().is_empty() {
                "no API key is configured on this server: add one with `refrain keys add NAME` \
                 and send it as x-api-key"
            } else if presented.is_some() {
                "the x-api-key is not a valid API key"
            } else {
                "an API key is required: x-api-key: <key>"
            };
            TaskError::new(spelling, OrchestratorError::Unauthorized(why.into())).into_response()
        }
    }
}

/// The base of absolute result URLs: `[task_api] public_url`, else `http://<the address the
/// server is bound to>` (an unspecified address becomes `localhost`).
pub fn public_base(config: &Config, bound: std::net::SocketAddr) -> String {
    if let Some(url) = &config.task_api.public_url {
        return url.trim_end_matches('/').to_string();
    }
    let listen = bound;
    if listen.ip().is_unspecified() {
        format!("http://localhost:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}

/// How webhook deliveries render a job: the GET body of the API it was created with (the task
/// API's two spellings, or Refrain's own job view for scheduled jobs).
pub fn renderer(base: String) -> Render {
    std::sync::Arc::new(move |payload, record| match payload {
        crate::webhooks::Payload::Piapi => {
            serde_json::to_value(view::piapi_task(record, &base)).unwrap_or_default()
        }
        crate::webhooks::Payload::Qubico => {
            serde_json::to_value(view::qubico_task(record, &base)).unwrap_or_default()
        }
        crate::webhooks::Payload::Refrain => {
            serde_json::to_value(crate::api::v1::view::JobView::stored(record)).unwrap_or_default()
        }
    })
}
