//! The DiffRhythm model contract without its runtime: everything both the service's admission
//! (which refuses bad requests with 400 before they become jobs) and the inference nodes (which
//! run them on ONNX Runtime) need to agree on, without linking ONNX Runtime.
//!
//! * [`bundle`] — the `bundle.toml` manifest and which DiT serves a song length;
//! * [`lyrics`] — LRC parsing, G2P (espeak-ng), the vocabulary and frame placement;
//! * [`track`] — the lyric track of a request ([`track::line_encoder`], [`track::lyric_track`]);
//! * [`prompt`] — style prompt checks, including the text tokenizer's token limit
//!   ([`prompt::PromptTokenizer::check`]);
//! * [`edit`] — the `edit_segments` parser ([`edit::parse_edit_segments`]);
//! * [`audio`] — decoding, resampling and WAV writing.

pub mod audio;
pub mod bundle;
pub mod edit;
pub mod error;
pub mod lyrics;
pub mod prompt;
pub mod track;

pub use error::ModelError;

/// Most variants one request may ask for (`batch_infer_num`; the reference scripts use 5).
pub const MAX_VARIANTS: usize = 5;
