"""The DiffRhythm v1.2 DiT as Refrain's own PyTorch modules, laid out so that the published
``cfm_model.pt`` state_dict (keys ``transformer.<name>``) loads into it one to one.

Architecture (from the published weights' layout and the DiffRhythm paper's description; see the
README's "Real songs" section): a flow-matching transformer over 64-channel VAE latents.

* time, start time (and, full model only, song duration) each pass a 256-wide sinusoidal
  embedding (``[sin | cos](1000 t e^{-k ln(1e4)/127})``) and an MLP 256 -> 512 -> 512 with SiLU;
  their sum ``c`` conditions the input and the final norm;
* lyrics: an embedding of ``text_num_embeds + 1`` tokens (0 = pad), plus a sinusoidal position
  table ``[cos | sin]`` over ``max_frames`` positions (clamped), then ConvNeXt-V2 blocks
  (depthwise conv 7, LayerNorm, Linear x2, GELU, global response norm over time);
* input: ``Linear([x, cond, text, style, c])``, plus a grouped-convolution position embedding
  (two Conv1d k=31, 16 groups, Mish);
* ``depth`` pre-norm transformer layers (RMSNorm eps 1e-6, bidirectional attention with rotary
  position embedding theta 1e4, SwiGLU feed-forward ``dim * ff_mult``, no biases); after each of
  the first ``depth // 2`` layers the text embedding is added through ``SiLU(Linear)``;
* final adaptive LayerNorm (``scale, shift = Linear(SiLU(c))``, no affine, eps 1e-6) and
  ``Linear(dim -> 64)``.

Quirks of the published model that these modules reproduce on purpose:

* **32 attention heads whatever the config's ``heads`` says** (the reference builds its layers
  from a config that never receives ``heads``): head size is ``dim / 32``.
* **fp16-rounded position tables.** The reference calls ``.half()`` on the whole model, which
  rounds the rotary inverse frequencies and the lyric position table to float16 before any use.
  :class:`DiT` does the same by default (``fp16_tables=True``), also in a float32 export, so a
  float32 graph computes what the reference's float16 model computes, only with less rounding
  elsewhere. ``fp16_tables=False`` gives the unrounded tables (a deliberate deviation).
* Attention is non-causal and unmasked (the reference passes an all-zero additive mask).
* The global response norm's L2 norm over time is computed in float32 even in a float16 model
  (a float16 sum of squares overflows beyond a few thousand frames; torch's own fp16 reduction
  accumulates in float32 too).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: The reference always has this many attention heads (see the module doc).
HEADS = 32
#: The conditioning width (time, style, text fusion).
COND_DIM = 512
#: Frames of the full model; the base model has 2048 and no duration input.
FULL_MAX_FRAMES = 6144


@dataclass(frozen=True)
class DitConfig:
    """The sizes of one DiT. ``heads`` is kept only to report that it is ignored."""

    dim: int = 2048
    depth: int = 16
    heads: int = 32
    ff_mult: int = 4
    text_dim: int = 512
    conv_layers: int = 4
    mel_dim: int = 64
    text_num_embeds: int = 363
    max_frames: int = 2048

    @property
    def has_duration(self) -> bool:
        return self.max_frames == FULL_MAX_FRAMES


class TimeEmbedding(nn.Module):
    """Sinusoid (256) -> Linear -> SiLU -> Linear; keys ``time_mlp.{0,2}``."""

    def __init__(self, dim: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.time_mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        k = torch.arange(half, device=t.device, dtype=torch.float32)
        freqs = torch.exp(k * (-math.log(10000.0) / (half - 1)))
        # `1000 * t` in the input's precision, then the product in float32, as the reference.
        arg = (1000 * t).unsqueeze(1) * freqs.unsqueeze(0)
        emb = torch.cat((arg.sin(), arg.cos()), dim=-1).to(t.dtype)
        return self.time_mlp(emb)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2 GRN over the time axis of ``[B, N, C]``; keys ``gamma``, ``beta``."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.sqrt(torch.sum(x.float() * x.float(), dim=1, keepdim=True)).to(x.dtype)
        n = g / (g.mean(dim=-1, keepdim=True) + 1e-6)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """Depthwise conv 7 -> LayerNorm -> Linear -> GELU -> GRN -> Linear, residual."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, hidden)
        self.grn = GlobalResponseNorm(hidden)
        self.pwconv2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x.transpose(1, 2)).transpose(1, 2)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y


