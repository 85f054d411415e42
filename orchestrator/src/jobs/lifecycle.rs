//! [`Lifecycle`]: the only code that changes a job's state.
//!
//! Every change — submit, start, progress, succeed, fail, retry, hand back, cancel, expire,
//! crash recovery — is one compare-and-swap of the job store ([`JobStore::transition`]) that
//! writes the record, its indexes and the job's next outbox event in one sled transaction,
//! flushed before the event is published to in-process subscribers ([`Hub`]) and before the
//! caller tells anybody (HTTP reply, queue or NATS ack). Both deployments feed node reports into
//! these same functions, so the rules live here once:
//!
//! - a retry keeps the failed attempt's reason in `error` until the job runs again and ends;
//! - run time is measured from `started_ms` of each attempt that ends, whatever the outcome;
//! - a job that ran out of attempts fails with "… (gave up after N attempts)";
//! - a run cut short by the death of the process that ran it (kill -9, power loss) is not the
//!   job's fault: it is an *interruption*, queued again with the same attempt number. Only
//!   `max_interruptions` of them in a row (no run ending on its own in between) fail the job,
//!   as a guard against a job that crashes its process every time;
//! - a cancelled job is terminal: a late report of its node changes nothing.

use protocol::{JobEvent, JobEventKind, JobId, JobRecord, JobResult, JobState, ProgressEvent};

use super::hub::Hub;
use super::pace::Pace;
use crate::metrics::Metrics;
use crate::store::{now_ms, JobStore, StoreError};

/// Applies job state changes. Cheap to clone.
#[derive(Clone)]
pub struct Lifecycle {
    store: JobStore,
    hub: Hub,
    metrics: Metrics,
    max_attempts: u32,
    /// 0: interruptions never fail a job.
    max_interruptions: u32,
    pace: Pace,
}

/// `inference.max_interruptions` by default.
pub const DEFAULT_MAX_INTERRUPTIONS: u32 = 10;

/// A compare-and-swap precondition: the state (and attempt) the caller saw.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub state: JobState,
    pub attempt: Option<u32>,
}

impl Expect {
    pub fn new(state: JobState, attempt: u32) -> Expect {
        Expect {
            state,
            attempt: Some(attempt),
        }
    }

    /// What `record` shows now.
    pub fn current(record: &JobRecord) -> Expect {
        Expect::new(record.state, record.attempt)
    }
}

/// A job written by [`Lifecycle::insert`] that [`Lifecycle::commit`] has yet to make durable
/// and announce.
#[derive(Debug)]
#[must_use = "a pending job is neither durable nor announced until committed"]
pub struct Pending {
    record: JobRecord,
    event: JobEvent,
}

impl Pending {
    /// The inserted job.
    pub fn record(&self) -> &JobRecord {
        &self.record
    }
}

/// How [`Lifecycle::retry`] ended.
#[derive(Debug)]
pub enum Retry {
    /// Back in the queue with the next attempt number.
    Queued(JobRecord),
    /// Out of attempts: failed.
    GaveUp(JobRecord),
}

impl Lifecycle {
    pub fn new(store: JobStore, hub: Hub, metrics: Metrics, max_attempts: u32) -> Lifecycle {
        Lifecycle {
            store,
            hub,
            metrics,
            max_attempts: max_attempts.max(1),
            max_interruptions: DEFAULT_MAX_INTERRUPTIONS,
            pace: Pace::default(),
        }
    }

    /// Interruptions in a row that fail a job (0: never); see the module notes.
    pub fn with_max_interruptions(mut self, max_interruptions: u32) -> Lifecycle {
        self.max_interruptions = max_interruptions;
        self
    }

    /// How fast songs are made here, learnt from successful runs.
    pub fn pace(&self) -> &Pace {
        &self.pace
    }

    pub fn store(&self) -> &JobStore {
        &self.store
    }

    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The one call of the store's compare-and-swap: change, record the event, publish it.
    async fn change(
        &self,
        id: &JobId,
        expect: Expect,
        kind: JobEventKind,
        durable: bool,
        f: impl FnOnce(&mut JobRecord) + Send,
    ) -> Result<JobRecord, StoreError> {
        let (record, event) = self
            .store
            .transition(id, expect.state, expect.attempt, kind, None, durable, f)
            .await?;
        if expect.state == JobState::Running && record.state != JobState::Running {
            // An attempt ended (any outcome): its run time, measured here for both deployments.
            if let Some(started) = record.started_ms {
                let seconds = now_ms().saturating_sub(started) as f64 / 1000.0;
                self.metrics.job_seconds.observe(seconds);
                if record.state == JobState::Succeeded {
                    self.pace.observe(seconds, record.spec.seconds);
                }
            }
        }
        if record.state.is_terminal() && !expect.state.is_terminal() {
            self.finished(&record);
        }
        self.hub.publish(&event);
        Ok(record)
    }

    fn finished(&self, record: &JobRecord) {
        let state = record.state.as_str();
        self.metrics.completed.with_label_values(&[state]).inc();
        tracing::info!(job = %record.id, attempt = record.attempt, %state, error = record.error.as_deref().unwrap_or(""), "job finished");
    }

