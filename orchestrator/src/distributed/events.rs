//! The orchestrator's side of node events: a durable pull consumer on `REFRAIN_EVENTS` that
//! turns every [`NodeEvent`] (and every max-deliveries advisory) into calls of the job core's
//! [`Lifecycle`] (the same functions the embedded nodes' link calls), each flushed before the
//! event is acknowledged.
//!
//! Events are applied idempotently on (job id, attempt), in any order:
//!
//! * an event of an attempt older than the record's, or for a finished job, changes nothing
//!   (a late result of a node whose job was redelivered elsewhere is ignored, and its WAV is
//!   deleted from the object store);
//! * `started(a)` makes the job Running with attempt `a` (through Queued when the record still
//!   shows an older attempt running: the node that ran it is gone);
//! * `succeeded(a)` reads the WAV from the results bucket, writes it atomically to the output
//!   store, then records success (Running(a) → Succeeded), then deletes the job's objects;
//! * `retrying(a)` puts a Running job back to Queued with attempt `a + 1`;
//! * `started(a)` again, with more interruptions than the record shows, records the lost run
//!   as an interruption (Running → Queued → Running, same attempt);
//! * `released(a)` (a node stopping gracefully gave the job back) makes it Queued as the same
//!   attempt;
//! * `failed(a)` ends the job `failed`; so does a max-deliveries advisory (only a consumer
//!   created with a delivery limit by an older version sends one), whose message is removed
//!   from the work queue;
//! * `cancelled(a)` confirms that the node stopped a job the orchestrator had already
//!   cancelled (nothing to change).
//!
//! Events published while the orchestrator was down wait in the stream and are applied when it
//! starts again. Events the previous orchestrator process had taken but not acknowledged when
//! it died would only come back after the consumer's ack wait; at startup the consumer is
//! rewound instead ([`Applier::rewind`]), so they are applied at once. After a nats-server
//! restart the pull the server forgot is sent again as soon as the client is back
//! (`refrain_nats::server::ServerWatch`), and the consumer is rewound too (events delivered or
//! acknowledged as the server died); deleting a finished job's objects happens off this loop,
//! so a request lost with the server never holds up the next events. At startup [`reconcile`] also rebuilds the dispatcher's view: the Queued and
//! Running jobs the work queue holds count as in flight, and every other one goes back into the
//! backlog (jobs not yet published when the process stopped, or lost by the server).

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use protocol::{JobId, JobRecord, JobState, SongRef, StyleSpec};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::objects::Bucket;
use super::wire::{self, EventKind, JobMessage, MaxDeliveriesAdvisory, NodeEvent, ResultObject};
use super::NatsError;
use super::{retry, DistributedError, JetStream};
use crate::jobs::{results, Expect, Lifecycle};
use crate::outputs::OutputStore;
use crate::progress::ProgressBoard;
use crate::store::{JobStore, StoreError};
use refrain_nats::server::ServerWatch;

/// Events taken per pull.
const BATCH: usize = 32;
/// How often a transition that lost a race is re-decided before the event is handed back.
const CONFLICT_RETRIES: usize = 5;
/// Delay before an event whose application failed is delivered again.
const RETRY_EVENT: Duration = Duration::from_secs(2);

/// Applies node events to the job store.
#[derive(Clone)]
pub struct Applier {
    js: JetStream,
    lifecycle: Lifecycle,
    store: JobStore,
    outputs: OutputStore,
    board: ProgressBoard,
}

impl Applier {
    pub fn new(
        js: JetStream,
        lifecycle: Lifecycle,
        outputs: OutputStore,
        board: ProgressBoard,
    ) -> Applier {
        Applier {
            js,
            store: lifecycle.store().clone(),
            lifecycle,
            outputs,
            board,
        }
    }

    /// Runs the consumer loop on `tracker` until `cancel` fires.
    pub fn spawn(self, tracker: &TaskTracker, cancel: CancellationToken) {
        tracker.spawn(async move { self.run(cancel).await });
    }

