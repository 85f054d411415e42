//! The NATS JetStream queue of the distributed deployment, as the orchestrator uses it.
//!
//! One work-queue stream (`REFRAIN_JOBS`, file storage, `max_age`, a duplicate window) with one
//! subject per job, and one durable pull consumer shared by every node (`max_ack_pending` ≥ the
//! number of nodes, `ack_wait`, no `max_deliver`: nodes count attempts from the job's events). The message carries
//! the whole [`JobMessage`] (nodes have no access to the job store) and its `Nats-Msg-Id` is the
//! job id, so publishing a job twice within the window is a no-op.
//!
//! Jobs are not published when they are admitted: [`NatsQueue::enqueue`] hands them to the
//! dispatcher ([`super::dispatch`]), which keeps the fair-share backlog and publishes a job only
//! when a node slot is free, so the order nodes get jobs in is the same fair order as the
//! embedded queue's. The job record, flushed to sled before `enqueue` is called, is what makes
//! the backlog durable: it is rebuilt from the store at startup
//! (`crate::distributed::reconcile::reconcile`, then [`NatsQueue::seed`]).
//!
//! [`Publisher::publish`] reads the job record, puts the files the job needs into the inputs
//! bucket, then publishes and waits for the stream's acknowledgement. [`Publisher::withdraw`]
//! deletes a cancelled job's message and tells the nodes. Taking and settling jobs (`next`,
//! `ack`, `nack`, `in_progress`) go through `refrain_nats::jobs::JobConsumer`, the same consumer
//! the nodes use (`refrain_inference::nats`).

use std::sync::Arc;
use std::time::Duration;

use protocol::{JobId, JobRecord, JobState, SongRef, StyleSpec};
use refrain_nats::jobs::{self, JobConsumer};
use tokio::sync::{mpsc, oneshot, watch};

use super::dispatch::{Cancelled, Command, Dispatcher};
use super::{Delivery, Queue, QueueError, QueueItem};
use crate::blobs::BlobStore;
use crate::distributed::objects::Bucket;
use crate::distributed::wire::{self, JobMessage};
use crate::distributed::{publish_durable, DistributedError, JetStream, NatsError, Role};
use crate::jobs::Lifecycle;
use crate::outputs::OutputStore;
use crate::store::JobStore;

impl From<DistributedError> for QueueError {
    fn from(e: DistributedError) -> QueueError {
        match e {
            DistributedError::Store(e) => QueueError::Store(e),
            other => QueueError::Backend(other.to_string()),
        }
    }
}

impl From<NatsError> for QueueError {
    fn from(e: NatsError) -> QueueError {
        QueueError::Backend(e.to_string())
    }
}

/// Why a job could not be published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A file the job needs is gone or unreadable: it can never run.
    #[error("job {id}: {message}")]
    Input { id: JobId, message: String },
    /// NATS or the store failed: worth trying again.
    #[error(transparent)]
    Distributed(#[from] DistributedError),
}

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The job's message is in the work stream.
    InStream,
    /// The job is not queued any more (cancelled, finished, deleted): nothing was published.
    NotQueued,
}

/// Publishes jobs of the store, with the files they name, and withdraws cancelled ones.
pub struct Publisher {
    js: JetStream,
    /// For look-ups only (the orchestrator takes no jobs).
    jobs: JobConsumer,
    store: JobStore,
    blobs: BlobStore,
    outputs: OutputStore,
}

impl Publisher {
    /// Whether the stream still holds a message of this job (waiting, in flight, or out of
    /// deliveries).
    pub async fn holds(&self, id: &JobId) -> Result<bool, DistributedError> {
        Ok(self.jobs.holds(id).await?)
    }

    fn input_error(id: &JobId, message: impl std::fmt::Display) -> PublishError {
        PublishError::Input {
            id: id.clone(),
            message: message.to_string(),
        }
    }

