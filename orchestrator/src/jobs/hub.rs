//! In-process fan-out of job events, and [`Subscription`]: a reader of one job's events that
//! starts from any sequence number and misses nothing.
//!
//! The outbox in the job store is the truth; the hub only saves subscribers from polling it.
//! A subscription registers for live events *before* it reads the outbox, then hands out the
//! stored events after the caller's sequence number and continues with live ones, skipping
//! what it already gave. When the live channel lags or skips a number it reads the outbox
//! again, so a slow subscriber gets every event, late rather than never. Across a restart the
//! caller simply subscribes again from the last sequence number it saw.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use protocol::{JobEvent, JobId};
use tokio::sync::broadcast;

use crate::store::{JobStore, StoreError};

/// Live events buffered per job before a slow subscriber has to re-read the outbox.
const PER_JOB_BUFFER: usize = 256;
/// Live events of all jobs buffered for firehose subscribers (webhooks, bots).
const ALL_BUFFER: usize = 4096;

/// Publishes job events to in-process subscribers. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    jobs: Arc<Mutex<HashMap<JobId, broadcast::Sender<JobEvent>>>>,
    all: broadcast::Sender<JobEvent>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            jobs: Arc::new(Mutex::new(HashMap::new())),
            all: broadcast::channel(ALL_BUFFER).0,
        }
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, broadcast::Sender<JobEvent>>> {
        // The map holds only channels; a panic elsewhere cannot leave it half-changed.
        self.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends an event (already durable in the outbox) to the job's and the firehose subscribers.
    pub fn publish(&self, event: &JobEvent) {
        {
            let mut jobs = self.jobs();
            if let Some(tx) = jobs.get(&event.job) {
                let _ = tx.send(event.clone());
                if event.kind.is_final() || tx.receiver_count() == 0 {
                    jobs.remove(&event.job);
                }
            }
        }
        let _ = self.all.send(event.clone());
    }

    /// Every event of every job from now on (may lag: see `broadcast::Receiver`).
    pub fn firehose(&self) -> broadcast::Receiver<JobEvent> {
        self.all.subscribe()
    }

    fn live(&self, id: &JobId) -> broadcast::Receiver<JobEvent> {
        self.jobs()
            .entry(id.clone())
            .or_insert_with(|| broadcast::channel(PER_JOB_BUFFER).0)
            .subscribe()
    }

    /// Follows job `id` from the event after `after` (0: from the first event).
    pub fn subscribe(&self, store: &JobStore, id: &JobId, after: u64) -> Subscription {
        Subscription {
            live: self.live(id),
            hub: self.clone(),
            store: store.clone(),
            id: id.clone(),
            last: after,
            pending: VecDeque::new(),
            loaded: false,
            finished: false,
        }
    }
}

/// One subscriber's view of one job's events, in order, each once.
pub struct Subscription {
    live: broadcast::Receiver<JobEvent>,
    hub: Hub,
    store: JobStore,
    id: JobId,
    /// The sequence number of the last event handed out.
    last: u64,
    pending: VecDeque<JobEvent>,
    loaded: bool,
    finished: bool,
}

impl Subscription {
    /// The sequence number of the last event handed out.
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    fn reload(&mut self) -> Result<(), StoreError> {
        self.loaded = true;
        let events = self.store.events_after(&self.id, self.last)?;
        self.pending = events.into();
        Ok(())
    }

    /// The next event, or `None` after the final one (or when the job does not exist / was
    /// deleted and no more events can come).
    pub async fn next(&mut self) -> Result<Option<JobEvent>, StoreError> {
        if !self.loaded {
            self.reload()?;
            if self.pending.is_empty() && self.store.get(&self.id)?.is_none() {
                self.finished = true;
            }
        }
        loop {
            if let Some(event) = self.pending.pop_front() {
                if event.seq <= self.last {
                    continue;
                }
                self.last = event.seq;
                if event.kind.is_final() {
                    self.finished = true;
                    self.pending.clear();
                }
                return Ok(Some(event));
            }
            if self.finished {
                return Ok(None);
            }
            match self.live.recv().await {
                Ok(event) if event.seq <= self.last => continue,
                Ok(event) if event.seq == self.last + 1 => self.pending.push_back(event),
                // A gap (the event was published before this subscription read the outbox),
                // a lag, or a closed channel: the outbox has it all.
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => self.reload()?,
                Err(broadcast::error::RecvError::Closed) => {
                    self.reload()?;
                    if self.pending.is_empty() {
                        // The hub dropped the channel (a final event was published): whatever
                        // came last is in the outbox, or the job is gone.
                        self.finished = true;
                    }
                }
            }
        }
    }
}

