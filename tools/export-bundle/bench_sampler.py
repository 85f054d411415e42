#!/usr/bin/env python3
"""Benchmark of the sampler on the real DiT architecture (random weights; full width, reduced
depth by default): Refrain (``refrain sample``) against the PyTorch reference sampler
(:mod:`refrain_export.sampler`, eager, CFG branches one after the other as the reference) and
against a bare ONNX Runtime loop on the same graph (the floor), same threads, same inputs.

    .venv-export/bin/python tools/export-bundle/bench_sampler.py [--frames 512] [--steps 8]
        [--depth 2] [--dim 2048] [--kind base|full] [--threads 2] [--device cpu|cuda]
        [--precision f32|f16] [--refrain target/release/refrain]

Prints per-step and end-to-end times, the ratios and, on CUDA, the peak GPU memory of each
(PyTorch's allocator peak; for the ONNX Runtime runs the largest ``nvidia-smi`` reading while
they ran, above the reading before). The graph and inputs go to ``target/bench-sampler/`` (ignored by git). On CUDA the
bare loop copies to and from the device every step (plain ``InferenceSession.run``).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

TOOL = Path(__file__).resolve().parent
REPO = TOOL.parents[1]
sys.path.insert(0, str(TOOL))

from refrain_export.dit import DiT, DitConfig  # noqa: E402
from refrain_export.onnx_export import export_dit, session  # noqa: E402
from refrain_export.sampler import sample, time_grid  # noqa: E402


def build(dim: int, depth: int, kind: str) -> DiT:
    torch.manual_seed(0)
    model = DiT(DitConfig(dim=dim, depth=depth, max_frames=6144 if kind == "full" else 2048))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.02)
    return model.eval()


def inputs(frames: int, steps: int, kind: str = "base") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    unit = lambda: (v := rng.standard_normal((1, 512)).astype(np.float32)) / np.linalg.norm(v)  # noqa: E731
    text = rng.integers(1, 364, (1, frames)).astype(np.int64)
    text[:, ::3] = 0
    out = {
        "noise": rng.standard_normal((1, frames, 64)).astype(np.float32),
        "cond": np.zeros((1, frames, 64), np.float32),
        "text": text,
        "style": unit(),
        "neg_style": unit(),
        "start_time": np.zeros(1, np.float32),
        "t_grid": time_grid(steps, torch.float16).float().numpy(),
    }
    if kind == "full":
        out["duration"] = np.full(1, frames / 6144, np.float32)
    return out


def _gpu_used_mib() -> int:
    out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=5).stdout
    return max(int(x) for x in out.split())


class GpuMemory:
    """The largest `nvidia-smi` memory reading (MiB) while the block runs, above the reading
    before it (what this benchmark's own PyTorch process holds is not counted)."""

    def __enter__(self):
        self.base = _gpu_used_mib()
        self.peak, self.running = 0, True
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self):
        while self.running:
            try:
                self.peak = max(self.peak, _gpu_used_mib() - self.base)
            except (OSError, ValueError, subprocess.SubprocessError):
                pass
            time.sleep(0.05)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()


