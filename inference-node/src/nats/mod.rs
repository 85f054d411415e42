//! An inference node of the distributed deployment (`refrain node`, or a device of
//! `refrain serve` with `queue.backend = "nats"`): the common worker loop
//! ([`crate::worker::run`]) on a [`link::NatsLink`].
//!
//! * [`run`] — `refrain node`: connects, loads the bundle, serves until shutdown;
//! * [`serve`] — one node on an existing connection and a loaded bundle: heartbeats, the
//!   cancellation listener ([`link::NatsLink::listen_for_cancels`]) and the worker loop;
//! * [`link`] — the [`link::NatsLink`]: taking jobs, reporting durable events, storing results,
//!   settling messages;
//! * [`presence`] — the node's heartbeat and what it hears of the other nodes.
//!
//! The NATS plumbing shared with the orchestrator (connection, streams, wire format, object
//! store) is in `refrain_nats`.

mod held;
mod inputs;
pub mod link;
pub mod presence;

use std::path::PathBuf;

use refrain_nats::{wire, JetStream, NatsError, Role, Settings};
use tokio_util::sync::CancellationToken;

use crate::pipeline::{Generator, GeneratorConfig};
use crate::worker::{self, WorkerSettings};
use crate::InferenceError;
pub use link::NatsLink;
pub use presence::{heartbeat, Peers};
pub use refrain_nats::host_name;

/// Errors that stop a node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Nats(#[from] NatsError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
    #[error("inference node: {0}")]
    Other(String),
}

/// Who a node is, for its announcements.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub host: String,
    pub device: String,
    pub bundle_name: String,
    pub bundle_version: String,
}

impl Identity {
    /// A node name unique to this process: `<host>-<device>-<4 hex>`.
    pub fn default_name(device: &str) -> String {
        let suffix: u16 = rand::random();
        format!(
            "{}-{}-{suffix:04x}",
            host_name(),
            wire::subject_token(device)
        )
    }
}

/// Runs one node on an existing connection until `cancel` fires: announces it, listens for
/// cancellations, runs the worker loop on a [`NatsLink`], and says goodbye.
pub async fn serve(
    js: JetStream,
    generator: Generator,
    identity: Identity,
    settings: WorkerSettings,
    cancel: CancellationToken,
) {
    let beat_cancel = CancellationToken::new();
    let peers = Peers::listen(&js.client, beat_cancel.clone()).await;
    let link = NatsLink::new(js.clone(), identity, peers);
    let beat = tokio::spawn(heartbeat(
        js.client.clone(),
        link.announcements(),
        js.settings.heartbeat(),
        beat_cancel.clone(),
    ));
    let cancels = link.listen_for_cancels(beat_cancel.clone());
    let work = async {
        worker::run(&link, generator, settings, cancel).await;
        beat_cancel.cancel();
    };
    tokio::join!(work, cancels);
    let _ = beat.await;
}

/// Everything `refrain node` needs.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub settings: Settings,
    /// Node name (default: `<host>-<device>-<random>`).
    pub name: Option<String>,
    pub bundle: PathBuf,
    pub generator: GeneratorConfig,
    pub worker: WorkerSettings,
}

/// `refrain node`: connects, loads the bundle, and serves jobs until `cancel` fires.
pub async fn run(options: NodeOptions, cancel: CancellationToken) -> Result<(), NodeError> {
    let device = options.generator.runtime.device.to_string();
    let name = options
        .name
        .clone()
        .unwrap_or_else(|| Identity::default_name(&device));
    let url = options.settings.nats.url.clone();
    tracing::info!(node = %name, %device, %url, bundle = %options.bundle.display(), "starting inference node");
    let bundle = options.bundle.clone();
    let generator_config = options.generator.clone();
    let loading = tokio::task::spawn_blocking(move || Generator::load(&bundle, generator_config));
    let client =
        refrain_nats::connect(&options.settings.nats, &format!("refrain-node {name}")).await?;
    let js = JetStream::setup(
        client.clone(),
        options.settings.clone(),
        Role::Node,
        &cancel,
    )
    .await?;
    let generator = loading
        .await
        .map_err(|e| NodeError::Other(format!("loading the bundle: {e}")))??;
    let manifest = &generator.bundle().manifest;
    let identity = Identity {
        node: name,
        host: host_name(),
        device,
        bundle_name: manifest.name.clone(),
        bundle_version: manifest.version.clone(),
    };
    let mut worker = options.worker;
    worker.name = identity.node.clone();
    serve(js, generator, identity, worker, cancel).await;
    if let Err(e) = client.flush().await {
        tracing::debug!(error = %e, "cannot flush the NATS connection");
    }
    Ok(())
}