impl Drop for Subscription {
    /// The last subscriber of a job takes its channel with it.
    fn drop(&mut self) {
        let mut jobs = self.hub.jobs();
        if jobs
            .get(&self.id)
            .is_some_and(|tx| tx.receiver_count() <= 1)
        {
            jobs.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use protocol::{JobEventKind, JobState};

    use super::*;
    use crate::store::tests::{progress, record_at};

    /// Writes one change of `id` to the store's outbox and publishes it, as `Lifecycle` does.
    async fn change(
        store: &JobStore,
        hub: &Hub,
        id: &JobId,
        from: JobState,
        kind: JobEventKind,
        f: impl FnOnce(&mut protocol::JobRecord) + Send,
    ) -> u64 {
        let durable = kind != JobEventKind::Progress;
        let (_, event) = store
            .transition(id, from, None, kind, None, durable, f)
            .await
            .unwrap();
        hub.publish(&event);
        event.seq
    }

    async fn drain(sub: &mut Subscription) -> Vec<u64> {
        let mut seqs = Vec::new();
        while let Some(event) = sub.next().await.unwrap() {
            seqs.push(event.seq);
        }
        seqs
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_gets_the_rest_from_the_outbox() {
        let dir = tempfile::tempdir().unwrap();
        let store = JobStore::open(&dir.path().join("jobs.sled")).unwrap();
        let hub = Hub::new();
        let job = record_at(1_000, None);
        store.put(&job).await.unwrap();
        let mut sub = hub.subscribe(&store, &job.id, 0);
        assert_eq!(sub.next().await.unwrap().unwrap().seq, 1);
        // More live events than the per-job channel holds, while the subscriber reads none.
        let start = JobEventKind::Started;
        change(&store, &hub, &job.id, JobState::Queued, start, |r| {
            r.state = JobState::Running
        })
        .await;
        let steps = PER_JOB_BUFFER as u32 + 40;
        for step in 1..=steps {
            change(
                &store,
                &hub,
                &job.id,
                JobState::Running,
                JobEventKind::Progress,
                move |r| r.progress = Some(progress(step)),
            )
            .await;
        }
        let last = change(
            &store,
            &hub,
            &job.id,
            JobState::Running,
            JobEventKind::Cancelled,
            |r| r.state = JobState::Cancelled,
        )
        .await;
        assert_eq!(drain(&mut sub).await, (2..=last).collect::<Vec<_>>());
        assert_eq!(last, u64::from(steps) + 3);
    }

    /// After a restart a job's numbers jump (the store's boot floor): a subscriber resuming
    /// from the last number it saw before the restart takes the jump for a gap, reads the
    /// outbox and misses nothing.
    #[tokio::test]
    async fn a_subscriber_resuming_across_a_restart_follows_the_numbers_jump() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs.sled");
        let job = record_at(1_000, None);
        let seen = {
            let store = JobStore::open(&path).unwrap();
            let hub = Hub::new();
            store.put(&job).await.unwrap();
            change(
                &store,
                &hub,
                &job.id,
                JobState::Queued,
                JobEventKind::Started,
                |r| r.state = JobState::Running,
            )
            .await
        };
        let store = JobStore::open(&path).unwrap();
        let hub = Hub::new();
        let mut sub = hub.subscribe(&store, &job.id, seen);
        let writer = {
            let (store, hub, id) = (store.clone(), hub.clone(), job.id.clone());
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                let requeue = JobEventKind::Requeued;
                change(&store, &hub, &id, JobState::Running, requeue, |r| {
                    r.state = JobState::Queued
                })
                .await;
                change(
                    &store,
                    &hub,
                    &id,
                    JobState::Queued,
                    JobEventKind::Cancelled,
                    |r| r.state = JobState::Cancelled,
                )
                .await
            })
        };
        let seqs = drain(&mut sub).await;
        let last = writer.await.unwrap();
        let floor = store.seq_floor();
        assert_eq!(seqs, [floor + 1, floor + 2]);
        assert_eq!(last, floor + 2);
    }
}
