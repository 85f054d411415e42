//! Bad input and bad settings give errors, never panics, for every format; WAV passes through
//! unchanged once validated.

mod common;

use common::*;
use refrain_formats::{transcode, AudioFormat, EncodeSettings, FormatError};

fn spec(channels: u16, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: 44_100,
        bits_per_sample: bits,
        sample_format: format,
    }
}

#[test]
fn wav_passes_through_unchanged() {
    let wav = sine_wav(44_100, &[440.0, 880.0], 0.5);
    let out = transcode(&wav, AudioFormat::Wav, &EncodeSettings::default()).unwrap();
    assert_eq!(out, wav);
    // Bitrates do not matter for WAV.
    let odd = EncodeSettings {
        mp3_kbps: 1,
        opus_kbps: 1,
    };
    assert_eq!(transcode(&wav, AudioFormat::Wav, &odd).unwrap(), wav);
}

#[test]
fn garbage_and_empty_input_are_invalid_wav() {
    let inputs: [&[u8]; 4] = [
        b"",
        b"not a wav file at all",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",
        &[0u8; 1000],
    ];
    for format in AudioFormat::ALL {
        for input in inputs {
            let err = transcode(input, format, &EncodeSettings::default()).unwrap_err();
            assert!(
                matches!(err, FormatError::InvalidWav(_)),
                "{format:?}, {} bytes: {err}",
                input.len()
            );
        }
    }
}

#[test]
fn truncated_wav_is_an_error_at_every_cut() {
    let wav = sine_wav(44_100, &[440.0, 880.0], 0.05);
    for format in AudioFormat::ALL {
        // Every cut inside the header and a spread of cuts inside the data.
        let cuts = (0..60).chain((60..wav.len()).step_by(97));
        for cut in cuts {
            let result = transcode(&wav[..cut], format, &EncodeSettings::default());
            let err = result.expect_err(&format!("{format:?}: cut at {cut} accepted"));
            assert!(
                matches!(err, FormatError::InvalidWav(_) | FormatError::NoAudio),
                "{format:?}, cut at {cut}: {err}"
            );
        }
    }
}

#[test]
fn unsupported_sample_formats() {
    let cases = [
        (spec(2, 24, hound::SampleFormat::Int), "24-bit PCM"),
        (
            spec(2, 32, hound::SampleFormat::Float),
            "32-bit floating-point",
        ),
        (spec(1, 8, hound::SampleFormat::Int), "8-bit PCM"),
        (spec(3, 16, hound::SampleFormat::Int), "3 channels"),
    ];
    for format in AudioFormat::ALL {
        for (spec, what) in cases {
            let wav = silent_wav(spec, 100);
            let err = transcode(&wav, format, &EncodeSettings::default()).unwrap_err();
            assert!(
                matches!(err, FormatError::UnsupportedWav(ref m) if m.contains(what)),
                "{format:?}, {what}: {err}"
            );
        }
    }
}

/// A WAV with no sample frames is refused for every format (documented on `transcode`).
#[test]
fn zero_length_wav_is_no_audio() {
    let wav = silent_wav(spec(2, 16, hound::SampleFormat::Int), 0);
    assert_eq!(wav.len(), 44);
    for format in AudioFormat::ALL {
        let err = transcode(&wav, format, &EncodeSettings::default()).unwrap_err();
        assert!(matches!(err, FormatError::NoAudio), "{format:?}: {err}");
        assert_eq!(
            err.to_string(),
            "the WAV file holds no audio (0 sample frames)"
        );
    }
}

#[test]
fn invalid_bitrates_are_refused_before_encoding() {
    let wav = sine_wav(44_100, &[440.0, 880.0], 0.2);
    for (settings, format, kbps) in [
        (
            EncodeSettings {
                mp3_kbps: 100,
                opus_kbps: 128,
            },
            AudioFormat::Mp3,
            100,
        ),
        (
            EncodeSettings {
                mp3_kbps: 0,
                opus_kbps: 128,
            },
            AudioFormat::Mp3,
            0,
        ),
        (
            EncodeSettings {
                mp3_kbps: 384,
                opus_kbps: 128,
            },
            AudioFormat::Mp3,
            384,
        ),
        (
            EncodeSettings {
                mp3_kbps: 192,
                opus_kbps: 5,
            },
            AudioFormat::Opus,
            5,
        ),
        (
            EncodeSettings {
                mp3_kbps: 192,
                opus_kbps: 511,
            },
            AudioFormat::Opus,
            511,
        ),
    ] {
        let err = transcode(&wav, format, &settings).unwrap_err();
        assert!(
            matches!(err, FormatError::InvalidBitrate { format: f, kbps: k, .. } if f == format && k == kbps),
            "{format:?} {kbps}: {err}"
        );
        // Checked before the input is even read.
        let err = transcode(b"junk", format, &settings).unwrap_err();
        assert!(matches!(err, FormatError::InvalidBitrate { .. }), "{err}");
    }
    let err = transcode(
        &wav,
        AudioFormat::Mp3,
        &EncodeSettings {
            mp3_kbps: 100,
            opus_kbps: 128,
        },
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid mp3 bitrate 100 kbps: expected one of"),
        "{err}"
    );
}
