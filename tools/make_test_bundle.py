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
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ---------------------------------------------------------------------------------------------
# Constants (the Rust oracle tests depend on these; they are also written to oracle.json)
# ---------------------------------------------------------------------------------------------
OPSET = 17
IR_VERSION = 8
LATENT_DIM = 64
LYRIC_CHANNELS = 48
STYLE_CHANNELS = 16
STYLE_GAIN = 4.0
STYLE_DIM = 512
HOP = 2048
SAMPLE_RATE = 44100
AMPLITUDE = 0.125
BASIS_BINS = [8 + 4 * c for c in range(LATENT_DIM)]
TIME_EPS = 1e-6
STYLE_SR = 24000
STYLE_WIN = 480
STYLE_F_LO, STYLE_F_HI = 40.0, 11000.0
STYLE_AUDIO_EPS = 1e-6
L2_EPS = 1e-12

SEED_STYLE_TABLE = 20240601
SEED_NEGATIVE = 20240602
SEED_CHECK = 12345

PRODUCER = "refrain tools/make_test_bundle.py"

# Lyric vocabulary. Ids 0..4 are hard-coded in the pipeline.
PUNCT_HEAD = [",", ".", "?", "!", "_"]
PUNCT_TAIL = [":", ";", "'", "\u2026"]  # ':' ';' "'" '…'
# English espeak-ng IPA symbols (U+0261 'ɡ', U+02D0 'ː', U+0303 combining tilde).
ENGLISH_IPA = (
    "iː ɪ ɜː ɚ oːɹ ɔː ɔːɹ ɑː uː ʊ ɑːɹ ʌ ɛ æ eɪ aɪ ɔɪ aʊ oʊ ɪɹ ɛɹ ʊɹ "
    "p b t d k ɡ f v θ ð s z ʃ ʒ h tʃ dʒ m n ŋ j w ɹ l tɹ dɹ ts dz "
    "i ɔ ə ɾ iə r u oː ɛː ɪː aɪə aɪɚ ɑ̃ ç ɔ̃ ɐ ɑ ɒ ɜ ɫ ʔ x ɬ"
).split()

# Style-text word list (lower case; the tokenizer lower-cases its input).
STYLE_WORDS = """
pop rock jazz blues soul funk disco house techno trance dubstep drum bass hip hop rap trap r b
rnb country folk metal punk grunge indie alternative electronic electronica edm ambient classical
orchestral opera gospel reggae ska latin salsa bossa nova samba tango flamenco afrobeat afrobeats
kpop jpop cpop ballad lofi lo fi synthwave synth wave chillwave chill chillhop garage dance
dancehall reggaeton cumbia bluegrass americana grime drill emo hardcore shoegaze psychedelic
progressive prog new age world celtic swing bebop fusion experimental industrial noise minimal
soundtrack cinematic score video game chiptune acoustic instrumental vocal cappella choir
happy sad melancholic melancholy uplifting energetic calm relaxing peaceful dark bright romantic
nostalgic dreamy epic aggressive angry joyful hopeful emotional sentimental mellow upbeat groovy
funky moody mysterious haunting intense powerful gentle soft warm cold lonely euphoric triumphant
playful tender bittersweet heavy light smooth raw gritty lush atmospheric ethereal hypnotic catchy
anthemic driving laid back spiritual sensual cheerful somber serene tense dramatic whimsical
quirky love heartbreak summer winter night party sunset rain
piano guitar electric violin cello viola strings saxophone sax trumpet trombone horn horns flute
clarinet oboe bassoon harp organ synthesizer keyboard keys ukulele banjo mandolin harmonica
accordion sitar tabla percussion bells marimba xylophone vibraphone 808 kick snare hihat hi hat
claps cymbals bongos congas timpani brass woodwinds pad pads arpeggio arpeggiated bassline riff
riffs solo drums beat beats
male female voice vocals singer singing rapping whisper whispered falsetto harmony harmonies
chorus verse hook duet
fast slow mid tempo bpm rhythm rhythmic groove loud quiet live studio vintage retro modern
futuristic 60s 70s 80s 90s 2000s old school classic distorted clean reverb echo delay
production mix heavy deep high low big small long short simple complex catchy
american british french spanish japanese korean chinese african brazilian irish indian arabic
a an the and with of in for to by on at from feat featuring style like song music track tune
very slightly more less
, . - & / ! ? ' ( ) : ; +
""".split()

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "models" / "test-bundle"


def lyric_vocab() -> list[str]:
    english = sorted(set(ENGLISH_IPA))
    assert len(english) == len(ENGLISH_IPA), "duplicate English symbol"
    symbols = PUNCT_HEAD + english + PUNCT_TAIL
    assert len(set(symbols)) == len(symbols), "duplicate vocabulary symbol"
    return symbols


def style_words() -> list[str]:
    seen: list[str] = []
    for w in STYLE_WORDS:
        if w not in seen:
            seen.append(w)
    return ["[UNK]", "[PAD]"] + seen


# ---------------------------------------------------------------------------------------------
# ONNX helpers
# ---------------------------------------------------------------------------------------------
def init(name: str, array: np.ndarray) -> onnx.TensorProto:
    # (np.ascontiguousarray would turn 0-d scalars into shape [1])
    return numpy_helper.from_array(np.array(array, order="C", copy=True), name)


def finish(graph: onnx.GraphProto, doc: str) -> onnx.ModelProto:
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name=PRODUCER,
        producer_version="1",
        doc_string=doc,
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def elem(dtype) -> int:
    return {np.float32: TensorProto.FLOAT, np.float16: TensorProto.FLOAT16}[dtype]


