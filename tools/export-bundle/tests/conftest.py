"""Shared helpers of the export tests: a reduced DiT of the real architecture with random
weights, saved as the published checkpoint is laid out."""

import sys
from pathlib import Path

import pytest
import torch

TOOL = Path(__file__).resolve().parents[1]
REPO = TOOL.parents[1]
sys.path.insert(0, str(TOOL))

from refrain_export.checkpoint import save_published_layout  # noqa: E402
from refrain_export.dit import DiT, DitConfig  # noqa: E402


def reduced_dit(kind: str, seed: int = 0, **sizes) -> DiT:
    """The real architecture at reduced width and depth (the lyric width stays 512: the text
    fusion layers take the 512-wide conditioning), every weight random."""
    cfg = dict(dim=128, depth=2, ff_mult=2, text_dim=512, conv_layers=2, text_num_embeds=363)
    cfg.update(sizes)
    torch.manual_seed(seed)
    model = DiT(DitConfig(**cfg, max_frames=6144 if kind == "full" else 2048))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.04)
    return model.eval()


@pytest.fixture
def checkpoints(tmp_path):
    """``{kind: (model, path)}`` for a reduced base and full model in the published layout.
    The returned modules hold the float16-rounded weights, as the export loads them."""
    out = {}
    for kind in ("base", "full"):
        model = reduced_dit(kind, seed=1 if kind == "base" else 2)
        path = tmp_path / f"{kind}_cfm_model.pt"
        save_published_layout(model, path)
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
        out[kind] = (model, path)
    return out
