//! A job message while the node holds it: the in-progress ticker that keeps it from being
//! delivered to another node while it runs, and the guard that gives it back when
//! `NatsLink::next` is dropped before handing the job out.

use std::sync::Arc;
use std::time::Duration;

use refrain_nats::jobs::{Delivery, JobConsumer};
use tokio_util::sync::CancellationToken;

/// Gives a taken job back if `next()` is dropped before handing it out (cancel safety).
pub(super) struct Taken {
    pub(super) queue: Arc<JobConsumer>,
    pub(super) delivery: Option<Delivery>,
    pub(super) ticker: CancellationToken,
}

impl Taken {
    /// The job was handed out: dropping no longer gives it back.
    pub(super) fn disarm(mut self) {
        self.delivery = None;
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(delivery) = self.delivery.take() {
            self.ticker.cancel();
            let queue = self.queue.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = queue.nack(&delivery, Duration::ZERO).await {
                        tracing::warn!(job = %delivery.id, error = %e, "cannot give back a job; it returns after ack_wait");
                    }
                });
            }
        }
    }
}

/// Sends `+WPI` for `delivery` every third of `ack_wait` until `stop` fires.
pub(super) fn spawn_ticker(
    queue: Arc<JobConsumer>,
    delivery: Delivery,
    ack_wait: Duration,
    stop: CancellationToken,
) {
    let every = (ack_wait / 3).max(Duration::from_millis(200));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if let Err(e) = queue.in_progress(&delivery).await {
                        tracing::debug!(job = %delivery.id, error = %e, "in-progress ack lost");
                    }
                }
            }
        }
    });
}
