//! The orchestrator's error type. Store, queue and inference errors keep their own enums; this
//! one adds the client-facing cases. `api::error` is the single place that maps it to HTTP
//! status codes and each API's own error body.

use protocol::JobId;
use thiserror::Error;

use crate::queue::QueueError;
use crate::store::StoreError;

#[derive(Debug, Error)]
pub enum OrchestratorError {
    /// A request field is missing or invalid (400).
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A field or the body exceeds its size limit (413).
    #[error("{field} is larger than the limit of {limit} bytes")]
    TooLarge { field: String, limit: usize },
    /// The queue is at capacity (503 with Retry-After).
    #[error("server is busy: {running} running and {queued} queued jobs, try again later")]
    Busy {
        running: usize,
        queued: usize,
        retry_after: u64,
    },
    /// The owner is over one of its limits (429 with Retry-After).
    #[error("{message}")]
    OwnerLimit { message: String, retry_after: u64 },
    /// No such job or file (404).
    #[error("no job or file {0}")]
    NotFound(String),
    /// The service is starting or stopping (503).
    #[error("service not ready: {0}")]
    NotReady(String),
    #[error("job {0} cannot be changed in its current state")]
    Conflict(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl OrchestratorError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        OrchestratorError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}
