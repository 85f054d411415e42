//! The webhook dispatcher: the one task that turns outbox events into deliveries and sends them
//! (see the module above for the guarantees).
//!
//! It wakes on every event of the in-process hub (a job with a cursor gets its new status
//! changes turned into deliveries; an expired job has its webhook entries removed), when an
//! attempt finishes, when a redelivery is asked for, and when the next pending delivery is due.
//! At start, and whenever the hub's firehose lagged, it sweeps every unfinished job from its
//! cursor, so a crash or a missed event only delays a delivery. Sends run concurrently (at most
//! `webhooks.max_in_flight`, one per job at a time), each through the outbound guard.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{JobEvent, JobEventKind, JobId, JobRecord, JobState};
use rand::RngExt;
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::store::Trees;
use super::{sign, Attempt, Delivery, DeliveryState, Payload, Target, WebhookStoreError, Webhooks};
use crate::config::{FetchConfig, WebhookConfig};
use crate::jobs::Hub;
use crate::outbound::{self, FetchPolicy};
use crate::store::{now_ms, JobStore};

/// Renders a job as the `data` of a delivery: the GET body of the API the webhook came through.
pub type Render = Arc<dyn Fn(Payload, &JobRecord) -> Value + Send + Sync>;

/// What the dispatcher needs.
pub struct Dispatcher {
    pub webhooks: Webhooks,
    pub store: JobStore,
    pub hub: Hub,
    pub render: Render,
    pub config: WebhookConfig,
    pub fetch: FetchConfig,
}

/// The outcome of one send.
struct Sent {
    job: JobId,
    seq: u64,
    attempt: Attempt,
}

impl Dispatcher {
    pub fn spawn(self, tracker: &TaskTracker, cancel: CancellationToken) {
        tracker.spawn(async move {
            if let Err(e) = self.run(cancel).await {
                tracing::error!(error = %e, "the webhook dispatcher stopped");
            }
        });
    }

    fn trees(&self) -> &Trees {
        &self.webhooks.store
    }

    async fn run(self, cancel: CancellationToken) -> Result<(), WebhookStoreError> {
        let mut events = self.hub.firehose();
        self.sweep(true).await;
        let mut sending: JoinSet<Sent> = JoinSet::new();
        let mut busy: HashSet<JobId> = HashSet::new();
        loop {
            let next = self.send_due(&mut sending, &mut busy)?;
            let wait = next.map_or(Duration::from_secs(60), |ms| {
                Duration::from_millis(ms.saturating_sub(now_ms()))
            });
            tokio::select! {
                _ = cancel.cancelled() => break,
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&event).await,
                    Err(RecvError::Lagged(_)) => self.sweep(false).await,
                    Err(RecvError::Closed) => break,
                },
                Some(done) = sending.join_next(), if !sending.is_empty() => {
                    if let Ok(sent) = done {
                        busy.remove(&sent.job);
                        if let Err(e) = self.settle(sent).await {
                            tracing::error!(error = %e, "cannot record a webhook attempt");
                        }
                    }
                }
                _ = self.webhooks.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        // Attempts cut off here are made again after the restart (their deliveries are still
        // pending).
        sending.abort_all();
        Ok(())
    }

