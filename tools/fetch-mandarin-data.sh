#!/usr/bin/env bash
# Fetches the data files of DiffRhythm's Mandarin front end (docs/mandarin.md) for tests and
# for building real bundles: the lexicon, the pinyin -> bopomofo table, and the polyphone BERT
# with its character list, class table and vocabulary.
#
#   tools/fetch-mandarin-data.sh [DEST=.mandarin-data]
#
# They come out of the PyPI source distribution of `maskgct` 0.0.19 (Amphion's MaskGCT, from
# which DiffRhythm took its G2P), pinned by hash, so no download outside a package registry is
# needed, and each file is checked by SHA-256. The digests are those of the files at DiffRhythm
# commit 28ad63c (ASLP-lab/DiffRhythm, g2p/sources/): every file has the same Git blob id there,
# except vocab.txt, whose DiffRhythm copy lost two U+2028 characters (lines 344 and 13503, the
# tokens " \u2028" and "##\u2028"); no Chinese character or punctuation mark maps to those lines,
# so the BERT input ids are the same. Prints the absolute path of the directory.
set -euo pipefail
PYTHON="${PYTHON:-python3}"
DEST="${1:-$(cd "$(dirname "$0")/.." && pwd)/.mandarin-data}"
SDIST_SHA256="b262ff7c5952f79b8be75c7724c0bcaa68827729c389cd75ec616bb3cbbcdf48"
PREFIX="maskgct-0.0.19/maskgct/maskgct/tts/maskgct/g2p/sources"
FILES="
a3a7685d1c3e68eb2fa304bfc63e90c90c3c1a1948839a5b1b507b2131b3e2fb  chinese_lexicon.txt
dc8b048a20cf61d04b5a36bc6939db74095719b8099269a1269023ee3e6535b4  pinyin_2_bpmf.txt
9df819e371415c23e26a2907236a0228ef93772cc698d93dc0c18844956d1011  g2p_chinese_model/polychar.txt
ec6c8bd6d223205f48a17a07720bc594c20b3eab5460175414f7ebee1e66b6b9  g2p_chinese_model/polydict.json
45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c  g2p_chinese_model/vocab.txt
8765d835ffdf9811c832d4dc7b6a552757aa8615c01d1184db716a50c20aebbc  g2p_chinese_model/poly_bert_model.onnx
"

check() {
  local dir="$1" sum file list=""
  while read -r sum file; do
    [ -n "$file" ] || continue
    [ -f "$dir/$(basename "$file")" ] || return 1
    list+="$sum  $dir/$(basename "$file")"$'\n'
  done <<<"$FILES"
  sha256sum --check --quiet --status <<<"$list"
}

if ! check "$DEST"; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "maskgct==0.0.19 --hash=sha256:$SDIST_SHA256" > "$tmp/req.txt"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary=:all: \
    --require-hashes -r "$tmp/req.txt" -d "$tmp" >&2
  mkdir -p "$tmp/out"
  while read -r _sum file; do
    [ -n "$file" ] || continue
    tar --no-same-owner -xzf "$tmp/maskgct-0.0.19.tar.gz" -C "$tmp" "$PREFIX/$file"
    mv "$tmp/$PREFIX/$file" "$tmp/out/$(basename "$file")"
  done <<<"$FILES"
  if ! check "$tmp/out"; then
    echo "tools/fetch-mandarin-data.sh: a file of maskgct 0.0.19 does not have its expected SHA-256" >&2
    exit 1
  fi
  mkdir -p "$DEST"
  mv "$tmp"/out/* "$DEST"/
fi
echo "$(cd "$DEST" && pwd)"
