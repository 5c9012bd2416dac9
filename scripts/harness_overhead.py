"""What the runners cost on top of their runtimes: the floor, and the runner against a bare loop.

For every runtime installed here, each in its own subprocess, one thread, batch 1:

* the floor: a near-identity model (each channel's first pixel, doubled) through the runner and through
  a bare loop of the runtime's own API, timed in alternating blocks. It takes the whole input, so the
  hand-over of a full image is in the floor, but computes nothing (a mean over the image would not do:
  XNNPACK's 224x224 mean alone takes ~300 us in ExecuTorch, 20x the other runtimes' whole call).
  Anything a real row reports below the runner's floor is not the model's cost; runner minus bare is
  the harness's own per-call cost.
* the real model: PartialNet-T0's artifacts (exported here, or reused from --artifacts) through the
  runner and through the bare loop, alternating in one process, reported as the ratio of medians
  runner/bare with its bootstrap 95 % interval. The goal is a ratio within 1 % of 1. A second, identical
  bare loop runs beside them (A/A): its ratio to the first is what "no difference" measures as here.

The bare loop drives the very runtime object the runner built (session, compiled model, method,
interpreter, module), so the two sides differ only in the Python call path, not in how the model was
compiled or where its buffers landed. Each bare loop is the leanest use of the API that hands over the
pre-allocated input and gets the logits back (as a view where the API offers one).

On a shared, noisy machine only ratios measured side by side mean anything; absolute times do not.
Not a test: run it by hand.

    python scripts/harness_overhead.py [--imgsz 224] [--seconds 90] [--runtimes ...] [--artifacts DIR] [--json out.json [--force]]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from partialnet.bench.measure import alternating, warm_up
from partialnet.bench.protocols import get_protocol
from partialnet.bench.stats import ratio_of_medians, summarize
from partialnet.errors import Unavailable
from partialnet.machine import fingerprint
from partialnet.runtimes.table import availability
from partialnet.signals import Interrupted, install, raise_if_pending

RUNTIMES = ("pytorch", "onnxruntime", "openvino", "executorch", "litert")
VARIANT = "partialnet_t0"
# Runtime -> (suffix of the real artifact, suffix of the near-identity one). OpenVINO runs the IR it is
# deployed as; its floor reads the near-identity ONNX (OpenVINO converts it on load, same request path).
SUFFIXES = {"pytorch": (".deploy.pt", None), "onnxruntime": (".onnx", ".onnx"), "openvino": (".xml", ".onnx"),
            "executorch": (".pte", ".pte"), "litert": (".tflite", ".tflite")}


class NearIdentity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, 0, 0] * 2.0


# --- artifacts (parent process) ---------------------------------------------------------------------


def near_identity(runtime: str, folder: Path, imgsz: int) -> Path | None:
    """The near-identity model in `runtime`'s format, written with the runtime's own exporter.

    partialnet's exporters fold PartialNet checkpoints; a one-op model goes straight through
    torch.onnx / ExecuTorch / litert-torch instead.
    """
    suffix = SUFFIXES[runtime][1]
    if suffix is None:
        return None
    path = folder / f"near_identity{suffix}"
    if path.exists():
        return path
    example = (torch.randn(1, 3, imgsz, imgsz),)
    from partialnet.exporters.quiet import library_quiet, native_quiet

    with library_quiet(), native_quiet(), torch.no_grad():
        if suffix == ".onnx":
            torch.onnx.export(NearIdentity(), example, str(path), dynamo=True)
        elif suffix == ".pte":
            from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
            from executorch.exir import to_edge_transform_and_lower

            program = torch.export.export(NearIdentity(), example)
            lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
            path.write_bytes(lowered.to_executorch().buffer)
        else:
            import litert_torch

            path.write_bytes(bytes(litert_torch.convert(NearIdentity(), example).model_content()))
    return path


def real_model(runtime: str, folder: Path, imgsz: int) -> Path:
    """T0's deploy file or exported artifact, built through partialnet's own API unless already there."""
    from partialnet import api

    path = folder / f"t0_{imgsz}{SUFFIXES[runtime][0]}"
    if path.exists():
        return path
    if runtime == "pytorch":
        api.fold_checkpoint(VARIANT, output=path, imgsz=(imgsz, imgsz))
    else:
        api.export(VARIANT, runtime, api.ExportOptions(imgsz=(imgsz, imgsz)), output=path, checks=api.VerifyOptions(samples=1))
    return path


# --- one runtime (child process) --------------------------------------------------------------------


def make_runner(runtime: str, path: Path | None):
    """The runner bench would build, one thread; `path` None means the near-identity torch module."""
    if runtime == "pytorch":
        from partialnet.folding import load_deploy
        from partialnet.runtimes.torch_eager import TorchRunner

        model = load_deploy(path)[0] if path else _near_identity_module()
        return TorchRunner(model, threads=1)
    from partialnet.runtimes.table import artifact_runner

    return artifact_runner(runtime, path, threads=1)


def _near_identity_module() -> torch.nn.Module:
    class WithParam(NearIdentity):  # TorchRunner reads the precision from a parameter
        def __init__(self):
            super().__init__()
            self.unused = torch.nn.Parameter(torch.zeros(1))

    return WithParam()


def bare_loop(runtime: str, runner, x: np.ndarray):
    """One call of the runtime's own API on the runner's runtime object, input handed over, logits out."""
    if runtime == "pytorch":
        model, tensor = runner.forward, torch.from_numpy(x)

        def step():
            with torch.inference_mode():
                return model(tensor)

        return step
    if runtime == "onnxruntime":
        session, feed = runner.session, {runner.input_name: x}
        return lambda: session.run(None, feed)[0]
    if runtime == "openvino":
        import openvino as ov

        request = runner.compiled.create_infer_request()  # its own request: the runner's stays bound to x
        request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))

        def step():
            request.infer()
            return request.get_output_tensor(0).data

        return step
    if runtime == "executorch":
        method, inputs = runner.method, [torch.from_numpy(x)]
        return lambda: method.execute(inputs)[0]
    interpreter, into, out = runner.interpreter, runner.input["index"], runner.output["index"]

    def step():
        interpreter.set_tensor(into, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return step


def side_by_side(runtime: str, path: Path | None, imgsz: int, protocol, block: int, control: bool) -> dict:
    """Runner and bare loop on one model, alternating blocks in this process; medians and their ratio.

    With `control`, a second, identical bare loop runs as a third side: its ratio to the first (an A/A
    test) shows how far apart two identical loops measure here, the yardstick for the runner's ratio.
    """
    runner = make_runner(runtime, path)
    runner.prepare()
    x = np.random.default_rng(0).standard_normal((1, 3, imgsz, imgsz), dtype=np.float32)
    steps = {"runner": lambda: runner.infer(x), "bare": bare_loop(runtime, runner, x)}
    if control:
        steps["control"] = bare_loop(runtime, runner, x)
    for step in steps.values():
        warm_up(step, protocol)
    samples = alternating(steps, protocol, block)
    result = {name: summarize(s) for name, s in samples.items()}
    result.update(threads=runner.threads, precision=runner.precision, **ratio("ratio", samples["runner"], samples["bare"]))
    if control:
        result.update(ratio("control_ratio", samples["control"], samples["bare"]))
    runner.close()
    return result


def ratio(key: str, candidate: list[float], baseline: list[float]) -> dict:
    value, lo, hi = ratio_of_medians(candidate, baseline)
    return {key: value, f"{key}_ci95": [lo, hi]}


def child(runtime: str, floor_path: str, real_path: str, args) -> dict:
    torch.set_num_threads(1)
    base = get_protocol(args.protocol)
    floor_protocol = dataclasses.replace(base, min_seconds=args.floor_seconds)
    real_protocol = dataclasses.replace(base, min_seconds=args.seconds)
    floor_model = Path(floor_path) if floor_path != "-" else None
    return {
        "floor": side_by_side(runtime, floor_model, args.imgsz, floor_protocol, args.block, control=False),
        "real": side_by_side(runtime, Path(real_path), args.imgsz, real_protocol, args.block, control=not args.no_control),
    }


# --- report (parent process) ------------------------------------------------------------------------


def run_children(folder: Path, args) -> dict:
    results = {}
    for runtime in args.runtimes:
        raise_if_pending()  # SIGINT/SIGTERM stop between runtimes, so the temporary folder is removed
        results[runtime] = measure(runtime, folder, args)
        print(row(runtime, results[runtime]), flush=True)
    return results


def measure(runtime: str, folder: Path, args) -> dict:
    """One runtime's numbers from a fresh process, or why there are none."""
    reason = availability(runtime, "cpu")
    if reason:
        return {"skipped": reason}
    try:
        floor, real = near_identity(runtime, folder, args.imgsz), real_model(runtime, folder, args.imgsz)
    except (ImportError, Unavailable) as exc:  # the runtime is here, the exporter that feeds it is not
        return {"skipped": f"cannot export for it here ({exc})"}
    command = [sys.executable, __file__, *forwarded(args), "--child", runtime, str(floor or "-"), str(real)]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        return {"failed": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def forwarded(args) -> list[str]:
    flags = ["--imgsz", str(args.imgsz), "--protocol", args.protocol, "--seconds", str(args.seconds),
             "--floor-seconds", str(args.floor_seconds), "--block", str(args.block)]
    return flags + (["--no-control"] if args.no_control else [])


HEADER = (
    f"{'runtime':12s} {'floor runner':>12s} {'floor bare':>11s} {'T0 runner':>10s} {'T0 bare':>10s}  "
    f"{'runner/bare [95% CI]':24s}  {'A/A bare/bare [95% CI]':24s} {'n':>6s}"
)


def row(runtime: str, stats: dict) -> str:
    if "skipped" in stats:
        return f"{runtime:12s} skipped: {stats['skipped']}"
    if "failed" in stats:
        return f"{runtime:12s} FAILED: {stats['failed']}"
    floor, real = stats["floor"], stats["real"]
    control = interval(real, "control_ratio") if "control_ratio" in real else f"{'-':24s}"
    return (
        f"{runtime:12s} {floor['runner']['p50_ms'] * 1e3:9.1f} us {floor['bare']['p50_ms'] * 1e3:8.1f} us "
        f"{real['runner']['p50_ms']:7.3f} ms {real['bare']['p50_ms']:7.3f} ms  "
        f"{interval(real, 'ratio')}  {control} {real['runner']['n']:6d}"
    )


def interval(stats: dict, key: str) -> str:
    lo, hi = stats[f"{key}_ci95"]
    return f"{stats[key]:.4f} [{lo:.4f}, {hi:.4f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--protocol", default="latency", help="warm-up and minimum iterations (its seconds are replaced)")
    parser.add_argument("--seconds", type=float, default=90.0, help="least seconds of the T0 comparison, all sides together")
    parser.add_argument("--floor-seconds", type=float, default=5.0, help="minimum seconds of the near-identity comparison")
    parser.add_argument("--block", type=int, default=10, help="iterations per alternating block")
    parser.add_argument("--no-control", action="store_true", help="leave out the A/A side (a second bare loop)")
    parser.add_argument("--runtimes", nargs="+", default=list(RUNTIMES), choices=RUNTIMES)
    parser.add_argument("--artifacts", type=Path, help="folder to keep and reuse the exported models in (default: temporary)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    parser.add_argument("--child", nargs=3, metavar=("RUNTIME", "FLOOR", "REAL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, args)))
        return
    if args.json:  # refused before minutes of timing, not after
        from partialnet.errors import BadInput
        from partialnet.outputs import check_outputs

        try:
            check_outputs([args.json], force=args.force)
        except BadInput as exc:
            parser.exit(2, f"harness_overhead.py: error: {exc}\n")
    install()
    machine = fingerprint()
    cpu = machine["cpu"]
    print(f"CPU: {cpu['model']} ({cpu['usable_cores']} usable cores); {VARIANT} {args.imgsz}x{args.imgsz}, batch 1, "
          f"1 thread; sides alternate in blocks of {args.block}, >= {args.seconds:g} s per T0 comparison")
    print(HEADER, flush=True)
    if args.artifacts:
        args.artifacts.mkdir(parents=True, exist_ok=True)
        results = run_children(args.artifacts, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            results = run_children(Path(tmp), args)
    if args.json:
        settings = {k: getattr(args, k) for k in ("imgsz", "protocol", "seconds", "floor_seconds", "block", "no_control")}
        from partialnet.outputs import write_json

        write_json(args.json, force=args.force, data={"variant": VARIANT, **settings, "results": results, "machine": machine})


if __name__ == "__main__":
    try:
        main()
    except Interrupted as stop:
        sys.exit(128 + stop.signum)
