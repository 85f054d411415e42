//! The NATS JetStream plumbing that both sides of the distributed deployment use — the
//! orchestrator (`refrain serve` with `queue.backend = "nats"`) and the inference nodes
//! (`refrain node`) — kept apart from the HTTP service (axum, sled) and from ONNX Runtime, so
//! that a node links neither and the orchestrator links no runtime.
//!
//! * [`connect`] — the client connection (credentials, TLS, reconnecting forever);
//! * [`Settings`], [`Role`] and [`JetStream::setup`] — the streams, the shared jobs consumer and
//!   the buckets, created or checked;
//! * [`retry`] and [`publish_durable`] — JetStream calls that survive server restarts;
//! * [`jobs`] — the work-queue consumer ([`jobs::JobConsumer`]): take one job, ack, nack, term;
//! * [`objects`] — the object store buckets (inputs and results);
//! * [`probe`] — a one-off check of a server (version, JetStream) for `refrain doctor`;
//! * [`progress`] — progress events on core NATS ([`progress::publish_progress`]);
//! * [`server`] — telling a restarted server (which forgot every pull) from a connection blip;
//! * [`wire`] — names and message formats;
//! * [`NatsConfig`] — the `[nats]` configuration section.
//!
//! Both sides survive a nats-server restart: the client reconnects forever (at most
//! `reconnect_max_delay_ms` apart), pulls the restarted server forgot are sent again as soon as
//! the client is back, and JetStream calls that fail are retried (the consumer is looked up
//! again after repeated errors).

pub mod config;
pub mod jobs;
pub mod objects;
pub mod probe;
pub mod progress;
pub mod server;
pub mod wire;

use std::future::Future;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, Context};
use async_nats::{Client, ConnectOptions, Event};
use tokio_util::sync::CancellationToken;

pub use config::NatsConfig;

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("cannot connect to NATS at {url}: {message}")]
    Connect { url: String, message: String },
    /// A JetStream API call (stream, consumer, publish, ack) failed.
    #[error("JetStream {what}: {message}")]
    JetStream { what: String, message: String },
    /// A core NATS call failed.
    #[error("NATS {what}: {message}")]
    Nats { what: String, message: String },
    #[error("object {bucket}/{name}: {message}")]
    Object {
        bucket: String,
        name: String,
        message: String,
    },
    #[error("object {bucket}/{name} does not exist")]
    ObjectNotFound { bucket: String, name: String },
    /// A message that does not decode.
    #[error("undecodable message on {subject}: {message}")]
    Decode { subject: String, message: String },
    /// Gave up waiting (shutdown or deadline).
    #[error("{0}: gave up")]
    GaveUp(String),
}

impl NatsError {
    pub fn js(what: impl Into<String>, e: impl std::fmt::Display) -> NatsError {
        NatsError::JetStream {
            what: what.into(),
            message: e.to_string(),
        }
    }

    pub fn nats(what: impl Into<String>, e: impl std::fmt::Display) -> NatsError {
        NatsError::Nats {
            what: what.into(),
            message: e.to_string(),
        }
    }
}

/// Connects to NATS (with the configured credentials and TLS), reconnecting forever. Returns
/// at once, before the connection is up (`retry_on_initial_connect`): the first calls are
/// retried by their callers.
pub async fn connect(config: &NatsConfig, name: &str) -> Result<Client, NatsError> {
    let url = config.url.as_str();
    let failed = |message: String| NatsError::Connect {
        url: url.to_string(),
        message,
    };
    let who = name.to_string();
    let max_delay = Duration::from_millis(config.reconnect_max_delay_ms);
    let mut options = ConnectOptions::new();
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| failed(format!("credentials file {}: {e}", path.display())))?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(ca) = &config.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    options
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(Duration::from_secs(10))
        // 0.1 s, 0.2 s, 0.3 s, … after a connection is lost, then every
        // `reconnect_max_delay_ms` while the server stays away.
        .reconnect_delay_callback(move |attempts| {
            Duration::from_millis(100 * attempts as u64)
                .clamp(Duration::from_millis(100), max_delay)
        })
        .event_callback(move |event| {
            let who = who.clone();
            async move {
                match event {
                    Event::Connected => tracing::info!(client = %who, "connected to NATS"),
                    Event::Disconnected => {
                        tracing::warn!(client = %who, "disconnected from NATS; reconnecting")
                    }
                    Event::SlowConsumer(sid) => {
                        tracing::warn!(client = %who, sid, "slow NATS subscriber")
                    }
                    other => tracing::info!(client = %who, event = %other, "NATS event"),
                }
            }
        })
        .connect(url)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.to_string(),
            message: e.to_string(),
        })
}

