//! The service facade every API handler talks to ([`App`]), and [`serve`], which wires the
//! store, the queue, the progress board, the inference workers, the background tasks and the
//! HTTP server together and shuts them down gracefully.
//!
//! Admission (`App::submit`) is serialised by one lock so the capacity check, the durable insert
//! and the durable enqueue happen as one step: a client that got 202 has a job that is both in
//! the store and in the queue, flushed to disk.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use protocol::{JobId, JobRecord, JobSpec, JobState, ProgressEvent, Source};
use refrain_inference::bundle::Bundle;
use refrain_inference::lyrics::g2p::LineEncoder;
use refrain_inference::lyrics::lrc::LyricsLimits;
use refrain_inference::pipeline::{self, Generator};
use refrain_inference::InferenceError;
use tokio::sync::Mutex;

use crate::blobs::BlobStore;
use crate::config::Config;
use crate::distributed::registry::NodeRegistry;
use crate::error::OrchestratorError;
use crate::metrics::Metrics;
use crate::outputs::OutputStore;
use crate::progress::{ProgressBoard, ProgressBus};
use crate::queue::Queue;
use crate::store::{now_ms, JobStore};

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

/// Checks requests at the edge against the bundle (lengths) and the lyric front end (limits,
/// language, LRC shape), so bad input is refused with 400 before it becomes a job.
pub struct Validator {
    bundle: Bundle,
    encoder: LineEncoder,
    limits: LyricsLimits,
}

