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
