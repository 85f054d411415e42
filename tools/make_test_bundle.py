#!/usr/bin/env python3
"""Generate the *analytic test bundle* (``models/test-bundle/``) for Refrain.

The test bundle implements the model-bundle contract (``bundle.toml`` + ONNX graphs with the
contract's input/output names) with tiny closed-form graphs instead of trained networks, so the
Rust pipeline has an exact oracle. Nothing here comes from any trained weights: every number is
derived from the constants below and fixed seeds, so two runs write identical bytes.

How to run (from the repository root)::

    python3 -m venv .venv-tools && .venv-tools/bin/pip install onnx numpy tokenizers
    .venv-tools/bin/python tools/make_test_bundle.py            # writes models/test-bundle/
    .venv-tools/bin/python tools/make_test_bundle.py OUT_DIR     # writes elsewhere

    # optional verification with ONNX Runtime (needs `pip install onnxruntime`):
    .venv-tools/bin/python tools/make_test_bundle.py --check     # generate, then verify
    .venv-tools/bin/python tools/make_test_bundle.py --check-only  # verify an existing bundle

The code is split by part in ``tools/test_bundle/`` (constants and vocabularies, graphs, text
files, the Mandarin data, the ONNX Runtime check); this file writes the bundle.

All graphs: opset 17, ir_version 8, checked with ``onnx.checker.check_model(full_check=True)``.

Constants
---------
LYRIC_CHANNELS = 48 (latent channels 0..47), STYLE_CHANNELS = 16 (latent channels 48..63),
STYLE_GAIN = 4.0, basis DFT bins k_c = 8 + 4c (c = 0..63, i.e. k_c * 44100 / 2048 Hz, 172 Hz to
5598 Hz), basis amplitude A = 0.125, hop = 2048 samples per latent frame.

Closed forms
------------
Lyric vocabulary (``vocab.json``, ``{"vocab": {symbol: id}}``, ids 0-based; the pipeline encodes
id + 1 so that DiT token 0 is the pad): ids 0..4 are ``, . ? ! _``, then the English espeak-ng IPA
symbols sorted by code points, then ``: ; ' …``. V = number of symbols; DiT tokens are 0..V.

DiT (``dit_base.onnx``, ``dit_full.onnx``; ``*_f16.onnx`` compute entirely in float16)::

    target = E[text] + (style @ P)[:, None, :] + cond
    v      = (target - x) / max(1 - time, 1e-6)[:, None, None]

E is [V+1, 64]: E[0] = 0, E[id] = one-hot at channel (id - 1) % 48. P is [512, 64]:
P[j, 48 + j] = STYLE_GAIN for j < 16, zero elsewhere. ``start_time`` (and ``duration`` for the
full model) are consumed as ``+ 0 * value`` so they stay real inputs with no effect.
Because v points straight at ``target`` and the step to t = 1 has dt = 1 - t, Euler on
t_k = k/31 (32 points, 31 steps) with CFG ``v = v_c + 4 (v_c - v_u)`` (uncond: cond 0, text 0,
negative style) lands at t = 1 on ``target_c + 4 (target_c - target_u)`` whatever the noise.

VAE decoder: one ConvTranspose, kernel = stride = 2048, no bias,
``W[c, ch, n] = A sin(2 pi k_c n / 2048)`` for ch = 0, 1; so latent frame t, channel c becomes a
sinusoid of bin k_c and amplitude A * latent in samples [2048 t, 2048 (t+1)) on both channels.
VAE encoder: one Conv, kernel = stride = 2048, ``W[c, ch, n] = sin(2 pi k_c n / 2048) / (A 2048)``,
so encode(decode(l)) == l (the bins are orthogonal over one hop, and the two channels together
supply the factor 2 of sin^2). The sinusoid weights are built inside each graph from a
2048-entry table gathered at ``(k_c * n) mod 2048`` (exact phase reduction, keeps files small).

Style text (``tokenizer.json`` + ``style_text.onnx``): a HF ``tokenizers`` WordLevel model over
~300 English music words (``[UNK]`` = 0, ``[PAD]`` = 1) with NFKC + Lowercase normalisation and
the Whitespace pre-tokenizer (``\\w+|[^\\w\\s]+``); embedding =
L2-normalise(sum_l mask_l T[ids_l] / max(sum_l mask_l, 1)), T [vocab, 512] seeded N(0, 1).

Style audio (``style_audio.onnx``, 24 kHz mono, S >= 480): Conv with 512 filters, kernel =
stride = 480, filter j = hann(480) * cos(2 pi f_j n / 24000) (periodic Hann, f_j = linspace(40,
11000, 512) Hz); embedding = L2-normalise(sqrt(mean_t(conv^2)) + 1e-6).

``negative_style.f32``: 512 little-endian float32, a seeded random unit vector.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np

from test_bundle.constants import DEFAULT_OUT, lyric_vocab, style_words
from test_bundle.graphs import (
    dit_model,
    negative_style,
    style_audio_model,
    style_text_model,
    tokenizer_json,
    vae_decoder_model,
    vae_encoder_model,
)
from test_bundle.texts import bundle_toml, oracle, readme
from test_bundle.mandarin import mandarin_files
from test_bundle.check import check

# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
# The files SHA256SUMS lists, in its order (everything but README.md and oracle.json).
SUMMED_FILES = (
    "bundle.toml", "dit_base.onnx", "dit_full.onnx", "vae_decoder.onnx", "vae_encoder.onnx",
    "style_text.onnx", "tokenizer.json", "style_audio.onnx", "negative_style.f32", "vocab.json",
    "bundle-f16.toml", "dit_base_f16.onnx", "dit_full_f16.onnx",
    "mandarin/chinese_lexicon.txt", "mandarin/pinyin_2_bpmf.txt",
)

def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    symbols = lyric_vocab()
    vsize = len(symbols)
    words = style_words()

    def write_bytes(name: str, data: bytes) -> None:
        (out / name).write_bytes(data)

    def write_text(name: str, text: str) -> None:
        (out / name).write_bytes(text.encode("utf-8"))

    write_text(
        "vocab.json",
        json.dumps({"vocab": {s: i for i, s in enumerate(symbols)}}, ensure_ascii=False, indent=2)
        + "\n",
    )
    for full in (False, True):
        for dtype, suffix in ((np.float32, ""), (np.float16, "_f16")):
            model = dit_model(vsize, full, dtype)
            write_bytes(f"dit_{'full' if full else 'base'}{suffix}.onnx", model.SerializeToString())
    write_bytes("vae_decoder.onnx", vae_decoder_model().SerializeToString())
    write_bytes("vae_encoder.onnx", vae_encoder_model().SerializeToString())
    write_text("tokenizer.json", tokenizer_json(words))
    write_bytes("style_text.onnx", style_text_model(len(words)).SerializeToString())
    write_bytes("style_audio.onnx", style_audio_model().SerializeToString())
    write_bytes("negative_style.f32", negative_style().tobytes())
    (out / "mandarin").mkdir(exist_ok=True)
    for name, text in mandarin_files().items():
        write_text(name, text)
    write_text("bundle.toml", bundle_toml(False))
    write_text("bundle-f16.toml", bundle_toml(True))
    write_text("oracle.json", json.dumps(oracle(vsize, len(words)), indent=2) + "\n")
    write_text("README.md", readme(vsize, len(words)))
    # What `sha256sum -c SHA256SUMS` and `refrain doctor` check: every file but the docs.
    sums = "".join(
        f"{hashlib.sha256((out / n).read_bytes()).hexdigest()}  {n}\n"
        for n in SUMMED_FILES
    )
    write_text("SHA256SUMS", sums)
    print(f"wrote {out} (V = {vsize}, style vocab = {len(words)})")


def main() -> None:
    ap = argparse.ArgumentParser(description="Generate the Refrain analytic test bundle.")
    ap.add_argument("out", nargs="?", default=str(DEFAULT_OUT), help="output dir (default models/test-bundle)")
    ap.add_argument("--check", action="store_true", help="verify with onnxruntime after generating")
    ap.add_argument("--check-only", action="store_true", help="only verify an existing bundle")
    args = ap.parse_args()
    out = Path(args.out)
    if not args.check_only:
        generate(out)
    if args.check or args.check_only:
        check(out)


if __name__ == "__main__":
    main()