impl Validator {
    pub fn new(bundle: Bundle, limits: LyricsLimits) -> Result<Validator, InferenceError> {
        let encoder = pipeline::line_encoder(&bundle, None)?;
        Ok(Validator {
            bundle,
            encoder,
            limits,
        })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Checks `audio_length`.
    pub fn check_length(&self, seconds: u32) -> Result<(), OrchestratorError> {
        self.bundle
            .choose_model(seconds)
            .map(|_| ())
            .map_err(|m| OrchestratorError::invalid("audio_length", m))
    }

    /// Checks lyrics for a song of `seconds` (run the real parser and G2P; cheap).
    pub fn check_lyrics(&self, lyrics: &str, seconds: u32) -> Result<(), OrchestratorError> {
        pipeline::lyric_track(&self.bundle, &self.encoder, lyrics, seconds, &self.limits)
            .map(|_| ())
            .map_err(|e| {
                let message = match e {
                    InferenceError::Lyrics(l) => l.to_string(),
                    other => other.to_string(),
                };
                OrchestratorError::invalid("lrc", message)
            })
    }

    /// Checks a style prompt.
    pub fn check_prompt(&self, prompt: &str) -> Result<(), OrchestratorError> {
        refrain_inference::style::StyleEncoder::validate_prompt(prompt)
            .map_err(|e| OrchestratorError::invalid("ref_prompt", e.to_string()))
    }
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

/// Shared state of the service. Cheap to clone.
#[derive(Clone)]
pub struct App {
    inner: Arc<Inner>,
}

/// The parts an [`App`] is made of, named so construction cannot mix them up.
pub struct AppParts {
    pub config: Config,
    pub store: JobStore,
    pub queue: Arc<dyn Queue>,
    pub bus: Arc<dyn ProgressBus>,
    pub board: ProgressBoard,
    pub blobs: BlobStore,
    pub outputs: OutputStore,
    pub metrics: Metrics,
    pub node: NodeInfo,
    pub validator: Validator,
    pub nodes: NodeRegistry,
}

struct Inner {
    parts: AppParts,
    ready: AtomicBool,
    started: Instant,
    admission: Mutex<()>,
}

impl App {
    pub fn new(parts: AppParts) -> App {
        App {
            inner: Arc::new(Inner {
                parts,
                ready: AtomicBool::new(false),
                started: Instant::now(),
                admission: Mutex::new(()),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.parts.config
    }
    pub fn store(&self) -> &JobStore {
        &self.inner.parts.store
    }
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.inner.parts.queue
    }
    pub fn bus(&self) -> &Arc<dyn ProgressBus> {
        &self.inner.parts.bus
    }
    pub fn blobs(&self) -> &BlobStore {
        &self.inner.parts.blobs
    }
    pub fn outputs(&self) -> &OutputStore {
        &self.inner.parts.outputs
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.parts.metrics
    }
    pub fn validator(&self) -> &Validator {
        &self.inner.parts.validator
    }
    pub fn node(&self) -> &NodeInfo {
        &self.inner.parts.node
    }
    /// The inference nodes (in-process ones and, with NATS, the remote ones heard from).
    pub fn nodes(&self) -> &NodeRegistry {
        &self.inner.parts.nodes
    }
    /// Seconds since the service started.
    pub fn uptime_seconds(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// Ready once every node has loaded its bundle; not ready again while shutting down.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst)
    }
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::SeqCst);
    }

    /// Admits a job: capacity check, durable insert, durable enqueue — then the caller may
    /// answer 202. With `queue.capacity = 0` a job is admitted only when nothing is queued or
    /// running (the reference single-job server).
    pub async fn submit(
        &self,
        spec: JobSpec,
        source: Source,
    ) -> Result<JobRecord, OrchestratorError> {
        if !self.is_ready() {
            return Err(OrchestratorError::NotReady(
                "the model is still loading".into(),
            ));
        }
        let _admission = self.inner.admission.lock().await;
        let store = &self.inner.parts.store;
        let queued = store.count(JobState::Queued)?;
        let running = store.count(JobState::Running)?;
        let capacity = self.inner.parts.config.queue.capacity;
        let busy = if capacity == 0 {
            queued + running > 0
        } else {
            queued >= capacity
        };
        if busy {
            self.inner.parts.metrics.rejected_busy.inc();
            return Err(OrchestratorError::Busy {
                running,
                queued,
                retry_after: self.inner.parts.config.queue.retry_after_seconds,
            });
        }
        let now = now_ms();
        let record = JobRecord {
            id: new_job_id(),
            spec,
            state: JobState::Queued,
            attempt: 1,
            source,
            created_ms: now,
            updated_ms: now,
            started_ms: None,
            finished_ms: None,
            progress: None,
            result: None,
            error: None,
        };
        store.insert(&record).await?;
        if let Err(e) = self.inner.parts.queue.enqueue(&record.id).await {
            // The job is on disk but no node will see it: fail it, so that nobody waits for it
            // (the client is told to try again).
            tracing::error!(job = %record.id, error = %e, "cannot queue the job");
            let why = format!("the job could not be queued: {e}");
            let failed = store
                .transition(&record.id, JobState::Queued, Some(record.attempt), |r| {
                    r.state = JobState::Failed;
                    r.error = Some(why);
                })
                .await;
            if let Err(te) = failed {
                tracing::warn!(job = %record.id, error = %te, "cannot mark the unqueued job failed");
            }
            return Err(OrchestratorError::NotReady(format!(
                "the job queue is unavailable ({e})"
            )));
        }
        self.inner.parts.metrics.submitted.inc();
        tracing::info!(job = %record.id, ?source, seconds = record.spec.seconds, "job accepted");
        Ok(record)
    }

    pub fn job(&self, id: &JobId) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(self.inner.parts.store.get(id)?)
    }

    /// The job whose result file is `file` (`<id>.wav` or `sub/dir/<id>.wav`).
    pub fn job_by_file(&self, file: &str) -> Result<Option<JobRecord>, OrchestratorError> {
        Ok(self.inner.parts.store.get_by_file(file)?)
    }

    /// The freshest progress of a job: the live event of its current attempt, else the last
    /// persisted one.
    pub async fn progress(&self, record: &JobRecord) -> Option<ProgressEvent> {
        match self.inner.parts.board.get(&record.id).await {
            Some((attempt, event)) if attempt == record.attempt => Some(event),
            _ => record.progress.clone(),
        }
    }

    /// 0-based position among queued jobs.
    pub fn queue_position(&self, id: &JobId) -> Result<Option<usize>, OrchestratorError> {
        Ok(self.inner.parts.store.queue_position(id)?)
    }

    /// Number of jobs in each state.
    pub fn counts(&self) -> Result<HashMap<JobState, usize>, OrchestratorError> {
        let mut out = HashMap::new();
        for s in JobState::ALL {
            out.insert(s, self.inner.parts.store.count(s)?);
        }
        Ok(out)
    }

    /// The board (for workers that want to drop finished entries).
    pub fn board(&self) -> &ProgressBoard {
        &self.inner.parts.board
    }
}

/// A fresh random job id.
pub fn new_job_id() -> JobId {
    JobId::from_bytes(rand::random())
}

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
    Inference(#[from] InferenceError),
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

/// The generator settings of an inference node on `device` (in-process or `refrain node`).
pub fn generator_config(
    config: &Config,
    device: refrain_inference::runtime::Device,
) -> refrain_inference::pipeline::GeneratorConfig {
    refrain_inference::pipeline::GeneratorConfig {
        runtime: refrain_inference::runtime::RuntimeConfig {
            library: config.ort_library.clone(),
            device,
            intra_threads: config.intra_threads,
        },
        lyrics_limits: LyricsLimits {
            max_bytes: config.limits.max_lyrics_bytes,
            max_lines: config.limits.max_lyrics_lines,
            max_line_chars: config.limits.max_line_chars,
        },
        cfg_mode: cfg_mode(&config.inference.cfg_mode),
        max_reference_seconds: config.limits.max_reference_seconds,
    }
}

fn cfg_mode(s: &str) -> refrain_inference::sampler::CfgMode {
    use refrain_inference::sampler::CfgMode;
    match s {
        "batched" => CfgMode::Batched,
        "separate" => CfgMode::Separate,
        _ => CfgMode::Auto,
    }
}

/// Starts the service: store, queue, progress board, one inference node per configured device,
/// the retention sweeper and the HTTP server. Returns once the server listens; nodes load their
/// bundle in the background and `/readyz` turns ready when all have.
///
/// With `queue.backend = "nats"` the queue, the progress bus and the results go through NATS
/// JetStream (see [`crate::distributed`]): the store is not recovered here (running jobs belong
/// to remote nodes; their events decide), node events are applied by a durable consumer, and
/// configured devices run as in-process NATS nodes (none is needed: the service is ready once
/// NATS is set up).
pub async fn start(config: Config) -> Result<Running, ServeError> {
    use crate::distributed::{self, events, JetStream, Role};
    use crate::progress::EmbeddedBus;
    use crate::queue::embedded::EmbeddedQueue;
    use crate::queue::nats::NatsQueue;
    use refrain_inference::runtime::Device;
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    let devices = config
        .devices
        .iter()
        .map(|d| d.parse::<Device>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ServeError::Config(e.to_string()))?;
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
    let bundle = Bundle::load(&config.bundle).map_err(InferenceError::from)?;
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
    let outputs =
        OutputStore::open(&config.output_root()).map_err(|e| ServeError::Storage(e.to_string()))?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();

    let (queue, bus, nats): (Arc<dyn Queue>, Arc<dyn ProgressBus>, _) = if config.queue.backend
        == "nats"
    {
        let settings = distributed::Settings {
            nats: config.nats.clone(),
            max_attempts: config.inference.max_attempts,
        };
        let client = distributed::connect(&config.nats, "refrain-orchestrator").await?;
        tracing::info!(url = %config.nats.url, "setting up NATS JetStream");
        let js = JetStream::setup(client.clone(), settings, Role::Orchestrator, &cancel).await?;
        let queue = Arc::new(NatsQueue::orchestrator(
            js.clone(),
            store.clone(),
            blobs.clone(),
            outputs.clone(),
        ));
        let bus =
            Arc::new(distributed::bus::NatsBus::start(client, &tracker, cancel.clone()).await?);
        (
            queue.clone() as Arc<dyn Queue>,
            bus as Arc<dyn ProgressBus>,
            Some((js, queue)),
        )
    } else {
        let recovered = store.recover(config.inference.max_attempts).await?;
        for r in &recovered {
            tracing::warn!(job = %r.id, attempt = r.attempt, "job was running when the service stopped; queued again");
        }
        let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(store.db())?);
        // A crash between the durable insert and the durable enqueue would leave a queued job
        // without a message: enqueue every queued job again (the queue de-duplicates).
        for id in store.ids_in_state(JobState::Queued)? {
            queue.enqueue(&id).await?;
        }
        (
            queue,
            Arc::new(EmbeddedBus::new()) as Arc<dyn ProgressBus>,
            None,
        )
    };

    let board = ProgressBoard::spawn(bus.as_ref(), store.clone(), &tracker, cancel.clone());
    let metrics = Metrics::new();
    let registry = NodeRegistry::new(metrics.nodes.clone());
    match &nats {
        Some((js, queue)) => {
            registry
                .start(js.client.clone(), &tracker, cancel.clone())
                .await?;
            events::Applier::new(
                js.clone(),
                store.clone(),
                outputs.clone(),
                board.clone(),
                metrics.clone(),
            )
            .spawn(&tracker, cancel.clone());
            let (queue, store, cancel) = (queue.clone(), store.clone(), cancel.clone());
            tracker.spawn(async move {
                match events::reconcile(&queue, &store, &cancel).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::warn!(jobs = n, "published jobs that were missing from the queue")
                    }
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
                    host: distributed::node::host_name(),
                    device: device.to_string(),
                    bundle_name: node.bundle_name.clone(),
                    bundle_version: node.bundle_version.clone(),
                    state: distributed::wire::NodeState::Idle,
                    job: None,
                    jobs_done: 0,
                    started_ms: crate::store::now_ms(),
                    heartbeat_ms: 0,
                    version: env!("CARGO_PKG_VERSION").into(),
                });
            }
        }
    }
    let app = App::new(AppParts {
        config: config.clone(),
        store: store.clone(),
        queue,
        bus,
        board,
        blobs: blobs.clone(),
        outputs: outputs.clone(),
        metrics,
        node,
        validator,
        nodes: registry,
    });

    crate::retention::spawn(
        &tracker,
        cancel.clone(),
        store,
        blobs,
        outputs,
        std::time::Duration::from_secs(config.retention.max_age_hours * 3600),
        std::time::Duration::from_secs(config.retention.sweep_interval_seconds.max(1)),
    );

    // Inference nodes: load each bundle off the async threads, then run the worker loop.
    let loaded = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    if devices.is_empty() {
        app.set_ready(true);
        tracing::info!("ready (the inference nodes are remote)");
    }
    for device in devices {
        let gen_config = generator_config(&config, device);
        let settings = refrain_inference::worker::WorkerSettings {
            name: device.to_string(),
            steps: config.inference.steps,
            max_reference_seconds: config.limits.max_reference_seconds,
        };
        let max_attempts = config.inference.max_attempts;
        let js = nats.as_ref().map(|(js, _)| js.clone());
        let (app, cancel, loaded, total, bundle_path) = (
            app.clone(),
            cancel.clone(),
            loaded.clone(),
            config.devices.len(),
            config.bundle.clone(),
        );
        tracker.spawn(async move {
            let generator =
                match tokio::task::spawn_blocking(move || Generator::load(&bundle_path, gen_config)).await {
                    Ok(Ok(g)) => g,
                    Ok(Err(e)) => {
                        tracing::error!(node = %device, error = %e, "inference node cannot start; stopping");
                        cancel.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::error!(node = %device, error = %e, "inference node crashed while loading");
                        cancel.cancel();
                        return;
                    }
                };
            if loaded.fetch_add(1, Ordering::SeqCst) + 1 == total {
                app.set_ready(true);
                tracing::info!("all inference nodes ready");
            }
            match js {
                Some(js) => {
                    let identity = distributed::node::Identity {
                        node: distributed::node::Identity::default_name(&device.to_string()),
                        host: distributed::node::host_name(),
                        device: device.to_string(),
                        bundle_name: app.node().bundle_name.clone(),
                        bundle_version: app.node().bundle_version.clone(),
                    };
                    distributed::node::serve(js, generator, identity, settings, cancel).await;
                }
                None => {
                    let link = crate::link::EmbeddedLink::new(app, max_attempts);
                    refrain_inference::worker::run(&link, generator, settings, cancel).await;
                }
            }
        });
    }

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
    let router = crate::api::router(app.clone());
    let shutdown = cancel.clone();
    let ready_app = app.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
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
