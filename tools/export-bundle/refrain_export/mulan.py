"""The bundle's style encoders exported from the user's MuQ-MuLan download (PyPI ``muq``).

MuQ-MuLan (``OpenMuQ/MuQ-MuLan-large``, CC-BY-NC-4.0) is built with the ``muq`` package's own
classes, but never from the Hugging Face hub: ``MuQMuLan.from_pretrained`` would download two
more models while building it (the audio tower's MuQ, ``OpenMuQ/MuQ-large-msd-iter``, and the
text tower's XLM-R, ``xlm-roberta-base``), whose weights it then overwrites with MuQ-MuLan's own
file, and it loads that file with ``strict=False``. Here:

* the model is built from local files only: MuQ-MuLan's ``config.json``, MuQ-large-msd-iter's
  ``config.json`` (the mel statistics and the conformer's settings, which MuQ-MuLan's files do
  not hold) and xlm-roberta-base's ``config.json``; the two towers' inner models are made from
  these configs (``muq.MuQ(config)`` and ``XLMRobertaModel(config)``) instead of downloaded;
* MuQ-MuLan's weights (``pytorch_model.bin`` or ``model.safetensors``, every tensor of both
  towers) are loaded strictly: a missing or unexpected key or a wrong shape stops the export
  with a :class:`MulanError` naming the file and the key. Two differences that are not errors
  are handled explicitly: weight-norm tensors saved under the old ``weight_g``/``weight_v``
  names (renamed to ``parametrizations.weight.original0/1``) and a saved copy of a buffer
  that this version of ``transformers`` no longer saves (accepted only if equal to it).

The graphs follow the bundle contract (``MODEL_BUNDLE.md``) and how ``inference-node``
calls them (``src/style.rs``):

* **text**: ``input_ids [B,L] i64, attention_mask [B,L] i64 -> embedding [B,512] f32``. Ids are
  those of xlm-roberta-base's ``tokenizer.json`` with special tokens (the file the bundle
  ships). As the reference (``TextTransformerPretrained.forward`` + ``get_text_latents``): XLM-R
  with the mask, MuLan's text transformer, the mean over *all* L positions (the mask reaches
  XLM-R only), ``text_to_latents``, L2 normalisation.
* **audio**: ``wav [B,S] f32`` (24 kHz mono) ``-> embedding [B,512] f32``: the package's own
  forward (``MuLanModel.get_audio_latents``: MuQ's dB mel spectrogram normalised with the
  stored statistics, conv subsampling, conformer, the configured layer, projection, MuLan's
  audio transformer, mean over time, ``audio_to_latents``, L2 normalisation), with one
  substitution: the STFT of the mel front end is computed as a convolution with the same
  windowed DFT basis (``torch.stft`` returns complex tensors, which ONNX export cannot
  represent). Each row is one clip: the reference (``MuQMuLan.extract_audio_latents``) cuts
  longer audio into 10 s clips and averages them; the node always gives exactly the 10 s crop
  the reference takes (one clip), so the two agree.

After export each graph is run with ONNX Runtime against the PyTorch model on short inputs:
the text graph on ids from ``tokenizer.json`` against ``MuQMuLan(texts=...)`` (the package's
whole text path, tokenizer included), the audio graph against ``MuQMuLan(wavs=...)`` on a 10 s
clip and against ``get_audio_latents`` on a short one.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# Nothing here may reach the Hugging Face hub: set before transformers/huggingface_hub load.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from .onnx_export import EXTERNAL_DATA_OVER, OPSET, CheckResult, session  # noqa: E402

EMBEDDING_DIM = 512
SAMPLE_RATE = 24000
CLIP_SECONDS = 10
#: Largest |ORT - PyTorch| accepted on the unit-norm embedding (float32 graphs).
TEXT_TOLERANCE = 1e-4
AUDIO_TOLERANCE = 5e-4


class MulanError(Exception):
    """A MuQ-MuLan file that cannot be exported; the message names the file and, where one is
    to blame, the key."""

    def __init__(self, path: Path | str, message: str):
        super().__init__(f"{path}: {message}")


@dataclass
class MulanFiles:
    """The downloaded files the style encoders are exported from."""

    config: Path  # OpenMuQ/MuQ-MuLan-large config.json
    weights: Path  # OpenMuQ/MuQ-MuLan-large pytorch_model.bin or model.safetensors
    muq_config: Path  # OpenMuQ/MuQ-large-msd-iter config.json
    xlmr_config: Path  # FacebookAI/xlm-roberta-base config.json
    tokenizer: Path  # FacebookAI/xlm-roberta-base tokenizer.json

    @classmethod
    def find(cls, mulan: Path, muq: Path, xlmr: Path, tokenizer: Path | None = None) -> "MulanFiles":
        """The files in the three download folders (for ``muq``, the config file itself may be
        given; ``tokenizer`` defaults to ``xlmr``'s ``tokenizer.json``)."""
        try:
            importlib.import_module("muq.muq_mulan.muq_mulan")
        except ImportError as e:
            raise MulanError("muq", f"the PyPI package `muq` cannot be imported ({e}): `pip install -r tools/export-bundle/requirements.txt`") from None

        def pick(where: Path, names: list[str], what: str) -> Path:
            if where.is_file() and names == ["config.json"]:
                return where
            if not where.is_dir():
                raise MulanError(where, f"no such folder ({what})")
            for name in names:
                if (where / name).is_file():
                    return where / name
            raise MulanError(where, f"no {' or '.join(f'`{n}`' for n in names)} here ({what})")

        return cls(
            config=pick(mulan, ["config.json"], "the download of OpenMuQ/MuQ-MuLan-large"),
            weights=pick(mulan, ["model.safetensors", "pytorch_model.bin"], "the download of OpenMuQ/MuQ-MuLan-large"),
            muq_config=pick(muq, ["config.json"], "OpenMuQ/MuQ-large-msd-iter's config"),
            xlmr_config=pick(xlmr, ["config.json"], "the download of xlm-roberta-base"),
            tokenizer=tokenizer if tokenizer is not None else pick(xlmr, ["tokenizer.json"], "the download of xlm-roberta-base"),
        )


def _read_json(path: Path, what: str) -> dict:
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise MulanError(path, f"cannot read {what}: {e}") from None
    if not isinstance(obj, dict):
        raise MulanError(path, f"{what} is not a JSON object")
    return obj


def _mulan_config(path: Path) -> dict:
    cfg = _read_json(path, "the MuQ-MuLan config")
    if set(cfg) == {"config"}:  # some hub mixin versions nest it
        cfg = cfg["config"]
    need = ["mulan", "audio_model", "text_model", "audio_transformer", "text_transformer"]
    missing = [k for k in need if not isinstance(cfg.get(k), dict)]
    if missing:
        raise MulanError(path, f"not a MuQ-MuLan config: no `{missing[0]}` section (expected {', '.join(need)}; OpenMuQ/MuQ-MuLan-large's config.json)")
    if "muq" not in str(cfg["audio_model"].get("name", "")).lower():
        raise MulanError(path, f"audio_model.name = {cfg['audio_model'].get('name')!r}: only a MuQ audio tower is supported")
    if "xlm-roberta" not in str(cfg["text_model"].get("name", "")):
        raise MulanError(path, f"text_model.name = {cfg['text_model'].get('name')!r}: only an XLM-R text tower is supported")
    return cfg


def _muq_config(path: Path):
    from muq.muq.muq import MuQConfig

    cfg = _read_json(path, "the MuQ config")
    if set(cfg) == {"config"}:
        cfg = cfg["config"]
    try:
        muq = MuQConfig(**cfg)
    except TypeError as e:
        raise MulanError(path, f"not a MuQ config (OpenMuQ/MuQ-large-msd-iter's config.json): {e}") from None
    stat = muq.stat or {}
    for key in ("melspec_2048_mean", "melspec_2048_std"):
        if not isinstance(stat.get(key), (int, float)):
            raise MulanError(path, f"no `stat.{key}` (the mel statistics MuQ normalises with)")
    if not muq.w2v2_config or "num_attention_heads" not in muq.w2v2_config:
        raise MulanError(path, "no `w2v2_config` (the conformer's settings)")
    return muq


def _xlmr_config(path: Path):
    from transformers import XLMRobertaConfig

    cfg = _read_json(path, "the XLM-R config")
    if cfg.get("model_type") not in (None, "xlm-roberta"):
        raise MulanError(path, f"model_type = {cfg.get('model_type')!r}, expected 'xlm-roberta' (xlm-roberta-base's config.json)")
    config = XLMRobertaConfig.from_dict(cfg)
    config._attn_implementation = "eager"  # the mask stays an input of the graph (see export_text)
    return config


@contextmanager
def _local_towers(muq_config, xlmr_config):
    """While active, the ``muq`` package builds its two pretrained inner models from the given
    configs instead of downloading them."""
    from muq import MuQ
    from muq.muq_mulan.models.audio import AudioSpectrogramTransformerPretrained as Audio
    from muq.muq_mulan.models.text import TextTransformerPretrained as Text
    from transformers import XLMRobertaModel

    def audio_init(self, model_name):
        self.model = MuQ(muq_config)

    def text_init(self):
        return XLMRobertaModel(xlmr_config)

    saved = Audio._init_pretrained_model, Text._init_pretrained_model
    Audio._init_pretrained_model, Text._init_pretrained_model = audio_init, text_init
    try:
        yield
    finally:
        Audio._init_pretrained_model, Text._init_pretrained_model = saved


def build_mulan(config: dict, muq_config, xlmr_config):
    """A ``muq.MuQMuLan`` from configs (random weights), without the hub."""
    from muq import MuQMuLan

    with _local_towers(muq_config, xlmr_config):
        model = MuQMuLan(config)
    return model.eval()


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise MulanError(path, "no such file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:
        raise MulanError(
            path,
            f"not a MuQ-MuLan weights file ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "expected OpenMuQ/MuQ-MuLan-large's pytorch_model.bin",
        ) from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not sd:
        raise MulanError(path, "expected a state dict (a mapping of names to tensors)")
    for key, value in sd.items():
        if not isinstance(value, torch.Tensor):
            raise MulanError(path, f"key `{key}` is not a tensor")
    return sd


def load_strictly(model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    """Loads ``sd`` into ``model``, refusing any missing or unexpected key and any wrong shape."""
    expected = model.state_dict()
    sd = dict(sd)
    # Weight norm saved by an older torch (`weight_g`/`weight_v`): the same two tensors.
    for key in list(sd):
        for old, new in ((".weight_g", ".parametrizations.weight.original0"), (".weight_v", ".parametrizations.weight.original1")):
            if key.endswith(old) and key not in expected and key[: -len(old)] + new in expected:
                sd[key[: -len(old)] + new] = sd.pop(key)
    # A buffer this transformers version keeps out of the state dict (e.g. XLM-R's
    # `position_ids`) but an older one saved: fine if it holds the same values.
    buffers = dict(model.named_buffers())
    for key in sorted(set(sd) - set(expected)):
        if key in buffers:
            if sd[key].shape != buffers[key].shape or not torch.equal(sd[key].to(buffers[key].dtype), buffers[key]):
                raise MulanError(path, f"key `{key}` (a computed buffer) differs from the value the model computes")
            sd.pop(key)
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing:
        raise MulanError(path, f"missing key `{missing[0]}` ({len(missing)} missing in all)")
    if unexpected:
        raise MulanError(path, f"unexpected key `{unexpected[0]}` ({len(unexpected)} unexpected in all)")
    for key, want in expected.items():
        got = sd[key]
        if tuple(got.shape) != tuple(want.shape):
            raise MulanError(path, f"key `{key}` has shape {list(got.shape)}, the configs give {list(want.shape)}")
        if got.is_floating_point() != want.is_floating_point():
            raise MulanError(path, f"key `{key}` is {got.dtype}, expected {want.dtype}")
        if got.is_floating_point() and not torch.isfinite(got).all():
            raise MulanError(path, f"key `{key}` holds NaN or infinite values")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in sd.items()}, strict=True)


def load_mulan(files: MulanFiles):
    """MuQ-MuLan in float32 from the user's files, weights loaded strictly."""
    config = _mulan_config(files.config)
    muq, xlmr = _muq_config(files.muq_config), _xlmr_config(files.xlmr_config)
    try:
        model = build_mulan(config, muq, xlmr)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        raise MulanError(files.config, f"the muq package cannot build a MuQ-MuLan from this config with {files.muq_config} and {files.xlmr_config}: {type(e).__name__}: {e}") from None
    load_strictly(model, read_weights(files.weights), files.weights)
    return model.float().eval()


def save_published_layout(model, directory: Path, config: dict, muq_config: dict, xlmr_config: dict) -> None:
    """Writes a model as the downloads are laid out: ``<dir>/MuQ-MuLan-large/{config.json,
    pytorch_model.bin}``, ``<dir>/MuQ-large-msd-iter/config.json`` and
    ``<dir>/xlm-roberta-base/config.json`` (the tokenizer is the caller's): what the tests
    export from."""
    for name, cfg in (("MuQ-MuLan-large", config), ("MuQ-large-msd-iter", muq_config), ("xlm-roberta-base", xlmr_config)):
        (directory / name).mkdir(parents=True, exist_ok=True)
        (directory / name / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    torch.save(sd, directory / "MuQ-MuLan-large" / "pytorch_model.bin")


# --- ONNX ------------------------------------------------------------------------------------


class DftMelSpectrogram(torch.nn.Module):
    """MuQ's mel front end (torchaudio ``MelSpectrogram`` with power 2, then ``AmplitudeToDB``)
    with the STFT as a strided convolution by the windowed DFT basis, built from the package's
    own transform objects (window, mel filter bank, sizes)."""

    def __init__(self, mel_stft):
        super().__init__()
        spec = mel_stft.mel_stft.spectrogram
        mel = mel_stft.mel_stft.mel_scale
        unsupported = []
        if spec.power != 2.0:
            unsupported.append(f"power {spec.power}")
        if not spec.center or spec.pad_mode != "reflect":
            unsupported.append(f"center {spec.center} / pad_mode {spec.pad_mode}")
        if spec.normalized or spec.pad or not spec.onesided:
            unsupported.append("normalized / pad / two-sided")
        if spec.win_length != spec.n_fft:
            unsupported.append(f"win_length {spec.win_length} != n_fft {spec.n_fft}")
        db = getattr(mel_stft, "amplitude_to_db", None) if mel_stft.is_db else None
        if db is not None and db.top_db is not None:
            unsupported.append(f"top_db {db.top_db}")
        if unsupported:
            raise MulanError("muq", f"MuQ's mel front end changed ({', '.join(unsupported)}): this exporter does not handle it")
        n_fft = spec.n_fft
        self.n_fft, self.hop = n_fft, spec.hop_length
        bins = n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(bins, dtype=torch.float64)
        angle = 2 * math.pi * torch.remainder(k[:, None] * n[None, :], n_fft) / n_fft
        window = spec.window.double()
        basis = torch.cat([window * torch.cos(angle), -window * torch.sin(angle)])  # [2*bins, n_fft]
        self.register_buffer("basis", basis.float()[:, None, :])
        self.register_buffer("fb_t", mel.fb.T.contiguous().float())  # [n_mels, bins]
        self.bins = bins
        self.db = db is not None
        if db is not None:
            self.multiplier, self.amin, self.db_multiplier = db.multiplier, db.amin, db.db_multiplier

    def forward(self, wav: torch.Tensor) -> torch.Tensor:  # [B,S] -> [B, n_mels, S // hop + 1]
        x = F.pad(wav[:, None, :], (self.n_fft // 2, self.n_fft // 2), mode="reflect")
        y = F.conv1d(x, self.basis, stride=self.hop)
        re, im = y[:, : self.bins], y[:, self.bins :]
        mel = torch.matmul(self.fb_t, re * re + im * im)
        if not self.db:
            return mel
        return self.multiplier * torch.log10(torch.clamp(mel, min=self.amin)) - self.multiplier * self.db_multiplier


def _muq_model(model):
    return model.mulan.audio.model.model  # MuQMuLan -> MuLanModel -> audio tower -> MuQ -> MuQModel


@contextmanager
def _static_layer_norms(model):
    """While active, MuLan's bias-free ``LayerNorm`` passes its width as a constant (it reads it
    from the input's shape, which the ONNX exporter cannot take as ``normalized_shape``)."""
    from muq.muq_mulan.modules.transformer import LayerNorm

    norms = [m for m in model.modules() if isinstance(m, LayerNorm)]
    for m in norms:
        m._refrain_width = (int(m.beta.numel()),)

    def forward(self, x):
        width = getattr(self, "_refrain_width", None) or x.shape[-1:]
        return F.layer_norm(x, width, self.learned_gamma if self.learned_gamma is not None else self.gamma, self.beta)

    saved = LayerNorm.forward
    LayerNorm.forward = forward
    try:
        yield
    finally:
        LayerNorm.forward = saved
        for m in norms:
            del m._refrain_width


@contextmanager
def _exportable_audio(model):
    """While active, MuQ computes its mel spectrogram with :class:`DftMelSpectrogram` and the
    conformer's rotary table is recomputed from each input's length (no cached table)."""
    inner = _muq_model(model)
    original = inner.preprocessor_melspec_2048
    inner.preprocessor_melspec_2048 = DftMelSpectrogram(original)
    rotary = [m for m in model.modules() if hasattr(m, "cached_rotary_positional_embedding")]
    for m in rotary:
        m.cached_sequence_length, m.cached_rotary_positional_embedding = None, None
    try:
        yield
    finally:
        del inner._modules["preprocessor_melspec_2048"]
        inner.preprocessor_melspec_2048 = original
        for m in rotary:
            m.cached_sequence_length, m.cached_rotary_positional_embedding = None, None


class _AudioTower(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.mulan = model.mulan

    def forward(self, wav):
        return self.mulan.get_audio_latents(wav)


class _TextTower(torch.nn.Module):
    """``TextTransformerPretrained.forward`` after its tokenizer, then ``get_text_latents``."""

    def __init__(self, model):
        super().__init__()
        self.mulan = model.mulan

    def forward(self, input_ids, attention_mask):
        text = self.mulan.text
        hidden = text.pred_pretrained_model_hidden(input_ids=input_ids, attention_mask=attention_mask)
        hidden, _ = text.transformer(text.proj(hidden), return_all_layers=True)
        latents = self.mulan.text_to_latents(hidden.mean(dim=-2))
        return self.mulan._norm_latents(latents)


def _export(module, args, out: Path, inputs: list[str], axes: dict) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        raw = Path(tmp) / "graph.onnx"
        with torch.no_grad():
            torch.onnx.export(
                module, args, str(raw), input_names=inputs, output_names=["embedding"],
                dynamic_axes={**axes, "embedding": {0: "B"}}, opset_version=OPSET, dynamo=False,
                do_constant_folding=True,
            )
        graph = onnx.load(str(raw), load_external_data=True)
        # The width is fixed: say so instead of the exporter's symbolic name.
        graph.graph.output[0].type.tensor_type.shape.dim[1].dim_value = EMBEDDING_DIM
        # Only the tower's own weights are in the graph (the module holds both towers).
        large = sum(len(t.raw_data) for t in graph.graph.initializer) > EXTERNAL_DATA_OVER
        data = out.with_name(out.name + ".data")
        for stale in (out, data):
            if stale.exists():
                stale.unlink()
        if large:
            onnx.save_model(graph, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                            location=data.name, size_threshold=1024)
            data.chmod(0o644)
        else:
            onnx.save_model(graph, str(out))
    got = [i.name for i in onnx.load(str(out), load_external_data=False).graph.input]
    if got != inputs:
        raise MulanError(out, f"the exported graph's inputs are {got}, the contract's {inputs}")
    return out


def export_text(model, out: Path) -> Path:
    """Writes the text tower as ``input_ids, attention_mask -> embedding`` (float32)."""
    ids = torch.tensor([[0, 10, 11, 12, 13, 2], [0, 14, 15, 2, 1, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    with _static_layer_norms(model):
        return _export(_TextTower(model).eval(), (ids, mask), out, ["input_ids", "attention_mask"],
                       {"input_ids": {0: "B", 1: "L"}, "attention_mask": {0: "B", 1: "L"}})


def export_audio(model, out: Path) -> Path:
    """Writes the audio tower as ``wav -> embedding`` (float32, 24 kHz mono, one clip a row)."""
    g = torch.Generator().manual_seed(0)
    wav = torch.randn(1, 3 * SAMPLE_RATE, generator=g) * 0.1
    with _exportable_audio(model), _static_layer_norms(model):
        return _export(_AudioTower(model).eval(), (wav,), out, ["wav"], {"wav": {0: "B", 1: "S"}})


def _compare(name: str, got: np.ndarray, ref: np.ndarray, tolerance: float) -> CheckResult:
    if got.shape != ref.shape:
        raise MulanError(name, f"`embedding` has shape {list(got.shape)}, PyTorch gives {list(ref.shape)}")
    return CheckResult(name, float(np.abs(got - ref).max()), float(np.abs(ref).max()), tolerance)


PROBE_PROMPTS = ["bright acoustic pop with piano", "dark synthwave, 120 bpm, female vocals"]


def check_text(model, graph: Path, tokenizer: Path, prompts: list[str] | None = None) -> list[CheckResult]:
    """ORT on ids from ``tokenizer.json`` (as the node tokenizes) against the package's whole
    text path ``MuQMuLan(texts=...)`` with the same tokenizer: one prompt at a time (as the node
    runs it) and the prompts as one padded batch (the mask)."""
    from tokenizers import Tokenizer
    from transformers import XLMRobertaTokenizerFast

    prompts = prompts or PROBE_PROMPTS
    tok = Tokenizer.from_file(str(tokenizer))
    model.mulan.text._tokenizer = XLMRobertaTokenizerFast(tokenizer_file=str(tokenizer))
    sess = session(graph)
    name = os.path.basename(graph)
    results = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tok.encode(prompt).ids  # what refrain_model::prompt::PromptTokenizer gives
            ref_ids = model.mulan.text.tokenizer([prompt])["input_ids"][0]
            if list(ids) != list(ref_ids):
                raise MulanError(tokenizer, f"tokenizes {prompt!r} as {ids}, the reference's tokenizer as {ref_ids}")
            ref = model(texts=[prompt]).numpy()
            a = np.array([ids], dtype=np.int64)
            got = sess.run(["embedding"], {"input_ids": a, "attention_mask": np.ones_like(a)})[0]
            results.append(_compare(f"{name} ({len(ids)} tokens)", got, ref, TEXT_TOLERANCE))
        batch = model.mulan.text.tokenizer(prompts, return_tensors="np", padding=True)
        ref = model(texts=prompts).numpy()
        got = sess.run(["embedding"], {"input_ids": batch["input_ids"].astype(np.int64),
                                       "attention_mask": batch["attention_mask"].astype(np.int64)})[0]
        results.append(_compare(f"{name} (padded batch of {len(prompts)})", got, ref, TEXT_TOLERANCE))
    return results


def probe_audio(seconds: float, batch: int = 1, seed: int = 0) -> torch.Tensor:
    """Music-like test audio at 24 kHz: a few partials with vibrato plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE), dtype=torch.float64) / SAMPLE_RATE
    rows = []
    for _ in range(batch):
        f0 = 110.0 * 2 ** (float(torch.randint(0, 24, (1,), generator=g)) / 12)
        x = sum(0.3 / k * torch.sin(2 * math.pi * f0 * k * t + 0.3 * torch.sin(2 * math.pi * 5 * t)) for k in range(1, 6))
        x = x * (0.6 + 0.4 * torch.sin(2 * math.pi * 2 * t)) + 0.01 * torch.randn(t.shape, generator=g, dtype=torch.float64)
        rows.append(x.float())
    return torch.stack(rows)


def check_audio(model, graph: Path, short_seconds: float = 2.0) -> list[CheckResult]:
    """ORT against ``MuQMuLan(wavs=...)`` (the reference's path, torchaudio's STFT included)
    on one 10 s clip, and against ``get_audio_latents`` on a short batch of 2."""
    sess = session(graph)
    name = os.path.basename(graph)
    results = []
    with torch.no_grad():
        wav = probe_audio(CLIP_SECONDS, 1, seed=1)
        ref = model(wavs=wav).numpy()
        got = sess.run(["embedding"], {"wav": wav.numpy()})[0]
        results.append(_compare(f"{name} ({CLIP_SECONDS} s)", got, ref, AUDIO_TOLERANCE))
        short = probe_audio(short_seconds, 2, seed=2)
        ref = model.mulan.get_audio_latents(short).numpy()
        got = sess.run(["embedding"], {"wav": short.numpy()})[0]
        results.append(_compare(f"{name} ({short_seconds:g} s, batch 2)", got, ref, AUDIO_TOLERANCE))
    return results


def export_style(files: MulanFiles, out_dir: Path, no_check: bool = False, log=print) -> tuple[Path, Path]:
    """Loads MuQ-MuLan from ``files`` and writes ``style_text.onnx`` and ``style_audio.onnx``
    to ``out_dir``, each checked against PyTorch (a mismatch raises unless ``no_check``)."""
    model = load_mulan(files)
    params = sum(p.numel() for p in model.parameters())
    log(f"{files.weights}: MuQ-MuLan, {params / 1e6:.0f} M parameters, loaded strictly")
    text = export_text(model, out_dir / "style_text.onnx")
    audio = export_audio(model, out_dir / "style_audio.onnx")
    for graph, results in ((text, check_text(model, text, files.tokenizer)), (audio, check_audio(model, audio))):
        for result in results:
            log(result.line())
            if not result.ok and not no_check:
                raise MulanError(graph, "ONNX Runtime does not match PyTorch")
    return text, audio