    /// Stores a new job (Queued, attempt 1, event `queued` with its queue position) durably.
    pub async fn submit(
        &self,
        record: JobRecord,
        queue_position: Option<usize>,
    ) -> Result<JobRecord, StoreError> {
        let pending = self.insert(record, queue_position)?;
        self.commit(pending).await
    }

    /// The first half of [`Lifecycle::submit`]: the job is written (visible to reads and
    /// counts) but not yet durable, and nobody is told. Admission calls this under its lock and
    /// [`Lifecycle::commit`] after releasing it, so concurrent submits share one flush.
    pub fn insert(
        &self,
        mut record: JobRecord,
        queue_position: Option<usize>,
    ) -> Result<Pending, StoreError> {
        let event = self.store.insert_buffered(&mut record, queue_position)?;
        Ok(Pending { record, event })
    }

    /// The second half of [`Lifecycle::submit`]: flushes (shared with concurrent callers),
    /// then publishes the `queued` event.
    pub async fn commit(&self, pending: Pending) -> Result<JobRecord, StoreError> {
        self.store.flush().await?;
        self.metrics.submitted.inc();
        self.hub.publish(&pending.event);
        Ok(pending.record)
    }

    /// A node takes the job: `Queued(expect) → Running` as attempt `attempt` (the NATS
    /// deployment may learn of a redelivery only from the node, so the attempt can be higher
    /// than the record's).
    pub async fn start(
        &self,
        id: &JobId,
        queued_attempt: u32,
        attempt: u32,
    ) -> Result<JobRecord, StoreError> {
        let record = self
            .change(
                id,
                Expect::new(JobState::Queued, queued_attempt),
                JobEventKind::Started,
                true,
                |r| {
                    r.state = JobState::Running;
                    r.attempt = attempt.max(r.attempt);
                    r.progress = None;
                    r.result = None;
                },
            )
            .await?;
        tracing::info!(job = %id, attempt = record.attempt, "job running");
        Ok(record)
    }

    /// A progress report of the running attempt `attempt`; a report of another attempt or of
    /// a job that is not running is a `Conflict`. `durable`: flush before publishing (stage
    /// changes); other steps ride on the next flush.
    pub async fn progress(
        &self,
        id: &JobId,
        attempt: u32,
        progress: &ProgressEvent,
        durable: bool,
    ) -> Result<JobRecord, StoreError> {
        let progress = progress.clone();
        self.change(
            id,
            Expect::new(JobState::Running, attempt),
            JobEventKind::Progress,
            durable,
            move |r| r.progress = Some(progress),
        )
        .await
    }

    /// The attempt produced its result.
    pub async fn succeed(
        &self,
        id: &JobId,
        attempt: u32,
        result: JobResult,
    ) -> Result<JobRecord, StoreError> {
        self.change(
            id,
            Expect::new(JobState::Running, attempt),
            JobEventKind::Succeeded,
            true,
            move |r| {
                r.state = JobState::Succeeded;
                r.result = Some(result);
                r.error = None;
            },
        )
        .await
    }

    /// The job fails for good (invalid input, out of deliveries, unqueueable). `attempt` is
    /// the attempt that failed (never lowers the record's).
    pub async fn fail(
        &self,
        id: &JobId,
        expect: Expect,
        attempt: u32,
        message: String,
    ) -> Result<JobRecord, StoreError> {
        self.change(id, expect, JobEventKind::Failed, true, move |r| {
            r.state = JobState::Failed;
            r.attempt = attempt.max(r.attempt);
            r.error = Some(message);
        })
        .await
    }

    /// Running attempt `attempt` failed on its node: queue it again as attempt + 1 with the
    /// reason kept in `error`, or fail it when it was the last allowed attempt.
    pub async fn retry(
        &self,
        id: &JobId,
        attempt: u32,
        message: String,
    ) -> Result<Retry, StoreError> {
        let expect = Expect::new(JobState::Running, attempt);
        if attempt >= self.max_attempts {
            let message = format!("{message} (gave up after {attempt} attempts)");
            return Ok(Retry::GaveUp(
                self.fail(id, expect, attempt, message).await?,
            ));
        }
        let record = self
            .change(id, expect, JobEventKind::Retrying, true, move |r| {
                r.state = JobState::Queued;
                r.attempt = attempt + 1;
                r.interruptions = 0;
                r.error = Some(message);
            })
            .await?;
        tracing::info!(job = %id, attempt, "job attempt failed; it will run again");
        Ok(Retry::Queued(record))
    }

    /// The job is handed back untouched (graceful shutdown of its node): Queued with the same
    /// attempt number.
    pub async fn hand_back(&self, id: &JobId, attempt: u32) -> Result<JobRecord, StoreError> {
        self.change(
            id,
            Expect::new(JobState::Running, attempt),
            JobEventKind::Requeued,
            true,
            |r| {
                r.state = JobState::Queued;
                r.interruptions = 0;
            },
        )
        .await
    }

