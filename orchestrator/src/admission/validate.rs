//! [`Validator`]: the checks admission makes against the model itself — lengths the bundle can
//! make, lyrics through the real LRC parser and G2P, the style prompt through the bundle's
//! style tokenizer (its 512-token limit) — so bad input is refused with 400 before it becomes a
//! job. It uses `refrain_model`, the same code the nodes run, and links no ONNX Runtime.

use refrain_model::bundle::Bundle;
use refrain_model::lyrics::g2p::LineEncoder;
use refrain_model::lyrics::lrc::LyricsLimits;
use refrain_model::prompt::PromptTokenizer;
use refrain_model::{track, ModelError};

use crate::error::{ErrorCode, Field, OrchestratorError};

pub struct Validator {
    bundle: Bundle,
    encoder: LineEncoder,
    tokenizer: PromptTokenizer,
    limits: LyricsLimits,
}

impl Validator {
    pub fn new(bundle: Bundle, limits: LyricsLimits) -> Result<Validator, ModelError> {
        let encoder = track::line_encoder(&bundle, None)?;
        let tokenizer = PromptTokenizer::for_bundle(&bundle)?;
        Ok(Validator {
            bundle,
            encoder,
            tokenizer,
            limits,
        })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Checks a song length against the bundle's models.
    pub fn check_length(&self, seconds: u32) -> Result<(), OrchestratorError> {
        self.bundle
            .choose_model(seconds)
            .map(|_| ())
            .map_err(|m| OrchestratorError::coded(ErrorCode::InvalidLength, Field::Length, m))
    }

    /// Checks lyrics for a song of `seconds` (runs the real parser and G2P; cheap).
    pub fn check_lyrics(&self, lyrics: &str, seconds: u32) -> Result<(), OrchestratorError> {
        track::lyric_track(&self.bundle, &self.encoder, lyrics, seconds, &self.limits)
            .map(|_| ())
            .map_err(|e| {
                let message = match e {
                    ModelError::Lyrics(l) => l.to_string(),
                    other => other.to_string(),
                };
                OrchestratorError::coded(ErrorCode::InvalidLyrics, Field::Lyrics, message)
            })
    }

    /// Checks a style prompt: not blank, not too long in characters or in the bundle's
    /// tokenizer tokens (as the node will).
    pub fn check_prompt(&self, prompt: &str) -> Result<(), OrchestratorError> {
        self.tokenizer.check(prompt).map_err(|e| {
            OrchestratorError::coded(
                ErrorCode::InvalidStylePrompt,
                Field::StylePrompt,
                e.to_string(),
            )
        })
    }
}
