//! Audio for and from the tests: WAV inputs (a sine), the checks of a song WAV's format and
//! length, and the reference bytes of an uninterrupted `refrain generate` run that a job must
//! reproduce however often it was interrupted.

use std::path::Path;
use std::process::Command;

use super::prereq::workspace;

/// A 16-bit stereo 44.1 kHz WAV of a 440 Hz sine, `seconds` long.
pub fn sine_wav(seconds: f64) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 44100,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec).expect("WAV writer");
        let n = (seconds * 44100.0) as usize;
        for i in 0..n {
            let s =
                ((i as f64 * 440.0 * 2.0 * std::f64::consts::PI / 44100.0).sin() * 8000.0) as i16;
            w.write_sample(s).expect("sample");
            w.write_sample(s).expect("sample");
        }
        w.finalize().expect("WAV finalize");
    }
    cursor.into_inner()
}

/// `refrain generate` of the same request as a server job (text prompt): the reference bytes a
/// job must produce, however often it was interrupted.
pub fn generate_reference(
    dir: &Path,
    lyrics: &str,
    prompt: &str,
    seconds: u32,
    seed: u64,
    steps: u32,
) -> Vec<u8> {
    let lrc = dir.join(format!("ref-{seed}-{seconds}.lrc"));
    let out = dir.join(format!("ref-{seed}-{seconds}.wav"));
    std::fs::write(&lrc, lyrics).expect("lyrics file");
    let output = Command::new(env!("CARGO_BIN_EXE_refrain"))
        .current_dir(workspace())
        .env_remove("REFRAIN_BUNDLE")
        .env_remove("REFRAIN_ORT_LIBRARY")
        .env_remove("REFRAIN_DEVICE")
        .args(["generate", "--prompt", prompt])
        .arg("--lrc")
        .arg(&lrc)
        .args(["--length", &seconds.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--steps", &steps.to_string()])
        .arg("--output")
        .arg(&out)
        .output()
        .expect("refrain generate runs");
    assert!(
        output.status.success(),
        "refrain generate failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("reference WAV")
}

/// Checks a WAV: 16-bit stereo 44.1 kHz, `frames` latent frames of 2048 samples. Returns the
/// samples per channel.
pub fn assert_song_wav(bytes: &[u8], latent_frames: usize) -> u32 {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV file");
    let spec = reader.spec();
    assert_eq!(spec.channels, 2, "stereo");
    assert_eq!(spec.sample_rate, 44100, "44.1 kHz");
    assert_eq!(spec.bits_per_sample, 16, "16-bit");
    assert_eq!(spec.sample_format, hound::SampleFormat::Int, "integer PCM");
    let frames = reader.duration();
    assert_eq!(frames as usize, latent_frames * 2048, "samples per channel");
    frames
}

/// Latent frames of a song of `seconds` (95 s is the base model's 2048 frames).
pub fn latent_frames(seconds: u32) -> usize {
    if seconds == 95 {
        2048
    } else {
        seconds as usize * 44100 / 2048
    }
}
