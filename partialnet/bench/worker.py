"""One benchmark row in its own process: `python -m partialnet.bench.worker SPEC.json RESULT.json`.

A fresh process per (model, runtime, batch) means one runtime's thread pools, allocator state and
JIT caches never leak into another's numbers. The spec says what to build; the result holds the raw
samples, the precision and threads the runtime reports, and the parity against PyTorch.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from partialnet.bench.load import LoadProbe
from partialnet.bench.measure import alternating, timed, warm_up
from partialnet.bench.protocols import Protocol
from partialnet.errors import PartialnetError
from partialnet.signals import die_with_parent
from partialnet.runtimes.table import RUNTIMES, spec_runner


def build_runner(spec: dict):
    return spec_runner(spec)


def make_input(spec: dict) -> np.ndarray:
    h, w = spec["imgsz"]
    return np.random.default_rng(spec.get("input_seed", 0)).standard_normal((spec["batch"], 3, h, w), dtype=np.float32)


def rss_bytes() -> int:
    """This process's resident set now (Linux /proc; 0 where unknown)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """This process's peak resident set. Linux: VmHWM, which starts afresh at exec; ru_maxrss would
    still hold the forking parent's peak (the CLI with torch loaded) and report that for every row."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def import_runtime(row) -> None:
    """The runtime's `worker_import` ("module", or "module:function" to call), so load_s is the model's alone."""
    try:
        module, _, call = (row.worker_import if row and row.worker_import else "json").partition(":")
        loaded = importlib.import_module(module)
        if call:
            getattr(loaded, call)()
    except ImportError:
        pass  # the runner says which extra is missing, in its own words


def run_one(spec: dict) -> dict:
    """Cold start first (import, load/compile, first inference, memory), then the timed protocol."""
    protocol = Protocol(**{**spec["protocol"], "batches": None})
    baseline = rss_bytes()
    t0 = time.perf_counter()
    import_runtime(RUNTIMES.get(spec["runtime"]))
    t1 = time.perf_counter()
    runner = build_runner(spec)
    runner.prepare()
    t2 = time.perf_counter()
    x = make_input(spec)
    out = runner.infer(x)
    t3 = time.perf_counter()
    broken = int(out.size - np.count_nonzero(np.isfinite(out)))
    if broken:  # timing it would time a broken model; its parity would be NaN, which no gate may take for a figure
        return {"status": "failed", "reason": f"the model's output holds {broken} non-finite value(s) (NaN/Inf) on the bench input"}
    parity = None
    if spec.get("reference"):
        reference = np.load(spec["reference"])
        parity = float(np.abs(out.astype(np.float64) - reference).max())
    cold = {"import_s": round(t1 - t0, 4), "load_s": round(t2 - t1, 4), "first_infer_s": round(t3 - t2, 6)}
    result = {"status": "ok", "precision": runner.precision, "threads": runner.threads, "parity_max_abs": parity, "cold": cold}
    before_timing, steady = {}, {}
    if spec.get("streams"):
        from partialnet.bench.streams import run_streams

        runner.close()
        probe = LoadProbe.start()
        measured = run_streams(spec, x, protocol)
        result["machine_load"] = {**probe.finish(), "threads": measured["threads"]}
        result.update(
            warmup=measured.pop("warmup"),
            samples_s=measured.pop("samples_s"),
            images_per_s=measured.pop("images_per_s"),
            threads=measured["threads"],
            async_run=measured,
        )
    else:
        result["warmup"] = warm_up(lambda: runner.infer(x), protocol)
        before_timing = gpu_memory_mb(reset=True)  # load, first inference, cudnn autotuning and warm-up
        probe = LoadProbe.start()
        result["samples_s"] = timed(lambda: runner.infer(x), protocol)
        result["machine_load"] = {**probe.finish(), "threads": runner.threads}  # the cores it left free are not a disturbance
        steady = gpu_memory_mb()
        runner.close()
    result["imported_torch"] = "torch" in sys.modules  # an ONNX Runtime/OpenVINO row must not pay for it
    result["memory"] = memory_record(baseline, before_timing, steady)
    return result


def memory_record(baseline: int, before_timing: dict, steady: dict) -> dict:
    """Host memory of the worker, and its GPU peaks where it drove a GPU: the whole worker's peak (a fresh
    process: since it started) and the steady state of the timed loop alone, which leaves out
    cudnn.benchmark's trial workspaces (they can dwarf a small model's own needs)."""
    peak = peak_rss_bytes()
    memory = {
        "baseline_rss_mb": round(baseline / 2**20, 1),
        "peak_rss_mb": round(peak / 2**20, 1),
        "peak_above_baseline_mb": round(max(0, peak - baseline) / 2**20, 1),
    }
    if steady:
        memory.update({k: max(before_timing.get(k, 0.0), v) for k, v in steady.items()})
        memory.update({k.replace("gpu_", "gpu_timed_"): v for k, v in steady.items()})
    return memory


def gpu_memory_mb(reset: bool = False) -> dict:
    """This worker's GPU peaks where torch drove a GPU ({} otherwise); `reset` starts the next peak afresh."""
    if "torch" not in sys.modules:
        return {}
    from partialnet.runtimes.torch_eager import gpu_memory

    peaks = gpu_memory()
    if peaks and reset:
        import torch

        torch.cuda.reset_peak_memory_stats()
    return {f"gpu_{k}": v for k, v in peaks.items()} if peaks else {}


def run_ab(spec: dict) -> dict:
    """Specs in one process, timed in alternating blocks (`partialnet bench --ab`, `--aa`, claims).

    With `control`, side A is timed twice over, as A and A2, in the same random alternation: A2/A is the
    run's own resolution (what a ratio of two identical things reads as here), reported beside B/A.
    """
    protocol = Protocol(**{**spec["protocol"], "batches": None})
    sides, warm = {}, {}
    for name in [n for n in ("a", "b") if n in spec]:
        runner = build_runner(spec[name])
        runner.prepare()
        x = make_input(spec[name])
        sides[name] = (runner, x)
        warm[name] = warm_up(lambda r=runner, x=x: r.infer(x), protocol)
    if spec.get("control"):
        sides["a2"], warm["a2"] = sides["a"], None
    probe = LoadProbe.start()
    samples = alternating({n: (lambda r=r, x=x: r.infer(x)) for n, (r, x) in sides.items()}, protocol, spec.get("block", 10))
    return {
        "machine_load": {**probe.finish(), "threads": max((r.threads for r, _ in sides.values()), default=None)},
        "status": "ok",
        **{f"samples_{n}_s": samples[n] for n in sides},
        **{f"precision_{n}": sides[n][0].precision for n in sides},
        **{f"threads_{n}": sides[n][0].threads for n in sides},
        **{f"warmup_{n}": warm[n] for n in sides},
    }


def main() -> int:
    os.environ["PARTIALNET_ISOLATED_WORKER"] = "1"  # this process is the isolation: runtimes load artifacts directly
    die_with_parent()
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    try:
        result = run_ab(spec) if spec.get("mode") == "ab" else run_one(spec)
    except PartialnetError as exc:
        result = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # reported as a failed row with its reason; the other rows still run
        detail = traceback.format_exc().strip().splitlines()[-1]
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300], "detail": detail}
    result["pid"] = os.getpid()
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
