//! The fair order of the NATS deployment. JetStream hands messages to nodes in publication
//! order, so the orchestrator does not publish a job when it is admitted: it keeps the backlog
//! itself, in the same [`FairQueue`] the embedded queue uses, and publishes into the work
//! stream only as many jobs as nodes can take — one per live node plus `queue.prefetch` — the
//! one [`FairQueue::choose`] picks first each time. Whatever is not yet published can still be
//! overtaken by an interactive job or another owner's turn.
//!
//! [`Backlog`] is that state as plain data (tested on its own); [`Dispatcher::run`] is the one
//! task that owns it. It listens to:
//!
//! * commands from [`super::nats::NatsQueue`]: enqueue, seed (the jobs found in the stream at
//!   startup), cancel, position, depth;
//! * the job core's events ([`crate::jobs::Hub::firehose`]): `started` takes a job off the
//!   "published, not started" list; a final event (succeeded, failed, cancelled) frees its slot;
//! * the number of live nodes ([`crate::distributed::registry::NodeRegistry::watch_live`]): a
//!   node that appears gets work at once;
//! * the end of each publish, one at a time so the stream's order is the chosen order;
//! * a sweep every few seconds that checks the published jobs against the store (an event
//!   missed by a lagging subscriber cannot hold a slot forever), and the published jobs no
//!   node has started against the stream: one the server lost (its data, not a restart) goes
//!   back into the backlog instead of holding a slot until the next start. The backlog itself
//!   is checked against the store only when the event subscription lagged: the sweep reads
//!   as many records as there are node slots, not as many as jobs wait. (A waiting job that
//!   left the queued state meanwhile is dropped when its turn comes: the publisher finds it
//!   not queued.)
//!
//! Nothing is lost: a job is in the store (flushed) before it is enqueued, and at startup the
//! backlog is rebuilt from the store's queued jobs that the stream does not hold
//! (`crate::distributed::reconcile::reconcile`). A job published twice does not run twice: the
//! stream drops a second publish within its duplicate window (`Nats-Msg-Id` = job id), a node
//! skips a job whose last event says it finished, and the store's compare-and-swap on (state,
//! attempt) ignores a late result. The backlog assumes one orchestrator per stream, as the
//! rest of the deployment does.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use protocol::{JobEvent, JobEventKind, JobId, JobState};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::fair::{Choice, FairQueue};
use super::nats::{PublishError, Published, Publisher};
use super::QueueItem;
use crate::jobs::{Expect, Lifecycle};

/// How often the tracked jobs are checked against the store.
const SWEEP: Duration = Duration::from_secs(5);
/// First and longest wait before publishing again after NATS failed.
const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What [`super::nats::NatsQueue`] asks of the dispatcher.
pub enum Command {
    Enqueue(QueueItem),
    /// The jobs the stream holds at startup, each with whether a node started it.
    Seed(Vec<(QueueItem, bool)>),
    Cancel(JobId, oneshot::Sender<Cancelled>),
    Position(JobId, oneshot::Sender<Option<usize>>),
    Depth(oneshot::Sender<usize>),
}

/// Where a cancelled job was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// In the backlog, never published: removed, nothing else to do.
    Waiting,
    /// Published (waiting in the stream or running): its message is to be withdrawn.
    Published,
    /// Not tracked (finished, or not yet known after a restart).
    Unknown,
}

/// How a publish ended, for [`Backlog::published`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The job is in the stream.
    InStream,
    /// It could not be published now: back to the backlog, in its old place.
    Failed,
    /// It is never to be published (not queued any more, or its inputs are gone).
    Dropped,
}

/// The backlog and the published jobs of the NATS deployment. Plain data; see the module docs.
#[derive(Debug)]
pub struct Backlog {
    /// Waiting = the backlog; in flight = published and not finished.
    fair: FairQueue,
    next_seq: u64,
    /// Published jobs no node has started yet, in publication (= stream) order.
    unstarted: VecDeque<JobId>,
    /// The job being published now (one at a time).
    publishing: Option<JobId>,
    /// Whether the jobs already in the stream are known (nothing is published before).
    seeded: bool,
    prefetch: usize,
}

