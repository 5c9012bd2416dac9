"""The floor: what each runtime's runner costs for a model that does (almost) nothing.

A near-identity model (the per-channel mean of a 224×224 input) is timed through the same runners and
the same timing loop as `partialnet bench`, each runtime in its own subprocess, one thread, batch 1.
Anything a real row reports below this is not the model's cost. Not a test: run it by hand.

    python scripts/harness_overhead.py [--imgsz 224] [--protocol latency] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from partialnet.machine import fingerprint
from partialnet.bench.measure import timed, warm_up
from partialnet.bench.protocols import get_protocol
from partialnet.bench.stats import summarize
from partialnet.exporters.onnx import quiet
from partialnet.runtimes.table import availability

RUNTIMES = ("pytorch", "onnxruntime", "openvino")


class NearIdentity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def measure_one(runtime: str, onnx_path: Path, imgsz: int, protocol_name: str) -> dict:
    torch.set_num_threads(1)
    if runtime == "pytorch":
        from partialnet.runtimes.torch_eager import TorchRunner

        class WithParam(NearIdentity):  # TorchRunner reads the dtype from a parameter
            def __init__(self):
                super().__init__()
                self.unused = torch.nn.Parameter(torch.zeros(1))

        runner = TorchRunner(WithParam(), threads=1)
    elif runtime == "onnxruntime":
        from partialnet.runtimes.onnxruntime import OnnxRuntimeRunner

        runner = OnnxRuntimeRunner(onnx_path, threads=1)
    else:
        from partialnet.runtimes.openvino import OpenVinoRunner

        runner = OpenVinoRunner(onnx_path, threads=1)
    runner.prepare()
    x = np.random.default_rng(0).standard_normal((1, 3, imgsz, imgsz), dtype=np.float32)
    protocol = get_protocol(protocol_name)
    warm_up(lambda: runner.infer(x), protocol)
    return summarize(timed(lambda: runner.infer(x), protocol))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--protocol", default="latency")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", nargs=2, metavar=("RUNTIME", "ONNX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_one(args.child[0], Path(args.child[1]), args.imgsz, args.protocol)))
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "near_identity.onnx"
        with quiet():
            torch.onnx.export(NearIdentity(), (torch.randn(1, 3, args.imgsz, args.imgsz),), str(onnx_path), dynamo=True)
        for runtime in RUNTIMES:
            reason = availability(runtime, "cpu")
            if reason:
                results[runtime] = {"skipped": reason}
                continue
            proc = subprocess.run(
                [sys.executable, __file__, "--imgsz", str(args.imgsz), "--protocol", args.protocol, "--child", runtime, str(onnx_path)],
                capture_output=True, text=True, check=True,
            )
            results[runtime] = json.loads(proc.stdout.strip().splitlines()[-1])
    for runtime, stats in results.items():
        if "skipped" in stats:
            print(f"{runtime:12s} skipped: {stats['skipped']}")
        else:
            lo, hi = stats["median_ci95_ms"]
            print(f"{runtime:12s} median {stats['p50_ms'] * 1e3:8.1f} us  (95% CI {lo * 1e3:.1f}-{hi * 1e3:.1f} us, {stats['n']} runs)")
    if args.json:
        args.json.write_text(json.dumps({"imgsz": args.imgsz, "protocol": args.protocol, "results": results, "machine": fingerprint()}, indent=1))


if __name__ == "__main__":
    main()
