#!/usr/bin/env python3
"""Regenerate tests/data/lyrics/parity.json: full lyric token tracks from DiffRhythm's get_lrc_token.

The expected tracks come from the reference code itself, imported from your own checkout of
github.com/ASLP-lab/DiffRhythm (nothing of it is copied here): `infer/infer_utils.py`'s
`get_lrc_token` with its `CNENTokenizer`, called exactly as `infer/infer.py` calls it
(`max_frames` 2048 for `--audio-length 95`, else 6144; the file read as UTF-8). The Rust test
`tests/lyrics_parity.rs` compares `refrain lyrics --lrc F --length L --vocab V` with them.

Only the English lyric path is loaded. What `infer_utils` and the G2P import but this path never
uses is replaced by stubs that fail if called: librosa, torchaudio, muq, mutagen,
huggingface_hub and the DiT/CFM `model` package; the Mandarin front end (jieba, pypinyin, cn2an,
the polyphone BERT) and LangSegment; `tokenizers` and `tqdm` when absent. torch is real (the
track is a torch tensor).

As in tools/g2p_golden.py, the en-us espeak voice is selected again before each line is
encoded (Refrain does the same; espeak-ng otherwise carries state from line to line).

Needs, in a scratch virtualenv: torch (the CPU-only use; any recent wheel), numpy,
phonemizer==3.3.0, inflect==7.5.0, Unidecode==1.3.8, and the system espeak-ng library with the
voices cmn, en-us, fr-fr, ko and de (the reference builds all of them at import).

    python tools/lyrics_parity.py --diffrhythm ~/src/DiffRhythm          # the cases already there
    python tools/lyrics_parity.py --diffrhythm ~/src/DiffRhythm --case song.lrc:95 --case song.lrc:200
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "lyrics")
DEFAULT_VOCAB = os.path.join(HERE, "..", "..", "shared", "reference", "diffrhythm-vocab.json")


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def not_loaded(what):
    def fail(*_args, **_kwargs):
        raise NotImplementedError(f"{what} is not loaded by tools/lyrics_parity.py")

    return fail


def load_reference(diffrhythm):
    """Imports get_lrc_token and CNENTokenizer from the checkout, unused parts stubbed out."""
    os.chdir(diffrhythm)  # the reference opens ./g2p/... relative to the working directory
    sys.path.insert(0, diffrhythm)
    # infer/infer_utils.py: audio, style and model imports, unused by get_lrc_token.
    stub("librosa", load=not_loaded("librosa"), get_duration=not_loaded("librosa"))
    stub("torchaudio", load=not_loaded("torchaudio"))
    stub("muq", MuQMuLan=not_loaded("MuQ-MuLan"))
    stub("mutagen")
    stub("mutagen.mp3", MP3=not_loaded("mutagen"))
    stub("huggingface_hub", hf_hub_download=not_loaded("huggingface_hub"))
    stub("model", DiT=not_loaded("the DiT"), CFM=not_loaded("the CFM"))
    # g2p: the non-English front ends.
    stub("g2p.g2p.mandarin", chinese_to_ipa=not_loaded("the Mandarin G2P"))
    stub("thirdparty")
    stub("thirdparty.LangSegment",
         LangSegment=types.SimpleNamespace(setfilters=lambda _filters: None,
                                           getTexts=not_loaded("LangSegment")))
    for name, attrs in (("tokenizers", {"Tokenizer": None}), ("tqdm", {})):
        try:  # imported but unused on the English path
            __import__(name)
        except ImportError:
            stub(name, **attrs)
    from infer import infer_utils  # noqa: E402
    from g2p import g2p_generation  # noqa: E402

    tokenizer = infer_utils.CNENTokenizer()
    espeak = g2p_generation.text_tokenizer.text_tokenizers["en"].backend._espeak
    reference_g2p = tokenizer.tokenizer

    def fresh_voice_g2p(text):
        espeak.set_voice("en-us")
        return reference_g2p(text)

    tokenizer.tokenizer = fresh_voice_g2p
    return infer_utils.get_lrc_token, tokenizer


def reference_track(get_lrc_token, tokenizer, lrc_path, length):
    """As infer/infer.py: the file read as UTF-8, max_frames from the audio length."""
    if length == 95:
        max_frames = 2048
    elif 95 < length <= 285:
        max_frames = 6144
    else:
        raise SystemExit(f"invalid length {length}: 95 or 96..285")
    with open(lrc_path, "r", encoding="utf-8") as f:
        lrc = f.read()
    tokens, _start, end_frame, _duration = get_lrc_token(max_frames, lrc, tokenizer, length, "cpu")
    tokens = tokens[0].tolist()
    assert len(tokens) == end_frame
    return tokens


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def versions(diffrhythm, commit):
    import phonemizer
    import torch
    from importlib.metadata import version
    from phonemizer.backend import EspeakBackend

    if commit is None:
        try:
            commit = subprocess.run(["git", "-C", diffrhythm, "rev-parse", "HEAD"], check=True,
                                    capture_output=True, text=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            commit = "unknown (not a git checkout)"
    return {
        "diffrhythm_commit": commit,
        "phonemizer": phonemizer.__version__,
        "inflect": version("inflect"),
        "espeak_ng": ".".join(str(v) for v in EspeakBackend.version()),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "vocab_sha256": sha256(os.path.join(diffrhythm, "g2p", "g2p", "vocab.json")),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffrhythm", required=True, help="a checkout of ASLP-lab/DiffRhythm")
    parser.add_argument("--commit", help="the checkout's commit, when it is an export and not "
                        "a git work tree")
    parser.add_argument("--case", action="append", metavar="FILE.lrc:LENGTH",
                        help="a case (an LRC file in tests/data/lyrics and a length in seconds); "
                        "repeatable; default: the cases already in parity.json")
    parser.add_argument("--vocab", default=DEFAULT_VOCAB,
                        help="the vocabulary the Rust test passes to `refrain lyrics`; it must be "
                        "identical to the checkout's g2p/g2p/vocab.json, which the reference reads")
    parser.add_argument("--data", default=DATA, help="the directory of the LRC files and parity.json")
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    out = os.path.join(data, "parity.json")
    diffrhythm = os.path.abspath(args.diffrhythm)

    if sha256(args.vocab) != sha256(os.path.join(diffrhythm, "g2p", "g2p", "vocab.json")):
        raise SystemExit(f"{args.vocab} differs from the checkout's g2p/g2p/vocab.json")

    if args.case:
        cases = []
        for case in args.case:
            name, _, length = case.rpartition(":")
            cases.append((name, int(length)))
    else:
        with open(out, encoding="utf-8") as f:
            cases = [(c["lrc"], c["length"]) for c in json.load(f)["cases"]]

    get_lrc_token, tokenizer = load_reference(diffrhythm)
    results = []
    for name, length in cases:
        tokens = reference_track(get_lrc_token, tokenizer, os.path.join(data, name), length)
        results.append({"lrc": name, "length": length, "tokens": tokens})
        print(f"{name} at {length} s: {len(tokens)} frames, "
              f"{sum(1 for t in tokens if t)} tokens", file=sys.stderr)

    produced = versions(diffrhythm, args.commit)
    golden = {
        "note": "Expected lyric token tracks (get_lrc_token(max_frames, lrc, CNENTokenizer(), "
                "length)[0]) of the DiffRhythm reference at commit "
                f"{produced['diffrhythm_commit']}, English path, with phonemizer "
                f"{produced['phonemizer']}, inflect {produced['inflect']} and espeak-ng "
                f"{produced['espeak_ng']}; max_frames 2048 for length 95, else 6144. Produced by "
                "tools/lyrics_parity.py; the en-us voice is selected again before each line.",
        "produced_with": produced,
        "cases": results,
    }
    with open(out, "w", encoding="utf-8") as f:  # one case per line
        head = json.dumps({k: v for k, v in golden.items() if k != "cases"},
                          ensure_ascii=False, indent=1)
        f.write(head[:-2] + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in results))
        f.write("\n ]\n}\n")
    print(f"wrote {len(results)} cases to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
