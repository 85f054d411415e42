"""The style encoders exported from MuQ-MuLan's weights (the PyPI ``muq`` package's classes) on
the real architecture at reduced size with random weights: offline construction, strict
loading, graphs under the contract's names, ONNX Runtime against PyTorch."""

import json

import numpy as np
import onnx
import pytest
import torch
from conftest import write_mulan_download
from refrain_export import mulan as M
from tokenizers import Tokenizer


def test_loads_strictly_what_was_saved(mulan_download):
    model, files = mulan_download
    loaded = M.load_mulan(files)
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for key in want:
        assert torch.equal(want[key], got[key]), key


def graph_io(path):
    g = onnx.load(str(path))
    onnx.checker.check_model(g)

    def sig(vi):
        t = vi.type.tensor_type
        return vi.name, t.elem_type, [d.dim_value or d.dim_param for d in t.shape.dim]

    inits = {i.name for i in g.graph.initializer}
    return [sig(i) for i in g.graph.input if i.name not in inits], [sig(o) for o in g.graph.output]


@pytest.mark.parametrize("position_embeddings_type", ["rotary", "relative"])
def test_graphs_match_pytorch(tmp_path, mulan_download, position_embeddings_type):
    if position_embeddings_type == "rotary":
        model, files = mulan_download
    else:  # the conformer's other position embedding (MuQ-large-msd-iter's config decides)
        model, files = write_mulan_download(tmp_path / "dl", seed=3, position_embeddings_type="relative")
    model = M.load_mulan(files)
    text = M.export_text(model, tmp_path / "style_text.onnx")
    audio = M.export_audio(model, tmp_path / "style_audio.onnx")
    # The contract's signatures (MODEL_BUNDLE.md) as inference-node/src/style.rs checks them.
    i64, f32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    assert graph_io(text) == ([("input_ids", i64, ["B", "L"]), ("attention_mask", i64, ["B", "L"])],
                              [("embedding", f32, ["B", 512])])
    assert graph_io(audio) == ([("wav", f32, ["B", "S"])], [("embedding", f32, ["B", 512])])
    assert not any(n.op_type == "STFT" for n in onnx.load(str(audio)).graph.node)
    results = M.check_text(model, text, files.tokenizer) + M.check_audio(model, audio)
    for r in results:
        print(r.line())
        assert r.ok, r.line()
    assert len(results) == 5

    # The checks can fail: different inputs give embeddings far apart (on these random
    # weights too), unit-norm as the reference's l2norm leaves them.
    sess = M.session(audio)
    a = sess.run(["embedding"], {"wav": M.probe_audio(10, 2, seed=5).numpy()})[0]
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.abs(a[0] - a[1]).max() > 100 * M.AUDIO_TOLERANCE
    tok = Tokenizer.from_file(str(files.tokenizer))
    sess = M.session(text)
    e = []
    for prompt in ("bright pop", "dark synthwave with piano"):
        ids = np.array([tok.encode(prompt).ids], dtype=np.int64)
        e.append(sess.run(["embedding"], {"input_ids": ids, "attention_mask": np.ones_like(ids)})[0][0])
    assert abs(np.linalg.norm(e[0]) - 1.0) < 1e-5
    assert np.abs(e[0] - e[1]).max() > 100 * M.TEXT_TOLERANCE

    # The DFT-convolution mel equals torchaudio's (the reference's) to float32 rounding.
    inner = model.mulan.audio.model.model
    wav = M.probe_audio(3, 1, seed=7)
    ref = inner.preprocessor_melspec_2048(wav)
    got = M.DftMelSpectrogram(inner.preprocessor_melspec_2048)(wav)
    assert got.shape == ref.shape and float((got - ref).abs().max()) < 5e-3  # dB, of a range of ~70


