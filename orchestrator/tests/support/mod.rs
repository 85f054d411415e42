//! The one way the orchestrator crate's integration tests start the service: [`TestService`]
//! runs the real [`refrain_orchestrator::service::start`] — store, embedded queue, progress
//! board, node registry, retention, HTTP on 127.0.0.1 port 0 — on a temporary data directory
//! with the committed test bundle, instead of wiring an `App` by hand. This crate links no
//! ONNX Runtime, so the in-process nodes are the test's: [`idle_nodes`] never load nor take a
//! job (admitted jobs stay queued; the test says when the service is ready), and
//! [`node::StandIn`] takes jobs in the queue's order and finishes each when the test lets it.
//!
//! [`http`] holds the request helpers; [`events`] a client of a job's event stream.

#![allow(dead_code)]

pub mod events;
pub mod http;
pub mod node;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use refrain_orchestrator::service::{self, App, InProcessNode, NodeRunner};
use refrain_orchestrator::Config;
use tokio_util::sync::CancellationToken;

/// A running service; stopped when dropped.
pub struct TestService {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub addr: SocketAddr,
    /// The service facade, to drive the job core directly.
    pub app: App,
    pub client: reqwest::Client,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

impl TestService {
    /// Waits until every in-process node reported its bundle loaded (a minute at most, only
    /// against hangs).
    pub async fn wait_ready(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !self.app.is_ready() {
            assert!(
                std::time::Instant::now() < deadline,
                "the in-process nodes never loaded"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

fn bundle_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/test-bundle")
}

/// Starts the service with one in-process node per configured device (`cpu` unless
/// `configure` says otherwise), each run by `nodes`. Ready once every node reported loaded.
pub async fn start_with_nodes(
    configure: impl FnOnce(&mut Config),
    nodes: NodeRunner,
) -> TestService {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.path().to_path_buf(),
        bundle: bundle_path(),
        ..Config::default()
    };
    configure(&mut config);
    let running = service::start(config, nodes)
        .await
        .expect("the service starts");
    TestService {
        base: format!("http://{}", running.addr),
        addr: running.addr,
        app: running.app.clone(),
        client: reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("HTTP client"),
        cancel: running.cancel_token(),
        _dir: dir,
    }
}

/// Starts the service with idle nodes, not ready yet (`app.set_ready(true)` when the test
/// wants it): the configuration as `configure` leaves it.
pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestService {
    start_with_nodes(configure, idle_nodes()).await
}

/// The default configuration, idle nodes, ready: admitted jobs stay queued.
pub async fn start() -> TestService {
    let s = start_with(|_| {}).await;
    s.app.set_ready(true);
    s
}

/// In-process nodes that neither load a bundle nor take a job: they wait for the service to
/// stop.
pub fn idle_nodes() -> NodeRunner {
    Arc::new(|node: InProcessNode| Box::pin(async move { node.cancel.cancelled().await }))
}
