//! The one way the end-to-end tests start the system: [`TestApp`], built by
//! [`TestApp::embedded`] (`refrain serve` with its in-process CPU node, `config/default.toml`)
//! or [`TestApp::nats`] (a private nats-server, `refrain serve --config config/distributed.toml`
//! as orchestrator and `refrain node` processes), with chainable options: sampler steps, any
//! `REFRAIN_*` override, NATS timings, nodes. Everything runs from the workspace root on
//! 127.0.0.1 with ports chosen by the system, in the test's own directory; the server and the
//! nodes can be killed and started again on the same data directory.
//!
//! ```ignore
//! let Some(app) = TestApp::embedded().steps(200).start() else { return };
//! let Some(mut app) = TestApp::nats().steps(2).ack_wait(5).nodes(&["a", "b"]).start() else {
//!     return;
//! };
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::events::EventStream;
use super::http::Api;
use super::logs::one_at_a_time;
use super::nats::NatsServer;
use super::node::Node;
use super::prereq::{nats_server_binary, ort_available, TestDir};
use super::server::Server;

/// Waits for nodes and the like: only against hangs.
const GENEROUS: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deployment {
    Embedded,
    Nats,
}

/// How to start a [`TestApp`]; see [`TestApp::embedded`] and [`TestApp::nats`].
#[must_use = "nothing starts until `start`"]
pub struct TestAppBuilder {
    deployment: Deployment,
    config: Option<String>,
    vars: Vec<(String, String)>,
    nodes: Vec<String>,
}

impl TestAppBuilder {
    /// Sets (or replaces) a `REFRAIN_*` variable of the server and the nodes: any
    /// configuration key (`REFRAIN_QUEUE__CAPACITY`, `REFRAIN_LIMITS__MAX_UPLOAD_BYTES`, …).
    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
        self
    }

    /// Every job's sampler steps (`inference.steps`, 2 to 1000): 2 is one Euler step; 1000
    /// keeps a 285 s song sampling for seconds.
    pub fn steps(self, steps: u32) -> Self {
        self.env("REFRAIN_INFERENCE__STEPS", steps)
    }

    /// Runs a job may take (`inference.max_attempts`).
    pub fn max_attempts(self, attempts: u32) -> Self {
        self.env("REFRAIN_INFERENCE__MAX_ATTEMPTS", attempts)
    }

    /// Another configuration file, relative to the workspace root.
    pub fn config(mut self, path: &str) -> Self {
        self.config = Some(path.to_string());
        self
    }

    /// NATS: seconds a silent node keeps its job (`nats.ack_wait_seconds`).
    pub fn ack_wait(self, seconds: u64) -> Self {
        assert_eq!(
            self.deployment,
            Deployment::Nats,
            "ack_wait is a NATS setting"
        );
        self.env("REFRAIN_NATS__ACK_WAIT_SECONDS", seconds)
    }

    /// NATS: `refrain node` processes started with the system; `start` returns once they are
    /// all live.
    pub fn nodes(mut self, names: &[&str]) -> Self {
        assert_eq!(
            self.deployment,
            Deployment::Nats,
            "nodes are NATS processes"
        );
        self.nodes.extend(names.iter().map(|n| n.to_string()));
        self
    }

    /// Starts the system; `None` (with a message) when ONNX Runtime or, for NATS, the
    /// nats-server is missing — the test is then skipped, except in CI, where this panics.
    pub fn start(self) -> Option<TestApp> {
        if !ort_available() {
            return None;
        }
        let dir = TestDir::new();
        let mut vars = self.vars;
        let nats = match self.deployment {
            Deployment::Embedded => None,
            Deployment::Nats => {
                let binary = nats_server_binary()?;
                let nats = NatsServer::start(&binary, &dir.path().join("nats"));
                vars.push(("REFRAIN_NATS__URL".into(), nats.url()));
                Some(nats)
            }
        };
        let server = Server::start(dir.path(), self.config, vars.clone());
        let mut app = TestApp {
            server,
            nodes: Vec::new(),
            nats,
            vars,
            dir,
        };
        for name in &self.nodes {
            app.add_node(name);
        }
        if !self.nodes.is_empty() {
            app.wait_nodes(self.nodes.len());
        }
        Some(app)
    }
}

/// The system under test. Dropping it kills every process (server, nodes, nats-server); the
/// directory is removed unless the test failed (see [`TestDir`]).
pub struct TestApp {
    /// `refrain serve`: kill, restart on the same data directory, terminate, its logs.
    pub server: Server,
    nodes: Vec<Node>,
    nats: Option<NatsServer>,
    vars: Vec<(String, String)>,
    /// Last: removed after the processes are gone.
    dir: TestDir,
}

