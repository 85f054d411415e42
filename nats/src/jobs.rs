//! The jobs work queue as seen by whoever takes jobs from it: one work-queue stream
//! (`REFRAIN_JOBS`) with one subject per job and one durable pull consumer shared by every
//! node. [`JobConsumer`] wraps that consumer for the node's `NatsLink` and for the
//! orchestrator's `Queue` implementation.
//!
//! [`JobConsumer::take`] waits for one job with a one-message `batch()` (never `messages()`,
//! which prefetches a second job, and no idle heartbeat on the batch, which stalls it in
//! async-nats 0.51) and a short `expires`, so a pull lost in a server restart is replaced soon.
//! A pull that a restarted server forgot is replaced as soon as the client is connected to
//! the new server process ([`crate::server::ServerWatch`]); so is a double ack it never
//! confirmed (the caller acknowledges again).
//! The attempt number is JetStream's delivery count. [`JobConsumer::ack`] is a double ack
//! (confirmed by the server), [`JobConsumer::nack`] a (delayed) `-NAK`, [`JobConsumer::term`] a
//! `+TERM`, [`JobConsumer::in_progress`] a `+WPI` that restarts `ack_wait`. After repeated
//! errors the consumer is looked up (or, on a node, created) again.
//!
//! Cancel safety of `take`: a message that arrived while the future was dropped is not lost;
//! the server delivers it again after `ack_wait` (with a higher delivery count).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::stream::LastRawMessageErrorKind;
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use protocol::JobId;

use crate::server::ServerWatch;
use crate::wire::{self, JobMessage};
use crate::{JetStream, NatsError, Role};

/// Consecutive pull errors after which the consumer is looked up again.
const RECREATE_AFTER: u32 = 3;

/// A job message handed to one taker.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: JobId,
    /// JetStream's delivery count: 1 on first delivery, +1 on every redelivery.
    pub delivered: u32,
    /// This consumer's handle of the message; settling a stale handle is a no-op.
    pub handle: u64,
}

/// The shared jobs consumer, and the messages taken from it that are not settled yet.
pub struct JobConsumer {
    js: JetStream,
    role: Role,
    consumer: tokio::sync::Mutex<Option<PullConsumer>>,
    errors: AtomicU32,
    held: Mutex<HashMap<u64, jetstream::Message>>,
    next_handle: AtomicU64,
}

