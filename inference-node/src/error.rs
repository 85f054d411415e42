//! The inference domain's error type. Each stage has its own enum (bundle, lyrics, audio,
//! runtime) and the model contract has [`ModelError`]; this one wraps them and adds the
//! request-level and ONNX Runtime failures, so a caller (CLI, node) can tell bad input
//! (`is_invalid_input`) from a broken node.

use thiserror::Error;

use crate::audio::AudioError;
use crate::bundle::BundleError;
use crate::lyrics::LyricsError;
use crate::runtime::RuntimeError;
use refrain_model::ModelError;

/// Everything that can go wrong while loading a bundle or generating a song.
#[derive(Debug, Error)]
pub enum InferenceError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("lyrics: {0}")]
    Lyrics(#[from] LyricsError),
    #[error("audio: {0}")]
    Audio(#[from] AudioError),
    /// A request parameter is out of range or inconsistent; the message names it.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A graph does not match the bundle contract (missing input, wrong element type or shape).
    #[error("graph {graph}: {message}")]
    Contract { graph: String, message: String },
    /// ONNX Runtime failed while running a graph.
    #[error("{graph}: ONNX Runtime error: {source}")]
    Onnx {
        graph: String,
        #[source]
        source: ort::Error,
    },
    /// The model produced NaN or infinite values.
    #[error("{0} produced non-finite values")]
    NonFinite(String),
    /// The cancellation token fired; the generation stopped between two steps.
    #[error("generation cancelled")]
    Cancelled,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl InferenceError {
    /// True when the error is the request's fault (retrying the same input cannot succeed).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            InferenceError::Lyrics(l) if !matches!(l, LyricsError::Polyphone(_))
        ) || matches!(
            self,
            InferenceError::Audio(_) | InferenceError::InvalidRequest(_)
        ) || matches!(self, InferenceError::Model(m) if m.is_invalid_input())
    }

    pub(crate) fn onnx(graph: &str) -> impl FnOnce(ort::Error) -> InferenceError + '_ {
        move |source| InferenceError::Onnx {
            graph: graph.to_string(),
            source,
        }
    }
}
