//! The contract between an inference node's job loop and where its jobs come from: a
//! [`NodeLink`] hands out [`Assignment`]s and takes progress and [`Outcome`]s. The loop
//! (`refrain_inference::worker::run`) and the links (the orchestrator's in-process
//! `EmbeddedLink`, the NATS node's `NatsLink`) live in different crates; these types live here so
//! both sides can use them without depending on each other. No I/O happens here.

use tokio_util::sync::CancellationToken;

use crate::{JobId, JobSpec, ProgressEvent};

/// One job handed to this node.
#[derive(Debug, Clone)]
pub struct Assignment {
    pub id: JobId,
    /// 1 on the first run, +1 on every redelivery.
    pub attempt: u32,
    pub spec: JobSpec,
    /// The link's own handle (queue delivery, JetStream message).
    pub handle: u64,
    /// Fires when this job is cancelled (created by the link, one per assignment): the pipeline
    /// stops between two steps and the run ends with [`Outcome::Cancelled`].
    pub cancel: CancellationToken,
}

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Every variant as a 16-bit stereo WAV file (index 0 is the first variant), and the length
    /// of one.
    Succeeded {
        wavs: Vec<Vec<u8>>,
        duration_seconds: f64,
    },
    /// Bad input: running it again cannot help.
    Invalid(String),
    /// A node-side error: worth another attempt while attempts are left.
    Retry(String),
    /// Shutdown interrupted the run: the job goes back untouched.
    Interrupted,
    /// The job's own cancellation token fired: the job must not run again.
    Cancelled,
}

/// Errors a link reports to the loop (which logs them and carries on).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct LinkError {
    pub message: String,
    /// A passing condition (a network outage, a busy disk): the job is worth another attempt.
    /// Otherwise the failure is final for this job (a missing upload, a bad name).
    pub transient: bool,
}

impl LinkError {
    /// A failure that retrying cannot fix.
    pub fn new(message: impl Into<String>) -> LinkError {
        LinkError {
            message: message.into(),
            transient: false,
        }
    }

    /// A failure that may pass: the job is retried while attempts are left.
    pub fn transient(message: impl Into<String>) -> LinkError {
        LinkError {
            message: message.into(),
            transient: true,
        }
    }
}

/// Where a node gets its jobs and inputs from, and where its reports go.
#[async_trait::async_trait]
pub trait NodeLink: Send + Sync + 'static {
    /// Waits for the next job this node should run (already marked running where the link
    /// keeps state). Must be cancel-safe: dropping the future loses no job.
    async fn next(&self) -> Result<Assignment, LinkError>;
    /// A progress event of a running job.
    async fn progress(&self, job: &Assignment, event: ProgressEvent);
    /// An uploaded file (reference audio or song) of job `job`, by blob name. Also asked for
    /// a job [`NodeLink::peek`] named, before it is assigned.
    async fn blob(&self, job: &JobId, name: &str) -> Result<Vec<u8>, LinkError>;
    /// The result WAV of an earlier job `source` that job `job` starts from (edit, init).
    async fn earlier_result(&self, job: &JobId, source: &JobId) -> Result<Vec<u8>, LinkError>;
    /// Records the outcome and releases the job (ack, nack or term). The loop may already have
    /// taken its next job ([`NodeLink::next`]) when this runs: a link must not mistake the
    /// finished job's end for the end of the one running now.
    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError>;
    /// The job this node would most likely be given next, if the link can tell without taking
    /// it (so that no other node is kept from it): its id and spec, for preparing its inputs
    /// while the current job runs. A guess: the job handed out may be another one. `None`:
    /// nothing waits, or the link cannot tell (the default).
    async fn peek(&self) -> Option<(JobId, JobSpec)> {
        None
    }
}

/// Settings of one node's worker.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Name for logs, e.g. `cpu` or `cuda:0`.
    pub name: String,
    /// Overrides every job's sampler steps (load tests).
    pub steps: Option<u32>,
    /// Longest reference recording decoded, seconds.
    pub max_reference_seconds: f64,
}