    /// Puts the files a job names into the inputs bucket.
    async fn put_inputs(&self, record: &JobRecord) -> Result<(), PublishError> {
        let id = &record.id;
        let mut uploads = Vec::new();
        if let StyleSpec::Upload(name) = &record.spec.style {
            uploads.push(name.clone());
        }
        // The songs it starts from: its edit song and its init song.
        for song in record.spec.songs() {
            match song {
                SongRef::Upload(name) => uploads.push(name.clone()),
                SongRef::Output(source) => {
                    let file = self
                        .store
                        .get(source)
                        .map_err(DistributedError::from)?
                        .and_then(|r| r.result)
                        .map(|r| r.file)
                        .ok_or_else(|| {
                            Self::input_error(id, format!("the result of job {source} is gone"))
                        })?;
                    let path = self
                        .outputs
                        .resolve(&file)
                        .map_err(|e| Self::input_error(id, e))?;
                    let bytes = tokio::fs::read(&path).await.map_err(|e| {
                        Self::input_error(id, format!("reading the result of job {source}: {e}"))
                    })?;
                    let name = wire::input_object(id, &wire::earlier_result_name(source));
                    self.js
                        .objects
                        .put(Bucket::Inputs, &name, &bytes)
                        .await
                        .map_err(DistributedError::from)?;
                }
            }
        }
        for blob in uploads {
            let bytes = self
                .blobs
                .read(&blob)
                .await
                .map_err(|e| Self::input_error(id, e))?;
            self.js
                .objects
                .put(Bucket::Inputs, &wire::input_object(id, &blob), &bytes)
                .await
                .map_err(DistributedError::from)?;
        }
        Ok(())
    }

    /// Publishes a queued job (one try; the dispatcher tries again later on an error) and
    /// waits for the stream's acknowledgement.
    pub async fn publish(&self, id: &JobId) -> Result<Published, PublishError> {
        let Some(record) = self.store.get(id).map_err(DistributedError::from)? else {
            return Ok(Published::NotQueued);
        };
        if record.state != JobState::Queued {
            return Ok(Published::NotQueued);
        }
        self.put_inputs(&record).await?;
        let message = JobMessage {
            id: record.id.clone(),
            spec: record.spec.clone(),
            created_ms: record.created_ms,
            attempt_base: record.attempt.saturating_sub(1),
        };
        let payload = serde_json::to_vec(&message).map_err(|e| {
            DistributedError::from(NatsError::Decode {
                subject: wire::job_subject(id),
                message: e.to_string(),
            })
        })?;
        let duplicate = publish_durable(
            &self.js.js,
            wire::job_subject(id),
            &message.message_id(),
            payload,
        )
        .await
        .map_err(DistributedError::from)?;
        if duplicate {
            tracing::debug!(job = %id, "job was already published");
        }
        Ok(Published::InStream)
    }

    /// Deletes the job's message from the work queue (a waiting one never reaches a node; one
    /// in flight cannot be acked any more), then tells every node on `refrain.cancel.<id>`:
    /// the node running it stops between two steps, reports `cancelled` and terminates it. A
    /// node that misses the notice finishes the job and its result is ignored (the job is
    /// terminal).
    pub async fn withdraw(&self, id: &JobId) -> Result<(), QueueError> {
        let js = &self.js;
        let subject = wire::job_subject(id);
        match js.jobs.get_last_raw_message_by_subject(&subject).await {
            Ok(message) => {
                if let Err(e) = js.jobs.delete_message(message.sequence).await {
                    tracing::debug!(job = %id, error = %e, "job message already gone");
                }
            }
            Err(e) => tracing::debug!(job = %id, error = %e, "no job message to delete"),
        }
        js.client
            .publish(wire::cancel_subject(id), bytes::Bytes::new())
            .await
            .map_err(|e| QueueError::Backend(format!("publishing the cancel of {id}: {e}")))?;
        js.client
            .flush()
            .await
            .map_err(|e| QueueError::Backend(format!("publishing the cancel of {id}: {e}")))?;
        Ok(())
    }
}

/// The JetStream work queue, with the orchestrator's fair-share backlog in front of it.
pub struct NatsQueue {
    js: JetStream,
    jobs: JobConsumer,
    publisher: Arc<Publisher>,
    commands: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue").finish_non_exhaustive()
    }
}

