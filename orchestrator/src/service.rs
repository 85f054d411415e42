//! [`start`]: wires the store, the queue, the progress board, the node links (in-process nodes
//! come from the binary as a [`NodeRunner`]), the background tasks and the HTTP server together
//! into a [`Running`] service that shuts down gracefully. Also [`NodeInfo`], the facts about
//! the inference side that status endpoints show, and re-exports of the facade ([`App`],
//! [`JobMeta`]) and of admission's [`Validator`].

use std::sync::atomic::Ordering;
use std::sync::Arc;

use protocol::node::NodeLink;
use protocol::JobState;
use refrain_model::bundle::Bundle;
use refrain_model::lyrics::lrc::LyricsLimits;
use refrain_model::ModelError;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::distributed::registry::NodeRegistry;
use crate::error::OrchestratorError;
use crate::jobs::{Hub, Lifecycle, RunningJobs};
use crate::metrics::Metrics;
use crate::outputs::OutputStore;
use crate::progress::{ProgressBoard, ProgressBus};
use crate::queue::Queue;
use crate::queue::QueueItem;
use crate::store::JobStore;

/// Facts about the inference side shown by the status endpoints.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// e.g. `cpu`, `cuda:0` (several joined by `,`).
    pub device: String,
    pub bundle_name: String,
    pub bundle_version: String,
    /// The largest `max_frames` of the bundle's DiTs.
    pub max_frames: usize,
    /// Supported lengths, e.g. "95 or 96 to 285".
    pub lengths: String,
}

