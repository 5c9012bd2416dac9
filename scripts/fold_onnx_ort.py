"""Naive ONNX export of the unfolded model vs partialnet's deploy ONNX, in ONNX Runtime, side by side.

Both graphs run in one process on one thread at batch 1, in alternating blocks so that drift in the
machine (frequency, other load) hits both equally; the ratio of medians is what to read, with a
bootstrap 95 % interval. Not a test: run it by hand.

    python scripts/fold_onnx_ort.py [CKPT|VARIANT] [--imgsz 224] [--blocks 20] [--iters 25] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from partialnet import api
from partialnet.checkpoint import resolve
from partialnet.exporters.onnx import quiet


def naive_export(model: torch.nn.Module, path: Path, imgsz: int) -> None:
    """What a user gets from torch.onnx.export on the reference model: no folding, no onnxsim."""
    with quiet():
        torch.onnx.export(model, (torch.randn(1, 3, imgsz, imgsz),), str(path), dynamo=True, input_names=["images"])


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def timed_block(sess: ort.InferenceSession, feed: dict, iters: int) -> list[float]:
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        sess.run(None, feed)
        samples.append(time.perf_counter() - start)
    return samples


def bootstrap_ratio(a: np.ndarray, b: np.ndarray, rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    ratios = [
        np.median(rng.choice(a, len(a))) / np.median(rng.choice(b, len(b))) for _ in range(rounds)
    ]
    return float(np.percentile(ratios, 2.5)), float(np.percentile(ratios, 97.5))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default="partialnet_t0")
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--blocks", type=int, default=20)
    parser.add_argument("--iters", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(1)

    model, info = resolve(args.source)
    with tempfile.TemporaryDirectory() as tmp:
        naive_path, deploy_path = Path(tmp) / "naive.onnx", Path(tmp) / "deploy.onnx"
        naive_export(model, naive_path, args.imgsz)
        api.export(args.source, output=deploy_path, imgsz=(args.imgsz, args.imgsz))
        graphs = {name: onnx.load(str(p)) for name, p in (("naive", naive_path), ("deploy", deploy_path))}
        sessions = {name: session(p) for name, p in (("naive", naive_path), ("deploy", deploy_path))}
        x = np.random.default_rng(0).standard_normal((1, 3, args.imgsz, args.imgsz), dtype=np.float32)
        feeds = {name: {s.get_inputs()[0].name: x} for name, s in sessions.items()}
        outs = {name: s.run(None, feeds[name])[0] for name, s in sessions.items()}
        for name, s in sessions.items():
            timed_block(s, feeds[name], args.warmup)
        samples = {name: [] for name in sessions}
        for block in range(args.blocks):
            order = ("naive", "deploy") if block % 2 == 0 else ("deploy", "naive")
            for name in order:
                samples[name] += timed_block(sessions[name], feeds[name], args.iters)

    naive, deploy = np.array(samples["naive"]), np.array(samples["deploy"])
    low, high = bootstrap_ratio(deploy, naive)
    nodes = {name: Counter(n.op_type for n in g.graph.node) for name, g in graphs.items()}
    result = {
        "source": info.source,
        "variant": info.variant,
        "random_weights": info.random_weights,
        "imgsz": args.imgsz,
        "batch": 1,
        "threads": 1,
        "protocol": {"warmup": args.warmup, "blocks": args.blocks, "iters_per_block": args.iters, "alternating": True},
        "median_ms": {"naive": float(np.median(naive) * 1e3), "deploy": float(np.median(deploy) * 1e3)},
        "ratio_deploy_over_naive": float(np.median(deploy) / np.median(naive)),
        "ratio_ci95": [low, high],
        "nodes": {name: sum(c.values()) for name, c in nodes.items()},
        "batchnorm_nodes": {name: c["BatchNormalization"] for name, c in nodes.items()},
        "max_abs_diff_naive_vs_deploy": float(np.abs(outs["naive"] - outs["deploy"]).max()),
        "machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
        "versions": api.versions(),
    }
    print(
        f"{info.variant} {args.imgsz}x{args.imgsz} batch 1, ORT CPU 1 thread, {len(naive)} runs each (alternating blocks)\n"
        f"  naive  (unfolded, torch.onnx.export): median {result['median_ms']['naive']:.3f} ms, "
        f"{result['nodes']['naive']} nodes ({result['batchnorm_nodes']['naive']} BatchNormalization)\n"
        f"  deploy (partialnet export):           median {result['median_ms']['deploy']:.3f} ms, "
        f"{result['nodes']['deploy']} nodes ({result['batchnorm_nodes']['deploy']} BatchNormalization)\n"
        f"  latency ratio deploy/naive: {result['ratio_deploy_over_naive']:.3f} (95% CI {low:.3f}-{high:.3f}); "
        f"outputs differ by {result['max_abs_diff_naive_vs_deploy']:.2e}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
