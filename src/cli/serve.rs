//! `refrain serve`: the service — HTTP APIs, durable job store, queue — and its in-process
//! inference nodes. The service crate does not link ONNX Runtime: [`node_runner`] gives it the
//! nodes, which load the bundle and run the worker loop on the service's link (embedded) or the
//! NATS node runner (`queue.backend = "nats"`). With a Telegram token in `[bots]`, the bots
//! run in the same process too, as clients of this server's own HTTP address.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use refrain_inference::pipeline::Generator;
use refrain_inference::runtime::Device;
use refrain_orchestrator::config::{Config, Overrides};
use refrain_orchestrator::service::{self, InProcessLink, InProcessNode, NodeRunner};

/// The configuration file used when `--config` is not given and it exists.
pub const DEFAULT_CONFIG: &str = "config/default.toml";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML configuration file (default: config/default.toml when present).
    #[arg(long, env = "REFRAIN_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8000 (port 0 picks a free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Data directory (job store, uploads, outputs).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Model bundle directory or manifest.
    #[arg(long)]
    bundle: Option<PathBuf>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
        bundle: args.bundle,
    };
    let mut config = Config::load(file.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    // Devices are checked (and written canonically: `cuda` is `cuda:0`) before anything starts.
    config.devices = config
        .devices
        .iter()
        .map(|d| d.parse::<Device>().map(|d| d.to_string()))
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let nodes = node_runner(&config);
    let bots = config.bots.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = service::start(config, nodes).await?;
        // A parseable line for scripts and tests that start the server on port 0.
        println!("listening on http://{}", running.addr);
        let telegram = bots.telegram.as_ref().is_some_and(|t| t.token.is_some());
        let discord = bots.discord.as_ref().is_some_and(|d| d.token.is_some());
        if telegram || discord {
            run_bots(bots, running.addr, running.cancel_token());
        }
        let cancel = running.cancel_token();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            cancel.cancel();
        });
        running.wait().await?;
        anyhow::Ok(())
    })
}

/// The bots of `[bots]` inside the service: the same HTTP client as `refrain bots`, pointed at
/// this server's own address (loopback when it listens on every interface).
fn run_bots(
    mut bots: protocol::bots::BotsConfig,
    addr: SocketAddr,
    stop: tokio_util::sync::CancellationToken,
) {
    let host = if addr.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    };
    bots.server = format!("http://{host}");
    tokio::spawn(async move {
        if let Err(e) = refrain_bots::run(bots, stop).await {
            tracing::error!(error = %e, "the bots stopped");
        }
    });
}

/// The in-process nodes of `config`: each loads the bundle off the async threads, reports it to
/// the service, then runs until the service stops.
fn node_runner(config: &Config) -> NodeRunner {
    let config = config.clone();
    Arc::new(move |node: InProcessNode| {
        let config = config.clone();
        Box::pin(async move { run_node(config, node).await })
    })
}

async fn run_node(config: Config, node: InProcessNode) {
    let InProcessNode {
        device,
        link,
        cancel,
        report,
    } = node;
    let parsed = match device.parse::<Device>() {
        Ok(d) => d,
        Err(e) => return report.failed(&e.to_string()),
    };
    let generator_config = super::generator_config(&config, parsed);
    let bundle = config.bundle.clone();
    let loading = tokio::task::spawn_blocking(move || Generator::load(&bundle, generator_config));
    let generator = match loading.await {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return report.failed(&e.to_string()),
        Err(e) => return report.failed(&format!("crashed while loading: {e}")),
    };
    report.loaded();
    let settings = super::worker_settings(&config, device.clone());
    match link {
        InProcessLink::Embedded(link) => {
            refrain_inference::worker::run(link.as_ref(), generator, settings, cancel).await
        }
        InProcessLink::Nats(js) => {
            use refrain_inference::nats::{host_name, serve, Identity};
            let manifest = &generator.bundle().manifest;
            let identity = Identity {
                node: Identity::default_name(&device),
                host: host_name(),
                device,
                bundle_name: manifest.name.clone(),
                bundle_version: manifest.version.clone(),
            };
            serve(*js, generator, identity, settings, cancel).await
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
