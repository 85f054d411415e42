"""Shared helpers of the export tests: a reduced DiT of the real architecture with random
weights, saved as the published checkpoint is laid out."""

import json
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


# --- MuQ-MuLan (the style encoders) -------------------------------------------------------

#: Words of the stand-in tokenizer (the real one is xlm-roberta-base's 250k-piece tokenizer).
STYLE_WORDS = "bright acoustic pop with piano dark synthwave , 120 bpm female vocals".split()


def style_tokenizer(path):
    """A small ``tokenizer.json`` laid out like XLM-R's: ``<s>`` 0, ``<pad>`` 1, ``</s>`` 2,
    ``<unk>`` 3, ``<s> … </s>`` around each prompt."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for w in STYLE_WORDS:
        vocab.setdefault(w, len(vocab))
    vocab["<mask>"] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.save(str(path))
    return len(vocab)


def reduced_mulan_configs(vocab_size: int, position_embeddings_type: str = "rotary"):
    """MuQ-MuLan-large's configs with every size reduced: ``(mulan, muq, xlmr)`` as the three
    downloads' ``config.json`` hold them (the real ones: MuQ 1024 wide, 12 conformer layers;
    XLM-R base; MuLan's text transformer 8 layers of 768, its audio transformer 0 layers)."""
    from transformers import Wav2Vec2ConformerConfig, XLMRobertaConfig

    w2v2 = Wav2Vec2ConformerConfig(
        hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
        position_embeddings_type=position_embeddings_type, conv_depthwise_kernel_size=31,
    ).to_dict()
    muq = dict(encoder_dim=64, encoder_depth=2, conv_dim=8, codebook_size=64, w2v2_config=w2v2,
               stat={"melspec_2048_mean": 6.768, "melspec_2048_std": 18.418})
    xlmr = XLMRobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, type_vocab_size=1, layer_norm_eps=1e-5,
    ).to_dict()
    mulan = {
        "mulan": {"sr": 24000, "clip_secs": 10, "dim_latent": 512, "decoupled_contrastive_learning": True,
                  "hierarchical_contrastive_loss": False, "hierarchical_contrastive_loss_layers": None,
                  "sigmoid_contrastive_loss": False, "rank_contrast": True},
        "audio_model": {"name": "OpenMuQ/MuQ-large-msd-iter", "model_dim": 64, "use_layer_idx": -1},
        "text_model": {"name": "xlm-roberta-base", "model_dim": None, "use_layer_idx": -1},
        "audio_transformer": {"dim": 32, "tf_depth": 1, "heads": 2, "dim_head": 16, "attn_dropout": 0.0,
                              "ff_dropout": 0.0, "ff_mult": 4},
        "text_transformer": {"dim": 32, "tf_depth": 2, "max_seq_len": 1024, "dim_head": 16, "heads": 2,
                             "attn_dropout": 0.0, "ff_dropout": 0.0, "ff_mult": 4},
    }
    return mulan, muq, xlmr


def write_mulan_download(directory, seed: int = 0, position_embeddings_type: str = "rotary"):
    """A reduced MuQ-MuLan of the real architecture (the ``muq`` package's classes) with random
    weights, written as the user's downloads are laid out; returns ``(model, MulanFiles)``."""
    from refrain_export import mulan as M

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = directory / "xlm-roberta-base" / "tokenizer.json"
    tokenizer.parent.mkdir(parents=True, exist_ok=True)
    cfg, muq, xlmr = reduced_mulan_configs(style_tokenizer(tokenizer), position_embeddings_type)
    for name, c in (("MuQ-large-msd-iter", muq), ("xlm-roberta-base", xlmr)):
        (directory / name).mkdir(parents=True, exist_ok=True)
        (directory / name / "config.json").write_text(json.dumps(c))
    model = M.build_mulan(cfg, M._muq_config(directory / "MuQ-large-msd-iter" / "config.json"),
                          M._xlmr_config(directory / "xlm-roberta-base" / "config.json"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # beyond the default init, so that no weight is left at 0 or 1
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    M.save_published_layout(model, directory, cfg, muq, xlmr)
    files = M.MulanFiles.find(directory / "MuQ-MuLan-large", directory / "MuQ-large-msd-iter",
                              directory / "xlm-roberta-base")
    return model, files


@pytest.fixture(scope="session")
def mulan_download(tmp_path_factory):
    """``(model, MulanFiles)``: a reduced random MuQ-MuLan in the downloads' layout."""
    return write_mulan_download(tmp_path_factory.mktemp("mulan"))
