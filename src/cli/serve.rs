//! `refrain serve`: the service — HTTP APIs, durable job store, queue and the in-process
//! inference nodes of the embedded deployment.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use refrain_orchestrator::config::{Config, Overrides};
use refrain_orchestrator::service;

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
    let config = Config::load(file.as_deref(), &overrides).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let running = service::start(config).await?;
        // A parseable line for scripts and tests that start the server on port 0.
        println!("listening on http://{}", running.addr);
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
