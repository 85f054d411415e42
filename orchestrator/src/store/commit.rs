//! Group commit: many writers that each need "my writes are on disk" share one sled flush.
//!
//! sled buffers writes in memory and a write is lost on SIGKILL until a flush makes it stable
//! (see the store's module docs). One flush per state change costs one `sync_file_range` each;
//! with many concurrent submits that is the bottleneck, and it was serialised by the admission
//! lock. [`GroupFlush::flush`] instead takes a ticket (after the caller's writes), and waits
//! for a flush that *started* after that ticket was taken: such a flush covers every write made
//! before it. At most one flush runs at a time; whoever arrives while one runs waits for the
//! next one, which then covers everybody who arrived meanwhile.
//!
//! The flush runs in a spawned task, so a caller whose future is dropped (a client that hung
//! up) never leaves the group without a leader. A failed flush fails every caller it was to
//! cover; the next caller starts a fresh one.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

use super::StoreError;

/// Shared flushes of one sled database. Cheap to clone.
#[derive(Clone)]
pub struct GroupFlush {
    inner: Arc<Shared>,
}

struct Shared {
    db: sled::Db,
    state: Mutex<State>,
    /// The last flush that ended: the tickets it covers and how it went.
    done: watch::Sender<Round>,
}

#[derive(Default)]
struct State {
    /// The last ticket handed out.
    tickets: u64,
    /// Whether a flush runs now.
    running: bool,
}

#[derive(Clone, Default)]
struct Round {
    /// Every ticket up to this one is covered.
    upto: u64,
    /// Why it failed, if it did.
    error: Option<Arc<String>>,
}

impl GroupFlush {
    pub fn new(db: sled::Db) -> GroupFlush {
        GroupFlush {
            inner: Arc::new(Shared {
                db,
                state: Mutex::new(State::default()),
                done: watch::channel(Round::default()).0,
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Two integers, each changed in one statement: a poisoned lock still guards sane data.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Returns once every write this caller made before the call is durable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let mut done = self.inner.done.subscribe();
        let ticket = {
            let mut st = self.state();
            st.tickets += 1;
            st.tickets
        };
        loop {
            {
                let round = done.borrow_and_update();
                if round.upto >= ticket {
                    return match &round.error {
                        None => Ok(()),
                        Some(e) => Err(StoreError::Flush(e.to_string())),
                    };
                }
            }
            self.lead();
            if done.changed().await.is_err() {
                return Err(StoreError::Flush("the store was closed".into()));
            }
        }
    }

    /// Starts a flush covering every ticket handed out so far, unless one runs.
    fn lead(&self) {
        let upto = {
            let mut st = self.state();
            if st.running {
                return;
            }
            st.running = true;
            st.tickets
        };
        let this = self.clone();
        tokio::spawn(async move {
            let result = this.inner.db.flush_async().await;
            this.state().running = false;
            let error = result.err().map(|e| Arc::new(e.to_string()));
            if let Some(e) = &error {
                tracing::error!(error = %e, "flushing the job store failed");
            }
            this.inner.done.send_replace(Round { upto, error });
        });
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::*;

    #[tokio::test]
    async fn concurrent_callers_share_flushes_and_see_their_writes_durable() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let group = GroupFlush::new(db.clone());
        let tree = db.open_tree("t").unwrap();
        let mut tasks = Vec::new();
        for i in 0..64u32 {
            let (group, tree) = (group.clone(), tree.clone());
            tasks.push(tokio::spawn(async move {
                tree.insert(i.to_be_bytes(), b"x").unwrap();
                group.flush().await.unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        // Every caller returned after a round that covers its ticket: the last covers all.
        let round = group.inner.done.borrow().clone();
        assert_eq!(round.upto, 64);
        assert!(round.error.is_none());
    }

    #[tokio::test]
    async fn a_dropped_caller_does_not_stall_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let group = GroupFlush::new(db);
        // A caller polled once (it takes its ticket and starts the flush as leader), then
        // dropped: the flush task still ends the round.
        let mut dropped = Box::pin(group.flush());
        std::future::poll_fn(|cx| {
            let _ = dropped.as_mut().poll(cx);
            std::task::Poll::Ready(())
        })
        .await;
        drop(dropped);
        tokio::time::timeout(std::time::Duration::from_secs(10), group.flush())
            .await
            .expect("a later caller is not stuck behind the dropped one")
            .unwrap();
    }
}