impl Backlog {
    pub fn new(prefetch: usize) -> Backlog {
        Backlog {
            fair: FairQueue::new(),
            next_seq: 0,
            unstarted: VecDeque::new(),
            publishing: None,
            seeded: false,
            prefetch,
        }
    }

    /// Adds an admitted job (a job already known is left as it is).
    pub fn enqueue(&mut self, item: QueueItem) -> bool {
        let added = self.fair.insert(self.next_seq, item);
        if added {
            self.next_seq += 1;
        }
        added
    }

    /// Records the jobs found in the stream at startup as in flight, and allows publishing.
    pub fn seed(&mut self, held: Vec<(QueueItem, bool)>) {
        for (item, started) in held {
            let id = item.id.clone();
            if self.fair.is_in_flight(&id) == Some(true) {
                continue;
            }
            self.fair.remove(&id);
            self.fair.insert_in_flight(self.next_seq, item);
            self.next_seq += 1;
            if !started {
                self.unstarted.push_back(id);
            }
        }
        self.seeded = true;
    }

    /// The next job to publish, if a node slot is free (`live_nodes` + prefetch jobs in flight
    /// at most, one publish at a time): it counts as in flight from now on.
    pub fn next(&mut self, live_nodes: usize) -> Option<QueueItem> {
        if !self.seeded || self.publishing.is_some() {
            return None;
        }
        if self.fair.in_flight() >= live_nodes.saturating_add(self.prefetch) {
            return None;
        }
        let Choice::Next(seq) = self.fair.choose(Instant::now()) else {
            return None;
        };
        let item = self.fair.take(seq)?.clone();
        self.unstarted.push_back(item.id.clone());
        self.publishing = Some(item.id.clone());
        Some(item)
    }

    /// The publish of `id` ended. True when its message must be withdrawn again: it was
    /// cancelled while being published.
    pub fn published(&mut self, id: &JobId, outcome: Outcome) -> bool {
        if self.publishing.as_ref() == Some(id) {
            self.publishing = None;
        }
        match outcome {
            Outcome::InStream => !self.fair.contains(id),
            Outcome::Failed => {
                self.fair.give_back(id, None);
                self.unstarted.retain(|j| j != id);
                false
            }
            Outcome::Dropped => {
                self.forget(id);
                false
            }
        }
    }

    /// Follows the job core: `started` leaves the not-started list, a retry waits in the
    /// stream again, a final event frees the job's slot.
    pub fn job_event(&mut self, event: &JobEvent) {
        let id = &event.job;
        match event.kind {
            JobEventKind::Started => self.started(id),
            JobEventKind::Retrying | JobEventKind::Requeued
                if self.fair.is_in_flight(id) == Some(true) && !self.unstarted.contains(id) =>
            {
                self.unstarted.push_back(id.clone());
            }
            kind if kind.is_final() => self.forget(id),
            _ => {}
        }
    }

    /// A node runs the job.
    pub fn started(&mut self, id: &JobId) {
        self.unstarted.retain(|j| j != id);
    }

    /// Stops tracking a job.
    pub fn forget(&mut self, id: &JobId) {
        self.fair.remove(id);
        self.unstarted.retain(|j| j != id);
    }

    /// Removes a cancelled job; says where it was.
    pub fn cancel(&mut self, id: &JobId) -> Cancelled {
        match self.fair.is_in_flight(id) {
            None => Cancelled::Unknown,
            Some(false) => {
                self.fair.remove(id);
                Cancelled::Waiting
            }
            Some(true) => {
                self.forget(id);
                Cancelled::Published
            }
        }
    }

    /// 0-based: published jobs not started yet come first (the stream hands them out in
    /// order), then the backlog in fair-share order. `None` for a running or unknown job.
    pub fn position(&self, id: &JobId) -> Option<usize> {
        if let Some(i) = self.unstarted.iter().position(|j| j == id) {
            return Some(i);
        }
        self.fair.position(id).map(|p| p + self.unstarted.len())
    }

