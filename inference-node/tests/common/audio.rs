//! Helpers of the audio tests (tests/audio_io.rs, tests/audio_prep.rs): generated WAVs,
//! the committed fixtures, and measures of a decoded signal.

#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use refrain_inference::audio::{self, Decoded};

pub const NO_LIMIT: f64 = f64::INFINITY;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn sine(freq: f32, rate: u32, seconds: f32, amplitude: f32) -> Vec<f32> {
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
pub fn wav16(channels: &[Vec<f32>], rate: u32) -> Vec<u8> {
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
pub fn wav_f32(channels: &[Vec<f32>], rate: u32) -> Vec<u8> {
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
pub fn frequency(x: &[f32], rate: u32) -> f64 {
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

pub fn peak(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

pub fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64).sqrt()
}

/// The checks shared by the three formats: 1 s stereo 44.1 kHz, 1 kHz in both channels at the
/// expected levels, and still 1 kHz after resampling to 24 kHz.
pub fn check_sine_fixture(d: &Decoded, duration_tolerance: f64) {
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
