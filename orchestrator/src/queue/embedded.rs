//! The embedded queue: a durable FIFO in the job store's sled database, for the one-machine
//! deployment where the inference workers run in this process.
//!
//! Layout: tree `queue` maps a monotonically increasing u64 (big-endian, from
//! `Db::generate_id`, which stays increasing across restarts) to a job id; tree
//! `queue_delivered` maps a job id to how often it was handed out (u32 big-endian), so the
//! count survives restarts. A message stays in `queue` until it is acked: the tree *is* the
//! set of un-acked messages, and what is in flight is only known in memory. So after a restart
//! every message is waiting again, which is exactly at-least-once.
//!
//! In memory: a mirror of the tree (key order = FIFO order) in a [`FairQueue`], which knows
//! which messages are in flight and the earliest time a nacked message may be handed out again,
//! and the handle of each current delivery (so a stale ack or nack does nothing). The mirror is
//! changed only together with the tree, under one mutex that is never held across an await;
//! `next()` takes a message in one synchronous step, which makes it cancel-safe.
//!
//! **Fair share.** Each message carries its job's owner and priority (the tree's value is the
//! [`QueueItem`] as JSON; a bare job id from an older version reads as anonymous and
//! interactive). The in-memory state is a [`FairQueue`] (the choice shared with the NATS
//! dispatcher): [`Inner::try_take`] hands out the message [`FairQueue::choose`] picks —
//! interactive before batch, the owner with the fewest jobs in flight, then the owner served
//! longest ago, FIFO within an owner — and [`FairQueue::position`] estimates a job's place.
//!
//! A nack keeps the message's key (it is redelivered ahead of newer messages once its delay is
//! over); the delay itself is not persisted: after a restart it is delivered at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use protocol::JobId;
use sled::transaction::{ConflictableTransactionResult, TransactionError};
use sled::{Transactional, Tree};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::fair::{Choice, FairQueue};
use super::{Delivery, Queue, QueueError, QueueItem};
use crate::store::commit::GroupFlush;

const MESSAGES: &str = "queue";
const DELIVERED: &str = "queue_delivered";

/// The sled-backed queue. Cheap to clone: clones share one queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue").finish_non_exhaustive()
    }
}

struct Inner {
    db: sled::Db,
    /// Concurrent enqueues, acks and nacks share one flush (the job store's, when the queue
    /// was opened with [`EmbeddedQueue::in_store`]).
    flusher: GroupFlush,
    /// Whether the queue lives in the job store's database and shares its group commit, so
    /// that a submit's message can ride on the flush of its job ([`Queue::enqueue_unflushed`]).
    in_store: bool,
    messages: Tree,
    delivered: Tree,
    state: Mutex<State>,
    /// Woken on every enqueue, nack and close; waiters re-check the state.
    notify: Notify,
}

#[derive(Default)]
struct State {
    /// Every un-acked message, by key (FIFO order), waiting or in flight.
    fair: FairQueue,
    /// The handle of the current delivery of each message in flight, by key.
    handles: HashMap<u64, u64>,
    next_handle: u64,
    closed: bool,
}

enum Take {
    Got(Delivery),
    /// Nothing to hand out now; the earliest time a delayed message becomes available.
    Wait(Option<Instant>),
}

impl EmbeddedQueue {
    /// Opens the queue in `db` (normally [`crate::store::JobStore::db`], so that one flush
    /// covers the store and the queue). Every stored message is waiting: whatever was in
    /// flight when the process stopped is delivered again.
    pub fn open(db: &sled::Db) -> Result<EmbeddedQueue, QueueError> {
        Self::open_with(db, GroupFlush::new(db.clone()), false)
    }

    /// Opens the queue in the job store's database, sharing the store's group commit: one
    /// flush makes a new job and its message durable together (see
    /// [`Queue::enqueue_unflushed`]).
    pub fn in_store(store: &crate::store::JobStore) -> Result<EmbeddedQueue, QueueError> {
        Self::open_with(store.db(), store.group_flush(), true)
    }

