#!/bin/sh
# Runs the jobcore benchmark's HTTP mode against a `refrain serve` binary (this commit's or one
# built from an older commit), so that builds can be compared over the same API:
#
#   tools/bench-jobcore-http.sh target/release/refrain [port]
#
# The server gets a temporary data directory, the committed test bundle and the embedded queue
# (config/default.toml), a queue capacity no submission reaches, and its in-process node runs
# the queue's head meanwhile, as on a working server: one ONNX Runtime thread, 1000 sampler
# steps per job (the most allowed; about a second per test-bundle song), so only a few dozen jobs
# finish during a run and the polled job, the newest, stays queued. Their WAVs (16.7 MB each)
# go to a tmpfs folder when /dev/shm exists; the job store stays on disk. BENCH_* variables are
# passed on to the benchmark.
set -eu
bin=${1:?usage: $0 path/to/refrain [port]}
port=${2:-18431}
root=$(cd "$(dirname "$0")/.." && pwd)
data=$(mktemp -d)
log="$data.log"
outputs=""
if [ -d /dev/shm ]; then
    outputs=$(mktemp -d /dev/shm/refrain-bench.XXXXXX)
    ln -s "$outputs" "$data/outputs"
fi
cd "$root"
ORT_DYLIB_PATH=${ORT_DYLIB_PATH:-$root/.ort/lib/libonnxruntime.so} \
REFRAIN_QUEUE__CAPACITY=1000000 REFRAIN_INFERENCE__STEPS=1000 REFRAIN_INTRA_THREADS=1 \
    "$bin" serve --listen "127.0.0.1:$port" --data-dir "$data" --bundle models/test-bundle \
    >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -rf "$data" "$log" $outputs' EXIT
i=0
until curl -fs "http://127.0.0.1:$port/readyz" >/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 600 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "the server did not become ready:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
REFRAIN_BENCH_URL="http://127.0.0.1:$port" cargo bench -p refrain-orchestrator --bench jobcore
