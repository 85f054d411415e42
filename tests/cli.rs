//! End-to-end tests of the `refrain` binary: the real executable runs on the committed analytic
//! test bundle (`models/test-bundle/`) and writes real WAV files into temporary directories.
//!
//! They check what a user sees: exit codes, the WAV format and length, determinism of seeded
//! runs, the style and edit options, and that every kind of bad input ends with a non-zero exit
//! and a message naming the problem, never a panic. The `generate` tests need ONNX Runtime: when
//! it is missing they are skipped with a message, except in CI (`CI` set), where they fail.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

mod support;
use support::{ort_available, workspace};

const PROMPT: &str = "bright acoustic pop with piano";
const SAMPLE_RATE: u32 = 44100;
const HOP: usize = 2048;

fn demo_lrc() -> PathBuf {
    workspace().join("examples/demo.lrc")
}

fn bundle_dir() -> PathBuf {
    workspace().join("models/test-bundle")
}

/// Runs `refrain ARGS` from the workspace root (where the default bundle path resolves).
fn refrain<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .args(args)
        .current_dir(workspace())
        .env_remove("REFRAIN_BUNDLE")
        .env_remove("REFRAIN_ORT_LIBRARY")
        .env_remove("REFRAIN_DEVICE")
        .output()
        .expect("the refrain binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `refrain generate --lrc examples/demo.lrc -o OUT` plus `extra`.
fn generate(out: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = vec![
        "generate".into(),
        "--lrc".into(),
        demo_lrc().display().to_string(),
        "-o".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    refrain(args)
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "refrain failed ({}):\n{}",
        out.status,
        stderr(out)
    );
    assert_no_panic(out);
}

#[track_caller]
fn assert_no_panic(out: &Output) {
    let err = stderr(out);
    assert!(!err.contains("panicked"), "refrain panicked:\n{err}");
    // 101 is the exit status of a Rust panic.
    assert_ne!(out.status.code(), Some(101), "refrain panicked:\n{err}");
}

/// The command failed cleanly and its message contains every one of `needles`.
#[track_caller]
fn assert_fails(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "refrain should have failed, but exited 0:\n{err}"
    );
    assert!(out.status.code().is_some(), "killed by a signal:\n{err}");
    assert_no_panic(out);
    for needle in needles {
        assert!(
            err.contains(needle),
            "the message should mention {needle:?}:\n{err}"
        );
    }
}

/// Reads a WAV file produced by `refrain`: its format and its frame count.
fn wav_info(path: &Path) -> (hound::WavSpec, u32) {
    let r = hound::WavReader::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable WAV: {e}", path.display()));
    (r.spec(), r.duration())
}

#[track_caller]
fn assert_song(path: &Path, frames: usize) {
    let (spec, len) = wav_info(path);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int, "PCM");
    assert_eq!(spec.bits_per_sample, 16);
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, SAMPLE_RATE);
    assert_eq!(len as usize, frames * HOP, "{}", path.display());
}

/// Writes a 44.1 kHz stereo 16-bit WAV of a 440 Hz tone lasting `seconds`.
fn write_tone(path: &Path, seconds: f64) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let n = (seconds * SAMPLE_RATE as f64) as usize;
    for i in 0..n {
        let t = i as f64 / SAMPLE_RATE as f64;
        let s = (0.3 * (2.0 * std::f64::consts::PI * 440.0 * t).sin() * 32767.0) as i16;
        w.write_sample(s).unwrap();
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// `int(L·44100/2048)`, the full model's frame count for `L` seconds.
fn full_frames(seconds: u32) -> usize {
    seconds as usize * SAMPLE_RATE as usize / HOP
}

#[test]
fn generates_a_base_song() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");
    let run = generate(&out, &["--prompt", PROMPT, "--length", "95"]);
    assert_ok(&run);
    // 2048 latent frames of 2048 samples: 95.108 s.
    assert_song(&out, 2048);
    let err = stderr(&run);
    assert!(
        err.contains("line 1 skipped") && err.contains("line 2 skipped"),
        "the metadata lines [ti:] and [ar:] should be reported as skipped:\n{err}"
    );
    assert!(err.contains("metadata"), "{err}");
}

