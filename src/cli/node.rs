//! `refrain node`: one inference node of the distributed deployment. It loads the bundle on one
//! device, connects to NATS and runs one job at a time from the shared JetStream queue until
//! SIGINT/SIGTERM (a running job is handed back). Run one per GPU, on any machine that reaches
//! the NATS server; it needs no access to the orchestrator's disk.

use std::path::PathBuf;

use anyhow::Context;
use refrain_inference::nats as node;
use refrain_inference::runtime::Device;
use refrain_orchestrator::config::{Config, Overrides};
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct NodeArgs {
    /// NATS server URL(s), comma-separated (default: nats.url of --config, else
    /// nats://127.0.0.1:4222).
    #[arg(long, env = "REFRAIN_NATS__URL")]
    nats: Option<String>,
    /// Execution device: cpu, cuda, cuda:N, tensorrt or tensorrt:N.
    #[arg(long, env = "REFRAIN_DEVICE", default_value = "cpu")]
    device: String,
    /// Model bundle: a directory with bundle.toml, or a manifest file.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Path of libonnxruntime.so (default: ORT_DYLIB_PATH, then .ort/lib).
    #[arg(long)]
    ort_library: Option<PathBuf>,
    /// Node name shown by GET /api/v1/nodes (default: <host>-<device>-<random>).
    #[arg(long)]
    name: Option<String>,
    /// TOML configuration to read [nats], [inference] and [limits] from (the orchestrator's
    /// file, e.g. config/distributed.toml). REFRAIN_* variables apply as for `serve`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Overrides every job's sampler steps (load tests).
    #[arg(long)]
    steps: Option<u32>,
    /// ONNX Runtime intra-op threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn run(args: NodeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        bundle: args.bundle.clone(),
        ..Overrides::default()
    };
    let mut config =
        Config::load(args.config.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    if let Some(url) = args.nats {
        config.nats.url = url;
    }
    config.nats.validate().map_err(anyhow::Error::msg)?;
    if args.ort_library.is_some() {
        config.ort_library = args.ort_library;
    }
    if args.steps.is_some() {
        config.inference.steps = args.steps;
    }
    if args.threads.is_some() {
        config.intra_threads = args.threads;
    }
    let device: Device = args
        .device
        .parse()
        .with_context(|| format!("--device {}", args.device))?;
    let options = node::NodeOptions {
        settings: refrain_nats::Settings {
            nats: config.nats.clone(),
            max_attempts: config.inference.max_attempts,
            max_interruptions: config.inference.max_interruptions,
        },
        name: args.name,
        bundle: config.bundle.clone(),
        generator: super::generator_config(&config, device),
        worker: super::worker_settings(&config, device.to_string()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let stop = cancel.clone();
        tokio::spawn(async move {
            super::serve::shutdown_signal().await;
            tracing::info!("shutting down: the running job, if any, is handed back");
            stop.cancel();
        });
        node::run(options, cancel).await?;
        anyhow::Ok(())
    })
}
