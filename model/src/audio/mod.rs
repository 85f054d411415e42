//! Audio in and out of the pipeline: decoding user-supplied reference audio, resampling, the two
//! reference preprocessing paths, and the final 16-bit WAV.
//!
//! Why this module exists: DiffRhythm touches raw audio in exactly three places, and each has a
//! precise recipe in the reference implementation (DiffRhythm's `infer/infer_utils.py`)
//! that the Rust port has to reproduce without Python, librosa or torchaudio:
//!
//! * **Style reference** (§3, `get_style_prompt(wav_path)`): the uploaded song must last at least
//!   10 s; a 10 s window starting at `floor(duration/2) - 5` s is loaded as 24 kHz mono and fed to
//!   MuQ-MuLan. See [`style_clip`].
//! * **Edit-mode reference song** (§1.4, `get_reference_latent`): resampled to 44.1 kHz, forced to
//!   stereo and peak-normalised to −6 dBFS before the VAE encoder. See [`reference_song`].
//! * **Output** (§6.4): the decoded song is divided by its global peak (over all samples of both
//!   channels), clamped, scaled by 32767, truncated to `i16` and saved as a 44.1 kHz stereo WAV.
//!   See [`peak_normalise_to_i16`], [`write_wav_i16`] and [`wav_bytes_i16`]. When several variants
//!   are generated, call [`peak_normalise_to_i16`] once per variant: the reference normalises every
//!   output on its own peak.
//!
//! Decoding is done with symphonia (WAV, MP3, FLAC; the container is sniffed from the bytes, a
//! file extension is only a hint), resampling with rubato, WAV writing with hound. One file per
//! step: `decode` (bytes to [`Decoded`]), `resample` (rate conversion, also used by
//! `refrain-formats` through [`new_resampler`]), `reference` (the two reference preprocessing
//! paths) and `wav` (output normalisation and WAV writing). Everything is re-exported here, so
//! callers name `audio::decode`, `audio::resample`, ... whatever file it lives in.
//!
//! # Where this deviates from the reference
//!
//! * **Resampler.** The reference resamples with librosa (`soxr_hq`, style path) and
//!   `torchaudio.transforms.Resample` (windowed sinc, edit path). Here both use rubato: the
//!   synchronous FFT resampler (`rubato::Fft`, Blackman-Harris² window, delay removed exactly)
//!   for every rate pair whose reduced ratio `rate / gcd` is at most 131072 on both sides (which,
//!   for the 24 kHz and 44.1 kHz targets, is every source rate up to 131072 Hz and every common
//!   higher rate), and rubato's asynchronous windowed-sinc resampler (256 taps, cubic
//!   interpolation) for the remaining exotic pairs; that fallback may be offset by a fraction of
//!   a sample. Both are band-limited and high quality, but the samples are not bit-identical to
//!   soxr's or torchaudio's; expect differences near the filter transition band and in the
//!   first/last few milliseconds (edge handling).
//! * **Style clip duration.** The reference takes the duration of an MP3 from `mutagen` (header
//!   estimate) and of WAV/FLAC from the file header; here it is always the decoded frame count
//!   divided by the sample rate (with gapless trimming of encoder delay/padding for MP3). The
//!   crop offset `floor(duration/2) - seconds/2` is computed, as in the reference, on that
//!   original-rate duration, and the crop is taken at the original rate before resampling
//!   (librosa's `offset`/`duration` semantics), then padded/truncated to exactly
//!   `seconds * sample_rate` samples.
//! * **Non-finite samples.** Input audio with NaN or infinite samples (possible in float WAVs)
//!   is refused when decoding ([`AudioError::NonFinite`]): the reference would carry them into
//!   the style embedding or the edit latents. Output samples that are not finite (a broken
//!   model) are ignored for the peak and written as 0 by [`peak_normalise_to_i16`]. A silent song (peak 0) is written as zeros; the reference would
//!   divide by zero. A silent edit-mode reference is an error ([`AudioError::Silent`]).
//! * **Float sources are not clipped.** Decoded samples are nominally in `[-1, 1]`; a float WAV may
//!   exceed that range and is passed through unchanged, as librosa/torchaudio do.
//! * **Limits.** [`decode`] stops and fails with [`AudioError::TooLong`] as soon as more than
//!   `max_seconds` have been decoded, and rejects streams with more than [`MAX_CHANNELS`] channels
//!   or a sample rate above [`MAX_SAMPLE_RATE`], to bound memory. Truncated streams decode up to
//!   the truncation point; undecodable packets in the middle of a stream are skipped (as media
//!   players do).

mod decode;
mod reference;
mod resample;
mod wav;

use std::io;
use std::path::{Path, PathBuf};

pub use decode::{decode, decode_file};
pub use reference::{reference_song, style_clip};
pub use resample::{new_resampler, resample, FFT_RESAMPLER_MAX_BLOCK};
pub use wav::{peak_normalise_to_i16, wav_bytes_i16, write_wav_i16};

