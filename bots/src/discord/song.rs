//! One song in a Discord channel, from its job to the audio. The interaction's answer is edited
//! with a progress bar (stage, step k/n, ETA, queue position) at most once per
//! `edit_interval_ms` and only when its text changes, with a Cancel button; serenity's rate
//! limiter waits out Discord's 429s. The song is then attached in the best format that fits
//! the upload limit the interaction reported (the job's MP3; MP3 at lower bitrates; Ogg/Opus
//! at lower rates still), else a signed, expiring download link is posted, with an "Another
//! take" button either way. An interaction token lets the bot edit its answer for 15 minutes:
//! after that (less a tenth, for safety) the song goes out as a channel message that mentions
//! its requester.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serenity::all::{
    ButtonStyle, ChannelId, CreateActionRow, CreateAttachment, CreateButton, CreateMessage,
    EditInteractionResponse, GuildId, UserId,
};
use serenity::builder::Builder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::{retrying, Ctx};
use crate::client::Job;
use crate::follow::{follow, Backoff, Outcome, Status};
use crate::request::{title, ClientData};

/// Where a job's answer is: the interaction token and when it was received, the channel, the
/// requester and the upload limit the interaction reported.
#[derive(Debug, Clone)]
pub struct Place {
    pub token: String,
    /// Unix milliseconds when the interaction was received.
    pub at_ms: u64,
    pub channel: ChannelId,
    pub guild: Option<GuildId>,
    pub user: UserId,
    /// Bytes; 0 when the interaction reported none.
    pub upload_limit: u64,
}

impl Place {
    /// The `client_data` of a new job at this place (its outcome not yet delivered).
    pub fn data(&self) -> ClientData {
        let mut data = ClientData::new("discord")
            .with("tok", &self.token)
            .with("at", self.at_ms)
            .with("ch", self.channel.get())
            .with("user", self.user.get())
            .with("lim", self.upload_limit)
            .with(crate::follow::DELIVERED, 0);
        if let Some(g) = self.guild {
            data = data.with("g", g.get());
        }
        data
    }

    /// The place a job's `client_data` names (`None` if not a Discord job of this bot).
    pub fn of(data: &ClientData) -> Option<Place> {
        if data.platform != "discord" {
            return None;
        }
        let nonzero = |v: u64| (v != 0).then_some(v);
        Some(Place {
            token: data.fields.get("tok")?.clone(),
            at_ms: data.get("at")?,
            channel: ChannelId::new(nonzero(data.get("ch")?)?),
            guild: data.get::<u64>("g").and_then(nonzero).map(GuildId::new),
            user: UserId::new(nonzero(data.get("user")?)?),
            upload_limit: data.get("lim").unwrap_or(0),
        })
    }

    /// Whether the interaction token still lets the bot edit its answer.
    pub fn token_valid(&self, ctx: &Ctx) -> bool {
        let lifetime_ms = ctx.discord.interaction_token_seconds * 1000;
        now_ms() < self.at_ms + lifetime_ms - lifetime_ms / 10
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the messages say about the song.
#[derive(Debug, Clone)]
pub struct Song {
    pub style: String,
    pub title: String,
}

impl Song {
    /// From the request the server keeps with the job.
    pub fn of(job: &Job) -> Song {
        let lyrics = job.request["lyrics"].as_str().unwrap_or("");
        let style = job.request["style"]["prompt"]
            .as_str()
            .unwrap_or("your reference")
            .to_string();
        Song {
            title: title(lyrics, &style),
            style,
        }
    }
}

fn cancel_row(job: &str) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(format!("cancel:{job}"))
        .label("Cancel")
        .style(ButtonStyle::Danger)])
}

fn again_row(job: &str) -> CreateActionRow {
    CreateActionRow::Buttons(vec![CreateButton::new(format!("again:{job}"))
        .label("Another take")
        .style(ButtonStyle::Primary)])
}