impl TestApp {
    /// The embedded deployment: `refrain serve` (the default `config/default.toml`, one
    /// in-process CPU node, the embedded queue).
    pub fn embedded() -> TestAppBuilder {
        TestAppBuilder {
            deployment: Deployment::Embedded,
            config: None,
            vars: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// The distributed deployment: a private nats-server, `refrain serve --config
    /// config/distributed.toml` and the `refrain node` processes of [`TestAppBuilder::nodes`].
    /// Quick NATS timings: `ack_wait` 30 s (see [`TestAppBuilder::ack_wait`]), pulls of 2 s,
    /// heartbeats every second, a retry delay of 1 s.
    pub fn nats() -> TestAppBuilder {
        TestAppBuilder {
            deployment: Deployment::Nats,
            config: Some("config/distributed.toml".into()),
            vars: Vec::new(),
            nodes: Vec::new(),
        }
        .env("REFRAIN_NATS__ACK_WAIT_SECONDS", 30)
        .env("REFRAIN_NATS__FETCH_EXPIRES_SECONDS", 2)
        .env("REFRAIN_NATS__HEARTBEAT_SECONDS", 1)
        .env("REFRAIN_NATS__RETRY_DELAY_SECONDS", 1)
    }

    /// A client of the server's current address (it changes with every restart).
    pub fn api(&self) -> Api {
        self.server.api()
    }

    /// `http://127.0.0.1:PORT` of the server's current run.
    pub fn base(&self) -> &str {
        &self.server.base
    }

    /// `http://127.0.0.1:PORT/PATH`.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The test's directory (logs, data, scratch files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the test's directory (logs, data) when the system is dropped, and prints its path.
    pub fn keep_dir(&mut self) {
        self.dir.keep();
    }

    /// The server's data directory (job store, uploads, outputs).
    pub fn data_dir(&self) -> PathBuf {
        self.server.data_dir()
    }

    /// Follows a job's events.
    pub fn events(&self, job: &str) -> EventStream {
        self.api().events(job)
    }

    /// Starts another `refrain node` (NATS) named `name`; it is live once it announced itself
    /// (see [`TestApp::wait_nodes`]).
    pub fn add_node(&mut self, name: &str) -> &mut Node {
        let nats = self.nats.as_ref().expect("nodes need the NATS deployment");
        let node = Node::start(self.dir.path(), name, &nats.url(), self.vars.clone());
        self.nodes.push(node);
        self.nodes.last_mut().expect("the node just added")
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    pub fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name}"))
    }

    /// Every node started so far, in order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Every run the nodes' logs show (`job started` lines), checked to be one at a time per
    /// node: job → [(node, attempt)].
    pub fn node_starts(&self) -> HashMap<String, Vec<(String, u32)>> {
        let mut out: HashMap<String, Vec<(String, u32)>> = HashMap::new();
        for node in &self.nodes {
            for (job, attempt) in one_at_a_time(&node.name, &node.log_events()) {
                out.entry(job)
                    .or_default()
                    .push((node.name.clone(), attempt));
            }
        }
        out
    }

    /// Waits until `GET /api/v1/nodes` reports `live` nodes.
    pub fn wait_nodes(&self, live: usize) -> serde_json::Value {
        self.api().wait_nodes(live as u64, GENEROUS)
    }

    /// The nats-server (to kill or restart it).
    pub fn nats_server(&mut self) -> &mut NatsServer {
        self.nats.as_mut().expect("the NATS deployment")
    }
}

/// The NATS deployment without `refrain serve`: a private nats-server and `refrain node`
/// processes, for tests that run the orchestrator in their own process (`service::start`) so
/// they can admit jobs with owners and priorities, as keyed front ends will. Same quick NATS
/// timings as [`TestApp::nats`]. Dropping it kills the nodes and the nats-server.
pub struct NatsFabric {
    nodes: Vec<Node>,
    nats: NatsServer,
    vars: Vec<(String, String)>,
    /// Last: removed after the processes are gone.
    dir: TestDir,
}

impl NatsFabric {
    /// Starts the nats-server; `None` (with a message) when ONNX Runtime or the nats-server is
    /// missing — the test is then skipped, except in CI, where this panics.
    pub fn start() -> Option<NatsFabric> {
        if !ort_available() {
            return None;
        }
        let binary = nats_server_binary()?;
        let dir = TestDir::new();
        let nats = NatsServer::start(&binary, &dir.path().join("nats"));
        let vars = TestApp::nats().env("REFRAIN_NATS__URL", nats.url()).vars;
        Some(NatsFabric {
            nodes: Vec::new(),
            nats,
            vars,
            dir,
        })
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.nats.url()
    }

    /// The test's directory (logs, scratch files; an orchestrator's data may go under it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a `refrain node` named `name`; `steps` overrides every job's sampler steps.
    pub fn add_node(&mut self, name: &str, steps: Option<u32>) -> &mut Node {
        let mut vars = self.vars.clone();
        if let Some(steps) = steps {
            vars.push(("REFRAIN_INFERENCE__STEPS".into(), steps.to_string()));
        }
        let node = Node::start(self.dir.path(), name, &self.nats.url(), vars);
        self.nodes.push(node);
        self.nodes.last_mut().expect("the node just added")
    }
}
