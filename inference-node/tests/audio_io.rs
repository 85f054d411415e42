//! Decoding and resampling (`refrain_inference::audio`); the preprocessing of references and
//! the WAV output are in tests/audio_prep.rs.
//!
//! WAV inputs are generated with hound; the FLAC and MP3 inputs are tiny committed fixtures in
//! `tests/data/` (1 s of a 1 kHz sine, left at half scale and right at quarter scale, 44.1 kHz,
//! encoded with `flac -8 --no-padding` and `lame -b 96 --resample 44.1 --add-id3v2 --tt "A title"
//! --ta Artist`; the MP3 starts with an ID3v2 tag, as most real MP3s do).

#[path = "common/audio.rs"]
mod common_audio;

use std::path::Path;

use refrain_inference::audio::{self, AudioError};

use common_audio::*;

// ------------------------------------------------------------------------------------------
// Decoding
// ------------------------------------------------------------------------------------------

#[test]
fn decodes_wav_generated_with_hound() {
    let left = sine(1000.0, 44_100, 1.0, 0.5);
    let right = sine(1000.0, 44_100, 1.0, 0.25);
    let bytes = wav16(&[left.clone(), right], 44_100);
    let d = audio::decode(&bytes, Some("wav"), NO_LIMIT).unwrap();
    assert_eq!(d.frames(), 44_100);
    check_sine_fixture(&d, 0.0);
    // 16-bit quantisation only.
    for (a, b) in d.channels[0].iter().zip(&left) {
        assert!((a - b).abs() < 1.0 / 16_000.0);
    }
    // No hint, an unrelated hint and a dotted upper-case hint all work: the format is sniffed.
    for hint in [None, Some("mp3"), Some(".WAV")] {
        assert_eq!(audio::decode(&bytes, hint, NO_LIMIT).unwrap(), d);
    }
}

#[test]
fn decodes_flac_fixture() {
    let d = audio::decode_file(&data("sine_1khz_stereo_44100.flac"), NO_LIMIT).unwrap();
    assert_eq!(d.frames(), 44_100);
    check_sine_fixture(&d, 0.0);
    // Lossless: within rounding of the ideal sine the fixture was made from.
    let ideal = sine(1000.0, 44_100, 1.0, 0.5);
    for (a, b) in d.channels[0].iter().zip(&ideal) {
        assert!((a - b).abs() < 1.5 / 32768.0);
    }
    let bytes = std::fs::read(data("sine_1khz_stereo_44100.flac")).unwrap();
    assert_eq!(audio::decode(&bytes, None, NO_LIMIT).unwrap(), d);
}

#[test]
fn decodes_mp3_fixture() {
    let path = data("sine_1khz_stereo_44100.mp3");
    let d = audio::decode_file(&path, NO_LIMIT).unwrap();
    // The leading ID3v2 tag is skipped; LAME's encoder delay and padding are trimmed (gapless),
    // so the length is close to 1 s.
    check_sine_fixture(&d, 0.03);
    let bytes = std::fs::read(&path).unwrap();
    let from_memory = audio::decode(&bytes, None, NO_LIMIT).unwrap();
    assert_eq!(from_memory.frames(), d.frames());
}

#[test]
fn decodes_mono_and_float_wav() {
    let x = sine(440.0, 22_050, 0.5, 0.9);
    let d = audio::decode(&wav16(std::slice::from_ref(&x), 22_050), None, NO_LIMIT).unwrap();
    assert_eq!(
        (d.sample_rate, d.channels.len(), d.frames()),
        (22_050, 1, 11_025)
    );
    assert!((d.duration_seconds() - 0.5).abs() < 1e-12);

    // Float WAV: values beyond full scale pass through; non-finite samples are refused.
    let mut y = vec![0.25f32, -1.5, 0.0, 0.0, 0.5];
    y.resize(100, 0.0);
    let d = audio::decode(&wav_f32(std::slice::from_ref(&y), 8000), None, NO_LIMIT).unwrap();
    assert_eq!(&d.channels[0][..5], &[0.25, -1.5, 0.0, 0.0, 0.5]);
    y[2] = f32::NAN;
    y[3] = f32::INFINITY;
    let err = audio::decode(&wav_f32(&[y], 8000), None, NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::NonFinite(2)), "{err:?}");
}

#[test]
fn rejects_audio_longer_than_the_limit() {
    let bytes = wav16(&[sine(1000.0, 44_100, 1.0, 0.5)], 44_100);
    match audio::decode(&bytes, None, 0.5) {
        Err(AudioError::TooLong {
            max_seconds,
            decoded_seconds,
        }) => {
            assert_eq!(max_seconds, 0.5);
            assert!(decoded_seconds > 0.5);
        }
        other => panic!("expected TooLong, got {other:?}"),
    }
    // Exactly at the limit is fine.
    assert_eq!(audio::decode(&bytes, None, 1.0).unwrap().frames(), 44_100);
    let err = audio::decode_file(&data("sine_1khz_stereo_44100.flac"), 0.25).unwrap_err();
    assert!(matches!(err, AudioError::TooLong { .. }), "{err:?}");
    assert!(err.to_string().contains("too long"), "{err}");
}

