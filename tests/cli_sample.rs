//! `refrain sample`: the sampler alone on NumPy inputs, through the binary, on the committed
//! parity fixtures (`inference-node/tests/data/dit-parity/`, a reduced real-architecture DiT and
//! the PyTorch reference sampler's final latent). Skipped without ONNX Runtime, except in CI.

use std::process::Command;

#[path = "../inference-node/tests/common/parity.rs"]
mod parity;
mod support;
use parity::{fixture_dit, fixtures};
use support::{ort_available, workspace};

/// The f32 values of a version-1 `.npy` file (the header is not checked beyond its length).
fn npy_f32(path: &std::path::Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert!(bytes.starts_with(b"\x93NUMPY\x01"), "{}", path.display());
    let start = 10 + u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert!(String::from_utf8_lossy(&bytes[10..start]).contains("'<f4'"));
    bytes[start..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn sample(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_refrain"))
        .arg("sample")
        .args(args)
        .current_dir(workspace())
        .env_remove("REFRAIN_ORT_LIBRARY")
        .env_remove("REFRAIN_DEVICE")
        .output()
        .expect("the refrain binary runs")
}

#[test]
fn sample_writes_the_reference_samplers_latent() {
    if !ort_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dit = fixture_dit();
    for case in ["plain", "edit"] {
        let out = dir.path().join(format!("{case}.npy"));
        let inputs = fixtures().join(case);
        let run = sample(&[
            "--dit",
            dit.to_str().unwrap(),
            "--inputs",
            inputs.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        assert!(err.contains("31 steps"), "{err}");
        let (got, want) = (npy_f32(&out), npy_f32(&inputs.join("expected.npy")));
        assert_eq!(got.len(), 24 * 64);
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-3, "{case}: {worst}");
    }
    // A wrong input is named, with a non-zero exit.
    let run = sample(&[
        "--dit",
        dit.to_str().unwrap(),
        "--inputs",
        dir.path().to_str().unwrap(),
        "-o",
        dir.path().join("x.npy").to_str().unwrap(),
    ]);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("noise.npy is missing"));
}
