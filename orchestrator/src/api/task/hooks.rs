//! A task's webhook delivery log, and asking for a delivery again: what a client needs when its
//! endpoint was down longer than the retries last (`webhooks.retry_for_seconds`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use utoipa::ToSchema;

use super::error::TaskErrorBody;
use super::routes::owned;
use super::view::PiapiEnvelope;
use super::{KeyOwner, Spelling, TaskError};
use crate::app::App;
use crate::webhooks::{Delivery, DeliveryState};

/// The deliveries of one task.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryLog {
    pub task_id: String,
    /// The endpoint (never the secret); `null` when the task has no webhook.
    pub endpoint: Option<String>,
    pub deliveries: Vec<DeliveryView>,
}

/// One status change and every attempt to deliver it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// The `webhook-id` header of its attempts.
    pub id: String,
    /// The event reported: `queued`, `started`, `succeeded`, `failed`, `cancelled`, `retrying`,
    /// `requeued`.
    pub event: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    pub created_at: String,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<String>,
    pub attempts: Vec<AttemptView>,
}

/// One POST.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub at: String,
    /// The endpoint's HTTP status, if it answered.
    pub status: Option<u16>,
    /// Why it failed; `null` when delivered.
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// Delivery times, to the millisecond (attempts can be close together).
fn time(ms: u64) -> String {
    super::view::rfc3339(ms, chrono::SecondsFormat::Millis)
}

fn view(d: &Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        event: d.event.clone(),
        state: match d.state {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
        .into(),
        created_at: time(d.created_ms),
        next_attempt_at: d.next_ms.map(time),
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptView {
                at: time(a.at_ms),
                status: a.status,
                error: a.error.clone(),
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}

fn log(
    app: &App,
    spelling: Spelling,
    owner: &KeyOwner,
    task_id: &str,
) -> Result<DeliveryLog, TaskError> {
    let record = owned(app, spelling, owner, task_id)?;
    let hooks = app.webhooks();
    let target = hooks
        .target(&record.id)
        .map_err(|e| TaskError::new(spelling, e))?;
    let deliveries = hooks
        .deliveries(&record.id)
        .map_err(|e| TaskError::new(spelling, e))?;
    Ok(DeliveryLog {
        task_id: record.id.to_string(),
        endpoint: target.map(|t| t.endpoint),
        deliveries: deliveries.iter().map(view).collect(),
    })
}

async fn redeliver(
    app: &App,
    spelling: Spelling,
    owner: &KeyOwner,
    task_id: &str,
    delivery_id: &str,
) -> Result<DeliveryView, TaskError> {
    let record = owned(app, spelling, owner, task_id)?;
    match app
        .webhooks()
        .redeliver(&record.id, delivery_id)
        .await
        .map_err(|e| TaskError::new(spelling, e))?
    {
        Some(d) => Ok(view(&d)),
        None => Err(TaskError::own(
            spelling,
            StatusCode::NOT_FOUND,
            "DELIVERY_NOT_FOUND",
            format!("task {task_id} has no webhook delivery {delivery_id:?}"),
            serde_json::json!({"field": "delivery_id"}),
        )),
    }
}

/// The task's webhook deliveries (PiAPI spelling).
#[utoipa::path(
    get, path = "/api/v1/task/{task_id}/webhooks", operation_id = "piapiTaskWebhooks",
    tag = "task", security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "Every delivery with its attempts, oldest first.",
            body = PiapiEnvelope<DeliveryLog>),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND`.", body = TaskErrorBody),
    ),
)]
pub async fn piapi_log(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<PiapiEnvelope<DeliveryLog>>, TaskError> {
    Ok(Json(PiapiEnvelope::success(log(
        &app,
        Spelling::Piapi,
        &owner,
        &task_id,
    )?)))
}

/// Sends a delivery again now, with a new series of retries (PiAPI spelling).
#[utoipa::path(
    post, path = "/api/v1/task/{task_id}/webhooks/{delivery_id}/redeliver",
    operation_id = "piapiRedeliverWebhook", tag = "task", security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id."),
        ("delivery_id" = String, Path, description = "The delivery's id (`msg_…`).")),
    responses(
        (status = 202, description = "Pending again, due now.",
            body = PiapiEnvelope<DeliveryView>),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND` or `DELIVERY_NOT_FOUND`.",
            body = TaskErrorBody),
    ),
)]
pub async fn piapi_redeliver(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path((task_id, delivery_id)): Path<(String, String)>,
) -> Result<Response, TaskError> {
    let d = redeliver(&app, Spelling::Piapi, &owner, &task_id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(PiapiEnvelope::success(d))).into_response())
}

/// The task's webhook deliveries (Qubico spelling).
#[utoipa::path(
    get, path = "/v1/tasks/{task_id}/webhooks", operation_id = "qubicoTaskWebhooks",
    tag = "task", security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "Every delivery with its attempts, oldest first.",
            body = DeliveryLog),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND`.", body = TaskErrorBody),
    ),
)]
pub async fn qubico_log(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<DeliveryLog>, TaskError> {
    Ok(Json(log(&app, Spelling::Qubico, &owner, &task_id)?))
}

/// Sends a delivery again now, with a new series of retries (Qubico spelling).
#[utoipa::path(
    post, path = "/v1/tasks/{task_id}/webhooks/{delivery_id}/redeliver",
    operation_id = "qubicoRedeliverWebhook", tag = "task", security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id."),
        ("delivery_id" = String, Path, description = "The delivery's id (`msg_…`).")),
    responses(
        (status = 202, description = "Pending again, due now.", body = DeliveryView),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND` or `DELIVERY_NOT_FOUND`.",
            body = TaskErrorBody),
    ),
)]
pub async fn qubico_redeliver(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path((task_id, delivery_id)): Path<(String, String)>,
) -> Result<Response, TaskError> {
    let d = redeliver(&app, Spelling::Qubico, &owner, &task_id, &delivery_id).await?;
    Ok((StatusCode::ACCEPTED, Json(d)).into_response())
}
