//! The queue between the orchestrator and the inference nodes, as a trait with two backends:
//! the embedded one (a sled tree in this process, for one machine) and NATS JetStream (for
//! nodes on other machines). Everything above it — APIs, workers, scheduler — is written
//! against [`Queue`] and does not know which one runs.
//!
//! The contract both backends keep: durable (an `enqueue` that returned survives a crash),
//! at-least-once (a message not acked comes back, after a crash too), and one consumer per
//! message at a time. Both hand jobs out in the same fair-share order, decided by one piece of
//! code, [`fair::FairQueue`]: interactive before batch, owners taking turns, FIFO within an
//! owner. The embedded queue applies it to each `next()` ([`embedded`]); in NATS mode the
//! orchestrator keeps the backlog and the [`dispatch`] task publishes into the JetStream work
//! queue only as many jobs as nodes can take, in that order ([`nats`]). A message carries only
//! a job id (the NATS message also carries the spec, for nodes without the store); the job
//! store is the truth about the job, and completion is idempotent on (job id, attempt).

pub mod dispatch;
pub mod embedded;
pub mod fair;
pub mod nats;

use std::time::Duration;

use protocol::{JobId, JobRecord, Owner, Priority};

use crate::store::StoreError;

pub use embedded::EmbeddedQueue;

/// What can go wrong in a queue backend.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("queue: {0}")]
    Sled(#[from] sled::Error),
    /// The queue was closed (shutdown): no more messages.
    #[error("queue closed")]
    Closed,
    #[error("queue backend: {0}")]
    Backend(String),
}

/// What the queue knows of a job: enough to order it fairly.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct QueueItem {
    pub id: JobId,
    #[serde(default)]
    pub owner: Owner,
    #[serde(default)]
    pub priority: Priority,
}

impl QueueItem {
    /// The item of a job record.
    pub fn of(record: &JobRecord) -> QueueItem {
        QueueItem {
            id: record.id.clone(),
            owner: record.owner.clone(),
            priority: record.priority,
        }
    }

    /// An anonymous interactive item (tests, tools).
    pub fn plain(id: &JobId) -> QueueItem {
        QueueItem {
            id: id.clone(),
            owner: Owner::anonymous(),
            priority: Priority::Interactive,
        }
    }
}

/// A message handed to one worker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: JobId,
    /// 1 on first delivery; +1 on every redelivery (nack, restart, lease expiry).
    pub delivered: u32,
    /// The backend's handle of this delivery; acking or nacking a stale handle is a no-op.
    pub handle: u64,
}

/// The queue between the orchestrator and inference nodes: durable, at-least-once, fair.
#[async_trait::async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Durably enqueues a job whose record is already in the job store: the embedded queue
    /// flushes its tree before returning; the NATS backlog is rebuilt from the store's queued
    /// jobs at startup. Enqueuing an id already waiting or in flight is a no-op.
    async fn enqueue(&self, item: &QueueItem) -> Result<(), QueueError>;
    /// Writes `item` without making it durable, when this queue lives in the job store's
    /// database and shares its group commit (the embedded queue of `refrain serve`): the flush
    /// that makes the job durable then makes its message durable too, one flush per submit
    /// instead of two. `Ok(false)`: this queue cannot; call [`Queue::enqueue`] once the job is
    /// committed. The message may be handed out before that flush: a node's start of the job
    /// is itself a flushed state change, and a crash before the flush loses both (the submit
    /// got no 2xx).
    fn enqueue_unflushed(&self, _item: &QueueItem) -> Result<bool, QueueError> {
        Ok(false)
    }
    /// Removes a waiting job durably and tells whoever runs it to stop (the NATS nodes; the
    /// embedded nodes are stopped through [`crate::jobs::RunningJobs`]). Idempotent.
    async fn cancel(&self, id: &JobId) -> Result<(), QueueError>;
    /// The 0-based position a waiting job would be handed out at if nothing else arrived;
    /// `None` when the backend cannot tell (the caller estimates).
    async fn position(&self, id: &JobId) -> Result<Option<usize>, QueueError>;
    /// Waits for the next message; each message is delivered to one caller at a time.
    /// Cancel-safe (used in `tokio::select!` with a shutdown token): a message is never lost
    /// when the future is dropped.
    async fn next(&self) -> Result<Delivery, QueueError>;
    /// Done with it: removed durably (flushed).
    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Give it back to be delivered again (after `delay`), with `delivered + 1`.
    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError>;
    /// Still working on it (keeps a lease alive; the embedded queue has no lease: no-op).
    async fn in_progress(&self, delivery: &Delivery) -> Result<(), QueueError>;
    /// Messages waiting (not in flight).
    async fn depth(&self) -> Result<usize, QueueError>;
    /// The job `next()` would hand out now, without handing it out (for preparing its inputs
    /// ahead); `None` when nothing is available or the backend cannot tell.
    fn peek(&self) -> Option<JobId> {
        None
    }
    /// Backend name for logs and metrics ("embedded", "nats").
    fn backend(&self) -> &'static str;
}