/// The answer's text for `status`.
pub fn render(status: &Status, song: &Song) -> String {
    match status {
        Status::Queued { position: Some(p) } => {
            format!(
                "🎵 **{}**\nWaiting: number {} in the queue",
                song.style,
                p + 1
            )
        }
        Status::Queued { position: None } => format!("🎵 **{}**\nWaiting in the queue", song.style),
        Status::Running {
            stage,
            step,
            total,
            percent,
            eta_seconds,
        } => {
            let filled = ((*percent / 5.0).round() as usize).min(20);
            let bar = format!("{}{}", "█".repeat(filled), "░".repeat(20 - filled));
            let mut text = format!("🎵 **{}**\n`{bar}` {percent:.0}%\n{stage}", song.style);
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

/// Follows `job` to its end, editing the answer, then delivers or reports it.
pub async fn follow_job(ctx: Arc<Ctx>, job: Job, place: Place, song: Song) {
    let first = ctx
        .following
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(job.id.clone());
    if !first {
        return;
    }
    let (tx, rx) = watch::channel(Status::of(&job));
    let done = CancellationToken::new();
    let editor = tokio::spawn(edit_progress(
        ctx.clone(),
        job.id.clone(),
        place.clone(),
        song.clone(),
        rx,
        done.clone(),
    ));
    let outcome = follow(&ctx.client, &job.id, 0, &tx, Backoff::default(), &ctx.stop).await;
    done.cancel();
    let _ = editor.await;
    let text = match outcome {
        Outcome::Stopped => return,
        Outcome::Succeeded(done) => {
            deliver(&ctx, &done, &place, &song).await;
            None
        }
        Outcome::Failed(why) => Some(format!("❌ **{}**\n{why}", song.style)),
        Outcome::Cancelled => Some(format!("✖️ **{}**\nCancelled", song.style)),
        Outcome::Gone => Some(format!("❌ **{}**\nThe job is gone", song.style)),
    };
    if let Some(text) = text {
        post(&ctx, &place, text, None, Vec::new()).await;
    }
    crate::follow::mark_delivered(&ctx.client, &job, &ctx.stop).await;
    ctx.following
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&job.id);
}

/// Edits the answer whenever the status changes, at most once per `edit_interval_ms`, while
/// the token lasts.
async fn edit_progress(
    ctx: Arc<Ctx>,
    job: String,
    place: Place,
    song: Song,
    mut rx: watch::Receiver<Status>,
    done: CancellationToken,
) {
    let interval = std::time::Duration::from_millis(ctx.discord.edit_interval_ms);
    let mut shown = String::new();
    rx.mark_changed();
    loop {
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            () = done.cancelled() => return,
        }
        if !place.token_valid(&ctx) {
            return;
        }
        let text = render(&rx.borrow_and_update(), &song);
        if text == shown {
            continue;
        }
        let edit = || {
            EditInteractionResponse::new()
                .content(text.clone())
                .components(vec![cancel_row(&job)])
                .execute(&ctx.http, &place.token)
        };
        match retrying("edit", edit).await {
            Ok(_) => shown = text,
            Err(e) => tracing::warn!(job, error = %e, "cannot edit the progress message"),
        }
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = done.cancelled() => return,
        }
    }
}

/// The last word on a song: an edit of the answer while the token lasts, else (or when the
/// edit fails) a channel message mentioning the requester.
async fn post(
    ctx: &Ctx,
    place: &Place,
    text: String,
    buttons: Option<CreateActionRow>,
    files: Vec<CreateAttachment>,
) {
    if place.token_valid(ctx) {
        let edit = || {
            let mut edit = EditInteractionResponse::new()
                .content(text.clone())
                .components(buttons.clone().into_iter().collect());
            for file in files.iter().cloned() {
                edit = edit.new_attachment(file);
            }
            edit.execute(&ctx.http, &place.token)
        };
        match retrying("edit", edit).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "cannot edit the answer; posting instead"),
        }
    }
    let send = || {
        let mut message = CreateMessage::new()
            .content(format!("<@{}> {text}", place.user.get()))
            .components(buttons.clone().into_iter().collect());
        for file in files.iter().cloned() {
            message = message.add_file(file);
        }
        place.channel.send_message(&ctx.http, message)
    };
    if let Err(e) = retrying("post", send).await {
        tracing::warn!(channel = %place.channel, error = %e, "cannot post the song");
    }
}

/// One way to send the song: a format at a bitrate (`None`: the server's own file).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub format: &'static str,
    pub kbps: Option<u32>,
    /// Expected size in bytes.
    pub bytes: u64,
}

/// The ways to send a song of `seconds` whose own MP3 has `mp3_bytes`, best first, that are
/// expected to fit `limit` bytes: the job's MP3, MP3 at 160 to 96 kbps, then Ogg/Opus at 96 to
/// 32 kbps (sizes estimated from the bitrate with 3% and 16 KiB to spare).
pub fn choices(seconds: f64, mp3_bytes: Option<u64>, limit: u64) -> Vec<Choice> {
    let estimate = |kbps: u32| (seconds * kbps as f64 * 125.0 * 1.03) as u64 + 16 * 1024;
    let own = mp3_bytes.map(|bytes| Choice {
        format: "mp3",
        kbps: None,
        bytes,
    });
    let ladder = [("mp3", 160), ("mp3", 128), ("mp3", 96)]
        .into_iter()
        .chain([("ogg", 96), ("ogg", 64), ("ogg", 48), ("ogg", 32)])
        .map(|(format, kbps)| Choice {
            format,
            kbps: Some(kbps),
            bytes: estimate(kbps),
        });
    own.into_iter()
        .chain(ladder)
        .filter(|c| c.bytes <= limit)
        .collect()
}