/// How long a double ack waits for the server's confirmation before it counts as lost (and
/// is retried, or left to redelivery). The client's own request timeout is 10 s, which after
/// a server restart would stall a node or the orchestrator's event loop that long.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// Settings derived from the configuration that both sides need.
#[derive(Debug, Clone)]
pub struct Settings {
    pub nats: NatsConfig,
    /// Runs that end in an error of the job before it fails (`inference.max_attempts`).
    pub max_attempts: u32,
    /// Runs in a row lost with their node before the job fails as suspected of killing its
    /// nodes (`inference.max_interruptions`; 0: never).
    pub max_interruptions: u32,
}

impl Settings {
    pub fn ack_wait(&self) -> Duration {
        Duration::from_secs(self.nats.ack_wait_seconds)
    }
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.nats.max_age_hours * 3600)
    }
    pub fn fetch_expires(&self) -> Duration {
        Duration::from_secs(self.nats.fetch_expires_seconds)
    }
    pub fn retry_delay(&self) -> Duration {
        Duration::from_secs(self.nats.retry_delay_seconds)
    }
    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.nats.heartbeat_seconds)
    }

    /// The jobs stream: a work queue on disk, de-duplicated by job id.
    pub fn jobs_stream(&self) -> stream::Config {
        stream::Config {
            name: wire::JOBS_STREAM.into(),
            description: Some("Refrain jobs waiting for an inference node".into()),
            subjects: vec![wire::JOBS_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.nats.duplicate_window_seconds),
            max_age: self.max_age(),
            ..Default::default()
        }
    }

    /// The events stream: node reports and the max-deliveries advisory, on disk.
    pub fn events_stream(&self) -> stream::Config {
        stream::Config {
            name: wire::EVENTS_STREAM.into(),
            description: Some("Refrain node events (started, succeeded, failed)".into()),
            subjects: vec![
                wire::EVENTS_SUBJECTS.into(),
                wire::max_deliveries_advisory(),
            ],
            retention: stream::RetentionPolicy::Limits,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.nats.duplicate_window_seconds),
            max_age: self.max_age(),
            ..Default::default()
        }
    }

    /// The consumer every node shares.
    pub fn jobs_consumer(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(wire::JOBS_CONSUMER.into()),
            description: Some("Refrain inference nodes (shared)".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait(),
            // Unlimited: a delivery lost with its node is not the job's fault. Nodes count
            // the job's own failures (max_attempts) and lost runs (max_interruptions) from
            // its events.
            max_deliver: -1,
            max_ack_pending: self.nats.max_ack_pending,
            ..Default::default()
        }
    }

    /// The orchestrator's consumer of node events.
    pub fn events_consumer(&self) -> consumer::pull::Config {
        consumer::pull::Config {
            durable_name: Some(wire::EVENTS_CONSUMER.into()),
            description: Some("Refrain orchestrator".into()),
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(self.nats.events_ack_wait_seconds),
            max_deliver: -1,
            ..Default::default()
        }
    }
}

/// Which side sets up the JetStream objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Creates or updates streams and consumers to the configuration.
    Orchestrator,
    /// Uses what exists, creating missing pieces with its own settings.
    Node,
}

/// The JetStream objects both sides use.
#[derive(Clone)]
pub struct JetStream {
    pub client: Client,
    pub js: Context,
    pub jobs: stream::Stream,
    pub events: stream::Stream,
    pub objects: objects::Objects,
    pub settings: Settings,
}

