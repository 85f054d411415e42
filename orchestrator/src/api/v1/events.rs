//! `GET /api/v1/jobs/{id}/events`: the job's outbox as Server-Sent Events. `id:` is the
//! event's sequence number, `event:` its kind, `data:` the [`protocol::JobEvent`] as JSON.
//! `Last-Event-ID` (or `?after=N`) resumes after that number, across restarts too; a
//! keep-alive comment is sent every 15 s; the stream ends after the final event. A
//! `succeeded` event's result files carry the `url` they are downloaded from.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use protocol::JobEvent;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::api::error::{ApiError, ErrorBody};
use crate::error::{Field, OrchestratorError};
use crate::jobs::Subscription;
use crate::service::App;

/// Where to resume.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventsQuery {
    /// Send the events after this sequence number (default 0: all); `Last-Event-ID` wins.
    after: Option<u64>,
}

/// The job's events, as Server-Sent Events.
///
/// `id:` is the event's sequence number, `event:` its kind, `data:` the event as JSON
/// (`JobEvent`). A keep-alive comment comes every 15 s; the stream ends after the final event
/// (`succeeded`, `failed`, `cancelled`, `expired`). A job deleted later simply ends its stream.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}/events",
    operation_id = "jobEvents",
    tag = "jobs",
    security(("bearer" = []), ("api_key" = [])),
    params(
        ("id" = String, Path, description = "The job's id."),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false,
            description = "Resume after this sequence number (what a reconnecting \
                `EventSource` sends)."),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "The event stream; each `data:` is one `JobEvent`, and \
            each of its `result.files` also has the `url` this API serves it at.",
            body = JobEvent, content_type = "text/event-stream"),
        (status = 400, description = "`invalid_field`: a `Last-Event-ID` or `after` that is \
            not a sequence number.", body = ErrorBody),
        (status = 401, description = "API keys are configured and none valid was given.",
            body = ErrorBody),
        (status = 404, description = "`not_found`: no such job.", body = ErrorBody),
        (status = 500, description = "`internal`.", body = ErrorBody),
    ),
)]
pub(crate) async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(super::jobs::query_error)?;
    let id = super::jobs::parse_id(&id)?;
    let after = match headers.get("last-event-id") {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                OrchestratorError::invalid(
                    Field::Named("Last-Event-ID".into()),
                    "expected an event sequence number",
                )
            })?,
        None => query.after.unwrap_or(0),
    };
    // An unknown job is a 404 up front; a job deleted later simply ends its stream.
    if app.job(&id)?.is_none() {
        return Err(OrchestratorError::NotFound(id.to_string()).into());
    }
    let subscription = app.subscribe(&id, after);
    Ok(Sse::new(sse_stream(subscription))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

fn sse_stream(subscription: Subscription) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold(Some(subscription), |state| async move {
        let mut subscription = state?;
        match subscription.next().await {
            Ok(Some(event)) => {
                let sse = Event::default()
                    .id(event.seq.to_string())
                    .event(event.kind.as_str())
                    .json_data(with_urls(&event))
                    .unwrap_or_else(|_| Event::default().comment("unencodable event"));
                Some((Ok(sse), Some(subscription)))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read job events");
                None
            }
        }
    })
}

/// The event as JSON, each result file with the `url` this API serves it at.
fn with_urls(event: &protocol::JobEvent) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if let Some(files) = value
        .get_mut("result")
        .and_then(|r| r.get_mut("files"))
        .and_then(|f| f.as_array_mut())
    {
        for file in files {
            let (Some(variant), Some(format)) = (
                file.get("variant").and_then(|v| v.as_u64()),
                file.get("format")
                    .and_then(|f| f.as_str())
                    .and_then(protocol::AudioFormat::parse),
            ) else {
                continue;
            };
            file["url"] = serde_json::json!(format!(
                "/api/v1/jobs/{}/audio/{variant}?format={}",
                event.job,
                format.extension()
            ));
        }
    }
    value
}
