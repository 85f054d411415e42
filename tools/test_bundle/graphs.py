"""The analytic graphs of the test bundle: DiT, VAE decoder and encoder, style encoders (see
the closed forms in tools/make_test_bundle.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .constants import (
    AMPLITUDE,
    BASIS_BINS,
    HOP,
    IR_VERSION,
    L2_EPS,
    LATENT_DIM,
    LYRIC_CHANNELS,
    OPSET,
    PRODUCER,
    SEED_NEGATIVE,
    SEED_STYLE_TABLE,
    STYLE_AUDIO_EPS,
    STYLE_CHANNELS,
    STYLE_DIM,
    STYLE_F_HI,
    STYLE_F_LO,
    STYLE_GAIN,
    STYLE_SR,
    STYLE_WIN,
    TIME_EPS,
)

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
