"""The export tool on the real DiT architecture at reduced size with random weights: strict
loading, ONNX export of every graph, ONNX Runtime against PyTorch, and a complete bundle."""

import json
import shutil
import subprocess

import numpy as np
import onnx
import pytest
import torch
from conftest import REPO
from export_bundle import main
from refrain_export.checkpoint import CheckpointError, load_dit
from refrain_export.onnx_export import check_dit, export_dit

TEST_BUNDLE = REPO / "models" / "test-bundle"


class FakeVae(torch.nn.Module):
    """A TorchScript module with the published VAE's two methods (not its network)."""

    def __init__(self):
        super().__init__()
        self.dec = torch.nn.ConvTranspose1d(64, 2, 2048, stride=2048)
        self.enc = torch.nn.Conv1d(2, 128, 2048, stride=2048)

    @torch.jit.export
    def decode_export(self, z):
        return torch.tanh(self.dec(z))

    @torch.jit.export
    def encode_export(self, a):
        return self.enc(a)

    def forward(self, z):
        return self.decode_export(z)


def test_loaded_weights_equal_the_checkpoint(checkpoints):
    for kind, (model, path) in checkpoints.items():
        loaded = load_dit(path, kind)
        assert loaded.cfg == model.cfg
        for (k, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert torch.equal(a, b), k


@pytest.mark.parametrize("kind", ["base", "full"])
@pytest.mark.parametrize("half", [False, True])
def test_onnx_matches_pytorch(checkpoints, tmp_path, kind, half):
    model, path = checkpoints[kind]
    loaded = load_dit(path, kind)
    graph = export_dit(loaded, tmp_path / "dit.onnx", half)
    names = [i.name for i in onnx.load(str(graph)).graph.input]
    assert names == ["x", "cond", "text", "time", "style", "start_time"] + (["duration"] if kind == "full" else [])
    assert [o.name for o in onnx.load(str(graph)).graph.output] == ["v"]
    for frames in (17, 300):  # two lengths: the dynamic axes and the position tables
        result = check_dit(loaded, graph, half, frames=frames)
        print(result.line())
        assert result.ok, result.line()
    if kind == "full":  # frames past max_frames use the last position-table row, as the reference
        result = check_dit(loaded, graph, half, frames=6150, batch=1)
        assert result.ok, result.line()


def corrupt(path, tmp_path, edit):
    obj = torch.load(path, weights_only=True)
    edit(obj["model_state_dict"])
    bad = tmp_path / "bad.pt"
    torch.save(obj, bad)
    return bad


def test_strict_loading_names_the_file_and_key(checkpoints, tmp_path):
    _, base = checkpoints["base"]
    _, full = checkpoints["full"]
    cases = [
        (lambda sd: sd.pop("transformer.transformer_blocks.1.mlp.up_proj.weight"), "missing key `transformer.transformer_blocks.1.mlp.up_proj.weight`"),
        (lambda sd: sd.__setitem__("transformer.extra.weight", torch.zeros(3)), "unexpected key `transformer.extra.weight`"),
        (lambda sd: sd.__setitem__("ema_model.proj_out.weight", torch.zeros(3)), "unexpected key `ema_model.proj_out.weight`"),
        (lambda sd: sd.__setitem__("transformer.norm_out.linear.bias", torch.zeros(7)), "key `transformer.norm_out.linear.bias` has shape [7]"),
    ]
    for edit, message in cases:
        bad = corrupt(base, tmp_path, edit)
        with pytest.raises(CheckpointError) as e:
            load_dit(bad, "base")
        assert str(bad) in str(e.value) and message in str(e.value), str(e.value)
    with pytest.raises(CheckpointError, match="given as the base model but it is a full checkpoint"):
        load_dit(full, "base")
    with pytest.raises(CheckpointError, match="given as the full model but it is a base checkpoint"):
        load_dit(base, "full")
    vae = tmp_path / "vae_model.pt"
    torch.jit.script(FakeVae()).save(str(vae))
    with pytest.raises(CheckpointError, match="not a DiffRhythm DiT checkpoint"):
        load_dit(vae, "base")
    ema = tmp_path / "ema.pt"
    torch.save({"ema_model_state_dict": {}}, ema)
    with pytest.raises(CheckpointError, match="EMA"):
        load_dit(ema, "base")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"model": {"dim": 2048, "heads": 32}}))
    with pytest.raises(CheckpointError, match="model.dim = 2048"):
        load_dit(base, "base", config)
    config.write_text(json.dumps({"model": {"dim": 128, "heads": 8, "depth": 2}}))
    assert load_dit(base, "base", config).cfg.depth == 2  # `heads` is ignored: always 32


