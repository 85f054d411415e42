//! Refrain's chat front ends, run by `refrain bots`: a Discord bot ([`discord`]) and a Telegram
//! bot ([`telegram`]), each run when its token is configured. The bots are clients of an orchestrator's HTTP API only
//! ([`client`]): they create jobs for their users (`on_behalf_of`, so the core enforces
//! per-user limits through the job owner), follow them ([`follow`]) and deliver the songs; they
//! never touch the store, the queue or a node.

pub mod client;
pub mod discord;
pub mod follow;
pub mod request;
pub mod telegram;

use protocol::bots::BotsConfig;
use tokio_util::sync::CancellationToken;

/// Why the bots cannot run.
#[derive(Debug, thiserror::Error)]
pub enum BotsError {
    #[error(
        "no bot is configured: set [bots.discord] token or [bots.telegram] token (or \
         REFRAIN_BOTS__DISCORD__TOKEN, REFRAIN_BOTS__TELEGRAM__TOKEN)"
    )]
    NothingToRun,
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("Telegram: {0}")]
    Telegram(#[from] telegram::TelegramError),
    #[error("Discord: {0}")]
    Discord(#[from] discord::DiscordError),
}

/// Runs every configured bot until `stop` is cancelled; the first that cannot run stops the
/// others.
pub async fn run(config: BotsConfig, stop: CancellationToken) -> Result<(), BotsError> {
    let telegram = config.telegram.clone().filter(|t| t.token.is_some());
    let discord = config.discord.clone().filter(|d| d.token.is_some());
    if telegram.is_none() && discord.is_none() {
        return Err(BotsError::NothingToRun);
    }
    let client = client::Client::new(&config.server, config.api_key.clone())?;
    let telegram = async {
        if let Some(t) = telegram {
            tracing::info!(server = %config.server, api_url = %t.api_url, "Telegram bot starting");
            let run = telegram::run(config.clone(), t, client.clone(), stop.clone()).await;
            if run.is_err() {
                stop.cancel();
            }
            run?;
        }
        Ok::<_, BotsError>(())
    };
    let discord = async {
        if let Some(d) = discord {
            tracing::info!(server = %config.server, api_url = %d.api_url, "Discord bot starting");
            let run = discord::run(config.clone(), d, client.clone(), stop.clone()).await;
            if run.is_err() {
                stop.cancel();
            }
            run?;
        }
        Ok::<_, BotsError>(())
    };
    tokio::try_join!(telegram, discord).map(drop)
}
