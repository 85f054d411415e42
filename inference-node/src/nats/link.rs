//! The NATS [`NodeLink`]. For each job it:
//!
//! 1. takes one message from the shared consumer (one-message pull) and checks the job's last
//!    durable event, which also numbers the attempt (see `NatsLink::guard`): a
//!    job that already finished is acknowledged and skipped; a job another live node is
//!    running (the server forgot that delivery: a crash rewound its consumer state), or that
//!    this node ran and is still reporting (the loop takes its next job meanwhile), is held,
//!    with in-progress acks, until that report is done or that node disappears; after an
//!    earlier attempt the attempt number continues from it (see `NatsLink::guard`);
//! 2. starts an in-progress ticker (`+WPI` every third of `ack_wait`) that runs until the job
//!    is settled, so long songs are not delivered to a second node;
//! 3. publishes a durable `started` event;
//! 4. hands the job to the loop, forwarding progress on core NATS and reading inputs from the
//!    object store; a message on `refrain.cancel.<id>` fires the job's token
//!    ([`NatsLink::listen_for_cancels`]);
//! 5. settles it: on success every variant goes into the results bucket, then the durable
//!    `succeeded` event listing them, then the double ack; on invalid input a `failed` event,
//!    then `+TERM`; on a node error a `retrying` event and a delayed `-NAK` — or, on the last
//!    allowed attempt (`inference.max_attempts`), a `failed` event and `+TERM`; when
//!    interrupted by shutdown a `released` event and a `-NAK` at once (same attempt); when
//!    cancelled a `cancelled` event, then `+TERM`.
//!
//! Deliveries are unlimited: a run lost with its node (kill -9, cut off past `ack_wait`) is not
//! the job's fault. Its `started` event without an outcome tells the next node, which runs the
//! same attempt with one more interruption, or fails the job once that makes
//! `inference.max_interruptions` in a row (a job that crashes every node it runs on).
//!
//! Every durable publish is retried through server restarts (the ticker keeps the job ours
//! meanwhile).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use protocol::node::{Assignment, LinkError, NodeLink, Outcome};
use protocol::{JobId, JobSpec, ProgressEvent};
use refrain_nats::jobs::{Delivery, JobConsumer};
use refrain_nats::progress::publish_progress;
use refrain_nats::wire::{
    self, CurrentJob, EventKind, NodeAnnouncement, NodeEvent, NodeState, ProgressWire,
};
use refrain_nats::{now_ms, publish_durable, retry, JetStream, NatsError, Role, Settings};
use tokio::sync::{watch, Mutex};
use tokio_util::sync::CancellationToken;

use super::held::{spawn_ticker, Taken};
use super::presence::Peers;
use super::Identity;

/// How long a node keeps trying to report a finished job (the WAV is worth it).
pub(super) const REPORT_SUCCESS_FOR: Duration = Duration::from_secs(300);
/// How long a node keeps trying other durable reports and input downloads.
pub(super) const REPORT_FOR: Duration = Duration::from_secs(60);
/// How long a node that is shutting down tries to give its job back.
const GIVE_BACK_FOR: Duration = Duration::from_secs(5);

struct Held {
    delivery: Delivery,
    /// Stops the in-progress ticker.
    ticker: CancellationToken,
    /// Runs of this attempt lost with their node before this one.
    interruptions: u32,
}

/// The NATS [`NodeLink`].
pub struct NatsLink {
    pub(super) queue: Arc<JobConsumer>,
    client: Client,
    pub(super) js: JetStream,
    pub(super) identity: Identity,
    status: watch::Sender<NodeAnnouncement>,
    held: Mutex<HashMap<u64, Held>>,
    /// The jobs this node has taken and not yet finished, with their cancellation tokens: the
    /// one running, and the one before it while it decodes (the loop takes its next job then).
    current: Mutex<Vec<(JobId, CancellationToken)>>,
    peers: Peers,
}

/// What the job's event history says about a fresh delivery.
enum Guard {
    /// Run it as this attempt, after this many runs of it lost with their node.
    Run { attempt: u32, interruptions: u32 },
    /// It already finished: acknowledge the message, do not run it.
    Finished,
    /// Its node died under it `interruptions` times in a row (`max_interruptions`): fail it.
    Poisoned { attempt: u32, interruptions: u32 },
}

