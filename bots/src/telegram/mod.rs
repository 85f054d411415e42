//! The Telegram bot (teloxide, long polling): `/song`, `/cancel`, `/queue`, `/help` and the
//! inline Cancel button. Every song is a job of the orchestrator owned by
//! `telegram:<user id>` (`on_behalf_of`, so the core enforces per-user limits), created with
//! an `Idempotency-Key` of the chat and message (a repeated update never makes a second job)
//! and with `client_data` naming the chat and the progress message, which is how a restarted
//! bot finds the message of each queued or running job again ([`resume`]). Following a job and
//! delivering it is in [`job`]; safe, paced Bot API calls in [`api`].

pub mod api;
pub mod job;

use std::sync::Arc;
use std::time::Duration;

use protocol::bots::{BotsConfig, TelegramConfig};
use teloxide::net::Download;
use teloxide::prelude::*;
use teloxide::types::{AllowedUpdate, BotCommand, FileId, MessageId, ReplyParameters, UpdateKind};
use teloxide::RequestError;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientError, NewJob, NewStyle, OnBehalfOf};
use crate::follow::Backoff;
use crate::request::{parse_song, title, ClientData};

const HELP: &str = "Make a song:\n\
/song [length] <style>\n<lyrics, one line each: LRC [mm:ss.xx] tags or plain lines>\n\n\
e.g.\n/song 95 bright acoustic pop with piano\n[00:10.00] first line\n[00:15.00] second line\n\n\
Or reply to a .lrc or .txt file with /song <style>, or to an audio message with \
/song [length] and the lyrics: that recording is the style.\n\
/cancel stops your song in this chat, /queue shows the queue.";

/// Largest lyrics file read from a replied-to document.
const MAX_LYRICS_FILE: u32 = 64 * 1024;

/// Largest reference recording taken from a chat: what the Bot API lets bots download.
const MAX_REFERENCE_FILE: u32 = 20 * 1000 * 1000;

