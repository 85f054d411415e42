//! [`App`]: the service facade every front end talks to. It holds the job core (lifecycle,
//! queue, cancel tokens), the stores and the facts about the inference side, and offers the
//! operations a front end needs — submit, look up, follow, cancel — so that front ends only
//! translate their requests and answers.
//!
//! Admission (`App::submit`) holds one lock only while it decides and writes: the capacity and
//! owner checks (counters, no scans) and the insert into the store's memory, so that two
//! submits cannot both take the last place. The flush happens after the lock is released and
//! is shared by every submit waiting for one (group commit, `crate::store::commit`); then the
//! job is enqueued. A client that got its 2xx has a job that is in the store, flushed to disk,
//! and in the queue (the embedded queue's tree, flushed too, or the NATS dispatcher's backlog);
//! both queues are rebuilt from the store's queued jobs at startup, so a crash between the
//! flush and the enqueue loses nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use protocol::{JobId, JobRecord, JobSpec, JobState, Owner, Priority, ProgressEvent, Source};
use tokio::sync::Mutex;

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::distributed::registry::NodeRegistry;
use crate::error::OrchestratorError;
use crate::jobs::{Expect, Lifecycle, RunningJobs, Subscription};
use crate::metrics::Metrics;
use crate::outputs::OutputStore;
use crate::progress::{ProgressBoard, ProgressBus};
use crate::queue::{Queue, QueueItem};
use crate::service::{NodeInfo, Validator};
use crate::store::{now_ms, JobStore};

/// Who asks for a job and how it is to be scheduled: what every front end adds to a spec.
#[derive(Debug, Clone)]
pub struct JobMeta {
    pub source: Source,
    pub owner: Owner,
    /// `None`: the source's default.
    pub priority: Option<Priority>,
    pub idempotency_key: Option<String>,
    /// Per-owner limits this front end applies on top of the global ones.
    pub quota: Option<crate::jobs::limits::Quota>,
    /// Where to POST the job's status changes (checked by admission, kept by [`crate::webhooks`]).
    pub webhook: Option<crate::webhooks::Target>,
    /// Opaque text the client keeps on the job (`client_data` of Refrain's own API).
    pub client_data: Option<String>,
    /// The song's title (checked by admission, kept on the record).
    pub title: Option<String>,
}

impl JobMeta {
    /// An anonymous request from `source`.
    pub fn anonymous(source: Source) -> JobMeta {
        JobMeta {
            source,
            owner: Owner::anonymous(),
            priority: None,
            idempotency_key: None,
            quota: None,
            webhook: None,
            client_data: None,
            title: None,
        }
    }
}

/// What admission returns: the job, and whether this request created it (`false`: an
/// idempotency key named an existing job for the same request).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub record: JobRecord,
    pub created: bool,
}

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

/// The parts an [`App`] is made of, named so construction cannot mix them up.
pub struct AppParts {
    pub config: Config,
    /// The job core's state changes (holds the job store).
    pub lifecycle: Lifecycle,
    pub queue: Arc<dyn Queue>,
    pub bus: Arc<dyn ProgressBus>,
    pub board: ProgressBoard,
    pub blobs: BlobStore,
    pub outputs: OutputStore,
    pub metrics: Metrics,
    pub node: NodeInfo,
    pub validator: Validator,
    pub nodes: NodeRegistry,
    /// Cancel tokens of the jobs running on this process's nodes.
    pub running: RunningJobs,
    /// Webhook targets and deliveries (in the job store's database).
    pub webhooks: crate::webhooks::Webhooks,
    /// The base of absolute URLs given to clients (`[task_api] public_url`, or the bound
    /// address).
    pub public_url: String,
    /// The scheduler task's inbox (`/api/v1/schedules`).
    pub schedules: crate::schedules::SchedulerHandle,
}

struct Inner {
    parts: AppParts,
    api_keys: crate::api::v1::auth::ApiKeys,
    ready: AtomicBool,
    started: Instant,
    admission: Mutex<()>,
    uploads: std::sync::OnceLock<crate::uploads::UploadLedger>,
}

impl App {
    pub fn new(parts: AppParts) -> App {
        App {
            inner: Arc::new(Inner {
                api_keys: crate::api::v1::auth::ApiKeys::new(parts.config.api_keys_path()),
                parts,
                ready: AtomicBool::new(false),
                started: Instant::now(),
                admission: Mutex::new(()),
                uploads: std::sync::OnceLock::new(),
            }),
        }
    }