/// A file name from the title.
fn file_name(title: &str, extension: &str) -> String {
    let mut stem: String = title
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    stem = stem.trim_matches('-').chars().take(60).collect();
    if stem.is_empty() {
        stem = "song".into();
    }
    format!("{stem}.{extension}")
}

/// Sends the song in the best format that fits, else as a link.
async fn deliver(ctx: &Ctx, job: &Job, place: &Place, song: &Song) {
    let Some(result) = &job.result else {
        let text = format!("❌ **{}**\nNo song in the result", song.style);
        return post(ctx, place, text, None, Vec::new()).await;
    };
    let limit = match place.upload_limit {
        0 => ctx.discord.default_upload_bytes,
        n => n,
    };
    let own = result
        .files
        .iter()
        .find(|f| f.variant == 1 && f.format == "mp3")
        .map(|f| f.bytes);
    let headline = format!("✅ **{}** · {}", song.title, song.style);
    for choice in choices(result.duration_seconds, own, limit) {
        let mut url = format!("/api/v1/jobs/{}/audio/1?format={}", job.id, choice.format);
        if let Some(kbps) = choice.kbps {
            url.push_str(&format!("&kbps={kbps}"));
        }
        match ctx.client.download(&url).await {
            Ok(bytes) if bytes.len() as u64 <= limit => {
                let file = CreateAttachment::bytes(bytes, file_name(&song.title, choice.format));
                let buttons = Some(again_row(&job.id));
                return post(ctx, place, headline, buttons, vec![file]).await;
            }
            Ok(bytes) => {
                tracing::debug!(job = %job.id, bytes = bytes.len(), limit, "too large; trying a smaller format")
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "cannot download the song");
                break;
            }
        }
    }
    let seconds = ctx.discord.link_hours * 3600;
    let text = match ctx.client.link(&job.id, "mp3", None, seconds).await {
        Ok(url) => {
            let url = match (&ctx.config.public_url, url.find("/dl/")) {
                (Some(public), Some(i)) => format!("{}{}", public.trim_end_matches('/'), &url[i..]),
                _ => url,
            };
            format!(
                "{headline}\nToo large to attach here; download it (for {} h): {url}",
                ctx.discord.link_hours
            )
        }
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "cannot make a download link");
            format!("{headline}\nThe song is made, but cannot be sent right now.")
        }
    };
    post(ctx, place, text, Some(again_row(&job.id)), Vec::new()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_format_that_fits() {
        // A 95 s song: its 192 kbps MP3 (2.3 MB) fits 10 MiB.
        let all = choices(95.0, Some(2_300_000), 10 * 1024 * 1024);
        assert_eq!(all[0].kbps, None);
        // Under 1 MiB: no MP3 fits (96 kbps ≈ 1.19 MB); Opus from 64 kbps does.
        let small = choices(95.0, Some(2_300_000), 1024 * 1024);
        assert_eq!(small[0].format, "ogg");
        assert_eq!(small[0].kbps, Some(64));
        // 285 s in 256 KiB: nothing fits, a link is sent.
        assert!(choices(285.0, Some(6_900_000), 256 * 1024).is_empty());
    }

    #[test]
    fn places_round_trip_through_client_data() {
        let place = Place {
            token: "aW50ZXJhY3Rpb246MTIz=;x".into(),
            at_ms: 1_700_000_000_000,
            channel: ChannelId::new(5),
            guild: Some(GuildId::new(6)),
            user: UserId::new(7),
            upload_limit: 1 << 20,
        };
        let data = ClientData::parse(&place.data().encode()).unwrap();
        let back = Place::of(&data).unwrap();
        assert_eq!(back.token, place.token);
        assert_eq!(
            (
                back.at_ms,
                back.channel,
                back.guild,
                back.user,
                back.upload_limit
            ),
            (
                place.at_ms,
                place.channel,
                place.guild,
                place.user,
                place.upload_limit
            )
        );
        assert!(Place::of(&ClientData::new("telegram").with("tok", "x")).is_none());
    }

    #[test]
    fn file_names_from_titles() {
        assert_eq!(file_name("hello, world!", "mp3"), "hello--world.mp3");
        assert_eq!(file_name("!!!", "ogg"), "song.ogg");
    }
}
