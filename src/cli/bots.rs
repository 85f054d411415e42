//! `refrain bots`: the chat bots of the `[bots]` section (today the Telegram bot) as their own
//! process, talking to an orchestrator only through its HTTP API. Reads the same configuration
//! file and `REFRAIN_*` variables as `refrain serve`; stops on Ctrl+C or SIGTERM.

use std::path::PathBuf;

use anyhow::Context;
use refrain_orchestrator::config::{Config, Overrides};

use super::serve::{shutdown_signal, DEFAULT_CONFIG};

#[derive(Debug, clap::Args)]
pub struct BotsArgs {
    /// TOML configuration file with a [bots] section (default: config/default.toml when
    /// present).
    #[arg(long, env = "REFRAIN_CONFIG")]
    config: Option<PathBuf>,
}

pub fn run(args: BotsArgs) -> anyhow::Result<()> {
    let file = args.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CONFIG);
        p.is_file().then_some(p)
    });
    let config =
        Config::load(file.as_deref(), &Overrides::default()).map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let on_signal = stop.clone();
        tokio::spawn(async move {
            shutdown_signal().await;
            tracing::info!("stopping the bots");
            on_signal.cancel();
        });
        refrain_bots::run(config.bots, stop).await?;
        anyhow::Ok(())
    })
}
