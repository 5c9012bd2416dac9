"""`partialnet matrix`: every format x precision this machine can produce, judged and timed, and which to ship.

One load and one fold; every cell exported from them (calibration images shared by the INT8 cells) and
verified by its gates, with held-out accuracy where the checkpoint is a digits model; then each
artifact timed with the bench protocol in its own process, beside PyTorch fp32 of the same checkpoint.
The table is sorted by latency; the Pareto front (latency vs accuracy, or agreement where accuracy
cannot be judged) is marked, and the recommended artifact is the fastest within `--budget` points of
PyTorch fp32, from a row that is neither unstable nor disturbed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from partialnet.bench.marks import mark
from partialnet.bench.options import PRECISIONS as PRECISIONS  # the one list: a matrix's precisions are bench's
from partialnet.errors import BadInput, CheckFailed, Unavailable
from partialnet.limits import check_once, list_items
from partialnet.exporters.formats import FORMATS, Format, exporter_of, get_format
from partialnet.exporters.options import DEFAULT_CALIB_SIZE, ExportOptions

SCHEMA = "partialnet.matrix/1"
PROTOCOLS = ("latency", "quick")  # batch 1 per row, so the throughput and paper protocols do not apply
EXPORTED = {"fp32": "fp32", "fp16": "half", "int8": "int8"}  # precisions that are files of their own, by the option making them
DEFAULT_BUDGET = 1.0  # points of top-1 below PyTorch fp32 a recommended artifact may lose
MANIFEST = "matrix.json"


@dataclass
class Cell:
    fmt: Format
    precision: str
    why: str | None = None  # why this machine cannot produce or time it
    no_such_artifact: bool = False  # the format has no such export or mode on any machine
    outputs: list | None = None


NOT_JUDGED = "not judged"  # how a matrix's `accuracy` begins where no top-1 was measured (agreement only)


def parse_list(text: str | None, known: tuple[str, ...], flag: str, resolve=lambda s: s) -> list[str]:
    """`all` or a comma-separated subset of `known` (aliases resolved), refused by name otherwise."""
    if text is None or text.strip().lower() == "all":
        return list(known)
    items = [p.lower() for p in list_items(text, flag)]
    if "all" in items:
        raise BadInput(f"{flag} {text!r}: all stands alone (every one); give all, or a list without it")
    chosen = []
    for item in items:
        name = resolve(item)
        if name not in known:
            raise BadInput(f"{flag} {item!r}: expected all or a comma-separated subset of {', '.join(known)}")
        chosen.append(name)
    if not chosen:
        raise BadInput(f"{flag} {text!r}: an empty list; name at least one of {', '.join(known)}, or all")
    return check_once(chosen, flag, text)


def formats_asked(text: str | None) -> list[str]:
    return parse_list(text, tuple(FORMATS), "--formats", lambda s: get_format(s).name if s != "all" else s)


def takes(fmt: Format, precision: str) -> bool:
    """Whether `fmt` has an export at `precision` (its default, --half, --int8, or --fp32 where it defaults to
    fp16), or its runtime computes `precision` from the fp32 export (`computed`)."""
    if precision not in EXPORTED:
        return computed(fmt, precision)
    return precision == fmt.default_precision or EXPORTED[precision] in fmt.options


def computed(fmt: Format, precision: str) -> bool:
    """A precision that is a way of running the fp32 file (OpenVINO's bf16), not a file of its own."""
    from partialnet.runtimes.table import computed_precision

    return precision not in EXPORTED and fmt.default_precision == "fp32" and computed_precision(fmt.runtime, precision) is not None


def with_fp32(precisions: list[str]) -> list[str]:
    """A computed precision runs the fp32 file, so asking for one plans fp32 too."""
    if "fp32" in precisions or all(p in EXPORTED for p in precisions):
        return precisions
    return ["fp32", *precisions]


def plan_cells(formats: list[str], precisions: list[str]) -> list[Cell]:
    """Every (format, precision) asked for, with why not where this machine cannot export and time it."""
    from partialnet.exporters.status import format_rows

    status = {row["format"]: row for row in format_rows()}
    cells = []
    for name in formats:
        fmt, row = FORMATS[name], status[name]
        for precision in precisions:
            why = None
            if not takes(fmt, precision):
                why = f"{fmt.name} has no {precision} export" if precision in EXPORTED else f"{fmt.runtime} does not compute {precision} from the fp32 file"
            elif row["export"] == "prepares":  # the matrix keeps no half-made artifact: say how to get the whole one
                why = (f"no {fmt.name} artifact can be finished here: {exporter_of(fmt).unavailable_reason()}; `partialnet export -f {fmt.name}` "
                       "prepares it for the machine that builds it, or builds it there with --target")
            elif row["export"] != "yes":
                why = row["export_reason"] or "cannot be exported here"
            elif row["bench"] != "yes":
                why = f"cannot be timed here: {row['runtime_reason']}"
            cells.append(Cell(fmt, precision, why, no_such_artifact=not takes(fmt, precision)))
    return cells


def cell_options(fmt: Format, precision: str, imgsz: tuple[int, int], data: str | None, calib_size: int) -> ExportOptions:
    """One cell's export options: the calibration options only on INT8 cells, so that a cell exported in the
    second process (whose `api.export` checks them again, as typed) is not refused for them."""
    int8 = precision == "int8"
    return ExportOptions(
        imgsz=imgsz, half=precision == "fp16", int8=int8, fp32=precision == "fp32" and fmt.default_precision == "fp16",
        data=data if int8 else None, calib_size=calib_size if int8 else DEFAULT_CALIB_SIZE,
    )


def computed_row(model, fp32_row: dict, cell: Cell, checks) -> dict:
    """A computed cell: the fp32 cell's file run at `cell.precision` and judged by that precision's gates."""
    from partialnet.exporters.formats import exporter_of
    from partialnet.pipeline import check_parity
    from partialnet.runtimes.table import computed_precision

    base = {"file": fp32_row.get("file"), "bytes": fp32_row.get("bytes")}
    if fp32_row["status"] != "ok":
        return {**base, "status": "skipped", "why": f"runs the fp32 file, which was not made ({fp32_row['status']})"}
    started = time.perf_counter()
    path = Path(fp32_row["file"])
    try:
        parity = check_parity(path, model, exporter_of(cell.fmt).read_io(path), checks, runtime=cell.fmt.runtime, compute=cell.precision)
    except Unavailable as exc:
        return {**base, "status": "skipped", "why": str(exc)}
    how = f"the fp32 file {computed_precision(cell.fmt.runtime, cell.precision)}"
    result = {"parity": parity.to_dict(), "output": str(path), "bytes": fp32_row["bytes"], "metadata": {"precision": cell.precision}}
    if not parity.passed:
        return {**base, "status": "failed", "why": f"{how}: does not match PyTorch: {'; '.join(parity.failures())}"[:600]}
    return {**cell_row(result, started), "export_s": 0.0, "why": how, "runs_as": how}


def cell_path(folder: Path, stem: str, cell: Cell) -> Path:
    return folder / f"{stem}_{cell.fmt.name}_{cell.precision}{cell.fmt.suffix}"


def export_cell(model, info, folded, cell: Cell, staged: list, options: ExportOptions, checks) -> dict:
    """One cell exported into its staged files and verified; a failure is the cell's row, not the command's."""
    from partialnet.pipeline import export_staged

    started = time.perf_counter()
    try:
        result = export_staged(model, info, folded, cell.fmt.name, cell.outputs, staged, options, checks)
    except (CheckFailed, BadInput, Unavailable) as exc:
        for item in staged:
            item.drop()
        return failed_row(exc, started)
    return cell_row(result, started)


def failed_row(exc: Exception, started: float) -> dict:
    divergence = (getattr(exc, "details", None) or {}).get("divergence")  # a failing INT8 cell says where it drifts
    return {"status": "failed", "why": str(exc)[:600], "export_s": round(time.perf_counter() - started, 1),
            **({"divergence": divergence} if divergence else {})}


def cell_row(result: dict, started: float) -> dict:
    """A verified export's figures as the cell's row."""
    parity = result["parity"]
    cases = parity.get("cases") or []
    accuracy = parity.get("accuracy") or {}
    return {
        "status": "ok", "file": result["output"], "bytes": result["bytes"], "export_s": round(time.perf_counter() - started, 1),
        "agreement": min((c["top1_agreement"] for c in cases), default=None),
        "top1": 100 * accuracy["artifact_top1"] if accuracy else None,
        "top5": 100 * accuracy["artifact_top5"] if accuracy.get("artifact_top5") is not None else None,
        "reference_top1": 100 * accuracy["reference_top1"] if accuracy else None,
        "reference_top5": 100 * accuracy["reference_top5"] if accuracy.get("reference_top5") is not None else None,
        "precision_held": result["metadata"]["precision"],
    }


def timed_row(source: str, runtime: str, imgsz, threads: int, protocol, where=None, device: str = "cpu", precision: str = "fp32") -> dict:
    """One bench row (its own worker process, here or on a target), as `partialnet bench` would time it."""
    from partialnet.bench import run as bench_run
    from partialnet.errors import Unavailable

    plan = bench_run.BenchPlan(sources=[source], runtimes=[runtime], device=device, batches=[1], imgsz=imgsz, threads=threads, protocol=protocol,
                               precision=precision)
    if where is not None:
        plan.where = where
    try:
        (row,) = bench_run.run(plan)["rows"]
    except Unavailable as exc:  # the runtime is missing where the rows run: a skipped row, as in bench
        return {"status": "skipped", "reason": str(exc)}
    return row


def timing_fields(row: dict) -> dict:
    if row["status"] != "ok":
        return {"status": row["status"], "why": row.get("reason")}
    keep = ("stats", "samples_s", "cold", "memory", "machine_load", "unstable", "disturbed", "threads", "images_per_s")
    return {"p50_ms": row["stats"]["p50_ms"], **{k: row.get(k) for k in keep}, "marks_why": row.get("why"), "precision_ran": row.get("precision")}


def judge_rows(rows: list[dict], budget: float, accuracy: str) -> None:
    """drop, the Pareto front, the recommended and the smallest artifact, each with its reason. `accuracy` is the
    matrix's own word on it: where it was judged, a row without a top-1 (or a matrix without the reference's) is
    never within the budget, since nothing says it is."""
    from partialnet.runtimes.table import DEPLOY_RUNTIME

    judged = not accuracy.startswith(NOT_JUDGED)
    reference = next((r for r in rows if r["format"] == DEPLOY_RUNTIME and r.get("top1") is not None), None)
    for r in rows:
        r["drop"] = round(reference["top1"] - r["top1"], 3) if reference and r.get("top1") is not None else None
        r["pareto"] = r["recommended"] = r["smallest"] = False
        r["recommended_why"] = r["smallest_why"] = None  # every row holds every field: a reader need not test for keys
    # judged rows only: a marked row's latency stands for the machine, not the artifact
    timed = [r for r in rows if r.get("p50_ms") is not None and not r.get("unstable") and not r.get("disturbed")]
    score = (lambda r: r["top1"]) if reference else (lambda r: r.get("agreement") if r.get("agreement") is not None else 1.0)
    for r in timed:
        r["pareto"] = not any(o is not r and o["p50_ms"] <= r["p50_ms"] and (score(o) or 0) >= (score(r) or 0)
                              and (o["p50_ms"] < r["p50_ms"] or (score(o) or 0) > (score(r) or 0)) for o in timed)
    # without accuracy (not a digits checkpoint), an artifact that was written passed its agreement gates
    fit = [r for r in rows if r["format"] != DEPLOY_RUNTIME and r.get("bytes") and (r["drop"] <= budget if r["drop"] is not None else not judged)]
    if fastest := min((r for r in fit if r in timed), key=lambda r: r["p50_ms"], default=None):
        fastest.update(recommended=True, recommended_why=_why(fastest, budget, "fastest"))
    if fit:  # a file's size does not hang on how its timing went: a marked (or untimed) row can be the smallest
        smallest = min(fit, key=lambda r: r["bytes"])
        smallest.update(smallest=True, smallest_why=_why(smallest, budget, "smallest"))


def _kept(drop: float, budget: float) -> str:
    """A drop in words: "+0.37 points vs PyTorch" read as a gain when it was a loss."""
    if drop == 0:
        return f"top-1 as PyTorch fp32 (budget {budget:g} points)"
    return f"{'loses' if drop > 0 else 'gains'} {abs(drop):.2f} points of top-1 vs PyTorch fp32 (budget {budget:g})"


def _why(row: dict, budget: float, what: str) -> str:
    kept = _kept(row["drop"], budget) if row["drop"] is not None else "agreement gates passed"
    how = f" ({row['runs_as']})" if row.get("runs_as") else ""  # a computed precision: which file, and how to ask for it
    marks = [m for m in ("unstable", "disturbed") if row.get(m)]  # its latency stands for the machine: not shown
    timing = f"timing {' and '.join(marks)}" if marks else "not timed" if row.get("p50_ms") is None else f"{row['p50_ms']:.3f} ms"
    return f"{what} of the artifacts within budget: {row['format']} {row['precision']}{how}, {timing}, {row['bytes']:,} bytes, {kept}"


def to_markdown(result: dict) -> str:
    """The matrix as Markdown: machine and protocol first, one line per cell, then the recommendation."""
    from partialnet.machine import describe

    lines = [f"# Which artifact to ship: {result['source']['variant']} at {result['imgsz'][0]}x{result['imgsz'][1]}", "",
             f"Machine: {describe(result['machine'])}. Protocol {result['protocol']}, batch 1, {result['threads']} thread(s); "
             f"budget {result['budget_points']:g} points below PyTorch fp32.", "",
             "| format | precision | status | p50 ms | top-1 % | top-5 % | drop | agreement | MB | Pareto | why |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in shown_rows(result):
        lines.append(f"| {r['format']} | {r['precision']} | {r['status']}{mark(r)} | {_num(r.get('p50_ms'), '.3f')} | "
                     f"{_num(r.get('top1'), '.2f')} | {_num(r.get('top5'), '.2f')} | "
                     f"{_num(r.get('drop'), '+.2f')} | {_num(r.get('agreement'), '.1%')} | {_num((r.get('bytes') or 0) / 1e6 or None, '.1f')} | "
                     f"{'yes' if r.get('pareto') else ''} | {'; '.join(str(w) for w in (r.get('why'), r.get('marks_why')) if w)} |")
    lines += ["", *recommendation_lines(result)]
    return "\n".join(lines) + "\n"


def shown_rows(result: dict) -> list[dict]:
    """The rows a table shows: a format x precision that no machine could make (no such export or mode) is named
    once below the table instead (the JSON keeps every row)."""
    return [r for r in result["rows"] if not r.get("no_such_artifact")]


def recommendation_lines(result: dict) -> list[str]:
    best = [r for r in result["rows"] if r.get("recommended")]
    small = [r for r in result["rows"] if r.get("smallest")]
    absent = [f"{r['format']} {r['precision']}" for r in result["rows"] if r.get("no_such_artifact")]
    lines = [f"no such artifact (the format has no such export or mode): {', '.join(absent)}"] if absent else []
    if best:
        lines.append(f"recommended: {best[0]['file']} ({best[0]['recommended_why']})")
    else:
        lines.append("no artifact is within the budget on rows fit to judge (none timed cleanly, or every one lost too much): nothing recommended")
    if small:  # a marked row can be the smallest where none is recommended: the JSON and the text say the same
        lines.append(f"smallest: {small[0]['file']} ({small[0]['smallest_why']})")
    return lines


def _num(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)
