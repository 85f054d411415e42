//! Encoder settings an operator can put in the configuration (bitrates), with their defaults and
//! the checks that keep a bad value from reaching the encoders as a confusing library error.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use crate::error::FormatError;
use crate::format::AudioFormat;

/// The constant bitrates (kbps) an MPEG-1 Layer III stream (32, 44.1, 48 kHz) can have, which
/// are the ones LAME takes for CBR. At the MPEG-2 rates (16 to 24 kHz) and MPEG-2.5 rates (8 to
/// 12 kHz) only those up to 160 kbps exist.
pub const MP3_BITRATES_KBPS: [u32; 14] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];

/// The bitrates (kbps) libopus accepts (6 to 510 kbps).
pub const OPUS_KBPS_RANGE: RangeInclusive<u32> = 6..=510;

/// Bitrates used when encoding lossy formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncodeSettings {
    /// MP3 constant bitrate in kbps: one of [`MP3_BITRATES_KBPS`]. Default 192.
    pub mp3_kbps: u32,
    /// Opus target bitrate in kbps (VBR), within [`OPUS_KBPS_RANGE`]. Default 128.
    pub opus_kbps: u32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        EncodeSettings {
            mp3_kbps: 192,
            opus_kbps: 128,
        }
    }
}

impl EncodeSettings {
    /// Checks both bitrates (say, once when the configuration is loaded).
    pub fn validate(&self) -> Result<(), FormatError> {
        self.validate_for(AudioFormat::Mp3)?;
        self.validate_for(AudioFormat::Opus)
    }

    /// Checks the setting that `format` uses (none for WAV).
    pub fn validate_for(&self, format: AudioFormat) -> Result<(), FormatError> {
        match format {
            AudioFormat::Wav => Ok(()),
            AudioFormat::Mp3 if MP3_BITRATES_KBPS.contains(&self.mp3_kbps) => Ok(()),
            AudioFormat::Mp3 => Err(FormatError::InvalidBitrate {
                format,
                kbps: self.mp3_kbps,
                allowed: format!("expected one of the MP3 CBR bitrates {MP3_BITRATES_KBPS:?}"),
            }),
            AudioFormat::Opus if OPUS_KBPS_RANGE.contains(&self.opus_kbps) => Ok(()),
            AudioFormat::Opus => Err(FormatError::InvalidBitrate {
                format,
                kbps: self.opus_kbps,
                allowed: format!(
                    "expected {} to {} kbps",
                    OPUS_KBPS_RANGE.start(),
                    OPUS_KBPS_RANGE.end()
                ),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = EncodeSettings::default();
        assert_eq!((s.mp3_kbps, s.opus_kbps), (192, 128));
        s.validate().unwrap();
    }

    #[test]
    fn mp3_bitrates_come_from_the_standard_list() {
        for kbps in MP3_BITRATES_KBPS {
            let s = EncodeSettings {
                mp3_kbps: kbps,
                ..Default::default()
            };
            s.validate().unwrap();
        }
        for kbps in [0, 8, 31, 33, 100, 191, 193, 321, 384, u32::MAX] {
            let s = EncodeSettings {
                mp3_kbps: kbps,
                ..Default::default()
            };
            let err = s.validate().unwrap_err();
            assert!(
                matches!(err, FormatError::InvalidBitrate { format: AudioFormat::Mp3, kbps: k, .. } if k == kbps),
                "{kbps}: {err}"
            );
            // Only the MP3 setting is wrong: the other formats still validate.
            s.validate_for(AudioFormat::Opus).unwrap();
            s.validate_for(AudioFormat::Wav).unwrap();
        }
    }

    #[test]
    fn opus_bitrates_are_a_range() {
        for (kbps, ok) in [
            (5, false),
            (6, true),
            (64, true),
            (510, true),
            (511, false),
            (0, false),
        ] {
            let s = EncodeSettings {
                opus_kbps: kbps,
                ..Default::default()
            };
            assert_eq!(s.validate_for(AudioFormat::Opus).is_ok(), ok, "{kbps}");
            assert_eq!(s.validate().is_ok(), ok, "{kbps}");
        }
        let err = EncodeSettings {
            opus_kbps: 600,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid opus bitrate 600 kbps: expected 6 to 510 kbps"
        );
    }

    #[test]
    fn serde_fills_defaults_and_rejects_unknown_fields() {
        let s: EncodeSettings = serde_json::from_str(r#"{"mp3_kbps": 320}"#).unwrap();
        assert_eq!(
            s,
            EncodeSettings {
                mp3_kbps: 320,
                opus_kbps: 128
            }
        );
        assert!(serde_json::from_str::<EncodeSettings>(r#"{"mp3_bitrate": 320}"#).is_err());
    }
}
