//! Progress of running jobs: the bus nodes publish step-level events on, and the board that
//! keeps the latest event per job for the polling endpoints.
//!
//! The [`ProgressBus`] is a trait with an embedded implementation (a tokio broadcast channel) and
//! a NATS one (core subjects, one per job). The [`ProgressBoard`] is one task that owns the map
//! of latest events: it consumes the bus, ignores events of older attempts (so a redelivered
//! job's progress restarts cleanly), records progress events through the
//! [`Lifecycle`] (the job's outbox: every stage change and the last unit of a stage, flushed,
//! and steps in between at most every [`STEP_EVENT_INTERVAL`], riding on the next flush), and
//! answers queries over a channel. The board itself shows every step.

use std::collections::HashMap;

use protocol::{JobId, ProgressEvent, Stage};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jobs::Lifecycle;
use crate::queue::QueueError;

/// The shortest time between two recorded step events of one job within a stage: with the
/// real model a sampler step takes longer, so every step is recorded; the analytic test bundle
/// runs a step in a millisecond and would otherwise write its whole run to the outbox.
pub const STEP_EVENT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

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
        lifecycle: Lifecycle,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> ProgressBoard {
        let (tx, mut rx) = mpsc::channel::<Command>(256);
        let mut events = bus.subscribe();
        tracker.spawn(async move {
            let mut latest: HashMap<JobId, Latest> = HashMap::new();
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    cmd = rx.recv() => match cmd {
                        Some(Command::Get(id, reply)) => {
                            let _ = reply.send(latest.get(&id).map(|l| (l.attempt, l.event.clone())));
                        }
                        Some(Command::Forget(id)) => {
                            latest.remove(&id);
                        }
                        None => break,
                    },
                    msg = events.recv() => match msg {
                        Ok(m) => record(&mut latest, &lifecycle, m).await,
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

/// What the board knows of one job.
struct Latest {
    attempt: u32,
    event: ProgressEvent,
    /// When the last event of this job went into its outbox.
    recorded: Option<std::time::Instant>,
}

async fn record(latest: &mut HashMap<JobId, Latest>, lifecycle: &Lifecycle, m: ProgressMessage) {
    let (stage_changed, recorded) = match latest.get(&m.id) {
        Some(l) if l.attempt > m.attempt => return, // a late event of an older attempt
        Some(l) if l.attempt == m.attempt => (l.event.stage != m.event.stage, l.recorded),
        _ => (true, None),
    };
    let last_of_stage = m.event.step >= m.event.total;
    let due = recorded.is_none_or(|t| t.elapsed() >= STEP_EVENT_INTERVAL);
    let mut recorded_now = recorded;
    if stage_changed || last_of_stage || due {
        let durable = stage_changed || m.event.stage == Stage::Done;
        match lifecycle
            .progress(&m.id, m.attempt, &m.event, durable)
            .await
        {
            Ok(_) => recorded_now = Some(std::time::Instant::now()),
            // Not running with this attempt (finished, cancelled, redelivered): not recorded.
            Err(
                crate::store::StoreError::Conflict { .. } | crate::store::StoreError::NotFound(_),
            ) => {}
            Err(e) => tracing::warn!(job = %m.id, error = %e, "cannot record progress"),
        }
    }
    if m.event.stage == Stage::Done {
        latest.remove(&m.id);
    } else {
        latest.insert(
            m.id,
            Latest {
                attempt: m.attempt,
                event: m.event,
                recorded: recorded_now,
            },
        );
    }
}
