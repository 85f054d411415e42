//! The orchestrator's side of the distributed deployment on NATS JetStream: inference nodes
//! (`refrain node`, one per GPU, on any machine that reaches NATS; the node runner is
//! `refrain_inference::nats`) and one orchestrator (`refrain serve` with
//! `queue.backend = "nats"`), with no shared filesystem.
//!
//! * [`crate::queue::nats`] — the job queue: the dispatcher ([`crate::queue::dispatch`]) keeps
//!   the fair-share backlog and publishes jobs (the message carries the whole
//!   [`wire::JobMessage`]) as nodes free up, on the shared work-queue consumer of
//!   `refrain_nats::jobs`.
//! * [`events`] — its durable consumer of node events applies the job store's compare-and-swap
//!   transitions, idempotent on (job id, attempt), and moves result WAVs from the object store
//!   into the output store; [`reconcile`] rebuilds the dispatcher's view at startup.
//! * [`bus`] — progress on core NATS subjects as a [`crate::progress::ProgressBus`].
//! * [`registry`] — the nodes' announcements, for `GET /api/v1/nodes` and `refrain_nodes`.
//!
//! The plumbing shared with the nodes — [`connect`], [`Settings`], [`JetStream`], [`Role`],
//! [`retry`], [`publish_durable`], [`objects`] and [`wire`] — lives in `refrain_nats` and is
//! re-exported here. [`DistributedError`] adds the orchestrator's own failures (store, outputs,
//! uploads) to `refrain_nats::NatsError`.

pub mod bus;
pub mod events;
pub mod reconcile;
pub mod registry;

pub use refrain_nats::{
    connect, host_name, objects, publish_durable, retry, wire, JetStream, NatsError, Role, Settings,
};

/// What can go wrong in the orchestrator's NATS side: NATS itself ([`NatsError`], shared with
/// the nodes), or the local stores an event is applied to.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Output(#[from] crate::outputs::OutputError),
    #[error(transparent)]
    Result(#[from] crate::jobs::results::ResultError),
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    /// Gave up waiting (shutdown or deadline).
    #[error("{0}: gave up")]
    GaveUp(String),
}

impl DistributedError {
    pub(crate) fn js(what: impl Into<String>, e: impl std::fmt::Display) -> DistributedError {
        NatsError::js(what, e).into()
    }

    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> DistributedError {
        NatsError::nats(what, e).into()
    }
}
