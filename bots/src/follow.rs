//! Following one job to its end, the same for every chat platform: the job's event stream is
//! read from the last sequence number seen (`Last-Event-ID`), and when the orchestrator is
//! lost (connection refused or broken, a restart, a 5xx) the follower reconnects with
//! exponential back-off and resumes after that number, so no event is lost or seen twice. What
//! the chat should show is published on a `watch` channel ([`Status`]): a platform's progress
//! editor reads it at its own pace, which is what keeps edits within the platform's rate
//! limits. The outcome is returned once, when the job ends.
//!
//! A restarted bot finds its work again on the server ([`jobs_to_resume`]): the jobs still
//! queued or running, and those that ended while it was down, which it knows by the `d=0` it
//! keeps in their `client_data` until it has posted their outcome ([`mark_delivered`]).

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, Job, JobEvent};
use crate::request::ClientData;

/// What a chat shows about a job that has not ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// Waiting; 0 = next.
    Queued { position: Option<usize> },
    /// Being made.
    Running {
        stage: String,
        step: u32,
        total: u32,
        /// Of the whole generation, never lower than an earlier value.
        percent: f32,
        eta_seconds: Option<f64>,
    },
}

impl Status {
    /// What `job` shows before its first event arrives.
    pub fn of(job: &Job) -> Status {
        match &job.progress {
            Some(p) if job.state == "running" => Status::Running {
                stage: p.stage.clone(),
                step: p.step,
                total: p.total,
                percent: p.percent,
                eta_seconds: p.eta_seconds,
            },
            _ => Status::Queued {
                position: job.queue_position,
            },
        }
    }

    /// The share done, 0 to 100, for ordering updates.
    pub fn percent(&self) -> f32 {
        match self {
            Status::Queued { .. } => 0.0,
            Status::Running { percent, .. } => *percent,
        }
    }
}

/// How a job ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Done; the job with its result files.
    Succeeded(Box<Job>),
    Failed(String),
    Cancelled,
    /// Deleted by the server (retention) or unknown to it.
    Gone,
    /// The follower was told to stop (shutdown) before the job ended.
    Stopped,
}

/// Back-off between reconnects: from `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(250),
            max: Duration::from_secs(15),
        }
    }
}

impl Backoff {
    /// The wait before reconnect number `failures` (1-based), with up to a quarter of jitter.
    pub fn delay(&self, failures: u32) -> Duration {
        let base = self
            .first
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(self.max);
        let jitter = base.as_millis() as u64 / 4;
        let jitter = if jitter > 0 {
            rand::random::<u64>() % jitter
        } else {
            0
        };
        base + Duration::from_millis(jitter)
    }
}

/// The `client_data` field that says whether the bot still owes the chat the job's outcome:
/// `0` when the job is created, `1` once the song (or why there is none) was posted
/// ([`mark_delivered`]). A restarted bot delivers the ended jobs still at `0`.
pub const DELIVERED: &str = "d";

/// How far back a restarted bot looks for jobs that ended while it was down (by creation
/// time; older ones are not delivered late).
pub const RESUME_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Most ended jobs of one state a restarted bot looks at.
const RESUME_MAX_ENDED: usize = 10_000;

/// What a restarted bot follows again: the queued and running jobs on the server, and the
/// ended ones from the last [`RESUME_WINDOW`] whose outcome it has not posted (a follow of an
/// ended job replays its events and ends at once, so it is delivered like any other). Asked
/// for again with back-off while the server is unreachable; `None` when stopped first.
pub async fn jobs_to_resume(client: &Client, stop: &CancellationToken) -> Option<Vec<Job>> {
    let backoff = Backoff::default();
    let mut failures = 0;
    let window_ms = i64::try_from(RESUME_WINDOW.as_millis()).unwrap_or(i64::MAX);
    loop {
        let since = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(window_ms);
        let ended = |state| client.list_since(state, since, RESUME_MAX_ENDED);
        match tokio::try_join!(
            client.list_all("queued", 10_000),
            client.list_all("running", 10_000),
            ended("succeeded"),
            ended("failed"),
            ended("cancelled"),
        ) {
            Ok((queued, running, succeeded, failed, cancelled)) => {
                let owed = succeeded
                    .into_iter()
                    .chain(failed)
                    .chain(cancelled)
                    .filter(undelivered);
                return Some(queued.into_iter().chain(running).chain(owed).collect());
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot list the jobs to resume; retrying");
                tokio::select! {
                    () = tokio::time::sleep(backoff.delay(failures)) => {}
                    () = stop.cancelled() => return None,
                }
            }
        }
    }
}

/// Whether `job` is a bot's job whose outcome was not posted yet.
fn undelivered(job: &Job) -> bool {
    job.client_data
        .as_deref()
        .and_then(ClientData::parse)
        .is_some_and(|d| d.fields.get(DELIVERED).is_some_and(|v| v == "0"))
}

