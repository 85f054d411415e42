//! The NATS JetStream queue of the distributed deployment.
//!
//! One work-queue stream (`REFRAIN_JOBS`, file storage, `max_age`, a duplicate window) with one
//! subject per job, and one durable pull consumer shared by every node (`max_ack_pending` ≥ the
//! number of nodes, `ack_wait`, `max_deliver` = `inference.max_attempts`). The message carries
//! the whole [`JobMessage`] (nodes have no access to the job store) and its `Nats-Msg-Id` is the
//! job id, so publishing a job twice within the window is a no-op.
//!
//! The orchestrator side ([`NatsQueue::orchestrator`]) implements `enqueue`: it reads the job
//! record (already flushed to sled), puts the files the job needs into the inputs bucket, then
//! publishes and waits for the stream's acknowledgement — only then may the client get 202.
//!
//! The node side ([`NatsQueue::node`]) takes one job at a time with a one-message `batch()`
//! (never `messages()`, which prefetches a second job, and no idle heartbeat on the batch,
//! which stalls it in async-nats 0.51) and a short `expires`, so a pull lost in a server
//! restart is replaced soon. The attempt number is JetStream's delivery count. `ack` is a
//! double ack (confirmed by the server), `nack` a delayed `-NAK`, [`NatsQueue::term`] a `+TERM`,
//! `in_progress` a `+WPI` that restarts `ack_wait`. After repeated errors the consumer is
//! looked up (or, on a node, created) again.
//!
//! Cancel safety of `next`: a message that arrived while the future was dropped is not lost;
//! the server delivers it again after `ack_wait` (with a higher delivery count).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use protocol::{JobId, JobRecord, SongRef, StyleSpec};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Queue, QueueError};
use crate::blobs::BlobStore;
use crate::distributed::objects::Bucket;
use crate::distributed::wire::{self, JobMessage};
use crate::distributed::{publish_durable, retry, DistributedError, JetStream, Role};
use crate::outputs::OutputStore;
use crate::store::JobStore;

/// Consecutive pull errors after which the consumer is looked up again.
const RECREATE_AFTER: u32 = 3;
/// How long `enqueue` keeps trying to reach the server before the submission fails.
const ENQUEUE_DEADLINE: Duration = Duration::from_secs(15);

impl From<DistributedError> for QueueError {
    fn from(e: DistributedError) -> QueueError {
        match e {
            DistributedError::Store(e) => QueueError::Store(e),
            other => QueueError::Backend(other.to_string()),
        }
    }
}

/// Where the orchestrator reads what it publishes.
#[derive(Clone)]
struct Inputs {
    store: JobStore,
    blobs: BlobStore,
    outputs: OutputStore,
}

