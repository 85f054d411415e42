//! Discord interactions: the slash commands' definitions, `/song` (answered with a deferred,
//! public "thinking…" at once, within Discord's 3 s, then turned into a job), `/cancel`,
//! `/queue`, and the Cancel and Another take buttons. Mistakes the user can fix (no style, a
//! length out of range, a bad LRC, a quota) are answered ephemerally with the API's message.
//!
//! A slash command's text option is one line: lyrics typed there are split into lines before
//! each LRC time tag `[mm:ss…]` and at ` / `; a `.lrc` or `.txt` attachment is read as it is.

use std::sync::Arc;

use serenity::all::{
    Attachment, CommandInteraction, CommandOptionType, ComponentInteraction, CreateCommand,
    CreateCommandOption, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, ResolvedValue,
};
use serenity::builder::Builder;

use super::song::{self, now_ms, Place, Song};
use super::Ctx;
use crate::client::{ClientError, Job, NewJob, NewStyle, OnBehalfOf};
use crate::follow::Backoff;
use crate::request::{timed, title, ClientData};

/// Largest lyrics file read from an attachment.
const MAX_LYRICS_FILE: u32 = 64 * 1024;
/// Largest reference recording read from an attachment.
const MAX_REFERENCE_FILE: u32 = 25 * 1024 * 1024;

/// The slash commands.
pub fn definitions() -> Vec<CreateCommand> {
    let song = CreateCommand::new("song")
        .description("Make a song from lyrics and a style")
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::String,
                "style",
                "The style, e.g. warm piano ballad",
            )
            .max_length(300),
        )
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::String,
                "lyrics",
                "LRC ([00:10.00] line …) or plain lines separated by ' / '",
            )
            .max_length(4000),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::Integer, "length", "Seconds: 95 to 285")
                .min_int_value(95)
                .max_int_value(285),
        )
        .add_option(
            CreateCommandOption::new(CommandOptionType::Integer, "seed", "For a repeatable take")
                .min_int_value(0),
        )
        .add_option(CreateCommandOption::new(
            CommandOptionType::Attachment,
            "lrc",
            "Lyrics as a .lrc or .txt file",
        ))
        .add_option(CreateCommandOption::new(
            CommandOptionType::Attachment,
            "reference",
            "A recording whose style the song takes",
        ));
    vec![
        song,
        CreateCommand::new("cancel").description("Cancel your song in this channel"),
        CreateCommand::new("queue").description("How many songs are waiting"),
    ]
}

/// Dispatches a slash command.
pub async fn on_command(ctx: &Arc<Ctx>, cmd: CommandInteraction) -> Result<(), serenity::Error> {
    match cmd.data.name.as_str() {
        "song" => song_command(ctx, &cmd).await,
        "cancel" => cancel(ctx, &cmd).await,
        "queue" => queue(ctx, &cmd).await,
        _ => Ok(()),
    }
}

async fn ephemeral(ctx: &Ctx, cmd: &CommandInteraction, text: &str) -> Result<(), serenity::Error> {
    let message = CreateInteractionResponseMessage::new()
        .content(text)
        .ephemeral(true);
    cmd.create_response(&ctx.http, CreateInteractionResponse::Message(message))
        .await
}

/// The options of `/song`.
#[derive(Debug, Default)]
struct Options {
    style: Option<String>,
    lyrics: Option<String>,
    length: Option<i64>,
    seed: Option<i64>,
    lrc: Option<Attachment>,
    reference: Option<Attachment>,
}

fn options(cmd: &CommandInteraction) -> Options {
    let mut o = Options::default();
    for option in cmd.data.options() {
        match (option.name, option.value) {
            ("style", ResolvedValue::String(s)) => o.style = Some(s.trim().to_string()),
            ("lyrics", ResolvedValue::String(s)) => o.lyrics = Some(s.to_string()),
            ("length", ResolvedValue::Integer(n)) => o.length = Some(n),
            ("seed", ResolvedValue::Integer(n)) => o.seed = Some(n),
            ("lrc", ResolvedValue::Attachment(a)) => o.lrc = Some(a.clone()),
            ("reference", ResolvedValue::Attachment(a)) => o.reference = Some(a.clone()),
            _ => {}
        }
    }
    o
}