    fn open_with(
        db: &sled::Db,
        flusher: GroupFlush,
        in_store: bool,
    ) -> Result<EmbeddedQueue, QueueError> {
        let messages = db.open_tree(MESSAGES)?;
        let delivered = db.open_tree(DELIVERED)?;
        let mut state = State {
            next_handle: 1,
            ..State::default()
        };
        let mut bad = Vec::new();
        for item in messages.iter() {
            let (key, value) = item?;
            let item = serde_json::from_slice::<QueueItem>(&value)
                .ok()
                .or_else(|| {
                    std::str::from_utf8(&value)
                        .ok()
                        .and_then(JobId::parse)
                        .map(|id| QueueItem::plain(&id))
                });
            let seq = <[u8; 8]>::try_from(key.as_ref())
                .ok()
                .map(u64::from_be_bytes);
            match (seq, item) {
                (Some(seq), Some(item)) if !state.fair.contains(&item.id) => {
                    state.fair.insert(seq, item);
                }
                (Some(_), Some(QueueItem { id, .. })) => {
                    tracing::warn!(job = %id, "dropping a duplicate queue entry");
                    bad.push(key);
                }
                _ => {
                    tracing::warn!(key = ?key, value = ?value, "dropping an undecodable queue entry");
                    bad.push(key);
                }
            }
        }
        for key in bad {
            messages.remove(key)?;
        }
        let mut stale = Vec::new();
        for key in delivered.iter().keys() {
            let key = key?;
            let known = std::str::from_utf8(&key)
                .ok()
                .and_then(JobId::parse)
                .is_some_and(|id| state.fair.contains(&id));
            if !known {
                stale.push(key);
            }
        }
        for key in stale {
            delivered.remove(key)?;
        }
        tracing::debug!(waiting = state.fair.waiting(), "embedded queue opened");
        Ok(EmbeddedQueue {
            inner: Arc::new(Inner {
                flusher,
                in_store,
                db: db.clone(),
                messages,
                delivered,
                state: Mutex::new(state),
                notify: Notify::new(),
            }),
        })
    }

    /// Stops handing out messages: pending and later `next()` calls return `QueueError::Closed`,
    /// and so does `enqueue`. Acks and nacks still work (workers finishing during shutdown).
    pub fn close(&self) {
        self.inner.lock().closed = true;
        self.inner.notify.notify_waiters();
    }

    /// Messages handed out and not yet acked or nacked.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().fair.in_flight()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change of the state is completed before the guard drops and no caller code
        // runs under it, so a poisoned lock still guards consistent data.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn enqueue(&self, item: &QueueItem) -> Result<bool, QueueError> {
        let mut st = self.lock();
        if st.closed {
            return Err(QueueError::Closed);
        }
        if st.fair.contains(&item.id) {
            return Ok(false);
        }
        let value = serde_json::to_vec(item)
            .map_err(|e| QueueError::Backend(format!("encoding a queue item: {e}")))?;
        let seq = self.db.generate_id()?;
        self.messages.insert(seq.to_be_bytes(), value)?;
        st.fair.insert(seq, item.clone());
        Ok(true)
    }

    /// Removes a waiting message (not one in flight: its holder acks it). True if removed.
    fn remove_waiting(&self, id: &JobId) -> Result<bool, QueueError> {
        let mut st = self.lock();
        let Some(seq) = st.fair.seq(id) else {
            return Ok(false);
        };
        if st.fair.is_in_flight(id) != Some(false) {
            return Ok(false);
        }
        let key = id.as_str().as_bytes();
        (&self.messages, &self.delivered)
            .transaction(
                |(messages, delivered)| -> ConflictableTransactionResult<(), ()> {
                    messages.remove(&seq.to_be_bytes())?;
                    delivered.remove(key)?;
                    Ok(())
                },
            )
            .map_err(|e| match e {
                TransactionError::Storage(e) => QueueError::Sled(e),
                TransactionError::Abort(()) => {
                    QueueError::Backend("cancel transaction aborted".into())
                }
            })?;
        st.fair.remove(id);
        Ok(true)
    }

    /// Hands out the message the fair-share order picks, in one synchronous step (cancel
    /// safety).
    fn try_take(&self) -> Result<Take, QueueError> {
        let mut st = self.lock();
        if st.closed {
            return Err(QueueError::Closed);
        }
        let seq = match st.fair.choose(Instant::now()) {
            Choice::Next(seq) => seq,
            Choice::Wait(at) => return Ok(Take::Wait(at)),
        };
        let Some(id) = st.fair.item(seq).map(|i| i.id.clone()) else {
            return Err(QueueError::Backend(format!(
                "queue entry {seq} vanished under the lock"
            )));
        };
        let delivered = self.delivered_count(&id)?.saturating_add(1);
        // Not flushed here (that would need an await, and next() must stay cancel-safe): the
        // count reaches the disk with the next flush (an ack, a store transition) or sled's
        // own within 500 ms. After a crash it may be one short; the job's attempt is the
        // authoritative count.
        self.delivered
            .insert(id.as_str().as_bytes(), &delivered.to_be_bytes())?;
        st.fair.take(seq);
        let handle = st.next_handle;
        st.next_handle += 1;
        st.handles.insert(seq, handle);
        Ok(Take::Got(Delivery {
            id,
            delivered,
            handle,
        }))
    }

    fn delivered_count(&self, id: &JobId) -> Result<u32, QueueError> {
        Ok(self
            .delivered
            .get(id.as_str().as_bytes())?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map_or(0, u32::from_be_bytes))
    }

    /// The key of `delivery`'s message if that delivery is the current one.
    fn current(st: &State, delivery: &Delivery) -> Option<u64> {
        let seq = st.fair.seq(&delivery.id)?;
        (st.handles.get(&seq) == Some(&delivery.handle)).then_some(seq)
    }

    fn ack(&self, delivery: &Delivery) -> Result<bool, QueueError> {
        let mut st = self.lock();
        let Some(seq) = Self::current(&st, delivery) else {
            return Ok(false);
        };
        let id = delivery.id.as_str().as_bytes();
        (&self.messages, &self.delivered)
            .transaction(
                |(messages, delivered)| -> ConflictableTransactionResult<(), ()> {
                    messages.remove(&seq.to_be_bytes())?;
                    delivered.remove(id)?;
                    Ok(())
                },
            )
            .map_err(|e| match e {
                TransactionError::Storage(e) => QueueError::Sled(e),
                TransactionError::Abort(()) => {
                    QueueError::Backend("ack transaction aborted".into())
                }
            })?;
        st.fair.remove(&delivery.id);
        st.handles.remove(&seq);
        Ok(true)
    }

    fn nack(&self, delivery: &Delivery, delay: Duration) -> bool {
        let mut st = self.lock();
        let Some(seq) = Self::current(&st, delivery) else {
            return false;
        };
        let not_before = (!delay.is_zero()).then(|| {
            let now = Instant::now();
            now.checked_add(delay)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
        });
        st.handles.remove(&seq);
        st.fair.give_back(&delivery.id, not_before)
    }
}