impl NatsLink {
    pub fn new(js: JetStream, identity: Identity, peers: Peers) -> NatsLink {
        let announcement = NodeAnnouncement {
            node: identity.node.clone(),
            host: identity.host.clone(),
            device: identity.device.clone(),
            bundle_name: identity.bundle_name.clone(),
            bundle_version: identity.bundle_version.clone(),
            state: NodeState::Idle,
            job: None,
            reporting: Vec::new(),
            jobs_done: 0,
            started_ms: now_ms(),
            heartbeat_ms: u64::try_from(js.settings.heartbeat().as_millis()).unwrap_or(u64::MAX),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let (status, _) = watch::channel(announcement);
        NatsLink {
            queue: Arc::new(JobConsumer::new(js.clone(), Role::Node)),
            client: js.client.clone(),
            js,
            identity,
            status,
            held: Mutex::new(HashMap::new()),
            current: Mutex::new(Vec::new()),
            peers,
        }
    }

    /// The job's last durable event, if any.
    async fn last_event(&self, id: &JobId) -> Result<Option<NodeEvent>, NatsError> {
        use async_nats::jetstream::stream::LastRawMessageErrorKind;
        match self
            .js
            .events
            .get_last_raw_message_by_subject(&wire::event_subject(id))
            .await
        {
            Ok(m) => Ok(serde_json::from_slice(&m.payload).ok()),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(NatsError::js(format!("last event of job {id}"), e)),
        }
    }

    /// Decides what to do with a delivery from the job's event history. Normally there is none
    /// (first run: attempt `first`). After a `retrying` event the job runs as the next
    /// attempt; after `released` (a node gave it back on shutdown) as the same one. A `started`
    /// event of a node that is gone means that run was lost with its node (kill -9, cut off
    /// past `ack_wait`): not the job's fault, so the same attempt runs again with one more
    /// interruption, unless that makes `max_interruptions` in a row. If the last event says
    /// the job finished, it is a duplicate delivery: skip it. If another node that is alive
    /// says it is running the job right now, the server has forgotten that delivery (a crash
    /// rewound its consumer state): wait, keeping the message with in-progress acks, until
    /// that node finishes (skip) or goes away (run).
    async fn guard(&self, id: &JobId, first: u32) -> Guard {
        let max_interruptions = self.settings().max_interruptions;
        loop {
            let last = match self.last_event(id).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::debug!(job = %id, error = %e, "cannot read the job's events; running it");
                    return Guard::Run {
                        attempt: first,
                        interruptions: 0,
                    };
                }
            };
            let Some(last) = last else {
                return Guard::Run {
                    attempt: first,
                    interruptions: 0,
                };
            };
            match last.kind {
                EventKind::Succeeded { .. } | EventKind::Failed { .. } | EventKind::Cancelled => {
                    return Guard::Finished
                }
                EventKind::Started
                    if last.node != self.identity.node && self.peers.runs(&last.node, id) =>
                {
                    tracing::warn!(
                        job = %id, other = %last.node,
                        "another node is running this job (the server delivered it again); waiting for it"
                    );
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                EventKind::Started
                    if last.node == self.identity.node && self.reporting(id).await =>
                {
                    // This node ran it and is still reporting it (the server delivered it
                    // again, e.g. after a restart, before the ack): wait for the report.
                    tracing::info!(job = %id, "this node is still reporting this job; waiting for it");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                EventKind::Started => {
                    let attempt = last.attempt.max(first);
                    let interruptions = last.interruptions.saturating_add(1);
                    tracing::warn!(job = %id, attempt, interruptions, lost_on = %last.node, "the job's last run was lost with its node; running it again as the same attempt");
                    return if max_interruptions > 0 && interruptions >= max_interruptions {
                        Guard::Poisoned {
                            attempt,
                            interruptions,
                        }
                    } else {
                        Guard::Run {
                            attempt,
                            interruptions,
                        }
                    };
                }
                EventKind::Released => {
                    return Guard::Run {
                        attempt: last.attempt.max(first),
                        interruptions: 0,
                    }
                }
                EventKind::Retrying { .. } => {
                    return Guard::Run {
                        attempt: (last.attempt + 1).max(first),
                        interruptions: 0,
                    }
                }
            }
        }
    }

    /// Whether this node holds a delivery of job `id` it has not settled yet (its run ended
    /// and its report is under way: a new delivery is not in `held` before it runs).
    async fn reporting(&self, id: &JobId) -> bool {
        self.held
            .lock()
            .await
            .values()
            .any(|h| h.delivery.id == *id)
    }

    fn settings(&self) -> &Settings {
        &self.js.settings
    }

    /// Publishes a durable event, retrying for up to `deadline`.
    async fn report(&self, event: NodeEvent, deadline: Duration) -> Result<(), NatsError> {
        let payload = serde_json::to_vec(&event).map_err(|e| NatsError::Decode {
            subject: wire::event_subject(&event.id),
            message: e.to_string(),
        })?;
        let id = wire::event_message_id(&event);
        let never = CancellationToken::new();
        retry(&format!("reporting {id}"), &never, Some(deadline), || {
            publish_durable(
                &self.js.js,
                wire::event_subject(&event.id),
                &id,
                payload.clone(),
            )
        })
        .await
        .map(|_| ())
    }

    fn event(&self, id: &JobId, attempt: u32, interruptions: u32, kind: EventKind) -> NodeEvent {
        NodeEvent {
            id: id.clone(),
            attempt,
            interruptions,
            node: self.identity.node.clone(),
            at_ms: now_ms(),
            kind,
        }
    }

    /// Acks, nacks or terminates, retrying for a while (a lost one means the job comes back
    /// after `ack_wait`, which the idempotent store transitions absorb).
    async fn settle(&self, delivery: &Delivery, how: Settle) {
        let never = CancellationToken::new();
        let what = format!("{} job {}", how.name(), delivery.id);
        let result = retry(&what, &never, Some(REPORT_FOR), || async {
            match how {
                Settle::Ack => self.queue.ack(delivery).await,
                Settle::Nack(delay) => self.queue.nack(delivery, delay).await,
                Settle::Term => self.queue.term(delivery).await,
            }
        })
        .await;
        if let Err(e) = result {
            tracing::error!(job = %delivery.id, error = %e, "cannot settle the job; it will be delivered again");
            self.queue.release(delivery);
        }
    }

    /// Counts a finished job, and marks this node idle unless it runs another one by now.
    fn idle(&self, finished: &JobId) {
        self.status.send_modify(|s| {
            s.reporting.retain(|id| id != finished);
            if s.job.as_ref().is_none_or(|j| j.id == *finished) {
                s.state = NodeState::Idle;
                s.job = None;
            }
            s.jobs_done += 1;
        });
    }

    /// A receiver of this node's announcements (for the heartbeat).
    pub fn announcements(&self) -> watch::Receiver<NodeAnnouncement> {
        self.status.subscribe()
    }
}

/// How a job's message is settled.
#[derive(Debug, Clone, Copy)]
enum Settle {
    Ack,
    Nack(Duration),
    Term,
}

impl Settle {
    fn name(self) -> &'static str {
        match self {
            Settle::Ack => "acknowledging",
            Settle::Nack(_) => "giving back",
            Settle::Term => "terminating",
        }
    }
}