def position_rows(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """Rows ``pos`` of the lyric position table, ``[cos(p f_k) | sin(p f_k)]`` with
    ``f_k = 1e4^(-2k/dim)``, in float32."""
    freqs = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=pos.device)[: dim // 2].float() / dim))
    angles = torch.outer(pos.float(), freqs)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class LyricEncoder(nn.Module):
    """Token embedding + position table + ConvNeXt blocks; keys ``text_embed``, ``text_blocks``."""

    def __init__(self, cfg: DitConfig, fp16_tables: bool):
        super().__init__()
        self.max_pos = cfg.max_frames
        self.fp16_tables = fp16_tables
        self.text_embed = nn.Embedding(cfg.text_num_embeds + 1, cfg.text_dim)
        self.text_blocks = nn.Sequential(
            *[ConvNeXtBlock(cfg.text_dim, cfg.text_dim * 2) for _ in range(cfg.conv_layers)]
        )

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        n = text.shape[1]
        pos = torch.clamp(torch.arange(n, device=text.device), max=self.max_pos - 1)
        # The table rows are computed for the frames at hand rather than stored (the graph
        # stays small); the values are those of the reference's stored table.
        table = position_rows(self.text_embed.weight.shape[1], pos)
        if self.fp16_tables:
            table = table.half()
        emb = self.text_embed(text) + table.to(self.text_embed.weight.dtype)
        return self.text_blocks(emb)


class ConvPositionEmbedding(nn.Module):
    """Two grouped Conv1d (k=31, 16 groups) with Mish; keys ``conv1d.{0,2}``."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1d = nn.Sequential(
            nn.Conv1d(dim, dim, 31, groups=16, padding=15),
            nn.Mish(),
            nn.Conv1d(dim, dim, 31, groups=16, padding=15),
            nn.Mish(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1d(x.transpose(1, 2)).transpose(1, 2)


class InputEmbedding(nn.Module):
    """``proj([x, cond, text, style, c])`` plus the conv position embedding."""

    def __init__(self, cfg: DitConfig):
        super().__init__()
        self.proj = nn.Linear(cfg.mel_dim * 2 + cfg.text_dim + COND_DIM * 2, cfg.dim)
        self.conv_pos_embed = ConvPositionEmbedding(cfg.dim)

    def forward(self, x, cond, text_emb, style, c):
        n = x.shape[1]
        style = style.unsqueeze(1).expand(-1, n, -1)
        c = c.unsqueeze(1).expand(-1, n, -1)
        h = self.proj(torch.cat((x, cond, text_emb, style, c), dim=-1))
        return self.conv_pos_embed(h) + h


class RMSNorm(nn.Module):
    """Root-mean-square norm computed in float32; key ``weight``."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class SelfAttention(nn.Module):
    """Bidirectional multi-head attention with rotary positions; keys ``{q,k,v,o}_proj``."""

    def __init__(self, dim: int):
        super().__init__()
        if dim % HEADS:
            raise ValueError(f"dim {dim} is not a multiple of the {HEADS} heads")
        self.head_dim = dim // HEADS
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, HEADS, self.head_dim).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        o = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.o_proj(o.transpose(1, 2).reshape(b, n, -1))