#[test]
fn chunked_batch_is_deterministic() {
    if !ort_available() {
        return;
    }
    let frames = full_frames(130);
    assert_eq!(frames, 2799);
    let runs: Vec<TempDir> = (0..2)
        .map(|_| {
            let dir = TempDir::new().unwrap();
            let run = generate(
                &dir.path().join("out.wav"),
                &[
                    "--prompt",
                    PROMPT,
                    "--length",
                    "130",
                    "--chunked",
                    "--batch",
                    "2",
                    "--seed",
                    "7",
                ],
            );
            assert_ok(&run);
            dir
        })
        .collect();
    for dir in &runs {
        assert_song(&dir.path().join("out.wav"), frames);
        assert_song(&dir.path().join("out-2.wav"), frames);
        assert!(!dir.path().join("out-3.wav").exists());
    }
    for name in ["out.wav", "out-2.wav"] {
        let a = std::fs::read(runs[0].path().join(name)).unwrap();
        let b = std::fs::read(runs[1].path().join(name)).unwrap();
        assert!(a == b, "{name} differs between two runs with --seed 7");
    }
    let first = std::fs::read(runs[0].path().join("out.wav")).unwrap();
    let second = std::fs::read(runs[0].path().join("out-2.wav")).unwrap();
    assert!(first != second, "the two variants of a batch are identical");
}

#[test]
fn f16_bundle_manifest() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");
    let manifest = bundle_dir().join("bundle-f16.toml");
    let run = generate(
        &out,
        &[
            "--prompt",
            PROMPT,
            "--length",
            "95",
            "--bundle",
            manifest.to_str().unwrap(),
        ],
    );
    assert_ok(&run);
    assert_song(&out, 2048);
}

#[test]
fn reference_audio_style() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");

    let long = dir.path().join("ref12.wav");
    write_tone(&long, 12.0);
    let run = generate(
        &out,
        &["--ref-audio", long.to_str().unwrap(), "--length", "95"],
    );
    assert_ok(&run);
    assert_song(&out, 2048);

    let short = dir.path().join("ref3.wav");
    write_tone(&short, 3.0);
    let run = generate(
        &dir.path().join("short.wav"),
        &["--ref-audio", short.to_str().unwrap()],
    );
    assert_fails(&run, &["short"]);
    assert!(!dir.path().join("short.wav").exists());

    let garbage = dir.path().join("garbage.wav");
    std::fs::write(&garbage, b"this is not audio at all\n".repeat(100)).unwrap();
    let run = generate(
        &dir.path().join("garbage-out.wav"),
        &["--ref-audio", garbage.to_str().unwrap()],
    );
    assert_fails(&run, &["audio format"]);
}

#[test]
fn prompt_and_reference_audio_conflict() {
    // Refused by clap before anything is loaded: no ONNX Runtime needed.
    let dir = TempDir::new().unwrap();
    let wav = dir.path().join("ref.wav");
    write_tone(&wav, 12.0);
    let run = generate(
        &dir.path().join("out.wav"),
        &["--prompt", PROMPT, "--ref-audio", wav.to_str().unwrap()],
    );
    assert_fails(&run, &["--prompt", "--ref-audio", "cannot be used with"]);
    assert_eq!(run.status.code(), Some(2), "clap's usage error status");

    // Neither is refused as well.
    let run = generate(&dir.path().join("out.wav"), &[]);
    assert_fails(&run, &["--prompt"]);
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn edit_mode() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let song = dir.path().join("song.wav");
    assert_ok(&generate(&song, &["--prompt", PROMPT, "--length", "95"]));

    let edited = dir.path().join("edited.wav");
    let run = generate(
        &edited,
        &[
            "--prompt",
            PROMPT,
            "--length",
            "95",
            "--seed",
            "3",
            "--edit",
            "--ref-song",
            song.to_str().unwrap(),
            "--edit-segments",
            "[[10,20]]",
        ],
    );
    assert_ok(&run);
    assert_song(&edited, 2048);

    for bad in ["[[5,2]]", "nope", "[]"] {
        let run = generate(
            &dir.path().join("bad.wav"),
            &[
                "--prompt",
                PROMPT,
                "--edit",
                "--ref-song",
                song.to_str().unwrap(),
                "--edit-segments",
                bad,
            ],
        );
        assert_fails(&run, &["edit_segments"]);
    }
    assert!(!dir.path().join("bad.wav").exists());
}

#[test]
fn edit_needs_its_arguments() {
    // clap: --edit without --ref-song / --edit-segments.
    let dir = TempDir::new().unwrap();
    let run = generate(&dir.path().join("out.wav"), &["--prompt", PROMPT, "--edit"]);
    assert_fails(&run, &["--ref-song"]);
    assert_eq!(run.status.code(), Some(2));
}

