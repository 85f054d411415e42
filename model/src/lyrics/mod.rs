//! Lyrics: from an LRC file to the frame-aligned token track the DiT reads.
//!
//! [`lrc`] parses timestamps, [`g2p`] turns text into phonemes, [`vocab`] maps phonemes to the
//! bundle's token ids, and [`placement`] puts each line's tokens on latent frames exactly as the
//! reference `get_lrc_token` does. [`structure`] times lyrics that have section markers but no
//! timestamps.

pub mod g2p;
pub mod lrc;
pub mod placement;
pub mod structure;
pub mod vocab;

use thiserror::Error;

/// Everything that can be wrong with lyrics or the lyric vocabulary.
#[derive(Debug, Error)]
pub enum LyricsError {
    /// A line of the LRC text could not be used; `line` is 1-based.
    #[error("lyrics line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    /// The lyrics are larger than the configured limits.
    #[error("lyrics too long: {0}")]
    TooLong(String),
    /// Text in a language the bundle or the G2P does not support.
    #[error("unsupported language {language:?} in {text:?}: supported are {supported}")]
    UnsupportedLanguage {
        language: String,
        text: String,
        supported: String,
    },
    /// Text the G2P cannot turn into phonemes: no letters at all (empty, digits, punctuation),
    /// or a number too large to spell. The reference raises on the same texts.
    #[error("cannot pronounce {text:?}: {reason}")]
    Unpronounceable { text: String, reason: String },
    /// The phonemizer (espeak-ng) failed.
    #[error("phonemizer: {0}")]
    Phonemizer(String),
    /// The Mandarin polyphone model failed to run (not the lyrics' fault).
    #[error("polyphone model: {0}")]
    Polyphone(String),
    /// The vocabulary file is missing or malformed.
    #[error("vocabulary {path}: {reason}")]
    Vocab { path: String, reason: String },
}

use g2p::LineEncoder;
use lrc::{LyricsLimits, Skipped};
use placement::{EncodedLine, LyricTrack};

/// How the lyric track of one song is laid out.
#[derive(Debug, Clone, Copy)]
pub struct TrackShape {
    /// The requested length in seconds (95 for the base model); lines at or after it are dropped.
    pub length_seconds: u32,
    /// Frames N of the song.
    pub frames: usize,
    /// The base model's rule.
    pub drop_last_line: bool,
    pub sample_rate: u32,
    pub hop: usize,
}

/// The lyric track of a song and every line that was not used, with the reason.
#[derive(Debug, Clone)]
pub struct Lyrics {
    pub track: LyricTrack,
    pub skipped: Vec<Skipped>,
}

/// LRC (or plain) text to the frame-aligned token track: parse, phonemise, place.
///
/// Lines without anything singable (digits or punctuation only) are skipped with a reason, as
/// are metadata and blank lines; text in an unsupported language is an error naming the line.
/// An empty text gives an all-pad track (an instrumental), as in the reference.
pub fn build_track(
    encoder: &LineEncoder,
    text: &str,
    shape: TrackShape,
    limits: &LyricsLimits,
) -> Result<Lyrics, LyricsError> {
    let parsed = lrc::parse(text, limits)?;
    let mut skipped = parsed.skipped;
    let timed: Vec<(usize, f64, &str)> = if parsed.plain.is_empty() {
        parsed
            .lines
            .iter()
            .map(|l| (l.line_no, l.seconds, l.text.as_str()))
            .collect()
    } else {
        let starts = placement::spread_evenly(parsed.plain.len(), shape.length_seconds as f64);
        parsed
            .plain
            .iter()
            .zip(starts)
            .map(|((n, t), s)| (*n, s, t.as_str()))
            .collect()
    };
    let mut encoded = Vec::with_capacity(timed.len());
    for (line_no, seconds, text) in timed {
        if seconds >= shape.length_seconds as f64 {
            // Not encoded at all: placement drops it and says why.
            encoded.push(EncodedLine {
                line_no,
                seconds,
                tokens: Vec::new(),
            });
            continue;
        }
        match encoder.encode(text) {
            Ok(tokens) => encoded.push(EncodedLine {
                line_no,
                seconds,
                tokens,
            }),
            Err(LyricsError::Unpronounceable { reason, .. }) => skipped.push(Skipped {
                line_no,
                reason: format!("nothing to sing: {reason}"),
            }),
            Err(LyricsError::BadLine { reason, .. }) => {
                return Err(LyricsError::BadLine {
                    line: line_no,
                    reason,
                })
            }
            Err(e @ LyricsError::Polyphone(_)) => return Err(e),
            Err(e) => {
                return Err(LyricsError::BadLine {
                    line: line_no,
                    reason: e.to_string(),
                })
            }
        }
    }
    let track = placement::place(
        &encoded,
        shape.length_seconds as f64,
        shape.frames,
        shape.drop_last_line,
        shape.sample_rate,
        shape.hop,
    );
    skipped.sort_by_key(|s| s.line_no);
    Ok(Lyrics { track, skipped })
}
