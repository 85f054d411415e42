//! The lyric track of a request, built without running any model: admission checks lyrics with
//! it ([`lyric_track`]), the node builds the DiT's token track with the same code
//! ([`track_shape`] + [`crate::lyrics::build_track`]), and `refrain lyrics` prints it.

use std::path::Path;

use crate::bundle::{Bundle, ModelChoice};
use crate::lyrics::g2p::LineEncoder;
use crate::lyrics::lrc::LyricsLimits;
use crate::lyrics::vocab::Vocab;
use crate::lyrics::{build_track, Lyrics, TrackShape};
use crate::ModelError;

/// Loads the line encoder (vocabulary + G2P) of a bundle, or of an explicit vocabulary file.
pub fn line_encoder(bundle: &Bundle, vocab: Option<&Path>) -> Result<LineEncoder, ModelError> {
    let path = vocab
        .map(Path::to_path_buf)
        .unwrap_or_else(|| bundle.file(&bundle.manifest.lyrics.vocab));
    let vocab = Vocab::load(&path)?;
    Ok(LineEncoder::new(vocab, &bundle.manifest.lyrics.languages)?)
}

/// The lyric track a request would get, without running any model (`refrain lyrics`).
pub fn lyric_track(
    bundle: &Bundle,
    encoder: &LineEncoder,
    lyrics: &str,
    seconds: u32,
    limits: &LyricsLimits,
) -> Result<Lyrics, ModelError> {
    let choice = bundle
        .choose_model(seconds)
        .map_err(ModelError::InvalidRequest)?;
    Ok(build_track(
        encoder,
        lyrics,
        track_shape(bundle, choice, seconds),
        limits,
    )?)
}

/// How the lyric track of a song of `seconds` on the chosen DiT is laid out.
pub fn track_shape(bundle: &Bundle, choice: ModelChoice, seconds: u32) -> TrackShape {
    TrackShape {
        length_seconds: seconds,
        frames: choice.frames,
        drop_last_line: bundle.manifest.dit[choice.dit].drop_last_line,
        sample_rate: bundle.manifest.audio.sample_rate,
        hop: bundle.manifest.audio.hop,
    }
}
