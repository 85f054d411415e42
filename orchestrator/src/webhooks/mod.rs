//! Webhooks: telling a client's endpoint about every status change of its job, at least once,
//! across restarts.
//!
//! A front end that takes a webhook (the task API's `config.webhook_config`) puts a [`Target`]
//! in the job's [`crate::app::JobMeta`]; admission checks the endpoint through the outbound
//! guard and [`Webhooks::register`] makes it durable (with a cursor into the job's outbox)
//! before the job itself is stored. From then on the [`dispatch`] task, the one owner of
//! deliveries, turns each status change in the job's outbox into a [`Delivery`] — the body is
//! fixed when the delivery is made: `{"timestamp", "data": <the API's GET body at that
//! change>}` — and POSTs it, signed ([`sign`]), through the same outbound guard as audio URLs
//! (no redirect followed). A delivery that fails is tried again with exponential back-off and
//! jitter until `webhooks.retry_for_seconds` have passed since its first attempt; deliveries of
//! one job go out in order (the next waits while an earlier one is being retried). Everything
//! is in sled ([`store`]) and flushed before it is acted on, so a restart resumes where it
//! stopped: an attempt cut off by the restart is made again (at least once, never never).
//!
//! Each task's delivery log (every attempt with its status or error) is served by the task API,
//! which can also ask for a delivery again ([`Webhooks::redeliver`]).

pub mod dispatch;
pub mod sign;
mod store;

use std::fmt;
use std::sync::Arc;

use protocol::JobId;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use self::store::WebhookStoreError;
use crate::store::now_ms;

/// Where a job's status changes go, and in which API's shape.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub endpoint: String,
    pub secret: String,
    pub payload: Payload,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret (logs).
        f.debug_struct("Target")
            .field("endpoint", &self.endpoint)
            .field("payload", &self.payload)
            .finish_non_exhaustive()
    }
}

/// Whose GET body a delivery carries as its `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// The task object of PiAPI's unified envelope (`POST /api/v1/task`).
    Piapi,
    /// Qubico's task body (`POST /v1/inference`).
    Qubico,
    /// Refrain's own job view (`GET /api/v1/jobs/{id}`): scheduled jobs.
    Refrain,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt at `next_ms`.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Every attempt for `webhooks.retry_for_seconds` failed; [`Webhooks::redeliver`] starts
    /// again.
    Failed,
}

/// One POST to the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// Unix milliseconds.
    pub at_ms: u64,
    /// The HTTP status the endpoint answered, if it answered.
    pub status: Option<u16>,
    /// Why it failed (`None`: delivered).
    pub error: Option<String>,
    pub duration_ms: u64,
}

/// One status change on its way to the endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `msg_<job>_<seq>`: the `webhook-id`, the same on every attempt (receivers de-duplicate
    /// by it).
    pub id: String,
    pub job: JobId,
    /// The outbox event it reports.
    pub seq: u64,
    /// The event's kind (`queued`, `started`, `succeeded`…).
    pub event: String,
    /// The body, exactly as POSTed.
    pub body: String,
    pub created_ms: u64,
    pub state: DeliveryState,
    /// When the next attempt is due (pending only).
    pub next_ms: Option<u64>,
    /// When the current series of attempts began (creation, or the last redelivery).
    pub cycle_started_ms: u64,
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    /// The `webhook-id` of event `seq` of `job`.
    pub fn id_of(job: &JobId, seq: u64) -> String {
        format!("msg_{job}_{seq}")
    }
}

/// The durable side of webhooks, shared by admission, the task API and the dispatcher. Cheap
/// to clone.
#[derive(Clone)]
pub struct Webhooks {
    store: store::Trees,
    wake: Arc<Notify>,
}

impl Webhooks {
    /// Opens (creates) the webhook trees in the job store's database.
    pub fn open(db: &sled::Db) -> Result<Webhooks, WebhookStoreError> {
        Ok(Webhooks {
            store: store::Trees::open(db)?,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Writes `target` for job `id`, before the job is stored, in the job store's database and
    /// without flushing: admission's group commit, which makes the job durable before its
    /// 2xx, covers it too (sled writes its log in order, so a job on disk has its earlier
    /// target on disk). A crash before the job is stored leaves a target without a job, which
    /// the dispatcher removes at start.
    pub fn register(&self, id: &JobId, target: &Target) -> Result<(), WebhookStoreError> {
        self.store.register_buffered(id, target)
    }

    /// The deliveries of job `id`, oldest first.
    pub fn deliveries(&self, id: &JobId) -> Result<Vec<Delivery>, WebhookStoreError> {
        self.store.deliveries_of(id)
    }

    /// Whether job `id` has a webhook.
    pub fn target(&self, id: &JobId) -> Result<Option<Target>, WebhookStoreError> {
        self.store.target(id)
    }

    /// Sends delivery `delivery_id` of job `id` again now, with a new series of attempts.
    /// `Ok(None)`: no such delivery.
    pub async fn redeliver(
        &self,
        id: &JobId,
        delivery_id: &str,
    ) -> Result<Option<Delivery>, WebhookStoreError> {
        let Some(mut delivery) = self
            .store
            .deliveries_of(id)?
            .into_iter()
            .find(|d| d.id == delivery_id)
        else {
            return Ok(None);
        };
        let now = now_ms();
        delivery.state = DeliveryState::Pending;
        delivery.next_ms = Some(now);
        delivery.cycle_started_ms = now;
        self.store.record(&delivery).await?;
        self.wake.notify_one();
        Ok(Some(delivery))
    }
}