class SwiGLU(nn.Module):
    """``down(silu(gate(x)) * up(x))``; keys ``{gate,up,down}_proj``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=False)
        self.up_proj = nn.Linear(dim, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TransformerLayer(nn.Module):
    """Pre-norm attention and feed-forward, keys as the published layers name them."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.input_layernorm = RMSNorm(dim)
        self.self_attn = SelfAttention(dim)
        self.post_attention_layernorm = RMSNorm(dim)
        self.mlp = SwiGLU(dim, hidden)

    def forward(self, x, cos, sin):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.post_attention_layernorm(x))


class RotaryTable(nn.Module):
    """Rotary cos/sin ``[1, 1, N, head_dim]`` for positions 0..N-1 (theta 1e4)."""

    def __init__(self, head_dim: int, fp16_tables: bool):
        super().__init__()
        inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        if fp16_tables:
            inv = inv.half().float()
        self.register_buffer("inv_freq", inv, persistent=False)

    def forward(self, n: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        pos = torch.arange(n, device=device, dtype=torch.float32)
        angles = torch.outer(pos, self.inv_freq.float())
        emb = torch.cat((angles, angles), dim=-1)
        return emb.cos().to(dtype)[None, None], emb.sin().to(dtype)[None, None]


class AdaNormOut(nn.Module):
    """Final ``LayerNorm(x) * (1 + scale) + shift``, ``scale, shift = Linear(SiLU(c))``."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(COND_DIM, dim * 2)
        self.dim = dim

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(c)).chunk(2, dim=1)
        h = F.layer_norm(x, (self.dim,), eps=1e-6)
        return h * (1 + scale)[:, None, :] + shift[:, None, :]


class DiT(nn.Module):
    """The DiffRhythm DiT: ``(x, cond, text, time, style, start_time[, duration]) -> v``.

    All inputs are batched (``time``, ``start_time``, ``duration`` are ``[B]``); the
    unconditional branch is the same call with zero ``cond``, zero ``text`` and the negative
    style, so one graph serves both.
    """

    def __init__(self, cfg: DitConfig, fp16_tables: bool = True):
        super().__init__()
        self.cfg = cfg
        self.time_embed = TimeEmbedding(COND_DIM)
        self.start_time_embed = TimeEmbedding(COND_DIM)
        if cfg.has_duration:
            self.duration_time_embed = TimeEmbedding(COND_DIM)
        self.text_embed = LyricEncoder(cfg, fp16_tables)
        self.input_embed = InputEmbedding(cfg)
        hidden = cfg.dim * cfg.ff_mult
        self.transformer_blocks = nn.ModuleList(
            [TransformerLayer(cfg.dim, hidden) for _ in range(cfg.depth)]
        )
        self.rotary = RotaryTable(cfg.dim // HEADS, fp16_tables)
        self.text_fusion_linears = nn.ModuleList(
            [nn.Sequential(nn.Linear(COND_DIM, cfg.dim), nn.SiLU()) for _ in range(cfg.depth // 2)]
        )
        self.norm_out = AdaNormOut(cfg.dim)
        self.proj_out = nn.Linear(cfg.dim, cfg.mel_dim)

    def forward(self, x, cond, text, time, style, start_time, duration=None):
        c = self.time_embed(time) + self.start_time_embed(start_time)
        if self.cfg.has_duration:
            if duration is None:
                raise ValueError("the full model needs `duration`")
            c = c + self.duration_time_embed(duration)
        text_emb = self.text_embed(text)
        h = self.input_embed(x, cond, text_emb, style, c)
        cos, sin = self.rotary(h.shape[1], h.dtype, h.device)
        for i, layer in enumerate(self.transformer_blocks):
            h = layer(h, cos, sin)
            if i < len(self.text_fusion_linears):
                h = h + self.text_fusion_linears[i](text_emb)
        return self.proj_out(self.norm_out(h, c))

    def input_names(self) -> list[str]:
        """The graph's input names, in call order (the bundle contract's names)."""
        names = ["x", "cond", "text", "time", "style", "start_time"]
        return names + ["duration"] if self.cfg.has_duration else names
