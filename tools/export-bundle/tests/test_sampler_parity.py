"""The committed sampler fixtures against a fresh run of their generator, and the float16 path:
`refrain sample` on a float16 export against the PyTorch sampler run in float16, as the
reference runs (its model is `.half()`)."""

import subprocess

import make_fixtures
import numpy as np
import pytest
import torch
from conftest import REPO
from refrain_export.onnx_export import export_dit
from refrain_export.sampler import sample

FIXTURES = REPO / "inference-node" / "tests" / "data" / "dit-parity"


def test_committed_fixtures_are_what_the_generator_writes(tmp_path):
    model = make_fixtures.build_model()
    for case, edit, seed in (("plain", False, 1), ("edit", True, 2)):
        make_fixtures.write_case(tmp_path / case, model, edit, seed)
        for f in sorted((FIXTURES / case).iterdir()):
            want, got = np.load(f), np.load(tmp_path / case / f.name)
            assert want.dtype == got.dtype and want.shape == got.shape, f
            assert np.abs(want.astype(np.float64) - got.astype(np.float64)).max() <= 1e-5, f


def test_rust_float16_sampler_matches_pytorch_float16(tmp_path):
    refrain = REPO / "target" / "debug" / "refrain"
    if not refrain.is_file():
        pytest.skip("target/debug/refrain not built")
    model = make_fixtures.build_model()
    graph = export_dit(model, tmp_path / "dit_f16.onnx", half=True)
    case = FIXTURES / "edit"
    arrays = {f.stem: torch.from_numpy(np.load(f)) for f in case.glob("*.npy")}
    h = {k: v.half() if v.is_floating_point() else v for k, v in arrays.items()}
    want = sample(
        model.half(), h["noise"], h["ref_latent"], h["text"], h["style"], h["neg_style"], h["start_time"],
        h["duration"], grid=h["t_grid"], gen_mask=h["gen_mask"],
    ).float().numpy()
    out = tmp_path / "final.npy"
    run = subprocess.run(
        [str(refrain), "sample", "--dit", str(graph), "--inputs", str(case), "-o", str(out)],
        capture_output=True, text=True, cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    got = np.load(out)
    err = float(np.abs(got - want).max())
    print(f"float16: largest |Rust - PyTorch| = {err:.3g} (|x| up to {np.abs(want).max():.3g})")
    # A few float16 ulps at |x| ~ 4 (ulp 2^-8): the two runtimes' kernels round differently.
    assert err < 2e-2
