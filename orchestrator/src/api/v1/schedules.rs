//! `/api/v1/schedules`: cron schedules of batch generation (`docs/schedules.md`). The
//! handlers translate to the scheduler task's commands ([`crate::schedules::SchedulerHandle`]);
//! the scheduler decides. A schedule made here belongs to the caller (its jobs' owner) and may
//! give lyrics only as text; the config file's schedules can be read, paused, resumed and run,
//! not changed or deleted (409).
//!
//! With API keys, a key sees and changes only the schedules it made, and the config file's: a
//! schedule of another key is answered 404, as if it did not exist (names do not leak). Without
//! keys every caller is `anonymous` and sees every schedule.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use utoipa::IntoParams;

use super::auth::Caller;
use super::jobs::query_error;
use crate::api::error::{ApiError, ErrorBody};
use crate::app::App;
use crate::error::{ErrorCode, Field, OrchestratorError};
use crate::schedules::{Access, Command, Fired, ScheduleError, ScheduleSpec, ScheduleView};

/// How many coming fire times each schedule lists.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// 0 to 100 (default 5).
    pub next: Option<usize>,
}

fn next_of(q: Result<Query<NextQuery>, QueryRejection>) -> Result<usize, OrchestratorError> {
    let Query(q) = q.map_err(query_error)?;
    let next = q.next.unwrap_or(5);
    if next > 100 {
        return Err(OrchestratorError::invalid(
            Field::Named("next".into()),
            "at most 100",
        ));
    }
    Ok(next)
}

/// The one mapping of scheduler errors to this API's errors.
fn api_error(e: ScheduleError) -> ApiError {
    ApiError(match e {
        ScheduleError::Invalid(m) => OrchestratorError::coded(
            ErrorCode::InvalidSchedule,
            Field::Named("schedule".into()),
            m,
        ),
        ScheduleError::NotFound(name) => OrchestratorError::NotFound(format!("schedule {name}")),
        e @ (ScheduleError::Exists(_) | ScheduleError::ReadOnly(_)) => OrchestratorError::coded(
            ErrorCode::ScheduleConflict,
            Field::Named("name".into()),
            e.to_string(),
        ),
        ScheduleError::Job(e) => e,
        ScheduleError::Stopped => OrchestratorError::NotReady("the service is stopping".into()),
        e @ ScheduleError::Store(_) => OrchestratorError::Io {
            context: "schedules".into(),
            source: std::io::Error::other(e.to_string()),
        },
    })
}

/// Which schedules `caller` may see and change.
fn access(caller: &Caller) -> Access {
    if caller.open {
        Access::All
    } else {
        Access::Owner(caller.owner.to_string())
    }
}

/// The schedule in `body`, owned by `caller`; its webhook, if any, passes the same check as a
/// job's (`invalid_webhook` naming `webhook.endpoint` or `webhook.secret`), so an endpoint the
/// server would refuse to call is refused now rather than at every fire.
async fn parse(app: &App, body: &[u8], caller: &Caller) -> Result<ScheduleSpec, ApiError> {
    let mut spec: ScheduleSpec = serde_json::from_slice(body).map_err(|e| {
        ApiError(OrchestratorError::invalid(
            Field::Body,
            format!("not a valid schedule: {e}"),
        ))
    })?;
    spec.owner = Some(caller.owner.to_string());
    if let Some(hook) = &spec.webhook {
        app.check_webhook(&hook.target()).await?;
    }
    Ok(spec)
}

