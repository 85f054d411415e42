#!/usr/bin/env bash
# Refrain on an NVIDIA GPU, in one call, on a machine with the GPU driver and no internet but the
# package registries (PyPI, crates.io):
#
#   tools/gpu-check.sh [--quick]
#
# 1. Set-up: tools/setup.sh with ONNX Runtime's GPU build into .ort/lib/ (ORT_FLAVOUR=gpu),
#    the export tool's venv .venv-export/ (PyPI's torch brings CUDA 13 and cuDNN 9, which ONNX
#    Runtime's CUDA provider loads too; cuRAND and onnxruntime-gpu are added), a release build.
# 2. Device checks with --device cuda: `refrain sample` on the parity fixtures against the PyTorch
#    reference sampler's latents (float32, within 1e-3), `refrain generate` on the test bundle's
#    float32 and float16 DiTs; the device-settings tests on CUDA (inference-node/tests/
#    device_settings.rs with REFRAIN_TEST_DEVICE=cuda): out-of-memory retries under a small
#    gpu_mem_limit (8 MiB, then 32 MiB: DiT batch 2B -> B -> 1 and the VAE chunked, each
#    bit-identical to a run with the smaller setting), IO binding vs plain runs (same songs) and
#    the per-step time of the sampler with IO binding on and off. Optional: the same parity run
#    on the TensorRT provider (--device tensorrt), when pip can install TensorRT 10 for CUDA 13.
# 3. A table per configuration (random weights of the real architecture, float16, CFG 4): the
#    reduced DiT (dim 2048, depth 2) and the full-size one (depth 16) at 2048 frames (95 s) and
#    6136 frames (285 s): per-step and sampler time of Refrain, a bare ONNX Runtime loop and the
#    PyTorch reference sampler on the same GPU, and the peak GPU memory of each
#    (tools/export-bundle/bench_sampler.py). --quick runs the reduced DiT only.
#
# The VAE is not timed: without the published weights there is no VAE graph of the real
# architecture to time. Output goes to stdout; keep it with `| tee gpu-check.log`.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tools/gpu-check.sh: unknown argument '$arg'" >&2; exit 2 ;;
  esac
done

command -v nvidia-smi >/dev/null || { echo "tools/gpu-check.sh: no nvidia-smi: no NVIDIA GPU driver here" >&2; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
date -u +"date: %Y-%m-%d %H:%M UTC"

echo "== set-up" >&2
# What the build needs (espeak-ng, cmake, ...) and ONNX Runtime's GPU build into .ort/lib/.
ORT_FLAVOUR=gpu tools/setup.sh
venv=.venv-export
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check -r tools/export-bundle/requirements.txt
# The CUDA provider of ONNX Runtime, in Python too (the bare loop), and the one CUDA library
# torch does not bring.
if ! "$venv/bin/python" -c 'import onnxruntime as o; assert "CUDAExecutionProvider" in o.get_available_providers()' 2>/dev/null; then
  "$venv/bin/pip" uninstall --quiet -y onnxruntime
  "$venv/bin/pip" install --quiet --disable-pip-version-check onnxruntime-gpu==1.31.1
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check nvidia-curand
site=$("$venv/bin/python" -c 'import site; print(site.getsitepackages()[0])')
cuda_libs=$(find "$site/nvidia" -maxdepth 3 -type d -name lib | paste -sd:)
export LD_LIBRARY_PATH="$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cargo build --release --quiet
refrain=target/release/refrain

echo "== device checks (--device cuda)"
fixtures=inference-node/tests/data/dit-parity
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gunzip -c "$fixtures/dit.onnx.gz" >"$out/dit.onnx"
for case in plain edit; do
  "$refrain" sample --device cuda --dit "$out/dit.onnx" --inputs "$fixtures/$case" -o "$out/$case.npy"
  "$venv/bin/python" - "$out/$case.npy" "$fixtures/$case/expected.npy" "$case" <<'EOF'
import sys
import numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(got - want).max())
print(f"sampler parity on CUDA ({sys.argv[3]}): largest |Refrain - PyTorch| = {err:.2e}")
sys.exit(0 if err < 1e-3 else 1)
EOF
done
for manifest in bundle.toml bundle-f16.toml; do
  "$refrain" generate --device cuda --bundle "models/test-bundle/$manifest" --lrc examples/demo.lrc \
    --prompt "bright acoustic pop with piano" --length 95 -o "$out/song.wav"
  "$refrain" generate --device cuda --bundle "models/test-bundle/$manifest" --lrc examples/demo.lrc \
    --prompt "bright acoustic pop with piano" --length 285 --chunked -o "$out/song-285.wav"
done

echo "== TensorRT (--device tensorrt, optional)"
# TensorRT 10 for CUDA 13 from PyPI (NVIDIA's wheels carry libnvinfer); skipped, not failed,
# when it cannot be installed. Engines are built on first use (the run includes that once).
if "$venv/bin/pip" install --quiet --disable-pip-version-check tensorrt-cu13-libs 2>/dev/null; then
  trt_libs=$(find "$site" -maxdepth 2 -type d -name 'tensorrt_libs' | paste -sd:)
  for case in plain edit; do
    if LD_LIBRARY_PATH="$trt_libs:$LD_LIBRARY_PATH" "$refrain" sample --device tensorrt \
      --dit "$out/dit.onnx" --inputs "$fixtures/$case" -o "$out/$case-trt.npy"; then
      "$venv/bin/python" - "$out/$case-trt.npy" "$fixtures/$case/expected.npy" "$case" <<'EOF' ||
import sys
import numpy as np
got, want = np.load(sys.argv[1]), np.load(sys.argv[2])
err = float(np.abs(got - want).max())
print(f"sampler parity on TensorRT ({sys.argv[3]}): largest |Refrain - PyTorch| = {err:.2e}")
sys.exit(0 if err < 1e-3 else 1)
EOF
        echo "TensorRT parity FAILED ($case)" >&2
    else
      echo "TensorRT run FAILED ($case)" >&2
    fi
  done
else
  echo "TensorRT: skipped (pip could not install tensorrt-cu13-libs)"
fi

echo "== device settings on CUDA (memory limit, out-of-memory retries, IO binding)"
ort_lib=$(pwd)/.ort/lib/libonnxruntime.so.1.31.1
for limit in $((8 << 20)) $((32 << 20)); do
  echo "-- gpu_mem_limit $limit bytes"
  if ! REFRAIN_TEST_DEVICE=cuda REFRAIN_TEST_MEMORY_LIMIT=$limit ORT_DYLIB_PATH="$ort_lib" \
    cargo test --release --quiet -p refrain-inference --test device_settings -- --nocapture \
    --test-threads 1 2>&1 | grep -E "fallbacks|under the limit|^test |test result"; then
    echo "device settings tests FAILED at gpu_mem_limit $limit" >&2
  fi
done
REFRAIN_TEST_DEVICE=cuda ORT_DYLIB_PATH="$ort_lib" cargo test --release --quiet -p refrain-inference \
  --test device_settings -- --ignored --nocapture io_binding_timings 2>&1 | grep "io timing" || true

echo "== timings (float16, random weights of the real architecture)"
bench() {
  "$venv/bin/python" tools/export-bundle/bench_sampler.py --device cuda --precision f16 \
    --refrain "$refrain" --steps 8 --repeat 2 --threads "$(nproc)" "$@"
  echo
}
bench --depth 2 --frames 2048
bench --depth 2 --frames 6136 --kind full
if [ "$quick" = 0 ]; then
  bench --depth 16 --frames 2048
  bench --depth 16 --frames 6136 --kind full
fi