    /// The API keys of Refrain's own API (`<data_dir>/api-keys.json`).
    pub fn api_keys(&self) -> &crate::api::v1::auth::ApiKeys {
        &self.inner.api_keys
    }

    pub fn config(&self) -> &Config {
        &self.inner.parts.config
    }
    pub fn webhooks(&self) -> &crate::webhooks::Webhooks {
        &self.inner.parts.webhooks
    }
    /// The scheduler (schedules through the API).
    pub fn schedules(&self) -> &crate::schedules::SchedulerHandle {
        &self.inner.parts.schedules
    }
    /// The base of absolute URLs given to clients (no trailing `/`).
    pub fn public_url(&self) -> &str {
        &self.inner.parts.public_url
    }
    /// The upload ledger (idempotency keys and per-owner windows of uploads, in the job
    /// store's database), opened on first use.
    pub fn uploads(&self) -> Result<&crate::uploads::UploadLedger, OrchestratorError> {
        if let Some(ledger) = self.inner.uploads.get() {
            return Ok(ledger);
        }
        let ledger = crate::uploads::UploadLedger::open(self.store().db())?;
        Ok(self.inner.uploads.get_or_init(|| ledger))
    }
    pub fn store(&self) -> &JobStore {
        self.inner.parts.lifecycle.store()
    }
    pub fn lifecycle(&self) -> &Lifecycle {
        &self.inner.parts.lifecycle
    }
    pub fn running(&self) -> &RunningJobs {
        &self.inner.parts.running
    }
    /// Follows a job's events from the one after `after` (0: all of them).
    pub fn subscribe(&self, id: &JobId, after: u64) -> Subscription {
        let lifecycle = &self.inner.parts.lifecycle;
        lifecycle.hub().subscribe(lifecycle.store(), id, after)
    }
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.parts.queue
    }
    pub fn bus(&self) -> &Arc<dyn ProgressBus> {
        &self.inner.parts.bus
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.parts.blobs
    }
    pub fn outputs(&self) -> &OutputStore {
        &self.inner.parts.outputs
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.parts.metrics
    }
    pub fn validator(&self) -> &Validator {
        &self.inner.parts.validator
    }
    pub fn node(&self) -> &NodeInfo {
        &self.inner.parts.node
    }
    /// The inference nodes (in-process ones and, with NATS, the remote ones heard from).
    pub fn nodes(&self) -> &NodeRegistry {
        &self.inner.parts.nodes
    }
    /// Seconds since the service started.
    pub fn uptime_seconds(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// Ready once every node has loaded its bundle; not ready again while shutting down.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Admits a job: capacity and per-owner checks and the insert (with its `queued` event)
    /// under the admission lock, the flush shared with concurrent submits, the durable enqueue
    /// (in that same flush with the embedded queue, see [`Queue::enqueue_unflushed`]) — then
    /// the caller may answer 2xx. With `queue.capacity = 0` a job is
    /// admitted only when nothing is queued or running (the reference single-job server).
    ///
    /// This takes a spec that is already valid: front ends call [`App::admit`], which checks a
    /// draft and calls this.
    pub async fn submit(
        &self,
        spec: JobSpec,
        meta: JobMeta,
    ) -> Result<JobRecord, OrchestratorError> {
        let mut submitted = self.submit_spec(vec![(spec, meta)], None).await?;
        Ok(submitted.remove(0).record)
    }

    /// Admits the jobs of one request together (the takes of a Riffusion request; one job
    /// elsewhere): under one hold of the admission lock, each item whose idempotency key still
    /// names a job answers that job (or a conflict), and the capacity and owner checks count
    /// all the new ones at once, so a request makes all its jobs or none. `fingerprint` is the
    /// request's digest (`None`: not idempotent).
    pub(crate) async fn submit_spec(
        &self,
        items: Vec<(JobSpec, JobMeta)>,
        fingerprint: Option<String>,
    ) -> Result<Vec<Submitted>, OrchestratorError> {
        if !self.is_ready() {
            return Err(OrchestratorError::NotReady(
                "the model is still loading".into(),
            ));
        }
        let parts = &self.inner.parts;
        let admission = self.inner.admission.lock().await;
        let mut existing = Vec::with_capacity(items.len());
        for (_, meta) in &items {
            existing.push(match &fingerprint {
                Some(fp) => self.idempotent_job(meta, fp)?,
                None => None,
            });
        }
        let new = existing.iter().filter(|e| e.is_none()).count();
        if new == 0 {
            drop(admission);
            // Those jobs may still wait for their flush (a concurrent submit of the same key).
            parts.lifecycle.store().flush().await?;
            return Ok(existing
                .into_iter()
                .flatten()
                .map(|record| Submitted {
                    record,
                    created: false,
                })
                .collect());
        }
        let store = parts.lifecycle.store();
        let queued = store.count(JobState::Queued)?;
        let running = store.count(JobState::Running)?;
        let capacity = parts.config.queue.capacity;
        let busy = if capacity == 0 {
            queued + running > 0
        } else {
            queued + new > capacity
        };
        if busy {
            parts.metrics.rejected_busy.inc();
            return Err(OrchestratorError::Busy {
                running,
                queued,
                retry_after: parts.config.queue.retry_after_seconds,
            });
        }
        if let Some((_, meta)) = items.first() {
            crate::jobs::limits::check_owner(
                store,
                &parts.config.limits,
                &meta.owner,
                meta.quota.as_ref(),
                new,
            )?;
        }
        let mut answers: Vec<Option<Submitted>> = Vec::with_capacity(items.len());
        let mut pending = Vec::with_capacity(new);
        let mut queued_before = queued;
        for ((spec, meta), existing) in items.into_iter().zip(existing) {
            if let Some(record) = existing {
                answers.push(Some(Submitted {
                    record,
                    created: false,
                }));
                continue;
            }
            let record = new_record(spec, meta.clone(), fingerprint.clone());
            if let Some(target) = &meta.webhook {
                // Written before the job and made durable by the same group commit (no flush
                // under the admission lock): no accepted job misses its webhook.
                parts.webhooks.register(&record.id, target)?;
            }
            let inserted = parts.lifecycle.insert(record, Some(queued_before))?;
            // Where the queue shares the store's database, its message is written now and
            // made durable by the same flush as the job (else it is enqueued after it).
            let queued = match parts
                .queue
                .enqueue_unflushed(&QueueItem::of(inserted.record()))
            {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(job = %inserted.record().id, error = %e, "cannot write the job's queue message; enqueuing after the commit");
                    false
                }
            };
            pending.push((answers.len(), inserted, queued));
            queued_before += 1;
            answers.push(None);
        }
        drop(admission);
        // Every inserted job is committed and queued even when one of them fails, so none is
        // left behind unqueued; the request then fails with the first error.
        let mut failure = None;
        for (at, pending, queued) in pending {
            let record = match parts.lifecycle.commit(pending).await {
                Ok(r) => r,
                Err(e) => {
                    failure.get_or_insert(OrchestratorError::from(e));
                    continue;
                }
            };
            if !queued {
                if let Err(e) = self.enqueue(&record).await {
                    failure.get_or_insert(e);
                    continue;
                }
            }
            tracing::info!(job = %record.id, source = record.source.as_str(), owner = %record.owner, seconds = record.spec.seconds, "job accepted");
            answers[at] = Some(Submitted {
                record,
                created: true,
            });
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(answers.into_iter().flatten().collect()),
        }
    }

    /// Puts a committed job in the queue. When that fails the job is on disk but no node will
    /// see it: it is failed, so that nobody waits for it (the client is told to try again).
    async fn enqueue(&self, record: &JobRecord) -> Result<(), OrchestratorError> {
        let parts = &self.inner.parts;
        let Err(e) = parts.queue.enqueue(&QueueItem::of(record)).await else {
            return Ok(());
        };
        tracing::error!(job = %record.id, error = %e, "cannot queue the job");
        let why = format!("the job could not be queued: {e}");
        let failed = parts
            .lifecycle
            .fail(&record.id, Expect::current(record), record.attempt, why)
            .await;
        if let Err(te) = failed {
            tracing::warn!(job = %record.id, error = %te, "cannot mark the unqueued job failed");
        }
        Err(OrchestratorError::NotReady(format!(
            "the job queue is unavailable ({e})"
        )))
    }

    /// Cancels a queued or running job: recorded first (durable, `cancelled` event), then the
    /// queue forgets it and its node, if any, stops between two steps. A finished job is a
    /// `Conflict`; an unknown one `NotFound`.
    pub async fn cancel(&self, id: &JobId) -> Result<JobRecord, OrchestratorError> {
        let parts = &self.inner.parts;
        let record = match parts.lifecycle.cancel(id, "cancelled by request").await {
            Ok(r) => r,
            Err(crate::store::StoreError::NotFound(_)) => {
                return Err(OrchestratorError::NotFound(id.to_string()))
            }
            Err(crate::store::StoreError::Conflict { .. }) => {
                return Err(OrchestratorError::Conflict(id.clone()))
            }
            Err(e) => return Err(e.into()),
        };
        if let Err(e) = parts.queue.cancel(id).await {
            // The job is cancelled in the store: a delivery of it is dropped when taken.
            tracing::warn!(job = %id, error = %e, "cannot remove the cancelled job from the queue");
        }
        parts.running.cancel(id);
        parts.board.forget(id).await;
        tracing::info!(job = %id, "job cancelled");
        Ok(record)
    }

    /// Replaces the opaque text a client keeps on job `id` (at most
    /// [`MAX_CLIENT_DATA_BYTES`]), in any state; e.g. a chat bot notes that it delivered the
    /// song, so that a restarted bot knows what is left to deliver.
    pub async fn set_client_data(
        &self,
        id: &JobId,
        data: Option<String>,
    ) -> Result<JobRecord, OrchestratorError> {
        if let Some(data) = &data {
            check_client_data(data)?;
        }
        match self.store().set_client_data(id, data).await {
            Ok(record) => Ok(record),
            Err(crate::store::StoreError::NotFound(_)) => {
                Err(OrchestratorError::NotFound(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(self.store().get(id)?)
    }

    /// The job whose result file is `file` (`<id>.wav` or `sub/dir/<id>.wav`).
    pub fn job_by_file(&self, file: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(self.store().get_by_file(file)?)
    }

    /// The freshest progress of a job: for a running job the live event of its current
    /// attempt, else (and for every other state) the last persisted one. Only a running job
    /// has live progress, so polling a queued or finished job does not ask the board's task.
    pub async fn progress(&self, record: &JobRecord) -> Option<ProgressEvent> {
        if record.state != JobState::Running {
            return record.progress.clone();
        }
        match self.inner.parts.board.get(&record.id).await {
            Some((attempt, event)) if attempt == record.attempt => Some(event),
            _ => record.progress.clone(),
        }
    }

    /// 0-based position among queued jobs: the queue's fair-share estimate (both backends),
    /// or the creation order where the queue does not know the job (e.g. while the NATS
    /// backlog is being rebuilt at startup).
    pub async fn queue_position(&self, id: &JobId) -> Result<Option<usize>, OrchestratorError> {
        if let Some(p) = self.inner.parts.queue.position(id).await? {
            return Ok(Some(p));
        }
        Ok(self.store().queue_position(id)?)
    }

    /// Number of jobs in each state.
    pub fn counts(&self) -> Result<HashMap<JobState, usize>, OrchestratorError> {
        let mut out = HashMap::new();
        for s in JobState::ALL {
            out.insert(s, self.store().count(s)?);
        }
        Ok(out)
    }

    /// The board (for workers that want to drop finished entries).
    pub fn board(&self) -> &ProgressBoard {
        &self.inner.parts.board
    }
}

/// The record of a new queued job.
fn new_record(spec: JobSpec, meta: JobMeta, fingerprint: Option<String>) -> JobRecord {
    let now = now_ms();
    JobRecord {
        id: crate::ids::job_id_at(now),
        spec,
        state: JobState::Queued,
        attempt: 1,
        interruptions: 0,
        source: meta.source,
        created_ms: now,
        updated_ms: now,
        started_ms: None,
        finished_ms: None,
        progress: None,
        result: None,
        error: None,
        priority: meta
            .priority
            .unwrap_or_else(|| meta.source.default_priority()),
        owner: meta.owner,
        idempotency_key: meta.idempotency_key,
        request_hash: fingerprint,
        event_seq: 0,
        client_data: meta.client_data,
        title: meta.title,
    }
}

/// The longest `client_data`, in bytes.
pub const MAX_CLIENT_DATA_BYTES: usize = 2048;

/// Refuses `client_data` over [`MAX_CLIENT_DATA_BYTES`] (413 `too_large`).
pub fn check_client_data(data: &str) -> Result<(), OrchestratorError> {
    if data.len() > MAX_CLIENT_DATA_BYTES {
        return Err(OrchestratorError::TooLarge {
            field: crate::error::Field::Named("client_data".into()),
            limit: MAX_CLIENT_DATA_BYTES,
        });
    }
    Ok(())
}