    /// Turns what every unfinished job has in its outbox into deliveries; at start also drops
    /// the webhooks of jobs that no longer exist.
    async fn sweep(&self, at_start: bool) {
        let jobs = match self.trees().unfinished() {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the webhook cursors");
                return;
            }
        };
        for id in jobs {
            self.collect(&id).await;
        }
        if at_start {
            for id in self.trees().with_targets().unwrap_or_default() {
                if matches!(self.store.get(&id), Ok(None)) {
                    self.forget(&id).await;
                }
            }
        }
    }

    async fn on_event(&self, event: &JobEvent) {
        if event.kind == JobEventKind::Expired {
            if matches!(self.trees().target(&event.job), Ok(Some(_))) {
                self.forget(&event.job).await;
            }
        } else if matches!(self.trees().cursor(&event.job), Ok(Some(_))) {
            self.collect(&event.job).await;
        }
    }

    async fn forget(&self, id: &JobId) {
        if let Err(e) = self.trees().forget(id).await {
            tracing::warn!(job = %id, error = %e, "cannot remove the webhook of a deleted job");
        }
    }

    /// Makes deliveries of the status changes of `id` after its cursor.
    async fn collect(&self, id: &JobId) {
        if let Err(e) = self.try_collect(id).await {
            tracing::error!(job = %id, error = %e, "cannot queue webhook deliveries");
        }
    }

    async fn try_collect(&self, id: &JobId) -> Result<(), WebhookStoreError> {
        let Some(cursor) = self.trees().cursor(id)? else {
            return Ok(());
        };
        let (Some(record), Some(target)) =
            (self.store.get(id).ok().flatten(), self.trees().target(id)?)
        else {
            self.trees().forget(id).await?;
            return Ok(());
        };
        let events = match self.store.events_after(id, cursor) {
            Ok(events) => events,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot read the outbox for webhooks");
                return Ok(());
            }
        };
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        let finished = events.iter().any(|e| e.kind.is_final());
        let now = now_ms();
        let new: Vec<Delivery> = events
            .iter()
            .filter(|e| is_status_change(e.kind))
            .map(|e| {
                let body = json!({
                    "timestamp": e.at_ms / 1000,
                    "data": (self.render)(target.payload, &as_of(&record, e)),
                });
                Delivery {
                    id: Delivery::id_of(id, e.seq),
                    job: id.clone(),
                    seq: e.seq,
                    event: e.kind.as_str().to_string(),
                    body: body.to_string(),
                    created_ms: now,
                    state: DeliveryState::Pending,
                    next_ms: Some(now),
                    cycle_started_ms: now,
                    attempts: Vec::new(),
                }
            })
            .collect();
        self.trees().enqueue(id, last, finished, &new).await
    }

    /// Starts every due head delivery that may go; returns when the next one is due.
    fn send_due(
        &self,
        sending: &mut JoinSet<Sent>,
        busy: &mut HashSet<JobId>,
    ) -> Result<Option<u64>, WebhookStoreError> {
        let now = now_ms();
        let mut next: Option<u64> = None;
        for (job, seq, due) in self.trees().heads()? {
            if busy.contains(&job) {
                continue;
            }
            if due > now || sending.len() >= self.config.max_in_flight.max(1) {
                next = Some(next.map_or(due.max(now), |n: u64| n.min(due.max(now))));
                continue;
            }
            let (Some(delivery), Some(target)) = (
                self.trees().delivery(&job, seq)?,
                self.trees().target(&job)?,
            ) else {
                continue;
            };
            busy.insert(job.clone());
            let policy = FetchPolicy::from_config(&self.fetch, 0);
            let timeout = Duration::from_secs(self.config.timeout_seconds.max(1));
            sending.spawn(async move {
                let attempt = send(&target, &delivery, &policy, timeout).await;
                Sent { job, seq, attempt }
            });
        }
        Ok(next)
    }

    /// Records an attempt: delivered, due again after a back-off, or given up.
    async fn settle(&self, sent: Sent) -> Result<(), WebhookStoreError> {
        let Some(mut delivery) = self.trees().delivery(&sent.job, sent.seq)? else {
            return Ok(()); // the job was deleted meanwhile
        };
        let now = now_ms();
        // The window is judged at the attempt's end, on the clock its start was read from, so
        // the delivery log shows why it was the last: `at + duration_ms` is past the window.
        let ended_ms = sent.attempt.at_ms + sent.attempt.duration_ms;
        let ok = sent.attempt.error.is_none();
        match &sent.attempt.error {
            None => tracing::debug!(job = %sent.job, delivery = %delivery.id, "webhook delivered"),
            Some(e) => {
                tracing::info!(job = %sent.job, delivery = %delivery.id, error = %e, "webhook attempt failed")
            }
        }
        delivery.attempts.push(sent.attempt);
        if ok {
            delivery.state = DeliveryState::Delivered;
            delivery.next_ms = None;
        } else if ended_ms.saturating_sub(delivery.cycle_started_ms)
            >= self.config.retry_for_seconds.saturating_mul(1000)
        {
            tracing::warn!(job = %sent.job, delivery = %delivery.id, attempts = delivery.attempts.len(), "webhook given up");
            delivery.state = DeliveryState::Failed;
            delivery.next_ms = None;
        } else {
            let failures = delivery
                .attempts
                .iter()
                .rev()
                .take_while(|a| a.at_ms >= delivery.cycle_started_ms && a.error.is_some())
                .count();
            delivery.next_ms = Some(now + backoff_ms(&self.config, failures));
        }
        self.trees().record(&delivery).await
    }
}