#[test]
fn rejects_garbage_bytes() {
    let garbage = b"This is certainly not an audio file, just some text. ".repeat(200);
    let err = audio::decode(&garbage, Some("mp3"), NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::UnsupportedFormat(_)), "{err:?}");
    assert!(err.to_string().contains("unsupported"), "{err}");
}

#[test]
fn rejects_empty_input() {
    assert!(matches!(
        audio::decode(&[], None, NO_LIMIT),
        Err(AudioError::Empty)
    ));
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(
        audio::decode_file(&empty, NO_LIMIT),
        Err(AudioError::Empty)
    ));
    // A well-formed WAV with no samples.
    let bytes = wav16(&[Vec::new()], 44_100);
    let err = audio::decode(&bytes, None, NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::Empty), "{err:?}");
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn rejects_truncated_wav_header() {
    let bytes = wav16(&[sine(1000.0, 44_100, 0.1, 0.5)], 44_100);
    // Too short to recognise: not a known format.
    let err = audio::decode(&bytes[..4], Some("wav"), NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::UnsupportedFormat(_)), "{err:?}");
    // Recognised as RIFF/WAVE but the header ends early.
    for cut in [12, 20, 30, 40] {
        let err = audio::decode(&bytes[..cut], Some("wav"), NO_LIMIT).unwrap_err();
        assert!(
            matches!(err, AudioError::Undecodable(_)),
            "cut at {cut}: {err:?}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }
    // A complete header and no samples.
    let err = audio::decode(&bytes[..44], Some("wav"), NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::Empty), "{err:?}");
    // A truncated body still decodes what is there.
    let d = audio::decode(&bytes[..44 + 2 * 1000], Some("wav"), NO_LIMIT).unwrap();
    assert!(d.frames() <= 1000 && d.frames() > 0, "{}", d.frames());
}

#[test]
fn missing_file_is_an_io_error_naming_the_path() {
    let path = Path::new("/nonexistent/dir/reference.mp3");
    let err = audio::decode_file(path, NO_LIMIT).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }), "{err:?}");
    assert!(
        err.to_string().contains("/nonexistent/dir/reference.mp3"),
        "{err}"
    );
}

// ------------------------------------------------------------------------------------------
// Resampling
// ------------------------------------------------------------------------------------------

#[test]
fn resample_is_identity_when_rates_match() {
    let x = vec![sine(1000.0, 44_100, 0.1, 0.5), vec![0.1; 4410]];
    assert_eq!(audio::resample(&x, 44_100, 44_100).unwrap(), x);
    assert!(audio::resample(&[], 44_100, 24_000).unwrap().is_empty());
}

#[test]
fn resample_keeps_frequency_and_time_alignment() {
    // 48 kHz -> 44.1 kHz and 22.05 kHz -> 44.1 kHz (upsampling).
    for (from, to) in [
        (48_000, 44_100),
        (22_050, 44_100),
        (44_100, 24_000),
        (32_000, 24_000),
    ] {
        let x = sine(440.0, from, 0.5, 0.5);
        let y = audio::resample(std::slice::from_ref(&x), from, to).unwrap();
        assert_eq!(
            y[0].len(),
            (x.len() as f64 * f64::from(to) / f64::from(from)).ceil() as usize
        );
        let f = frequency(&y[0], to);
        assert!((f - 440.0).abs() < 1.0, "{from}->{to}: {f}");
        // No delay: the resampled sine matches the ideal one at the new rate (mid-signal).
        let ideal = sine(440.0, to, 0.5, 0.5);
        let n = y[0].len().min(ideal.len());
        for i in n / 4..3 * n / 4 {
            assert!((y[0][i] - ideal[i]).abs() < 1e-4, "{from}->{to} at {i}");
        }
    }
}

#[test]
fn resample_removes_content_above_the_new_nyquist() {
    // 15 kHz cannot exist at 24 kHz; it must be filtered, not aliased to 9 kHz.
    let x = sine(15_000.0, 44_100, 0.5, 0.5);
    let y = audio::resample(&[x], 44_100, 24_000).unwrap();
    let mid = &y[0][1200..y[0].len() - 1200];
    assert!(peak(mid) < 1e-5, "aliasing: peak {}", peak(mid));
}

#[test]
fn resample_rejects_bad_arguments() {
    let err = audio::resample(&[vec![0.0; 10]], 0, 24_000).unwrap_err();
    assert!(matches!(err, AudioError::Resample { .. }), "{err:?}");
    let err = audio::resample(&[vec![0.0; 10], vec![0.0; 9]], 44_100, 24_000).unwrap_err();
    assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
}
