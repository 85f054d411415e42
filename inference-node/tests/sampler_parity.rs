//! Refrain's sampler against the PyTorch reference sampler on the real DiT architecture.
//!
//! `tests/data/dit-parity/` holds a reduced DiffRhythm DiT (real layout, random weights, with
//! the full model's `duration` input) exported by `tools/export-bundle`, and per case the
//! inputs of `refrain sample` with the final latent of the tool's PyTorch `CFM.sample`
//! (Euler on the reference's float16 32-point grid, CFG 4, uncond pass with cond and text
//! zeroed and the negative style; the edit case regenerates frames 8..17 and pastes the
//! reference back). Regenerate with `tools/export-bundle/make_fixtures.py`; no torch here.

mod common;
#[path = "common/parity.rs"]
mod parity;
use parity::{fixture_dit, fixtures};

use ndarray::Array3;
use refrain_inference::bundle::Solver;
use refrain_inference::runtime::{Runtime, RuntimeConfig};
use refrain_inference::sample_files::{self, SampleFilesError};
use refrain_inference::sampler::{CfgMode, SamplerSettings};

fn settings(cfg_mode: CfgMode) -> SamplerSettings {
    SamplerSettings {
        steps: 32,
        cfg_strength: 4.0,
        solver: Solver::Euler,
        sway_coef: None,
        cfg_mode,
    }
}

fn expected(case: &str) -> Array3<f32> {
    ndarray_npy::read_npy(fixtures().join(case).join("expected.npy")).expect("expected.npy")
}

#[test]
fn rust_sampler_matches_the_pytorch_reference_sampler() {
    if !common::ort_available() {
        return;
    }
    let runtime = Runtime::init(RuntimeConfig::default()).expect("ONNX Runtime");
    let mut dit = sample_files::load_dit(&runtime, &fixture_dit()).expect("dit");
    assert!(dit.has_duration);
    for case in ["plain", "edit"] {
        let want = expected(case);
        for mode in [CfgMode::Batched, CfgMode::Separate] {
            let run = sample_files::run(&mut dit, &fixtures().join(case), &settings(mode))
                .expect("sampler runs");
            assert_eq!(run.steps, 31);
            assert_eq!(run.latent.shape(), want.shape());
            let err = run
                .latent
                .iter()
                .zip(want.iter())
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            let peak = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            eprintln!(
                "{case} {mode:?}: largest |Rust - PyTorch| = {err:.2e} (|x| up to {peak:.2})"
            );
            assert!(err < 1e-3, "{case} {mode:?}: {err}");
        }
    }
    // Edit mode: outside the regenerated frames the reference latent comes back exactly.
    let edit = fixtures().join("edit");
    let run = sample_files::run(&mut dit, &edit, &settings(CfgMode::Auto)).unwrap();
    let reference: Array3<f32> = ndarray_npy::read_npy(edit.join("ref_latent.npy")).unwrap();
    let mask: ndarray::Array2<bool> = ndarray_npy::read_npy(edit.join("gen_mask.npy")).unwrap();
    for (f, &generate) in mask.row(0).iter().enumerate() {
        let same =
            run.latent.slice(ndarray::s![0, f, ..]) == reference.slice(ndarray::s![0, f, ..]);
        assert_eq!(same, !generate, "frame {f}");
    }
}

#[test]
fn bad_input_directories_name_the_file() {
    if !common::ort_available() {
        return;
    }
    let runtime = Runtime::init(RuntimeConfig::default()).expect("ONNX Runtime");
    let mut dit = sample_files::load_dit(&runtime, &fixture_dit()).expect("dit");
    let dir = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(fixtures().join("edit")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
    }
    std::fs::remove_file(dir.path().join("duration.npy")).unwrap();
    let e = sample_files::run(&mut dit, dir.path(), &settings(CfgMode::Auto)).unwrap_err();
    assert!(matches!(e, SampleFilesError::Missing { .. }), "{e}");
    assert!(e.to_string().contains("duration.npy"), "{e}");
    std::fs::copy(
        fixtures().join("edit/duration.npy"),
        dir.path().join("duration.npy"),
    )
    .unwrap();
    std::fs::copy(
        fixtures().join("edit/style.npy"),
        dir.path().join("text.npy"),
    )
    .unwrap();
    let e = sample_files::run(&mut dit, dir.path(), &settings(CfgMode::Auto)).unwrap_err();
    assert!(e.to_string().contains("text.npy"), "{e}");
    std::fs::copy(
        fixtures().join("edit/text.npy"),
        dir.path().join("text.npy"),
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("ref_latent.npy")).unwrap();
    let e = sample_files::run(&mut dit, dir.path(), &settings(CfgMode::Auto)).unwrap_err();
    assert!(e.to_string().contains("ref_latent.npy"), "{e}");
}

/// IO binding (the node setting, here on the CPU) gives the plain runs' latents bit for bit on
/// the real architecture, in every CFG layout and both cases.
#[test]
fn io_binding_matches_plain_runs_bit_for_bit() {
    if !common::ort_available() {
        return;
    }
    use refrain_inference::runtime::DeviceSettings;
    let load = |io_binding| {
        let settings = DeviceSettings {
            io_binding: Some(io_binding),
            ..DeviceSettings::default()
        };
        let runtime = Runtime::init_with(RuntimeConfig::default(), settings).expect("ORT");
        sample_files::load_dit(&runtime, &fixture_dit()).expect("dit")
    };
    let (mut bound, mut plain) = (load(true), load(false));
    assert!(bound.io.is_some() && plain.io.is_none());
    for case in ["plain", "edit"] {
        for mode in [CfgMode::Batched, CfgMode::Separate, CfgMode::Single] {
            let dir = fixtures().join(case);
            let a = sample_files::run(&mut bound, &dir, &settings(mode)).unwrap();
            let b = sample_files::run(&mut plain, &dir, &settings(mode)).unwrap();
            assert!(a.latent == b.latent, "{case} {mode:?}");
        }
    }
}