/// Notes on the server that the outcome of `job` was posted (its `client_data` gets
/// `d=1`), retrying a few times while the server is unreachable. A failure is logged: at
/// worst a restarted bot posts the outcome again.
pub async fn mark_delivered(client: &Client, job: &Job, stop: &CancellationToken) {
    let Some(mut data) = job.client_data.as_deref().and_then(ClientData::parse) else {
        return;
    };
    if data.fields.get(DELIVERED).map(String::as_str) != Some("0") {
        return;
    }
    data.fields.insert(DELIVERED.into(), "1".into());
    let text = data.encode();
    let backoff = Backoff::default();
    for failures in 1..=5 {
        match client.set_client_data(&job.id, &text).await {
            Ok(_) => return,
            Err(e) if e.is_transient() && failures < 5 => {
                tracing::debug!(job = %job.id, error = %e, "cannot note the delivery yet; retrying");
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot note on the server that the song was delivered");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(failures)) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// Follows job `id` from event `after` until it ends, publishing its status on `status`.
pub async fn follow(
    client: &Client,
    id: &str,
    mut after: u64,
    status: &watch::Sender<Status>,
    backoff: Backoff,
    stop: &CancellationToken,
) -> Outcome {
    let mut failures = 0u32;
    loop {
        let attempt = async {
            let mut stream = client.events(id, after).await?;
            loop {
                match stream.next().await? {
                    None => return Ok::<_, ClientError>(None),
                    Some(event) => {
                        after = event.seq;
                        failures = 0;
                        if event.is_final() {
                            return Ok(Some(event));
                        }
                        publish(status, &event);
                    }
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            () = stop.cancelled() => return Outcome::Stopped,
        };
        match result {
            Ok(Some(event)) => return finish(client, id, &event, backoff, stop).await,
            // The stream ended without a final event (a server going away): resume.
            Ok(None) => {}
            Err(ClientError::Api { status: 404, .. }) => return Outcome::Gone,
            Err(e) if e.is_transient() => {
                tracing::debug!(job = id, error = %e, "event stream lost; reconnecting");
            }
            Err(e) => {
                tracing::warn!(job = id, error = %e, "cannot follow the job");
                return Outcome::Failed(e.to_string());
            }
        }
        failures += 1;
        tokio::select! {
            () = tokio::time::sleep(backoff.delay(failures)) => {}
            () = stop.cancelled() => return Outcome::Stopped,
        }
    }
}

/// The outcome of a final event; a success fetches the job for its files (retrying while the
/// orchestrator is unreachable).
async fn finish(
    client: &Client,
    id: &str,
    event: &JobEvent,
    backoff: Backoff,
    stop: &CancellationToken,
) -> Outcome {
    match event.kind.as_str() {
        "succeeded" => {
            let mut failures = 0;
            loop {
                match client.job(id).await {
                    Ok(job) => return Outcome::Succeeded(Box::new(job)),
                    Err(ClientError::Api { status: 404, .. }) => return Outcome::Gone,
                    Err(e) if e.is_transient() => failures += 1,
                    Err(e) => return Outcome::Failed(e.to_string()),
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.delay(failures)) => {}
                    () = stop.cancelled() => return Outcome::Stopped,
                }
            }
        }
        "failed" => Outcome::Failed(
            event
                .error
                .clone()
                .unwrap_or_else(|| "the song could not be made".into()),
        ),
        "cancelled" => Outcome::Cancelled,
        _ => Outcome::Gone,
    }
}

/// Publishes what `event` changes; progress never goes backwards (a retry starts its steps
/// again, the chat keeps the highest share reached).
fn publish(status: &watch::Sender<Status>, event: &JobEvent) {
    let next = match event.kind.as_str() {
        "queued" | "requeued" | "retrying" => {
            if status.borrow().percent() > 0.0 {
                return;
            }
            Status::Queued {
                position: event.queue_position,
            }
        }
        "started" | "progress" => {
            let percent = event.percent.unwrap_or(0.0).max(status.borrow().percent());
            Status::Running {
                stage: event.stage.clone().unwrap_or_else(|| "starting".into()),
                step: event.step.unwrap_or(0),
                total: event.total.unwrap_or(0),
                percent,
                eta_seconds: event.eta_seconds,
            }
        }
        _ => return,
    };
    status.send_if_modified(|current| {
        if *current == next {
            false
        } else {
            *current = next;
            true
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, percent: Option<f32>) -> JobEvent {
        JobEvent {
            seq: 1,
            kind: kind.into(),
            state: "running".into(),
            stage: Some("sampling".into()),
            step: Some(1),
            total: Some(4),
            percent,
            eta_seconds: None,
            queue_position: Some(2),
            error: None,
        }
    }

    #[test]
    fn progress_never_goes_backwards() {
        let (tx, rx) = watch::channel(Status::Queued { position: None });
        publish(&tx, &event("queued", None));
        assert_eq!(*rx.borrow(), Status::Queued { position: Some(2) });
        publish(&tx, &event("progress", Some(50.0)));
        assert_eq!(rx.borrow().percent(), 50.0);
        publish(&tx, &event("retrying", None));
        publish(&tx, &event("progress", Some(10.0)));
        assert_eq!(rx.borrow().percent(), 50.0, "kept at the highest share");
    }

    #[test]
    fn backoff_doubles_up_to_its_limit() {
        let b = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let d1 = b.delay(1);
        assert!(d1 >= Duration::from_millis(100) && d1 < Duration::from_millis(125));
        let d3 = b.delay(3);
        assert!(d3 >= Duration::from_millis(400) && d3 < Duration::from_millis(500));
        let d30 = b.delay(30);
        assert!(d30 >= Duration::from_secs(1) && d30 < Duration::from_millis(1250));
    }
}