/// One-line lyrics as lines: a break before each LRC time tag and at ` / `.
pub fn lines_of(text: &str) -> String {
    let text = text.replace(" / ", "\n");
    let mut out = String::with_capacity(text.len() + 16);
    let bytes: Vec<char> = text.chars().collect();
    for (i, c) in bytes.iter().enumerate() {
        let tag = *c == '['
            && bytes.get(i + 1).is_some_and(|d| d.is_ascii_digit())
            && bytes[i + 1..].iter().take(4).any(|d| *d == ':');
        if tag && !out.is_empty() && !out.ends_with('\n') {
            while out.ends_with(' ') {
                out.pop();
            }
            out.push('\n');
        }
        out.push(*c);
    }
    out
}

/// The text of an attachment (lyrics) or its bytes (a recording), if small enough.
async fn fetch(attachment: &Attachment, max: u32) -> Result<Vec<u8>, String> {
    if attachment.size > max {
        return Err(format!(
            "{} is too large ({} bytes; at most {max})",
            attachment.filename, attachment.size
        ));
    }
    attachment
        .download()
        .await
        .map_err(|e| format!("{} could not be fetched: {e}", attachment.filename))
}

async fn song_command(ctx: &Arc<Ctx>, cmd: &CommandInteraction) -> Result<(), serenity::Error> {
    let o = options(cmd);
    let length = o
        .length
        .map(|n| n as u32)
        .unwrap_or(ctx.config.default_length_seconds);
    if !(length == 95 || (96..=285).contains(&length)) {
        return ephemeral(ctx, cmd, "The length must be 95, or 96 to 285 seconds.").await;
    }
    let style = match (o.style.clone().filter(|s| !s.is_empty()), &o.reference) {
        (Some(s), _) => s,
        (None, Some(_)) => "your reference".to_string(),
        (None, None) => {
            return ephemeral(
                ctx,
                cmd,
                "Give a `style` (e.g. warm piano ballad) or a `reference` recording.",
            )
            .await
        }
    };
    if o.lyrics.is_none() && o.lrc.is_none() {
        return ephemeral(ctx, cmd, "Give `lyrics` or an `lrc` file.").await;
    }
    // Downloads and the server may take longer than Discord's 3 s: answer "thinking…" now.
    let received = now_ms();
    cmd.defer(&ctx.http).await?;
    let place = Place {
        token: cmd.token.clone(),
        at_ms: received,
        channel: cmd.channel_id,
        guild: cmd.guild_id,
        user: cmd.user.id,
        upload_limit: cmd.attachment_size_limit as u64,
    };
    let request = async {
        let text = match &o.lrc {
            Some(file) => {
                String::from_utf8_lossy(&fetch(file, MAX_LYRICS_FILE).await?).into_owned()
            }
            None => lines_of(o.lyrics.as_deref().unwrap_or("")),
        };
        let style = match &o.reference {
            None => NewStyle::Prompt(style.clone()),
            Some(file) => {
                let bytes = fetch(file, MAX_REFERENCE_FILE).await?;
                let kind = file
                    .content_type
                    .clone()
                    .unwrap_or_else(|| "audio/mpeg".into());
                NewStyle::UploadId(ctx.client.upload(bytes, &kind).await.map_err(api_message)?)
            }
        };
        Ok::<_, String>((timed(&text, length), style))
    };
    let (lyrics, new_style) = match request.await {
        Ok(r) => r,
        Err(message) => return refuse(ctx, &place, &message).await,
    };
    let mut data = place.data();
    if let NewStyle::UploadId(id) = &new_style {
        data = data.with("ref", id);
    }
    let new_job = NewJob {
        lyrics: lyrics.clone(),
        style: new_style,
        length_seconds: length,
        seed: o.seed.map(|s| s as u64),
        format: "mp3".into(),
        on_behalf_of: OnBehalfOf {
            user: format!("discord:{}", cmd.user.id.get()),
            limits: ctx.config.limits,
        },
        client_data: data.encode(),
    };
    let song = Song {
        title: title(&lyrics, &style),
        style,
    };
    start(
        ctx,
        new_job,
        &format!("discord:{}", cmd.id.get()),
        place,
        song,
    )
    .await
}

