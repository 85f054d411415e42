//! The model contract's error type: a bundle, lyrics, audio or request parameter that does not
//! fit. [`ModelError::is_invalid_input`] tells bad input (the request's fault) from a broken
//! bundle. The inference node's `InferenceError` wraps it.

use thiserror::Error;

use crate::audio::AudioError;
use crate::bundle::BundleError;
use crate::lyrics::LyricsError;

/// Everything that can be wrong with a bundle or a request, checked without running a model.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("lyrics: {0}")]
    Lyrics(#[from] LyricsError),
    #[error("audio: {0}")]
    Audio(#[from] AudioError),
    /// A request parameter is out of range or inconsistent; the message names it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The bundle's text tokenizer cannot be loaded.
    #[error("tokenizer {path}: {message}")]
    Tokenizer { path: String, message: String },
}

impl ModelError {
    /// True when the error is the request's fault (retrying the same input cannot succeed).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            ModelError::Lyrics(_) | ModelError::Audio(_) | ModelError::InvalidRequest(_)
        )
    }
}
