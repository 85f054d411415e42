#!/usr/bin/env python3
"""Regenerate tests/data/mandarin/golden.json from the DiffRhythm reference G2P (Mandarin).

The expected token ids come from the reference code itself, imported from your own checkout of
github.com/ASLP-lab/DiffRhythm with its g2p/sources data files in place (nothing of it is copied
here): `g2p.g2p_generation.chn_eng_g2p` plus the `+1` of `CNENTokenizer.encode` for single lines,
and `infer/infer_utils.py`'s `get_lrc_token` for whole LRC files at 95 s (base, max_frames 2048)
and 285 s (full, 6144). The Mandarin front end is real: jieba, cn2an, pypinyin, the lexicon, and
the polyphone BERT through onnxruntime with transformers' BertTokenizer. For each line the script
also records what `jieba.lcut` returned and what the polyphone BERT predicted, so that a
difference can be traced to its stage.

torch is not installed: the few torch calls on this path (tensors of ints, a DataLoader over one
example, `no_grad`, `get_lrc_token`'s zeros/slicing/unsqueeze) run on a small numpy stand-in
below; transformers' BERT modelling module (imported, unused: the model is ONNX) and the
non-lyrics imports of infer_utils are stubs that fail if used. The English path is real too
(phonemizer + espeak-ng), with the en-us voice selected again before each line as in
tools/g2p_golden.py.

Needs, in a scratch virtualenv: jieba==0.42.1 cn2an==0.5.23 pypinyin==0.53.0 onnxruntime numpy
transformers phonemizer==3.3.0 inflect==7.5.0 Unidecode==1.3.8, and the system espeak-ng.

    python tools/mandarin_golden.py --diffrhythm ~/src/DiffRhythm            # golden.json
    python tools/mandarin_golden.py --diffrhythm ~/src/DiffRhythm --corpus   # corpus.json
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import types

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "mandarin")

# The golden lines: numbers, polyphones, 一/不/3-3 sandhi, 儿, traditional characters, Chinese
# punctuation, code-switching inside a line.
LINES = [
    "你好",
    "我爱你",
    "你好，世界！",
    "我们一起唱歌。",
    "今天是2024年12月25日",
    "我有3个苹果和15本书",
    "价格是3.14元，涨了50%",
    "零下-5度，1/2的人走了",
    "电话号码是10086",
    "一万零一夜",
    "银行的行长走在人行道上",
    "我长大了，头发长了",
    "他为什么还不还钱",
    "音乐让我快乐",
    "重要的事情重复三遍",
    "我觉得你得走了",
    "都是你的错，大家都来了",
    "一个人一天一样",
    "看一看，想一想",
    "第一名，一月一号",
    "不要不对不是",
    "对不起，来不及了",
    "你好吗？很好，我也想你",
    "展览馆里的水果很好吃",
    "老鼠我也有",
    "一点儿，哪儿，女儿，小孩儿",
    "我們的愛情像風一樣",
    "聽見你的聲音",
    "你說什麼？我聽不懂！",
    "春眠不觉晓，处处闻啼鸟；夜来风雨声：花落知多少。",
    "“你好”，他说‘再见’……",
    "我爱你 baby",
    "oh 我的天",
    "今天 is a good day",
    "你好，hello world, 再见",
    "I love you 我爱你 forever",
    "我想听 Taylor Swift 的歌",
    "Let's go 一起去 KTV 唱歌吧！",
    "我有 2 个 iPhone",
    "一二三四五，上山打老虎",
    "朝阳升起，朝着梦想出发",
    "差不多，差点儿，出差",
    "好好学习，天天向上",
    "这首歌的旋律很好听",
    "我的心里只有你没有他",
    "月亮代表我的心",
    "全角数字１２３和30℃，第1名",
    "一百万年1000000000000000000颗星",
    "你去不去？我不",
    "儿子的儿歌",
    "等一下……再说···好吗⋯",
    "鿦字和㐀字",
    "我、你、他：都是朋友；对吗？",
    "12点30分，2:45",
    "妈妈骂马吗",
    "一模一样，一心一意",
    "不知不觉，不三不四",
    "我很好，你也很好，我们都很好",
]

# Whole LRC files (tests/data/mandarin/<name>), each at both lengths.
TRACKS = ["mandarin.lrc", "mixed_zh_en.lrc"]
LENGTHS = [95, 285]


def random_lines(count, seed):
    """Random lines for corpus.txt: jieba dictionary words (frequency > 2000), 一/不/儿 and
    polyphones, numbers, dates, percentages, punctuation and, in every third line, English."""
    import random

    import jieba

    rng = random.Random(seed)
    with open(os.path.join(os.path.dirname(jieba.__file__), "dict.txt"), encoding="utf-8") as f:
        words = [line.split()[0] for line in f if int(line.split()[1]) > 2000]
    punct = ["，", "。", "！", "？", "、", "；", "：", "…", " ", ""]
    extra = ["一", "不", "儿", "了", "的", "得", "地", "还", "行", "长", "重", "都", "为", "乐",
             "好", "看", "想"]
    english = ["love", "baby", "oh yeah", "I", "you", "night", "OK"]
    out = []
    for i in range(count):
        parts = []
        for _ in range(rng.randint(2, 7)):
            r = rng.random()
            if r < 0.55:
                parts.append(rng.choice(words))
            elif r < 0.8:
                parts.append(rng.choice(extra))
            elif r < 0.88:
                parts.append(str(rng.choice([rng.randint(0, 99), rng.randint(100, 100000),
                                             round(rng.random() * 100, 2)])))
            elif r < 0.95:
                parts.append(rng.choice(english) if i % 3 == 0 else rng.choice(words))
            else:
                parts.append(rng.choice(["%", "年", "月", "日", "℃"]))
            parts.append(rng.choice(punct) if rng.random() < 0.3 else "")
        out.append("".join(parts).strip() or "你好")
    return out


def stub(name, **attrs):
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules[name] = module
    return module


def not_loaded(what):
    def fail(*_args, **_kwargs):
        raise NotImplementedError(f"{what} is not loaded by tools/mandarin_golden.py")

    return fail


class Tensor(np.ndarray):
    """The torch tensor operations the lyrics path uses, on numpy."""

    def to(self, *_args, **_kwargs):
        return self

    def numpy(self):
        return np.asarray(self)

    def unsqueeze(self, dim):
        return np.expand_dims(self, dim).view(Tensor)

    def half(self):
        return self.astype(np.float16).view(Tensor)


def fake_torch():
    def tensor(data, dtype=None):
        return np.array(data, dtype=dtype).view(Tensor)

    def zeros(shape, dtype=None):
        return np.zeros(shape, dtype=dtype or np.float32).view(Tensor)

    class DataLoader:
        def __init__(self, data, batch_size=1, shuffle=False, collate_fn=None):
            assert batch_size == 1 and not shuffle
            self.data, self.collate_fn = data, collate_fn

        def __iter__(self):
            for i in range(len(self.data)):
                yield self.collate_fn([self.data[i]])

    class Module:
        pass

    class no_grad(contextlib.ContextDecorator):  # noqa: N801  (torch's name)
        def __enter__(self):
            return self

        def __exit__(self, *_exc):
            return False

    torch = stub("torch", tensor=tensor, zeros=zeros, long=np.int64, no_grad=no_grad,
                 __version__="numpy stand-in (tools/mandarin_golden.py)")
    torch.nn = stub("torch.nn", Module=Module)
    torch.nn.functional = stub("torch.nn.functional")
    torch.utils = stub("torch.utils")
    torch.utils.data = stub("torch.utils.data", DataLoader=DataLoader, Dataset=object)


def load_reference(diffrhythm):
    """Imports chn_eng_g2p and get_lrc_token from the checkout, unused parts stubbed out."""
    os.chdir(diffrhythm)  # the reference opens ./g2p/... relative to the working directory
    sys.path.insert(0, diffrhythm)
    from transformers import BertTokenizer  # noqa: F401  (real; imported before torch is faked)

    fake_torch()
    stub("transformers.models.bert.modeling_bert")

    stub("librosa", load=not_loaded("librosa"), get_duration=not_loaded("librosa"))
    stub("torchaudio", load=not_loaded("torchaudio"))
    stub("muq", MuQMuLan=not_loaded("MuQ-MuLan"))
    stub("mutagen")
    stub("mutagen.mp3", MP3=not_loaded("mutagen"))
    stub("huggingface_hub", hf_hub_download=not_loaded("huggingface_hub"))
    stub("model", DiT=not_loaded("the DiT"), CFM=not_loaded("the CFM"))
    stub("thirdparty")
    stub("thirdparty.LangSegment",
         LangSegment=types.SimpleNamespace(setfilters=lambda _filters: None,
                                           getTexts=not_loaded("LangSegment")))
    for name, attrs in (("tokenizers", {"Tokenizer": None}), ("tqdm", {})):
        try:
            __import__(name)
        except ImportError:
            stub(name, **attrs)
    from g2p.g2p import mandarin  # noqa: E402
    from g2p import g2p_generation  # noqa: E402
    from infer import infer_utils  # noqa: E402

    espeak = g2p_generation.text_tokenizer.text_tokenizers["en"].backend._espeak
    trace = {"jieba": [], "poly": []}
    lcut = mandarin.jieba.lcut
    predict = mandarin.g2pw_poly_predict.predict_process

    def traced_lcut(text, *args, **kwargs):
        words = lcut(text, *args, **kwargs)
        trace["jieba"].append([text, list(words)])
        return words

    def traced_predict(item):
        out = predict(item)
        trace["poly"].append([item[0], item[1], out[0]])
        return out

    mandarin.jieba = types.SimpleNamespace(lcut=traced_lcut)
    mandarin.g2pw_poly_predict.predict_process = traced_predict

    def chn_eng_g2p(text):
        espeak.set_voice("en-us")
        return g2p_generation.chn_eng_g2p(text)

    tokenizer = infer_utils.CNENTokenizer()
    tokenizer.tokenizer = chn_eng_g2p
    return chn_eng_g2p, infer_utils.get_lrc_token, tokenizer, trace


def versions(diffrhythm):
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "-C", diffrhythm, "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = os.environ.get("DIFFRHYTHM_COMMIT", "unknown (not a git checkout)")
    out = {"diffrhythm_commit": commit, "python": sys.version.split()[0]}
    for pkg in ("jieba", "cn2an", "pypinyin", "onnxruntime", "transformers", "phonemizer",
                "inflect"):
        out[pkg] = version(pkg)
    return out


def write_json(path, head, sections):
    with open(path, "w", encoding="utf-8") as f:  # one case per line, for readable diffs
        text = json.dumps(head, ensure_ascii=False, indent=1)
        f.write(text[:-2] + ",\n")
        parts = []
        for name, items in sections:
            body = ",\n".join("  " + json.dumps(i, ensure_ascii=False) for i in items)
            parts.append(f' "{name}": [\n{body}\n ]')
        f.write(",\n".join(parts) + "\n}\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diffrhythm", required=True,
                        help="a checkout of ASLP-lab/DiffRhythm with g2p/sources complete")
    parser.add_argument("--data", default=DATA)
    parser.add_argument("--lines", help="UTF-8 file, one line per case, instead of the built-in "
                        "lines (then no tracks are made)")
    parser.add_argument("--out", help="output file (default: golden.json in --data)")
    parser.add_argument("--corpus", action="store_true", help="write corpus.txt (400 random "
                        "lines, seed 12) and corpus.json in --data instead of golden.json")
    args = parser.parse_args()
    data = os.path.abspath(args.data)
    diffrhythm = os.path.abspath(args.diffrhythm)
    chn_eng_g2p, get_lrc_token, tokenizer, trace = load_reference(diffrhythm)

    texts = LINES
    if args.corpus:
        texts = random_lines(400, 12)
        with open(os.path.join(data, "corpus.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(texts) + "\n")
        args.lines, args.out = os.path.join(data, "corpus.txt"), os.path.join(data, "corpus.json")
    if args.lines:
        with open(args.lines, encoding="utf-8") as f:
            texts = [line.rstrip("\n") for line in f if line.strip()]
    lines = []
    for text in texts:
        trace["jieba"].clear()
        trace["poly"].clear()
        phonemes, tokens = chn_eng_g2p(text)
        lines.append({"text": text, "phonemes": phonemes, "ids": [t + 1 for t in tokens],
                      "jieba": list(trace["jieba"]), "poly": list(trace["poly"])})

    tracks = []
    for name in [] if args.lines else TRACKS:
        with open(os.path.join(data, name), encoding="utf-8") as f:
            lrc = f.read()
        for length in LENGTHS:
            max_frames = 2048 if length == 95 else 6144
            track, _start, end_frame, _duration = get_lrc_token(max_frames, lrc, tokenizer,
                                                                 length, "cpu")
            track = [int(t) for t in track[0]]
            assert len(track) == end_frame
            tracks.append({"lrc": name, "length": length, "tokens": track})

    head = {
        "note": "Expected CNENTokenizer.encode(text) per line ('ids'; 'phonemes' is chn_eng_g2p's "
                "string, 'jieba' the jieba.lcut calls, 'poly' the polyphone BERT's answers "
                "[text, index, class]) and get_lrc_token tracks per LRC file and length, from the "
                "DiffRhythm reference; produced by tools/mandarin_golden.py.",
        "produced_with": versions(diffrhythm),
    }
    write_json(args.out or os.path.join(data, "golden.json"), head,
               [("lines", lines), ("tracks", tracks)])
    print(f"wrote {len(lines)} lines and {len(tracks)} tracks", file=sys.stderr)


if __name__ == "__main__":
    main()