impl std::fmt::Debug for JobConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobConsumer")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl JobConsumer {
    /// The consumer as `role` uses it: a node creates it when it is missing, the orchestrator
    /// only looks it up (it created it in [`JetStream::setup`]).
    pub fn new(js: JetStream, role: Role) -> JobConsumer {
        JobConsumer {
            js,
            role,
            consumer: tokio::sync::Mutex::new(None),
            errors: AtomicU32::new(0),
            held: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        }
    }

    pub fn jetstream(&self) -> &JetStream {
        &self.js
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, jetstream::Message>> {
        // Only inserts and removes happen under the lock: a poisoned map is still consistent.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The shared consumer, looked up once and again after repeated errors.
    async fn consumer(&self) -> Result<PullConsumer, NatsError> {
        let mut slot = self.consumer.lock().await;
        if self.errors.load(Ordering::SeqCst) >= RECREATE_AFTER {
            tracing::warn!("looking up the jobs consumer again after repeated errors");
            *slot = None;
            self.errors.store(0, Ordering::SeqCst);
        }
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let what = format!("consumer {}", wire::JOBS_CONSUMER);
        let consumer: PullConsumer = match self.role {
            Role::Orchestrator => self
                .js
                .jobs
                .get_consumer(wire::JOBS_CONSUMER)
                .await
                .map_err(|e| NatsError::js(&what, e))?,
            Role::Node => self
                .js
                .jobs
                .get_or_create_consumer(wire::JOBS_CONSUMER, self.js.settings.jobs_consumer())
                .await
                .map_err(|e| NatsError::js(&what, e))?,
        };
        *slot = Some(consumer.clone());
        Ok(consumer)
    }

    fn failed(&self, e: NatsError) -> NatsError {
        self.errors.fetch_add(1, Ordering::SeqCst);
        e
    }

    /// `ack_wait` and `max_deliver` as the server has them now (they may have been changed by
    /// the orchestrator after this node started).
    pub async fn delivery_limits(&self) -> Result<(Duration, u32), NatsError> {
        let info = self
            .js
            .jobs
            .consumer_info(wire::JOBS_CONSUMER)
            .await
            .map_err(|e| NatsError::js(format!("consumer {} info", wire::JOBS_CONSUMER), e))?;
        let max_deliver = u32::try_from(info.config.max_deliver).unwrap_or(u32::MAX);
        Ok((
            info.config.ack_wait,
            if max_deliver == 0 {
                u32::MAX
            } else {
                max_deliver
            },
        ))
    }

    /// Waits up to `nats.fetch_expires_seconds` for one job. `None` when none came (or an
    /// undecodable message was terminated).
    pub async fn take(&self) -> Result<Option<(Delivery, JobMessage)>, NatsError> {
        let consumer = self.consumer().await.map_err(|e| self.failed(e))?;
        let expires = self.js.settings.fetch_expires();
        let server = ServerWatch::when_connected(&self.js.client, expires).await;
        let mut batch = consumer
            .batch()
            .max_messages(1)
            .expires(expires)
            .messages()
            .await
            .map_err(|e| self.failed(NatsError::js("pull request", e)))?;
        // The server answers an expired pull. One it forgot in a restart is replaced as soon
        // as the client is connected to the new server process, or else (a restart the client
        // did not see) given up a second after it would have expired.
        let wait = expires + Duration::from_secs(1);
        let next = tokio::select! {
            biased;
            next = tokio::time::timeout(wait, batch.next()) => match next {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!("a pull got no answer; pulling again");
                    return Ok(None);
                }
            },
            _ = server.restarted() => {
                tracing::info!("nats-server restarted: pulling for a job again");
                return Ok(None);
            }
        };
        let message = match next {
            None => {
                self.errors.store(0, Ordering::SeqCst);
                return Ok(None);
            }
            Some(Err(e)) => return Err(self.failed(NatsError::js("pull", e))),
            Some(Ok(m)) => m,
        };
        self.errors.store(0, Ordering::SeqCst);
        let delivered = match message.info() {
            Ok(info) => u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1),
            Err(e) => {
                tracing::error!(subject = %message.subject, error = %e, "a job message without delivery info; giving it back");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return Ok(None);
            }
        };
        let job: JobMessage = match serde_json::from_slice(&message.payload) {
            Ok(j) => j,
            Err(e) => {
                tracing::error!(subject = %message.subject, error = %e, "an undecodable job message; terminating it");
                if let Err(e) = message.double_ack_with(AckKind::Term).await {
                    tracing::warn!(error = %e, "cannot terminate the undecodable message");
                }
                return Ok(None);
            }
        };
        let handle = self.next_handle.fetch_add(1, Ordering::SeqCst);
        self.held().insert(handle, message);
        Ok(Some((
            Delivery {
                id: job.id.clone(),
                delivered,
                handle,
            },
            job,
        )))
    }

    fn message(&self, delivery: &Delivery) -> Option<jetstream::Message> {
        self.held().get(&delivery.handle).cloned()
    }

    async fn settle(&self, delivery: &Delivery, kind: AckKind) -> Result<(), NatsError> {
        let Some(message) = self.message(delivery) else {
            tracing::debug!(job = %delivery.id, handle = delivery.handle, "ignoring a stale ack");
            return Ok(());
        };
        // A double ack waits for the server's confirmation; one lost in a server restart
        // would hold the node for the client's request timeout (10 s), so it is given up as
        // soon as the client is connected to the restarted server (or after `ACK_TIMEOUT`),
        // and the caller acknowledges again.
        let server = ServerWatch::now(&self.js.client);
        let what = || format!("acknowledging job {}", delivery.id);
        tokio::select! {
            biased;
            acked = tokio::time::timeout(crate::ACK_TIMEOUT, message.double_ack_with(kind)) => {
                acked
                    .map_err(|_| NatsError::js(what(), "no confirmation from the server"))?
                    .map_err(|e| NatsError::js(what(), e))?;
            }
            _ = server.restarted() => {
                return Err(NatsError::js(what(), "nats-server restarted before it confirmed"));
            }
        }
        self.held().remove(&delivery.handle);
        Ok(())
    }

    /// Done with it: removed from the stream (confirmed by the server).
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), NatsError> {
        self.settle(delivery, AckKind::Ack).await
    }

    /// Gives it back, to be delivered again after `delay` (at once when zero).
    pub async fn nack(&self, delivery: &Delivery, delay: Duration) -> Result<(), NatsError> {
        let kind = AckKind::Nak((!delay.is_zero()).then_some(delay));
        self.settle(delivery, kind).await
    }

    /// Stops redelivery of a job that cannot succeed (after its failure was reported).
    pub async fn term(&self, delivery: &Delivery) -> Result<(), NatsError> {
        self.settle(delivery, AckKind::Term).await
    }

    /// Still working on it: restarts `ack_wait`.
    pub async fn in_progress(&self, delivery: &Delivery) -> Result<(), NatsError> {
        let Some(message) = self.message(delivery) else {
            return Ok(());
        };
        message
            .ack_with(AckKind::Progress)
            .await
            .map_err(|e| NatsError::js(format!("in-progress ack of job {}", delivery.id), e))
    }

    /// Forgets a delivery without telling the server (it comes back after `ack_wait`).
    pub fn release(&self, delivery: &Delivery) {
        self.held().remove(&delivery.handle);
    }

    /// Whether the stream still holds a message of this job (waiting, in flight, or out of
    /// deliveries).
    pub async fn holds(&self, id: &JobId) -> Result<bool, NatsError> {
        match self
            .js
            .jobs
            .get_last_raw_message_by_subject(&wire::job_subject(id))
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
            Err(e) => Err(NatsError::js(format!("looking up job {id}"), e)),
        }
    }

    /// The job message the consumer would deliver next, read without taking it: the first
    /// job message after the consumer's last delivered stream sequence. `None` when no message
    /// waits undelivered. (A message given back for redelivery, behind that sequence, is not
    /// seen: this is a guess for preparing inputs ahead, never a delivery.)
    pub async fn peek(&self) -> Result<Option<JobMessage>, NatsError> {
        let info = self
            .js
            .jobs
            .consumer_info(wire::JOBS_CONSUMER)
            .await
            .map_err(|e| NatsError::js("consumer info", e))?;
        if info.num_pending == 0 {
            return Ok(None);
        }
        let from = info.delivered.stream_sequence.saturating_add(1);
        let message = match self
            .js
            .jobs
            .raw_message_builder()
            .sequence(from)
            .next_by_subject(wire::JOBS_SUBJECTS)
            .send()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, from, "no job message to look at");
                return Ok(None);
            }
        };
        Ok(serde_json::from_slice(&message.payload).ok())
    }

    /// Messages waiting (not in flight).
    pub async fn depth(&self) -> Result<usize, NatsError> {
        let info = self
            .js
            .jobs
            .consumer_info(wire::JOBS_CONSUMER)
            .await
            .map_err(|e| NatsError::js("consumer info", e))?;
        Ok(usize::try_from(info.num_pending).unwrap_or(usize::MAX))
    }
}