@pytest.mark.parametrize("style", ["mulan", "onnx"])
def test_complete_bundle(checkpoints, mulan_download, tmp_path, style):
    """``mulan``: the style encoders exported from (reduced, random) MuQ-MuLan weights;
    ``onnx``: ready-made style graphs (here the test bundle's) taken as they are."""
    vae = tmp_path / "vae_model.pt"
    torch.jit.script(FakeVae()).save(str(vae))
    negative = tmp_path / "vocal.npy"
    v = np.random.default_rng(0).standard_normal((1, 512)).astype(np.float32)
    np.save(negative, v / np.linalg.norm(v))
    out = tmp_path / "bundle"
    _, files = mulan_download
    rc = main([
        "--out", str(out),
        "--base", str(checkpoints["base"][1]), "--full", str(checkpoints["full"][1]),
        "--vae", str(vae),
        *(["--mulan", str(files.config.parent), "--muq", str(files.muq_config.parent),
            "--xlmr", str(files.xlmr_config.parent)] if style == "mulan" else
          ["--style-text", str(TEST_BUNDLE / "style_text.onnx"),
           "--tokenizer", str(TEST_BUNDLE / "tokenizer.json"),
           "--style-audio", str(TEST_BUNDLE / "style_audio.onnx")]),
        "--vocab", str(TEST_BUNDLE / "vocab.json"),
        "--negative", str(negative),
        "--mandarin", str(TEST_BUNDLE / "mandarin"),
    ])
    assert rc == 0
    names = {f.name for f in out.iterdir()}
    assert {"bundle.toml", "bundle-f16.toml", "SHA256SUMS", "LICENSES.md", "dit_base.onnx", "dit_full_f16.onnx",
            "vae_decoder.onnx", "vae_encoder.onnx", "negative_style.f32"} <= names
    sums = (out / "SHA256SUMS").read_text()
    assert "dit_full.onnx" in sums and "bundle.toml" in sums and "mandarin/pinyin_2_bpmf.txt" in sums
    assert "CC-BY-NC-4.0" in (out / "bundle.toml").read_text()
    assert 'file = "dit_base_f16.onnx"' in (out / "bundle-f16.toml").read_text()
    assert "style_audio.onnx" in sums and "tokenizer.json" in sums
    tokenizer = files.tokenizer if style == "mulan" else TEST_BUNDLE / "tokenizer.json"
    assert (out / "tokenizer.json").read_bytes() == tokenizer.read_bytes()
    if style == "mulan" and (dest := REPO / "target" / "export-bundle-test").parent.is_dir():
        # Left for trying `refrain generate --bundle target/export-bundle-test` by hand.
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(out, dest)
    # Export -> bundle -> song: the built `refrain` generates with both manifests, base and full.
    refrain = REPO / "target" / "debug" / "refrain"
    if not refrain.is_file():
        pytest.skip("target/debug/refrain not built: `cargo build` for the end-to-end part")
    for manifest, length in (("bundle.toml", "95"), ("bundle-f16.toml", "120")):
        wav = tmp_path / f"{manifest}.wav"
        run = subprocess.run(
            [str(refrain), "generate", "--bundle", str(out / manifest), "--lrc", str(REPO / "examples/demo.lrc"),
             "--prompt", "bright pop", "--length", length, "--steps", "4", "-o", str(wav)],
            capture_output=True, text=True, cwd=REPO,
        )
        assert run.returncode == 0, run.stderr
        assert wav.stat().st_size > 44100 * 4 * 90, run.stderr


def test_large_graphs_keep_their_weights_in_one_external_file(checkpoints, tmp_path, monkeypatch):
    """The real graphs are over protobuf's 2 GB: their weights go to `<graph>.onnx.data`
    (forced here by lowering the threshold), which ONNX Runtime finds next to the graph."""
    from refrain_export import onnx_export

    monkeypatch.setattr(onnx_export, "EXTERNAL_DATA_OVER", 0)
    model = load_dit(checkpoints["full"][1], "full")
    graph = export_dit(model, tmp_path / "dit_full.onnx", half=True)
    data = tmp_path / "dit_full.onnx.data"
    assert data.is_file() and data.stat().st_size > graph.stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("dit_full")) == ["dit_full.onnx", "dit_full.onnx.data"]
    result = check_dit(model, graph, half=True)
    assert result.ok, result.line()