/// The API's message of an error, for the user.
fn api_message(e: ClientError) -> String {
    match e {
        ClientError::Api { message, .. } => message,
        _ => "The song server cannot be reached; try again later.".into(),
    }
}

/// Replaces the deferred answer by an ephemeral one with `message`.
async fn refuse(ctx: &Ctx, place: &Place, message: &str) -> Result<(), serenity::Error> {
    let _ = ctx
        .http
        .delete_original_interaction_response(&place.token)
        .await;
    CreateInteractionResponseFollowup::new()
        .content(format!("❌ {message}"))
        .ephemeral(true)
        .execute(&ctx.http, (None, &place.token))
        .await
        .map(drop)
}

/// Creates the job (retrying while the server is unreachable) and follows it.
async fn start(
    ctx: &Arc<Ctx>,
    new_job: NewJob,
    key: &str,
    place: Place,
    song: Song,
) -> Result<(), serenity::Error> {
    let backoff = Backoff::default();
    let mut failures = 0;
    let created = loop {
        match ctx.client.create(&new_job, key).await {
            Err(e) if e.is_transient() && failures < 5 => {
                failures += 1;
                tokio::time::sleep(backoff.delay(failures)).await;
            }
            other => break other,
        }
    };
    match created {
        Ok(job) => {
            tokio::spawn(song::follow_job(ctx.clone(), job, place, song));
            Ok(())
        }
        Err(e) => refuse(ctx, &place, &api_message(e)).await,
    }
}

/// The newest queued or running job of `owner` in `channel`.
async fn latest(ctx: &Ctx, owner: &str, channel: u64) -> Result<Option<Job>, ClientError> {
    for state in ["running", "queued"] {
        let jobs = ctx.client.list_all(state, 1000).await?;
        let mine = jobs.into_iter().find(|j| {
            j.owner == owner
                && j.client_data
                    .as_deref()
                    .and_then(ClientData::parse)
                    .and_then(|d| Place::of(&d))
                    .is_some_and(|p| p.channel.get() == channel)
        });
        if mine.is_some() {
            return Ok(mine);
        }
    }
    Ok(None)
}

async fn cancel(ctx: &Ctx, cmd: &CommandInteraction) -> Result<(), serenity::Error> {
    let owner = format!("discord:{}", cmd.user.id.get());
    let text = match latest(ctx, &owner, cmd.channel_id.get()).await {
        Ok(None) => "You have no song waiting or being made in this channel.",
        Ok(Some(job)) => match ctx.client.cancel(&job.id).await {
            Ok(_) => "Cancelling your song.",
            Err(ClientError::Api { status: 409, .. }) => "Your song has already ended.",
            Err(_) => "The song could not be cancelled; try again.",
        },
        Err(_) => "The song server cannot be reached right now.",
    };
    ephemeral(ctx, cmd, text).await
}

