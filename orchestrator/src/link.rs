//! The embedded deployment's [`NodeLink`]: in-process inference nodes take jobs from the
//! durable queue and report to the job core's [`crate::jobs::Lifecycle`] directly.
//!
//! Every state change is the lifecycle's compare-and-swap on (id, state, attempt), flushed
//! before the queue message is acknowledged. A crash at any point leaves either a job that will
//! be delivered again or a finished job whose duplicate delivery is dropped. Re-running a job
//! gives the same bytes: the seed is fixed in the spec at admission.
//!
//! Cancel: each assignment carries its own token, registered in [`crate::jobs::RunningJobs`]
//! so `App::cancel` can stop the generation between two sampler steps.
//!
//! Ahead of time: [`NodeLink::peek`] names the job the fair order would hand out now (the
//! queue's choice, taken by nobody), so the worker prepares its inputs while its current job
//! runs; and the worker may take the next job before the previous one's `finish` is done, so
//! `finish` marks the node idle only if it still runs the finished job.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::node::{Assignment, LinkError, NodeLink, Outcome};
use protocol::{JobId, JobRecord, JobState, ProgressEvent, Stage};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::jobs::{results, Retry};
use crate::progress::ProgressMessage;
use crate::queue::Delivery;
use crate::service::App;
use crate::store::StoreError;

/// How long a failed attempt waits before it is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// A node's link to the embedded queue and store.
pub struct EmbeddedLink {
    app: App,
    /// The node's name in the registry (`GET /api/v1/nodes`).
    node: String,
    /// Deliveries of the jobs this node holds, by handle.
    held: Mutex<HashMap<u64, Delivery>>,
    last_step: Mutex<Option<Instant>>,
}

impl EmbeddedLink {
    pub fn new(app: App, node: String) -> EmbeddedLink {
        EmbeddedLink {
            app,
            node,
            held: Mutex::new(HashMap::new()),
            last_step: Mutex::new(None),
        }
    }

    async fn ack(&self, delivery: &Delivery) {
        if let Err(e) = self.app.queue().ack(delivery).await {
            tracing::error!(job = %delivery.id, error = %e, "cannot ack message");
        }
    }

    async fn nack(&self, delivery: &Delivery) {
        if let Err(e) = self.app.queue().nack(delivery, RETRY_DELAY).await {
            tracing::error!(job = %delivery.id, error = %e, "cannot nack message");
        }
    }

    /// Marks the delivered job running; `None` (message settled) when it is not to be run.
    async fn to_running(&self, delivery: &Delivery) -> Option<JobRecord> {
        let id = &delivery.id;
        let record = match self.app.store().get(id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::warn!(job = %id, "queued job has no record (deleted); dropping the message");
                self.ack(delivery).await;
                return None;
            }
            Err(e) => {
                tracing::error!(job = %id, error = %e, "cannot read job; giving the message back");
                self.nack(delivery).await;
                return None;
            }
        };
        if record.state != JobState::Queued {
            tracing::info!(job = %id, state = %record.state, "job is not queued; dropping the message");
            self.ack(delivery).await;
            return None;
        }
        match self
            .app
            .lifecycle()
            .start(id, record.attempt, record.attempt)
            .await
        {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot start job (lost a race); dropping the message");
                self.ack(delivery).await;
                None
            }
        }
    }

    fn set_busy(&self, job: Option<(&JobId, u32)>, done: bool) {
        self.app.nodes().update_in_process(&self.node, job, done);
    }

    /// The job at the head of the queue, as the next `next()` would most likely hand it out.
    async fn head(&self) -> Option<(JobId, protocol::JobSpec)> {
        let id = self.app.queue().peek()?;
        match self.app.store().get(&id) {
            Ok(Some(record)) if record.state == JobState::Queued => Some((id, record.spec)),
            _ => None,
        }
    }
}

#[async_trait::async_trait]
impl NodeLink for EmbeddedLink {
    async fn next(&self) -> Result<Assignment, LinkError> {
        loop {
            let delivery = self
                .app
                .queue()
                .next()
                .await
                .map_err(|e| LinkError::new(e.to_string()))?;
            // From here on the delivery must not be lost: finish the start before returning.
            if let Some(record) = self.to_running(&delivery).await {
                let handle = delivery.handle;
                let cancel = CancellationToken::new();
                self.app.running().insert(&record.id, cancel.clone());
                // A cancel that landed between the start and the registration.
                if matches!(self.app.store().get(&record.id), Ok(Some(r)) if r.state != JobState::Running)
                {
                    cancel.cancel();
                }
                self.held.lock().await.insert(handle, delivery);
                *self.last_step.lock().await = None;
                self.set_busy(Some((&record.id, record.attempt)), false);
                return Ok(Assignment {
                    id: record.id,
                    attempt: record.attempt,
                    spec: record.spec,
                    handle,
                    cancel,
                });
            }
        }
    }

