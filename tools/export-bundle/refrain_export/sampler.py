"""A PyTorch implementation of DiffRhythm's sampler (``CFM.sample`` with torchdiffeq's fixed-grid
Euler, the reference CLI's settings), written from its description for the parity fixtures and
the benchmark: the Rust sampler must land on the same final latent.

* time grid: ``linspace(0, 1, steps)`` in the model's precision (float16 for the reference:
  :func:`time_grid` with ``torch.float16``), no sway warping; ``steps`` points, ``steps - 1``
  Euler steps ``x += (t1 - t0) * v(t0, x)``;
* guidance: ``v = v_c + (v_c - v_u) * cfg``; the conditional call sees the edit reference with
  the regenerated frames zeroed (``step_cond``), the lyric tokens and the style; the
  unconditional call sees zero ``cond``, zero tokens and the negative style (replaced, not
  zeroed), with the same time, start time and duration;
* edit mode: ``gen_mask`` (true = generate) selects the frames taken from the sampled latent;
  the others are the reference latent pasted back.
"""

from __future__ import annotations

import torch


def time_grid(steps: int, dtype: torch.dtype = torch.float16) -> torch.Tensor:
    """The reference's grid: ``torch.linspace(0, 1, steps)`` created in ``dtype``."""
    return torch.linspace(0, 1, steps, dtype=dtype)


@torch.no_grad()
def sample(
    dit,
    noise: torch.Tensor,
    cond: torch.Tensor,
    text: torch.Tensor,
    style: torch.Tensor,
    negative: torch.Tensor,
    start_time: torch.Tensor,
    duration: torch.Tensor | None = None,
    *,
    grid: torch.Tensor | None = None,
    steps: int = 32,
    cfg_strength: float = 4.0,
    gen_mask: torch.Tensor | None = None,
    on_step=None,
) -> torch.Tensor:
    """Samples ``[B, N, 64]`` latents from ``noise``.

    ``cond`` is the reference latent ``[B, N, 64]`` (zeros when not editing), ``text`` ``[B, N]``,
    ``style`` and ``negative`` ``[B, 512]``, ``start_time`` and ``duration`` ``[B]``; ``gen_mask``
    ``[B, N]`` bool (true = generate; all true when absent). Arithmetic runs in ``noise``'s
    dtype; ``grid`` defaults to :func:`time_grid` in that dtype.
    """
    dtype = noise.dtype
    if grid is None:
        grid = time_grid(steps, dtype)
    grid = grid.to(dtype)
    if gen_mask is None:
        gen_mask = torch.ones(noise.shape[:2], dtype=torch.bool)
    keep = gen_mask.unsqueeze(-1)
    step_cond = torch.where(keep, torch.zeros_like(cond), cond)
    zero_cond = torch.zeros_like(step_cond)
    zero_text = torch.zeros_like(text)
    batch = noise.shape[0]
    extra = () if duration is None else (duration,)
    x = noise
    for i in range(len(grid) - 1):
        t0, t1 = grid[i], grid[i + 1]
        t = t0.repeat(batch)
        v_c = dit(x, step_cond, text, t, style, start_time, *extra)
        if cfg_strength < 1e-5:
            v = v_c
        else:
            v_u = dit(x, zero_cond, zero_text, t, negative, start_time, *extra)
            v = v_c + (v_c - v_u) * cfg_strength
        x = x + (t1 - t0) * v
        if on_step is not None:
            on_step(i)
    return torch.where(keep, x, cond)
