//! The orchestrator's error type and its error-code catalogue.
//!
//! Store, queue and inference errors keep their own enums; [`OrchestratorError`] adds the
//! client-facing cases. Every client-facing error has a stable [`ErrorCode`] (its snake_case
//! name never changes once released: clients branch on it) and, for bad input, the [`Field`] at
//! fault in front-end-neutral terms. `api::error` is the single place that turns them into HTTP
//! statuses; each API renders the code, field and message in its own body format and spells
//! the field its own way.

use protocol::JobId;
use thiserror::Error;

use crate::queue::QueueError;
use crate::store::StoreError;

/// A request field, named neutrally: each API maps it to its own spelling (the DiffRhythm API
/// says `lrc` for [`Field::Lyrics`], Refrain's own API `lyrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Field {
    Lyrics,
    /// The style as a text prompt.
    StylePrompt,
    /// The style as a reference recording (upload, URL, base64 or upload id).
    StyleAudio,
    /// Neither or both style inputs: the style as a whole.
    Style,
    Length,
    Seed,
    Variants,
    Chunked,
    /// The edit switch / the edit as a whole.
    Edit,
    /// The song an edit changes.
    EditSong,
    EditSegments,
    /// The song's title.
    Title,
    /// The song a sampler starts from (an init song, re-noised).
    InitSong,
    /// How much noise the init song gets (0–1).
    InitStrength,
    Format,
    OutputDir,
    IdempotencyKey,
    /// Where status changes are POSTed.
    WebhookEndpoint,
    WebhookSecret,
    /// The request body as a whole.
    Body,
    /// A field only one API has, in that API's spelling.
    Named(String),
}

impl Field {
    /// The name in Refrain's own API (and in logs).
    pub fn name(&self) -> &str {
        match self {
            Field::Lyrics => "lyrics",
            Field::StylePrompt => "style.prompt",
            Field::StyleAudio => "style.audio",
            Field::Style => "style",
            Field::Length => "length_seconds",
            Field::Seed => "seed",
            Field::Variants => "variants",
            Field::Chunked => "chunked",
            Field::Edit => "edit",
            Field::EditSong => "edit.song",
            Field::EditSegments => "edit.segments",
            Field::Title => "title",
            Field::InitSong => "init.song",
            Field::InitStrength => "init.strength",
            Field::Format => "format",
            Field::OutputDir => "output_dir",
            Field::IdempotencyKey => "Idempotency-Key",
            Field::WebhookEndpoint => "webhook.endpoint",
            Field::WebhookSecret => "webhook.secret",
            Field::Body => "body",
            Field::Named(name) => name,
        }
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

macro_rules! catalogue {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $status:literal;)*) => {
        /// The error-code catalogue: every code a client can see, with its HTTP status.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $($(#[$doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, for documentation and tests.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The stable name clients see.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $code,)*
                }
            }

            /// The HTTP status of the code (one map for every API).
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }
        }
    };
}

catalogue! {
    /// A required field is missing.
    MissingField = "missing_field", 400;
    /// A field has the wrong type or an unparsable value (numbers, booleans, headers, bodies).
    InvalidField = "invalid_field", 400;
    /// A song length the bundle cannot make.
    InvalidLength = "invalid_length", 400;
    /// Lyrics the LRC parser or the phonemiser refuse (shape, language, limits).
    InvalidLyrics = "invalid_lyrics", 400;
    /// A style prompt that is blank or too long for the style encoder.
    InvalidStylePrompt = "invalid_style_prompt", 400;
    /// Audio that cannot be decoded, or is too short or too long.
    InvalidAudio = "invalid_audio", 400;
    /// Edit segments or an edit request that cannot be made.
    InvalidEdit = "invalid_edit", 400;
    /// A reference to a job, result or upload that does not exist or is not usable.
    InvalidReference = "invalid_reference", 400;
    /// An output sub-folder that is not a plain relative path.
    InvalidOutputDir = "invalid_output_dir", 400;
    /// An output format that is not offered.
    InvalidFormat = "invalid_format", 400;
    /// An audio URL that is malformed or points where the server must not go.
    InvalidUrl = "invalid_url", 400;
    /// An audio URL that could not be fetched.
    FetchFailed = "fetch_failed", 400;
    /// A webhook endpoint the server must not call, or a secret it cannot use.
    InvalidWebhook = "invalid_webhook", 400;
    /// A schedule that cannot be (cron expression, time zone, items, files…).
    InvalidSchedule = "invalid_schedule", 400;
    /// A schedule name that is taken, or a config file schedule changed through the API.
    ScheduleConflict = "schedule_conflict", 409;
    /// A well-formed request for something this server or its model bundle cannot do (for
    /// example a transform that needs a model the bundle does not have).
    Unsupported = "unsupported", 422;
    /// A field or the body is over its size limit.
    TooLarge = "too_large", 413;
    /// The same idempotency key was used before with a different request.
    IdempotencyConflict = "idempotency_conflict", 409;
    /// The job cannot change in its current state (e.g. cancelling a finished job).
    JobFinished = "job_finished", 409;
    /// No such job, file or route.
    NotFound = "not_found", 404;
    /// The path exists, but not with this method (`Allow` lists the methods it takes).
    MethodNotAllowed = "method_not_allowed", 405;
    /// A genuine download link past the time it was made for.
    LinkExpired = "link_expired", 410;
    /// A `Range` that starts past the end of the file.
    RangeNotSatisfiable = "range_not_satisfiable", 416;
    /// An API key is needed, or the one given is not valid.
    Unauthorized = "unauthorized", 401;
    /// The queue is full.
    Busy = "busy", 503;
    /// The owner is over a per-owner limit.
    OwnerLimit = "owner_limit", 429;
    /// The service is starting, stopping or cannot reach its queue.
    NotReady = "not_ready", 503;
    /// Anything the client cannot fix (logged, never shown in detail).
    Internal = "internal", 500;
}

