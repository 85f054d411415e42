//! The Discord bot (serenity, gateway): `/song`, `/cancel`, `/queue`, and the buttons "Cancel"
//! (while a song is being made) and "Another take" (when it is done). Commands are registered
//! when the gateway is ready: per configured guild (at once), else globally.
//!
//! Every song is a job of the orchestrator owned by `discord:<user id>` (`on_behalf_of`, so the
//! core enforces per-user limits), created with an `Idempotency-Key` of the interaction (a
//! repeated interaction never makes a second job) and with `client_data` naming the channel,
//! the user, the interaction's token and time and its upload limit: what a restarted bot needs
//! to find the answer again and to edit it while the token lasts ([`resume`]). The token is
//! kept on the server for that (it expires after 15 minutes; anyone with the bot's API key
//! could read it meanwhile). Requests are read in [`command`]; following a job, progress edits
//! and delivery are in [`song`].
//!
//! serenity reconnects the gateway by itself; a client that cannot start (Discord unreachable)
//! is started again with back-off until the bot is stopped.

pub mod command;
pub mod song;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use protocol::bots::{BotsConfig, DiscordConfig};
use serenity::all::{
    ApplicationId, Command, Context, EventHandler, GatewayIntents, GuildId, Interaction, Ready,
};
use serenity::http::{Http, HttpBuilder};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::follow::Backoff;
use crate::request::ClientData;

/// Why the Discord bot cannot run.
#[derive(Debug, thiserror::Error)]
pub enum DiscordError {
    #[error("bots.discord.token is not set (or REFRAIN_BOTS__DISCORD__TOKEN)")]
    NoToken,
    #[error("cannot learn the application id from Discord: {0}")]
    ApplicationId(String),
}

/// What every handler of the running bot shares.
pub struct Ctx {
    pub http: Arc<Http>,
    pub client: Client,
    pub config: BotsConfig,
    pub discord: DiscordConfig,
    pub stop: CancellationToken,
    /// The jobs being followed (a job found both by a command and by [`resume`] is followed
    /// once).
    pub following: Mutex<HashSet<String>>,
    /// Whether [`resume`] ran (the gateway may be ready more than once).
    resumed: std::sync::atomic::AtomicBool,
}

impl Ctx {
    /// Whether interactions from `guild` (`None`: a direct message) are answered.
    pub fn allowed(&self, guild: Option<GuildId>) -> bool {
        self.discord.guilds.is_empty()
            || guild.is_some_and(|g| self.discord.guilds.contains(&g.get()))
    }
}

/// An HTTP client of Discord's REST API as configured (base URL, application id). serenity's
/// rate limiter sends to discord.com whatever the base, so with another base (a rate-limiting
/// proxy such as twilight-http-proxy, or a test's fake) it is off, as serenity's docs ask, and
/// [`retrying`] retries what is answered 429.
fn make_http(discord: &DiscordConfig, token: &str, application: Option<ApplicationId>) -> Http {
    let mut builder = HttpBuilder::new(token);
    let base = discord.api_url.trim_end_matches('/');
    if base != "https://discord.com" {
        builder = builder.proxy(base).ratelimiter_disabled(true);
    }
    if let Some(id) = application.or(discord.application_id.map(ApplicationId::new)) {
        builder = builder.application_id(id);
    }
    builder.build()
}

