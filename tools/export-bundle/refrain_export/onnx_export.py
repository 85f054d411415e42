"""ONNX export of a :class:`~refrain_export.dit.DiT` and its check against PyTorch.

The graph's inputs and output are named as the bundle contract says (``x, cond, text, time,
style, start_time[, duration] -> v``) with dynamic batch and frame axes. A graph whose weights
exceed 2 GB (the real model in float32, and in float16 too: 2.22 GB) keeps them in one
external data file next to it (``<graph>.onnx.data``), which ONNX Runtime finds by itself.

The float16 graph is exported from the ``.half()`` module, as the reference runs the model, so
its rounding follows the reference's float16 arithmetic rather than a converted float32 graph.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

from .dit import DiT

OPSET = 17
#: Protobuf's limit: larger graphs keep their weights in an external data file.
EXTERNAL_DATA_OVER = 2 * 1024**3 - 64 * 1024**2


class ExportError(Exception):
    """The export or its check failed; the message says which graph and why."""


def example_inputs(model: DiT, batch: int, frames: int, dtype: torch.dtype, seed: int = 0):
    """Inputs shaped like the sampler's: noise-like ``x``, a partial ``cond``, lyric tokens with
    pads, a unit style, a time in (0, 1), start time 0 and ``duration = N / max_frames``."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    x = torch.randn(batch, frames, cfg.mel_dim, generator=g)
    cond = torch.randn(batch, frames, cfg.mel_dim, generator=g)
    cond[:, frames // 2 :] = 0
    text = torch.randint(0, cfg.text_num_embeds + 1, (batch, frames), generator=g)
    text[:, ::3] = 0
    style = torch.randn(batch, 512, generator=g)
    style = style / style.norm(dim=-1, keepdim=True)
    time = torch.rand(batch, generator=g)
    start = torch.zeros(batch)
    inputs = [x, cond, text, time, style, start]
    if cfg.has_duration:
        inputs.append(torch.full((batch,), frames / cfg.max_frames))
    return tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)


def _size_of(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def export_dit(model: DiT, out: Path, half: bool) -> Path:
    """Writes ``model`` (float32 or, with ``half``, float16) to ``out``; returns ``out``."""
    dtype = torch.float16 if half else torch.float32
    m = model.half() if half else model.float()
    names = m.input_names()
    args = example_inputs(m, 2, 48, dtype)
    axes = {n: {0: "B"} for n in names}
    for n in ("x", "cond", "text"):
        axes[n] = {0: "B", 1: "N"}
    axes["v"] = {0: "B", 1: "N"}
    large = _size_of(m) > EXTERNAL_DATA_OVER
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "graph.onnx"
        with torch.no_grad():
            torch.onnx.export(
                m,
                args,
                str(raw),
                input_names=names,
                output_names=["v"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
                do_constant_folding=True,
            )
        graph = onnx.load(str(raw), load_external_data=True)
        data = out.with_name(out.name + ".data")
        for stale in (out, data):
            if stale.exists():
                stale.unlink()
        if large:
            onnx.save_model(
                graph,
                str(out),
                save_as_external_data=True,
                all_tensors_to_one_file=True,
                location=data.name,
                size_threshold=1024,
            )
            # onnx creates the data file private to its owner; a bundle is read by a service user.
            data.chmod(0o644)
        else:
            onnx.save_model(graph, str(out))
    model.float()
    return out


@dataclass
class CheckResult:
    graph: str
    max_abs_error: float
    max_abs_reference: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance

    def line(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"{self.graph}: largest |ORT - PyTorch| = {self.max_abs_error:.3g} "
            f"(|v| up to {self.max_abs_reference:.3g}, tolerance {self.tolerance:.3g}) {verdict}"
        )


def session(path: Path, providers: list[str] | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=providers or ["CPUExecutionProvider"])


def check_dit(
    model: DiT,
    path: Path,
    half: bool,
    frames: int = 40,
    batch: int = 2,
    providers: list[str] | None = None,
) -> CheckResult:
    """Runs the graph at ``path`` and the float32 PyTorch module on the same short input (at a
    frame count other than the export's, so the dynamic axes are exercised) and compares. The
    float16 graph is held to float16's precision, the float32 one to float32's."""
    args = example_inputs(model, batch, frames, torch.float32, seed=1)
    with torch.no_grad():
        ref = model.float()(*args).numpy()
    feeds = {}
    for name, t in zip(model.input_names(), args):
        a = t.numpy()
        if a.dtype == np.float32 and half:
            a = a.astype(np.float16)
        feeds[name] = a
    got = session(path, providers).run(["v"], feeds)[0].astype(np.float32)
    if got.shape != ref.shape:
        raise ExportError(f"{path}: `v` has shape {got.shape}, PyTorch gives {ref.shape}")
    scale = float(np.abs(ref).max())
    err = float(np.abs(got - ref).max())
    tol = (3e-2 if half else 1e-4) * max(scale, 1.0)
    return CheckResult(os.path.basename(path), err, scale, tol)
