//! The NATS JetStream queue of the distributed deployment, as the orchestrator uses it.
//!
//! One work-queue stream (`REFRAIN_JOBS`, file storage, `max_age`, a duplicate window) with one
//! subject per job, and one durable pull consumer shared by every node (`max_ack_pending` ≥ the
//! number of nodes, `ack_wait`, `max_deliver` = `inference.max_attempts`). The message carries
//! the whole [`JobMessage`] (nodes have no access to the job store) and its `Nats-Msg-Id` is the
//! job id, so publishing a job twice within the window is a no-op.
//!
//! [`NatsQueue::orchestrator`] implements `enqueue`: it reads the job record (already flushed to
//! sled), puts the files the job needs into the inputs bucket, then publishes and waits for the
//! stream's acknowledgement — only then may the client get 202. Taking and settling jobs
//! (`next`, `ack`, `nack`, `in_progress`) go through `refrain_nats::jobs::JobConsumer`, the
//! same consumer the nodes use (`refrain_inference::nats`).

use std::time::Duration;

use protocol::{JobId, JobRecord, SongRef, StyleSpec};
use refrain_nats::jobs::{self, JobConsumer};
use tokio_util::sync::CancellationToken;

use super::{Delivery, Queue, QueueError, QueueItem};
use crate::blobs::BlobStore;
use crate::distributed::objects::Bucket;
use crate::distributed::wire::{self, JobMessage};
use crate::distributed::{publish_durable, retry, DistributedError, JetStream, NatsError, Role};
use crate::outputs::OutputStore;
use crate::store::JobStore;

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

impl From<NatsError> for QueueError {
    fn from(e: NatsError) -> QueueError {
        QueueError::Backend(e.to_string())
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
    jobs: JobConsumer,
    inputs: Inputs,
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
    /// The orchestrator's queue: publishes jobs of `store`, with the files they name.
    pub fn orchestrator(
        js: JetStream,
        store: JobStore,
        blobs: BlobStore,
        outputs: OutputStore,
    ) -> NatsQueue {
        NatsQueue {
            jobs: JobConsumer::new(js.clone(), Role::Orchestrator),
            js,
            inputs: Inputs {
                store,
                blobs,
                outputs,
            },
        }
    }

    pub fn jetstream(&self) -> &JetStream {
        &self.js
    }

    /// Whether the stream still holds a message of this job (waiting, in flight, or out of
    /// deliveries).
    pub async fn holds(&self, id: &JobId) -> Result<bool, DistributedError> {
        Ok(self.jobs.holds(id).await?)
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
                        .ok_or_else(|| NatsError::ObjectNotFound {
                            bucket: "outputs".into(),
                            name: format!("result of job {source}"),
                        })?;
                    let path = inputs.outputs.resolve(&file)?;
                    let bytes = tokio::fs::read(&path)
                        .await
                        .map_err(|e| NatsError::Object {
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
        let payload = serde_json::to_vec(&message).map_err(|e| NatsError::Decode {
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
    async fn enqueue(&self, item: &QueueItem) -> Result<(), QueueError> {
        let id = &item.id;
        let never = CancellationToken::new();
        retry(
            &format!("publishing job {id}"),
            &never,
            Some(ENQUEUE_DEADLINE),
            || self.publish(&self.inputs, id),
        )
        .await
        .map_err(QueueError::from)
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

    async fn depth(&self) -> Result<usize, QueueError> {
        Ok(self.jobs.depth().await?)
    }

    /// Deletes the job's message from the work queue (a waiting one never reaches a node; one
    /// in flight cannot be acked any more), then tells every node on `refrain.cancel.<id>`:
    /// the node running it stops between two steps, reports `cancelled` and terminates it. A
    /// node that misses the notice finishes the job and its result is ignored (the job is
    /// terminal).
    async fn cancel(&self, id: &JobId) -> Result<(), QueueError> {
        let js = self.jetstream();
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

    /// JetStream hands jobs out in publication order; the orchestrator estimates from the store.
    async fn position(&self, _id: &JobId) -> Result<Option<usize>, QueueError> {
        Ok(None)
    }

    fn backend(&self) -> &'static str {
        "nats"
    }
}