#[test]
fn bad_requests_fail_with_a_message() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");
    let cases: &[(&[&str], &[&str])] = &[
        (&["--length", "60"], &["length 60", "95"]),
        (&["--length", "300"], &["length 300", "285"]),
        (&["--steps", "1"], &["steps", "got 1"]),
        (&["--batch", "6"], &["between 1 and 5", "got 6"]),
        (&["--batch", "0"], &["between 1 and 5", "got 0"]),
    ];
    for (args, needles) in cases {
        let mut all = vec!["--prompt", PROMPT];
        all.extend_from_slice(args);
        let run = generate(&out, &all);
        assert_fails(&run, needles);
        assert!(!out.exists(), "{args:?} wrote a file");
    }
}

#[test]
fn missing_lyrics_file() {
    let dir = TempDir::new().unwrap();
    let missing = dir.path().join("no-such-song.lrc");
    let run = refrain([
        "generate",
        "--lrc",
        missing.to_str().unwrap(),
        "--prompt",
        PROMPT,
        "-o",
        dir.path().join("out.wav").to_str().unwrap(),
    ]);
    assert_fails(&run, &["lyrics file", "no-such-song.lrc"]);

    let run = refrain([
        "lyrics",
        "--lrc",
        missing.to_str().unwrap(),
        "--length",
        "95",
    ]);
    assert_fails(&run, &["lyrics file", "no-such-song.lrc"]);
}

#[test]
fn chinese_lyrics_are_sung() {
    // The test bundle has a small Mandarin lexicon of its own (models/test-bundle/mandarin).
    let dir = TempDir::new().unwrap();
    let lrc = dir.path().join("zh.lrc");
    std::fs::write(
        &lrc,
        "[00:10.00]Hello there\n[00:20.00]你好世界\n[00:30.00]Bye\n",
    )
    .unwrap();

    let run = refrain(["lyrics", "--lrc", lrc.to_str().unwrap(), "--length", "95"]);
    assert!(run.status.success(), "{}", stderr(&run));
    let tokens: Vec<i64> = serde_json::from_str(&stdout(&run)).unwrap();
    // 20 s is frame int(20 * 44100 / 2048) = 430: 你好 sings n and x (test vocabulary ids 24
    // and 39, + 1), 世界 nothing the test vocabulary has, then the line's closing ".".
    assert_eq!(tokens[430..433], [25, 40, 2]);
}

#[test]
fn bad_bundles_fail_with_a_message() {
    if !ort_available() {
        return;
    }
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("out.wav");

    // A directory without bundle.toml.
    let empty = dir.path().join("empty-bundle");
    std::fs::create_dir(&empty).unwrap();
    let run = generate(
        &out,
        &["--prompt", PROMPT, "--bundle", empty.to_str().unwrap()],
    );
    assert_fails(&run, &["bundle.toml"]);

    // A copy of the test bundle whose manifest has a key the schema does not know.
    let copy = dir.path().join("bundle");
    std::fs::create_dir(&copy).unwrap();
    for sub in ["", "mandarin"] {
        std::fs::create_dir_all(copy.join(sub)).unwrap();
        for entry in std::fs::read_dir(bundle_dir().join(sub)).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), copy.join(sub).join(entry.file_name())).unwrap();
            }
        }
    }
    let manifest = copy.join("bundle.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    assert!(text.contains("hop = 2048\n"));
    std::fs::write(
        &manifest,
        text.replace("hop = 2048\n", "hop = 2048\nhop_size = 1024\n"),
    )
    .unwrap();
    let run = generate(
        &out,
        &["--prompt", PROMPT, "--bundle", copy.to_str().unwrap()],
    );
    assert_fails(&run, &["bundle.toml", "hop_size"]);

    // The untouched copy works: the failure above is the key, not the copy.
    std::fs::write(&manifest, text).unwrap();
    assert_ok(&generate(
        &out,
        &["--prompt", PROMPT, "--bundle", copy.to_str().unwrap()],
    ));
}

#[test]
fn missing_onnx_runtime_says_how_to_get_it() {
    // Needs no ONNX Runtime: the point is the message when it cannot be loaded.
    let dir = TempDir::new().unwrap();
    let run = generate(
        &dir.path().join("out.wav"),
        &[
            "--prompt",
            PROMPT,
            "--ort-library",
            "/nonexistent/libonnxruntime.so",
        ],
    );
    assert_fails(
        &run,
        &[
            "/nonexistent/libonnxruntime.so",
            "tools/fetch-onnxruntime.sh",
        ],
    );
}

