//! Decoding, resampling, reference preprocessing and WAV output (`refrain_inference::audio`).
//!
//! WAV inputs are generated with hound; the FLAC and MP3 inputs are tiny committed fixtures in
//! `tests/data/` (1 s of a 1 kHz sine, left at half scale and right at quarter scale, 44.1 kHz,
//! encoded with `flac -8 --no-padding` and `lame -b 96 --resample 44.1 --add-id3v2 --tt "A title"
//! --ta Artist`; the MP3 starts with an ID3v2 tag, as most real MP3s do).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use refrain_inference::audio::{
    self, AudioError, Decoded, REFERENCE_PEAK_DBFS, STYLE_CLIP_SECONDS, STYLE_SAMPLE_RATE,
    VAE_SAMPLE_RATE,
};

const NO_LIMIT: f64 = f64::INFINITY;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn sine(freq: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<f32> {
    // Phase in f64: an f32 phase of thousands of radians is noisy enough to show up as aliasing.
    let n = (f64::from(seconds) * f64::from(rate)).round() as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            amplitude * (2.0 * std::f64::consts::PI * f64::from(freq) * t).sin() as f32
        })
        .collect()
}

/// 16-bit PCM WAV in memory from planar f32 channels.
fn wav16(channels: &[Vec<f32>], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            w.write_sample((c[i] * 32767.0).round() as i16).unwrap();
        }
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

/// 32-bit float WAV in memory.
fn wav_f32(channels: &[Vec<f32>], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut cursor = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            w.write_sample(c[i]).unwrap();
        }
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

/// Frequency estimate from rising zero crossings over the middle of the signal (edges skipped).
fn frequency(x: &[f32], rate: u32) -> f64 {
    let skip = x.len() / 10;
    let mid = &x[skip..x.len() - skip];
    let crossings: Vec<usize> = mid
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    let periods = (crossings.len() - 1) as f64;
    let span = (crossings[crossings.len() - 1] - crossings[0]) as f64;
    periods * f64::from(rate) / span
}

fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The checks shared by the three formats: 1 s stereo 44.1 kHz, 1 kHz in both channels at the
/// expected levels, and still 1 kHz after resampling to 24 kHz.
fn check_sine_fixture(d: &Decoded, duration_tolerance: f64) {
    assert_eq!(d.sample_rate, 44_100);
    assert_eq!(d.channels.len(), 2);
    assert!(
        (d.duration_seconds() - 1.0).abs() <= duration_tolerance,
        "duration {}",
        d.duration_seconds()
    );
    assert_eq!(d.frames(), d.channels[1].len());
    // Levels: 0.5 and 0.25 peak, so RMS 0.354 and 0.177.
    let (l, r) = (rms(&d.channels[0]), rms(&d.channels[1]));
    assert!((l - 0.5 / 2f64.sqrt()).abs() < 0.02, "left rms {l}");
    assert!((r - 0.25 / 2f64.sqrt()).abs() < 0.02, "right rms {r}");
    assert!(d
        .channels
        .iter()
        .flatten()
        .all(|x| (-1.0..=1.0).contains(x)));

    let at_24k = audio::resample(&d.channels, 44_100, 24_000).unwrap();
    assert_eq!(at_24k.len(), 2);
    let expected_len = (d.frames() as f64 * 24_000.0 / 44_100.0).ceil() as usize;
    assert_eq!(at_24k[0].len(), expected_len);
    assert_eq!(at_24k[1].len(), expected_len);
    for channel in &at_24k {
        let f = frequency(channel, 24_000);
        assert!((f - 1000.0).abs() < 2.0, "frequency after resampling {f}");
    }
    // Band-limited resampling keeps the level of an in-band tone.
    let l24 = rms(&at_24k[0][2400..at_24k[0].len() - 2400]);
    assert!(
        (l24 - 0.5 / 2f64.sqrt()).abs() < 0.02,
        "left rms at 24 kHz {l24}"
    );
}

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