def rewrite_weights(files, tmp_path, edit):
    sd = torch.load(files.weights, weights_only=True)
    edit(sd)
    bad = tmp_path / "MuQ-MuLan-large"
    bad.mkdir(exist_ok=True)
    (bad / "config.json").write_text(files.config.read_text())
    torch.save(sd, bad / "pytorch_model.bin")
    return M.MulanFiles(bad / "config.json", bad / "pytorch_model.bin", files.muq_config, files.xlmr_config, files.tokenizer)


def test_strict_loading_names_the_file_and_key(mulan_download, tmp_path):
    _, files = mulan_download
    key = "mulan.audio.model.model.conformer.layers.1.ffn2.output_dense.weight"
    text_key = "mulan.text.model.encoder.layer.0.attention.self.query.weight"
    cases = [
        (lambda sd: sd.pop(key), f"missing key `{key}`"),
        (lambda sd: sd.__setitem__("mulan.extra.weight", torch.zeros(3)), "unexpected key `mulan.extra.weight`"),
        (lambda sd: sd.__setitem__(text_key, torch.zeros(7, 32)), f"key `{text_key}` has shape [7, 32]"),
        (lambda sd: sd["mulan.text_to_latents.bias"].fill_(float("nan")), "key `mulan.text_to_latents.bias` holds NaN"),
        # a non-persistent buffer saved with a value other than the computed one
        (lambda sd: sd.__setitem__("mulan.text.model.embeddings.position_ids", torch.zeros(1, 514, dtype=torch.long)),
         "key `mulan.text.model.embeddings.position_ids` (a computed buffer) differs"),
    ]
    for edit, message in cases:
        bad = rewrite_weights(files, tmp_path, edit)
        with pytest.raises(M.MulanError) as e:
            M.load_mulan(bad)
        assert str(bad.weights) in str(e.value) and message in str(e.value), str(e.value)

    # Not errors: the old weight-norm names, a saved copy of a computed buffer that matches.
    def legacy(sd):
        prefix = "mulan.audio.model.model.conformer.pos_conv_embed.conv."
        sd[prefix + "weight_g"] = sd.pop(prefix + "parametrizations.weight.original0")
        sd[prefix + "weight_v"] = sd.pop(prefix + "parametrizations.weight.original1")
        sd["mulan.text.model.embeddings.position_ids"] = torch.arange(514)[None]

    M.load_mulan(rewrite_weights(files, tmp_path, legacy))

    # Wrong kinds of file, wrong configs.
    vae = tmp_path / "script.pt"
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(vae))
    for path in (vae, files.config):
        with pytest.raises(M.MulanError, match="not a MuQ-MuLan weights file"):
            M.read_weights(path)
    cfg = json.loads(files.config.read_text())
    for edit, message in (
        (lambda c: c.pop("audio_transformer"), "no `audio_transformer` section"),
        (lambda c: c["audio_model"].__setitem__("name", "m-a-p/MERT-v1-330M"), "only a MuQ audio tower"),
    ):
        c = json.loads(json.dumps(cfg))
        edit(c)
        path = tmp_path / "mulan_config.json"
        path.write_text(json.dumps(c))
        with pytest.raises(M.MulanError, match=message):
            M.load_mulan(M.MulanFiles(path, files.weights, files.muq_config, files.xlmr_config, files.tokenizer))
    muq = json.loads(files.muq_config.read_text())
    muq.pop("stat")
    path = tmp_path / "muq_config.json"
    path.write_text(json.dumps(muq))
    with pytest.raises(M.MulanError, match="stat.melspec_2048_mean"):
        M.load_mulan(M.MulanFiles(files.config, files.weights, path, files.xlmr_config, files.tokenizer))
    # A MuQ-MuLan config given where MuQ's is expected: named, not a traceback.
    with pytest.raises(M.MulanError, match="not a MuQ config"):
        M.load_mulan(M.MulanFiles(files.config, files.weights, files.config, files.xlmr_config, files.tokenizer))
    with pytest.raises(M.MulanError, match="no `tokenizer.json` here"):
        M.MulanFiles.find(files.config.parent, files.muq_config, files.muq_config.parent)