/// Sample rate of the VAE (input of the encoder, output of the decoder), in Hz.
pub const VAE_SAMPLE_RATE: u32 = 44_100;
/// Sample rate MuQ-MuLan expects for the audio style prompt, in Hz.
pub const STYLE_SAMPLE_RATE: u32 = 24_000;
/// Length of the style reference clip, in seconds.
pub const STYLE_CLIP_SECONDS: u32 = 10;
/// Peak level of the edit-mode reference song after normalisation, in dBFS.
pub const REFERENCE_PEAK_DBFS: f32 = -6.0;
/// Streams with more channels than this are rejected by [`decode`] (memory bound).
pub const MAX_CHANNELS: usize = 16;
/// Streams with a higher sample rate than this (in Hz) are rejected by [`decode`].
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// Everything that can go wrong while reading, converting or writing audio.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The bytes are not a recognised container, or the codec is not supported.
    #[error("unsupported or unrecognised audio format (WAV, MP3 and FLAC are accepted): {0}")]
    UnsupportedFormat(String),
    /// The container was recognised but the data could not be decoded.
    #[error("the audio data could not be decoded: {0}")]
    Undecodable(String),
    /// The container holds no audio track.
    #[error("the file contains no audio track")]
    NoAudioTrack,
    /// No input bytes, or no audio samples in the stream.
    #[error("the audio is empty (no samples)")]
    Empty,
    /// Shorter than a required minimum.
    #[error(
        "the audio is too short: at least {needed_seconds:.2} s are needed, it lasts {actual_seconds:.2} s"
    )]
    TooShort {
        needed_seconds: f64,
        actual_seconds: f64,
    },
    /// Longer than the caller's limit; decoding stopped at `decoded_seconds`.
    #[error(
        "the audio is too long: at most {max_seconds:.2} s are accepted, it lasts at least {decoded_seconds:.2} s"
    )]
    TooLong {
        max_seconds: f64,
        decoded_seconds: f64,
    },
    /// Some samples are NaN or infinite.
    #[error("the audio has {0} samples that are not numbers (NaN or infinite)")]
    NonFinite(usize),
    /// All samples are zero, so the audio cannot be peak-normalised.
    #[error("the audio is silent (every sample is zero), so it cannot be peak-normalised")]
    Silent,
    /// A file system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The resampler could not be built or failed.
    #[error("resampling from {from} Hz to {to} Hz failed: {reason}")]
    Resample { from: u32, to: u32, reason: String },
    /// WAV encoding failed (in memory).
    #[error("WAV encoding failed: {0}")]
    Encode(String),
    /// The caller passed inconsistent arguments (a programming error, not a user error).
    #[error("invalid audio argument: {0}")]
    InvalidArgument(String),
}

impl AudioError {
    fn io(path: &Path, source: io::Error) -> Self {
        AudioError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Decoded audio: planar `f32` samples, one vector per channel, all of the same length.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub sample_rate: u32,
    pub channels: Vec<Vec<f32>>,
}

impl Decoded {
    /// Duration in seconds (`frames / sample_rate`; 0 when the rate is 0).
    pub fn duration_seconds(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// Number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// Checks the invariants other functions rely on and returns the frame count.
    fn checked_frames(&self) -> Result<usize, AudioError> {
        if self.sample_rate == 0 {
            return Err(AudioError::InvalidArgument("sample rate is 0".into()));
        }
        let frames = self.frames();
        if let Some(bad) = self.channels.iter().position(|c| c.len() != frames) {
            return Err(AudioError::InvalidArgument(format!(
                "channel {bad} has {} samples, channel 0 has {frames}",
                self.channels[bad].len()
            )));
        }
        if frames == 0 {
            return Err(AudioError::Empty);
        }
        Ok(frames)
    }
}

/// Largest finite absolute value (0 when there is none).
fn finite_peak<'a>(samples: impl Iterator<Item = &'a f32>) -> f32 {
    samples
        .filter(|x| x.is_finite())
        .fold(0.0f32, |peak, &x| peak.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoded_helpers() {
        let d = Decoded {
            sample_rate: 0,
            channels: vec![vec![0.0; 10]],
        };
        assert_eq!(d.duration_seconds(), 0.0);
        assert!(matches!(
            d.checked_frames(),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: vec![vec![0.0; 10], vec![0.0; 9]],
        };
        assert_eq!(d.frames(), 10);
        assert!(matches!(
            d.checked_frames(),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: Vec::new(),
        };
        assert_eq!(d.frames(), 0);
        assert!(matches!(d.checked_frames(), Err(AudioError::Empty)));
    }

    /// A float WAV with a NaN and an infinity is refused, not silently zeroed.
    #[test]
    fn non_finite_samples_are_refused() {
        let mut bytes = Vec::new();
        {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut w = hound::WavWriter::new(std::io::Cursor::new(&mut bytes), spec).unwrap();
            for i in 0..8000 {
                let x = match i {
                    100 => f32::NAN,
                    200 => f32::INFINITY,
                    _ => 0.1,
                };
                w.write_sample(x).unwrap();
            }
            w.finalize().unwrap();
        }
        let err = decode(&bytes, Some("wav"), 60.0).unwrap_err();
        assert!(matches!(err, AudioError::NonFinite(2)), "{err:?}");
        assert!(err.to_string().contains("2 samples"), "{err}");
    }

    #[test]
    fn invalid_limits_and_arguments_are_reported() {
        let err = decode(b"RIFF", None, f64::NAN).unwrap_err();
        assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
        let err = decode(b"RIFF", None, -1.0).unwrap_err();
        assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
        assert!(matches!(
            wav_bytes_i16(&[], 0, 44_100),
            Err(AudioError::InvalidArgument(_))
        ));
        assert!(matches!(
            wav_bytes_i16(&[], 2, 0),
            Err(AudioError::InvalidArgument(_))
        ));
        let d = Decoded {
            sample_rate: 8000,
            channels: vec![vec![0.0; 100_000]],
        };
        assert!(matches!(
            style_clip(&d, 0, 10),
            Err(AudioError::InvalidArgument(_))
        ));
    }
}
