//! One song in a Telegram chat, from its job to the audio: the progress message is edited in
//! place (paced per chat, only when the text changes, with a Cancel button while the job can
//! still be cancelled), then the song is sent with `sendAudio` as MP3 with title and performer
//! when it fits the upload limit, or as a link to its `public_url` when it does not. The
//! Cancel button and `/cancel` act only on the requester's own jobs.

use std::sync::Arc;

use teloxide::prelude::*;
use teloxide::types::{
    CallbackQuery, ChatAction, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, MessageId,
    ReplyParameters,
};
use teloxide::RequestError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{api, message_id, Ctx};
use crate::client::{ClientError, Job};
use crate::follow::{follow, Backoff, Outcome, Status};
use crate::request::ClientData;

/// Where a job's messages are: the chat, the progress message, the request and its author.
#[derive(Debug, Clone, Copy)]
pub struct Place {
    pub chat: ChatId,
    pub progress: MessageId,
    pub request: MessageId,
    pub user: u64,
}

impl Place {
    /// The place a job's `client_data` names (`None` if not a Telegram job of this bot).
    pub fn of(data: &ClientData) -> Option<Place> {
        if data.platform != "telegram" {
            return None;
        }
        Some(Place {
            chat: ChatId(data.get("chat")?),
            progress: message_id(data.get("msg")?),
            request: message_id(data.get("req")?),
            user: data.get("user")?,
        })
    }
}

/// What the messages say about the song.
#[derive(Debug, Clone)]
pub struct Song {
    pub style: String,
    pub title: String,
}

fn cancel_button(job: &str) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new(vec![vec![InlineKeyboardButton::callback(
        "Cancel",
        format!("cancel:{job}"),
    )]])
}

/// The progress message's text for `status`.
pub fn render(status: &Status, song: &Song) -> String {
    match status {
        Status::Queued { position: Some(p) } => {
            format!("🎵 {}\nWaiting: number {} in the queue", song.style, p + 1)
        }
        Status::Queued { position: None } => format!("🎵 {}\nWaiting in the queue", song.style),
        Status::Running {
            stage,
            step,
            total,
            percent,
            eta_seconds,
        } => {
            let filled = ((*percent / 10.0).round() as usize).min(10);
            let bar = format!("{}{}", "▓".repeat(filled), "░".repeat(10 - filled));
            let mut text = format!("🎵 {}\n{bar} {percent:.0}%\n{stage}", song.style);
            if *total > 0 {
                text.push_str(&format!(" {step}/{total}"));
            }
            if let Some(eta) = eta_seconds {
                text.push_str(&format!(" · about {eta:.0} s left"));
            }
            text
        }
    }
}

/// Follows `job` to its end, editing the progress message, then delivers or reports it.
pub async fn follow_job(ctx: Arc<Ctx>, job: Job, place: Place, song: Song) {
    let first = ctx
        .following
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id.clone());
    if !first {
        return;
    }
    follow_to_end(&ctx, &job, place, &song).await;
    ctx.following
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job.id);
}

async fn follow_to_end(ctx: &Arc<Ctx>, job: &Job, place: Place, song: &Song) {
    let (tx, rx) = watch::channel(Status::of(job));
    let done = CancellationToken::new();
    let editor = tokio::spawn(edit_progress(
        ctx.clone(),
        job.id.clone(),
        place,
        song.clone(),
        rx,
        done.clone(),
    ));
    let outcome = follow(&ctx.client, &job.id, 0, &tx, Backoff::default(), &ctx.stop).await;
    done.cancel();
    let _ = editor.await;
    let result = match outcome {
        Outcome::Stopped => return,
        Outcome::Succeeded(job) => deliver(ctx, &job, place, song).await,
        Outcome::Failed(why) => finish(ctx, place, &format!("❌ {}\n{why}", song.style)).await,
        Outcome::Cancelled => finish(ctx, place, &format!("✖️ {}\nCancelled", song.style)).await,
        Outcome::Gone => finish(ctx, place, &format!("❌ {}\nThe job is gone", song.style)).await,
    };
    match result {
        Ok(()) => crate::follow::mark_delivered(&ctx.client, job, &ctx.stop).await,
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "cannot tell the Telegram chat how the job ended")
        }
    }
}

