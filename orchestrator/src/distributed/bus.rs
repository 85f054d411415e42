//! Progress on core NATS: nodes publish every [`protocol::ProgressEvent`] of a running job on
//! `refrain.progress.<job id>` with `refrain_nats::progress::publish_progress` (fire and
//! forget: progress is advisory, losing one in a reconnect is harmless); the orchestrator subscribes to `refrain.progress.*` and re-broadcasts
//! into the process, where the progress board keeps the latest per job (ignoring older
//! attempts) and persists stage changes.
//!
//! [`NatsBus`] is the orchestrator's [`ProgressBus`]: `subscribe` gives the re-broadcast,
//! `publish` sends on NATS (the same path the nodes use).
//! The subscription survives reconnects (the client re-subscribes by itself).

use async_nats::Client;
use futures_util::StreamExt;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use refrain_nats::progress::publish_progress;

use super::wire::{self, ProgressWire};
use super::DistributedError;
use crate::progress::{ProgressBus, ProgressMessage};
use crate::queue::QueueError;

/// The NATS progress bus.
#[derive(Debug, Clone)]
pub struct NatsBus {
    client: Client,
    tx: broadcast::Sender<ProgressMessage>,
}

impl NatsBus {
    /// Subscribes to every job's progress subject and starts forwarding into the process.
    pub async fn start(
        client: Client,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<NatsBus, DistributedError> {
        let (tx, _) = broadcast::channel(1024);
        let subject = format!("{}.*", wire::PROGRESS_PREFIX);
        let mut sub = client
            .subscribe(subject.clone())
            .await
            .map_err(|e| DistributedError::nats(format!("subscribe {subject}"), e))?;
        let forward = tx.clone();
        tracker.spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = sub.next() => match m {
                        Some(m) => m,
                        None => break,
                    },
                };
                match serde_json::from_slice::<ProgressWire>(&message.payload) {
                    Ok(p) => {
                        let _ = forward.send(ProgressMessage { id: p.id, attempt: p.attempt, event: p.event });
                    }
                    Err(e) => {
                        tracing::debug!(subject = %message.subject, error = %e, "ignoring an undecodable progress message")
                    }
                }
            }
            let _ = sub.unsubscribe().await;
        });
        Ok(NatsBus { client, tx })
    }
}

#[async_trait::async_trait]
impl ProgressBus for NatsBus {
    async fn publish(&self, message: ProgressMessage) -> Result<(), QueueError> {
        let wire = ProgressWire {
            id: message.id,
            attempt: message.attempt,
            event: message.event,
        };
        publish_progress(&self.client, &wire)
            .await
            .map_err(|e| QueueError::from(DistributedError::from(e)))
    }

    fn subscribe(&self) -> broadcast::Receiver<ProgressMessage> {
        self.tx.subscribe()
    }
}
