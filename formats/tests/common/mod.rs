//! Shared helpers for the integration tests: WAV generation and a single-bin DFT to find where a
//! decoded signal's energy is.

#![allow(dead_code)]

use std::f64::consts::PI;
use std::io::Cursor;

/// A 16-bit PCM WAV holding a sine per channel (`freqs[c]` Hz, amplitude 0.5).
pub fn sine_wav(rate: u32, freqs: &[f64], seconds: f64) -> Vec<u8> {
    let frames = (seconds * f64::from(rate)).round() as usize;
    let mut samples = Vec::with_capacity(frames * freqs.len());
    for i in 0..frames {
        for &f in freqs {
            samples.push(sine_at(f, i, rate) as f32);
        }
    }
    wav_from_f32(rate, freqs.len() as u16, &samples)
}

/// Value of the test sine (amplitude 0.5) at frame `i` of a `rate` Hz stream.
pub fn sine_at(freq: f64, i: usize, rate: u32) -> f64 {
    0.5 * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()
}

/// A 16-bit PCM WAV from interleaved samples in [-1, 1].
pub fn wav_from_f32(rate: u32, channels: u16, samples: &[f32]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for &s in samples {
        w.write_sample((s * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

/// A WAV with an arbitrary spec and `frames` frames of silence.
pub fn silent_wav(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
    let mut cursor = Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for _ in 0..frames * usize::from(spec.channels) {
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(0.0f32).unwrap(),
            (_, 8) => w.write_sample(0i8).unwrap(),
            (_, 16) => w.write_sample(0i16).unwrap(),
            _ => w.write_sample(0i32).unwrap(),
        }
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

/// Power of `x` at `freq` Hz (a single DFT bin, Goertzel), normalised so that a full-length
/// sine of amplitude `a` gives about `a² / 4`.
pub fn bin_power(x: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &v in x {
        let s0 = f64::from(v) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    power / (x.len() as f64).powi(2)
}

/// Asserts that `freq` dominates `x`: its bin holds most of the signal's power and is far
/// above every other probe frequency (including `not` — e.g. the other channel's tone).
pub fn assert_dominant(x: &[f32], rate: u32, freq: f64, not: &[f64], what: &str) {
    let p = bin_power(x, rate, freq);
    // A 0.5-amplitude sine: a² / 4 = 0.0625.
    assert!(p > 0.04, "{what}: power at {freq} Hz is only {p}");
    let mut probes = vec![
        freq * 0.5,
        freq * 0.75,
        freq * 1.25,
        freq * 1.5,
        freq * 2.0,
        3_000.0,
        5_000.0,
    ];
    probes.extend_from_slice(not);
    for q in probes {
        let pq = bin_power(x, rate, q);
        assert!(
            pq * 1_000.0 < p,
            "{what}: power at {q} Hz ({pq}) vs {freq} Hz ({p})"
        );
    }
}

/// Normalised correlation of `x` with the test sine at `freq` Hz (1 = identical shape and phase).
pub fn correlation_with_sine(x: &[f32], rate: u32, freq: f64) -> f64 {
    let (mut xy, mut xx, mut yy) = (0.0, 0.0, 0.0);
    for (i, &v) in x.iter().enumerate() {
        let y = sine_at(freq, i, rate);
        let v = f64::from(v);
        xy += v * y;
        xx += v * v;
        yy += y * y;
    }
    xy / (xx * yy).sqrt()
}

/// Splits interleaved samples into channels.
pub fn deinterleave(x: &[f32], channels: usize) -> Vec<Vec<f32>> {
    (0..channels)
        .map(|c| x.iter().skip(c).step_by(channels).copied().collect())
        .collect()
}
