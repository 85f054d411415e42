"""The bundle's parts other than the DiT: the VAE graphs from the published TorchScript
``vae_model.pt``, the style encoders, the lyric vocabulary and the negative style.

* **VAE.** ``vae_model.pt`` is a TorchScript module with ``decode_export(latent [B,64,T]) ->
  audio [B,2,T*2048]`` and ``encode_export(audio [B,2,S]) -> [B,128,S/2048]`` (mean and scale;
  Refrain samples the latent from them as the reference does). Each method is wrapped in a
  script module and exported to ONNX in float32 (the reference decodes in float32).
* **Style encoders, ready-made** (``--style-text``/``--style-audio``; the default is to export
  them from MuQ-MuLan's weights, ``mulan.py``): ONNX graphs of MuQ-MuLan's text and audio
  towers that the user already has; their inputs and output are renamed to the contract's names
  after checking their types, and each is run once to check that it gives 512 values per row.
* **Mandarin data** (optional): the files of a DiffRhythm checkout's ``g2p/sources/``,
  flattened into ``mandarin/`` (the layout ``docs/mandarin.md`` describes).
* **Vocabulary** (``g2p/g2p/vocab.json``) and **negative style** (``infer/example/vocal.npy``,
  512 float32 of unit norm) are checked and copied.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import torch


class PartError(Exception):
    """A part that cannot go into the bundle; the message names the file."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"{path}: {message}")


class _Decode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latent):
        return self.vae.decode_export(latent)


class _Encode(torch.nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, audio):
        return self.vae.encode_export(audio)


def load_vae(path: Path):
    """The TorchScript VAE, refusing a file without ``decode_export``/``encode_export``."""
    try:
        vae = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as e:
        raise PartError(path, f"not a TorchScript VAE (torch.jit.load failed: {type(e).__name__}); expected `vae_model.pt` of ASLP-lab/DiffRhythm-vae") from None
    for method in ("decode_export", "encode_export"):
        if not hasattr(vae, method):
            raise PartError(path, f"the TorchScript module has no `{method}`: not the DiffRhythm VAE")
    return vae


def export_vae(path: Path, out_dir: Path) -> list[Path]:
    """Writes ``vae_decoder.onnx`` and ``vae_encoder.onnx`` and checks both against PyTorch."""
    import onnxruntime as ort

    vae = load_vae(path)
    written = []
    for wrapper, name, inp, out, example, axes in (
        (_Decode, "vae_decoder.onnx", "latent", "audio", torch.randn(1, 64, 4), {0: "B", 2: "T"}),
        (_Encode, "vae_encoder.onnx", "audio", "latent", torch.randn(1, 2, 4 * 2048) * 0.3, {0: "B", 2: "S"}),
    ):
        target = out_dir / name
        # A script wrapper: tracing cannot call into a TorchScript method other than `forward`.
        module = torch.jit.script(wrapper(vae).eval())
        with torch.no_grad():
            torch.onnx.export(
                module, (example,), str(target), input_names=[inp], output_names=[out],
                dynamic_axes={inp: axes, out: {0: "B", 2: "T" if out == "latent" else "S"}},
                opset_version=17, dynamo=False,
            )
        probe = torch.randn(1, 64, 6) if inp == "latent" else torch.randn(1, 2, 6 * 2048) * 0.3
        with torch.no_grad():
            ref = module(probe).numpy()
        got = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"]).run(
            [out], {inp: probe.numpy()}
        )[0]
        err = float(np.abs(got - ref).max())
        scale = float(np.abs(ref).max())
        print(f"{name}: largest |ORT - PyTorch| = {err:.3g} (values up to {scale:.3g})")
        if err > 1e-3 * max(scale, 1.0):
            raise PartError(target, f"ONNX Runtime differs from PyTorch by {err:.3g}")
        written.append(target)
    return written


def _rename_io(graph: onnx.ModelProto, renames: dict[str, str]) -> None:
    g = graph.graph
    for node in g.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for vi in list(g.input) + list(g.output):
        vi.name = renames.get(vi.name, vi.name)


def _elem(vi) -> int:
    return vi.type.tensor_type.elem_type