#[async_trait::async_trait]
impl NodeLink for NatsLink {
    async fn next(&self) -> Result<Assignment, LinkError> {
        loop {
            let Some((delivery, job)) = self
                .queue
                .take()
                .await
                .map_err(|e| LinkError::new(e.to_string()))?
            else {
                continue;
            };
            let ack_wait = match self.queue.delivery_limits().await {
                Ok((ack_wait, _)) => ack_wait,
                Err(e) => {
                    tracing::debug!(error = %e, "using the configured ack_wait");
                    self.settings().ack_wait()
                }
            };
            let ticker = CancellationToken::new();
            let taken = Taken {
                queue: self.queue.clone(),
                delivery: Some(delivery.clone()),
                ticker: ticker.clone(),
            };
            spawn_ticker(
                self.queue.clone(),
                delivery.clone(),
                ack_wait,
                ticker.clone(),
            );
            let first = job.attempt_base.saturating_add(1);
            let (attempt, interruptions) = match self.guard(&job.id, first).await {
                Guard::Run {
                    attempt,
                    interruptions,
                } => (attempt, interruptions),
                Guard::Poisoned {
                    attempt,
                    interruptions,
                } => {
                    let message = format!(
                        "the nodes running this job stopped {interruptions} times in a row \
                         without finishing it; it is suspected of crashing them \
                         (inference.max_interruptions = {})",
                        self.settings().max_interruptions
                    );
                    tracing::error!(job = %job.id, interruptions, "{message}");
                    taken.disarm();
                    let failed = self.event(
                        &job.id,
                        attempt,
                        interruptions,
                        EventKind::Failed { message },
                    );
                    self.fail(failed, &delivery).await;
                    ticker.cancel();
                    continue;
                }
                Guard::Finished => {
                    tracing::info!(job = %job.id, "job already finished; dropping a duplicate delivery");
                    taken.disarm();
                    self.settle(&delivery, Settle::Ack).await;
                    ticker.cancel();
                    continue;
                }
            };
            let assignment = Assignment {
                id: job.id.clone(),
                attempt,
                spec: job.spec,
                handle: delivery.handle,
                cancel: CancellationToken::new(),
            };
            let started = self.event(&assignment.id, attempt, interruptions, EventKind::Started);
            if let Err(e) = self.report(started, REPORT_FOR).await {
                // `taken` gives the job back when dropped.
                return Err(LinkError::new(format!(
                    "cannot report the start of job {}: {e}",
                    assignment.id
                )));
            }
            taken.disarm();
            // Jobs that ended here and are still being reported (the loop takes this one
            // meanwhile): announced, so that no other node runs one of them again meanwhile.
            let reporting: Vec<JobId> = {
                let mut held = self.held.lock().await;
                let reporting = held.values().map(|h| h.delivery.id.clone()).collect();
                held.insert(
                    delivery.handle,
                    Held {
                        delivery,
                        ticker,
                        interruptions,
                    },
                );
                reporting
            };
            self.current
                .lock()
                .await
                .push((assignment.id.clone(), assignment.cancel.clone()));
            self.status.send_modify(|s| {
                s.state = NodeState::Busy;
                s.reporting = reporting;
                s.job = Some(CurrentJob {
                    id: assignment.id.clone(),
                    attempt: assignment.attempt,
                    percent: 0.0,
                });
            });
            return Ok(assignment);
        }
    }

