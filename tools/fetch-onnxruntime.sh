#!/usr/bin/env bash
# Fetches the ONNX Runtime shared library that Refrain loads at run time (ort `load-dynamic`).
#
#   tools/fetch-onnxruntime.sh [DEST=.ort]        CPU build (the default, what CI uses)
#   ORT_FLAVOUR=gpu tools/fetch-onnxruntime.sh    CUDA 13 / cuDNN 9 build, for GPU nodes
#
# The library comes out of the PyPI `onnxruntime` wheel (pinned by version and, for the CPU
# wheel, by hash), so no download outside a package registry is needed. It prints the absolute
# path of the library; use it as ORT_DYLIB_PATH, or leave it in .ort/ where refrain looks by
# default. The wheel tag is fixed, so the host's Python version does not matter.
set -euo pipefail
ORT_VERSION="${ORT_VERSION:-1.31.1}"
PYTHON="${PYTHON:-python3}"
FLAVOUR="${ORT_FLAVOUR:-cpu}"
DEST="${1:-$(cd "$(dirname "$0")/.." && pwd)/.ort}"
CPU_SHA256="5752bd508126ae7c49894d3b9d2e83f0c3d487319246d04c444b393308d7ad7f"

case "$FLAVOUR" in
  cpu) PKG="onnxruntime" ;;
  gpu) PKG="onnxruntime-gpu" ;;
  *) echo "ORT_FLAVOUR must be cpu or gpu, not '$FLAVOUR'" >&2; exit 2 ;;
esac

LIB="$DEST/lib/libonnxruntime.so.$ORT_VERSION"
STAMP="$DEST/lib/.flavour"
if [ ! -f "$LIB" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$FLAVOUR" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  req="$tmp/req.txt"
  if [ "$FLAVOUR" = cpu ] && [ "$ORT_VERSION" = 1.31.1 ]; then
    echo "onnxruntime==$ORT_VERSION --hash=sha256:$CPU_SHA256" > "$req"
    hashopt=(--require-hashes)
  else
    echo "$PKG==$ORT_VERSION" > "$req"
    hashopt=()
  fi
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation cp --python-version 3.11 --platform manylinux_2_28_x86_64 \
    "${hashopt[@]}" -r "$req" -d "$tmp" >&2
  rm -rf "$DEST/lib"
  mkdir -p "$DEST/lib"
  "$PYTHON" - "$tmp" "$DEST/lib" <<'PY'
import glob, os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(src, "onnxruntime*.whl"))
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        b = os.path.basename(n)
        # Keep the whole capi/ set together: ORT loads its provider libraries from beside itself.
        if n.startswith("onnxruntime/capi/libonnxruntime") and ".so" in b:
            with z.open(n) as f, open(os.path.join(dst, b), "wb") as o:
                o.write(f.read())
            os.chmod(os.path.join(dst, b), 0o755)
PY
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so"
  ln -sf "libonnxruntime.so.$ORT_VERSION" "$DEST/lib/libonnxruntime.so.1"
  echo "$FLAVOUR" > "$STAMP"
fi
echo "$(cd "$DEST/lib" && pwd)/libonnxruntime.so.$ORT_VERSION"