# ---------------------------------------------------------------------------------------------
# DiT
# ---------------------------------------------------------------------------------------------
def dit_tables(vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """E [V+1, 64] and P [512, 64] in float64 (exact small integers / gains)."""
    e = np.zeros((vocab_size + 1, LATENT_DIM))
    for tok in range(1, vocab_size + 1):
        e[tok, (tok - 1) % LYRIC_CHANNELS] = 1.0
    p = np.zeros((STYLE_DIM, LATENT_DIM))
    for j in range(STYLE_CHANNELS):
        p[j, LYRIC_CHANNELS + j] = STYLE_GAIN
    return e, p


def dit_model(vocab_size: int, full: bool, dtype) -> onnx.ModelProto:
    ft = elem(dtype)
    e, p = dit_tables(vocab_size)
    inputs = [
        helper.make_tensor_value_info("x", ft, ["B", "N", LATENT_DIM]),
        helper.make_tensor_value_info("cond", ft, ["B", "N", LATENT_DIM]),
        helper.make_tensor_value_info("text", TensorProto.INT64, ["B", "N"]),
        helper.make_tensor_value_info("time", ft, ["B"]),
        helper.make_tensor_value_info("style", ft, ["B", STYLE_DIM]),
        helper.make_tensor_value_info("start_time", ft, ["B"]),
    ]
    if full:
        inputs.append(helper.make_tensor_value_info("duration", ft, ["B"]))
    outputs = [helper.make_tensor_value_info("v", ft, ["B", "N", LATENT_DIM])]
    inits = [
        init("E", e.astype(dtype)),
        init("P", p.astype(dtype)),
        init("one", np.array(1.0, dtype=dtype)),
        init("zero", np.array(0.0, dtype=dtype)),
        init("time_eps", np.array(TIME_EPS, dtype=dtype)),
        init("axes_1", np.array([1], dtype=np.int64)),
        init("axes_12", np.array([1, 2], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Gather", ["E", "text"], ["lyric"], axis=0),
        helper.make_node("MatMul", ["style", "P"], ["style_lat"]),
        helper.make_node("Unsqueeze", ["style_lat", "axes_1"], ["style_lat3"]),
        helper.make_node("Add", ["lyric", "style_lat3"], ["target0"]),
        helper.make_node("Add", ["target0", "cond"], ["target"]),
        # zero-effect use of start_time (and duration)
        helper.make_node("Mul", ["start_time", "zero"], ["unused0"]),
    ]
    unused = "unused0"
    if full:
        nodes += [
            helper.make_node("Mul", ["duration", "zero"], ["unused_d"]),
            helper.make_node("Add", ["unused0", "unused_d"], ["unused1"]),
        ]
        unused = "unused1"
    nodes += [
        helper.make_node("Unsqueeze", [unused, "axes_12"], ["unused3"]),
        helper.make_node("Sub", ["target", "x"], ["delta0"]),
        helper.make_node("Add", ["delta0", "unused3"], ["delta"]),
        helper.make_node("Sub", ["one", "time"], ["remaining"]),
        helper.make_node("Max", ["remaining", "time_eps"], ["denom"]),
        helper.make_node("Unsqueeze", ["denom", "axes_12"], ["denom3"]),
        helper.make_node("Div", ["delta", "denom3"], ["v"]),
    ]
    name = f"dit_{'full' if full else 'base'}_{'f16' if dtype == np.float16 else 'f32'}"
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    doc = (
        "Analytic test DiT: v = (E[text] + (style @ P)[:,None,:] + cond - x) / "
        "max(1 - time, 1e-6); start_time"
        + (" and duration" if full else "")
        + " consumed with zero effect."
    )
    return finish(graph, doc)


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------
def sin_table(scale: float) -> np.ndarray:
    m = np.arange(HOP, dtype=np.float64)
    return (scale * np.sin(2.0 * np.pi * m / HOP)).astype(np.float32)


def vae_basis(scale: float) -> np.ndarray:
    """[64, 2048] f32: scale * sin(2 pi k_c n / 2048), phase reduced exactly mod 2048."""
    k = np.array(BASIS_BINS, dtype=np.int64)[:, None]
    n = np.arange(HOP, dtype=np.int64)[None, :]
    return sin_table(scale)[(k * n) % HOP]


def basis_nodes(scale: float, out: str) -> tuple[list, list]:
    """Nodes computing the [64, 2, 2048] weight from a 2048-entry table (no large initializer)."""
    inits = [
        init("sin_table", sin_table(scale)),
        init("bins", np.array(BASIS_BINS, dtype=np.int64).reshape(LATENT_DIM, 1)),
        init("n_start", np.array(0, dtype=np.int64)),
        init("n_limit", np.array(HOP, dtype=np.int64)),
        init("n_delta", np.array(1, dtype=np.int64)),
        init("hop_i64", np.array(HOP, dtype=np.int64)),
        init("axes_1", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Range", ["n_start", "n_limit", "n_delta"], ["n"]),
        helper.make_node("Mul", ["bins", "n"], ["kn"]),
        helper.make_node("Mod", ["kn", "hop_i64"], ["phase"]),
        helper.make_node("Gather", ["sin_table", "phase"], ["basis"], axis=0),
        helper.make_node("Unsqueeze", ["basis", "axes_1"], ["basis3"]),
        helper.make_node("Concat", ["basis3", "basis3"], [out], axis=1),
    ]
    return nodes, inits


def vae_decoder_model() -> onnx.ModelProto:
    nodes, inits = basis_nodes(AMPLITUDE, "W")
    nodes.append(
        helper.make_node(
            "ConvTranspose", ["latent", "W"], ["audio"], kernel_shape=[HOP], strides=[HOP]
        )
    )
    graph = helper.make_graph(
        nodes,
        "vae_decoder",
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["B", LATENT_DIM, "T"])],
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", 2, "S"])],
        initializer=inits,
    )
    doc = (
        "Analytic test VAE decoder: ConvTranspose kernel=stride=2048, "
        "W[c,ch,n] = 0.125 sin(2 pi (8+4c) n / 2048) for both channels."
    )
    return finish(graph, doc)


def vae_encoder_model() -> onnx.ModelProto:
    nodes, inits = basis_nodes(1.0 / (AMPLITUDE * HOP), "W")
    nodes.append(
        helper.make_node("Conv", ["audio", "W"], ["latent"], kernel_shape=[HOP], strides=[HOP])
    )
    graph = helper.make_graph(
        nodes,
        "vae_encoder",
        [helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["B", 2, "S"])],
        [helper.make_tensor_value_info("latent", TensorProto.FLOAT, ["B", LATENT_DIM, "T"])],
        initializer=inits,
    )
    doc = (
        "Analytic test VAE encoder: Conv kernel=stride=2048, "
        "W[c,ch,n] = sin(2 pi (8+4c) n / 2048) / (0.125 * 2048); encode(decode(l)) = l."
    )
    return finish(graph, doc)


# ---------------------------------------------------------------------------------------------
# Style encoders
# ---------------------------------------------------------------------------------------------
def style_text_table(vocab_size: int) -> np.ndarray:
    rng = np.random.default_rng(SEED_STYLE_TABLE)
    return rng.standard_normal((vocab_size, STYLE_DIM)).astype(np.float32)


def l2_nodes(src: str, out: str) -> list:
    return [
        helper.make_node("ReduceL2", [src], [src + "_norm"], axes=[1], keepdims=1),
        helper.make_node("Max", [src + "_norm", "l2_eps"], [src + "_norm_c"]),
        helper.make_node("Div", [src, src + "_norm_c"], [out]),
    ]


def style_text_model(vocab_size: int) -> onnx.ModelProto:
    inits = [
        init("T", style_text_table(vocab_size)),
        init("one", np.array(1.0, dtype=np.float32)),
        init("l2_eps", np.array(L2_EPS, dtype=np.float32)),
        init("axes_1", np.array([1], dtype=np.int64)),
        init("axes_m1", np.array([-1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Gather", ["T", "input_ids"], ["emb"], axis=0),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "axes_m1"], ["mask3"]),
        helper.make_node("Mul", ["emb", "mask3"], ["emb_masked"]),
        helper.make_node("ReduceSum", ["emb_masked", "axes_1"], ["emb_sum"], keepdims=0),
        helper.make_node("ReduceSum", ["mask_f", "axes_1"], ["count"], keepdims=1),
        helper.make_node("Max", ["count", "one"], ["count_c"]),
        helper.make_node("Div", ["emb_sum", "count_c"], ["mean"]),
    ] + l2_nodes("mean", "embedding")
    graph = helper.make_graph(
        nodes,
        "style_text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "L"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["B", "L"]),
        ],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", STYLE_DIM])],
        initializer=inits,
    )
    doc = (
        "Analytic test style text encoder: L2-normalise(sum_l mask*T[ids] / max(sum_l mask, 1)), "
        f"T seeded N(0,1) (numpy default_rng({SEED_STYLE_TABLE}))."
    )
    return finish(graph, doc)


def style_audio_filters() -> np.ndarray:
    n = np.arange(STYLE_WIN, dtype=np.float64)
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * n / STYLE_WIN)
    f = np.linspace(STYLE_F_LO, STYLE_F_HI, STYLE_DIM)
    return (hann[None, :] * np.cos(2.0 * np.pi * f[:, None] * n[None, :] / STYLE_SR)).astype(
        np.float32
    )


def style_audio_model() -> onnx.ModelProto:
    inits = [
        init("F", style_audio_filters().reshape(STYLE_DIM, 1, STYLE_WIN)),
        init("eps", np.array(STYLE_AUDIO_EPS, dtype=np.float32)),
        init("l2_eps", np.array(L2_EPS, dtype=np.float32)),
        init("axes_1", np.array([1], dtype=np.int64)),
    ]
    nodes = [
        helper.make_node("Unsqueeze", ["wav", "axes_1"], ["wav3"]),
        helper.make_node(
            "Conv", ["wav3", "F"], ["bands"], kernel_shape=[STYLE_WIN], strides=[STYLE_WIN]
        ),
        helper.make_node("Mul", ["bands", "bands"], ["power"]),
        helper.make_node("ReduceMean", ["power"], ["mean_power"], axes=[2], keepdims=0),
        helper.make_node("Sqrt", ["mean_power"], ["rms"]),
        helper.make_node("Add", ["rms", "eps"], ["rms_e"]),
    ] + l2_nodes("rms_e", "embedding")
    graph = helper.make_graph(
        nodes,
        "style_audio",
        [helper.make_tensor_value_info("wav", TensorProto.FLOAT, ["B", "S"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", STYLE_DIM])],
        initializer=inits,
    )
    doc = (
        "Analytic test style audio encoder: 512 Hann-windowed cosine filters (40..11000 Hz, "
        "kernel=stride=480 at 24 kHz), L2-normalise(sqrt(mean_t(conv^2)) + 1e-6)."
    )
    return finish(graph, doc)


def tokenizer_json(words: list[str]) -> str:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.enable_padding(pad_id=vocab["[PAD]"], pad_token="[PAD]")
    data = json.loads(tok.to_str())
    # Canonical order (the vocab map's serialisation order is not guaranteed): ids ascending.
    data["model"]["vocab"] = {w: i for i, w in enumerate(words)}
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def negative_style() -> np.ndarray:
    rng = np.random.default_rng(SEED_NEGATIVE)
    v = rng.standard_normal(STYLE_DIM)
    return (v / np.linalg.norm(v)).astype("<f4")


# ---------------------------------------------------------------------------------------------
# Text files
# ---------------------------------------------------------------------------------------------
def bundle_toml(f16: bool) -> str:
    suffix = "_f16" if f16 else ""
    name = "refrain-test-bundle" + ("-f16" if f16 else "")
    return f'''name = "{name}"
version = "1.0.0"
license = "Apache-2.0 (analytic test graphs generated by tools/make_test_bundle.py; no trained weights)"

[audio]
sample_rate = 44100
channels = 2
latent_dim = 64
hop = 2048

[sampler]
steps = 32
cfg_strength = 4.0
solver = "euler"

[[dit]]
name = "base"
file = "dit_base{suffix}.onnx"
max_frames = 2048
duration_input = false
fixed_frames = true
drop_last_line = true

[[dit]]
name = "full"
file = "dit_full{suffix}.onnx"
max_frames = 6144
duration_input = true
fixed_frames = false
drop_last_line = false

[vae]
decoder = "vae_decoder.onnx"
encoder = "vae_encoder.onnx"
chunk_frames = 128
overlap_frames = 32

[style]
text_encoder = "style_text.onnx"
tokenizer = "tokenizer.json"
audio_encoder = "style_audio.onnx"
audio_sample_rate = 24000
audio_seconds = 10
negative = "negative_style.f32"

[lyrics]
vocab = "vocab.json"
languages = ["en", "zh"]
mandarin = "mandarin"
'''


def oracle(vocab_size: int, style_vocab: int) -> dict:
    return {
        "lyric_channels": LYRIC_CHANNELS,
        "style_channels": [LYRIC_CHANNELS, LYRIC_CHANNELS + STYLE_CHANNELS],
        "style_gain": STYLE_GAIN,
        "basis_bins": BASIS_BINS,
        "amplitude": AMPLITUDE,
        "hop": HOP,
        "sample_rate": SAMPLE_RATE,
        "token_channel": "(id-1) % 48",
        "vocab_size": vocab_size,
        "style_text_vocab_size": style_vocab,
        "style_text_unk_id": 0,
        "style_text_pad_id": 1,
        "time_eps": TIME_EPS,
    }


README = """# Refrain analytic test bundle

Generated by `tools/make_test_bundle.py` (do not edit by hand). No trained weights: every graph
is a tiny closed form built with the `onnx` helper API (opset 17, IR 8) from fixed constants
and fixed seeds, so the whole pipeline has an exact oracle. Licence: Apache-2.0.

## Regenerate

```sh
python3 -m venv .venv-tools && .venv-tools/bin/pip install onnx numpy tokenizers
.venv-tools/bin/python tools/make_test_bundle.py            # writes models/test-bundle/
.venv-tools/bin/pip install onnxruntime
.venv-tools/bin/python tools/make_test_bundle.py --check    # generate, then verify with ORT
```

Output is byte-for-byte deterministic.

## Files

| file | what |
|---|---|
| `bundle.toml` | manifest using the float32 DiTs |
| `bundle-f16.toml` | identical except `dit_*_f16.onnx` and the name `refrain-test-bundle-f16` |
| `dit_base.onnx`, `dit_full.onnx` | analytic DiT, float32 (`full` also takes `duration`) |
| `dit_base_f16.onnx`, `dit_full_f16.onnx` | same graphs, every float input/output/initializer float16, computed in float16 |
| `vae_decoder.onnx` | `latent [B,64,T]` -> `audio [B,2,T*2048]`, one ConvTranspose onto 64 sinusoids |
| `vae_encoder.onnx` | `audio [B,2,S]` -> `latent [B,64,S/2048]`, projection onto the same sinusoids |
| `style_text.onnx` + `tokenizer.json` | word-level text style encoder (mean of a seeded table) |
| `style_audio.onnx` | band-energy audio style encoder (24 kHz mono) |
| `negative_style.f32` | 512 little-endian float32, a seeded random unit vector (uncond style) |
| `vocab.json` | the lyric phoneme vocabulary, `{"vocab": {symbol: id}}`, ids 0-based |
| `mandarin/chinese_lexicon.txt`, `mandarin/pinyin_2_bpmf.txt` | a small Mandarin lexicon (about 80 characters and words, `word<TAB>pin1 yin1`) and the pinyin to bopomofo table of its syllables, written for this bundle, so Chinese lyrics run through the Mandarin G2P without DiffRhythm's data files (no polyphone model: lexicon readings); only the symbols that are also in `vocab.json` (initials such as `n m l f x`, neutral-tone finals) become tokens |
| `oracle.json` | the constants tests need to decode outputs |
| `SHA256SUMS` | the SHA-256 of every file above but this README and `oracle.json` (`sha256sum -c SHA256SUMS`, `refrain doctor`) |

## Constants

* 64 latent channels: **lyric channels 0..47**, **style channels 48..63**, style gain 4.0.
* Latent channel c is the sinusoid at DFT bin `k_c = 8 + 4c` of a 2048-sample hop, i.e.
  `k_c * 44100 / 2048` Hz (172.3 Hz for c = 0 up to 5598.6 Hz for c = 63), amplitude
  `A = 0.125` per unit latent, identical on both stereo channels.

## Closed forms

**Lyric vocabulary** (`vocab.json`, V = __V__ symbols): ids 0..4 are `, . ? ! _`, then the
English espeak-ng IPA symbols sorted by code point, then `: ; ' …`. The pipeline feeds id + 1
to the DiT, so DiT tokens are 1..V and 0 is the pad.

**DiT** (`x [B,N,64]`, `cond [B,N,64]`, `text [B,N] i64`, `time [B]`, `style [B,512]`,
`start_time [B]`, full only: `duration [B]` -> `v [B,N,64]`):

```
target = E[text] + (style @ P)[:, None, :] + cond
v      = (target - x) / max(1 - time, 1e-6)
```

* `E [V+1, 64]`: `E[0] = 0`; `E[id]` is one-hot at channel `(id - 1) % 48` (value 1.0).
* `P [512, 64]`: `P[j, 48 + j] = 4.0` for `j < 16`, else 0, so style dims 0..15 drive
  channels 48..63 with gain 4.
* `start_time` and `duration` are consumed as `+ 0 * value` (no effect, but real inputs).

**VAE decoder:** ConvTranspose, kernel = stride = 2048, no bias,
`W[c, ch, n] = 0.125 sin(2 pi k_c n / 2048)`: latent frame t, channel c becomes a sinusoid at
bin k_c with amplitude `0.125 * latent[c, t]` in samples `[2048 t, 2048 t + 2048)` of both
channels. Frames do not overlap, so chunked decoding equals unchunked decoding exactly.

**VAE encoder:** Conv, kernel = stride = 2048, `W[c, ch, n] = sin(2 pi k_c n / 2048) / (0.125 * 2048)`;
the basis is orthogonal over one hop, so `encode(decode(l)) == l` (to float rounding, ~1e-6).

(Both VAE weights are computed inside the graph by gathering a 2048-entry sine table at
`(k_c * n) mod 2048`, which keeps the files small; ONNX Runtime constant-folds it at load.)

**Style text:** `tokenizer.json` is a HF `tokenizers` WordLevel model over __SV__ entries
(`[UNK]` = 0, `[PAD]` = 1, then English music/genre/mood/instrument words and a few punctuation
marks), normaliser NFKC then Lowercase, pre-tokenizer Whitespace (`\\w+|[^\\w\\s]+`, so
punctuation is split off: `hip-hop` -> `hip - hop`, `R&B` -> `r & b`), no special tokens added,
batch padding with `[PAD]` (id 1). Unknown words become `[UNK]` (id 0), which *does* contribute
its row. `style_text.onnx` (`input_ids [B,L] i64`, `attention_mask [B,L] i64` -> `embedding [B,512]`):
`L2-normalise(sum_l mask_l T[ids_l] / max(sum_l mask_l, 1))`, `T [vocab, 512]` seeded N(0,1).
An all-masked (empty) prompt gives the zero vector.

**Style audio:** `style_audio.onnx` (`wav [B,S]` f32, 24 kHz mono, S >= 480 -> `embedding [B,512]`):
Conv with 512 filters, kernel = stride = 480 (trailing samples that do not fill a window are
ignored), filter j = periodic Hann(480) * `cos(2 pi f_j n / 24000)`, `f_j = linspace(40, 11000, 512)` Hz;
`embedding = L2-normalise(sqrt(mean_t(conv^2)) + 1e-6)`. Silence gives the uniform vector
`1/sqrt(512)`.

## Oracle properties

* **Sampling lands on the target.** Euler on `t_k = k/31` (32 points, 31 steps) with CFG
  `v = v_c + 4 (v_c - v_u)`, the uncond call using `cond = 0`, `text = 0` and the negative style,
  ends at t = 1 on `target_c + 4 (target_c - target_u)` whatever the start noise: the last step
  has `dt = t_31 - t_30 = 1 - t_30`, exactly the DiT's denominator (when the host computes dt
  from the same grid values it feeds as `time`). Checked with ONNX Runtime by the generator:
  max error a few 1e-6 for float32 (|goal| up to ~20); float16 lands within ~3e-3 * (1 + |goal|).
* Hence, with `cond = 0`, the vocabulary symbol with id `s` (DiT token `tok = s + 1`) placed at
  frame f yields latent value `5.0` (= 1 + 4 * (1 - 0)) on lyric channel `(tok - 1) % 48 = s % 48`
  at frame f; all other lyric channels of every frame are 0, and style channel `48 + j` carries
  `20 * style[j] - 16 * negative[j]` in every frame. A non-zero `cond` adds `5 * cond` (the uncond
  branch has cond = 0), so frames the pipeline keeps from a reference must be restored from the
  reference latent after sampling (as DiffRhythm does with its edit mask).
* The decoded audio of frame f is then an exact sum of sinusoids at bins `k_c`, so a
  2048-point DFT of that frame's samples reads back `A * 1024 * latent[c, f]` at bin `k_c`
  (the encoder gives `latent` directly).
* Style audio filters are cosine-only (no quadrature pair), so a band's energy depends on the
  tone's phase within each 480-sample window; real audio averages this out over the frames
  (a steady tone at a multiple of 50 Hz does not).
"""


def readme(vocab_size: int, style_vocab: int) -> str:
    return README.replace("__V__", str(vocab_size)).replace("__SV__", str(style_vocab))


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

# The test bundle's own Mandarin lexicon (standard readings, tone digits 1-5) and the bopomofo of
# its syllables: enough for the tests' Chinese lines, in the format of DiffRhythm's data files.
MANDARIN_LEXICON = """\
你 ni3
好 hao3
我 wo3
们 men5
的 de5
了 le5
来 lai2
飞 fei1
花 hua1
月 yue4
亮 liang4
心 xin1
爱 ai4
歌 ge1
唱 chang4
一 yi1
不 bu4
是 shi4
天 tian1
风 feng1
人 ren2
山 shan1
水 shui3
美 mei3
丽 li4
梦 meng4
想 xiang3
在 zai4
里 li3
有 you3
上 shang4
大 da4
小 xiao3
中 zhong1
国 guo2
快 kuai4
乐 le4
今 jin1
明 ming2
日 ri4
夜 ye4
星 xing1
光 guang1
家 jia1
雨 yu3
雪 xue3
春 chun1
秋 qiu1
零 ling2
二 er4
三 san1
四 si4
五 wu3
六 liu4
七 qi1
八 ba1
九 jiu3
十 shi2
百 bai3
千 qian1
万 wan4
年 nian2
点 dian3
儿 er2
你好 ni3 hao3
我们 wo3 men5
月亮 yue4 liang4
快乐 kuai4 le4
美丽 mei3 li4
梦想 meng4 xiang3
今天 jin1 tian1
明天 ming2 tian1
星光 xing1 guang1
唱歌 chang4 ge1
中国 zhong1 guo2
"""
PINYIN_BOPOMOFO = (
    "ai ㄞ|ba ㄅㄚ|bai ㄅㄞ|bu ㄅㄨ|chang ㄔㄤ|chun ㄔㄨㄣ|da ㄉㄚ|de ㄉㄜ|dian ㄉㄧㄢ|er ㄦ|"
    "fei ㄈㄟ|feng ㄈㄥ|ge ㄍㄜ|guang ㄍㄨㄤ|guo ㄍㄨㄛ|hao ㄏㄠ|hua ㄏㄨㄚ|jia ㄐㄧㄚ|jin ㄐㄧㄣ|"
    "jiu ㄐㄧㄡ|kuai ㄎㄨㄞ|lai ㄌㄞ|le ㄌㄜ|li ㄌㄧ|liang ㄌㄧㄤ|ling ㄌㄧㄥ|liu ㄌㄧㄡ|mei ㄇㄟ|"
    "men ㄇㄣ|meng ㄇㄥ|ming ㄇㄧㄥ|ni ㄋㄧ|nian ㄋㄧㄢ|qi ㄑㄧ|qian ㄑㄧㄢ|qiu ㄑㄧㄡ|ren ㄖㄣ|ri ㄖ|"
    "san ㄙㄢ|shan ㄕㄢ|shang ㄕㄤ|shi ㄕ|shui ㄕㄨㄟ|si ㄙ|tian ㄊㄧㄢ|wan ㄨㄢ|wo ㄨㄛ|wu ㄨ|"
    "xiang ㄒㄧㄤ|xiao ㄒㄧㄠ|xin ㄒㄧㄣ|xing ㄒㄧㄥ|xue ㄒㄩㄝ|ye ㄧㄝ|yi ㄧ|you ㄧㄡ|yu ㄩ|"
    "yue ㄩㄝ|zai ㄗㄞ|zhong ㄓㄨㄥ"
)


def mandarin_files() -> dict[str, str]:
    lexicon = "".join(
        f"{word}\t{pinyin}\n"
        for word, pinyin in (line.split(" ", 1) for line in MANDARIN_LEXICON.splitlines())
    )
    table = "".join(f"{p}\t{b}\n" for p, b in (e.split(" ") for e in PINYIN_BOPOMOFO.split("|")))
    syllables = {p[:-1] for line in lexicon.splitlines() for p in line.split("\t")[1].split(" ")}
    known = {e.split(" ")[0] for e in PINYIN_BOPOMOFO.split("|")}
    assert syllables <= known, f"no bopomofo for {sorted(syllables - known)}"
    return {"mandarin/chinese_lexicon.txt": lexicon, "mandarin/pinyin_2_bpmf.txt": table}


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


# ---------------------------------------------------------------------------------------------
# Verification with ONNX Runtime
# ---------------------------------------------------------------------------------------------
def check(out: Path) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    rng = np.random.default_rng(SEED_CHECK)
    symbols = lyric_vocab()
    vsize = len(symbols)
    words = style_words()
    failures: list[str] = []

    def expect(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what)
        if not ok:
            failures.append(what)

    def session(name: str) -> ort.InferenceSession:
        model = onnx.load(str(out / name))
        onnx.checker.check_model(model, full_check=True)
        assert model.ir_version == IR_VERSION and model.opset_import[0].version == OPSET
        return ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])

    # vocab / oracle / manifests
    vocab = json.loads((out / "vocab.json").read_text(encoding="utf-8"))["vocab"]
    expect(list(vocab) == symbols and list(vocab.values()) == list(range(vsize)), "vocab.json order")
    expect([vocab[s] for s in PUNCT_HEAD] == [0, 1, 2, 3, 4], "vocab ids 0..4 = , . ? ! _")
    orc = json.loads((out / "oracle.json").read_text())
    expect(orc["vocab_size"] == vsize and orc["basis_bins"] == BASIS_BINS, "oracle.json")
    t32 = (out / "bundle.toml").read_text()
    t16 = (out / "bundle-f16.toml").read_text()
    expect(
        t16 == t32.replace('"dit_base.onnx"', '"dit_base_f16.onnx"')
        .replace('"dit_full.onnx"', '"dit_full_f16.onnx"')
        .replace('"refrain-test-bundle"', '"refrain-test-bundle-f16"'),
        "bundle-f16.toml = bundle.toml with f16 DiTs",
    )
    try:
        import tomllib

        for name in ("bundle.toml", "bundle-f16.toml"):
            m = tomllib.loads((out / name).read_text())
            files = [d["file"] for d in m["dit"]] + list(m["vae"].values())[:2]
            files += [m["style"][k] for k in ("text_encoder", "tokenizer", "audio_encoder", "negative")]
            files.append(m["lyrics"]["vocab"])
            expect(all((out / f).is_file() for f in files), f"{name} parses, all files exist")
    except ImportError:
        pass

    neg = np.fromfile(out / "negative_style.f32", dtype="<f4")
    expect(neg.shape == (STYLE_DIM,) and abs(np.linalg.norm(neg) - 1) < 1e-6, "negative style unit")

    # ---- DiT ----
    e_tab, p_tab = dit_tables(vsize)

    def unit(b: int) -> np.ndarray:
        s = rng.standard_normal((b, STYLE_DIM))
        return (s / np.linalg.norm(s, axis=1, keepdims=True)).astype(np.float32)

    def target_np(text, style, cond):
        return e_tab[text] + (style.astype(np.float64) @ p_tab)[:, None, :] + cond

    for full in (False, True):
        for f16 in (False, True):
            name = f"dit_{'full' if full else 'base'}{'_f16' if f16 else ''}.onnx"
            sess = session(name)
            names = [i.name for i in sess.get_inputs()]
            want = ["x", "cond", "text", "time", "style", "start_time"] + (["duration"] if full else [])
            expect(names == want and [o.name for o in sess.get_outputs()] == ["v"], f"{name} signature")
            ft = np.float16 if f16 else np.float32
            B, N = 2, 37
            x = rng.standard_normal((B, N, LATENT_DIM)).astype(ft)
            cond = (rng.standard_normal((B, N, LATENT_DIM)) * (rng.random((B, N, 1)) < 0.3)).astype(ft)
            text = rng.integers(0, vsize + 1, (B, N)).astype(np.int64)
            text[:, ::3] = 0
            time = np.array([0.3, 30 / 31], dtype=ft)
            style = unit(B).astype(ft)
            feeds = {"x": x, "cond": cond, "text": text, "time": time, "style": style,
                     "start_time": np.array([0.0, 7.5], dtype=ft)}
            if full:
                feeds["duration"] = np.array([95.0, 285.0], dtype=ft)
            (v,) = sess.run(None, feeds)
            x64, c64, s64, t64 = (a.astype(np.float64) for a in (x, cond, style, time))
            ref = (target_np(text, s64, c64) - x64) / np.maximum(1 - t64, TIME_EPS)[:, None, None]
            expect(v.dtype == ft and v.shape == (B, N, LATENT_DIM), f"{name} output dtype/shape")
            tol = (4e-3 * (1 + np.abs(ref))) if f16 else (1e-5 * (1 + np.abs(ref)))
            err = np.max(np.abs(v.astype(np.float64) - ref) / tol)
            expect(err <= 1.0, f"{name} matches closed form (err/tol = {err:.3f})")
            # start_time / duration have no effect
            feeds2 = dict(feeds, start_time=np.array([3.0, -2.0], dtype=ft))
            if full:
                feeds2["duration"] = np.array([1.0, 10.0], dtype=ft)
            expect(np.array_equal(sess.run(None, feeds2)[0], v), f"{name} ignores start_time/duration")

            # Euler + CFG lands on target_c + 4 (target_c - target_u)
            B, N = 2, 64
            text = rng.integers(0, vsize + 1, (B, N)).astype(np.int64)
            cond = (rng.standard_normal((B, N, LATENT_DIM)) * (rng.random((B, N, 1)) < 0.5)).astype(np.float32)
            style = unit(B)
            negb = np.broadcast_to(neg, (B, STYLE_DIM))
            tc = target_np(text, style.astype(ft).astype(np.float64), cond.astype(ft).astype(np.float64))
            tu = target_np(np.zeros_like(text), negb.astype(ft).astype(np.float64), 0.0)
            goal = tc + 4.0 * (tc - tu)
            worst = worst_abs = 0.0
            for trial in range(3):
                xs = (rng.standard_normal((B, N, LATENT_DIM)) * (1 + 3 * trial)).astype(np.float32)
                ts = (np.arange(32, dtype=np.float32) / np.float32(31)).astype(ft).astype(np.float32)
                for k in range(31):
                    common = {"time": np.full(B, ts[k], dtype=ft), "start_time": np.zeros(B, ft)}
                    if full:
                        common["duration"] = np.full(B, N, dtype=ft)
                    (vc,) = sess.run(None, dict(common, x=xs.astype(ft), cond=cond.astype(ft), text=text,
                                                style=style.astype(ft)))
                    (vu,) = sess.run(None, dict(common, x=xs.astype(ft), cond=np.zeros_like(cond, dtype=ft),
                                                text=np.zeros_like(text), style=negb.astype(ft)))
                    vc, vu = vc.astype(np.float32), vu.astype(np.float32)
                    xs = xs + (ts[k + 1] - ts[k]) * (vc + np.float32(4.0) * (vc - vu))
                worst = max(worst, float(np.max(np.abs(xs - goal) / (1 + np.abs(goal)))))
                worst_abs = max(worst_abs, float(np.max(np.abs(xs - goal))))
            lim = 6e-3 if f16 else 2e-6
            expect(worst <= lim, f"{name} Euler/CFG lands on target (max |err|/(1+|goal|) = "
                   f"{worst:.2e} <= {lim:g}; max |err| = {worst_abs:.2e}, max |goal| = "
                   f"{np.max(np.abs(goal)):.1f})")

    # ---- VAE ----
    dec, enc = session("vae_decoder.onnx"), session("vae_encoder.onnx")
    expect([i.name for i in dec.get_inputs()] == ["latent"] and [o.name for o in dec.get_outputs()] == ["audio"],
           "vae_decoder signature")
    expect([i.name for i in enc.get_inputs()] == ["audio"] and [o.name for o in enc.get_outputs()] == ["latent"],
           "vae_encoder signature")
    lat = rng.standard_normal((2, LATENT_DIM, 5)).astype(np.float32)
    (audio,) = dec.run(None, {"latent": lat})
    basis = vae_basis(1.0).astype(np.float64)
    ref = np.einsum("bct,cn->btn", lat.astype(np.float64), AMPLITUDE * basis).reshape(2, 1, -1)
    ref = np.repeat(ref, 2, axis=1)
    expect(audio.shape == (2, 2, 5 * HOP) and np.max(np.abs(audio - ref)) < 1e-5,
           f"vae_decoder matches closed form (max err {np.max(np.abs(audio - ref)):.2e})")
    # exact: pure sinusoid, against the unreduced formula
    n = np.arange(HOP)
    direct = AMPLITUDE * np.sin(2 * np.pi * BASIS_BINS[5] * n / HOP)
    (one,) = dec.run(None, {"latent": np.eye(LATENT_DIM, dtype=np.float32)[None, :, 5:6]})
    expect(np.max(np.abs(one[0, 0] - direct)) < 1e-6 and np.array_equal(one[0, 0], one[0, 1]),
           "vae_decoder channel 5 = A sin(2 pi k_5 n / 2048) on both channels")
    spec = np.abs(np.fft.rfft(one[0, 0].astype(np.float64)))
    expect(int(np.argmax(spec)) == BASIS_BINS[5] and abs(spec[BASIS_BINS[5]] - AMPLITUDE * HOP / 2) < 1e-3,
           "decoded frame DFT peak at k_c with magnitude A*1024")
    (rt,) = enc.run(None, {"audio": audio})
    expect(np.max(np.abs(rt - lat)) < 1e-5, f"encode(decode(l)) == l (max err {np.max(np.abs(rt - lat)):.2e})")
    wav = rng.standard_normal((1, 2, 3 * HOP)).astype(np.float32)
    (le,) = enc.run(None, {"audio": wav})
    ref = np.einsum("bstn,cn->bct", wav.astype(np.float64).reshape(1, 2, 3, HOP),
                    basis / (AMPLITUDE * HOP))
    expect(np.max(np.abs(le - ref)) < 1e-5, "vae_encoder matches closed form")
    # chunk independence
    (a1,) = dec.run(None, {"latent": lat[:, :, :2]})
    (a2,) = dec.run(None, {"latent": lat[:, :, 2:]})
    expect(np.array_equal(np.concatenate([a1, a2], axis=2), audio), "decoder frames independent (chunking exact)")

    # ---- style text ----
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    st = session("style_text.onnx")
    expect(tok.get_vocab_size() == len(words), f"tokenizer vocab size {len(words)}")
    enc1 = tok.encode("Upbeat Hip-Hop, with PIANO & zzzunknown drums")
    expect(enc1.tokens == ["upbeat", "hip", "-", "hop", ",", "with", "piano", "&", "[UNK]", "drums"],
           f"tokenizer behaviour: {enc1.tokens}")
    expect(enc1.ids[8] == 0 and tok.token_to_id("[PAD]") == 1, "[UNK]=0, [PAD]=1")
    batch = tok.encode_batch(["sad piano ballad", "energetic electronic dance music with heavy bass"])
    ids = np.array([b.ids for b in batch], dtype=np.int64)
    mask = np.array([b.attention_mask for b in batch], dtype=np.int64)
    expect(mask[0].sum() == 3 and ids[0, 3] == 1 and mask.shape[1] == 7, "batch padding with [PAD]=1")
    (emb,) = st.run(None, {"input_ids": ids, "attention_mask": mask})
    table = style_text_table(len(words)).astype(np.float64)
    m = mask.astype(np.float64)
    mean = (table[ids] * m[:, :, None]).sum(1) / np.maximum(m.sum(1, keepdims=True), 1)
    ref = mean / np.linalg.norm(mean, axis=1, keepdims=True)
    expect(np.max(np.abs(emb - ref)) < 1e-5 and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5),
           "style_text matches closed form, unit norm")
    (single,) = st.run(None, {"input_ids": ids[:1, :3], "attention_mask": mask[:1, :3]})
    expect(np.max(np.abs(single - emb[:1])) < 1e-6, "style_text padding does not change the result")
    (empty,) = st.run(None, {"input_ids": np.ones((1, 2), np.int64), "attention_mask": np.zeros((1, 2), np.int64)})
    expect(np.all(empty == 0), "style_text empty prompt -> zero vector")

    # ---- style audio ----
    sa = session("style_audio.onnx")
    filt = style_audio_filters().astype(np.float64)
    for S in (480, 24000 * 10, 1000):
        w = (0.1 * rng.standard_normal((2, S))).astype(np.float32)
        (ea,) = sa.run(None, {"wav": w})
        frames = w[:, : (S // STYLE_WIN) * STYLE_WIN].astype(np.float64).reshape(2, -1, STYLE_WIN)
        bands = np.einsum("btn,jn->bjt", frames, filt)
        r = np.sqrt((bands ** 2).mean(-1)) + STYLE_AUDIO_EPS
        r /= np.linalg.norm(r, axis=1, keepdims=True)
        expect(np.max(np.abs(ea - r)) < 1e-5, f"style_audio matches closed form (S={S})")
    # (cosine-only filters are phase sensitive: a tone at a multiple of 50 Hz keeps the same
    # phase in every 480-sample frame, so use one that drifts)
    tone = np.sin(2 * np.pi * 1013.0 * np.arange(240000) / 24000).astype(np.float32)[None]
    (et,) = sa.run(None, {"wav": tone})
    fj = np.linspace(STYLE_F_LO, STYLE_F_HI, STYLE_DIM)
    expect(abs(fj[int(np.argmax(et))] - 1013.0) < 25, "style_audio 1013 Hz tone peaks at its band")

    sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    total = sum(sizes.values())
    expect(total < 3 * 1024 * 1024, f"bundle total {total} bytes < 3 MiB")
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)
    print("all checks passed")


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
