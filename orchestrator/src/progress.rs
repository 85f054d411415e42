//! Progress of running jobs: the bus nodes publish step-level events on, and the board that
//! keeps the latest event per job for the polling endpoints.
//!
//! The [`ProgressBus`] is a trait with an embedded implementation (a tokio broadcast channel) and
//! a NATS one (core subjects, one per job). The [`ProgressBoard`] is one task that owns the map
//! of latest events: it consumes the bus, ignores events of older attempts (so a redelivered
//! job's progress restarts cleanly), persists stage changes to the job store, and answers
//! queries over a channel.

use std::collections::HashMap;

use protocol::{JobId, ProgressEvent, Stage};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queue::QueueError;
use crate::store::JobStore;

/// One event on the bus: job, attempt, event.
#[derive(Debug, Clone)]
pub struct ProgressMessage {
    pub id: JobId,
    pub attempt: u32,
    pub event: ProgressEvent,
}

/// Where nodes publish progress.
#[async_trait::async_trait]
pub trait ProgressBus: Send + Sync + 'static {
    async fn publish(&self, message: ProgressMessage) -> Result<(), QueueError>;
    /// A receiver of every event published from now on.
    fn subscribe(&self) -> broadcast::Receiver<ProgressMessage>;
}

/// The in-process bus of the embedded deployment.
#[derive(Debug, Clone)]
pub struct EmbeddedBus {
    tx: broadcast::Sender<ProgressMessage>,
}

impl EmbeddedBus {
    pub fn new() -> EmbeddedBus {
        let (tx, _) = broadcast::channel(1024);
        EmbeddedBus { tx }
    }
}

impl Default for EmbeddedBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl ProgressBus for EmbeddedBus {
    async fn publish(&self, message: ProgressMessage) -> Result<(), QueueError> {
        // No receiver is not an error: nobody is watching.
        let _ = self.tx.send(message);
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<ProgressMessage> {
        self.tx.subscribe()
    }
}

enum Command {
    Get(JobId, oneshot::Sender<Option<(u32, ProgressEvent)>>),
    Forget(JobId),
}

/// Handle to the task that owns the latest progress of every job.
#[derive(Debug, Clone)]
pub struct ProgressBoard {
    tx: mpsc::Sender<Command>,
}

impl ProgressBoard {
    /// Starts the board task on `tracker`; it stops when `cancel` fires.
    pub fn spawn(
        bus: &dyn ProgressBus,
        store: JobStore,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> ProgressBoard {
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        let mut events = bus.subscribe();
        tracker.spawn(async move {
            let mut latest: HashMap<JobId, (u32, ProgressEvent)> = HashMap::new();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    cmd = rx.recv() => match cmd {
                        Some(Command::Get(id, reply)) => {
                            let _ = reply.send(latest.get(&id).cloned());
                        }
                        Some(Command::Forget(id)) => {
                            latest.remove(&id);
                        }
                        None => break,
                    },
                    msg = events.recv() => match msg {
                        Ok(m) => record(&mut latest, &store, m).await,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            tracing::warn!(skipped = n, "progress board lagged behind the bus");
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                }
            }
        });
        ProgressBoard { tx }
    }

    /// The latest event of a job's current attempt, if any was seen.
    pub async fn get(&self, id: &JobId) -> Option<(u32, ProgressEvent)> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Command::Get(id.clone(), reply)).await.ok()?;
        rx.await.ok().flatten()
    }

    /// Drops a finished job's entry.
    pub async fn forget(&self, id: &JobId) {
        let _ = self.tx.send(Command::Forget(id.clone())).await;
    }
}

async fn record(
    latest: &mut HashMap<JobId, (u32, ProgressEvent)>,
    store: &JobStore,
    m: ProgressMessage,
) {
    let stage_changed = match latest.get(&m.id) {
        Some((attempt, _)) if *attempt > m.attempt => return, // a late event of an older attempt
        Some((attempt, prev)) => *attempt < m.attempt || prev.stage != m.event.stage,
        None => true,
    };
    if stage_changed || m.event.stage == Stage::Done {
        match store.set_progress(&m.id, m.attempt, &m.event) {
            Ok(true) => {
                if let Err(e) = store.flush().await {
                    tracing::warn!(job = %m.id, error = %e, "cannot flush progress");
                }
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(job = %m.id, error = %e, "cannot persist progress"),
        }
    }
    if m.event.stage == Stage::Done {
        latest.remove(&m.id);
    } else {
        latest.insert(m.id, (m.attempt, m.event));
    }
}
