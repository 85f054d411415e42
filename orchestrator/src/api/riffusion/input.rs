//! Requests of the Riffusion API, translated into admission [`Draft`]s.
//!
//! `POST /riffusion/generate` takes `{title, lyrics, tags, length_seconds, morph}`: lyrics with
//! `[Verse]`/`[Chorus]` markers and no timestamps are timed by the section rule
//! ([`Timing::Song`]); `tags` (a list or a comma-separated string) joined with `, ` are the style
//! prompt (`pop` when absent); `length_seconds` is 95 (default) or 96–285. With `morph.transform`
//! it changes a source song, `morph.riff_id` (a take of this key) or `morph.audio_upload_id`:
//!
//! * `inpaint` — edit mode regenerating `[replace_start_at, replace_end_at)` of the source (at
//!   the source's length, 95–285 s); untimed lyrics are timed within that span;
//! * `extend` — edit mode keeping the source up to `crop_end_at` and regenerating everything
//!   after it, for a song of `length_seconds` (default `crop_end_at` + 60 s, at least 95, at
//!   most 285); untimed lyrics are timed within the new part;
//! * `cover` — new lyrics over the source's style: the source is the style reference (its style
//!   clip, as for any reference recording), `tags` are not used;
//! * `swap_sound` — same lyrics, new style (`tags`): the sampler starts from the source's
//!   latents re-noised with strength `normalized_variation_strength` (default 0.5; the core's
//!   `init`, SDEdit — Refrain's addition, DiffRhythm has no such mode), at the source's length
//!   (95–285 s); a take's own lyrics unless new ones are given (an upload needs them);
//! * `swap_vocals` — refused with `unsupported` (422) and the reason.
//!
//! `normalized_lyrics_strength` and `normalized_sound_prompt_strength` set DiffRhythm's one
//! guidance control, the CFG strength (lyrics and style are guided together): `8 ×` their mean,
//! so 0.5 is the reference's 4. `normalized_variation_strength` is `swap_sound`'s noise
//! strength. `normalized_weirdness` and `normalized_cover_strength` (and the variation strength
//! of other transforms) have no DiffRhythm control: they are checked (0–1) and have no effect.
//! Any of them outside 0–1 is a 400.

use protocol::{AudioFormat, JobId, JobRecord, JobState, Source};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::KeyOwner;
use crate::admission::{
    AudioInput, Draft, EditInput, InitInput, SegmentsInput, SongInput, StyleInput, Timing,
};
use crate::app::{App, JobMeta};
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The style when no tags are given.
pub const DEFAULT_TAGS: &str = "pop";
/// The song length when none is given (the base model's).
pub const DEFAULT_SECONDS: u32 = 95;
/// Seconds an extension adds after `crop_end_at` when `length_seconds` is not given.
pub const EXTEND_SECONDS: f64 = 60.0;
/// The longest song DiffRhythm makes.
pub const MAX_SECONDS: u32 = 285;
/// `swap_sound`'s noise strength when `normalized_variation_strength` is not given.
pub const DEFAULT_VARIATION: f64 = 0.5;
/// Shortest part an extension regenerates.
pub const MIN_EXTENSION_SECONDS: f64 = 5.0;

/// `POST /riffusion/generate`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({
    "title": "Night Drive",
    "lyrics": "[Verse]\nCity lights are passing by\n[Chorus]\nWe drive into the night",
    "tags": ["synthwave", "female vocals"]}))]
pub struct GenerateRequest {
    /// Kept with both takes (at most 200 characters): shown in the feed, and the download file
    /// name of Refrain's own API is made from it.
    #[serde(default)]
    pub title: Option<String>,
    /// Structured lyrics (`[Verse]`, `[Chorus]` … markers, no timestamps) or LRC.
    #[serde(default)]
    pub lyrics: Option<String>,
    /// Style tags: a list, or one comma-separated string.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tags: Option<Tags>,
    /// 95 (default) or 96–285.
    #[serde(default)]
    pub length_seconds: Option<u32>,
    #[serde(default)]
    pub morph: Option<Morph>,
}

/// Tags as a list or a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Tags {
    List(Vec<String>),
    Text(String),
}

