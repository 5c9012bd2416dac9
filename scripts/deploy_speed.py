"""What folding buys in each CPU runtime: the deploy graph against a naive export, with an ablation per pass.

For every source (a variant name or a checkpoint) this builds, in a temporary folder:

* naive: what a user gets without partialnet: `torch.onnx.export` of the unfolded eager model (ONNX
  Runtime), `openvino.convert_model` of it (OpenVINO), the unfolded module itself (PyTorch eager);
* deploy: the folded model through the same three doors (ONNX via partialnet's exporter, onnxsim included);
* with --ablation, one deploy graph per fold pass left out (and whatever builds on that pass: without
  srm-gate there is no gate for gate-stats to rewrite);
* an A/A control: a second, separately loaded copy of the naive graph.

(In the PyTorch column "naive" is the unfolded eager model and "deploy" the folded eager model.)

Each runtime then runs in its own subprocess, one thread, batch 1, beside a 512x512 fp32 sgemm on the same
thread: rounds in a fresh random order, each graph's block 2 untimed + N timed runs, process CPU time
(a neighbour's burst does not count against the graph that happened to be running). A graph's ratio
is the median over rounds of (its block median / the naive block median of the same round), with a 95 %
interval from resampling rounds. Efficiency = 2 x MACs of the unfolded model / latency, against the
sgemm GFLOP/s measured in the same rounds. On a shared, noisy machine only these side-by-side ratios mean
anything. Not a test: run it by hand.

    python scripts/deploy_speed.py [SOURCE ...] [--runtimes onnxruntime,openvino,pytorch] [--imgsz 224]
        [--seconds 30] [--iters 8] [--ablation] [--json out.json [--force]]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

RUNTIMES = ("onnxruntime", "openvino", "pytorch")
SGEMM_N = 512


# --- building the graphs (parent process) -------------------------------------------------------------


def load_source(source: str):
    from partialnet.checkpoint import resolve

    model, info = resolve(source)
    return model.float().eval(), info


def graphs_to_build(ablation: bool) -> list[tuple[str, frozenset[str]]]:
    """(label, passes left out) for the deploy graph and each ablation."""
    from partialnet.folding.passes import PASSES

    rows = [("deploy", frozenset())]
    if ablation:
        rows += [(f"deploy without {p.name}", frozenset({p.name})) for p in PASSES]
    return rows


def build(source: str, imgsz: int, ablation: bool, runtimes: list[str], work: Path) -> dict:
    import onnx
    import torch

    from partialnet.exporters.onnx import quiet, simplify, to_onnx
    from partialnet.exporters.options import ExportOptions
    from partialnet.folding import fold
    from partialnet.models.flops import measure_cost

    model, info = load_source(source)
    size = (imgsz, imgsz)
    example = torch.randn(1, 3, *size)
    spec = {"source": source, "variant": info.variant, "random_weights": info.random_weights, "imgsz": imgsz,
            "gmacs": measure_cost(model, size).gmacs, "graphs": {}}
    deploy, report = fold(model, size)
    models = {"naive": (model, None, None), "deploy": (deploy, report, [])}
    folding = [p.name for p in report.passes if p.sites]  # a pass that folds nothing has no ablation here
    for label, without in graphs_to_build(ablation)[1:]:
        if without <= set(folding):
            models[label] = (*fold(model, size, without=without), sorted(without))
    for label, (module, report, without) in models.items():
        stem = work / f"{info.variant}-{len(spec['graphs'])}"
        entry = {"without": without}
        if "onnxruntime" in runtimes:
            if report is None:  # the naive export: plain torch.onnx.export, no folding, no onnxsim
                with quiet():
                    torch.onnx.export(module, (example,), str(stem.with_suffix(".onnx")), dynamo=True,
                                      input_names=["images"], external_data=False)
                proto = onnx.load(str(stem.with_suffix(".onnx")))
            else:
                proto, _ = simplify(to_onnx(module, ExportOptions(imgsz=size)))
                onnx.save(proto, str(stem.with_suffix(".onnx")))
            ops = Counter(n.op_type for n in proto.graph.node)
            entry.update(onnx=str(stem.with_suffix(".onnx")), nodes=sum(ops.values()), batchnorm_nodes=ops["BatchNormalization"])
        if "openvino" in runtimes:
            import openvino as ov

            with quiet(), torch.no_grad():
                converted = ov.convert_model(module, example_input=example, input=[ov.PartialShape([1, 3, *size])])
            ov.save_model(converted, str(stem.with_suffix(".xml")), compress_to_fp16=False)
            entry["xml"] = str(stem.with_suffix(".xml"))
        if "pytorch" in runtimes:
            torch.save(module, stem.with_suffix(".module.pt"))  # our own temp file, read back by our own worker
            entry["module"] = str(stem.with_suffix(".module.pt"))
        spec["graphs"][label] = entry
    return spec


# --- timing (one subprocess per runtime) --------------------------------------------------------------


def steps_for(runtime: str, spec: dict, x):
    """label -> a zero-argument call that runs one inference and returns the logits.

    Each graph runs through the runner `partialnet bench` uses (one thread), which stays within 1 % of a
    bare loop (scripts/harness_overhead.py); the same runner for every graph, so the ratios are unbiased.
    """
    import torch

    from partialnet.runtimes.table import artifact_runner
    from partialnet.runtimes.torch_eager import TorchRunner

    steps = {}
    graphs = dict(spec["graphs"])
    graphs["naive again (A/A)"] = graphs["naive"]
    for label, entry in graphs.items():
        if runtime == "pytorch":
            runner = TorchRunner(torch.load(entry["module"], weights_only=False), threads=1)  # written by build()
        else:
            runner = artifact_runner(runtime, entry["onnx" if runtime == "onnxruntime" else "xml"], threads=1)
        runner.prepare()
        steps[label] = lambda r=runner: r.infer(x)
    return steps


def worker(spec_path: str) -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import numpy as np
    import torch

    torch.set_num_threads(1)
    job = json.loads(Path(spec_path).read_text())
    spec, runtime = job["spec"], job["runtime"]
    x = np.random.default_rng(0).standard_normal((1, 3, spec["imgsz"], spec["imgsz"]), dtype=np.float32)
    steps = steps_for(runtime, spec, x)
    outputs = {label: step() for label, step in steps.items()}
    a, b = torch.randn(SGEMM_N, SGEMM_N), torch.randn(SGEMM_N, SGEMM_N)
    c = torch.empty(SGEMM_N, SGEMM_N)
    steps["sgemm"] = lambda: torch.mm(a, b, out=c)
    for step in steps.values():
        for _ in range(3):
            step()
    rng = random.Random(0)
    rounds = []
    deadline = time.monotonic() + job["seconds"]
    while time.monotonic() < deadline or len(rounds) < 5:
        order = list(steps)
        rng.shuffle(order)
        medians = {}
        for label in order:
            step = steps[label]
            step()
            step()
            times = []
            for _ in range(job["iters"]):
                start = time.process_time_ns()
                step()
                times.append(time.process_time_ns() - start)
            medians[label] = float(np.median(times)) / 1e6
        rounds.append(medians)
    naive = outputs["naive"]
    print(json.dumps({
        "rounds": rounds,
        "max_abs_diff": {label: float(np.abs(out - naive).max()) for label, out in outputs.items()},
    }))


def summarize(rounds: list[dict], label: str) -> dict:
    import numpy as np

    from partialnet.bench.stats import bootstrap_median_ci

    ms = np.array([r[label] for r in rounds])
    ratios = np.array([r[label] / r["naive"] for r in rounds])
    return {"ms": float(np.median(ms)), "ratio": float(np.median(ratios)), "ci95": list(bootstrap_median_ci(ratios))}


def time_runtime(spec: dict, runtime: str, seconds: float, iters: int, work: Path) -> dict:
    job = work / f"{spec['variant']}-{runtime}.json"
    job.write_text(json.dumps({"spec": spec, "runtime": runtime, "seconds": seconds, "iters": iters}))
    done = subprocess.run([sys.executable, __file__, "--worker", str(job)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{runtime} worker failed:\n{done.stderr[-2000:]}")
    raw = json.loads(done.stdout.strip().splitlines()[-1])
    rounds = raw["rounds"]
    sgemm_ms = float(sorted(r["sgemm"] for r in rounds)[len(rounds) // 2])
    sgemm_gflops = 2 * SGEMM_N**3 / (sgemm_ms / 1e3) / 1e9
    rows = {}
    for label in rounds[0]:
        if label == "sgemm":
            continue
        row = summarize(rounds, label)
        row["max_abs_diff_vs_naive"] = raw["max_abs_diff"][label]
        row["gflops"] = 2 * spec["gmacs"] / (row["ms"] / 1e3)
        row["efficiency_vs_sgemm"] = row["gflops"] / sgemm_gflops
        rows[label] = row
    return {"rounds": len(rounds), "iters_per_block": iters, "sgemm_gflops": sgemm_gflops, "rows": rows}


def print_table(spec: dict, timings: dict) -> None:
    runtimes = list(timings)
    labels = ["naive", "naive again (A/A)", *[label for label in spec["graphs"] if label != "naive"]]
    rounds = ", ".join(f"{rt} {t['rounds']}" for rt, t in timings.items())
    print(f"\n{spec['variant']} {spec['imgsz']}x{spec['imgsz']}, batch 1, 1 thread, process CPU time; rounds: {rounds}"
          f"{' (random weights)' if spec['random_weights'] else ''}")
    header = f"{'graph':<34}" + "".join(f"{rt + ' ms':>15}{'/ naive (95% CI)':>24}" for rt in runtimes) + f"{'ONNX nodes':>12}"
    print(header)
    for label in labels:
        line = f"{label:<34}"
        for rt in runtimes:
            row = timings[rt]["rows"][label]
            line += f"{row['ms']:>15.3f}{row['ratio']:>10.3f} ({row['ci95'][0]:.3f}-{row['ci95'][1]:.3f})"
        entry = spec["graphs"].get(label.replace("naive again (A/A)", "naive"), {})
        line += f"{entry.get('nodes', ''):>12}"
        print(line)
    for rt in runtimes:
        t = timings[rt]
        deploy = t["rows"]["deploy"]
        print(f"  {rt}: sgemm {SGEMM_N} fp32 {t['sgemm_gflops']:.1f} GFLOP/s; deploy {deploy['gflops']:.1f} GFLOP/s "
              f"({2 * spec['gmacs']:.3f} GFLOP per image) = {100 * deploy['efficiency_vs_sgemm']:.0f} % of sgemm")


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker(sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", default=["partialnet_t0", "partialnet_t1", "partialnet_t2"])
    parser.add_argument("--runtimes", default=",".join(RUNTIMES))
    parser.add_argument("--imgsz", type=int, default=224)
    parser.add_argument("--seconds", type=float, default=30, help="timing per runtime per source")
    parser.add_argument("--iters", type=int, default=8, help="timed runs per block")
    parser.add_argument("--ablation", action="store_true", help="one deploy graph per fold pass left out")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--force", action="store_true", help="let --json replace an existing file")
    args = parser.parse_args()
    runtimes = [r.strip() for r in args.runtimes.split(",") if r.strip()]
    unknown = set(runtimes) - set(RUNTIMES)
    if unknown:
        parser.error(f"unknown runtime(s) {', '.join(sorted(unknown))}; choose from {', '.join(RUNTIMES)}")
    from partialnet.errors import BadInput
    from partialnet.signals import install, raise_if_pending

    try:
        if args.json:
            from partialnet.outputs import check_outputs

            check_outputs([args.json], force=args.force)
        for source in args.sources:  # fail on a bad source before minutes of building and timing
            load_source(source)
    except BadInput as exc:
        parser.exit(2, f"deploy_speed.py: error: {exc}\n")
    install()  # SIGINT/SIGTERM stop between steps, so the temporary folder is removed

    from partialnet.machine import fingerprint
    from partialnet.pipeline import versions

    machine = fingerprint()
    print(f"Measured on {machine['cpu']['model']}, {machine['cpu']['usable_cores']} usable cores "
          f"({' '.join(machine['cpu']['flags'])}); {', '.join(f'{k} {v}' for k, v in versions().items() if v)}")
    results = []
    with tempfile.TemporaryDirectory(prefix="partialnet-deploy-speed-") as tmp:
        for source in args.sources:
            raise_if_pending()
            spec = build(source, args.imgsz, args.ablation, runtimes, Path(tmp))
            timings = {}
            for rt in runtimes:
                raise_if_pending()
                timings[rt] = time_runtime(spec, rt, args.seconds, args.iters, Path(tmp))
            print_table(spec, timings)
            results.append({"variant": spec["variant"], "source": source, "imgsz": args.imgsz,
                            "random_weights": spec["random_weights"], "gmacs": spec["gmacs"],
                            "graphs": {k: {kk: vv for kk, vv in v.items() if kk not in ("onnx", "xml", "module")}
                                       for k, v in spec["graphs"].items()},
                            "timings": timings})
    if args.json:
        from partialnet.outputs import write_json

        write_json(args.json, {"machine": machine, "versions": versions(), "results": results}, force=args.force)


if __name__ == "__main__":
    from partialnet.signals import Interrupted

    try:
        main()
    except Interrupted as stop:
        sys.exit(128 + stop.signum)