impl NodeInfo {
    /// The facts of `bundle` as served on `device`.
    pub fn describe(bundle: &Bundle, device: String) -> NodeInfo {
        NodeInfo {
            device,
            bundle_name: bundle.manifest.name.clone(),
            bundle_version: bundle.manifest.version.clone(),
            max_frames: bundle
                .manifest
                .dit
                .iter()
                .map(|d| d.max_frames)
                .max()
                .unwrap_or(0),
            lengths: bundle
                .length_ranges()
                .iter()
                .map(|(a, b, _)| {
                    if a == b {
                        a.to_string()
                    } else {
                        format!("{a} to {b}")
                    }
                })
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

pub use crate::admission::Validator;
pub use crate::app::{App, AppParts, JobMeta};
pub use crate::ids::new_job_id;

/// Errors that stop `refrain serve` from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Orchestrator(#[from] OrchestratorError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Queue(#[from] crate::queue::QueueError),
    #[error("{0}")]
    Storage(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Distributed(#[from] crate::distributed::DistributedError),
}

/// A running service: its address, and the handle that stops it.
pub struct Running {
    pub addr: std::net::SocketAddr,
    pub app: App,
    cancel: tokio_util::sync::CancellationToken,
    tracker: tokio_util::task::TaskTracker,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// A token that stops the service when cancelled.
    pub fn cancel_token(&self) -> tokio_util::sync::CancellationToken {
        self.cancel.clone()
    }

    /// Waits until the service has stopped (after its token was cancelled): the HTTP server
    /// drained, the workers stopped (a running job is requeued), the store flushed.
    pub async fn wait(self) -> Result<(), ServeError> {
        let served = self.server.await;
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
        self.app.store().flush().await?;
        tracing::info!("stopped");
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ServeError::Io {
                path: "HTTP server".into(),
                source: e,
            }),
            Err(e) => Err(ServeError::Storage(format!("HTTP server task: {e}"))),
        }
    }
}

/// How an in-process inference node reaches its jobs.
pub enum InProcessLink {
    /// The embedded queue and job store: run the worker loop
    /// (`refrain_inference::worker::run`) on this link (the service's `EmbeddedLink`).
    Embedded(Arc<dyn NodeLink>),
    /// NATS JetStream (`queue.backend = "nats"`): run the NATS node runner
    /// (`refrain_inference::nats::serve`) on this connection.
    Nats(Box<crate::distributed::JetStream>),
}

/// One in-process inference node the service wants run, handed to the caller's [`NodeRunner`]
/// (the binary, which links the inference crate; this crate does not link ONNX Runtime).
pub struct InProcessNode {
    /// The device as configured: `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub link: InProcessLink,
    /// Fires when the service stops: the node hands its running job back and returns.
    pub cancel: CancellationToken,
    /// Tells the service that the bundle loaded ([`LoadReport::loaded`]) or cannot
    /// ([`LoadReport::failed`]).
    pub report: LoadReport,
}

/// How an in-process node tells the service about its bundle: the service is ready once every
/// configured node has loaded; a node that cannot load stops the service.
#[derive(Clone)]
pub struct LoadReport {
    app: App,
    device: String,
    loaded: Arc<std::sync::atomic::AtomicUsize>,
    total: usize,
    cancel: CancellationToken,
}

impl LoadReport {
    /// The node's bundle is loaded; the last of the configured nodes makes the service ready.
    pub fn loaded(&self) {
        if self.loaded.fetch_add(1, Ordering::SeqCst) + 1 == self.total {
            self.app.set_ready(true);
            tracing::info!("all inference nodes ready");
        }
    }

    /// The node cannot start (`error` says why): logged, and the service stops.
    pub fn failed(&self, error: &str) {
        tracing::error!(node = %self.device, error = %error, "inference node cannot start; stopping");
        self.cancel.cancel();
    }
}

/// A running in-process node: resolves when the node has stopped.
pub type NodeFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>>;

/// Runs the in-process inference nodes of `refrain serve`: called once per configured device
/// (`devices`), on the service's task tracker. It loads the bundle (reporting through
/// [`InProcessNode::report`]) and runs the node on [`InProcessNode::link`] until
/// [`InProcessNode::cancel`] fires.
pub type NodeRunner = Arc<dyn Fn(InProcessNode) -> NodeFuture + Send + Sync>;

/// Starts the service: store, queue, progress board, one inference node per configured device
/// (run by `nodes`, see [`NodeRunner`]), the retention sweeper and the HTTP server. Returns once
/// the server listens; nodes load their bundle in the background and `/readyz` turns ready when
/// all have reported [`LoadReport::loaded`].
///
/// With `queue.backend = "nats"` the queue, the progress bus and the results go through NATS
/// JetStream (see [`crate::distributed`]): the store is not recovered here (running jobs belong
/// to remote nodes; their events decide), the dispatcher ([`crate::queue::dispatch`]) publishes
/// from the fair-share backlog, node events are applied by a durable consumer, and
/// configured devices run as in-process NATS nodes (none is needed: the service is ready once
/// NATS is set up).
pub async fn start(config: Config, nodes: NodeRunner) -> Result<Running, ServeError> {
    use crate::config::Backend;
    use crate::distributed::{self, events, reconcile, JetStream, Role};
    use crate::progress::EmbeddedBus;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::queue::nats::NatsQueue;
    use tokio_util::task::TaskTracker;

    let keys = crate::api::v1::auth::ApiKeys::new(config.api_keys_path());
    if !config.listen.ip().is_loopback()
        && !config.api.allow_unauthenticated
        && keys.current().is_empty()
    {
        return Err(ServeError::Config(format!(
            "refusing to serve /api/v1 on {} without API keys: add one with `refrain keys add \
             NAME` (keys live in {}), or set api.allow_unauthenticated = true to serve it open",
            config.listen,
            config.api_keys_path().display()
        )));
    }

    let devices = config.devices.clone();
    for dir in [
        config.data_dir.clone(),
        config.blobs_dir(),
        config.output_root(),
    ] {
        std::fs::create_dir_all(&dir).map_err(|source| ServeError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let bundle = Bundle::load(&config.bundle).map_err(ModelError::from)?;
    let limits = LyricsLimits {
        max_bytes: config.limits.max_lyrics_bytes,
        max_lines: config.limits.max_lyrics_lines,
        max_line_chars: config.limits.max_line_chars,
    };
    let device = if config.devices.is_empty() {
        "remote nodes (NATS)".to_string()
    } else {
        config.devices.join(",")
    };
    let node = NodeInfo::describe(&bundle, device);
    let validator = Validator::new(bundle, limits)?;

    let store = JobStore::open(&config.store_dir())?;
    let blobs =
        BlobStore::open(&config.blobs_dir()).map_err(|e| ServeError::Storage(e.to_string()))?;
    let outputs = OutputStore::open(&config.output_root())
        .map_err(|e| ServeError::Storage(e.to_string()))?
        .with_encoding(config.formats);
    // Bound before anything starts, so a busy address fails fast and result URLs can name
    // the port actually bound.
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Io {
            path: format!("listen address {}", config.listen),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Io {
        path: "listener".into(),
        source,
    })?;
    let public_url = crate::api::task::public_base(&config, addr);
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let metrics = Metrics::new();
    let lifecycle = Lifecycle::new(
        store.clone(),
        Hub::new(),
        metrics.clone(),
        config.inference.max_attempts,
    )
    .with_max_interruptions(config.inference.max_interruptions);

    let registry = NodeRegistry::new(metrics.nodes.clone());
    let (queue, bus, nats): (Arc<dyn Queue>, Arc<dyn ProgressBus>, _) = if config.queue.backend
        == Backend::Nats
    {
        let settings = distributed::Settings {
            nats: config.nats.clone(),
            max_attempts: config.inference.max_attempts,
            max_interruptions: config.inference.max_interruptions,
        };
        let client = distributed::connect(&config.nats, "refrain-orchestrator")
            .await
            .map_err(distributed::DistributedError::from)?;
        tracing::info!(url = %config.nats.url, "setting up NATS JetStream");
        let js = JetStream::setup(client.clone(), settings, Role::Orchestrator, &cancel)
            .await
            .map_err(distributed::DistributedError::from)?;
        let (queue, dispatcher) = NatsQueue::orchestrator(
            js.clone(),
            &lifecycle,
            blobs.clone(),
            outputs.clone(),
            registry.watch_live(),
            config.queue.prefetch,
        );
        dispatcher.spawn(&tracker, cancel.clone());
        let queue = Arc::new(queue);
        let bus =
            Arc::new(distributed::bus::NatsBus::start(client, &tracker, cancel.clone()).await?);
        (
            queue.clone() as Arc<dyn Queue>,
            bus as Arc<dyn ProgressBus>,
            Some((js, queue)),
        )
    } else {
        let recovered = lifecycle.recover().await?;
        for r in &recovered {
            tracing::warn!(job = %r.id, attempt = r.attempt, "job was running when the service stopped; queued again");
        }
        let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::in_store(&store)?);
        // A crash between the durable insert and the durable enqueue would leave a queued job
        // without a message: enqueue every queued job again (the queue de-duplicates).
        for id in store.ids_in_state(JobState::Queued)? {
            if let Some(record) = store.get(&id)? {
                queue.enqueue(&QueueItem::of(&record)).await?;
            }
        }
        (
            queue,
            Arc::new(EmbeddedBus::new()) as Arc<dyn ProgressBus>,
            None,
        )
    };

    let board = ProgressBoard::spawn(bus.as_ref(), lifecycle.clone(), &tracker, cancel.clone());
    match &nats {
        Some((js, queue)) => {
            registry
                .start(js.client.clone(), &tracker, cancel.clone())
                .await?;
            events::Applier::new(
                js.clone(),
                lifecycle.clone(),
                outputs.clone(),
                board.clone(),
            )
            .spawn(&tracker, cancel.clone());
            let (queue, lifecycle, cancel) = (queue.clone(), lifecycle.clone(), cancel.clone());
            tracker.spawn(async move {
                match reconcile::reconcile(&queue, &lifecycle, &cancel).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(jobs = n, "queued jobs back in the backlog"),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot reconcile the job store with the queue")
                    }
                }
            });
        }
        None => {
            for device in &devices {
                registry.add_in_process(distributed::wire::NodeAnnouncement {
                    node: format!("in-process/{device}"),
                    host: distributed::host_name(),
                    device: device.to_string(),
                    bundle_name: node.bundle_name.clone(),
                    bundle_version: node.bundle_version.clone(),
                    state: distributed::wire::NodeState::Idle,
                    job: None,
                    reporting: Vec::new(),
                    jobs_done: 0,
                    started_ms: crate::store::now_ms(),
                    heartbeat_ms: 0,
                    version: env!("CARGO_PKG_VERSION").into(),
                });
            }
        }
    }
    let webhooks = crate::webhooks::Webhooks::open(store.db())
        .map_err(|e| ServeError::Storage(e.to_string()))?;
    let (schedules, schedule_inbox) = crate::schedules::channel();
    let app = App::new(AppParts {
        config: config.clone(),
        lifecycle: lifecycle.clone(),
        queue,
        bus,
        board,
        blobs: blobs.clone(),
        outputs: outputs.clone(),
        metrics,
        node,
        validator,
        nodes: registry,
        running: RunningJobs::default(),
        webhooks: webhooks.clone(),
        public_url: public_url.clone(),
        schedules,
    });
    // A config-file schedule's webhook passes the check an API schedule's does, at start-up
    // rather than at every fire (the URL guard resolves names, so it cannot run at parse time).
    for (i, schedule) in config.schedules.iter().enumerate() {
        if let Some(hook) = &schedule.webhook {
            app.check_webhook(&hook.target()).await.map_err(|e| {
                ServeError::Config(format!("schedules[{i}] ({}): webhook: {e}", schedule.name))
            })?;
        }
    }
    crate::schedules::Scheduler::new(app.clone(), &config.schedules, schedule_inbox)
        .map_err(|e| ServeError::Config(e.to_string()))?
        .spawn(&tracker, cancel.clone());
    crate::webhooks::dispatch::Dispatcher {
        webhooks,
        store: store.clone(),
        hub: lifecycle.hub().clone(),
        render: crate::api::task::renderer(public_url),
        config: config.webhooks.clone(),
        fetch: config.fetch.clone(),
    }
    .spawn(&tracker, cancel.clone());

    app.spawn_upload_expiry(
        &tracker,
        cancel.clone(),
        std::time::Duration::from_secs(config.retention.sweep_interval_seconds.max(1)),
    );
    crate::retention::spawn(
        &tracker,
        cancel.clone(),
        lifecycle,
        blobs,
        outputs,
        std::time::Duration::from_secs(config.retention.max_age_hours * 3600),
        std::time::Duration::from_secs(config.retention.sweep_interval_seconds.max(1)),
    );

    // In-process inference nodes: the runner loads each bundle and runs the node.
    let loaded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if devices.is_empty() {
        app.set_ready(true);
        tracing::info!("ready (the inference nodes are remote)");
    }
    for device in devices {
        let link = match &nats {
            Some((js, _)) => InProcessLink::Nats(Box::new(js.clone())),
            None => InProcessLink::Embedded(Arc::new(crate::link::EmbeddedLink::new(
                app.clone(),
                format!("in-process/{device}"),
            ))),
        };
        let report = LoadReport {
            app: app.clone(),
            device: device.clone(),
            loaded: loaded.clone(),
            total: config.devices.len(),
            cancel: cancel.clone(),
        };
        tracker.spawn(nodes(InProcessNode {
            device,
            link,
            cancel: cancel.clone(),
            report,
        }));
    }

    let router = crate::api::router(app.clone());
    let shutdown = cancel.clone();
    let ready_app = app.clone();
    let server = tokio::spawn(async move {
        // The peer address is known to handlers that need it (the loopback-only backup).
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            shutdown.cancelled().await;
            ready_app.set_ready(false);
        })
        .await
    });
    tracing::info!(%addr, "listening");
    Ok(Running {
        addr,
        app,
        cancel,
        tracker,
        server,
    })
}
