//! The lyric track of a request, built without running any model: admission checks lyrics with
//! it ([`lyric_track`]), the node builds the DiT's token track with the same code
//! ([`track_shape`] + [`crate::lyrics::build_track`]), and `refrain lyrics` prints it.

use std::path::Path;
use std::sync::Arc;

use crate::bundle::{Bundle, ModelChoice};
use crate::lyrics::g2p::mandarin::{MandarinData, PolyphoneModel};
use crate::lyrics::g2p::{LineEncoder, MandarinG2p};
use crate::lyrics::lrc::LyricsLimits;
use crate::lyrics::vocab::Vocab;
use crate::lyrics::{build_track, Lyrics, TrackShape};
use crate::ModelError;

/// Loads the line encoder (vocabulary + G2P) of a bundle, or of an explicit vocabulary file.
/// Mandarin polyphones take their lexicon reading (no polyphone model: admission's case).
pub fn line_encoder(bundle: &Bundle, vocab: Option<&Path>) -> Result<LineEncoder, ModelError> {
    line_encoder_with(bundle, vocab, None, None)
}

/// [`line_encoder`] with an explicit Mandarin data directory (which also enables "zh") and the
/// polyphone model to decide polyphonic characters with.
pub fn line_encoder_with(
    bundle: &Bundle,
    vocab: Option<&Path>,
    mandarin: Option<&Path>,
    polyphone: Option<Arc<dyn PolyphoneModel>>,
) -> Result<LineEncoder, ModelError> {
    let lyrics = &bundle.manifest.lyrics;
    let path = vocab
        .map(Path::to_path_buf)
        .unwrap_or_else(|| bundle.file(&lyrics.vocab));
    let vocab = Vocab::load(&path)?;
    let mut languages = lyrics.languages.clone();
    let dir = match mandarin {
        Some(dir) => {
            if !languages.iter().any(|l| l == "zh") {
                languages.push("zh".into());
            }
            Some(dir.to_path_buf())
        }
        None => lyrics.mandarin.as_ref().map(|d| bundle.file(d)),
    };
    let g2p = match dir {
        Some(dir) if languages.iter().any(|l| l == "zh") => {
            Some(MandarinG2p::new(MandarinData::load(&dir)?, polyphone))
        }
        _ => None,
    };
    Ok(LineEncoder::with_mandarin(vocab, &languages, g2p)?)
}

/// The polyphone model file of a bundle's (or an explicit) Mandarin data directory, if it has
/// one.
pub fn polyphone_model_file(
    bundle: &Bundle,
    mandarin: Option<&Path>,
) -> Option<std::path::PathBuf> {
    let dir = match mandarin {
        Some(d) => d.to_path_buf(),
        None => bundle.file(bundle.manifest.lyrics.mandarin.as_ref()?),
    };
    let data = MandarinData::load(&dir).ok()?;
    data.poly.as_ref()?.model.clone()
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
