//! Errors of the Riffusion API, in one shape for every route: `{"error": {"code", "message",
//! "field"}}`. The code is the catalogue's (`invalid_lyrics`, `unsupported`, …) and the status
//! and `Retry-After` come from the one mapping ([`Rendered`]); `field` names the request field at
//! fault in this API's spelling (`lyrics`, `tags`, `morph.crop_end_at`, `morph.source`, …).

use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::error::Rendered;
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The body of every error of this API.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiffErrorBody {
    pub error: RiffErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiffErrorDetail {
    pub code: ErrorCode,
    /// Safe to show to a person.
    pub message: String,
    /// The field at fault: `lyrics`, `tags`, `topic`, `length_seconds`, `url`, `file`,
    /// `morph.transform`, `morph.source` (the `riff_id` or `audio_upload_id`), `morph.<name>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait, as in `Retry-After` (429 and 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

/// An error of this API.
#[derive(Debug)]
pub struct RiffError(pub OrchestratorError);

impl<E: Into<OrchestratorError>> From<E> for RiffError {
    fn from(e: E) -> Self {
        RiffError(e.into())
    }
}

/// A core field in this API's spelling.
pub fn field_name(field: &Field) -> String {
    match field {
        Field::Lyrics => "lyrics".into(),
        Field::StylePrompt => "tags".into(),
        Field::StyleAudio | Field::EditSong | Field::InitSong => "morph.source".into(),
        Field::InitStrength => "morph.normalized_variation_strength".into(),
        Field::Style => "tags".into(),
        Field::Length => "length_seconds".into(),
        Field::Edit | Field::EditSegments => "morph".into(),
        other => other.name().to_string(),
    }
}

impl IntoResponse for RiffError {
    fn into_response(self) -> Response {
        let r = Rendered::of(&self.0);
        let message = match r.code {
            ErrorCode::NotFound => match &self.0 {
                OrchestratorError::NotFound(what) => format!("no such riff {what}"),
                _ => r.message.clone(),
            },
            _ => r.message.clone(),
        };
        let body = RiffErrorBody {
            error: RiffErrorDetail {
                code: r.code,
                message,
                field: r.field.as_ref().map(field_name),
                retry_after: r.retry_after,
            },
        };
        r.respond(serde_json::to_value(body).unwrap_or_default())
    }
}