/// A transform of a source song, and the creative controls.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct Morph {
    /// `inpaint`, `extend`, `cover`, `swap_sound`, `swap_vocals` (422); absent: a new song.
    #[serde(default)]
    pub transform: Option<String>,
    /// A take of this key as the source.
    #[serde(default)]
    pub riff_id: Option<String>,
    /// An upload (`POST /riffusion/upload`) as the source.
    #[serde(default)]
    pub audio_upload_id: Option<String>,
    /// `extend`: keep the source up to here (seconds).
    #[serde(default)]
    pub crop_end_at: Option<f64>,
    /// `inpaint`: regenerate from here (seconds) …
    #[serde(default)]
    pub replace_start_at: Option<f64>,
    /// … to here.
    #[serde(default)]
    pub replace_end_at: Option<f64>,
    /// 0–1; with the sound-prompt strength sets the CFG strength (8 × their mean).
    #[serde(default)]
    pub normalized_lyrics_strength: Option<f64>,
    /// 0–1; see `normalized_lyrics_strength`.
    #[serde(default)]
    pub normalized_sound_prompt_strength: Option<f64>,
    /// 0–1; no DiffRhythm control (checked, no effect).
    #[serde(default)]
    pub normalized_weirdness: Option<f64>,
    /// 0–1; no DiffRhythm control (checked, no effect).
    #[serde(default)]
    pub normalized_cover_strength: Option<f64>,
    /// 0–1; `swap_sound`'s noise strength (default 0.5): 1 a fresh song, 0 the source itself.
    /// No effect on other transforms.
    #[serde(default)]
    pub normalized_variation_strength: Option<f64>,
}

/// `POST /riffusion/generate/topic`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"topic": "a calm morning by the sea"}))]
pub struct TopicRequest {
    /// The theme; it becomes the style prompt of an instrumental.
    #[serde(default)]
    pub topic: Option<String>,
    /// Added to the topic in the style prompt.
    #[serde(default)]
    #[schema(value_type = Vec<String>)]
    pub tags: Option<Tags>,
    /// 95 (default) or 96–285.
    #[serde(default)]
    pub length_seconds: Option<u32>,
}

fn named(name: &str) -> Field {
    Field::Named(name.to_string())
}

/// Parses a JSON body into `T`, naming the body when it is not JSON or not the shape.
pub fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, OrchestratorError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| OrchestratorError::invalid(Field::Body, format!("not valid JSON ({e})")))?;
    serde_json::from_value(value).map_err(|e| {
        OrchestratorError::invalid(Field::Body, format!("not the request's shape ({e})"))
    })
}

fn tags_prompt(tags: &Option<Tags>) -> Option<String> {
    let list: Vec<String> = match tags {
        None => Vec::new(),
        Some(Tags::List(l)) => l.clone(),
        Some(Tags::Text(t)) => t.split(',').map(str::to_string).collect(),
    };
    let list: Vec<&str> = list
        .iter()
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

fn meta(owner: &KeyOwner) -> JobMeta {
    let mut meta = JobMeta::anonymous(Source::RiffusionApi);
    meta.owner = owner.0.clone();
    meta
}

fn base_draft(owner: &KeyOwner, seconds: Option<u32>) -> Draft {
    let mut draft = Draft::new(meta(owner));
    draft.seconds = Some(seconds.unwrap_or(DEFAULT_SECONDS));
    draft.format = AudioFormat::Mp3;
    draft
}

/// The take `id` if it is a take of this key; anything else is "no such riff".
pub fn owned(app: &App, owner: &KeyOwner, id: &str) -> Result<JobRecord, OrchestratorError> {
    let not_found = || OrchestratorError::NotFound(crate::admission::shorten(id));
    let job = JobId::parse(id.trim()).ok_or_else(not_found)?;
    match app.job(&job)? {
        Some(r) if r.source == Source::RiffusionApi && r.owner == owner.0 => Ok(r),
        _ => Err(not_found()),
    }
}

/// The draft of `POST /riffusion/generate/topic`: an instrumental in the topic's style.
pub fn topic_draft(request: TopicRequest, owner: &KeyOwner) -> Result<Draft, OrchestratorError> {
    let topic = request
        .topic
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OrchestratorError::missing(named("topic"), "required: the theme"))?;
    let prompt = match tags_prompt(&request.tags) {
        Some(tags) => format!("{topic}, {tags}"),
        None => topic.to_string(),
    };
    let mut draft = base_draft(owner, request.length_seconds);
    draft.style = Some(StyleInput::Prompt(prompt));
    Ok(draft)
}

