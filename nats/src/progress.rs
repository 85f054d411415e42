//! Progress on core NATS: a node publishes every [`ProgressEvent`](protocol::ProgressEvent) of a
//! running job on `refrain.progress.<job id>` with [`publish_progress`] (fire and forget:
//! progress is advisory, losing one in a reconnect is harmless). The orchestrator's bus
//! subscribes to `refrain.progress.*`.

use async_nats::Client;

use crate::wire::{self, ProgressWire};
use crate::NatsError;

/// Publishes one progress event (core NATS, no acknowledgement).
pub async fn publish_progress(client: &Client, message: &ProgressWire) -> Result<(), NatsError> {
    let subject = wire::progress_subject(&message.id);
    let payload = serde_json::to_vec(message).map_err(|e| NatsError::Decode {
        subject: subject.clone(),
        message: e.to_string(),
    })?;
    client
        .publish(subject.clone(), payload.into())
        .await
        .map_err(|e| NatsError::nats(format!("publish {subject}"), e))
}
