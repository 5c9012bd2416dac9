"""`partialnet claims`: PartialNet-X against FasterNet-X, interleaved in one process per runtime and size.

Each (size, runtime) cell is one `--ab` run (FasterNet = A, PartialNet = B), so machine drift hits both
alike; the measured ratio is always PartialNet / FasterNet of the claim's metric. Weights do not change
speed: seeded random weights are used, and the result says so.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable

from partialnet.bench.claims import CLAIMS, DEFAULT_TOLERANCE, claim_runtimes, INCONCLUSIVE, NOT_MEASURABLE, TOLERANCE_RULE, verdict
from partialnet.bench.stability import cell_marks
from partialnet.machine import describe
from partialnet.bench.ab_gate import ab_sides
from partialnet.errors import Unavailable
from partialnet.runtimes.table import DEPLOY_RUNTIME

if TYPE_CHECKING:  # the runs themselves import torch; judging and reporting a result file does not
    from partialnet.bench.run import BenchPlan

CLAIMS_SCHEMA = "partialnet.claims/1"


def default_runtimes(device: str, where=None) -> list[str]:
    """PyTorch eager and every deployed runtime that can build its own artifact from a variant, where rows run."""
    from partialnet.bench.where import HERE

    where = where or HERE
    return [r for r in claim_runtimes() if where.availability(r, device) is None]


def _timed_model(runtimes: list[str]) -> str:
    """What the rows ran, naming only the kinds of row this run has."""
    from partialnet.runtimes.table import DEPLOY_RUNTIME

    kinds = (["folded deploy model (PyTorch rows)"] if DEPLOY_RUNTIME in runtimes else []) \
        + (["exported deploy artifacts (other runtimes)"] if any(r != DEPLOY_RUNTIME for r in runtimes) else [])
    return ", ".join(kinds)


def _why_no_runtime(plan: BenchPlan) -> str:
    """No runtime was left to try (none of the defaults runs on this device here): why each of them cannot."""
    return "; ".join(f"{r}: {plan.where.availability(r, plan.device)}" for r in claim_runtimes()) or f"no runtime runs on {plan.device}"


def family_costs(sizes: list[str], imgsz: tuple[int, int]) -> list[dict]:
    """Params and GMACs of both families, measured here beside the published figures."""
    from partialnet.models.registry import VARIANTS
    from partialnet.models.table import variant_row

    rows = []
    for size in sizes:
        for family in ("partialnet", "fasternet"):
            rows.append({"size": size, "family": family, **variant_row(VARIANTS[f"{family}_{size}"], imgsz)})
    return rows


UNFOLDED = "pytorch-unfolded"


def measure(plan: BenchPlan, sizes: list[str], block: int, progress: Callable[..., None] | None = None, unfolded: bool = False) -> list[dict]:
    """One A/B cell per (size, runtime): latency ratio PartialNet / FasterNet with its bootstrap interval."""
    from partialnet.bench.run import run_ab

    cells = []
    runtimes = [*plan.runtimes, *([UNFOLDED] if unfolded else [])]
    for size in sizes:
        for runtime in runtimes:
            engine = DEPLOY_RUNTIME if runtime == UNFOLDED else runtime
            reason = plan.where.availability(engine, plan.device, plan.precision)
            cell = {"size": size, "runtime": runtime, "batch": plan.batches[0], "threads": plan.threads}
            if reason:
                cells.append({**cell, "status": "skipped", "reason": reason})
                continue
            if progress:
                progress(f"{size}: fasternet_{size} vs partialnet_{size} on {runtime}")
            one = replace(plan, runtimes=[engine], unfolded=runtime == UNFOLDED)
            try:
                result = run_ab(one, f"fasternet_{size}", f"partialnet_{size}", block)
            except Unavailable as exc:
                cells.append({**cell, "status": "failed", "reason": str(exc)})
                continue
            ab, sides = result["ab"][0], ab_sides(result, engine)
            if ab["status"] != "ok":
                cells.append({**cell, "status": ab["status"], "reason": ab.get("reason")})
                continue
            cells.append(
                {
                    **cell,
                    "status": "ok",
                    "latency_ratio": ab["ratio_b_over_a"],
                    "latency_ci": ab["ratio_ci95"],
                    "fasternet": sides["a"],
                    "partialnet": sides["b"],
                    "p_partialnet_slower": ab["p_b_slower"],
                    "p_partialnet_faster": ab["p_b_faster"],
                    "machine_load": sides["a"].get("machine_load"),
                    **({"aa": ab["aa"]} if ab.get("aa") else {}),
                }
            )
    return cells


def metric_ratio(cell: dict, metric: str) -> tuple[float, list[float]]:
    """PartialNet / FasterNet of `metric`: throughput is the inverse of the latency ratio at one batch."""
    ratio, (low, high) = cell["latency_ratio"], cell["latency_ci"]
    if metric == "latency":
        return ratio, [low, high]
    return 1 / ratio, [1 / high, 1 / low]


def off_papers(result: dict) -> list[str]:
    """How a run's conditions differ from the papers' timing protocol (claims.md): 224x224, fp32 (the reference
    code can time fp16, its --half, but the protocol the papers state is fp32), their batch and thread count,
    eager launches. A verdict reached under other conditions is
    this run's reading, not a check of the published figure, and says so beside it."""
    from partialnet.bench.protocols import get_protocol

    device, name, off = result["device"], result["protocol"]["name"], []
    if name != "paper":
        off.append(f"the {name} protocol")
    else:
        paper = get_protocol("paper", device)
        cells = [c for c in result.get("measurements") or [] if isinstance(c, dict)]
        for key, wanted, say in (("batch", paper.batches[0] if paper.batches else None, "batch {}"), ("threads", paper.threads, "{} threads")):
            ran = sorted({v for v in [result.get(key), *(c.get(key) for c in cells)] if type(v) is int})  # the file's and its cells'
            if wanted is not None and any(v != wanted for v in ran):
                off.append(say.format(",".join(str(v) for v in ran if v != wanted)))
    if list(result["imgsz"]) != [224, 224]:
        off.append(f"{result['imgsz'][0]}x{result['imgsz'][1]} inputs")
    if result.get("precision", "fp32") != "fp32":
        off.append(result["precision"])
    if result.get("cuda_graphs") is True:
        off.append("CUDA graphs")
    return off