/// Checks the `normalized_*` controls and returns the CFG strength they set, if any.
fn controls(morph: &Morph) -> Result<Option<f32>, OrchestratorError> {
    let all = [
        (
            "normalized_lyrics_strength",
            morph.normalized_lyrics_strength,
        ),
        (
            "normalized_sound_prompt_strength",
            morph.normalized_sound_prompt_strength,
        ),
        ("normalized_weirdness", morph.normalized_weirdness),
        ("normalized_cover_strength", morph.normalized_cover_strength),
        (
            "normalized_variation_strength",
            morph.normalized_variation_strength,
        ),
    ];
    for (name, value) in all {
        if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
            return Err(OrchestratorError::invalid(
                named(&format!("morph.{name}")),
                format!("expected a number from 0 to 1, not {v}"),
            ));
        }
    }
    let guided: Vec<f64> = [
        morph.normalized_lyrics_strength,
        morph.normalized_sound_prompt_strength,
    ]
    .into_iter()
    .flatten()
    .collect();
    Ok((!guided.is_empty())
        .then(|| (8.0 * guided.iter().sum::<f64>() / guided.len() as f64) as f32))
}

/// The source of a transform.
fn source(app: &App, owner: &KeyOwner, morph: &Morph) -> Result<AudioInput, OrchestratorError> {
    let field = named("morph.source");
    let given = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
    };
    match (given(&morph.riff_id), given(&morph.audio_upload_id)) {
        (Some(_), Some(_)) => Err(OrchestratorError::invalid(
            field,
            "give riff_id or audio_upload_id, not both",
        )),
        (None, None) => Err(OrchestratorError::missing(
            field,
            "this transform needs a source: riff_id or audio_upload_id",
        )),
        (Some(riff), None) => {
            let record = owned(app, owner, &riff)?;
            if record.state != JobState::Succeeded {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidReference,
                    field,
                    format!(
                        "riff {} has not succeeded (it is {})",
                        record.id, record.state
                    ),
                ));
            }
            Ok(AudioInput::Job(record.id))
        }
        (None, Some(upload)) => Ok(AudioInput::UploadId(upload)),
    }
}

/// A source as the song an edit starts from (a take by its job, so nothing is copied).
fn song(source: AudioInput) -> SongInput {
    match source {
        AudioInput::Job(id) => SongInput::Job(id),
        other => SongInput::Audio(other),
    }
}

fn required(value: Option<f64>, name: &str, what: &str) -> Result<f64, OrchestratorError> {
    let v = value.ok_or_else(|| {
        OrchestratorError::missing(named(&format!("morph.{name}")), format!("required: {what}"))
    })?;
    if !v.is_finite() || v < 0.0 {
        return Err(OrchestratorError::invalid(
            named(&format!("morph.{name}")),
            format!("expected seconds (0 or more), not {v}"),
        ));
    }
    Ok(v)
}

