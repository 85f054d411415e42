//! Encoding finished songs into the output formats clients ask for.
//!
//! The inference nodes produce every song as a 16-bit PCM WAV (44.1 kHz stereo, up to 4 min
//! 45 s). Clients may ask for something smaller to download or stream: this crate turns that WAV
//! into the requested [`AudioFormat`] (the protocol's type, re-exported) with one call,
//! [`transcode`]:
//!
//! * **WAV** — the input is validated and returned unchanged.
//! * **MP3** — LAME 3.100 (bundled source, `mp3lame-encoder`), constant bitrate
//!   ([`EncodeSettings::mp3_kbps`], 192 kbps by default), at the input's sample rate, with a
//!   LAME/Info tag in the first frame so that players trim the encoder delay and padding
//!   (gapless, exact duration).
//! * **Opus** — libopus (bundled source, `opus`) in an Ogg container written per RFC 7845:
//!   the audio is resampled to 48 kHz with rubato (Opus has no 44.1 kHz mode), cut into 20 ms
//!   frames, and the stream's pre-skip and final granule position make decoders play back
//!   exactly the original samples ([`EncodeSettings::opus_kbps`], 128 kbps VBR by default).
//!
//! Everything runs on the calling thread and streams through the WAV samples, so memory stays
//! near the size of the input plus the output; a 285 s song takes a few seconds of CPU in a
//! release build. Callers in async code should run [`transcode`] on a blocking thread.
//!
//! A WAV without any sample frames is refused with [`FormatError::NoAudio`] for every format
//! (an empty song is a bug upstream, and an MP3 or Ogg file without audio is something many
//! players reject).

mod error;
mod format;
mod mp3;
mod ogg_mux;
mod opus_encode;
mod resample;
mod settings;
mod wav;

pub use error::FormatError;
pub use format::{parse_format, AudioFormat};
pub use settings::{EncodeSettings, MP3_BITRATES_KBPS, OPUS_KBPS_RANGE};

/// Encodes a 16-bit PCM WAV file (1 or 2 channels) into `format`.
///
/// Returns the bytes of the encoded file: the input itself for [`AudioFormat::Wav`] (after
/// checking that it is a readable 16-bit PCM WAV with at least one sample frame), an MP3 file
/// for [`AudioFormat::Mp3`], an Ogg Opus file for [`AudioFormat::Opus`].
///
/// Fails, without panicking, on an unreadable, truncated or unsupported WAV, on a WAV with no
/// sample frames, on settings that [`EncodeSettings::validate`] rejects for `format`, and on a
/// sample rate the encoder cannot take (MP3: the nine MPEG rates from 8 to 48 kHz; Opus: any
/// rate from 8 to 192 kHz, resampled to 48 kHz).
pub fn transcode(
    wav: &[u8],
    format: AudioFormat,
    settings: &EncodeSettings,
) -> Result<Vec<u8>, FormatError> {
    settings.validate_for(format)?;
    let input = wav::WavInput::open(wav)?;
    match format {
        AudioFormat::Wav => {
            input.validate_samples()?;
            Ok(wav.to_vec())
        }
        AudioFormat::Mp3 => mp3::encode(input, settings.mp3_kbps),
        AudioFormat::Opus => opus_encode::encode(input, settings.opus_kbps),
    }
}