def judge(cells: list[dict], sizes: list[str], device: str, tolerance: float, off: list[str] = ()) -> list[dict]:
    """One row per claim x size x runtime, for the sizes asked for; `off` (from `off_papers`) goes beside each
    verdict a measurement reached."""
    unlike = f"under {', '.join(off)}: not the papers' conditions" if off else None
    rows = []
    runtimes = list(dict.fromkeys(c["runtime"] for c in cells))
    for claim in CLAIMS:
        for size in claim.sizes:
            if size not in sizes:
                continue
            published = claim.published_for(size)
            base = {"id": claim.id, "size": size, "metric": claim.metric, "device": claim.device, "published": published,
                    "better": claim.better, "source": claim.source}
            if claim.metric == "accuracy":
                rows.append({**base, "runtime": None, "ratio": None, "ci": None, "verdict": verdict(claim, published, None),
                             "why": "needs trained weights and ImageNet-1K"})
                continue
            if claim.device != device:
                rows.extend({**base, "runtime": r, "ratio": None, "ci": None, "verdict": NOT_MEASURABLE,
                             "why": f"a {claim.device} claim; this run measured {device}"} for r in runtimes)
                continue
            for cell in (c for c in cells if c["size"] == size):
                if cell["status"] != "ok":
                    rows.append({**base, "runtime": cell["runtime"], "ratio": None, "ci": None, "verdict": NOT_MEASURABLE, "why": cell["reason"]})
                    continue
                ratio, ci = metric_ratio(cell, claim.metric)
                marks = cell_marks({f: cell[f]["samples_s"] for f in ("fasternet", "partialnet")}, cell.get("machine_load"))
                if marks:  # no verdict from a cell the machine disturbed or whose samples are too dispersed
                    rows.append({**base, "runtime": cell["runtime"], "ratio": ratio, "ci": ci, "verdict": INCONCLUSIVE,
                                 "why": f"noisy: rerun: {'; '.join(marks)}"})
                    continue
                rows.append({**base, "runtime": cell["runtime"], "ratio": ratio, "ci": ci,
                             "verdict": verdict(claim, published, tuple(ci), tolerance), "why": unlike})
    return rows


GRAPHS_NOTE = ("PyTorch rows replay each forward as one CUDA graph (--cuda-graphs): no host launch per kernel, "
               "so the ratio is the GPU's own work, not the papers' eager protocol")


