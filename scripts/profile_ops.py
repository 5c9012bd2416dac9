"""Where an artifact's inference time goes, per op type, from the runtime's own profiler.

A latency ratio says that a graph is slower, not why. This prints what each runtime actually ran after
its own graph rewrites (ONNX Runtime's NCHWc convolutions and the ReorderInput/ReorderOutput layout
transforms around them, OpenVINO's fused Subgraph and Reorder nodes), so a change to the fold or export
passes can be aimed at the op types that cost time. Not a test and not a benchmark (the profiler adds
a few microseconds per node, which inflates the many small ops; compare graphs with `partialnet bench`
or scripts/deploy_speed.py): run it by hand.

    python scripts/profile_ops.py ARTIFACT.onnx|.xml [--runtime onnxruntime|openvino] [--threads 1]
        [--batch 1] [--iters 50] [--warmup 10] [--stat median|mean] [--conv-kernels] [--json out.json [--force]]

ONNX Runtime: SessionOptions.enable_profiling; node events of the timed runs only (warm-up runs are
dropped by their model_run window), grouped by the event's op_name. OpenVINO: PERF_COUNT=YES, f32,
one stream; InferRequest.get_profiling_info() after every timed run, executed nodes grouped by
(node_type, exec_type). Each node's time is its median over the timed runs (robust on a shared
machine, where a neighbour's burst lands on a few runs) or its mean with --stat mean; a row is the
sum over its nodes, in ms per inference.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from partialnet.machine import cpu_info


def input_array(dims: list, batch: int) -> np.ndarray:
    """Random N(0, 1) input; a dynamic (or named) dim takes --batch, a static batch must match it."""
    shape = [d if isinstance(d, int) and d > 0 else batch for d in dims]
    if shape[0] != batch:
        raise SystemExit(f"the artifact has a static batch of {shape[0]}; pass --batch {shape[0]}")
    return np.random.default_rng(0).standard_normal(shape, dtype=np.float32)


def conv_label(event: dict) -> str:
    """'Conv 3x3' / 'Conv 1x1 NCHWc': the kernel from the weight's shape, NCHWc from ORT's node name."""
    shapes = event["args"].get("input_type_shape") or []
    weight = next(iter(shapes[1].values())) if len(shapes) > 1 else []
    kernel = "x".join(map(str, weight[2:])) if len(weight) > 2 else "?"
    return f"{event['args']['op_name']} {kernel}{' NCHWc' if '_nchwc' in event['name'] else ''}"


def timed(step, iters: int) -> list[float]:
    samples = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1e3)
    return samples


def profile_onnxruntime(path: Path, threads: int, batch: int, iters: int, warmup: int, conv_kernels: bool) -> dict:
    import onnxruntime as ort

    def session(profile: bool, prefix: str = "") -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        if profile:
            options.enable_profiling, options.profile_file_prefix = True, prefix
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    with tempfile.TemporaryDirectory(prefix="profile-ops-") as tmp:
        sess = session(True, os.path.join(tmp, "ort"))
        feed = {sess.get_inputs()[0].name: input_array(sess.get_inputs()[0].shape, batch)}
        for _ in range(warmup):
            sess.run(None, feed)
        wall = timed(lambda: sess.run(None, feed), iters)
        events = json.loads(Path(sess.end_profiling()).read_text())
    spans = [(e["ts"], e["ts"] + e["dur"]) for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    runs = sorted(spans)[-iters:]
    nodes: dict[str, tuple[str, list]] = {}  # node event name -> (row label, ms in each timed run)
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue  # the _fence_before/_fence_after events are ORT's bookkeeping around each kernel
        if not any(start <= e["ts"] <= end for start, end in runs):
            continue
        op = e["args"].get("op_name", "?")
        label = conv_label(e) if conv_kernels and "Conv" in op else op
        nodes.setdefault(e["name"], (label, []))[1].append(e["dur"] / 1e3)
    plain = session(False)  # the same runs without the profiler's per-node overhead
    for _ in range(warmup):
        plain.run(None, feed)
    return {
        "nodes": nodes,
        "runs": len(runs),
        "wall_ms_profiled": wall,
        "wall_ms_unprofiled": timed(lambda: plain.run(None, feed), iters),
        "runtime_ms": [(end - start) / 1e3 for start, end in runs],  # ORT's own model_run spans
    }


def profile_openvino(path: Path, threads: int, batch: int, iters: int, warmup: int) -> dict:
    import openvino as ov

    from partialnet.runtimes.openvino import core as openvino_core

    core = openvino_core()
    model = core.read_model(str(path))
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": threads,
    }
    dims = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
    x = input_array(dims, batch)
    if None in dims:
        model.reshape({model.inputs[0].any_name: list(x.shape)})

    def bound(perf: bool):
        request = core.compile_model(model, "CPU", {**config, "PERF_COUNT": perf}).create_infer_request()
        request.set_input_tensor(0, ov.Tensor(x, shared_memory=True))
        for _ in range(warmup):
            request.infer()
        return request

    request = bound(True)
    nodes: dict[str, tuple[str, list]] = {}
    wall = []
    for _ in range(iters):  # the counters describe the last inference only, so read them after each one
        start = time.perf_counter()
        request.infer()
        wall.append((time.perf_counter() - start) * 1e3)
        for info in request.get_profiling_info():
            if info.status == info.Status.EXECUTED:
                label = f"{info.node_type} [{info.exec_type}]"
                nodes.setdefault(info.node_name, (label, []))[1].append(info.real_time.total_seconds() * 1e3)
    plain = bound(False)
    return {"nodes": nodes, "runs": iters, "wall_ms_profiled": wall, "wall_ms_unprofiled": timed(plain.infer, iters)}


def report(result: dict, args: argparse.Namespace) -> dict:
    runs, stat = result["runs"], np.median if args.stat == "median" else np.mean
    rows: dict[str, list] = defaultdict(lambda: [0.0, 0.0])
    for label, samples in result["nodes"].values():
        rows[label][0] += len(samples) / runs
        rows[label][1] += float(stat(samples))
    table = sorted(((label, calls, ms) for label, (calls, ms) in rows.items()), key=lambda r: -r[2])
    total = sum(ms for _, _, ms in table)
    cpu = cpu_info()
    print(
        f"{args.artifact} · {args.runtime} · batch {args.batch}, {args.threads} thread(s), "
        f"{runs} timed runs after {args.warmup} warm-up"
    )
    print(f"CPU: {cpu['model']} ({cpu['usable_cores']}/{cpu['logical_cores']} cores usable; {' '.join(cpu['flags'])})")
    width = max([len(r[0]) for r in table] + [10])
    print(f"{'op type':<{width}}  {'calls':>6}  {'ms/inf':>8}  {'share':>6}   (each node's {args.stat} over the runs)")
    for label, calls, ms in table:
        print(f"{label:<{width}}  {calls:>6.0f}  {ms:>8.3f}  {100 * ms / total:>5.1f}%")
    wall, plain = np.array(result["wall_ms_profiled"]), np.array(result["wall_ms_unprofiled"])
    print(f"{'sum of ops':<{width}}  {sum(c for _, c, _ in table):>6.0f}  {total:>8.3f}")
    extra = f"; ORT's model_run span median {np.median(result['runtime_ms']):.3f} ms" if "runtime_ms" in result else ""
    print(f"wall per inference, median: {np.median(wall):.3f} ms profiled, {np.median(plain):.3f} ms unprofiled{extra}")
    return {
        "artifact": str(args.artifact),
        "runtime": args.runtime,
        "batch": args.batch,
        "threads": args.threads,
        "iters": runs,
        "warmup": args.warmup,
        "stat": args.stat,
        "cpu": cpu,
        "ops": [
            {"op": label, "calls_per_inference": calls, "ms_per_inference": ms, "share": ms / total}
            for label, calls, ms in table
        ],
        "sum_ms_per_inference": total,
        "wall_ms": {"profiled_median": float(np.median(wall)), "profiled_mean": float(wall.mean()),
                    "unprofiled_median": float(np.median(plain)), "unprofiled_mean": float(plain.mean())},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path, help="an .onnx file, or an OpenVINO .xml (with its .bin)")
    parser.add_argument(
        "--runtime", choices=("onnxruntime", "openvino"), help="default: onnxruntime for .onnx, openvino for .xml"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--stat", choices=("median", "mean"), default="median", help="per node, over the timed runs")
    parser.add_argument(
        "--conv-kernels", action="store_true", help="onnxruntime: split Conv rows by kernel size and NCHWc"
    )
    parser.add_argument("--json", type=Path, help="also write the table here (refuses to overwrite)")
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    args = parser.parse_args()
    if args.runtime is None:
        args.runtime = "openvino" if args.artifact.suffix == ".xml" else "onnxruntime"
    if args.runtime == "onnxruntime" and args.artifact.suffix == ".xml":
        parser.error("ONNX Runtime cannot read an OpenVINO IR; use --runtime openvino")
    if args.iters < 1 or args.threads < 1 or args.batch < 1 or args.warmup < 0:
        parser.error("--iters, --threads and --batch must be >= 1, --warmup >= 0")
    if args.json:  # refused before the profiling, not after: an earlier profile is never overwritten
        from partialnet.errors import BadInput
        from partialnet.outputs import check_outputs

        try:
            check_outputs([args.json], inputs=[args.artifact], force=args.force)
        except BadInput as exc:
            parser.exit(2, f"profile_ops.py: error: {exc}\n")
    if args.runtime == "onnxruntime":
        result = profile_onnxruntime(
            args.artifact, args.threads, args.batch, args.iters, args.warmup, args.conv_kernels
        )
    else:
        result = profile_openvino(args.artifact, args.threads, args.batch, args.iters, args.warmup)
    from partialnet.signals import raise_if_pending

    raise_if_pending()
    table = report(result, args)
    if args.json:
        from partialnet.outputs import write_json

        write_json(args.json, table, force=args.force, inputs=[args.artifact])


if __name__ == "__main__":
    from partialnet.signals import Interrupted, install

    install()  # SIGINT/SIGTERM stop after the profiling step, so its temporary folder is removed
    try:
        main()
    except Interrupted as stop:
        raise SystemExit(128 + stop.signum) from None
