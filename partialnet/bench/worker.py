"""One benchmark row in its own process: `python -m partialnet.bench.worker SPEC.json RESULT.json`.

A fresh process per (model, runtime, batch) means one runtime's thread pools, allocator state and
JIT caches never leak into another's numbers. The spec says what to build; the result holds the raw
samples, the precision and threads the runtime reports, and the parity against PyTorch.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from partialnet.bench.measure import alternating, timed, warm_up
from partialnet.bench.protocols import Protocol
from partialnet.errors import PartialnetError


def build_runner(spec: dict):
    runtime, threads = spec["runtime"], spec.get("threads")
    if runtime == "pytorch":
        import torch

        from partialnet.folding import load_deploy
        from partialnet.runtimes.torch_eager import TorchRunner

        if threads:
            torch.set_num_threads(threads)
        if spec.get("unfolded_source"):
            from partialnet.checkpoint import resolve

            model, _ = resolve(spec["unfolded_source"])
        else:
            model, _ = load_deploy(spec["deploy"])
        if spec.get("device") == "cuda":
            torch.backends.cudnn.benchmark = True
        return TorchRunner(
            model,
            threads=threads,
            channels_last=spec.get("channels_last", False),
            compile=spec.get("compile", False),
            device=spec.get("device", "cpu"),
            precision=spec.get("precision", "fp32"),
        )
    from partialnet.runtimes.table import RUNTIMES, artifact_runner

    if runtime in RUNTIMES and RUNTIMES[runtime].runner:
        return artifact_runner(runtime, spec["artifact"], threads, spec.get("precision", "fp32"), spec.get("device", "cpu"))
    raise ValueError(f"unknown runtime {runtime}")


def make_input(spec: dict) -> np.ndarray:
    h, w = spec["imgsz"]
    return np.random.default_rng(spec.get("input_seed", 0)).standard_normal((spec["batch"], 3, h, w), dtype=np.float32)


def run_one(spec: dict) -> dict:
    protocol = Protocol(**{**spec["protocol"], "batches": None})
    runner = build_runner(spec)
    runner.prepare()
    x = make_input(spec)
    out = runner.infer(x)
    parity = None
    if spec.get("reference"):
        reference = np.load(spec["reference"])
        parity = float(np.abs(out.astype(np.float64) - reference).max())
    warm = warm_up(lambda: runner.infer(x), protocol)
    samples = timed(lambda: runner.infer(x), protocol)
    result = {
        "status": "ok",
        "precision": runner.precision,
        "threads": runner.threads,
        "warmup": warm,
        "samples_s": samples,
        "parity_max_abs": parity,
    }
    runner.close()
    return result


def run_ab(spec: dict) -> dict:
    """Two specs in one process, timed in alternating blocks (`partialnet bench --ab`)."""
    protocol = Protocol(**{**spec["protocol"], "batches": None})
    sides = {}
    for name in ("a", "b"):
        runner = build_runner(spec[name])
        runner.prepare()
        x = make_input(spec[name])
        sides[name] = (runner, x)
        warm_up(lambda r=runner, x=x: r.infer(x), protocol)
    samples = alternating({n: (lambda r=r, x=x: r.infer(x)) for n, (r, x) in sides.items()}, protocol, spec.get("block", 10))
    return {
        "status": "ok",
        **{f"samples_{n}_s": samples[n] for n in sides},
        **{f"precision_{n}": sides[n][0].precision for n in sides},
        **{f"threads_{n}": sides[n][0].threads for n in sides},
    }


def main() -> int:
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