impl JetStream {
    /// Creates or checks the streams, the jobs consumer and the buckets, retrying until the
    /// server answers or `cancel` fires.
    pub async fn setup(
        client: Client,
        settings: Settings,
        role: Role,
        cancel: &CancellationToken,
    ) -> Result<JetStream, NatsError> {
        let js = jetstream::new(client.clone());
        let jobs_cfg = settings.jobs_stream();
        let events_cfg = settings.events_stream();
        let (jobs, events) = retry::<_, NatsError, _, _>(
            "setting up the JetStream streams",
            cancel,
            None,
            || async {
                let jobs = ensure_stream(&js, jobs_cfg.clone(), role).await?;
                check_stream(&jobs, stream::RetentionPolicy::WorkQueue)?;
                let events = ensure_stream(&js, events_cfg.clone(), role).await?;
                Ok((jobs, events))
            },
        )
        .await?;
        let consumer_cfg = settings.jobs_consumer();
        retry::<_, NatsError, _, _>("setting up the jobs consumer", cancel, None, || async {
            match role {
                Role::Orchestrator => jobs
                    .create_consumer(consumer_cfg.clone())
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Role::Node => jobs
                    .get_or_create_consumer::<consumer::pull::Config>(
                        wire::JOBS_CONSUMER,
                        consumer_cfg.clone(),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            }
            .map_err(|e| NatsError::js(format!("consumer {}", wire::JOBS_CONSUMER), e))
        })
        .await?;
        let objects =
            retry::<_, NatsError, _, _>("setting up the object store", cancel, None, || {
                objects::Objects::setup(&js, &settings)
            })
            .await?;
        Ok(JetStream {
            client,
            js,
            jobs,
            events,
            objects,
            settings,
        })
    }
}

/// The orchestrator creates the stream or updates it to its configuration; a node uses the
/// stream as it is, creating it only when it is missing.
async fn ensure_stream(
    js: &Context,
    config: stream::Config,
    role: Role,
) -> Result<stream::Stream, NatsError> {
    let what = format!("stream {}", config.name);
    let name = config.name.clone();
    match role {
        Role::Orchestrator => {
            js.create_or_update_stream(config)
                .await
                .map_err(|e| NatsError::js(&what, e))?;
            js.get_stream(&name)
                .await
                .map_err(|e| NatsError::js(&what, e))
        }
        Role::Node => js
            .get_or_create_stream(config)
            .await
            .map_err(|e| NatsError::js(&what, e)),
    }
}

fn check_stream(
    stream: &stream::Stream,
    retention: stream::RetentionPolicy,
) -> Result<(), NatsError> {
    let info = stream.cached_info();
    if info.config.retention != retention {
        return Err(NatsError::JetStream {
            what: format!("stream {}", info.config.name),
            message: format!(
                "exists with retention {:?}, expected {retention:?}; delete it or use another server",
                info.config.retention
            ),
        });
    }
    Ok(())
}

/// Runs `op` until it succeeds, waiting 0.25 s, 0.5 s, … (at most 2 s) between tries and logging
/// every few failures. Gives up when `cancel` fires (with [`NatsError::GaveUp`]) or, if given,
/// after `deadline` (with the last error). Works with any error that a [`NatsError`] converts
/// into, so callers keep their own error type.
pub async fn retry<T, E, F, Fut>(
    what: &str,
    cancel: &CancellationToken,
    deadline: Option<Duration>,
    mut op: F,
) -> Result<T, E>
where
    E: From<NatsError> + std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_millis(250);
    let mut failures = 0u32;
    loop {
        let last = match op().await {
            Ok(v) => {
                if failures > 0 {
                    tracing::info!(what, failures, "succeeded after retrying");
                }
                return Ok(v);
            }
            Err(e) => e,
        };
        failures += 1;
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::warn!(what, failures, error = %last, "NATS call failed; retrying");
        }
        if deadline.is_some_and(|d| started.elapsed() + delay > d) {
            tracing::error!(what, failures, error = %last, "NATS call failed; giving up");
            return Err(last);
        }
        tokio::select! {
            _ = cancel.cancelled() => return Err(NatsError::GaveUp(format!("{what} ({last})")).into()),
            _ = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Publishes `payload` to a JetStream subject with a message id and waits for the stream's
/// acknowledgement (so it is on disk). Returns whether the stream dropped it as a duplicate.
pub async fn publish_durable(
    js: &Context,
    subject: String,
    message_id: &str,
    payload: Vec<u8>,
) -> Result<bool, NatsError> {
    let publish = jetstream::message::PublishMessage::build()
        .payload(payload.into())
        .message_id(message_id);
    let ack = js
        .send_publish(subject.clone(), publish)
        .await
        .map_err(|e| NatsError::js(format!("publish to {subject}"), e))?
        .await
        .map_err(|e| NatsError::js(format!("publish acknowledgement from {subject}"), e))?;
    Ok(ack.duplicate)
}

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// This machine's host name (`unknown` if it cannot be read).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