/// What every handler of one running bot shares.
pub struct Ctx {
    pub bot: Bot,
    pub client: Client,
    pub config: BotsConfig,
    pub telegram: TelegramConfig,
    pub pacer: api::Pacer,
    pub stop: CancellationToken,
    /// The jobs being followed (a job found both by a command and by [`resume`] is followed
    /// once).
    pub following: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// Why the Telegram bot cannot run.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    #[error("bots.telegram.token is not set (or REFRAIN_BOTS__TELEGRAM__TOKEN)")]
    NoToken,
    #[error("bots.telegram.api_url is not a URL: {0}")]
    ApiUrl(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// Runs the bot until `stop`: resumes the jobs it was following, then polls for updates.
pub async fn run(
    config: BotsConfig,
    telegram: TelegramConfig,
    client: Client,
    stop: CancellationToken,
) -> Result<(), TelegramError> {
    let token = telegram.token.clone().ok_or(TelegramError::NoToken)?;
    let url =
        reqwest::Url::parse(&telegram.api_url).map_err(|e| TelegramError::ApiUrl(e.to_string()))?;
    // Uploads of songs take longer than teloxide's default 17 s (teloxide#529).
    let http = teloxide::net::default_reqwest_settings()
        .timeout(Duration::from_secs(
            300.max(telegram.poll_timeout_seconds as u64 + 30),
        ))
        .build()
        .map_err(|e| TelegramError::Http(e.to_string()))?;
    let bot = Bot::with_client(token.expose(), http).set_api_url(url);
    let ctx = Arc::new(Ctx {
        bot,
        client,
        pacer: api::Pacer::new(Duration::from_millis(telegram.edit_interval_ms)),
        config,
        telegram,
        stop,
        following: Default::default(),
    });
    let commands = [
        ("song", "make a song: /song [length] <style>, lyrics below"),
        ("cancel", "cancel your song in this chat"),
        ("queue", "how many songs are waiting"),
        ("help", "how to ask for a song"),
    ]
    .map(|(c, d)| BotCommand::new(c, d));
    if let Err(e) = api::retrying("setMyCommands", || {
        ctx.bot.set_my_commands(commands.clone()).send()
    })
    .await
    {
        tracing::warn!(error = %e, "cannot register the Telegram commands");
    }
    tokio::spawn(resume(ctx.clone()));
    poll(ctx).await;
    Ok(())
}

/// Long polling: each update is handled on its own task; the offset confirms it.
async fn poll(ctx: Arc<Ctx>) {
    let mut offset: i32 = 0;
    let mut failures = 0;
    let backoff = Backoff::default();
    loop {
        let request = ctx
            .bot
            .get_updates()
            .offset(offset)
            .timeout(ctx.telegram.poll_timeout_seconds)
            .allowed_updates(vec![AllowedUpdate::Message, AllowedUpdate::CallbackQuery]);
        let result = tokio::select! {
            r = request.send() => r,
            () = ctx.stop.cancelled() => return,
        };
        let wait = match result {
            Ok(updates) => {
                failures = 0;
                for update in updates {
                    offset = offset.max(update.id.0 as i32 + 1);
                    tokio::spawn(handle(ctx.clone(), update));
                }
                continue;
            }
            Err(RequestError::RetryAfter(s)) => s.duration(),
            Err(e) => {
                failures += 1;
                tracing::warn!(error = %e, "cannot get Telegram updates; retrying");
                backoff.delay(failures)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.stop.cancelled() => return,
        }
    }
}

async fn handle(ctx: Arc<Ctx>, update: Update) {
    let result = match update.kind {
        UpdateKind::Message(message) => on_message(&ctx, message).await,
        UpdateKind::CallbackQuery(query) => job::on_button(&ctx, query).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, "a Telegram update failed");
    }
}

fn allowed(ctx: &Ctx, chat: ChatId) -> bool {
    ctx.telegram.allowed_chats.is_empty() || ctx.telegram.allowed_chats.contains(&chat.0)
}

async fn reply(ctx: &Ctx, message: &Message, text: &str) -> Result<Message, RequestError> {
    api::retrying("sendMessage", || {
        ctx.bot
            .send_message(message.chat.id, text)
            .reply_parameters(ReplyParameters::new(message.id))
            .send()
    })
    .await
}

async fn on_message(ctx: &Arc<Ctx>, message: Message) -> Result<(), RequestError> {
    let Some(text) = message.text().or(message.caption()) else {
        return Ok(());
    };
    let (command, argument) = match text.find(char::is_whitespace) {
        Some(i) => (&text[..i], text[i..].trim_start_matches([' ', '\t'])),
        None => (text, ""),
    };
    // `/song@RefrainBot` in groups.
    let command = command.split('@').next().unwrap_or(command);
    if !command.starts_with('/') || !allowed(ctx, message.chat.id) {
        return Ok(());
    }
    let argument = argument.trim_start_matches(['\r', '\n']);
    match command {
        "/song" => song(ctx, &message, argument).await,
        "/cancel" => job::cancel_latest(ctx, &message).await,
        "/queue" => queue(ctx, &message).await,
        "/help" | "/start" => reply(ctx, &message, HELP).await.map(drop),
        _ => Ok(()),
    }
}

/// The text of a `.lrc`/`.txt` document the command replies to, if any.
async fn lyrics_file(ctx: &Ctx, message: &Message) -> Result<Option<String>, RequestError> {
    let Some(document) = message.reply_to_message().and_then(|m| m.document()) else {
        return Ok(None);
    };
    let name = document
        .file_name
        .clone()
        .unwrap_or_default()
        .to_lowercase();
    if !(name.ends_with(".lrc") || name.ends_with(".txt")) || document.file.size > MAX_LYRICS_FILE {
        return Ok(None);
    }
    let bytes = download(ctx, &document.file.id).await?;
    Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

/// A file of a chat message (`getFile`, then the file URL).
async fn download(ctx: &Ctx, id: &FileId) -> Result<Vec<u8>, RequestError> {
    let file = api::retrying("getFile", || ctx.bot.get_file(id.clone()).send()).await?;
    let mut bytes = Vec::new();
    ctx.bot
        .download_file(&file.path, &mut bytes)
        .await
        .map_err(|e| RequestError::Io(Arc::new(std::io::Error::other(e.to_string()))))?;
    Ok(bytes)
}

/// The recording of the audio, voice or audio-document message the command replies to: its
/// file, size and media type.
fn reference_of(message: &Message) -> Option<(FileId, u32, String)> {
    let replied = message.reply_to_message()?;
    let mime = |m: Option<String>, default: &str| m.unwrap_or_else(|| default.to_string());
    if let Some(a) = replied.audio() {
        let kind = mime(
            a.mime_type.as_ref().map(|m| m.essence_str().into()),
            "audio/mpeg",
        );
        return Some((a.file.id.clone(), a.file.size, kind));
    }
    if let Some(v) = replied.voice() {
        let kind = mime(
            v.mime_type.as_ref().map(|m| m.essence_str().into()),
            "audio/ogg",
        );
        return Some((v.file.id.clone(), v.file.size, kind));
    }
    let d = replied.document()?;
    let kind = mime(d.mime_type.as_ref().map(|m| m.essence_str().into()), "");
    kind.starts_with("audio/")
        .then(|| (d.file.id.clone(), d.file.size, kind))
}

/// The style of a request: its prompt, or its reference recording uploaded to the server
/// (`Err`: what to tell the user).
async fn style_of(
    ctx: &Ctx,
    request: &crate::request::SongRequest,
    reference: Option<(FileId, u32, String)>,
) -> Result<NewStyle, String> {
    let Some((id, size, kind)) = reference else {
        return Ok(NewStyle::Prompt(request.style.clone()));
    };
    if size > MAX_REFERENCE_FILE {
        return Err("❌ The recording is too large for a bot to fetch (20 MB at most).".into());
    }
    let bytes = download(ctx, &id)
        .await
        .map_err(|e| format!("❌ The recording could not be fetched: {e}"))?;
    match ctx.client.upload(bytes, &kind).await {
        Ok(upload_id) => Ok(NewStyle::UploadId(upload_id)),
        Err(ClientError::Api { message, .. }) => Err(format!("❌ {message}")),
        Err(_) => Err("❌ The song server cannot be reached; try again later.".into()),
    }
}

async fn song(ctx: &Arc<Ctx>, message: &Message, argument: &str) -> Result<(), RequestError> {
    let Some(user) = message.from.as_ref().map(|u| u.id.0) else {
        return Ok(());
    };
    let file = lyrics_file(ctx, message).await?;
    let reference = reference_of(message);
    let default_length = ctx.config.default_length_seconds;
    let request = match parse_song(
        argument,
        file.as_deref(),
        default_length,
        reference.is_some(),
    ) {
        Ok(r) => r,
        Err(e) => {
            return reply(ctx, message, &format!("{e}\n\n{HELP}"))
                .await
                .map(drop)
        }
    };
    let progress = reply(ctx, message, "🎵 Sending your song to the queue…").await?;
    let style = match style_of(ctx, &request, reference).await {
        Ok(style) => style,
        Err(text) => return api::edit(&ctx.bot, message.chat.id, progress.id, &text, None).await,
    };
    let data = ClientData::new("telegram")
        .with("chat", message.chat.id.0)
        .with("msg", progress.id.0)
        .with("req", message.id.0)
        .with("user", user)
        .with(crate::follow::DELIVERED, 0);
    let new_job = NewJob {
        lyrics: request.lyrics.clone(),
        style,
        length_seconds: request.length_seconds,
        seed: None,
        format: "mp3".into(),
        on_behalf_of: OnBehalfOf {
            user: format!("telegram:{user}"),
            limits: ctx.config.limits,
        },
        client_data: data.encode(),
    };
    let key = format!("telegram:{}:{}", message.chat.id.0, message.id.0);
    let backoff = Backoff::default();
    let mut failures = 0;
    let created = loop {
        match ctx.client.create(&new_job, &key).await {
            Err(e) if e.is_transient() && failures < 5 => {
                failures += 1;
                tokio::time::sleep(backoff.delay(failures)).await;
            }
            other => break other,
        }
    };
    match created {
        Ok(created) => {
            let place = job::Place::of(&data).expect("written above");
            let song = job::Song {
                style: request.style.clone(),
                title: title(&request.lyrics, &request.style),
            };
            tokio::spawn(job::follow_job(ctx.clone(), created, place, song));
            Ok(())
        }
        Err(e) => {
            let text = match &e {
                ClientError::Api { message, .. } => format!("❌ {message}"),
                _ => "❌ The song server cannot be reached; try again later.".into(),
            };
            api::edit(&ctx.bot, message.chat.id, progress.id, &text, None).await
        }
    }
}

async fn queue(ctx: &Ctx, message: &Message) -> Result<(), RequestError> {
    let user = message.from.as_ref().map(|u| u.id.0).unwrap_or(0);
    let owner = format!("telegram:{user}");
    let (queued, running) = match tokio::try_join!(
        ctx.client.list_all("queued", 1000),
        ctx.client.list_all("running", 1000)
    ) {
        Ok(lists) => lists,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the queue");
            return reply(ctx, message, "The song server cannot be reached right now.")
                .await
                .map(drop);
        }
    };
    let mut text = format!("{} being made, {} waiting.", running.len(), queued.len());
    for j in running.iter().filter(|j| j.owner == owner) {
        let percent = j.progress.as_ref().map(|p| p.percent).unwrap_or(0.0);
        text.push_str(&format!("\nYours: being made, {percent:.0}%"));
    }
    for j in queued.iter().filter(|j| j.owner == owner) {
        let place = j.queue_position.map(|p| p + 1).unwrap_or(0);
        text.push_str(&format!("\nYours: waiting, number {place} in the queue"));
    }
    reply(ctx, message, &text).await.map(drop)
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
        let Some(place) = job::Place::of(&data).filter(|p| allowed(&ctx, p.chat)) else {
            continue;
        };
        let lyrics = found.request["lyrics"].as_str().unwrap_or("").to_string();
        let style = found.request["style"]["prompt"]
            .as_str()
            .unwrap_or("your style")
            .to_string();
        let song = job::Song {
            title: title(&lyrics, &style),
            style,
        };
        tracing::info!(job = %found.id, "following the job again");
        tokio::spawn(job::follow_job(ctx.clone(), found, place, song));
    }
}

/// A message id as teloxide types it.
pub(crate) fn message_id(id: i32) -> MessageId {
    MessageId(id)
}
