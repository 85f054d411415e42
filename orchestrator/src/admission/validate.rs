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

    /// Checks that an edit of a song `have` seconds long into a song of `seconds` keeps only
    /// frames the song has: everything after its end must be regenerated (the node's rule;
    /// extending a song regenerates its end). For front ends that know the song's length before
    /// admitting (the Riffusion API); admission itself leaves it to the node, so the DiffRhythm
    /// API keeps accepting such a job and reporting its failure as the reference server does.
    pub fn check_edit_covers(
        &self,
        have: f64,
        seconds: u32,
        segments: &[(f64, f64)],
    ) -> Result<(), OrchestratorError> {
        let Ok(choice) = self.bundle.choose_model(seconds) else {
            return Ok(()); // refused as a length elsewhere
        };
        let song = self.bundle.frames_to_seconds(choice.frames);
        let (sr, hop) = (
            self.bundle.manifest.audio.sample_rate,
            self.bundle.manifest.audio.hop,
        );
        let frame = |t: f64| refrain_model::lyrics::placement::frame_of(t, sr, hop);
        // Frames `have_frames..frames` must all be regenerated (the node's edit mask).
        let have_frames = (have * f64::from(sr) / hop as f64 + 1e-6).floor() as usize;
        if have_frames >= choice.frames {
            return Ok(());
        }
        let mut regenerated = vec![false; choice.frames];
        for &(s, e) in segments {
            let start = if s == -1.0 { 0 } else { frame(s) };
            let end = if e == -1.0 {
                choice.max_frames
            } else {
                frame(e)
            };
            for r in regenerated.iter_mut().take(end).skip(start) {
                *r = true;
            }
        }
        let covered = regenerated[have_frames..].iter().all(|&r| r);
        if covered {
            return Ok(());
        }
        Err(OrchestratorError::coded(
            ErrorCode::InvalidEdit,
            Field::EditSegments,
            format!(
                "the song being edited is {have:.2} s long, shorter than the {song:.2} s being \
                 generated: the segments must regenerate everything after {have:.2} s"
            ),
        ))
    }

    /// Checks that a song `have` seconds long covers every frame of a song of `seconds`, as a
    /// song the sampler starts from must (a longer one is cut).
    pub fn check_init_covers(&self, have: f64, seconds: u32) -> Result<(), OrchestratorError> {
        let Ok(choice) = self.bundle.choose_model(seconds) else {
            return Ok(()); // refused as a length elsewhere
        };
        let (sr, hop) = (
            self.bundle.manifest.audio.sample_rate,
            self.bundle.manifest.audio.hop,
        );
        let have_frames = (have * f64::from(sr) / hop as f64 + 1e-6).floor() as usize;
        if have_frames >= choice.frames {
            return Ok(());
        }
        let song = self.bundle.frames_to_seconds(choice.frames);
        Err(OrchestratorError::coded(
            ErrorCode::InvalidAudio,
            Field::InitSong,
            format!(
                "the song to start from is {have:.2} s long, shorter than the {song:.2} s being \
                 generated: it must cover every frame"
            ),
        ))
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