/// Kinds that change what a client sees as the task's status.
fn is_status_change(kind: JobEventKind) -> bool {
    !matches!(kind, JobEventKind::Progress | JobEventKind::Expired)
}

/// The record as it was right after event `e` (the state, attempt, error and result of then).
fn as_of(record: &JobRecord, e: &JobEvent) -> JobRecord {
    let mut r = record.clone();
    r.state = e.state;
    r.attempt = e.attempt;
    r.error = e.error.clone();
    if e.state != JobState::Succeeded {
        r.result = None;
    }
    if !e.state.is_terminal() {
        r.finished_ms = None;
    }
    if e.state == JobState::Queued {
        r.started_ms = None;
        r.progress = None;
    }
    r
}

/// The wait before retry number `failures` (1 = after the first failure): doubling from
/// `first_retry_ms` up to `max_retry_seconds`, with jitter (a random point in its second half,
/// so receivers that failed together are not hit together again).
fn backoff_ms(config: &WebhookConfig, failures: usize) -> u64 {
    let exp = failures.saturating_sub(1).min(30) as u32;
    let full = config
        .first_retry_ms
        .max(1)
        .saturating_mul(1u64 << exp)
        .min(config.max_retry_seconds.max(1).saturating_mul(1000));
    let half = full / 2;
    half + rand::rng().random_range(0..=full - half)
}

/// One signed POST of `delivery` to the target, through the outbound guard.
async fn send(
    target: &Target,
    delivery: &Delivery,
    policy: &FetchPolicy,
    timeout: Duration,
) -> Attempt {
    let started = Instant::now();
    let at_ms = now_ms();
    let result = async {
        let (url, addr) = outbound::check_raw(&target.endpoint, policy)
            .await
            .map_err(|e| (None, e.to_string()))?;
        let client =
            outbound::pinned_client(&url, addr, timeout).map_err(|e| (None, e.to_string()))?;
        let timestamp = at_ms / 1000;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .header("x-webhook-secret", &target.secret)
            .header("webhook-id", &delivery.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign::signature(
                    &target.secret,
                    &delivery.id,
                    timestamp,
                    delivery.body.as_bytes(),
                ),
            )
            .body(delivery.body.clone())
            .send()
            .await
            .map_err(|e| (None, format!("no answer ({})", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(status.as_u16())
        } else {
            Err((
                Some(status.as_u16()),
                format!("the endpoint answered {status}"),
            ))
        }
    }
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(status) => Attempt {
            at_ms,
            status: Some(status),
            error: None,
            duration_ms,
        },
        Err((status, error)) => Attempt {
            at_ms,
            status,
            error: Some(error),
            duration_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let config = WebhookConfig {
            first_retry_ms: 1000,
            max_retry_seconds: 8,
            ..WebhookConfig::default()
        };
        for (failures, full) in [(1, 1000), (2, 2000), (3, 4000), (4, 8000), (9, 8000)] {
            for _ in 0..50 {
                let d = backoff_ms(&config, failures);
                assert!((full / 2..=full).contains(&d), "{failures}: {d}");
            }
        }
    }
}