    /// Jobs not started: the backlog and the published ones waiting in the stream.
    pub fn depth(&self) -> usize {
        self.fair.waiting() + self.unstarted.len()
    }

    /// Published jobs no node has started, except the one being published: to be looked up
    /// in the stream.
    pub fn unstarted(&self) -> Vec<JobId> {
        self.unstarted
            .iter()
            .filter(|id| self.publishing.as_ref() != Some(*id))
            .cloned()
            .collect()
    }

    /// The stream does not hold published job `id`. If no node has started it (a node that
    /// took and finished it has its events on the way), it goes back into the backlog in its
    /// old place, to be published again. True if it did.
    pub fn lost(&mut self, id: &JobId) -> bool {
        if self.publishing.as_ref() == Some(id) || !self.unstarted.contains(id) {
            return false;
        }
        self.unstarted.retain(|j| j != id);
        self.fair.give_back(id, None)
    }

    /// The published jobs (at most one per node slot).
    pub fn published_ids(&self) -> Vec<JobId> {
        self.fair.in_flight_ids().cloned().collect()
    }

    /// Every job tracked, with whether it is in flight.
    pub fn tracked(&self) -> Vec<(JobId, bool)> {
        self.fair
            .ids()
            .map(|id| (id.clone(), self.fair.is_in_flight(id) == Some(true)))
            .collect()
    }
}

/// The task that owns the [`Backlog`] and publishes from it.
pub struct Dispatcher {
    backlog: Backlog,
    commands: mpsc::UnboundedReceiver<Command>,
    publisher: Arc<Publisher>,
    lifecycle: Lifecycle,
    live: watch::Receiver<usize>,
    events: broadcast::Receiver<JobEvent>,
}

impl Dispatcher {
    pub(super) fn new(
        commands: mpsc::UnboundedReceiver<Command>,
        publisher: Arc<Publisher>,
        lifecycle: Lifecycle,
        live: watch::Receiver<usize>,
        prefetch: usize,
    ) -> Dispatcher {
        // Subscribed now, before any job can change, so no event of a tracked job is missed.
        let events = lifecycle.hub().firehose();
        Dispatcher {
            backlog: Backlog::new(prefetch),
            commands,
            publisher,
            lifecycle,
            live,
            events,
        }
    }

    /// Runs [`Dispatcher::run`] on `tracker` until `cancel` fires.
    pub fn spawn(self, tracker: &TaskTracker, cancel: CancellationToken) {
        tracker.spawn(self.run(cancel));
    }

    /// Publishes whenever a slot is free, and follows commands, job events and nodes.
    pub async fn run(mut self, cancel: CancellationToken) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel();
        let (lost_tx, mut lost_rx) = mpsc::unbounded_channel::<Vec<JobId>>();
        let mut looking = false;
        let mut retry_at: Option<Instant> = None;
        let mut backoff = MIN_BACKOFF;
        let mut sweep = tokio::time::interval(SWEEP);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut live_open = true;
        loop {
            if retry_at.is_none() {
                let live = *self.live.borrow();
                if let Some(item) = self.backlog.next(live) {
                    let (publisher, done) = (self.publisher.clone(), done_tx.clone());
                    tokio::spawn(async move {
                        let result = publisher.publish(&item.id).await;
                        let _ = done.send((item.id, result));
                    });
                    continue;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                command = self.commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => break,
                },
                Some((id, result)) = done_rx.recv() => {
                    if self.published(id, result).await {
                        backoff = MIN_BACKOFF;
                    } else {
                        retry_at = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                event = self.events.recv() => match event {
                    Ok(event) => self.backlog.job_event(&event),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.sweep(false),
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                changed = self.live.changed(), if live_open => live_open = changed.is_ok(),
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    retry_at = None;
                }
                Some(lost) = lost_rx.recv() => {
                    looking = false;
                    for id in lost {
                        if self.backlog.lost(&id) {
                            tracing::warn!(job = %id, "the work queue lost a published job; publishing it again");
                        }
                    }
                }
                _ = sweep.tick() => {
                    self.sweep(true);
                    if !looking {
                        looking = self.look_up_unstarted(lost_tx.clone());
                    }
                }
            }
        }
        tracing::debug!(backlog = self.backlog.depth(), "job dispatcher stopped");
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Enqueue(item) => {
                self.backlog.enqueue(item);
            }
            Command::Seed(held) => {
                tracing::info!(jobs = held.len(), "jobs already in the work queue");
                self.backlog.seed(held);
            }
            Command::Cancel(id, reply) => {
                let _ = reply.send(self.backlog.cancel(&id));
            }
            Command::Position(id, reply) => {
                let _ = reply.send(self.backlog.position(&id));
            }
            Command::Depth(reply) => {
                let _ = reply.send(self.backlog.depth());
            }
        }
    }

