"""Strict loading of a published DiffRhythm ``cfm_model.pt`` into :class:`~refrain_export.dit.DiT`.

The published file is ``torch.save({"model_state_dict": OrderedDict})`` with every tensor under
``transformer.`` and in float16 (219 tensors for the base model, 223 for the full model, whose
extra four are ``transformer.duration_time_embed.*``). The reference loads it with
``strict=False``, which would leave any misnamed weight random; here every missing key,
unexpected key, wrong shape or wrong checkpoint kind stops the export with a
:class:`CheckpointError` that names the file and the key.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .dit import FULL_MAX_FRAMES, DiT, DitConfig

PREFIX = "transformer."
BASE_MAX_FRAMES = 2048


class CheckpointError(Exception):
    """A checkpoint that cannot be exported; the message names the file and, where one is to
    blame, the key."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"{path}: {message}")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``model_state_dict`` of a ``cfm_model.pt``, refusing every other kind of file."""
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a TorchScript archive, a VAE, a truncated download, ...
        raise CheckpointError(
            path,
            "not a DiffRhythm DiT checkpoint (torch.load with weights_only failed: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); expected the "
            "`cfm_model.pt` of ASLP-lab/DiffRhythm-1_2 or -1_2-full",
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(path, f"expected a dict with `model_state_dict`, found {type(obj).__name__}")
    if "model_state_dict" not in obj:
        kinds = ", ".join(sorted(map(str, obj.keys()))[:6])
        hint = " (a training checkpoint with EMA weights: not the published inference file)" if (
            "ema_model_state_dict" in obj
        ) else ""
        raise CheckpointError(path, f"no `model_state_dict` (keys: {kinds}){hint}")
    sd = obj["model_state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise CheckpointError(path, "`model_state_dict` is empty or not a mapping")
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(path, f"key `{key}` is not a tensor")
        if not key.startswith(PREFIX):
            raise CheckpointError(path, f"unexpected key `{key}` (every key starts with `{PREFIX}`)")
    return {k[len(PREFIX):]: v for k, v in sd.items()}


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def infer_config(path: Path, sd: dict[str, torch.Tensor], config_json: Path | None) -> DitConfig:
    """Sizes from the tensors' shapes, cross-checked against the Hub's ``config.json`` when one
    is given. The full model is told apart by its duration embedding."""

    def shape(key: str) -> tuple[int, ...]:
        if key not in sd:
            raise CheckpointError(path, f"missing key `{PREFIX}{key}`")
        return tuple(sd[key].shape)

    out_dim, dim = shape("proj_out.weight")
    vocab, text_dim = shape("text_embed.text_embed.weight")
    hidden = shape("transformer_blocks.0.mlp.gate_proj.weight")[0]
    if hidden % dim:
        raise CheckpointError(path, f"key `{PREFIX}transformer_blocks.0.mlp.gate_proj.weight`: {hidden} rows is not a multiple of dim {dim}")
    full = any(k.startswith("duration_time_embed.") for k in sd)
    cfg = DitConfig(
        dim=dim,
        depth=_count(sd, r"transformer_blocks\.(\d+)\."),
        ff_mult=hidden // dim,
        text_dim=text_dim,
        conv_layers=_count(sd, r"text_embed\.text_blocks\.(\d+)\."),
        mel_dim=out_dim,
        text_num_embeds=vocab - 1,
        max_frames=FULL_MAX_FRAMES if full else BASE_MAX_FRAMES,
    )
    if config_json is not None:
        try:
            model = json.loads(config_json.read_text())["model"]
        except (OSError, ValueError, KeyError) as e:
            raise CheckpointError(config_json, f"cannot read the model config: {e}") from None
        for key, value in model.items():
            if key == "heads":
                continue  # ignored by the reference: always 32 heads (dit.HEADS)
            if not hasattr(cfg, key):
                raise CheckpointError(config_json, f"unknown config key `model.{key}`")
            if getattr(cfg, key) != value:
                raise CheckpointError(
                    path,
                    f"config {config_json} says model.{key} = {value}, the checkpoint's tensors "
                    f"say {getattr(cfg, key)}",
                )
    return cfg


def load_dit(
    path: Path,
    kind: str,
    config_json: Path | None = None,
    fp16_tables: bool = True,
) -> DiT:
    """Builds a float32 :class:`DiT` from ``path`` and loads it strictly. ``kind`` is ``base``
    or ``full``: a checkpoint of the other kind is refused."""
    sd = read_state_dict(path)
    cfg = infer_config(path, sd, config_json)
    found = "full" if cfg.has_duration else "base"
    if kind != found:
        raise CheckpointError(
            path,
            f"given as the {kind} model but it is a {found} checkpoint "
            f"({'has' if cfg.has_duration else 'has no'} `{PREFIX}duration_time_embed.*`; "
            "base = ASLP-lab/DiffRhythm-1_2, full = ASLP-lab/DiffRhythm-1_2-full)",
        )
    model = DiT(cfg, fp16_tables=fp16_tables)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise CheckpointError(path, f"missing key `{PREFIX}{missing[0]}` ({len(missing)} missing in all)")
    if unexpected:
        raise CheckpointError(path, f"unexpected key `{PREFIX}{unexpected[0]}` ({len(unexpected)} unexpected in all)")
    for key, want in expected.items():
        got = sd[key]
        if tuple(got.shape) != tuple(want.shape):
            raise CheckpointError(
                path, f"key `{PREFIX}{key}` has shape {list(got.shape)}, expected {list(want.shape)}"
            )
        if not got.is_floating_point():
            raise CheckpointError(path, f"key `{PREFIX}{key}` is {got.dtype}, expected a float tensor")
        if not torch.isfinite(got).all():
            raise CheckpointError(path, f"key `{PREFIX}{key}` holds NaN or infinite values")
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model.eval()


def save_published_layout(model: DiT, path: Path) -> None:
    """Writes ``model`` as the published ``cfm_model.pt`` is laid out (float16, ``transformer.``
    keys, no buffers): what the tests export from."""
    sd = {PREFIX + k: v.detach().half().clone() for k, v in model.state_dict().items()}
    torch.save({"model_state_dict": sd}, path)