#[async_trait::async_trait]
impl Queue for EmbeddedQueue {
    async fn enqueue(&self, item: &QueueItem) -> Result<(), QueueError> {
        if self.inner.enqueue(item)? {
            // Wake before the flush: if this future is dropped during the flush, the message
            // is still handed out (it is in the tree and in memory already).
            self.inner.notify.notify_waiters();
        }
        // Flushed even for a duplicate: the first enqueue's flush may still be under way.
        self.inner.flusher.flush().await?;
        Ok(())
    }

    fn enqueue_unflushed(&self, item: &QueueItem) -> Result<bool, QueueError> {
        if !self.inner.in_store {
            return Ok(false);
        }
        if self.inner.enqueue(item)? {
            self.inner.notify.notify_waiters();
        }
        Ok(true)
    }

    async fn next(&self) -> Result<Delivery, QueueError> {
        loop {
            // Register for wake-ups *before* looking, so an enqueue between the look and the
            // wait is not missed.
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.inner.try_take()? {
                Take::Got(delivery) => return Ok(delivery),
                Take::Wait(Some(at)) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                Take::Wait(None) => notified.await,
            }
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        if !self.inner.ack(delivery)? {
            tracing::debug!(job = %delivery.id, handle = delivery.handle, "ignoring a stale ack");
        }
        self.inner.flusher.flush().await?;
        Ok(())
    }

    async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), QueueError> {
        if self.inner.nack(delivery, delay) {
            self.inner.notify.notify_waiters();
            // The message never left the tree; this makes its delivery count durable.
            self.inner.flusher.flush().await?;
        } else {
            tracing::debug!(job = %delivery.id, handle = delivery.handle, "ignoring a stale nack");
        }
        Ok(())
    }

    async fn in_progress(&self, _delivery: &Delivery) -> Result<(), QueueError> {
        Ok(())
    }

    async fn cancel(&self, id: &JobId) -> Result<(), QueueError> {
        if self.inner.remove_waiting(id)? {
            self.inner.flusher.flush().await?;
        }
        Ok(())
    }

    async fn position(&self, id: &JobId) -> Result<Option<usize>, QueueError> {
        Ok(self.inner.lock().fair.position(id))
    }

    fn peek(&self) -> Option<JobId> {
        let st = self.inner.lock();
        match st.fair.choose(Instant::now()) {
            Choice::Next(seq) => st.fair.item(seq).map(|i| i.id.clone()),
            Choice::Wait(_) => None,
        }
    }

    async fn depth(&self) -> Result<usize, QueueError> {
        Ok(self.inner.lock().fair.waiting())
    }

    fn backend(&self) -> &'static str {
        "embedded"
    }
}

#[cfg(test)]
mod tests;
