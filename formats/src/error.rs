//! The one error type of the crate, so that callers (the orchestrator's download endpoint) can
//! tell a client's mistake (unknown format, bad bitrate) from a broken input or an encoder fault.

use crate::format::AudioFormat;

/// Why a transcode (or parsing a format name, or validating settings) failed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The name is none of "wav", "mp3", "ogg", "opus" (see [`crate::parse_format`]).
    #[error("unknown audio format {0:?} (expected one of: wav, mp3, ogg, opus)")]
    UnknownFormat(String),

    /// The configured bitrate is not one the encoder takes.
    #[error("invalid {} bitrate {kbps} kbps: {allowed}", .format.as_str())]
    InvalidBitrate {
        format: AudioFormat,
        kbps: u32,
        /// What would have been accepted.
        allowed: String,
    },

    /// The input is not a readable WAV file (bad header, truncated data, ...).
    #[error("the input is not a readable WAV file: {0}")]
    InvalidWav(String),

    /// The input is a WAV file, but not one this crate encodes (not 16-bit PCM, more than two
    /// channels, ...).
    #[error("unsupported WAV file: {0}")]
    UnsupportedWav(String),

    /// The WAV file is valid but holds no sample frames.
    #[error("the WAV file holds no audio (0 sample frames)")]
    NoAudio,

    /// The encoder for `format` cannot take audio at this sample rate.
    #[error("{} cannot encode audio at {rate} Hz ({allowed})", .format.as_str())]
    UnsupportedSampleRate {
        format: AudioFormat,
        rate: u32,
        /// What would have been accepted.
        allowed: &'static str,
    },

    /// The resampler (Opus path) failed.
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },

    /// The encoder library reported an error.
    #[error("the {} encoder failed: {reason}", .format.as_str())]
    Encoder { format: AudioFormat, reason: String },
}

impl FormatError {
    pub(crate) fn encoder(format: AudioFormat, reason: impl std::fmt::Display) -> Self {
        FormatError::Encoder {
            format,
            reason: reason.to_string(),
        }
    }
}