#[test]
fn cuda_without_a_gpu_build_fails_instead_of_falling_back() {
    if !ort_available() {
        return;
    }
    // The CPU build of ONNX Runtime has no CUDA provider: a CUDA node must refuse to start
    // (error_on_failure), never run on the CPU silently.
    let dir = TempDir::new().unwrap();
    let run = generate(
        &dir.path().join("out.wav"),
        &["--prompt", PROMPT, "--device", "cuda:0"],
    );
    assert_fails(
        &run,
        &["cuda:0", "ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh"],
    );
    assert!(!dir.path().join("out.wav").exists());
}

#[test]
fn tensorrt_without_a_gpu_build_fails_instead_of_falling_back() {
    if !ort_available() {
        return;
    }
    // Nor does the CPU build have TensorRT: the error names the device and what it needs.
    let dir = TempDir::new().unwrap();
    let run = generate(
        &dir.path().join("out.wav"),
        &["--prompt", PROMPT, "--device", "tensorrt:0"],
    );
    assert_fails(
        &run,
        &[
            "tensorrt:0",
            "TensorRT 10",
            "ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh",
        ],
    );
    assert!(!dir.path().join("out.wav").exists());
}

/// `refrain lyrics` on the default bundle: the token track as a JSON array of integers.
fn lyric_tokens(lrc: &Path, length: u32) -> Vec<i64> {
    let run = refrain([
        "lyrics",
        "--lrc",
        lrc.to_str().unwrap(),
        "--length",
        &length.to_string(),
    ]);
    assert_ok(&run);
    let value: serde_json::Value = serde_json::from_str(stdout(&run).trim())
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{}", stdout(&run)));
    value
        .as_array()
        .expect("a JSON array")
        .iter()
        .map(|v| v.as_i64().expect("integers"))
        .collect()
}

#[test]
fn lyrics_command_prints_the_token_track() {
    let base = lyric_tokens(&demo_lrc(), 95);
    assert_eq!(base.len(), 2048);
    let full = lyric_tokens(&demo_lrc(), 96);
    assert_eq!(full.len(), full_frames(96));
    assert_eq!(full.len(), 2067);

    // The first lyric line, [00:10.00], starts at frame int(10·44100/2048) = 215.
    assert!(base[..215].iter().all(|&t| t == 0));
    assert_ne!(base[215], 0);
    // Every line ends with "." (token 2).
    assert_eq!(base.iter().filter(|&&t| t == 2).count(), 15);
    assert_eq!(full.iter().filter(|&&t| t == 2).count(), 16);

    // The last line, [01:28.30], starts at frame int(88.3·44100/2048) = 1901. The full model
    // sings it; the base model drops it, as the reference does, and is otherwise the same.
    let last = 1901;
    assert!(
        full[last..last + 5].iter().all(|&t| t != 0),
        "{:?}",
        &full[last..]
    );
    assert!(base[last..].iter().all(|&t| t == 0), "{:?}", &base[last..]);
    assert_eq!(base[..last], full[..last]);
    assert!(base.iter().all(|&t| (0..=363).contains(&t)));
}

#[test]
fn keys_add_prints_a_key_once_and_stores_only_its_hash() {
    let dir = TempDir::new().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let out = refrain(["keys", "add", "alice", "--data-dir", data]);
    assert_ok(&out);
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("rf_") && key.len() > 40, "{key}");
    let stored = std::fs::read_to_string(dir.path().join("data/api-keys.json")).unwrap();
    assert!(
        stored.contains("\"alice\"") && !stored.contains(&key),
        "{stored}"
    );
    let out = refrain(["keys", "list", "--data-dir", data]);
    assert_ok(&out);
    assert!(stdout(&out).starts_with("alice\t"), "{}", stdout(&out));
    assert!(!stdout(&out).contains(&key));
    for bad in [["keys", "add", "alice"], ["keys", "add", "no spaces"]] {
        let out = refrain(bad.iter().copied().chain(["--data-dir", data]));
        assert!(!out.status.success(), "{bad:?}");
        assert!(!stderr(&out).is_empty(), "{bad:?}");
        assert_no_panic(&out);
    }
}