    async fn progress(&self, job: &Assignment, event: ProgressEvent) {
        let percent = event.percent;
        let message = ProgressWire {
            id: job.id.clone(),
            attempt: job.attempt,
            event,
        };
        if let Err(e) = publish_progress(&self.client, &message).await {
            tracing::debug!(job = %job.id, error = %e, "cannot publish progress");
        }
        // Shown at the next heartbeat; not worth one of its own.
        // (Not the decode of the job before, which still reports while this one is taken.)
        self.status.send_if_modified(|s| {
            if let Some(current) = s.job.as_mut().filter(|j| j.id == job.id) {
                current.percent = percent;
            }
            false
        });
    }

    async fn blob(&self, job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        self.fetch(job, name).await
    }

    async fn earlier_result(&self, job: &JobId, source: &JobId) -> Result<Vec<u8>, LinkError> {
        self.fetch(job, &wire::earlier_result_name(source)).await
    }

    async fn peek(&self) -> Option<(JobId, JobSpec)> {
        self.peek_next().await
    }

    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        // Kept in `held` until reported, so that `next` announces it as being reported.
        let found = self.held.lock().await.get(&job.handle).map(|h| Held {
            delivery: h.delivery.clone(),
            ticker: h.ticker.clone(),
            interruptions: h.interruptions,
        });
        let Some(held) = found else {
            return Err(LinkError::new(format!(
                "job {} is not held by this node",
                job.id
            )));
        };
        // The loop may have taken its next job already; that one stays.
        self.current.lock().await.retain(|(id, _)| *id != job.id);
        let delivery = &held.delivery;
        let queue = &self.queue;
        let interruptions = held.interruptions;
        let event = |kind| self.event(&job.id, job.attempt, interruptions, kind);
        match outcome {
            Outcome::Succeeded {
                wavs,
                duration_seconds,
            } => {
                let reported = match self.store_results(&job, &wavs).await {
                    Ok(objects) => {
                        let kind = EventKind::Succeeded {
                            objects,
                            duration_seconds,
                        };
                        self.report(event(kind), REPORT_SUCCESS_FOR).await
                    }
                    Err(e) => Err(e),
                };
                match reported {
                    Ok(()) => self.settle(delivery, Settle::Ack).await,
                    Err(e) => {
                        tracing::error!(job = %job.id, error = %e, "cannot deliver the result; the job will run again");
                        let delay = self.settings().retry_delay();
                        self.settle(delivery, Settle::Nack(delay)).await;
                    }
                }
            }
            Outcome::Invalid(message) => {
                self.fail(event(EventKind::Failed { message }), delivery)
                    .await;
            }
            Outcome::Retry(message) if job.attempt >= self.settings().max_attempts => {
                let message = format!("{message} (gave up after {} attempts)", job.attempt);
                self.fail(event(EventKind::Failed { message }), delivery)
                    .await;
            }
            Outcome::Retry(message) => {
                let kind = EventKind::Retrying { message };
                if let Err(e) = self.report(event(kind), REPORT_FOR).await {
                    tracing::warn!(job = %job.id, error = %e, "cannot report the failed attempt");
                }
                let delay = self.settings().retry_delay();
                self.settle(delivery, Settle::Nack(delay)).await;
            }
            Outcome::Interrupted => {
                if let Err(e) = self.report(event(EventKind::Released), GIVE_BACK_FOR).await {
                    tracing::warn!(job = %job.id, error = %e, "cannot report the interrupted attempt");
                }
                if let Err(e) = queue.nack(delivery, Duration::ZERO).await {
                    tracing::warn!(job = %job.id, error = %e, "cannot give the job back; it returns after ack_wait");
                    queue.release(delivery);
                }
            }
            Outcome::Cancelled => {
                // Terminated even if the report is lost: a cancelled job must not run again.
                if let Err(e) = self.report(event(EventKind::Cancelled), REPORT_FOR).await {
                    tracing::error!(job = %job.id, error = %e, "cannot report the cancellation");
                }
                self.settle(delivery, Settle::Term).await;
            }
        }
        held.ticker.cancel();
        self.held.lock().await.remove(&job.handle);
        self.idle(&job.id);
        Ok(())
    }
}

