//! Errors of the task API, in the hosted API's error object:
//! `{"error": {"code": "MISSING_INPUT_PARAMETERS", "message": "…", "details": {…}}}`, and on
//! the PiAPI spelling inside its envelope (`{"code": <status>, "data": null, "message", "error"}`).
//! The status and `Retry-After` come from the one mapping ([`Rendered`]); the code is the
//! catalogue code in upper case (`INVALID_LYRICS`, `INVALID_URL`…) except where the hosted API
//! names it: `MISSING_INPUT_PARAMETERS`, `UNAUTHORIZED`, `RATE_LIMIT_EXCEEDED`,
//! `TASK_NOT_FOUND`, `TASK_NOT_CANCELLABLE`, `INVALID_MODEL`, `INVALID_TASK_TYPE`,
//! `INVALID_JSON`. `details.field` names the field at fault in this API's spelling.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::Spelling;
use crate::api::error::Rendered;
use crate::error::{ErrorCode, Field, OrchestratorError};

/// The hosted API's error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskErrorBody {
    pub error: TaskErrorObject,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskErrorObject {
    /// `MISSING_INPUT_PARAMETERS`, `INVALID_LYRICS`, `UNAUTHORIZED`, `RATE_LIMIT_EXCEEDED`…
    pub code: String,
    pub message: String,
    #[schema(value_type = Object)]
    pub details: Value,
}

/// An error of the task API, rendered in `spelling`'s shape (boxed: results stay small).
#[derive(Debug)]
pub struct TaskError(Box<Inner>);

#[derive(Debug)]
struct Inner {
    spelling: Spelling,
    error: OrchestratorError,
    /// A code and details of this API's own, instead of the catalogue's.
    own: Option<(StatusCode, &'static str, Value)>,
}

impl TaskError {
    pub fn new(spelling: Spelling, error: impl Into<OrchestratorError>) -> TaskError {
        TaskError(Box::new(Inner {
            spelling,
            error: error.into(),
            own: None,
        }))
    }

    /// An error only this API has (`INVALID_MODEL`…), as a 400 unless `status` says otherwise.
    pub fn own(
        spelling: Spelling,
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
        details: Value,
    ) -> TaskError {
        TaskError(Box::new(Inner {
            spelling,
            error: OrchestratorError::invalid(Field::Body, message),
            own: Some((status, code, details)),
        }))
    }

    /// The spec's error when none of the three inputs is given.
    pub fn missing_input(spelling: Spelling) -> TaskError {
        TaskError::own(
            spelling,
            StatusCode::BAD_REQUEST,
            "MISSING_INPUT_PARAMETERS",
            "At least one of 'lyrics', 'style_prompt', or 'style_audio' must be provided",
            json!({
                "required_parameters": ["lyrics", "style_prompt", "style_audio"],
                "constraint": "at_least_one",
            }),
        )
    }
}

/// A field in this API's spelling.
pub fn field_name(field: &Field) -> String {
    match field {
        Field::Lyrics => "input.lyrics".into(),
        Field::StylePrompt => "input.style_prompt".into(),
        Field::StyleAudio => "input.style_audio".into(),
        Field::Style => "input".into(),
        Field::Length => "task_type".into(),
        Field::WebhookEndpoint => "config.webhook_config.endpoint".into(),
        Field::WebhookSecret => "config.webhook_config.secret".into(),
        other => other.name().to_string(),
    }
}

impl IntoResponse for TaskError {
    fn into_response(self) -> Response {
        let this = *self.0;
        let mut rendered = Rendered::of(&this.error);
        let (code, details) = match this.own {
            Some((status, code, details)) => {
                rendered.status = status;
                (code.to_string(), details)
            }
            None => {
                let code = match rendered.code {
                    ErrorCode::Unauthorized => "UNAUTHORIZED".to_string(),
                    ErrorCode::OwnerLimit => "RATE_LIMIT_EXCEEDED".to_string(),
                    ErrorCode::NotFound => "TASK_NOT_FOUND".to_string(),
                    ErrorCode::JobFinished => "TASK_NOT_CANCELLABLE".to_string(),
                    other => other.as_str().to_ascii_uppercase(),
                };
                let mut details = serde_json::Map::new();
                if let Some(field) = &rendered.field {
                    details.insert("field".into(), field_name(field).into());
                }
                if let Some(seconds) = rendered.retry_after {
                    details.insert("retry_after".into(), seconds.into());
                }
                (code, Value::Object(details))
            }
        };
        let message = match rendered.code {
            ErrorCode::NotFound => "no such task".to_string(),
            ErrorCode::JobFinished => "the task has already finished".to_string(),
            _ => rendered.message.clone(),
        };
        let error = json!({"code": code, "message": message, "details": details});
        let body = match this.spelling {
            Spelling::Qubico => json!({ "error": error }),
            Spelling::Piapi => json!({
                "code": rendered.status.as_u16(),
                "data": null,
                "message": message,
                "error": error,
            }),
        };
        rendered.respond(body)
    }
}
