//! The output formats a client can ask for. The type is the protocol's
//! [`protocol::job::AudioFormat`] (jobs carry the format a client asked for), re-exported here so
//! that callers of [`crate::transcode`] need one import and the two crates can never disagree on
//! the list of formats, their names, extensions or MIME types. This module adds
//! [`parse_format`], for callers that want a [`FormatError`] rather than `None` for a name that
//! is no format.

pub use protocol::job::AudioFormat;

use crate::error::FormatError;

/// Parses a format name as [`AudioFormat::parse`] does ("wav", "mp3", "ogg" or "opus"; "ogg"
/// and "opus" both mean Ogg/Opus; case-insensitive), failing with
/// [`FormatError::UnknownFormat`].
pub fn parse_format(name: &str) -> Result<AudioFormat, FormatError> {
    AudioFormat::parse(name).ok_or_else(|| FormatError::UnknownFormat(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_every_name_and_alias() {
        assert_eq!(parse_format("wav").unwrap(), AudioFormat::Wav);
        assert_eq!(parse_format("mp3").unwrap(), AudioFormat::Mp3);
        assert_eq!(parse_format("ogg").unwrap(), AudioFormat::Opus);
        assert_eq!(parse_format("opus").unwrap(), AudioFormat::Opus);
        assert_eq!(parse_format(" MP3 ").unwrap(), AudioFormat::Mp3);
        for bad in ["", "flac", "mp4", "..mp3"] {
            let err = parse_format(bad).unwrap_err();
            assert!(
                matches!(err, FormatError::UnknownFormat(ref s) if s == bad),
                "{bad}"
            );
        }
        assert_eq!(
            parse_format("flac").unwrap_err().to_string(),
            "unknown audio format \"flac\" (expected one of: wav, mp3, ogg, opus)"
        );
    }

    /// The contract this crate's output relies on (the bytes `transcode` returns for each format
    /// must be served under these names).
    #[test]
    fn extension_and_content_type() {
        let table: Vec<_> = AudioFormat::ALL
            .iter()
            .map(|f| (f.as_str(), f.extension(), f.content_type()))
            .collect();
        assert_eq!(
            table,
            [
                ("wav", "wav", "audio/wav"),
                ("mp3", "mp3", "audio/mpeg"),
                ("opus", "ogg", "audio/ogg"),
            ]
        );
        for f in AudioFormat::ALL {
            assert_eq!(parse_format(f.extension()).unwrap(), f);
            assert_eq!(parse_format(f.as_str()).unwrap(), f);
        }
    }

    #[test]
    fn serde_uses_lowercase_names() {
        for f in AudioFormat::ALL {
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.as_str()));
            assert_eq!(serde_json::from_str::<AudioFormat>(&json).unwrap(), f);
        }
        assert!(serde_json::from_str::<AudioFormat>("\"flac\"").is_err());
    }
}
