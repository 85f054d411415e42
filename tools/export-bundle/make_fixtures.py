#!/usr/bin/env python3
"""Writes the sampler parity fixtures: a reduced DiffRhythm DiT (the real architecture, random
weights, full-model kind so the ``duration`` input is exercised) exported with the tool, and for
each case the inputs of ``refrain sample`` and the final latent of the PyTorch reference sampler
(:mod:`refrain_export.sampler`) on them.

    .venv-export/bin/python tools/export-bundle/make_fixtures.py [--out DIR]

Default output: ``inference-node/tests/data/dit-parity/`` (committed; a few MB), checked by
``inference-node/tests/sampler_parity.rs`` without torch. Deterministic for a given torch build.
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

TOOL = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOL))

from refrain_export.dit import DiT, DitConfig  # noqa: E402
from refrain_export.onnx_export import check_dit, export_dit  # noqa: E402
from refrain_export.sampler import sample, time_grid  # noqa: E402

FRAMES = 24
STEPS = 32
CFG = 4.0
#: The reduced model: real layout, small sizes (the lyric width stays 512, see conftest).
SIZES = dict(dim=64, depth=2, ff_mult=2, text_dim=512, conv_layers=1, text_num_embeds=63, max_frames=6144)


def build_model() -> DiT:
    torch.manual_seed(1234)
    model = DiT(DitConfig(**SIZES))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.05)
            # float16 values, as the published checkpoint holds (and the graph compresses well).
            p.copy_(p.half().float())
    return model.eval()


def unit(g: torch.Generator) -> torch.Tensor:
    v = torch.randn(1, 512, generator=g)
    return v / v.norm()


def write_case(out: Path, model: DiT, edit: bool, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    n = FRAMES
    noise = torch.randn(1, n, 64, generator=g)
    text = torch.randint(1, SIZES["text_num_embeds"] + 1, (1, n), generator=g)
    text[:, ::4] = 0
    style, negative = unit(g), unit(g)
    start = torch.zeros(1)
    duration = torch.full((1,), n / SIZES["max_frames"])
    # The reference's grid: linspace in float16, used here in float32 (the f32 graph).
    grid = time_grid(STEPS, torch.float16).float()
    ref = torch.randn(1, n, 64, generator=g) if edit else torch.zeros(1, n, 64)
    mask = torch.zeros(1, n, dtype=torch.bool)
    if edit:
        mask[:, 8:17] = True
    else:
        mask[:] = True
    final = sample(
        model, noise, ref, text, style, negative, start, duration,
        grid=grid, cfg_strength=CFG, gen_mask=mask,
    )
    out.mkdir(parents=True, exist_ok=True)
    step_cond = torch.where(mask.unsqueeze(-1), torch.zeros_like(ref), ref)
    arrays = {
        "noise": noise, "cond": step_cond, "text": text, "style": style,
        "neg_style": negative, "start_time": start, "duration": duration, "t_grid": grid,
        "expected": final,
    }
    if edit:
        arrays.update(gen_mask=mask, ref_latent=ref)
    for name, t in arrays.items():
        np.save(out / f"{name}.npy", t.numpy())
    return float(final.abs().max())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=TOOL.parents[1] / "inference-node/tests/data/dit-parity")
    args = p.parse_args()
    model = build_model()
    graph = export_dit(model, args.out / "dit.onnx", half=False)
    result = check_dit(model, graph, half=False)
    print(result.line())
    if not result.ok:
        return 1
    # Committed gzipped (reproducibly: no name or time in the header), the graph beside it
    # removed: the repository keeps no file over 8 MB.
    with open(graph, "rb") as plain, open(args.out / "dit.onnx.gz", "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as packed:
            shutil.copyfileobj(plain, packed)
    Path(graph).unlink()
    for case, edit, seed in (("plain", False, 1), ("edit", True, 2)):
        peak = write_case(args.out / case, model, edit, seed)
        print(f"{case}: {FRAMES} frames, {STEPS - 1} Euler steps, CFG {CFG}, |final| up to {peak:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
