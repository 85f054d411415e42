//! Progress of one generation, as the inference pipeline reports it and every front end shows it.
//!
//! A generation walks through stages (tokenize, style, encode, sampling steps, decode chunks).
//! Each event carries the stage, its position `k/n`, an overall percent, and an ETA computed from
//! the step times measured so far, so that clients never see made-up progress.

use serde::{Deserialize, Serialize};

/// The stage a generation is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Lyrics parsed, phonemised and placed on frames.
    Tokenize,
    /// Style embedding computed (text prompt or reference audio).
    Style,
    /// Reference song encoded to latents (edit mode only).
    Encode,
    /// One Euler step of the sampler (both CFG branches) finished.
    Sampling,
    /// One VAE chunk (or the whole latent when unchunked) decoded.
    Decode,
    /// The WAV is written: the generation is complete.
    Done,
}

impl Stage {
    /// Stable lower-case name, as used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Tokenize => "tokenize",
            Stage::Style => "style",
            Stage::Encode => "encode",
            Stage::Sampling => "sampling",
            Stage::Decode => "decode",
            Stage::Done => "done",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One progress report of a running generation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressEvent {
    /// The stage this event reports on.
    pub stage: Stage,
    /// Units of this stage finished so far (1-based once one unit is done).
    pub step: u32,
    /// Units this stage has in total (e.g. 31 Euler steps, 64 decode chunks).
    pub total: u32,
    /// Overall progress of the generation, 0.0 to 100.0, never decreasing within one attempt.
    pub percent: f32,
    /// Estimated seconds left, from the unit times measured so far; `None` before any is known.
    pub eta_seconds: Option<f64>,
    /// Seconds since the generation started.
    pub elapsed_seconds: f64,
}
