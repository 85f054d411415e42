//! The orchestrator's side of the distributed deployment on NATS JetStream: inference nodes
//! (`refrain node`, one per GPU, on any machine that reaches NATS; the node runner is
//! `refrain_inference::nats`) and one orchestrator (`refrain serve` with
//! `queue.backend = "nats"`), with no shared filesystem.
//!
//! * [`crate::queue::nats`] — the job queue: publishes jobs (the message carries the whole
//!   [`wire::JobMessage`]) on the shared work-queue consumer of `refrain_nats::jobs`.
//! * [`events`] — its durable consumer of node events applies the job store's compare-and-swap
//!   transitions, idempotent on (job id, attempt), and moves result WAVs from the object store
//!   into the output store; it also reconciles at startup.
//! * [`bus`] — progress on core NATS subjects as a [`crate::progress::ProgressBus`].
//! * [`registry`] — the nodes' announcements, for `GET /api/v1/nodes` and `refrain_nodes`.
//!
//! The plumbing shared with the nodes — [`connect`], [`Settings`], [`JetStream`], [`Role`],
//! [`retry`], [`publish_durable`], [`objects`] and [`wire`] — lives in `refrain_nats` and is
//! re-exported here. [`DistributedError`] adds the orchestrator's own failures (store, outputs,
//! uploads) to `refrain_nats::NatsError`.

pub mod bus;
pub mod events;
pub mod registry;

pub use refrain_nats::{
    connect, host_name, objects, publish_durable, retry, wire, JetStream, NatsError, Role, Settings,
};

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum DistributedError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    /// A JetStream API call (stream, consumer, publish, ack) failed.
    #[error("JetStream {what}: {message}")]
    JetStream { what: String, message: String },
    /// A core NATS call failed.
    #[error("NATS {what}: {message}")]
    Nats { what: String, message: String },
    #[error("object {bucket}/{name}: {message}")]
    Object {
        bucket: String,
        name: String,
        message: String,
    },
    #[error("object {bucket}/{name} does not exist")]
    ObjectNotFound { bucket: String, name: String },
    /// A message that does not decode.
    #[error("undecodable message on {subject}: {message}")]
    Decode { subject: String, message: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Output(#[from] crate::outputs::OutputError),
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    /// Gave up waiting (shutdown or deadline).
    #[error("{0}: gave up")]
    GaveUp(String),
}

impl From<NatsError> for DistributedError {
    fn from(e: NatsError) -> DistributedError {
        match e {
            NatsError::Connect { url, message } => DistributedError::Connect { url, message },
            NatsError::JetStream { what, message } => DistributedError::JetStream { what, message },
            NatsError::Nats { what, message } => DistributedError::Nats { what, message },
            NatsError::Object {
                bucket,
                name,
                message,
            } => DistributedError::Object {
                bucket,
                name,
                message,
            },
            NatsError::ObjectNotFound { bucket, name } => {
                DistributedError::ObjectNotFound { bucket, name }
            }
            NatsError::Decode { subject, message } => DistributedError::Decode { subject, message },
            NatsError::GaveUp(what) => DistributedError::GaveUp(what),
        }
    }
}

impl DistributedError {
    pub(crate) fn js(what: impl Into<String>, e: impl std::fmt::Display) -> DistributedError {
        NatsError::js(what, e).into()
    }

    pub(crate) fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> DistributedError {
        NatsError::nats(what, e).into()
    }
}
