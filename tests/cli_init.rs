//! `refrain generate --init FILE --strength S` on the real binary and the analytic test bundle:
//! the sampler starts from the song re-noised (SDEdit, Refrain's addition to DiffRhythm).
//! Strength 1 is a new song, byte for byte the run without `--init` with the same seed; a
//! strength in between is a song of the requested length that is neither; bad uses fail with
//! a message naming the problem, never a panic. Skipped without ONNX Runtime, except in CI.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::{ort_available, workspace};
use tempfile::TempDir;

const HOP: usize = 2048;

/// `refrain generate --lrc examples/demo.lrc --length 95 --steps 8 -o OUT` plus `extra`.
fn generate(out: &Path, extra: &[&str]) -> Output {
    let demo = workspace().join("examples/demo.lrc");
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args([
            "generate",
            "--lrc",
            demo.to_str().unwrap(),
            "--length",
            "95",
        ])
        .args(["--steps", "8", "-o", out.to_str().unwrap()])
        .args(extra)
        .current_dir(workspace())
        .env_remove("REFRAIN_BUNDLE")
        .env_remove("REFRAIN_ORT_LIBRARY")
        .env_remove("REFRAIN_DEVICE")
        .output()
        .expect("the refrain binary runs")
}

#[track_caller]
fn assert_ok(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "refrain failed:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[track_caller]
fn assert_fails(out: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refrain succeeded:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(needle), "no {needle:?} in:\n{err}");
}

fn samples(path: &Path) -> Vec<i16> {
    hound::WavReader::open(path)
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn init_starts_from_the_song_at_the_strength_given() {
    // Argument checks come before the bundle is loaded: no ONNX Runtime needed.
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");
    let song = dir.path().join("song.wav");
    let s = song.to_str().unwrap();
    assert_fails(
        &generate(&out, &["--prompt", "jazz", "--init", s]),
        "--strength",
    );
    assert_fails(
        &generate(&out, &["--prompt", "jazz", "--strength", "0.5"]),
        "--init",
    );
    let edit = ["--edit", "--ref-song", s, "--edit-segments", "[[1,2]]"];
    let mut args = vec!["--prompt", "jazz", "--init", s, "--strength", "0.5"];
    args.extend(edit);
    assert_fails(&generate(&out, &args), "cannot be used with");
    if !ort_available() {
        return;
    }

    assert_ok(&generate(&song, &["--prompt", "bright pop", "--seed", "3"]));
    let fresh = dir.path().join("fresh.wav");
    assert_ok(&generate(&fresh, &["--prompt", "dark jazz", "--seed", "5"]));
    let with = |strength: &str, out: &Path| {
        generate(
            out,
            &[
                "--prompt",
                "dark jazz",
                "--seed",
                "5",
                "--init",
                s,
                "--strength",
                strength,
            ],
        )
    };
    // Strength 1: the same bytes as a new song with the seed.
    let one = dir.path().join("one.wav");
    assert_ok(&with("1", &one));
    assert_eq!(samples(&one), samples(&fresh));
    // 0.5: the song's length, neither the source nor the new song.
    let half = dir.path().join("half.wav");
    assert_ok(&with("0.5", &half));
    let h = samples(&half);
    assert_eq!(h.len(), 2048 * HOP * 2);
    assert_ne!(h, samples(&fresh));
    assert_ne!(h, samples(&song));
    // Out of range, and a song shorter than the new one: refused, nothing written.
    let bad = dir.path().join("bad.wav");
    assert_fails(&with("1.5", &bad), "strength");
    let short = dir.path().join("short.wav");
    std::fs::write(&short, support::sine_wav(20.0)).unwrap();
    let run = generate(
        &bad,
        &[
            "--prompt",
            "x",
            "--init",
            short.to_str().unwrap(),
            "--strength",
            "0.5",
        ],
    );
    assert!(!run.status.success());
    assert!(!bad.exists());
}