/// The JetStream work queue.
pub struct NatsQueue {
    js: JetStream,
    role: Role,
    inputs: Option<Inputs>,
    consumer: tokio::sync::Mutex<Option<PullConsumer>>,
    errors: AtomicU32,
    held: Mutex<HashMap<u64, jetstream::Message>>,
    next_handle: AtomicU64,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl NatsQueue {
    /// The orchestrator's queue: publishes jobs of `store`, with the files they name.
    pub fn orchestrator(
        js: JetStream,
        store: JobStore,
        blobs: BlobStore,
        outputs: OutputStore,
    ) -> NatsQueue {
        NatsQueue::new(
            js,
            Role::Orchestrator,
            Some(Inputs {
                store,
                blobs,
                outputs,
            }),
        )
    }

    /// A node's queue: takes jobs.
    pub fn node(js: JetStream) -> NatsQueue {
        NatsQueue::new(js, Role::Node, None)
    }

    fn new(js: JetStream, role: Role, inputs: Option<Inputs>) -> NatsQueue {
        NatsQueue {
            js,
            role,
            inputs,
            consumer: tokio::sync::Mutex::new(None),
            errors: AtomicU32::new(0),
            held: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    pub fn jetstream(&self) -> &JetStream {
        &self.js
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, jetstream::Message>> {
        // Only inserts and removes happen under the lock: a poisoned map is still consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared consumer, looked up once and again after repeated errors.
    async fn consumer(&self) -> Result<PullConsumer, DistributedError> {
        let mut slot = self.consumer.lock().await;
        if self.errors.load(Ordering::SeqCst) >= RECREATE_AFTER {
            tracing::warn!("looking up the jobs consumer again after repeated errors");
            *slot = None;
            self.errors.store(0, Ordering::SeqCst);
        }
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let what = format!("consumer {}", wire::JOBS_CONSUMER);
        let consumer: PullConsumer = match self.role {
            Role::Orchestrator => self
                .js
                .jobs
                .get_consumer(wire::JOBS_CONSUMER)
                .await
                .map_err(|e| DistributedError::js(&what, e))?,
            Role::Node => self
                .js
                .jobs
                .get_or_create_consumer(wire::JOBS_CONSUMER, self.js.settings.jobs_consumer())
                .await
                .map_err(|e| DistributedError::js(&what, e))?,
        };
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    fn failed(&self, e: DistributedError) -> DistributedError {
        self.errors.fetch_add(1, Ordering::SeqCst);
        e
    }

    /// `ack_wait` and `max_deliver` as the server has them now (they may have been changed by
    /// the orchestrator after this node started).
    pub async fn delivery_limits(&self) -> Result<(Duration, u32), DistributedError> {
        let info = self
            .js
            .jobs
            .consumer_info(wire::JOBS_CONSUMER)
            .await
            .map_err(|e| {
                DistributedError::js(format!("consumer {} info", wire::JOBS_CONSUMER), e)
            })?;
        let max_deliver = u32::try_from(info.config.max_deliver).unwrap_or(u32::MAX);
        Ok((
            info.config.ack_wait,
            if max_deliver == 0 {
                u32::MAX
            } else {
                max_deliver
            },
        ))
    }

    /// Waits up to `nats.fetch_expires_seconds` for one job. `None` when none came (or an
    /// undecodable message was terminated).
    pub async fn take(&self) -> Result<Option<(Delivery, JobMessage)>, DistributedError> {
        let consumer = self.consumer().await.map_err(|e| self.failed(e))?;
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(self.js.settings.fetch_expires())
            .messages()
            .await
            .map_err(|e| self.failed(DistributedError::js("pull request", e)))?;
        let message = match batch.next().await {
            None => {
                self.errors.store(0, Ordering::SeqCst);
                return Ok(None);
            }
            Some(Err(e)) => return Err(self.failed(DistributedError::js("pull", e))),
            Some(Ok(m)) => m,
        };
        self.errors.store(0, Ordering::SeqCst);
        let delivered = match message.info() {
            Ok(info) => u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1),
            Err(e) => {
                tracing::error!(subject = %message.subject, error = %e, "a job message without delivery info; giving it back");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return Ok(None);
            }
        };
        let job: JobMessage = match serde_json::from_slice(&message.payload) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(subject = %message.subject, error = %e, "an undecodable job message; terminating it");
                if let Err(e) = message.double_ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "cannot terminate the undecodable message");
                }
                return Ok(None);
            }
        };
        let handle = self.next_handle.fetch_add(1, Ordering::SeqCst);
        self.held().insert(handle, message);
        Ok(Some((
            Delivery {
                id: job.id.clone(),
                delivered,
                handle,
            },
            job,
        )))
    }

    fn message(&self, delivery: &Delivery) -> Option<jetstream::Message> {
        self.held().get(&delivery.handle).cloned()
    }

    async fn settle(&self, delivery: &Delivery, kind: AckKind) -> Result<(), QueueError> {
        let Some(message) = self.message(delivery) else {
            tracing::debug!(job = %delivery.id, handle = delivery.handle, "ignoring a stale ack");
            return Ok(());
        };
        message
            .double_ack_with(kind)
            .await
            .map_err(|e| QueueError::Backend(format!("acknowledging job {}: {e}", delivery.id)))?;
        self.held().remove(&delivery.handle);
        Ok(())
    }

    /// Stops redelivery of a job that cannot succeed (after its failure was reported).
    pub async fn term(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle(delivery, AckKind::Term).await
    }

    /// Forgets a delivery without telling the server (it comes back after `ack_wait`).
    pub fn release(&self, delivery: &Delivery) {
        self.held().remove(&delivery.handle);
    }

    /// Whether the stream still holds a message of this job (waiting, in flight, or out of
    /// deliveries).
    pub async fn holds(&self, id: &JobId) -> Result<bool, DistributedError> {
        match self
            .js
            .jobs
            .get_last_raw_message_by_subject(&wire::job_subject(id))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(DistributedError::js(format!("looking up job {id}"), e)),
        }
    }

