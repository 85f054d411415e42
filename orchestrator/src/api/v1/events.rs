//! `GET /api/v1/jobs/{id}/events`: the job's outbox as Server-Sent Events. `id:` is the
//! event's sequence number, `event:` its kind, `data:` the [`protocol::JobEvent`] as JSON.
//! `Last-Event-ID` (or `?after=N`) resumes after that number, across restarts too; a
//! keep-alive comment is sent every 15 s; the stream ends after the final event.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::error::{Field, OrchestratorError};
use crate::jobs::Subscription;
use crate::service::App;

#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    after: Option<u64>,
}

pub(super) async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
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
                    .json_data(&event)
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
