"""Matrices from several machines in one report: which artifact to ship, per machine, side by side.

A matrix file is a stranger's file like any result: every field the report reads is checked, and what
can be derived is derived again here (medians from the raw samples, the unstable/disturbed marks, the
drop below PyTorch fp32, the Pareto front, the recommendation), never read from the file. Matrices
are merged only with matrices, of one model, input size, thread count and protocol: otherwise their
rows would not answer the same question.
"""

from __future__ import annotations

from pathlib import Path

from partialnet.errors import BadInput
from partialnet.inputs import finite_number
from partialnet.machine import check_machine

STATUSES = ("ok", "failed", "skipped")


def _number(value, where: str, low: float, high: float):
    if value is None:
        return None
    if not finite_number(value) or not low <= value <= high:
        raise BadInput(f"{where} must be a number from {low:g} to {high:g}, or null")
    return float(value)


def load_matrix(path: Path, data: dict) -> dict:
    """A matrix result with every field the merge reads checked; BadInput otherwise."""
    from partialnet.bench.matrix import PROTOCOLS
    from partialnet.bench.protocols import get_protocol
    from partialnet.limits import MAX_THREADS

    check_machine(data.get("machine"), str(path))
    source = data.get("source")
    if not isinstance(source, dict) or not isinstance(source.get("variant"), str) or not isinstance(data.get("protocol"), str):
        raise BadInput(f"{path}: the matrix lacks its source variant or protocol")
    if not (isinstance(data.get("imgsz"), list) and len(data["imgsz"]) == 2 and all(type(v) is int and 32 <= v <= 4096 for v in data["imgsz"])):
        raise BadInput(f"{path}: imgsz must be two integers from 32 to 4096")
    if data["protocol"] not in PROTOCOLS:  # what a matrix times with, batch 1 a row
        raise BadInput(f"{path}: a matrix is timed with the {' or '.join(PROTOCOLS)} protocol, not {data['protocol'][:40]!r}")
    if type(data.get("threads")) is not int or not 1 <= data["threads"] <= MAX_THREADS:
        raise BadInput(f"{path}: threads must be an integer from 1 to {MAX_THREADS}")
    data["budget_points"] = _number(data.get("budget_points"), f"{path}: budget_points", 0, 100)
    if data["budget_points"] is None:
        raise BadInput(f"{path}: the matrix lacks its budget")
    rows = data.get("rows")
    if not isinstance(rows, list) or len(rows) > 200:
        raise BadInput(f"{path}: rows must be a list (at most 200)")
    least = get_protocol(data["protocol"]).min_iters  # fewer samples than that were not timed by this protocol
    checked, seen = [], {}
    for i, row in enumerate(rows):
        checked.append(_checked_row(row, f"{path}: row {i}", least, data["protocol"]))
        cell = (checked[-1]["format"], checked[-1]["precision"])
        if cell in seen:
            raise BadInput(f"{path}: row {i} is {' '.join(cell)} again (row {seen[cell]}): a matrix measures each cell once")
        seen[cell] = i
    data["rows"] = checked
    return data


def _checked_row(row, where: str, least: int, protocol: str) -> dict:
    """One matrix row reduced to what the merge reads, every figure it can derive derived again."""
    from partialnet.bench.matrix import PRECISIONS, takes
    from partialnet.bench.results import check_samples
    from partialnet.bench.stability import judgement
    from partialnet.bench.stats import median_ms
    from partialnet.exporters.formats import FORMATS
    from partialnet.runtimes.table import DEPLOY_RUNTIME

    if not isinstance(row, dict) or row.get("format") not in (*FORMATS, DEPLOY_RUNTIME) or row.get("precision") not in PRECISIONS \
            or row.get("status") not in STATUSES:
        raise BadInput(f"{where} lacks a known format, precision or status")
    made = row["status"] == "ok" and row["format"] in FORMATS
    if made and not takes(FORMATS[row["format"]], row["precision"]):
        raise BadInput(f"{where}: {row['format']} {row['precision']} is no artifact partialnet makes, so it was not measured")
    clean = {k: row[k] for k in ("format", "precision", "status")}
    clean["why"] = row["why"][:600] if isinstance(row.get("why"), str) else None
    clean["file"] = row["file"][:400] if isinstance(row.get("file"), str) else None
    clean["runs_as"] = row["runs_as"][:300] if isinstance(row.get("runs_as"), str) else None  # a computed row (bf16): how to run its file
    clean["no_such_artifact"] = row.get("no_such_artifact") is True and row["status"] == "skipped"
    clean["bytes"] = int(_number(row.get("bytes"), f"{where}: bytes", 0, 1 << 40)) if row.get("bytes") is not None else None
    for key in ("top1", "top5"):
        clean[key] = _number(row.get(key), f"{where}: {key}", 0, 100)
    clean["agreement"] = _number(row.get("agreement"), f"{where}: agreement", 0, 1)
    if made and clean["bytes"] is None:
        raise BadInput(f"{where}: an artifact that was made has its size in bytes")
    if row["status"] == "ok" and row.get("samples_s") is not None:
        samples = check_samples(row["samples_s"], where)
        if len(samples) < least:
            raise BadInput(f"{where} holds {len(samples)} samples; the {protocol} protocol times at least {least}")
        clean["samples_s"] = samples
        clean["p50_ms"] = median_ms(samples)  # the p50 matrix, bench and compare print
        clean.update(judgement(samples, row.get("machine_load") if isinstance(row.get("machine_load"), dict) else None))
    return clean