def run_claims(plan: BenchPlan, sizes: list[str], tolerance: float = DEFAULT_TOLERANCE, block: int = 10,
               progress: Callable[..., None] | None = None, unfolded: bool = False) -> dict:
    started = datetime.now(timezone.utc)
    cells = measure(plan, sizes, block, progress, unfolded)
    if not any(c["status"] == "ok" for c in cells):
        reasons = "; ".join(sorted({f"{c['runtime']}: {c['reason']}" for c in cells})) or _why_no_runtime(plan)
        raise Unavailable(f"nothing measurable here ({reasons})")
    result = {
        "schema": CLAIMS_SCHEMA,
        "created_utc": started.isoformat(timespec="seconds"),
        "device": plan.device,
        "imgsz": list(plan.imgsz),
        "batch": plan.batches[0],
        "threads": plan.threads,
        "protocol": plan.protocol.to_dict(),
        "weights": "seeded random weights (speed does not depend on the weights)",
        "timed_model": _timed_model(plan.runtimes) + ("; pytorch-unfolded: the training-form model, BatchNorm and all" if unfolded else "")
        + (f"; {GRAPHS_NOTE}" if plan.cuda_graphs else ""),
        "cuda_graphs": plan.cuda_graphs,
        "precision": plan.precision,
        "tolerance": tolerance,
        "tolerance_rule": TOLERANCE_RULE,
        "costs": family_costs(sizes, plan.imgsz),
        "measurements": cells,
        "claims": [],
        "published_claims": [c.to_dict() for c in CLAIMS],
        "machine": plan.where.machine(),
    }
    result["claims"] = judge(cells, sizes, plan.device, tolerance, off_papers(result))
    return result


def _cell(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def to_markdown(result: dict) -> str:
    """The verdicts, the measurements behind them and the costs, with the machine and the rule."""
    machine = result["machine"]
    lines = [
        f"# PartialNet vs FasterNet on {machine.get('cpu', {}).get('model', 'this machine')} ({result['device']})",
        "",
        f"Protocol {result['protocol']['name']}: {result['protocol']['description']}; batch {result['batch']}, "
        f"{result.get('precision', 'fp32')}, {result['threads']} thread(s), {result['imgsz'][0]}x{result['imgsz'][1]}; {result['weights']}. "
        f"{result['created_utc']}",
        "",
        f"Timed: {result['timed_model']}.",
        "",
        f"Machine: {describe(machine)}",
        "",
        "| claim | size | runtime | published | measured ratio | 95% CI | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in result["claims"]:
        ci = "-" if row["ci"] is None else f"{row['ci'][0]:.3f}-{row['ci'][1]:.3f}"
        lines.append(
            f"| {row['id']} | {row['size']} | {row['runtime'] or '-'} | {row['published']:.3f} | {_cell(row['ratio'], '.3f')} | {ci} | "
            f"{row['verdict']}{' (' + row['why'] + ')' if row.get('why') else ''} |"
        )
    lines += ["", f"Tolerance {result['tolerance']:.0%}: {result['tolerance_rule']}.", "",
              "| size | runtime | FasterNet p50 ms | PartialNet p50 ms | latency ratio | 95% CI |", "|---|---|---|---|---|---|"]
    for cell in result["measurements"]:
        if cell["status"] != "ok":
            lines.append(f"| {cell['size']} | {cell['runtime']} | - | - | - | {cell['status']}: {cell['reason']} |")
            continue
        lines.append(
            f"| {cell['size']} | {cell['runtime']} | {cell['fasternet']['stats']['p50_ms']:.3f} | {cell['partialnet']['stats']['p50_ms']:.3f} | "
            f"{cell['latency_ratio']:.3f} | {cell['latency_ci'][0]:.3f}-{cell['latency_ci'][1]:.3f} |"
        )
    lines += ["", "| variant | params | published | GMACs | published |", "|---|---|---|---|---|"]
    for row in result["costs"]:
        lines.append(f"| {row['name']} | {row['params']:,} | {row['published_params']:,} | {row['gmacs']:.3f} | {row['published_gmacs']} |")
    return "\n".join(lines) + "\n"


def write_claims_outputs(result: dict, json_path=None, md_path=None, plot_path=None, force: bool = False) -> list[str]:
    from partialnet.bench import plot
    from partialnet.bench.results import result_outputs
    from partialnet.outputs import atomic_outputs, dumps_strict

    outputs = result_outputs(json_path, None, md_path, plot_path)
    if not outputs:
        return []
    writers = {
        "--json": lambda staged: staged.write_text(dumps_strict(result, indent=1)),
        "--md": lambda staged: staged.write_text(to_markdown(result)),
        "--plot": lambda staged: plot.save(plot.claims_figure(result), staged.file),
    }
    with atomic_outputs(outputs, force) as staged:
        for item in staged:
            writers[item.output.option](item)
    return [str(o.path) for o in outputs]
