//! Reference preprocessing (the style clip, the edit-mode reference song) and the WAV output
//! (`refrain_inference::audio`), against the reference's own steps.

#[path = "common/audio.rs"]
mod common_audio;

use std::io::Cursor;

use refrain_inference::audio::{
    self, AudioError, Decoded, REFERENCE_PEAK_DBFS, STYLE_CLIP_SECONDS, STYLE_SAMPLE_RATE,
    VAE_SAMPLE_RATE,
};

use common_audio::*;

// ------------------------------------------------------------------------------------------
// Style clip
// ------------------------------------------------------------------------------------------

/// A 24 kHz ramp whose sample `n` holds `n * 2^-20` (exact in f32 for n < 2^24).
fn exact_ramp(seconds: f64, rate: u32) -> Vec<f32> {
    let n = (seconds * f64::from(rate)).round() as usize;
    (0..n).map(|i| i as f32 / (1 << 20) as f32).collect()
}

#[test]
fn style_clip_crops_around_the_middle_like_the_reference() {
    // duration -> expected start second: floor(duration / 2) - 5.
    for (duration, start) in [(25.0, 7usize), (10.0, 0), (11.9, 0), (12.0, 1), (30.5, 10)] {
        let d = Decoded {
            sample_rate: 24_000,
            channels: vec![exact_ramp(duration, 24_000)],
        };
        let clip = audio::style_clip(&d, STYLE_SAMPLE_RATE, STYLE_CLIP_SECONDS).unwrap();
        assert_eq!(clip.len(), 240_000, "duration {duration}");
        let first = start * 24_000;
        assert_eq!(clip[0], d.channels[0][first], "duration {duration}");
        assert_eq!(
            clip[239_999],
            d.channels[0][first + 239_999],
            "duration {duration}"
        );
    }
}

#[test]
fn style_clip_mixes_to_mono_and_resamples_after_cropping() {
    // 44.1 kHz stereo, 25 s: left is a ramp t/32 (t in seconds), right is silent, so the mono
    // mix is t/64. The crop starts at floor(12.5) - 5 = 7 s.
    let rate = 44_100;
    let n = 25 * rate as usize;
    let left: Vec<f32> = (0..n).map(|i| i as f32 / rate as f32 / 32.0).collect();
    let d = Decoded {
        sample_rate: rate,
        channels: vec![left, vec![0.0; n]],
    };
    assert_eq!(d.duration_seconds(), 25.0);
    let clip = audio::style_clip(&d, 24_000, 10).unwrap();
    assert_eq!(clip.len(), 240_000);
    // Away from the crop edges (where the band-limited filter rings), the clip follows the ramp.
    for i in (2400..240_000 - 2400).step_by(997) {
        let t = 7.0 + i as f32 / 24_000.0;
        assert!(
            (clip[i] - t / 64.0).abs() < 1e-3,
            "sample {i}: {} vs {}",
            clip[i],
            t / 64.0
        );
    }
}