/// Edits the progress message whenever the status changes, at the chat's pace.
async fn edit_progress(
    ctx: Arc<Ctx>,
    job: String,
    place: Place,
    song: Song,
    mut rx: watch::Receiver<Status>,
    done: CancellationToken,
) {
    let keyboard = cancel_button(&job);
    let mut shown = String::new();
    rx.mark_changed();
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = done.cancelled() => return,
        }
        tokio::select! {
            () = ctx.pacer.turn(place.chat) => {}
            () = done.cancelled() => return,
        }
        let text = render(&rx.borrow_and_update(), &song);
        if text == shown {
            continue;
        }
        let action = ChatAction::RecordVoice;
        let _ = ctx.bot.send_chat_action(place.chat, action).await;
        let edited = api::edit(
            &ctx.bot,
            place.chat,
            place.progress,
            &text,
            Some(keyboard.clone()),
        )
        .await;
        ctx.pacer.sent(place.chat);
        match edited {
            Ok(()) => shown = text,
            Err(e) => tracing::warn!(job, error = %e, "cannot edit the progress message"),
        }
    }
}

/// The last edit of the progress message (no buttons), paced like the others.
async fn finish(ctx: &Ctx, place: Place, text: &str) -> Result<(), RequestError> {
    ctx.pacer.turn(place.chat).await;
    let edited = api::edit(&ctx.bot, place.chat, place.progress, text, None).await;
    ctx.pacer.sent(place.chat);
    edited
}

/// Sends the song: as audio when its MP3 fits, else as a link.
async fn deliver(ctx: &Ctx, job: &Job, place: Place, song: &Song) -> Result<(), RequestError> {
    let Some(result) = &job.result else {
        return finish(
            ctx,
            place,
            &format!("❌ {}\nNo song in the result", song.style),
        )
        .await;
    };
    let mp3 = result
        .files
        .iter()
        .find(|f| f.variant == 1 && f.format == "mp3")
        .or_else(|| result.files.first());
    let Some(file) = mp3 else {
        return finish(
            ctx,
            place,
            &format!("❌ {}\nNo song in the result", song.style),
        )
        .await;
    };
    let public = ctx
        .config
        .public_url
        .clone()
        .unwrap_or_else(|| ctx.config.server.clone());
    let link = format!("{}{}", public.trim_end_matches('/'), file.public_url);
    let mut sent = false;
    if file.format == "mp3" && file.bytes <= ctx.telegram.max_upload_bytes {
        match ctx.client.download(&file.url).await {
            Ok(bytes) => {
                let _ = ctx
                    .bot
                    .send_chat_action(place.chat, ChatAction::UploadVoice)
                    .await;
                let bytes = bytes::Bytes::from(bytes);
                let name = format!("{}.mp3", song.title);
                let sending = api::retrying("sendAudio", || {
                    ctx.bot
                        .send_audio(
                            place.chat,
                            InputFile::memory(bytes.clone()).file_name(name.clone()),
                        )
                        .title(song.title.clone())
                        .performer(format!("Refrain · {}", song.style))
                        .duration(result.duration_seconds.round() as u32)
                        .reply_parameters(
                            ReplyParameters::new(place.request).allow_sending_without_reply(),
                        )
                        .send()
                })
                .await;
                match sending {
                    Ok(_) => sent = true,
                    Err(e) => {
                        tracing::warn!(job = %job.id, error = %e, "cannot send the audio; sending a link")
                    }
                }
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot download the song; sending a link")
            }
        }
    }
    if !sent {
        let text = format!("🎶 {}: {link}", song.title);
        api::retrying("sendMessage", || {
            ctx.bot
                .send_message(place.chat, text.clone())
                .reply_parameters(ReplyParameters::new(place.request).allow_sending_without_reply())
                .send()
        })
        .await?;
    }
    finish(ctx, place, &format!("✅ {}\n{}", song.style, song.title)).await
}

