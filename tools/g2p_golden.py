#!/usr/bin/env python3
"""Regenerate inference-node/tests/data/g2p_golden.json from the DiffRhythm reference G2P.

The expected token ids come from the reference code itself, imported from your own checkout of
github.com/ASLP-lab/DiffRhythm (nothing of it is copied here): `g2p.g2p_generation.chn_eng_g2p`,
plus the `+1` of `CNENTokenizer.encode` (infer/infer_utils.py, which needs torch and is therefore
not imported). Only the English path is loaded: the Mandarin front end (jieba, pypinyin, cn2an,
the polyphone BERT) and LangSegment are replaced by stubs that fail if used (so do `tokenizers`
and `tqdm` if absent: imported, unused).

Needs, in a scratch virtualenv: phonemizer==3.3.0 inflect==7.5.0 Unidecode==1.3.8, and the
system espeak-ng library with the voices cmn, en-us, fr-fr, ko and de (the reference builds all
of them at import).

    python tools/g2p_golden.py --diffrhythm ~/src/DiffRhythm            # same lines as before
    python tools/g2p_golden.py --diffrhythm ~/src/DiffRhythm --lines lines.txt
"""

import argparse
import json
import os
import subprocess
import sys
import types

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_OUT = os.path.join(HERE, "..", "inference-node", "tests", "data", "g2p_golden.json")


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def not_loaded(what):
    def fail(*_args, **_kwargs):
        raise NotImplementedError(f"{what} is not loaded by tools/g2p_golden.py")

    return fail


def load_reference(diffrhythm):
    """Imports chn_eng_g2p from the checkout, with the non-English front ends stubbed out."""
    diffrhythm = os.path.abspath(diffrhythm)
    os.chdir(diffrhythm)  # the reference opens ./g2p/... relative to the working directory
    sys.path.insert(0, diffrhythm)
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
    from g2p import g2p_generation  # noqa: E402

    # espeak-ng keeps state between calls: after some input (a Latin letter glued to Hangul,
    # "s안녕") it stays in British English until a clean language switch, so in one process a
    # line's phonemes can depend on the lines before it. Refrain selects the voice again before
    # each line; do the same to the reference's en-us backend so that each line starts fresh.
    espeak = g2p_generation.text_tokenizer.text_tokenizers["en"].backend._espeak

    def chn_eng_g2p(text):
        espeak.set_voice("en-us")
        return g2p_generation.chn_eng_g2p(text)

    return chn_eng_g2p


def versions(diffrhythm):
    import phonemizer
    from importlib.metadata import version
    from phonemizer.backend import EspeakBackend

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
        "python": sys.version.split()[0],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffrhythm", required=True, help="a checkout of ASLP-lab/DiffRhythm")
    parser.add_argument("--lines", help="UTF-8 text file, one lyric line per line "
                        "(default: the lines already in --out)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    diffrhythm = os.path.abspath(args.diffrhythm)

    if args.lines:
        with open(args.lines, encoding="utf-8") as f:
            lines = [line.rstrip("\n") for line in f]
    else:
        with open(out, encoding="utf-8") as f:
            lines = [case["text"] for case in json.load(f)["cases"]]

    chn_eng_g2p = load_reference(diffrhythm)
    cases = []
    for text in lines:
        try:
            phonemes, tokens = chn_eng_g2p(text)
        except Exception as error:  # the reference raises on text without letters
            cases.append({"text": text, "error": f"{type(error).__name__}: {error}"})
            continue
        # CNENTokenizer.encode: ids shifted by one, 0 is the pad token
        cases.append({"text": text, "phonemes": phonemes, "ids": [t + 1 for t in tokens]})

    golden = {
        "note": "Expected CNENTokenizer.encode(text) of the DiffRhythm reference (English path), "
                "produced by tools/g2p_golden.py; 'phonemes' is chn_eng_g2p's phoneme string, "
                "'error' marks lines the reference rejects. The en-us voice is selected again "
                "before each line (espeak-ng state otherwise leaks from line to line).",
        "produced_with": versions(diffrhythm),
        "cases": cases,
    }
    with open(out, "w", encoding="utf-8") as f:  # one case per line, for readable diffs
        head = json.dumps({k: v for k, v in golden.items() if k != "cases"},
                          ensure_ascii=False, indent=1)
        f.write(head[:-2] + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {len(cases)} cases to {out}")


if __name__ == "__main__":
    main()
