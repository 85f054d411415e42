//! The orchestrator inside the test process (`service::start`, what `refrain serve` runs) on a
//! [`NatsFabric`], for tests that admit jobs with owners and priorities through `App::submit`,
//! as the keyed front ends (bots, the scheduler, the task API) do. The HTTP API is served on a
//! random loopback port as usual and is how the tests observe the jobs.

use std::sync::Arc;
use std::time::Duration;

use protocol::{AudioFormat, JobSpec, Owner, Source, StyleSpec};
use refrain_orchestrator::config::{Backend, Config, NatsConfig, QueueConfig};
use refrain_orchestrator::service::{
    self, App, InProcessNode, JobMeta, NodeFuture, NodeRunner, Running,
};

use super::{local_client, workspace, Api, NatsFabric};

/// The orchestrator of one test, on its own runtime; stopped when dropped.
pub struct Orchestrator {
    rt: Option<tokio::runtime::Runtime>,
    running: Option<Running>,
    app: App,
    pub api: Api,
}

impl Orchestrator {
    /// `refrain serve` with `queue.backend = "nats"` on `fabric`'s nats-server,
    /// `queue.prefetch = prefetch`, no in-process nodes, on a random port; its data in the
    /// fabric's directory.
    pub fn start(fabric: &NatsFabric, prefetch: usize) -> Orchestrator {
        let (dir, nats_url) = (fabric.dir(), fabric.url());
        let config = Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.join("data"),
            bundle: workspace().join("models/test-bundle"),
            devices: Vec::new(),
            queue: QueueConfig {
                backend: Backend::Nats,
                prefetch,
                ..QueueConfig::default()
            },
            nats: NatsConfig {
                url: nats_url,
                ack_wait_seconds: 30,
                fetch_expires_seconds: 2,
                heartbeat_seconds: 1,
                retry_delay_seconds: 1,
                ..NatsConfig::default()
            },
            ..Config::default()
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let no_nodes: NodeRunner =
            Arc::new(|_: InProcessNode| -> NodeFuture { Box::pin(async {}) });
        let running = rt
            .block_on(service::start(config, no_nodes))
            .expect("the orchestrator starts");
        let api = Api {
            http: local_client(),
            base: format!("http://{}", running.addr),
        };
        Orchestrator {
            app: running.app.clone(),
            rt: Some(rt),
            running: Some(running),
            api,
        }
    }

    /// Submits a job as `owner` from `source` (whose default class it gets); its id.
    pub fn submit(
        &self,
        source: Source,
        owner: &Owner,
        seconds: u32,
        steps: u32,
        seed: u64,
    ) -> String {
        let spec = JobSpec {
            lyrics: "[00:01.00]hello from a node\n[00:05.00]la la la\n".into(),
            style: StyleSpec::Prompt("bright acoustic pop with piano".into()),
            seconds,
            seed,
            steps: Some(steps),
            cfg_strength: None,
            variants: 1,
            chunked: true,
            edit: None,
            init: None,
            output_subdir: None,
            format: AudioFormat::Wav,
        };
        let meta = JobMeta {
            owner: owner.clone(),
            ..JobMeta::anonymous(source)
        };
        let rt = self.rt.as_ref().expect("runtime");
        rt.block_on(self.app.submit(spec, meta))
            .expect("job admitted")
            .id
            .to_string()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }
}

impl Drop for Orchestrator {
    fn drop(&mut self) {
        if let (Some(rt), Some(running)) = (self.rt.take(), self.running.take()) {
            running.cancel_token().cancel();
            let _ = rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), running.wait()).await
            });
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