/// The Cancel button: cancels the job if the one who pressed it asked for it.
pub async fn on_button(ctx: &Ctx, query: CallbackQuery) -> Result<(), RequestError> {
    let Some(job) = query
        .data
        .as_deref()
        .and_then(|d| d.strip_prefix("cancel:"))
    else {
        return Ok(());
    };
    let owner = format!("telegram:{}", query.from.id.0);
    let answer = match ctx.client.job(job).await {
        Ok(found) if found.owner != owner => "Only who asked for this song can cancel it.",
        Ok(found) if found.is_finished() => "This song has already ended.",
        Ok(_) => match ctx.client.cancel(job).await {
            Ok(_) => "Cancelling…",
            Err(ClientError::Api { status: 409, .. }) => "This song has already ended.",
            Err(_) => "The song server cannot be reached; try again.",
        },
        Err(_) => "The song server cannot be reached; try again.",
    };
    api::retrying("answerCallbackQuery", || {
        ctx.bot
            .answer_callback_query(query.id.clone())
            .text(answer)
            .send()
    })
    .await
    .map(drop)
}

/// `/cancel`: cancels the newest queued or running job of this user in this chat.
pub async fn cancel_latest(ctx: &Ctx, message: &Message) -> Result<(), RequestError> {
    let user = message.from.as_ref().map(|u| u.id.0).unwrap_or(0);
    let owner = format!("telegram:{user}");
    let mut mine = Vec::new();
    for state in ["running", "queued"] {
        match ctx.client.list_all(state, 1000).await {
            Ok(jobs) => mine.extend(jobs.into_iter().filter(|j| {
                j.owner == owner
                    && j.client_data
                        .as_deref()
                        .and_then(ClientData::parse)
                        .and_then(|d| Place::of(&d))
                        .is_some_and(|p| p.chat == message.chat.id)
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot list jobs to cancel");
                mine.clear();
                break;
            }
        }
    }
    let text = match mine.first() {
        None => "You have no song waiting or being made in this chat.",
        Some(job) => match ctx.client.cancel(&job.id).await {
            Ok(_) => "Cancelling your song.",
            Err(_) => "The song could not be cancelled; try again.",
        },
    };
    api::retrying("sendMessage", || {
        ctx.bot
            .send_message(message.chat.id, text)
            .reply_parameters(ReplyParameters::new(message.id))
            .send()
    })
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_text() {
        let song = Song {
            style: "warm piano".into(),
            title: "hello".into(),
        };
        let text = render(&Status::Queued { position: Some(0) }, &song);
        assert_eq!(text, "🎵 warm piano\nWaiting: number 1 in the queue");
        let running = Status::Running {
            stage: "sampling".into(),
            step: 3,
            total: 8,
            percent: 42.4,
            eta_seconds: Some(12.2),
        };
        assert_eq!(
            render(&running, &song),
            "🎵 warm piano\n▓▓▓▓░░░░░░ 42%\nsampling 3/8 · about 12 s left"
        );
    }

    #[test]
    fn places_come_from_client_data() {
        let data = ClientData::new("telegram")
            .with("chat", 5)
            .with("msg", 6)
            .with("req", 4)
            .with("user", 9);
        let place = Place::of(&data).unwrap();
        assert_eq!(
            (place.chat, place.progress, place.user),
            (ChatId(5), MessageId(6), 9)
        );
        assert!(Place::of(&ClientData::new("discord").with("chat", 5)).is_none());
        assert!(Place::of(&ClientData::new("telegram").with("chat", 5)).is_none());
    }
}