def one_question(loaded: list[tuple[Path, dict]]) -> tuple:
    """The model, size, thread count and protocol every matrix answers for; BadInput where they differ."""
    question = {(d["source"]["variant"], tuple(d["imgsz"]), d["threads"], d["protocol"]) for _, d in loaded}
    if len(question) > 1:
        raise BadInput("matrices of different models, sizes, thread counts or protocols are not merged: "
                       + "; ".join(f"{v} {s[0]}x{s[1]}, {t} thread(s), {p}" for v, s, t, p in sorted(question)))
    return question.pop()


def merge_matrices(loaded: list[tuple[Path, dict]]) -> dict:
    """Matrices of one model, size, thread count and protocol, one panel per machine, everything judged again."""
    from partialnet.bench.matrix import judge_rows
    from partialnet.bench.report import one_record

    question = one_question(loaded)
    machines, panels = {}, []
    for path, data in loaded:
        machine = data["machine"]
        machines[machine["id"]] = one_record(machines, machine, path)
        rows = data["rows"]
        judge_rows(rows, data["budget_points"])
        rows.sort(key=lambda r: (r.get("p50_ms") is None, r.get("p50_ms") or 0))
        panels.append({"machine_id": machine["id"], "cpu": machine["cpu"]["model"], "file": str(path), "budget_points": data["budget_points"],
                       "rows": rows, "machine": machine})
    variant, imgsz, threads, protocol = question
    return {"variant": variant, "imgsz": list(imgsz), "threads": threads, "protocol": protocol, "machines": machines, "panels": panels}


def to_markdown(merged: dict) -> list[str]:
    from partialnet.bench.marks import mark
    from partialnet.inputs import md_row, md_text

    lines = [f"## Which artifact to ship: {merged['variant']} at {merged['imgsz'][0]}x{merged['imgsz'][1]}, batch 1, "
             f"{merged['threads']} thread(s), {merged['protocol']} protocol", ""]
    for panel in merged["panels"]:
        lines += [f"### {md_text(panel['cpu'])} `{panel['machine_id'][:8]}` ({md_text(panel['file'])})", "",
                  "| format | precision | status | p50 ms | top-1 % | drop | MB | front | ship |", "|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in panel["rows"] if not r.get("no_such_artifact")):  # what no machine makes is not a row here
            p50 = "-" if r.get("p50_ms") is None else f"{r['p50_ms']:.3f}"
            top1 = "-" if r.get("top1") is None else f"{r['top1']:.2f}"
            drop = "-" if r.get("drop") is None else f"{r['drop']:+.2f}"
            size = "-" if not r.get("bytes") else f"{r['bytes'] / 1e6:.1f}"
            ship = "recommended" if r.get("recommended") else "smallest" if r.get("smallest") else ""
            lines.append(md_row(r["format"], r["precision"], r["status"] + mark(r), p50, top1, drop, size, "yes" if r.get("pareto") else "", ship))
        best = next((r for r in panel["rows"] if r.get("recommended")), None)
        lines += ["", f"recommended here: {best['format']} {best['precision']} ({md_text(best['recommended_why'])})" if best
                  else "recommended here: nothing (no row within budget was timed cleanly)", ""]
    return lines