fn to_nats(d: &Delivery) -> jobs::Delivery {
    jobs::Delivery {
        id: d.id.clone(),
        delivered: d.delivered,
        handle: d.handle,
    }
}

impl NatsQueue {
    /// The orchestrator's queue over the jobs of `lifecycle`'s store, and the dispatcher that
    /// publishes them (to be spawned: [`Dispatcher::spawn`]). `live_nodes` follows the number of
    /// live nodes; `prefetch` is how many jobs may wait in the stream beyond one per live node.
    pub fn orchestrator(
        js: JetStream,
        lifecycle: &Lifecycle,
        blobs: BlobStore,
        outputs: OutputStore,
        live_nodes: watch::Receiver<usize>,
        prefetch: usize,
    ) -> (NatsQueue, Dispatcher) {
        let publisher = Arc::new(Publisher {
            jobs: JobConsumer::new(js.clone(), Role::Orchestrator),
            js: js.clone(),
            store: lifecycle.store().clone(),
            blobs,
            outputs,
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let dispatcher = Dispatcher::new(
            receiver,
            publisher.clone(),
            lifecycle.clone(),
            live_nodes,
            prefetch,
        );
        let queue = NatsQueue {
            jobs: JobConsumer::new(js.clone(), Role::Orchestrator),
            js,
            publisher,
            commands,
        };
        (queue, dispatcher)
    }

    pub fn jetstream(&self) -> &JetStream {
        &self.js
    }

    /// Whether the stream still holds a message of this job (waiting, in flight, or out of
    /// deliveries).
    pub async fn holds(&self, id: &JobId) -> Result<bool, DistributedError> {
        self.publisher.holds(id).await
    }

    /// Tells the dispatcher which jobs the work stream holds at startup (with whether a node
    /// started each): they count as in flight. The dispatcher publishes nothing before this.
    pub fn seed(&self, held: Vec<(QueueItem, bool)>) -> Result<(), QueueError> {
        self.send(Command::Seed(held))
    }

    fn send(&self, command: Command) -> Result<(), QueueError> {
        self.commands.send(command).map_err(|_| QueueError::Closed)
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, QueueError> {
        let (tx, rx) = oneshot::channel();
        self.send(make(tx))?;
        rx.await.map_err(|_| QueueError::Closed)
    }
}

#[async_trait::async_trait]
impl Queue for NatsQueue {
    /// Into the dispatcher's backlog (the record is already durable in the store).
    async fn enqueue(&self, item: &QueueItem) -> Result<(), QueueError> {
        self.send(Command::Enqueue(item.clone()))
    }

    async fn next(&self) -> Result<Delivery, QueueError> {
        loop {
            if let Some((delivery, _)) = self.jobs.take().await? {
                return Ok(Delivery {
                    id: delivery.id,
                    delivered: delivery.delivered,
                    handle: delivery.handle,
                });
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        Ok(self.jobs.ack(&to_nats(delivery)).await?)
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        Ok(self.jobs.nack(&to_nats(delivery), delay).await?)
    }

    async fn in_progress(&self, delivery: &Delivery) -> Result<(), QueueError> {
        Ok(self.jobs.in_progress(&to_nats(delivery)).await?)
    }

    /// Jobs in the backlog plus jobs published that no node has started yet.
    async fn depth(&self) -> Result<usize, QueueError> {
        self.ask(Command::Depth).await
    }

    /// A job still in the backlog is only removed from it (it was never published); a
    /// published one is withdrawn from the stream and its node told to stop
    /// ([`Publisher::withdraw`]).
    async fn cancel(&self, id: &JobId) -> Result<(), QueueError> {
        match self.ask(|tx| Command::Cancel(id.clone(), tx)).await? {
            Cancelled::Waiting => Ok(()),
            Cancelled::Published | Cancelled::Unknown => self.publisher.withdraw(id).await,
        }
    }

    /// From the dispatcher: published jobs not started yet in publication order, then the
    /// backlog in fair-share order.
    async fn position(&self, id: &JobId) -> Result<Option<usize>, QueueError> {
        self.ask(|tx| Command::Position(id.clone(), tx)).await
    }

    fn backend(&self) -> &'static str {
        "nats"
    }
}