impl NatsLink {
    /// Fires the token of job `id` if this node runs it (or still decodes it).
    pub async fn cancel(&self, id: &str) -> bool {
        let current = self.current.lock().await;
        match current.iter().find(|(job, _)| job.as_str() == id) {
            Some((job, token)) => {
                tracing::info!(job = %job, "cancelling the running job");
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// Listens on `refrain.cancel.*` until `stop` fires: a message for the job this node runs
    /// fires that job's token ([`Assignment::cancel`]); the others are not this node's.
    pub async fn listen_for_cancels(&self, stop: CancellationToken) {
        let subject = format!("{}.*", wire::CANCEL_PREFIX);
        let mut sub = match self.client.subscribe(subject.clone()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, %subject, "cannot listen for job cancellations");
                return;
            }
        };
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                m = sub.next() => match m { Some(m) => m, None => break },
            };
            let prefix = format!("{}.", wire::CANCEL_PREFIX);
            if let Some(id) = message.subject.as_str().strip_prefix(&prefix) {
                self.cancel(id).await;
            }
        }
        let _ = sub.unsubscribe().await;
    }

    /// Reports a final failure, then stops redelivery. If the report cannot be made the job is
    /// given back instead (a `+TERM` without a recorded failure would leave it running forever).
    async fn fail(&self, failed: NodeEvent, delivery: &Delivery) {
        let id = failed.id.clone();
        match self.report(failed, REPORT_FOR).await {
            Ok(()) => self.settle(delivery, Settle::Term).await,
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot report the failure; giving the job back");
                let delay = self.settings().retry_delay();
                self.settle(delivery, Settle::Nack(delay)).await;
            }
        }
    }
}