    async fn progress(&self, job: &Assignment, event: ProgressEvent) {
        if event.stage == Stage::Sampling {
            let now = Instant::now();
            let mut last = self.last_step.lock().await;
            if let Some(prev) = *last {
                self.app
                    .metrics()
                    .step_seconds
                    .observe((now - prev).as_secs_f64());
            }
            *last = Some(now);
        }
        self.app
            .nodes()
            .progress_in_process(&self.node, &job.id, event.percent);
        let message = ProgressMessage {
            id: job.id.clone(),
            attempt: job.attempt,
            event,
        };
        if let Err(e) = self.app.bus().publish(message).await {
            tracing::warn!(job = %job.id, error = %e, "cannot publish progress");
        }
    }

    async fn blob(&self, _job: &JobId, name: &str) -> Result<Vec<u8>, LinkError> {
        self.app.blobs().read(name).await.map_err(|e| match e {
            // A disk error may pass; a missing or invalid upload will not.
            crate::blobs::BlobError::Io { .. } => LinkError::transient(e.to_string()),
            other => LinkError::new(other.to_string()),
        })
    }

    async fn earlier_result(&self, _for: &JobId, job: &JobId) -> Result<Vec<u8>, LinkError> {
        let file = self
            .app
            .store()
            .get(job)
            .map_err(|e| LinkError::new(e.to_string()))?
            .and_then(|r| r.result)
            .map(|r| r.file)
            .ok_or_else(|| LinkError::new(format!("job {job} has no result")))?;
        let path = self
            .app
            .outputs()
            .resolve(&file)
            .map_err(|e| LinkError::new(e.to_string()))?;
        tokio::fs::read(&path)
            .await
            .map_err(|e| LinkError::new(format!("the result of job {job} is gone ({e})")))
    }

    async fn peek(&self) -> Option<(JobId, protocol::JobSpec)> {
        self.head().await
    }

    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        let Some(delivery) = self.held.lock().await.remove(&job.handle) else {
            return Err(LinkError::new(format!(
                "job {} is not held by this node",
                job.id
            )));
        };
        self.app.running().remove(&job.id);
        self.app.board().forget(&job.id).await;
        // The worker may have taken its next job already: only that job's own end is idle.
        self.app.nodes().finished_in_process(&self.node, &job.id);
        let lifecycle = self.app.lifecycle();
        let (id, attempt) = (&job.id, job.attempt);
        let recorded: Result<(), StoreError> = match outcome {
            Outcome::Succeeded {
                wavs,
                duration_seconds,
            } => {
                let written = results::store_variants(
                    self.app.outputs(),
                    id,
                    &job.spec,
                    attempt,
                    &wavs,
                    duration_seconds,
                )
                .await;
                match written {
                    Ok(result) => lifecycle.succeed(id, attempt, result).await.map(|_| ()),
                    Err(e) if e.is_permanent() => {
                        // Writing it again cannot succeed: fail now, do not retry.
                        tracing::error!(job = %id, error = %e, "cannot write the result; failing the job");
                        let expect = crate::jobs::Expect::new(JobState::Running, attempt);
                        lifecycle
                            .fail(id, expect, attempt, format!("writing result: {e}"))
                            .await
                            .map(|_| ())
                    }
                    Err(e) => {
                        // Like a node error: retry (the queue message is still ours).
                        tracing::error!(job = %id, error = %e, "cannot write the result");
                        return self
                            .retry(&delivery, id, attempt, format!("writing result: {e}"))
                            .await;
                    }
                }
            }
            Outcome::Invalid(message) => {
                let expect = crate::jobs::Expect::new(JobState::Running, attempt);
                lifecycle
                    .fail(id, expect, attempt, message)
                    .await
                    .map(|_| ())
            }
            Outcome::Retry(message) => return self.retry(&delivery, id, attempt, message).await,
            Outcome::Interrupted => {
                // A graceful hand-back is not a failed attempt; the message stays in the durable
                // queue for the next start.
                if let Err(e) = lifecycle.hand_back(id, attempt).await {
                    tracing::info!(job = %id, error = %e, "interrupted job was not running any more");
                }
                return Ok(());
            }
            // The lifecycle already recorded the cancel; only the message is left.
            Outcome::Cancelled => Ok(()),
        };
        if let Err(e) = recorded {
            // Someone else changed the job meanwhile (cancelled): the outcome is ignored.
            tracing::warn!(job = %id, attempt, error = %e, "job changed while running; outcome ignored");
        }
        self.ack(&delivery).await;
        Ok(())
    }
}

impl EmbeddedLink {
    async fn retry(
        &self,
        delivery: &Delivery,
        id: &JobId,
        attempt: u32,
        message: String,
    ) -> Result<(), LinkError> {
        match self.app.lifecycle().retry(id, attempt, message).await {
            Ok(Retry::Queued(_)) => self.nack(delivery).await,
            Ok(Retry::GaveUp(_)) => self.ack(delivery).await,
            Err(e) => {
                tracing::warn!(job = %id, attempt, error = %e, "job changed while running; outcome ignored");
                self.ack(delivery).await;
            }
        }
        Ok(())
    }
}
