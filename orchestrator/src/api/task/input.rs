//! A task request, as both spellings send it, translated into an admission [`Draft`].
//!
//! `model` must be `Qubico/diffrhythm`; `task_type` `txt2audio-base` (a 95 s song) or
//! `txt2audio-full` (285 s). Of `input`, at least one of `lyrics`, `style_prompt` and
//! `style_audio` must be non-empty (else the spec's `MISSING_INPUT_PARAMETERS`): the style is
//! `style_audio` when given (a URL, fetched through the outbound guard, or base64 / a `data:`
//! URL; MP3, WAV or FLAC — any format the decoder reads is taken), otherwise `style_prompt`,
//! which defaults to `pop`; no lyrics makes an instrumental. `config.webhook_config` with a
//! non-empty `endpoint` asks for webhooks. Unknown fields are ignored, as the hosted API does;
//! results are made as MP3 (the WAV is kept too).

use axum::http::StatusCode;
use protocol::{AudioFormat, Source};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::{KeyOwner, Spelling, TaskError};
use crate::admission::{AudioInput, Draft, StyleInput};
use crate::app::JobMeta;
use crate::webhooks::{Payload, Target};

/// The only model.
pub const MODEL: &str = "Qubico/diffrhythm";
/// The style when neither a prompt nor audio is given.
pub const DEFAULT_STYLE: &str = "pop";

/// The task types and their song lengths.
pub const TASK_TYPES: [(&str, u32); 2] = [("txt2audio-base", 95), ("txt2audio-full", 285)];

/// The task type of a song length (for answers).
pub fn task_type_of(seconds: u32) -> &'static str {
    TASK_TYPES
        .iter()
        .find(|(_, s)| *s == seconds)
        .map_or("txt2audio-base", |(t, _)| t)
}

/// `POST /api/v1/task` and `POST /v1/inference`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({
    "model": "Qubico/diffrhythm", "task_type": "txt2audio-base",
    "input": {"lyrics": "[00:10.00] Walking down the street, feeling the beat",
              "style_prompt": "upbeat pop with electronic elements", "style_audio": ""},
    "config": {"webhook_config": {"endpoint": "https://example.com/callback",
                                  "secret": "your_webhook_secret"}}}))]
pub struct TaskRequest {
    /// `Qubico/diffrhythm`.
    #[serde(default)]
    pub model: Option<String>,
    /// `txt2audio-base` (95 s) or `txt2audio-full` (285 s).
    #[serde(default)]
    pub task_type: Option<String>,
    #[serde(default)]
    pub input: TaskInput,
    #[serde(default)]
    pub config: TaskConfig,
}

/// What to make; at least one is required.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TaskInput {
    /// LRC lyrics (`[mm:ss.xx] line`); empty for an instrumental.
    #[serde(default)]
    pub lyrics: Option<String>,
    /// The style in words; default `pop`.
    #[serde(default)]
    pub style_prompt: Option<String>,
    /// A reference recording: an http(s) URL or base64 (MP3, WAV, FLAC).
    #[serde(default)]
    pub style_audio: Option<String>,
}

/// Options.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TaskConfig {
    #[serde(default)]
    pub webhook_config: Option<WebhookConfig>,
}

/// Where status changes are POSTed, and the secret that signs them.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct WebhookConfig {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.trim().is_empty())
}

/// Parses the body (JSON errors in this API's shape) and builds the draft.
pub fn draft(
    spelling: Spelling,
    body: &[u8],
    owner: KeyOwner,
    app: &crate::app::App,
) -> Result<Draft, TaskError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        TaskError::own(
            spelling,
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("the body is not valid JSON ({e})"),
            json!({}),
        )
    })?;
    let request: TaskRequest = serde_json::from_value(value).map_err(|e| {
        TaskError::own(
            spelling,
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("the body does not have the task shape ({e})"),
            json!({}),
        )
    })?;
    match request.model.as_deref() {
        Some(MODEL) => {}
        other => {
            return Err(TaskError::own(
                spelling,
                StatusCode::BAD_REQUEST,
                "INVALID_MODEL",
                format!("model must be \"{MODEL}\", not {other:?}"),
                json!({"field": "model", "allowed": [MODEL]}),
            ))
        }
    }
    let seconds = match request.task_type.as_deref() {
        Some(t) => TASK_TYPES
            .iter()
            .find(|(name, _)| *name == t)
            .map(|(_, s)| *s),
        None => None,
    };
    let Some(seconds) = seconds else {
        return Err(TaskError::own(
            spelling,
            StatusCode::BAD_REQUEST,
            "INVALID_TASK_TYPE",
            format!(
                "task_type must be \"txt2audio-base\" or \"txt2audio-full\", not {:?}",
                request.task_type
            ),
            json!({"field": "task_type", "allowed": ["txt2audio-base", "txt2audio-full"]}),
        ));
    };
    let input = &request.input;
    let lyrics = non_empty(&input.lyrics);
    let prompt = non_empty(&input.style_prompt);
    let audio = non_empty(&input.style_audio);
    if lyrics.is_none() && prompt.is_none() && audio.is_none() {
        return Err(TaskError::missing_input(spelling));
    }
    let style = match audio {
        Some(a) => {
            let a = a.trim();
            let lower = a.to_ascii_lowercase();
            if lower.starts_with("http://") || lower.starts_with("https://") {
                StyleInput::Audio(AudioInput::Url(a.to_string()))
            } else {
                StyleInput::Audio(AudioInput::Base64(a.to_string()))
            }
        }
        None => StyleInput::Prompt(prompt.unwrap_or(DEFAULT_STYLE).to_string()),
    };
    let webhook = request
        .config
        .webhook_config
        .as_ref()
        .and_then(|w| non_empty(&w.endpoint).map(|e| (e, w.secret.clone().unwrap_or_default())))
        .map(|(endpoint, secret)| Target {
            endpoint: endpoint.trim().to_string(),
            secret,
            payload: match spelling {
                Spelling::Piapi => Payload::Piapi,
                Spelling::Qubico => Payload::Qubico,
            },
        });
    let mut meta = JobMeta::anonymous(Source::TaskApi);
    meta.owner = owner.0;
    meta.quota = Some(app.config().task_api.limits);
    meta.webhook = webhook;
    let mut draft = Draft::new(meta);
    draft.lyrics = lyrics.unwrap_or_default().to_string();
    draft.style = Some(style);
    draft.seconds = Some(seconds);
    draft.format = AudioFormat::Mp3;
    Ok(draft)
}