#[test]
fn style_clip_requires_ten_seconds() {
    let d = Decoded {
        sample_rate: 44_100,
        channels: vec![vec![0.1; 44_100 * 99 / 10]],
    };
    let err = audio::style_clip(&d, 24_000, 10).unwrap_err();
    match &err {
        AudioError::TooShort {
            needed_seconds,
            actual_seconds,
        } => {
            assert_eq!(*needed_seconds, 10.0);
            assert!((actual_seconds - 9.9).abs() < 1e-9);
        }
        other => panic!("expected TooShort, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("10.00 s") && message.contains("9.90 s"),
        "{message}"
    );
}

#[test]
fn style_clip_from_an_encoded_file() {
    // 12 s of 1 kHz at 48 kHz through the whole path: WAV bytes -> decode -> clip at 24 kHz.
    let x = sine(1000.0, 48_000, 12.0, 0.5);
    let d = audio::decode(&wav16(&[x.clone(), x], 48_000), None, 600.0).unwrap();
    let clip = audio::style_clip(&d, 24_000, 10).unwrap();
    assert_eq!(clip.len(), 240_000);
    assert!((frequency(&clip, 24_000) - 1000.0).abs() < 1.0);
    assert!((peak(&clip[1000..239_000]) - 0.5).abs() < 0.01);
}

// ------------------------------------------------------------------------------------------
// Edit-mode reference song
// ------------------------------------------------------------------------------------------

#[test]
fn reference_song_forces_stereo_and_minus_six_dbfs() {
    let target = 10f32.powf(REFERENCE_PEAK_DBFS / 20.0);
    assert!((target - 0.501_187).abs() < 1e-6);

    // Mono 22.05 kHz -> two identical 44.1 kHz channels.
    let mono = Decoded {
        sample_rate: 22_050,
        channels: vec![sine(440.0, 22_050, 1.0, 0.2)],
    };
    let [l, r] = audio::reference_song(&mono, VAE_SAMPLE_RATE).unwrap();
    assert_eq!(l.len(), 44_100);
    assert_eq!(l, r);
    assert!((peak(&l) - target).abs() < 1e-6, "{}", peak(&l));
    assert!((frequency(&l, 44_100) - 440.0).abs() < 1.0);

    // Stereo at 44.1 kHz: no resampling, a global peak over both channels.
    let stereo = Decoded {
        sample_rate: 44_100,
        channels: vec![vec![0.1, -0.4, 0.2], vec![0.05, 0.0, -0.2]],
    };
    let [l, r] = audio::reference_song(&stereo, VAE_SAMPLE_RATE).unwrap();
    assert_eq!(l, vec![0.1 * target / 0.4, -target, 0.2 * target / 0.4]);
    assert_eq!(r, vec![0.05 * target / 0.4, 0.0, -0.2 * target / 0.4]);

    // More than two channels: the first two are kept, the third (loudest) is ignored.
    let surround = Decoded {
        sample_rate: 44_100,
        channels: vec![vec![0.1, 0.2], vec![-0.1, 0.05], vec![0.9, 0.9]],
    };
    let [l, r] = audio::reference_song(&surround, VAE_SAMPLE_RATE).unwrap();
    assert_eq!(l, vec![0.1 * target / 0.2, target]);
    assert_eq!(r, vec![-0.1 * target / 0.2, 0.05 * target / 0.2]);
}

#[test]
fn reference_song_rejects_silence_and_empty_audio() {
    let silent = Decoded {
        sample_rate: 44_100,
        channels: vec![vec![0.0; 1000]; 2],
    };
    let err = audio::reference_song(&silent, 44_100).unwrap_err();
    assert!(matches!(err, AudioError::Silent), "{err:?}");
    assert!(err.to_string().contains("silent"));
    let empty = Decoded {
        sample_rate: 44_100,
        channels: vec![Vec::new()],
    };
    assert!(matches!(
        audio::reference_song(&empty, 44_100),
        Err(AudioError::Empty)
    ));
}

// ------------------------------------------------------------------------------------------
// Output
// ------------------------------------------------------------------------------------------

#[test]
fn peak_normalisation_matches_the_reference() {
    // Global peak 0.8 (in the right channel).
    let left = [0.4f32, -0.2, 0.1, 0.0];
    let right = [-0.8f32, 0.8, 0.3, -0.3];
    let out = audio::peak_normalise_to_i16(&left, &right);
    let expected: Vec<i16> = left
        .iter()
        .zip(&right)
        .flat_map(|(&l, &r)| [l, r])
        .map(|x| ((x / 0.8f32).clamp(-1.0, 1.0) * 32767.0) as i16)
        .collect();
    assert_eq!(out, expected);
    assert_eq!(out[..4], [16383, -32767, -8191, 32767]); // interleaved L R L R, truncated
    assert_eq!(out.iter().map(|s| s.unsigned_abs()).max(), Some(32767));
    // 0.375 * 32767 = 12287.625 -> 12287 and -12287 (toward zero, not floor or round).
    assert_eq!(out[5], 12287);
    assert_eq!(out[7], -12287);
}

#[test]
fn peak_normalisation_truncates_toward_zero() {
    // x / peak * 32767 = ±1.5, ±2.9999: truncation gives ±1, ±2.
    let p = 32767.0f32;
    let out =
        audio::peak_normalise_to_i16(&[1.5 / p, -1.5 / p, 1.0], &[2.9999 / p, -2.9999 / p, 0.0]);
    assert_eq!(out, vec![1, 2, -1, -2, 32767, 0]);
}

#[test]
fn peak_normalisation_of_silence_is_zeros() {
    let out = audio::peak_normalise_to_i16(&[0.0; 8], &[0.0; 8]);
    assert_eq!(out, vec![0i16; 16]);
    assert!(audio::peak_normalise_to_i16(&[], &[]).is_empty());
    // Non-finite samples never poison the file.
    let out = audio::peak_normalise_to_i16(&[f32::NAN, 0.5], &[f32::INFINITY, -0.25]);
    assert_eq!(out, vec![0, 0, 32767, -16383]);
}

#[test]
fn each_variant_is_normalised_on_its_own_peak() {
    let loud = audio::peak_normalise_to_i16(&[0.9, -0.3], &[0.1, 0.2]);
    let quiet = audio::peak_normalise_to_i16(&[0.009, -0.003], &[0.001, 0.002]);
    assert_eq!(loud[0], 32767);
    assert_eq!(quiet[0], 32767);
}

#[test]
fn write_wav_is_atomic_and_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("song.wav");
    let left = sine(440.0, 44_100, 0.25, 0.3);
    let right = sine(660.0, 44_100, 0.25, 0.6);
    let samples = audio::peak_normalise_to_i16(&left, &right);
    audio::write_wav_i16(&path, &samples, 2, 44_100).unwrap();

    // Only the final file is there: no temporary left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["song.wav".to_string()]);

    let mut reader = hound::WavReader::open(&path).unwrap();
    let spec = reader.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 44_100);
    assert_eq!(spec.bits_per_sample, 16);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let read: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(read, samples);

    // The file round-trips through our own decoder too.
    let d = audio::decode_file(&path, NO_LIMIT).unwrap();
    assert_eq!(
        (d.sample_rate, d.channels.len(), d.frames()),
        (44_100, 2, left.len())
    );

    // Overwriting replaces the file atomically, again without leftovers.
    audio::write_wav_i16(&path, &[1, -1, 2, -2], 2, 24_000).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    let reader = hound::WavReader::open(&path).unwrap();
    assert_eq!(reader.spec().sample_rate, 24_000);
    assert_eq!(reader.duration(), 2);

    // In memory: the same bytes.
    let bytes = audio::wav_bytes_i16(&[1, -1, 2, -2], 2, 24_000).unwrap();
    assert_eq!(bytes, std::fs::read(&path).unwrap());
}

#[test]
fn wav_bytes_round_trip() {
    let samples: Vec<i16> = (0..2000).map(|i| (i * 31 - 30_000) as i16).collect();
    let bytes = audio::wav_bytes_i16(&samples, 2, 44_100).unwrap();
    assert_eq!(bytes.len(), 44 + samples.len() * 2);
    let reader = hound::WavReader::new(Cursor::new(&bytes)).unwrap();
    assert_eq!(reader.spec().channels, 2);
    let read: Vec<i16> = reader.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(read, samples);
    // Mono works too; a partial frame does not.
    assert!(audio::wav_bytes_i16(&[1, 2, 3], 1, 8000).is_ok());
    let err = audio::wav_bytes_i16(&[1, 2, 3], 2, 8000).unwrap_err();
    assert!(matches!(err, AudioError::InvalidArgument(_)), "{err:?}");
}

#[test]
fn write_wav_into_a_missing_directory_names_the_path_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("song.wav");
    let err = audio::write_wav_i16(&path, &[0, 0], 2, 44_100).unwrap_err();
    assert!(matches!(err, AudioError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