/// A code is its stable name in JSON.
impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// In the OpenAPI document: a string, one of the catalogue's names.
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(ErrorCode::ALL.iter().map(|code| code.as_str())))
            .description(Some(
                "The error-code catalogue: stable names clients branch on (README, \"Error codes\").",
            ))
            .into()
    }
}

impl utoipa::ToSchema for ErrorCode {}

#[derive(Debug, Error)]
pub enum OrchestratorError {
    /// A request field is missing or invalid (400).
    #[error("{field}: {message}")]
    Invalid {
        code: ErrorCode,
        field: Field,
        message: String,
    },
    /// A field or the body exceeds its size limit (413).
    #[error("{field} is larger than the limit of {limit} bytes")]
    TooLarge { field: Field, limit: usize },
    /// The queue is at capacity (503 with Retry-After).
    #[error("server is busy: {running} running and {queued} queued jobs, try again later")]
    Busy {
        running: usize,
        queued: usize,
        retry_after: u64,
    },
    /// The owner is over one of its limits (429 with Retry-After).
    #[error("{message}")]
    OwnerLimit { message: String, retry_after: u64 },
    /// The idempotency key was used before for another request (409).
    #[error("the Idempotency-Key was already used for a different request (job {0})")]
    IdempotencyConflict(JobId),
    /// No valid API key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No such job or file (404).
    #[error("no job or file {0}")]
    NotFound(String),
    /// The service is starting or stopping (503).
    #[error("service not ready: {0}")]
    NotReady(String),
    #[error("job {0} cannot be changed in its current state")]
    Conflict(JobId),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Webhooks(#[from] crate::webhooks::WebhookStoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl OrchestratorError {
    /// A field with an unparsable or wrong value ([`ErrorCode::InvalidField`]).
    pub fn invalid(field: Field, message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::InvalidField, field, message)
    }

    /// A missing required field.
    pub fn missing(field: Field, message: impl Into<String>) -> Self {
        Self::coded(ErrorCode::MissingField, field, message)
    }

    /// Bad input with a specific code.
    pub fn coded(code: ErrorCode, field: Field, message: impl Into<String>) -> Self {
        OrchestratorError::Invalid {
            code,
            field,
            message: message.into(),
        }
    }

    /// The catalogue code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            OrchestratorError::Invalid { code, .. } => *code,
            OrchestratorError::TooLarge { .. } => ErrorCode::TooLarge,
            OrchestratorError::Busy { .. } => ErrorCode::Busy,
            OrchestratorError::OwnerLimit { .. } => ErrorCode::OwnerLimit,
            OrchestratorError::IdempotencyConflict(_) => ErrorCode::IdempotencyConflict,
            OrchestratorError::NotFound(_) => ErrorCode::NotFound,
            OrchestratorError::Unauthorized(_) => ErrorCode::Unauthorized,
            OrchestratorError::NotReady(_) => ErrorCode::NotReady,
            OrchestratorError::Conflict(_) => ErrorCode::JobFinished,
            OrchestratorError::Store(_)
            | OrchestratorError::Queue(_)
            | OrchestratorError::Webhooks(_)
            | OrchestratorError::Io { .. } => ErrorCode::Internal,
        }
    }

    /// The field at fault, for bad input.
    pub fn field(&self) -> Option<&Field> {
        match self {
            OrchestratorError::Invalid { field, .. }
            | OrchestratorError::TooLarge { field, .. } => Some(field),
            OrchestratorError::IdempotencyConflict(_) => Some(&Field::IdempotencyKey),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let name = code.as_str();
            assert!(seen.insert(name), "{name} twice");
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
