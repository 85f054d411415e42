"""Verification of a generated bundle with ONNX Runtime: every graph against its closed form."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx

from .constants import (
    AMPLITUDE,
    BASIS_BINS,
    HOP,
    IR_VERSION,
    LATENT_DIM,
    OPSET,
    PUNCT_HEAD,
    SEED_CHECK,
    STYLE_AUDIO_EPS,
    STYLE_DIM,
    STYLE_F_HI,
    STYLE_F_LO,
    STYLE_WIN,
    TIME_EPS,
    lyric_vocab,
    style_words,
)
from .graphs import dit_tables, style_audio_filters, style_text_table, vae_basis

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