def import_style(path: Path, target: Path, kind: str) -> Path:
    """Copies a style encoder graph into the bundle under the contract's names.

    ``kind`` ``text``: two int64 inputs (``input_ids``, ``attention_mask``, in that order);
    ``audio``: one float input (``wav``). The single output becomes ``embedding``; it must give
    512 values per row on a probe run."""
    import onnxruntime as ort

    try:
        graph = onnx.load(str(path))
    except Exception as e:
        raise PartError(path, f"not an ONNX graph ({type(e).__name__})") from None
    inits = {i.name for i in graph.graph.initializer}
    inputs = [i for i in graph.graph.input if i.name not in inits]
    want = ["input_ids", "attention_mask"] if kind == "text" else ["wav"]
    if len(inputs) != len(want):
        raise PartError(path, f"a {kind} style encoder has {len(want)} inputs ({', '.join(want)}), this graph has {[i.name for i in inputs]}")
    for vi in inputs:
        ok = _elem(vi) == onnx.TensorProto.INT64 if kind == "text" else _elem(vi) in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)
        if not ok:
            raise PartError(path, f"input `{vi.name}` has element type {_elem(vi)}, not what a {kind} encoder takes")
    if len(graph.graph.output) != 1:
        raise PartError(path, f"expected one output (the 512-d embedding), found {[o.name for o in graph.graph.output]}")
    renames = {vi.name: w for vi, w in zip(inputs, want)}
    renames[graph.graph.output[0].name] = "embedding"
    _rename_io(graph, renames)
    onnx.save_model(graph, str(target))
    sess = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    if kind == "text":
        feeds = {"input_ids": np.array([[5, 6, 7, 8]], dtype=np.int64), "attention_mask": np.ones((1, 4), dtype=np.int64)}
    else:
        dt = np.float16 if _elem(inputs[0]) == onnx.TensorProto.FLOAT16 else np.float32
        feeds = {"wav": (np.sin(np.arange(240000) * 0.05) * 0.3).astype(dt)[None]}
    out = sess.run(["embedding"], feeds)[0]
    if out.shape != (1, 512):
        raise PartError(path, f"the embedding has shape {list(out.shape)} on a probe, expected [1, 512]")
    return target


def copy_vocab(path: Path, target: Path) -> Path:
    """Checks the ``{"vocab": {symbol: id}}`` layout and copies the file."""
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PartError(path, f"not a phoneme vocabulary `{{\"vocab\": {{symbol: id}}}}` ({e})") from None
    if not vocab or not all(isinstance(i, int) and i >= 0 for i in vocab.values()):
        raise PartError(path, "the vocabulary is empty or has ids that are not non-negative integers")
    shutil.copyfile(path, target)
    return target


def copy_negative(path: Path, target: Path) -> Path:
    """Checks ``vocal.npy`` (512 float32, unit norm) and writes it as raw little-endian f32."""
    try:
        v = np.load(path)
    except Exception as e:
        raise PartError(path, f"not a NumPy file ({type(e).__name__})") from None
    if v.dtype != np.float32 or v.size != 512:
        raise PartError(path, f"expected 512 float32 values (shape [1, 512]), found {v.dtype} {list(v.shape)}")
    norm = float(np.linalg.norm(v))
    if not np.isfinite(v).all() or abs(norm - 1.0) > 1e-2:
        raise PartError(path, f"expected a unit-norm style embedding, its norm is {norm:.4f}")
    v.reshape(-1).astype("<f4").tofile(target)
    return target


#: The Mandarin front end's files: (name, required), looked up in ``g2p/sources/`` and in its
#: ``g2p_chinese_model/`` folder.
MANDARIN_FILES = [
    ("chinese_lexicon.txt", True),
    ("pinyin_2_bpmf.txt", True),
    ("polychar.txt", False),
    ("polydict.json", False),
    ("vocab.txt", False),
    ("poly_bert_model.onnx", False),
]


def copy_mandarin(sources: Path, target: Path) -> Path:
    """Flattens DiffRhythm's ``g2p/sources`` (or an already flat folder) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    for name, required in MANDARIN_FILES:
        found = next((p for p in (sources / name, sources / "g2p_chinese_model" / name) if p.is_file()), None)
        if found is None:
            if required:
                raise PartError(sources, f"no `{name}` here or in `g2p_chinese_model/` (give DiffRhythm's g2p/sources)")
            continue
        shutil.copyfile(found, target / name)
    return target