    /// Puts the files a job names into the inputs bucket.
    async fn put_inputs(
        &self,
        inputs: &Inputs,
        record: &JobRecord,
    ) -> Result<(), DistributedError> {
        let id = &record.id;
        let mut uploads = Vec::new();
        if let StyleSpec::Upload(name) = &record.spec.style {
            uploads.push(name.clone());
        }
        if let Some(edit) = &record.spec.edit {
            match &edit.song {
                SongRef::Upload(name) => uploads.push(name.clone()),
                SongRef::Output(source) => {
                    let file = inputs
                        .store
                        .get(source)?
                        .and_then(|r| r.result)
                        .map(|r| r.file)
                        .ok_or_else(|| DistributedError::ObjectNotFound {
                            bucket: "outputs".into(),
                            name: format!("result of job {source}"),
                        })?;
                    let path = inputs.outputs.resolve(&file)?;
                    let bytes =
                        tokio::fs::read(&path)
                            .await
                            .map_err(|e| DistributedError::Object {
                                bucket: "outputs".into(),
                                name: file.clone(),
                                message: e.to_string(),
                            })?;
                    let name = wire::input_object(id, &wire::earlier_result_name(source));
                    self.js.objects.put(Bucket::Inputs, &name, &bytes).await?;
                }
            }
        }
        for blob in uploads {
            let bytes = inputs.blobs.read(&blob).await?;
            self.js
                .objects
                .put(Bucket::Inputs, &wire::input_object(id, &blob), &bytes)
                .await?;
        }
        Ok(())
    }

    async fn publish(&self, inputs: &Inputs, id: &JobId) -> Result<(), DistributedError> {
        let record = inputs.store.get(id)?.ok_or_else(|| {
            DistributedError::GaveUp(format!("job {id} has no record to publish"))
        })?;
        self.put_inputs(inputs, &record).await?;
        let message = JobMessage {
            id: record.id.clone(),
            spec: record.spec.clone(),
            created_ms: record.created_ms,
            attempt_base: record.attempt.saturating_sub(1),
        };
        let payload = serde_json::to_vec(&message).map_err(|e| DistributedError::Decode {
            subject: wire::job_subject(id),
            message: e.to_string(),
        })?;
        let duplicate = publish_durable(
            &self.js.js,
            wire::job_subject(id),
            &message.message_id(),
            payload,
        )
        .await?;
        if duplicate {
            tracing::debug!(job = %id, "job was already published");
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Queue for NatsQueue {
    async fn enqueue(&self, id: &JobId) -> Result<(), QueueError> {
        let Some(inputs) = &self.inputs else {
            return Err(QueueError::Backend(
                "only the orchestrator publishes jobs".into(),
            ));
        };
        let never = CancellationToken::new();
        retry(
            &format!("publishing job {id}"),
            &never,
            Some(ENQUEUE_DEADLINE),
            || self.publish(inputs, id),
        )
        .await
        .map_err(QueueError::from)
    }

    async fn next(&self) -> Result<Delivery, QueueError> {
        loop {
            if let Some((delivery, _)) = self.take().await? {
                return Ok(delivery);
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.settle(delivery, AckKind::Ack).await
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
        self.settle(delivery, kind).await
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let Some(message) = self.message(delivery) else {
            return Ok(());
        };
        message.ack_with(AckKind::Progress).await.map_err(|e| {
            QueueError::Backend(format!("in-progress ack of job {}: {e}", delivery.id))
        })
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        let info = self
            .js
            .jobs
            .consumer_info(wire::JOBS_CONSUMER)
            .await
            .map_err(|e| QueueError::Backend(format!("consumer info: {e}")))?;
        Ok(usize::try_from(info.num_pending).unwrap_or(usize::MAX))
    }

    fn backend(&self) -> &'static str {
        "nats"
    }
}
