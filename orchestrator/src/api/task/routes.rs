//! Create, read and cancel a task, in both spellings. Each handler translates: the body into a
//! draft ([`super::input`]), the job into the spelling's view ([`super::view`]), errors into
//! [`TaskError`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use protocol::{JobId, JobRecord, Source};

use super::error::TaskErrorBody;
use super::input::{self, TaskRequest};
use super::view::{self, PiapiEnvelope, PiapiTask, QubicoCreated, QubicoTask};
use super::{KeyOwner, Spelling, TaskError};
use crate::app::App;
use crate::error::OrchestratorError;

/// The task `task_id` if it is a task of this key; anything else is "no such task".
pub(super) fn owned(
    app: &App,
    spelling: Spelling,
    owner: &KeyOwner,
    task_id: &str,
) -> Result<JobRecord, TaskError> {
    let not_found = || TaskError::new(spelling, OrchestratorError::NotFound(task_id.to_string()));
    let id = JobId::parse(task_id.trim()).ok_or_else(not_found)?;
    match app.job(&id).map_err(|e| TaskError::new(spelling, e))? {
        Some(r) if r.source == Source::TaskApi && r.owner == owner.0 => Ok(r),
        _ => Err(not_found()),
    }
}

async fn create(
    app: &App,
    spelling: Spelling,
    owner: KeyOwner,
    body: &[u8],
) -> Result<JobRecord, TaskError> {
    let draft = input::draft(spelling, body, owner, app)?;
    let submitted = app
        .admit(draft)
        .await
        .map_err(|e| TaskError::new(spelling, e))?;
    Ok(submitted.record)
}

async fn cancel(
    app: &App,
    spelling: Spelling,
    owner: &KeyOwner,
    task_id: &str,
) -> Result<JobRecord, TaskError> {
    let record = owned(app, spelling, owner, task_id)?;
    app.cancel(&record.id)
        .await
        .map_err(|e| TaskError::new(spelling, e))
}

/// Creates a task (PiAPI).
#[utoipa::path(
    post, path = "/api/v1/task", operation_id = "piapiCreateTask", tag = "task",
    security(("api_key" = [])),
    request_body(content = TaskRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The task, `Pending`, in PiAPI's envelope.",
            body = PiapiEnvelope<PiapiTask>),
        (status = 400, description = "`MISSING_INPUT_PARAMETERS`, `INVALID_MODEL`, \
            `INVALID_TASK_TYPE`, `INVALID_JSON`, `INVALID_LYRICS`, `INVALID_AUDIO`, \
            `INVALID_URL`, `FETCH_FAILED`, `INVALID_WEBHOOK`…", body = TaskErrorBody),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 413, description = "The body is over the limit.", body = TaskErrorBody),
        (status = 429, description = "Over a per-key limit (`Retry-After`).", body = TaskErrorBody),
        (status = 503, description = "The queue is full or the model is loading \
            (`Retry-After`).", body = TaskErrorBody),
    ),
)]
pub async fn piapi_create(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    body: Bytes,
) -> Result<Json<PiapiEnvelope<PiapiTask>>, TaskError> {
    let record = create(&app, Spelling::Piapi, owner, &body).await?;
    Ok(Json(PiapiEnvelope::success(view::piapi_task(
        &record,
        app.public_url(),
    ))))
}

/// A task (PiAPI).
#[utoipa::path(
    get, path = "/api/v1/task/{task_id}", operation_id = "piapiGetTask", tag = "task",
    security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task in PiAPI's envelope; `output.audio_url` once \
            `Completed`.", body = PiapiEnvelope<PiapiTask>),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND` (also another key's task).",
            body = TaskErrorBody),
    ),
)]
pub async fn piapi_get(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<PiapiEnvelope<PiapiTask>>, TaskError> {
    let record = owned(&app, Spelling::Piapi, &owner, &task_id)?;
    Ok(Json(PiapiEnvelope::success(view::piapi_task(
        &record,
        app.public_url(),
    ))))
}

/// Cancels a pending or processing task (PiAPI).
#[utoipa::path(
    delete, path = "/api/v1/task/{task_id}", operation_id = "piapiCancelTask", tag = "task",
    security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task, now `Failed` with `TASK_CANCELLED`.",
            body = PiapiEnvelope<PiapiTask>),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND`.", body = TaskErrorBody),
        (status = 409, description = "`TASK_NOT_CANCELLABLE`: it has finished.",
            body = TaskErrorBody),
    ),
)]
pub async fn piapi_cancel(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<PiapiEnvelope<PiapiTask>>, TaskError> {
    let record = cancel(&app, Spelling::Piapi, &owner, &task_id).await?;
    Ok(Json(PiapiEnvelope::success(view::piapi_task(
        &record,
        app.public_url(),
    ))))
}

/// Creates a task (Qubico).
#[utoipa::path(
    post, path = "/v1/inference", operation_id = "qubicoCreateTask", tag = "task",
    security(("api_key" = [])),
    request_body(content = TaskRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: `pending`, with the estimated seconds until \
            done.", body = QubicoCreated),
        (status = 400, description = "`MISSING_INPUT_PARAMETERS` and the other input errors.",
            body = TaskErrorBody),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 413, description = "The body is over the limit.", body = TaskErrorBody),
        (status = 429, description = "Over a per-key limit (`Retry-After`).", body = TaskErrorBody),
        (status = 503, description = "The queue is full or the model is loading \
            (`Retry-After`).", body = TaskErrorBody),
    ),
)]
pub async fn qubico_create(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    body: Bytes,
) -> Result<Response, TaskError> {
    let record = create(&app, Spelling::Qubico, owner, &body).await?;
    let ahead = app
        .queue_position(&record.id)
        .await
        .ok()
        .flatten()
        .unwrap_or(0);
    let estimate =
        app.lifecycle()
            .pace()
            .queued_remaining(record.spec.seconds, ahead, app.nodes().live());
    Ok((
        StatusCode::ACCEPTED,
        Json(view::qubico_created(&record, estimate)),
    )
        .into_response())
}

/// A task (Qubico).
#[utoipa::path(
    get, path = "/v1/tasks/{task_id}", operation_id = "qubicoGetTask", tag = "task",
    security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task; `results` once `completed`.", body = QubicoTask),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND`.", body = TaskErrorBody),
    ),
)]
pub async fn qubico_get(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<QubicoTask>, TaskError> {
    let record = owned(&app, Spelling::Qubico, &owner, &task_id)?;
    Ok(Json(view::qubico_task(&record, app.public_url())))
}

/// Cancels a pending or processing task (Qubico).
#[utoipa::path(
    delete, path = "/v1/tasks/{task_id}", operation_id = "qubicoCancelTask", tag = "task",
    security(("api_key" = [])),
    params(("task_id" = String, Path, description = "The task's id.")),
    responses(
        (status = 200, description = "The task, now `failed` with `TASK_CANCELLED`.",
            body = QubicoTask),
        (status = 401, description = "No or an unknown `x-api-key`.", body = TaskErrorBody),
        (status = 404, description = "`TASK_NOT_FOUND`.", body = TaskErrorBody),
        (status = 409, description = "`TASK_NOT_CANCELLABLE`: it has finished.",
            body = TaskErrorBody),
    ),
)]
pub async fn qubico_cancel(
    State(app): State<App>,
    Extension(owner): Extension<KeyOwner>,
    Path(task_id): Path<String>,
) -> Result<Json<QubicoTask>, TaskError> {
    let record = cancel(&app, Spelling::Qubico, &owner, &task_id).await?;
    Ok(Json(view::qubico_task(&record, app.public_url())))
}