/// Runs the bot until `stop`.
pub async fn run(
    config: BotsConfig,
    discord: DiscordConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<(), DiscordError> {
    let token = discord.token.clone().ok_or(DiscordError::NoToken)?;
    let http = make_http(&discord, token.expose(), None);
    let application = match http.application_id() {
        Some(id) => id,
        None => {
            let info = http
                .get_current_application_info()
                .await
                .map_err(|e| DiscordError::ApplicationId(e.to_string()))?;
            http.set_application_id(info.id);
            info.id
        }
    };
    let ctx = Arc::new(Ctx {
        http: Arc::new(http),
        client,
        config,
        discord,
        stop: stop.clone(),
        following: Mutex::default(),
        resumed: false.into(),
    });
    let backoff = Backoff::default();
    let mut failures = 0;
    while !stop.is_cancelled() {
        // The gateway client gets an Http of its own, made the same way.
        let http = make_http(&ctx.discord, token.expose(), Some(application));
        let started = serenity::all::ClientBuilder::new_with_http(http, GatewayIntents::GUILDS)
            .event_handler(Handler { ctx: ctx.clone() })
            .await;
        let mut gateway = match started {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot start the Discord client; retrying");
                sleep_or_stop(backoff.delay(failures), &stop).await;
                continue;
            }
        };
        let shards = gateway.shard_manager.clone();
        let stopping = stop.clone();
        let watcher = tokio::spawn(async move {
            stopping.cancelled().await;
            shards.shutdown_all().await;
        });
        let result = gateway.start().await;
        watcher.abort();
        match result {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "the Discord gateway stopped; reconnecting");
            }
        }
        sleep_or_stop(backoff.delay(failures.max(1)), &stop).await;
    }
    Ok(())
}

/// Runs a Discord call again while it is answered 429 (at most 5 times, 1 s, 2 s, 4 s… apart:
/// serenity does not hand on the `retry_after` of an answer it did not rate-limit itself).
pub async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T, serenity::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, serenity::Error>>,
{
    let mut tries = 0;
    loop {
        match call().await {
            Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(e)))
                if e.status_code.as_u16() == 429 && tries < 5 =>
            {
                tries += 1;
                tracing::debug!(what, tries, "Discord answered 429; waiting");
                tokio::time::sleep(Duration::from_secs(1 << (tries - 1))).await;
            }
            other => return other,
        }
    }
}

async fn sleep_or_stop(wait: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(wait) => {}
        () = stop.cancelled() => {}
    }
}

struct Handler {
    ctx: Arc<Ctx>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _gateway: Context, ready: Ready) {
        tracing::info!(user = %ready.user.name, "Discord gateway ready");
        register(&self.ctx).await;
        if !self
            .ctx
            .resumed
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            tokio::spawn(resume(self.ctx.clone()));
        }
    }

    async fn interaction_create(&self, _gateway: Context, interaction: Interaction) {
        let ctx = self.ctx.clone();
        // Each interaction on its own task: a slow one never delays another's 3 s answer.
        tokio::spawn(async move {
            let result = match interaction {
                Interaction::Command(c) if ctx.allowed(c.guild_id) => {
                    command::on_command(&ctx, c).await
                }
                Interaction::Component(c) if ctx.allowed(c.guild_id) => {
                    command::on_button(&ctx, c).await
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "a Discord interaction failed");
            }
        });
    }
}

/// Registers the slash commands: per configured guild, else globally.
async fn register(ctx: &Ctx) {
    let commands = command::definitions();
    if ctx.discord.guilds.is_empty() {
        if let Err(e) = Command::set_global_commands(&ctx.http, commands).await {
            tracing::warn!(error = %e, "cannot register the Discord commands");
        }
        return;
    }
    for guild in &ctx.discord.guilds {
        if let Err(e) = GuildId::new(*guild)
            .set_commands(&ctx.http, commands.clone())
            .await
        {
            tracing::warn!(guild, error = %e, "cannot register the Discord commands");
        }
    }
}

/// Follows again the jobs this bot made that are queued or running, or that ended while it was
/// down without their outcome posted (after a restart), from their `client_data`.
async fn resume(ctx: Arc<Ctx>) {
    let Some(jobs) = crate::follow::jobs_to_resume(&ctx.client, &ctx.stop).await else {
        return;
    };
    for found in jobs {
        let Some(data) = found.client_data.as_deref().and_then(ClientData::parse) else {
            continue;
        };
        let Some(place) = song::Place::of(&data) else {
            continue;
        };
        if !ctx.allowed(place.guild) {
            continue;
        }
        tracing::info!(job = %found.id, "following the job again");
        let song = song::Song::of(&found);
        tokio::spawn(song::follow_job(ctx.clone(), found, place, song));
    }
}