/// Every schedule, by name.
#[utoipa::path(
    get, path = "/api/v1/schedules", operation_id = "listSchedules", tag = "schedules",
    security(("bearer" = []), ("api_key" = [])), params(NextQuery),
    responses(
        (status = 200, description = "Each schedule with its state and next fire times.",
            body = [ScheduleView]),
        (status = 400, description = "A bad query.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
    ),
)]
pub async fn list(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    q: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Json<Vec<ScheduleView>>, ApiError> {
    let next = next_of(q)?;
    let access = access(&caller);
    let views = app
        .schedules()
        .ask(|reply| Command::List {
            next,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok(Json(views))
}

/// Creates a schedule.
#[utoipa::path(
    post, path = "/api/v1/schedules", operation_id = "createSchedule", tag = "schedules",
    security(("bearer" = []), ("api_key" = [])),
    request_body(content = ScheduleSpec, content_type = "application/json"),
    responses(
        (status = 201, description = "The schedule; its jobs belong to the caller.",
            body = ScheduleView),
        (status = 400, description = "`invalid_schedule` (the message names the field), \
            `invalid_webhook` (a webhook the server would not call; `field` names it) or a \
            body that is not a schedule.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 409, description = "`schedule_conflict`: the name is taken.", body = ErrorBody),
    ),
)]
pub async fn create(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let spec = parse(&app, &body, &caller).await?;
    let view = app
        .schedules()
        .ask(|reply| Command::Create { spec, reply })
        .await
        .map_err(api_error)?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// A schedule.
#[utoipa::path(
    get, path = "/api/v1/schedules/{name}", operation_id = "getSchedule", tag = "schedules",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name."), NextQuery),
    responses(
        (status = 200, description = "The schedule.", body = ScheduleView),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ),
)]
pub async fn get(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    q: Result<Query<NextQuery>, QueryRejection>,
) -> Result<Json<ScheduleView>, ApiError> {
    let next = next_of(q)?;
    let access = access(&caller);
    let view = app
        .schedules()
        .ask(|reply| Command::Get {
            name,
            next,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok(Json(view))
}

/// Replaces a schedule made through the API (its fire history stays).
#[utoipa::path(
    put, path = "/api/v1/schedules/{name}", operation_id = "updateSchedule", tag = "schedules",
    security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name.")),
    request_body(content = ScheduleSpec, content_type = "application/json"),
    responses(
        (status = 200, description = "The schedule as changed.", body = ScheduleView),
        (status = 400, description = "`invalid_schedule` or `invalid_webhook`.",
            body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 409, description = "`schedule_conflict`: defined in the config file.",
            body = ErrorBody),
    ),
)]
pub async fn update(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<ScheduleView>, ApiError> {
    let spec = parse(&app, &body, &caller).await?;
    let access = access(&caller);
    let view = app
        .schedules()
        .ask(|reply| Command::Update {
            name,
            spec,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok(Json(view))
}

/// Deletes a schedule made through the API (its jobs and results stay).
#[utoipa::path(
    delete, path = "/api/v1/schedules/{name}", operation_id = "deleteSchedule",
    tag = "schedules", security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 204, description = "Deleted."),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
        (status = 409, description = "`schedule_conflict`: defined in the config file.",
            body = ErrorBody),
    ),
)]
pub async fn delete(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let access = access(&caller);
    app.schedules()
        .ask(|reply| Command::Delete {
            name,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_paused(
    app: &App,
    caller: &Caller,
    name: String,
    paused: bool,
) -> Result<Json<ScheduleView>, ApiError> {
    let access = access(caller);
    let view = app
        .schedules()
        .ask(|reply| Command::Pause {
            name,
            paused,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok(Json(view))
}

/// Pauses a schedule: no fire until it is resumed.
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/pause", operation_id = "pauseSchedule",
    tag = "schedules", security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 200, description = "The schedule, paused.", body = ScheduleView),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ),
)]
pub async fn pause(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_paused(&app, &caller, name, true).await
}

/// Resumes a schedule from now (fire times that passed while it was paused do not fire).
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/resume", operation_id = "resumeSchedule",
    tag = "schedules", security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 200, description = "The schedule, running.", body = ScheduleView),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ),
)]
pub async fn resume(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<ScheduleView>, ApiError> {
    set_paused(&app, &caller, name, false).await
}

/// Fires a schedule now (paused or not), with now as its fire time.
#[utoipa::path(
    post, path = "/api/v1/schedules/{name}/run", operation_id = "runSchedule",
    tag = "schedules", security(("bearer" = []), ("api_key" = [])),
    params(("name" = String, Path, description = "The schedule's name.")),
    responses(
        (status = 202, description = "Fired: the jobs created so far and the fire's folder.",
            body = Fired),
        (status = 400, description = "`invalid_schedule`: it is already firing.", body = ErrorBody),
        (status = 401, description = "`unauthorized`.", body = ErrorBody),
        (status = 404, description = "`not_found`.", body = ErrorBody),
    ),
)]
pub async fn run(
    State(app): State<App>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let access = access(&caller);
    let fired = app
        .schedules()
        .ask(|reply| Command::Run {
            name,
            access,
            reply,
        })
        .await
        .map_err(api_error)?;
    Ok((StatusCode::ACCEPTED, Json(fired)).into_response())
}
