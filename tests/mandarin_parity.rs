//! Full-track parity of `refrain lyrics` with the DiffRhythm reference on Chinese and mixed
//! Chinese/English LRC files, at 95 s (base model) and 285 s (full model).
//!
//! `tests/data/mandarin/golden.json` holds, under `tracks`, the token track
//! `get_lrc_token` of the reference produced for `mandarin.lrc` and `mixed_zh_en.lrc` at both
//! lengths (with its real Mandarin front end; see `tools/mandarin_golden.py`). The binary runs
//! with the reference vocabulary and the Mandarin data files fetched by
//! `tools/fetch-mandarin-data.sh` (`.mandarin-data/`, or `REFRAIN_MANDARIN_DATA`), the polyphone
//! model on the CPU. Without the data files, the vocabulary or ONNX Runtime the test is skipped
//! with a message, except in CI (`CI` set), where it fails.

use std::path::{Path, PathBuf};
use std::process::Command;

const VOCAB: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/reference/diffrhythm-vocab.json"
);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn missing(what: String) -> bool {
    if std::env::var_os("CI").is_some() {
        panic!("{what} (required in CI)");
    }
    eprintln!("skipped: {what}");
    false
}

fn data_dir() -> PathBuf {
    std::env::var_os("REFRAIN_MANDARIN_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".mandarin-data"))
}

fn available() -> bool {
    if !Path::new(VOCAB).is_file() {
        return missing(format!("reference vocabulary {VOCAB} not found"));
    }
    let data = data_dir();
    if !data.join("poly_bert_model.onnx").is_file() {
        return missing(format!(
            "Mandarin data files not found in {} (run tools/fetch-mandarin-data.sh)",
            data.display()
        ));
    }
    let ort = root().join(".ort/lib/libonnxruntime.so");
    if std::env::var_os("ORT_DYLIB_PATH").is_none() && !ort.exists() {
        return missing("ONNX Runtime not found (run tools/fetch-onnxruntime.sh)".into());
    }
    true
}

#[test]
fn mandarin_tracks_match_the_reference() {
    if !available() {
        return;
    }
    let path = root().join("tests/data/mandarin/golden.json");
    let golden: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("golden file")).expect("JSON");
    let tracks = golden["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 4, "two LRC files at 95 and 285 s");
    let mut failures = Vec::new();
    for case in tracks {
        let lrc = case["lrc"].as_str().expect("lrc");
        let length = case["length"].as_u64().expect("length");
        let expected: Vec<i64> = serde_json::from_value(case["tokens"].clone()).expect("tokens");
        let out = Command::new(env!("CARGO_BIN_EXE_refrain"))
            .args(["lyrics", "--lrc"])
            .arg(root().join("tests/data/mandarin").join(lrc))
            .args([
                "--length",
                &length.to_string(),
                "--vocab",
                VOCAB,
                "--mandarin",
            ])
            .arg(data_dir())
            .current_dir(root())
            .env_remove("REFRAIN_BUNDLE")
            .output()
            .expect("the refrain binary runs");
        assert!(
            out.status.success(),
            "{lrc} at {length} s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<i64> = serde_json::from_slice(&out.stdout).expect("a JSON array");
        if got != expected {
            let at = (0..expected.len().min(got.len()))
                .find(|&i| expected[i] != got[i])
                .unwrap_or(expected.len().min(got.len()));
            failures.push(format!(
                "{lrc} at {length} s: {} frames expected, {} produced, first difference at frame {at}",
                expected.len(),
                got.len()
            ));
        }
        assert!(
            expected.iter().filter(|&&t| t > 5).count() > 30,
            "{lrc}: the golden track has sung tokens"
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
