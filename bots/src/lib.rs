//! Refrain's chat front ends, run by `refrain bots`: a Telegram bot today (the Discord bot of
//! issue #10 is not written yet). The bots are clients of an orchestrator's HTTP API only
//! ([`client`]): they create jobs for their users (`on_behalf_of`, so the core enforces
//! per-user limits through the job owner), follow them ([`follow`]) and deliver the songs; they
//! never touch the store, the queue or a node.

pub mod client;
pub mod follow;
pub mod request;
pub mod telegram;

use protocol::bots::BotsConfig;
use tokio_util::sync::CancellationToken;

/// Why the bots cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BotsError {
    #[error("no bot is configured: set [bots.telegram] token (or REFRAIN_BOTS__TELEGRAM__TOKEN)")]
    NothingToRun,
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("Telegram: {0}")]
    Telegram(#[from] telegram::TelegramError),
}

/// Runs every configured bot until `stop` is cancelled.
pub async fn run(config: BotsConfig, stop: CancellationToken) -> Result<(), BotsError> {
    let telegram = config
        .telegram
        .clone()
        .filter(|t| t.token.is_some())
        .ok_or(BotsError::NothingToRun)?;
    let client = client::Client::new(&config.server, config.api_key.clone())?;
    tracing::info!(server = %config.server, api_url = %telegram.api_url, "Telegram bot starting");
    telegram::run(config, telegram, client, stop).await?;
    Ok(())
}
