//! The embedded deployment's [`NodeLink`]: in-process inference nodes take jobs from the
//! durable queue and record outcomes directly in the job store and the output store.
//!
//! Every state change is the store's compare-and-swap on (id, state, attempt), which flushes,
//! before the queue message is acknowledged. A crash at any point leaves either a job that will
//! be delivered again or a finished job whose duplicate delivery is dropped. Re-running a job
//! gives the same bytes: the seed is fixed in the spec at admission.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use protocol::{JobId, JobRecord, JobResult, JobState, ProgressEvent, Stage};
use refrain_inference::worker::{Assignment, LinkError, NodeLink, Outcome};
use tokio::sync::Mutex;

use crate::outputs::OutputStore;
use crate::progress::ProgressMessage;
use crate::queue::Delivery;
use crate::service::App;
use crate::store::{now_ms, StoreError};

/// How long a failed attempt waits before it is delivered again.
const RETRY_DELAY: Duration = Duration::from_secs(2);

/// A node's link to the embedded queue and store.
pub struct EmbeddedLink {
    app: App,
    max_attempts: u32,
    /// Deliveries and start times of the jobs this node holds, by handle.
    held: Mutex<HashMap<u64, (Delivery, Instant)>>,
    last_step: Mutex<Option<Instant>>,
}

impl EmbeddedLink {
    pub fn new(app: App, max_attempts: u32) -> EmbeddedLink {
        EmbeddedLink {
            app,
            max_attempts,
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
            tracing::info!(job = %id, state = %record.state, "job is not queued; dropping the duplicate message");
            self.ack(delivery).await;
            return None;
        }
        let started = self
            .app
            .store()
            .transition(id, JobState::Queued, Some(record.attempt), |r| {
                r.state = JobState::Running;
                r.started_ms = Some(now_ms());
                r.progress = None;
                r.error = None;
            })
            .await;
        match started {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(job = %id, error = %e, "cannot start job (lost a race); dropping the message");
                self.ack(delivery).await;
                None
            }
        }
    }

    async fn fail(
        &self,
        id: &JobId,
        attempt: u32,
        message: String,
    ) -> Result<JobRecord, StoreError> {
        self.app
            .store()
            .transition(id, JobState::Running, Some(attempt), |r| {
                r.state = JobState::Failed;
                r.finished_ms = Some(now_ms());
                r.error = Some(message);
            })
            .await
    }

    async fn requeue(&self, id: &JobId, attempt: u32) -> Result<JobRecord, StoreError> {
        self.app
            .store()
            .transition(id, JobState::Running, Some(attempt), |r| {
                r.state = JobState::Queued;
                r.attempt = attempt + 1;
                r.progress = None;
                r.started_ms = None;
            })
            .await
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
                self.held
                    .lock()
                    .await
                    .insert(handle, (delivery, Instant::now()));
                *self.last_step.lock().await = None;
                return Ok(Assignment {
                    id: record.id,
                    attempt: record.attempt,
                    spec: record.spec,
                    handle,
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
        let message = ProgressMessage {
            id: job.id.clone(),
            attempt: job.attempt,
            event,
        };
        if let Err(e) = self.app.bus().publish(message).await {
            tracing::warn!(job = %job.id, error = %e, "cannot publish progress");
        }
    }

    async fn blob(&self, name: &str) -> Result<Vec<u8>, LinkError> {
        self.app.blobs().read(name).await.map_err(|e| match e {
            // A disk error may pass; a missing or invalid upload will not.
            crate::blobs::BlobError::Io { .. } => LinkError::transient(e.to_string()),
            other => LinkError::new(other.to_string()),
        })
    }

    async fn earlier_result(&self, job: &JobId) -> Result<Vec<u8>, LinkError> {
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

    async fn finish(&self, job: Assignment, outcome: Outcome) -> Result<(), LinkError> {
        let Some((delivery, started)) = self.held.lock().await.remove(&job.handle) else {
            return Err(LinkError::new(format!(
                "job {} is not held by this node",
                job.id
            )));
        };
        self.app
            .metrics()
            .job_seconds
            .observe(started.elapsed().as_secs_f64());
        self.app.board().forget(&job.id).await;
        let (id, attempt) = (&job.id, job.attempt);
        let recorded = match outcome {
            Outcome::Succeeded {
                wav,
                duration_seconds,
            } => {
                let relative = OutputStore::relative(job.spec.output_subdir.as_deref(), id);
                let bytes = match self.app.outputs().write(&relative, &wav).await {
                    Ok(n) => n,
                    Err(e) => {
                        // Treat like a node error: retry (the queue message is still ours).
                        tracing::error!(job = %id, error = %e, "cannot write the result");
                        return self
                            .retry_or_fail(&delivery, id, attempt, format!("writing result: {e}"))
                            .await;
                    }
                };
                let result = JobResult {
                    file: relative,
                    bytes,
                    duration_seconds,
                    attempt,
                };
                let r = self
                    .app
                    .store()
                    .transition(id, JobState::Running, Some(attempt), |r| {
                        r.state = JobState::Succeeded;
                        r.finished_ms = Some(now_ms());
                        r.result = Some(result);
                    })
                    .await;
                if r.is_ok() {
                    self.app
                        .metrics()
                        .completed
                        .with_label_values(&["succeeded"])
                        .inc();
                }
                r
            }
            Outcome::Invalid(message) => {
                let r = self.fail(id, attempt, message).await;
                if r.is_ok() {
                    self.app
                        .metrics()
                        .completed
                        .with_label_values(&["failed"])
                        .inc();
                }
                r
            }
            Outcome::Retry(message) => {
                return self.retry_or_fail(&delivery, id, attempt, message).await
            }
            Outcome::Interrupted => {
                // Give the job back with the same attempt number (a graceful hand-back is not a
                // failed attempt); the message stays in the durable queue for the next start.
                let _ = self
                    .app
                    .store()
                    .transition(id, JobState::Running, Some(attempt), |r| {
                        r.state = JobState::Queued;
                        r.progress = None;
                        r.started_ms = None;
                    })
                    .await;
                return Ok(());
            }
        };
        match recorded {
            Ok(_) => self.ack(&delivery).await,
            Err(e) => {
                // Someone else changed the job meanwhile (cancelled, recovered): its current
                // owner decides; this late outcome is ignored.
                tracing::warn!(job = %id, attempt, error = %e, "job changed while running; outcome ignored");
                self.ack(&delivery).await;
            }
        }
        Ok(())
    }
}

impl EmbeddedLink {
    async fn retry_or_fail(
        &self,
        delivery: &Delivery,
        id: &JobId,
        attempt: u32,
        message: String,
    ) -> Result<(), LinkError> {
        if attempt >= self.max_attempts {
            let message = format!("{message} (gave up after {attempt} attempts)");
            if self.fail(id, attempt, message).await.is_ok() {
                self.app
                    .metrics()
                    .completed
                    .with_label_values(&["failed"])
                    .inc();
            }
            self.ack(delivery).await;
        } else if self.requeue(id, attempt).await.is_ok() {
            self.nack(delivery).await;
        } else {
            self.ack(delivery).await;
        }
        Ok(())
    }
}
