//! A job's inputs that need neither the DiT nor the VAE — its lyrics as a token track and its
//! style embedding — computed apart from the generation, so that a node can prepare the next
//! job while the current one samples (see `crate::worker`).
//!
//! The lyric front end (G2P, the Mandarin polyphone model) and the style encoders belong to a
//! [`Preparer`], shared between the [`crate::pipeline::Generator`] (which uses it for a request
//! that comes without [`Prepared`] inputs) and the worker (which prepares the next job on
//! another thread while the generator runs). One lock serialises the two, so they never run
//! one encoder from two threads; the generator holds it only for its own preparation, never
//! while sampling or decoding. The style embedding of the next job may thus run on the device
//! while the current job's DiT runs: a few milliseconds of one small graph against seconds
//! of sampling, never an idle device between the two jobs.
//!
//! A [`Prepared`] remembers what it was made from (lyrics, prompt, length); the generator
//! prepares again when it does not match the request, so a stale preparation can cost time
//! but never change a song.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use refrain_model::lyrics::lrc::LyricsLimits;
use refrain_model::lyrics::{build_track, Lyrics};
use refrain_model::track::track_shape;

use crate::bundle::Bundle;
use crate::error::InferenceError;
use crate::lyrics::g2p::LineEncoder;
use crate::pipeline::GenerateRequest;
use crate::style::{StyleEncoder, StyleSource};

/// The lyric front end and the style encoders of one node. Cheap to clone (shared).
#[derive(Clone)]
pub struct Preparer {
    inner: Arc<Mutex<Parts>>,
}

pub(crate) struct Parts {
    pub(crate) bundle: Bundle,
    pub(crate) limits: LyricsLimits,
    pub(crate) lyrics: LineEncoder,
    pub(crate) style: StyleEncoder,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer").finish_non_exhaustive()
    }
}

/// A request's lyric track and style embedding, made ahead of its generation.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub(crate) lyrics: Lyrics,
    pub(crate) style: Vec<f32>,
    /// What it was made from.
    key: Key,
    /// How long preparing took.
    pub took: Duration,
}

#[derive(Debug, Clone, PartialEq)]
struct Key {
    lyrics: String,
    seconds: u32,
    /// The prompt; `None` for a recording (the worker matches those by job).
    prompt: Option<String>,
}

fn key_of(req: &GenerateRequest) -> Key {
    Key {
        lyrics: req.lyrics.clone(),
        seconds: req.seconds,
        prompt: match &req.style {
            StyleSource::Prompt(p) => Some(p.clone()),
            StyleSource::Audio(_) => None,
        },
    }
}

impl Prepared {
    /// Whether this was made from `req`'s lyrics, length and style prompt.
    pub fn matches(&self, req: &GenerateRequest) -> bool {
        self.key == key_of(req)
    }
}

impl Preparer {
    pub(crate) fn new(parts: Parts) -> Preparer {
        Preparer {
            inner: Arc::new(Mutex::new(parts)),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Parts> {
        // A panic under the lock leaves the encoders as they were between two calls.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The lyric track and the style embedding of `req` (blocking: run it off the async
    /// threads). Errors are the ones the generation itself would report.
    pub fn prepare(&self, req: &GenerateRequest) -> Result<Prepared, InferenceError> {
        let started = std::time::Instant::now();
        let mut parts = self.lock();
        let choice = parts
            .bundle
            .choose_model(req.seconds)
            .map_err(InferenceError::InvalidRequest)?;
        if let StyleSource::Prompt(p) = &req.style {
            StyleEncoder::validate_prompt(p)?;
        }
        let shape = track_shape(&parts.bundle, choice, req.seconds);
        let lyrics = build_track(&parts.lyrics, &req.lyrics, shape, &parts.limits)?;
        let style = parts.style.embed(&req.style)?;
        Ok(Prepared {
            lyrics,
            style,
            key: key_of(req),
            took: started.elapsed(),
        })
    }
}