def bare_ort(graph: Path, a: dict[str, np.ndarray], threads: int, device: str, half: bool, cfg: float = 4.0):
    """The floor: ONNX Runtime alone, the two CFG branches as one batch of 2, numpy Euler
    (in the graph's precision)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CUDAExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    sess = ort.InferenceSession(str(graph), opts, providers=providers)
    ft = np.float16 if half else np.float32
    x = a["noise"].astype(ft)
    feeds = {
        "cond": np.concatenate([a["cond"], np.zeros_like(a["cond"])]).astype(ft),
        "text": np.concatenate([a["text"], np.zeros_like(a["text"])]),
        "style": np.concatenate([a["style"], a["neg_style"]]).astype(ft),
        "start_time": np.zeros(2, ft),
    }
    if "duration" in a:
        feeds["duration"] = np.repeat(a["duration"], 2).astype(ft)
    grid = a["t_grid"].astype(ft)
    started = time.perf_counter()
    for t0, t1 in zip(grid[:-1], grid[1:]):
        feeds["x"] = np.concatenate([x, x])
        feeds["time"] = np.full(2, t0, ft)
        v = sess.run(["v"], feeds)[0]
        vc, vu = v[:1], v[1:]
        x = x + (t1 - t0) * (vc + (vc - vu) * ft(cfg))
    return time.perf_counter() - started, x.astype(np.float32)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=512)
    p.add_argument("--steps", type=int, default=8, help="time-grid points (steps - 1 Euler steps)")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--kind", choices=["base", "full"], default="base")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--precision", choices=["f32", "f16"], default="f32")
    p.add_argument("--repeat", type=int, default=3, help="interleaved runs of each; the best counts")
    p.add_argument("--refrain", type=Path, default=REPO / "target/release/refrain")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    half, cuda = args.precision == "f16", args.device == "cuda"
    work = REPO / "target/bench-sampler"
    (work / "inputs").mkdir(parents=True, exist_ok=True)
    for stale in (work / "inputs").glob("*.npy"):
        stale.unlink()
    model = build(args.dim, args.depth, args.kind)
    graph = export_dit(model, work / "dit.onnx", half=half)
    a = inputs(args.frames, args.steps, args.kind)
    for name, v in a.items():
        np.save(work / "inputs" / f"{name}.npy", v)
    n_steps = args.steps - 1
    dev, dt = ("cuda" if cuda else "cpu"), (torch.float16 if half else torch.float32)
    model = model.to(dev, dt)
    t = {k: torch.from_numpy(v).to(dev) for k, v in a.items()}
    t = {k: v.to(dt) if v.is_floating_point() else v for k, v in t.items()}
    extra = (t["duration"],) if "duration" in t else ()

    def reference():
        return sample(model, t["noise"], t["cond"], t["text"], t["style"], t["neg_style"], t["start_time"], *extra, grid=t["t_grid"])

    def run_torch():
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        x = reference()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started, None, x.float().cpu().numpy()

    def run_ort():
        secs, x = bare_ort(graph, a, args.threads, args.device, half)
        return secs, None, x

    def run_refrain(mode):
        def go():
            out = work / f"refrain-{mode}.npy"
            started = time.perf_counter()
            run = subprocess.run(
                [str(args.refrain), "sample", "--dit", str(graph), "--inputs", str(work / "inputs"), "-o", str(out),
                 "--threads", str(args.threads), "--cfg-mode", mode, "--device", args.device],
                capture_output=True, text=True, cwd=REPO,
            )
            wall = time.perf_counter() - started
            if run.returncode != 0:
                raise SystemExit(run.stderr)
            return float(re.search(r"steps in ([0-9.]+) s", run.stderr).group(1)), wall, np.load(out)
        return go

    runs = {
        "PyTorch reference (eager)": run_torch,
        "bare ONNX Runtime loop": run_ort,
        "Refrain, CFG batched": run_refrain("batched"),
        "Refrain, CFG separate": run_refrain("separate"),
    }
    if cuda:  # warm-up (kernel selection) outside the timing, as ONNX Runtime's session creation
        reference()
    # Interleaved repeats, best of each: the machine may be busy with other work.
    best: dict[str, tuple] = {}
    memory: dict[str, float | None] = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            with GpuMemory() if cuda else _Null() as mem:
                result = fn()
            if name.startswith("PyTorch") and cuda:
                memory[name] = torch.cuda.max_memory_allocated() / 2**20
            else:
                memory[name] = max(memory.get(name) or 0, mem.peak or 0) if cuda else None
            if name not in best or result[0] < best[name][0]:
                best[name] = result
    ref = best["PyTorch reference (eager)"][2]

    print(f"DiT dim {args.dim}, depth {args.depth}, {args.kind}, {args.frames} frames, {n_steps} Euler steps, CFG 4, "
          f"{args.device}, {args.threads} threads, {args.precision}")
    print(f"{'':28} {'per step':>10} {'sampler':>9} {'max |x - PyTorch|':>18}" + (f" {'GPU MiB':>8}" if cuda else ""))
    for name, (secs, _, x) in best.items():
        mib = f" {memory[name]:8.0f}" if cuda else ""
        print(f"{name:28} {secs / n_steps * 1e3:8.0f} ms {secs:8.2f} s {float(np.abs(x - ref).max()):18.2e}{mib}")
    torch_s, ort_s = best["PyTorch reference (eager)"][0], best["bare ONNX Runtime loop"][0]
    batched, separate = best["Refrain, CFG batched"], best["Refrain, CFG separate"]
    print(f"Refrain process end to end (load, sample, write): batched {batched[1]:.2f} s, separate {separate[1]:.2f} s")
    print(f"best of {args.repeat}; ratios per step: PyTorch / Refrain batched = {torch_s / batched[0]:.2f}x, "
          f"Refrain batched / ORT floor = {batched[0] / ort_s:.3f}, Refrain separate / ORT floor = {separate[0] / ort_s:.3f}")
    return 0


class _Null:
    peak = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


if __name__ == "__main__":
    sys.exit(main())