    /// The running attempt is known to be lost (its node is gone, or the queue no longer holds
    /// it): Queued again as attempt `next_attempt`.
    pub async fn requeue_lost(
        &self,
        id: &JobId,
        attempt: u32,
        next_attempt: u32,
    ) -> Result<JobRecord, StoreError> {
        self.change(
            id,
            Expect::new(JobState::Running, attempt),
            JobEventKind::Retrying,
            true,
            move |r| {
                r.state = JobState::Queued;
                r.attempt = next_attempt.max(attempt + 1);
                r.interruptions = 0;
            },
        )
        .await
    }

    /// Cancels a queued or running job. A terminal job is a `Conflict`.
    ///
    /// The compare-and-swap expects the state just read; when the job moved meanwhile (it
    /// started, was retried or handed back) but is still not finished, the cancel is tried
    /// again on the new state, so a job that starts at the moment of the request is still
    /// cancelled rather than refused as finished.
    pub async fn cancel(&self, id: &JobId, reason: &str) -> Result<JobRecord, StoreError> {
        loop {
            let Some(record) = self.store.get(id)? else {
                return Err(StoreError::NotFound(id.clone()));
            };
            let reason = reason.to_string();
            let result = self
                .change(
                    id,
                    Expect::current(&record),
                    JobEventKind::Cancelled,
                    true,
                    move |r| {
                        r.state = JobState::Cancelled;
                        r.error = Some(reason);
                    },
                )
                .await;
            match result {
                Err(StoreError::Conflict { .. }) if !record.state.is_terminal() => {
                    // Lost a race with another change; a terminal record ends the loop above
                    // (its own CAS fails with the conflict returned below).
                    continue;
                }
                other => return other,
            }
        }
    }

    /// Removes a finished job (retention): publishes its `expired` event, then deletes the
    /// record with its outbox.
    pub async fn expire(&self, record: &JobRecord) -> Result<(), StoreError> {
        let mut event = JobEvent::of(record, JobEventKind::Expired, now_ms());
        event.seq = self.store.next_seq(record.event_seq);
        self.store.delete(&record.id).await?;
        self.hub.publish(&event);
        Ok(())
    }

    /// Running attempt `attempt` was cut short by the death of the process running it: queued
    /// again with the same attempt number and one more interruption, or failed once that makes
    /// `max_interruptions` in a row.
    pub async fn interrupted(
        &self,
        id: &JobId,
        attempt: u32,
        why: String,
    ) -> Result<Retry, StoreError> {
        let Some(record) = self.store.get(id)? else {
            return Err(StoreError::NotFound(id.clone()));
        };
        let expect = Expect::new(JobState::Running, attempt);
        let interruptions = record.interruptions.saturating_add(1);
        if self.max_interruptions > 0 && interruptions >= self.max_interruptions {
            let message = format!(
                "{why}; the job was running at {interruptions} crashes in a row and is suspected \
                 of causing them (inference.max_interruptions = {})",
                self.max_interruptions
            );
            let record = self
                .change(id, expect, JobEventKind::Failed, true, move |r| {
                    r.state = JobState::Failed;
                    r.interruptions = interruptions;
                    r.error = Some(message);
                })
                .await?;
            return Ok(Retry::GaveUp(record));
        }
        let record = self
            .change(id, expect, JobEventKind::Requeued, true, move |r| {
                r.state = JobState::Queued;
                r.interruptions = interruptions;
                r.error = Some(why);
            })
            .await?;
        self.metrics.interruptions.inc();
        tracing::info!(job = %id, attempt, interruptions, "job interrupted by a crash; it runs again without using up an attempt");
        Ok(Retry::Queued(record))
    }

    /// NATS: a node started running attempt `attempt` again after `interruptions` runs of it
    /// were lost with their nodes. The record goes Running → Queued (same attempt,
    /// `requeued`) to be started again; the node already decided it is not too many.
    pub async fn interrupted_on_node(
        &self,
        id: &JobId,
        attempt: u32,
        interruptions: u32,
    ) -> Result<JobRecord, StoreError> {
        let record = self
            .change(
                id,
                Expect::new(JobState::Running, attempt),
                JobEventKind::Requeued,
                true,
                move |r| {
                    r.state = JobState::Queued;
                    r.interruptions = interruptions;
                    r.error = Some("the node running the job stopped while it ran".into());
                },
            )
            .await?;
        self.metrics.interruptions.inc();
        Ok(record)
    }

    /// Crash recovery at startup of the embedded deployment: every Running job was interrupted
    /// by the crash ([`Lifecycle::interrupted`]). Returns the requeued records.
    pub async fn recover(&self) -> Result<Vec<JobRecord>, StoreError> {
        let mut requeued = Vec::new();
        for id in self.store.ids_in_state(JobState::Running)? {
            let Some(record) = self.store.get(&id)? else {
                continue;
            };
            let why = "the service stopped while the job was running".to_string();
            match self.interrupted(&id, record.attempt, why).await {
                Ok(Retry::Queued(r)) => requeued.push(r),
                Ok(Retry::GaveUp(_)) => {}
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(requeued)
    }
}