async fn queue(ctx: &Ctx, cmd: &CommandInteraction) -> Result<(), serenity::Error> {
    let owner = format!("discord:{}", cmd.user.id.get());
    let lists = tokio::try_join!(
        ctx.client.list_all("queued", 1000),
        ctx.client.list_all("running", 1000)
    );
    let Ok((queued, running)) = lists else {
        return ephemeral(ctx, cmd, "The song server cannot be reached right now.").await;
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
    ephemeral(ctx, cmd, &text).await
}

/// The buttons: `cancel:<job>` (only its requester) and `again:<job>` (a new take of the
/// same lyrics and style with a new seed, for whoever pressed it).
pub async fn on_button(ctx: &Arc<Ctx>, press: ComponentInteraction) -> Result<(), serenity::Error> {
    let answer = |text: &str| {
        CreateInteractionResponse::Message(
            CreateInteractionResponseMessage::new()
                .content(text)
                .ephemeral(true),
        )
    };
    let owner = format!("discord:{}", press.user.id.get());
    if let Some(id) = press.data.custom_id.strip_prefix("cancel:") {
        let text = match ctx.client.job(id).await {
            Ok(found) if found.owner != owner => "Only who asked for this song can cancel it.",
            Ok(found) if found.is_finished() => "This song has already ended.",
            Ok(_) => match ctx.client.cancel(id).await {
                Ok(_) => "Cancelling…",
                Err(ClientError::Api { status: 409, .. }) => "This song has already ended.",
                Err(_) => "The song server cannot be reached; try again.",
            },
            Err(_) => "The song server cannot be reached; try again.",
        };
        return press.create_response(&ctx.http, answer(text)).await;
    }
    let Some(id) = press.data.custom_id.strip_prefix("again:") else {
        return Ok(());
    };
    let earlier = match ctx.client.job(id).await {
        Ok(job) => job,
        Err(e) => {
            return press
                .create_response(&ctx.http, answer(&api_message(e)))
                .await
        }
    };
    let data = earlier.client_data.as_deref().and_then(ClientData::parse);
    let style = match (earlier.request["style"]["prompt"].as_str(), &data) {
        (Some(prompt), _) => NewStyle::Prompt(prompt.to_string()),
        (None, Some(d)) if d.fields.contains_key("ref") => {
            NewStyle::UploadId(d.fields["ref"].clone())
        }
        _ => {
            let text = "The style of that song cannot be used again.";
            return press.create_response(&ctx.http, answer(text)).await;
        }
    };
    let received = now_ms();
    let message = CreateInteractionResponseMessage::new().content("🎵 Another take…");
    press
        .create_response(&ctx.http, CreateInteractionResponse::Message(message))
        .await?;
    let place = Place {
        token: press.token.clone(),
        at_ms: received,
        channel: press.channel_id,
        guild: press.guild_id,
        user: press.user.id,
        upload_limit: press.attachment_size_limit as u64,
    };
    let mut client_data = place.data();
    if let NewStyle::UploadId(upload) = &style {
        client_data = client_data.with("ref", upload);
    }
    let new_job = NewJob {
        lyrics: earlier.request["lyrics"].as_str().unwrap_or("").to_string(),
        style,
        length_seconds: earlier.request["length_seconds"].as_u64().unwrap_or(95) as u32,
        seed: Some(rand::random::<u32>() as u64),
        format: "mp3".into(),
        on_behalf_of: OnBehalfOf {
            user: owner,
            limits: ctx.config.limits,
        },
        client_data: client_data.encode(),
    };
    let song = Song::of(&earlier);
    start(
        ctx,
        new_job,
        &format!("discord:{}", press.id.get()),
        place,
        song,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_lyrics_become_lines() {
        assert_eq!(
            lines_of("[00:10.00] hello world [00:20.00] second line"),
            "[00:10.00] hello world\n[00:20.00] second line"
        );
        assert_eq!(lines_of("one / two / three"), "one\ntwo\nthree");
        assert_eq!(lines_of("[verse] not a time tag"), "[verse] not a time tag");
    }

    #[test]
    fn the_song_command_has_its_options() {
        let all = definitions();
        assert_eq!(all.len(), 3);
        let json = serde_json::to_value(&all[0]).unwrap();
        let names: Vec<&str> = json["options"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            ["style", "lyrics", "length", "seed", "lrc", "reference"]
        );
    }
}