/// The draft of `POST /riffusion/generate` (the same for both takes; each gets its own seed at
/// admission).
pub async fn generate_draft(
    app: &App,
    request: GenerateRequest,
    owner: &KeyOwner,
) -> Result<Draft, OrchestratorError> {
    let lyrics = request.lyrics.clone().unwrap_or_default();
    let morph = request.morph.unwrap_or_default();
    let cfg = controls(&morph)?;
    let transform = morph
        .transform
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    let mut draft = base_draft(owner, request.length_seconds);
    draft.meta.title = request.title.clone();
    draft.cfg_strength = cfg;
    draft.lyrics = lyrics.clone();
    draft.style = Some(StyleInput::Prompt(
        tags_prompt(&request.tags).unwrap_or_else(|| DEFAULT_TAGS.to_string()),
    ));
    let need_lyrics = || {
        if lyrics.trim().is_empty() {
            Err(OrchestratorError::missing(
                Field::Lyrics,
                "required: the lyrics to sing",
            ))
        } else {
            Ok(())
        }
    };
    match transform {
        None => {
            need_lyrics()?;
            draft.timing = Timing::Song;
        }
        Some("cover") => {
            need_lyrics()?;
            draft.timing = Timing::Song;
            draft.style = Some(StyleInput::Audio(source(app, owner, &morph)?));
        }
        Some("inpaint") => {
            let start = required(
                morph.replace_start_at,
                "replace_start_at",
                "where the replaced part starts (seconds)",
            )?;
            let end = required(
                morph.replace_end_at,
                "replace_end_at",
                "where the replaced part ends (seconds)",
            )?;
            if end <= start {
                return Err(OrchestratorError::invalid(
                    named("morph.replace_end_at"),
                    format!("{end} is not after replace_start_at ({start})"),
                ));
            }
            let song = song(source(app, owner, &morph)?);
            let length = app.song_seconds(named("morph.source"), &song).await?;
            if length < f64::from(DEFAULT_SECONDS) || length >= f64::from(MAX_SECONDS + 1) {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidAudio,
                    named("morph.source"),
                    format!(
                        "the source is {length:.1} s long: inpaint keeps the song's length, which \
                         must be 95 to 285 s (use extend to lengthen a shorter song)"
                    ),
                ));
            }
            let seconds = length.floor() as u32;
            if end > f64::from(seconds) {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidEdit,
                    named("morph.replace_end_at"),
                    format!("{end} s is after the end of the {seconds} s song"),
                ));
            }
            app.validator()
                .check_edit_covers(length, seconds, &[(start, end)])?;
            draft.seconds = Some(seconds);
            draft.timing = Timing::Span(start, end);
            draft.edit = Some(EditInput {
                song,
                segments: SegmentsInput::List(vec![(start, end)]),
            });
        }
        Some("extend") => {
            let crop = required(
                morph.crop_end_at,
                "crop_end_at",
                "the point after which the song is regenerated (seconds)",
            )?;
            let song = song(source(app, owner, &morph)?);
            let length = app.song_seconds(named("morph.source"), &song).await?;
            if crop <= 0.0 || crop >= length {
                return Err(OrchestratorError::invalid(
                    named("morph.crop_end_at"),
                    format!("{crop} s is not inside the {length:.1} s source"),
                ));
            }
            let seconds = request.length_seconds.unwrap_or_else(|| {
                ((crop + EXTEND_SECONDS).ceil() as u32).clamp(DEFAULT_SECONDS, MAX_SECONDS)
            });
            if f64::from(seconds) < crop + MIN_EXTENSION_SECONDS {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidEdit,
                    named("morph.crop_end_at"),
                    format!(
                        "a {seconds} s song leaves less than {MIN_EXTENSION_SECONDS} s after \
                         crop_end_at ({crop} s): give a longer length_seconds"
                    ),
                ));
            }
            draft.seconds = Some(seconds);
            draft.timing = Timing::Span(crop, f64::from(seconds));
            draft.edit = Some(EditInput {
                song,
                segments: SegmentsInput::List(vec![(crop, -1.0)]),
            });
        }
        Some("swap_vocals") => {
            return Err(OrchestratorError::coded(
                ErrorCode::Unsupported,
                named("morph.transform"),
                "swap_vocals needs a source-separation model to split the vocals from the \
                 instrumental, and the model bundle has none",
            ))
        }
        Some("swap_sound") => {
            let source = source(app, owner, &morph)?;
            let song = song(source);
            let length = app.song_seconds(named("morph.source"), &song).await?;
            if length < f64::from(DEFAULT_SECONDS) || length >= f64::from(MAX_SECONDS + 1) {
                return Err(OrchestratorError::coded(
                    ErrorCode::InvalidAudio,
                    named("morph.source"),
                    format!(
                        "the source is {length:.1} s long: swap_sound keeps the song's length, \
                         which must be 95 to 285 s"
                    ),
                ));
            }
            // Same lyrics: a take's own (as sung), unless new ones are given; an upload's
            // lyrics are not known, so they must be.
            match (&song, lyrics.trim().is_empty()) {
                (SongInput::Job(id), true) => {
                    draft.lyrics = owned(app, owner, id.as_str())?.spec.lyrics;
                    draft.timing = Timing::AsGiven;
                }
                (_, true) => need_lyrics()?,
                (_, false) => draft.timing = Timing::Song,
            }
            draft.seconds = Some(length.floor() as u32);
            draft.init = Some(InitInput {
                song,
                strength: morph
                    .normalized_variation_strength
                    .unwrap_or(DEFAULT_VARIATION),
            });
        }
        Some(other) => {
            return Err(OrchestratorError::invalid(
                named("morph.transform"),
                format!(
                    "{:?} is not a transform: inpaint, extend, cover, swap_sound or swap_vocals",
                    crate::admission::shorten(other)
                ),
            ))
        }
    }
    Ok(draft)
}