    /// Settles a publish; false when NATS failed (publishing pauses for a while).
    async fn published(&mut self, id: JobId, result: Result<Published, PublishError>) -> bool {
        match result {
            Ok(Published::InStream) => {
                tracing::debug!(job = %id, "job published");
                if self.backlog.published(&id, Outcome::InStream) {
                    let publisher = self.publisher.clone();
                    tokio::spawn(async move {
                        if let Err(e) = publisher.withdraw(&id).await {
                            tracing::warn!(job = %id, error = %e, "cannot withdraw a cancelled job");
                        }
                    });
                }
                true
            }
            Ok(Published::NotQueued) => {
                self.backlog.published(&id, Outcome::Dropped);
                true
            }
            Err(PublishError::Input { message, .. }) => {
                self.backlog.published(&id, Outcome::Dropped);
                self.fail(&id, message).await;
                true
            }
            Err(PublishError::Distributed(e)) => {
                tracing::warn!(job = %id, error = %e, "cannot publish a job; trying again soon");
                self.backlog.published(&id, Outcome::Failed);
                false
            }
        }
    }

    /// A job that can never run (its inputs are gone) fails.
    async fn fail(&self, id: &JobId, message: String) {
        let store = self.lifecycle.store();
        let Ok(Some(record)) = store.get(id) else {
            return;
        };
        if record.state != JobState::Queued {
            return;
        }
        let why = format!("the job could not be queued: {message}");
        if let Err(e) = self
            .lifecycle
            .fail(id, Expect::current(&record), record.attempt, why)
            .await
        {
            tracing::warn!(job = %id, error = %e, "cannot mark an unpublishable job failed");
        }
    }

    /// Looks up the published jobs no node has started in the stream, off this task; the
    /// ones it does not hold are sent on `lost` (once, all together). False if there are none.
    fn look_up_unstarted(&self, lost: mpsc::UnboundedSender<Vec<JobId>>) -> bool {
        let ids = self.backlog.unstarted();
        if ids.is_empty() {
            return false;
        }
        let publisher = self.publisher.clone();
        tokio::spawn(async move {
            let mut gone = Vec::new();
            for id in ids {
                match publisher.holds(&id).await {
                    Ok(true) => {}
                    Ok(false) => gone.push(id),
                    Err(e) => {
                        tracing::debug!(job = %id, error = %e, "cannot look up a published job");
                        break;
                    }
                }
            }
            let _ = lost.send(gone);
        });
        true
    }

    /// Checks tracked jobs against the store (only the published ones when `published_only`):
    /// finished or deleted ones are forgotten, waiting ones that are not queued any more too,
    /// running ones are started.
    fn sweep(&mut self, published_only: bool) {
        let store = self.lifecycle.store();
        let tracked = if published_only {
            let ids = self.backlog.published_ids();
            ids.into_iter().map(|id| (id, true)).collect()
        } else {
            self.backlog.tracked()
        };
        for (id, in_flight) in tracked {
            match store.get(&id) {
                Ok(None) => self.backlog.forget(&id),
                Ok(Some(r)) if r.state.is_terminal() => self.backlog.forget(&id),
                Ok(Some(r)) if !in_flight && r.state != JobState::Queued => {
                    self.backlog.forget(&id)
                }
                Ok(Some(r)) if r.state == JobState::Running => self.backlog.started(&id),
                Ok(Some(_)) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot check the backlog against the store");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