    async fn consumer(&self, cancel: &CancellationToken) -> Result<PullConsumer, DistributedError> {
        let config = self.js.settings.events_consumer();
        retry("setting up the events consumer", cancel, None, || async {
            // An existing consumer keeps its start (it may have been rewound); the rest of
            // the configuration is updated.
            let mut config = config.clone();
            if let Ok(info) = self.js.events.consumer_info(wire::EVENTS_CONSUMER).await {
                config.deliver_policy = info.config.deliver_policy;
            }
            self.js
                .events
                .create_consumer(config)
                .await
                .map_err(|e| DistributedError::js(format!("consumer {}", wire::EVENTS_CONSUMER), e))
        })
        .await
    }

    /// At startup: if the events consumer holds events delivered to a previous orchestrator
    /// process and never acknowledged (it died while applying them), it is recreated to
    /// deliver again from the first unacknowledged event, instead of waiting out their
    /// `events_ack_wait_seconds`. The same after a nats-server restart, for the events whose
    /// delivery or acknowledgement the restart cut off. Events acknowledged out of order after that point come again
    /// too; applying an event is idempotent. Assumes one orchestrator per NATS server (as the
    /// whole deployment does).
    async fn rewind(&self) -> Result<(), DistributedError> {
        let info = match self.js.events.consumer_info(wire::EVENTS_CONSUMER).await {
            Ok(info) => info,
            // No consumer yet: nothing was delivered.
            Err(_) => return Ok(()),
        };
        if info.num_ack_pending == 0 {
            return Ok(());
        }
        let start_sequence = info.ack_floor.stream_sequence + 1;
        self.js
            .events
            .delete_consumer(wire::EVENTS_CONSUMER)
            .await
            .map_err(|e| {
                DistributedError::js(format!("deleting consumer {}", wire::EVENTS_CONSUMER), e)
            })?;
        let mut config = self.js.settings.events_consumer();
        config.deliver_policy =
            jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence };
        self.js
            .events
            .create_consumer(config)
            .await
            .map_err(|e| DistributedError::js(format!("consumer {}", wire::EVENTS_CONSUMER), e))?;
        tracing::info!(
            pending = info.num_ack_pending,
            from = start_sequence,
            "node events taken but not acknowledged are delivered again now"
        );
        Ok(())
    }

    async fn run(self, cancel: CancellationToken) {
        if let Err(e) = self.rewind().await {
            tracing::warn!(error = %e, "cannot rewind the node events consumer; events taken before the restart come back after events_ack_wait_seconds");
        }
        let mut consumer = match self.consumer(&cancel).await {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(error = %e, "node events consumer not started");
                return;
            }
        };
        let mut errors = 0u32;
        let expires = self.js.settings.fetch_expires();
        let mut restarted = false;
        while !cancel.is_cancelled() {
            // Events delivered before a server restart whose acks were lost (or that never
            // arrived) would come again only after events_ack_wait_seconds.
            if std::mem::take(&mut restarted) {
                if let Err(e) = self.rewind().await {
                    tracing::warn!(error = %e, "cannot rewind the node events consumer after a nats-server restart");
                }
            }
            let server = ServerWatch::when_connected(&self.js.client, expires).await;
            let batch = consumer
                .batch()
                .max_messages(BATCH)
                .expires(expires)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    errors += 1;
                    if errors == 1 || errors.is_multiple_of(10) {
                        tracing::warn!(error = %e, errors, "cannot pull node events; retrying");
                    }
                    if errors.is_multiple_of(3) {
                        match self.consumer(&cancel).await {
                            Ok(c) => consumer = c,
                            Err(_) => return,
                        }
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            errors = 0;
            loop {
                // A pull a restarted server forgot is sent again as soon as the client is
                // connected to the new server process (or else given up a second after it
                // would have expired): node events flow again at once.
                let wait = expires + Duration::from_secs(1);
                let message = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => return,
                    m = tokio::time::timeout(wait, batch.next()) => match m {
                        Ok(m) => m,
                        Err(_) => break,
                    },
                    _ = server.restarted() => {
                        tracing::info!("nats-server restarted: pulling node events again");
                        restarted = true;
                        break;
                    }
                };
                let message = match message {
                    None => break,
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "error while pulling node events");
                        break;
                    }
                };
                self.handle(message).await;
            }
        }
    }

    /// Applies one message and acknowledges it, or hands it back after a delay.
    async fn handle(&self, message: jetstream::Message) {
        let subject = message.subject.to_string();
        let result = if subject.starts_with("$JS.EVENT.ADVISORY.") {
            self.advisory(&message.payload).await
        } else {
            match serde_json::from_slice::<NodeEvent>(&message.payload) {
                Ok(event) => self.apply(&event).await,
                Err(e) => {
                    tracing::error!(%subject, error = %e, "dropping an undecodable node event");
                    Ok(())
                }
            }
        };
        let ack = match result {
            // Bounded: a confirmation lost in a server restart must not stall the loop for the
            // client's 10 s request timeout (a lost ack only means the event is applied again:
            // after a restart the consumer is rewound, so at once).
            Ok(()) => {
                let server = ServerWatch::now(&self.js.client);
                tokio::select! {
                    biased;
                    acked = tokio::time::timeout(refrain_nats::ACK_TIMEOUT, message.double_ack()) => {
                        acked.unwrap_or_else(|_| {
                            tracing::warn!(%subject, "no confirmation of a node event's ack; it may be applied again");
                            Ok(())
                        })
                    }
                    _ = server.restarted() => {
                        tracing::info!(%subject, "nats-server restarted before confirming a node event's ack; it is applied again");
                        Ok(())
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%subject, error = %e, "cannot apply a node event; it comes back in {RETRY_EVENT:?}");
                message.ack_with(AckKind::Nak(Some(RETRY_EVENT))).await
            }
        };
        if let Err(e) = ack {
            // Applying is idempotent: if the ack is lost the event is applied again.
            tracing::warn!(%subject, error = %e, "cannot acknowledge a node event");
        }
    }

    /// Applies one node event (idempotent).
    pub async fn apply(&self, event: &NodeEvent) -> Result<(), DistributedError> {
        let (id, attempt) = (&event.id, event.attempt);
        tracing::debug!(job = %id, attempt, node = %event.node, kind = event.kind.name(), "node event");
        for _ in 0..CONFLICT_RETRIES {
            let Some(record) = self.store.get(id)? else {
                tracing::info!(job = %id, kind = event.kind.name(), "event for a job that no longer exists");
                self.drop_result(event);
                return Ok(());
            };
            if record.state.is_terminal() || record.attempt > attempt {
                tracing::info!(
                    job = %id, attempt, node = %event.node, kind = event.kind.name(),
                    state = %record.state, current = record.attempt,
                    "ignoring an event of a finished job or an older attempt"
                );
                self.drop_result(event);
                return Ok(());
            }
            let applied = match &event.kind {
                EventKind::Started => self.started(&record, event).await.map(|_| ()),
                EventKind::Released => self.release(&record, attempt).await,
                EventKind::Succeeded {
                    objects,
                    duration_seconds,
                } => {
                    self.succeed(&record, attempt, objects, *duration_seconds, &event.node)
                        .await
                }
                EventKind::Retrying { message } => self.requeue(&record, attempt, message).await,
                EventKind::Failed { message } => self.fail(&record, attempt, message.clone()).await,
                // Only a job the orchestrator cancelled is stopped by its node: already terminal
                // above. A record that shows otherwise (a cancel lost in a crash before its
                // flush) is cancelled now.
                EventKind::Cancelled => self
                    .lifecycle
                    .cancel(id, "cancelled while running")
                    .await
                    .map(|_| ())
                    .map_err(DistributedError::from),
            };
            match applied {
                Err(DistributedError::Store(StoreError::Conflict { .. })) => continue,
                other => return other,
            }
        }
        Err(DistributedError::GaveUp(format!(
            "job {id}: the record kept changing while applying an event"
        )))
    }

    /// A `started` event. One of the attempt already running, with more interruptions than the
    /// record shows, is a new run after the last one was lost with its node: recorded as an
    /// interruption (the same attempt), then started.
    async fn started(
        &self,
        record: &JobRecord,
        event: &NodeEvent,
    ) -> Result<JobRecord, DistributedError> {
        let (id, attempt) = (&record.id, event.attempt);
        if record.state == JobState::Running
            && record.attempt == attempt
            && event.interruptions > record.interruptions
        {
            tracing::warn!(job = %id, attempt, interruptions = event.interruptions, "the job's run was lost with its node; it runs again as the same attempt");
            self.lifecycle
                .interrupted_on_node(id, attempt, event.interruptions)
                .await?;
            return Ok(self.lifecycle.start(id, attempt, attempt).await?);
        }
        self.start(record, attempt).await
    }

    /// Brings the record to Running with `attempt`.
    async fn start(&self, record: &JobRecord, attempt: u32) -> Result<JobRecord, DistributedError> {
        let id = &record.id;
        match record.state {
            JobState::Running if record.attempt == attempt => Ok(record.clone()),
            JobState::Running => {
                // The node that ran the older attempt is gone; its job was delivered again.
                tracing::warn!(job = %id, from = record.attempt, to = attempt, "job was delivered again");
                self.lifecycle
                    .requeue_lost(id, record.attempt, attempt)
                    .await?;
                Ok(self.lifecycle.start(id, attempt, attempt).await?)
            }
            JobState::Queued => Ok(self.lifecycle.start(id, record.attempt, attempt).await?),
            _ => Ok(record.clone()),
        }
    }

    async fn succeed(
        &self,
        record: &JobRecord,
        attempt: u32,
        objects: &[ResultObject],
        duration_seconds: f64,
        node: &str,
    ) -> Result<(), DistributedError> {
        let record = self.start(record, attempt).await?;
        let id = &record.id;
        let mut wavs = Vec::with_capacity(objects.len());
        for object in objects {
            match self.js.objects.get(Bucket::Results, &object.object).await {
                Ok(w) => wavs.push(w),
                Err(NatsError::ObjectNotFound { .. }) => {
                    let message =
                        format!("the result of attempt {attempt} is missing from the object store");
                    return self.fail(&record, attempt, message).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        let result = match results::store_variants(
            &self.outputs,
            id,
            &record.spec,
            attempt,
            &wavs,
            duration_seconds,
        )
        .await
        {
            Ok(result) => result,
            // Applying the event again cannot get past it: fail the job instead of handing
            // the event back forever.
            Err(e) if e.is_permanent() => {
                let message = format!("writing result: {e}");
                self.fail(&record, attempt, message).await?;
                self.cleanup(&record, objects);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let bytes = result.bytes;
        let done = self.lifecycle.succeed(id, attempt, result).await?;
        tracing::info!(job = %id, attempt, %node, bytes, "job succeeded");
        self.board.forget(id).await;
        self.cleanup(&done, objects);
        Ok(())
    }

    /// The node stopped gracefully and gave the job back: Queued as the same attempt.
    async fn release(&self, record: &JobRecord, attempt: u32) -> Result<(), DistributedError> {
        if record.state != JobState::Running || record.attempt != attempt {
            return Ok(());
        }
        self.lifecycle.hand_back(&record.id, attempt).await?;
        tracing::info!(job = %record.id, attempt, "a stopping node gave the job back");
        self.board.forget(&record.id).await;
        Ok(())
    }

    async fn requeue(
        &self,
        record: &JobRecord,
        attempt: u32,
        message: &str,
    ) -> Result<(), DistributedError> {
        if record.state != JobState::Running {
            return Ok(());
        }
        // The node counts attempts against inference.max_attempts and says `failed` on the
        // last one; here the job only goes back to Queued.
        self.lifecycle
            .requeue_lost(&record.id, record.attempt, attempt + 1)
            .await?;
        tracing::info!(job = %record.id, attempt, error = %message, "job attempt failed; it will run again");
        self.board.forget(&record.id).await;
        Ok(())
    }

    async fn fail(
        &self,
        record: &JobRecord,
        attempt: u32,
        message: String,
    ) -> Result<(), DistributedError> {
        let done = self
            .lifecycle
            .fail(&record.id, Expect::current(record), attempt, message)
            .await?;
        self.board.forget(&record.id).await;
        self.cleanup(&done, &[]);
        Ok(())
    }

    /// A job ran out of deliveries (its last node crashed or timed out): fail it and remove its
    /// message from the work queue.
    async fn advisory(&self, payload: &[u8]) -> Result<(), DistributedError> {
        let advisory: MaxDeliveriesAdvisory = match serde_json::from_slice(payload) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "dropping an undecodable advisory");
                return Ok(());
            }
        };
        if advisory.stream != wire::JOBS_STREAM || advisory.consumer != wire::JOBS_CONSUMER {
            return Ok(());
        }
        let raw = match self.js.jobs.get_raw_message(advisory.stream_seq).await {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(seq = advisory.stream_seq, error = %e, "the job of a max-deliveries advisory is gone");
                return Ok(());
            }
        };
        if let Ok(job) = serde_json::from_slice::<JobMessage>(&raw.payload) {
            let attempt = job.attempt_base + u32::try_from(advisory.deliveries).unwrap_or(u32::MAX);
            for _ in 0..CONFLICT_RETRIES {
                let Some(record) = self.store.get(&job.id)? else {
                    break;
                };
                if record.state.is_terminal() || record.attempt > attempt {
                    break;
                }
                let message = match &record.error {
                    Some(last) => format!("{last} (gave up after {attempt} attempts)"),
                    None => format!("gave up after {attempt} attempts (the node running it stopped or timed out)"),
                };
                match self.fail(&record, attempt, message).await {
                    Err(DistributedError::Store(StoreError::Conflict { .. })) => continue,
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        self.js
            .jobs
            .delete_message(advisory.stream_seq)
            .await
            .map_err(|e| {
                DistributedError::js(format!("deleting job message {}", advisory.stream_seq), e)
            })?;
        Ok(())
    }

    /// Deletes the WAV of an event that will not be recorded (in the background).
    fn drop_result(&self, event: &NodeEvent) {
        if let EventKind::Succeeded { objects, .. } = &event.kind {
            let names = objects.iter().map(|o| (Bucket::Results, o.object.clone()));
            self.delete_later(&event.id, names.collect());
        }
    }

    /// Deletes a finished job's objects (in the background).
    fn cleanup(&self, record: &JobRecord, results: &[ResultObject]) {
        let id = &record.id;
        let mut names = Vec::new();
        if let StyleSpec::Upload(name) = &record.spec.style {
            names.push((Bucket::Inputs, wire::input_object(id, name)));
        }
        for song in record.spec.songs() {
            names.push((
                Bucket::Inputs,
                match song {
                    SongRef::Upload(name) => wire::input_object(id, name),
                    SongRef::Output(source) => {
                        wire::input_object(id, &wire::earlier_result_name(source))
                    }
                },
            ));
        }
        names.extend(results.iter().map(|o| (Bucket::Results, o.object.clone())));
        self.delete_later(id, names);
    }

    /// Deletes objects off the events loop, best effort (the buckets' `max_age` removes
    /// leftovers): a delete sent just before nats-server died waits out the client's request
    /// timeout, and applying the next events must not wait with it.
    fn delete_later(&self, id: &JobId, names: Vec<(Bucket, String)>) {
        if names.is_empty() {
            return;
        }
        let (objects, id) = (self.js.objects.clone(), id.clone());
        tokio::spawn(async move {
            for (bucket, name) in names {
                if let Err(e) = objects.delete(bucket, &name).await {
                    tracing::debug!(job = %id, object = %name, error = %e, "cannot delete a job's object");
                }
            }
        });
    }
}
