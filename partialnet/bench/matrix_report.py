"""Matrices from several machines in one report: which artifact to ship, per machine, side by side.

A matrix file is a stranger's file like any result: every field the report reads is checked, and what
can be derived is derived again here (medians from the raw samples, the unstable/disturbed marks, the
drop below PyTorch fp32, the Pareto front, the recommendation), never read from the file. Matrices
are merged only with matrices, of one model, input size, thread count and protocol: otherwise their
rows would not answer the same question.
"""

from __future__ import annotations

from pathlib import Path

from partialnet.bench.load import MACHINE_LOAD, check_load
from partialnet.bench.results import IMGSZ, UNMEASURED, Samples, enough_samples
from partialnet.errors import BadInput
from partialnet.machine import check_machine, check_threads_on_machine
from partialnet.shapes import Flag, Integer, ListOf, Maybe, Number, OneOf, Record, Text, conform

STATUSES = ("ok", "failed", "skipped")
MAX_ROWS = 200  # formats x precisions: a few dozen


def _row_shape():
    """A matrix row as the merge keeps it: its own words, sizes and scores, each within its range; what it can
    derive (median, marks, drop, front, recommendation) is dropped and derived again."""
    from partialnet.bench.matrix import PRECISIONS
    from partialnet.exporters.formats import FORMATS
    from partialnet.runtimes.table import DEPLOY_RUNTIME

    score = Maybe(Number(real=True, low=0, high=100))
    return Record({
        "format": OneOf((*FORMATS, DEPLOY_RUNTIME)), "precision": OneOf(PRECISIONS), "status": OneOf(STATUSES),
        "why": Maybe(Text(600)), "file": Maybe(Text(400)), "runs_as": Maybe(Text(300)),  # runs_as: how a computed row (bf16) runs its file
        "no_such_artifact": Maybe(Flag(), null_as=False), "bytes": Maybe(Integer(0, 1 << 40)),
        "top1": score, "top5": score, "agreement": Maybe(Number(real=True, low=0, high=1)), "samples_s": Maybe(Samples()),
    })


def _matrix_shape():
    from partialnet.bench.matrix import PROTOCOLS  # what a matrix times with: batch 1 a row
    from partialnet.limits import MAX_THREADS

    return Record({
        "machine": Record({}, keep_others=True), "source": Record({"variant": Text(80), "sha256": Maybe(Text(80))}, keep_others=True),
        "protocol": OneOf(PROTOCOLS), "imgsz": IMGSZ, "batch": Maybe(Integer(1, 1)), "threads": Integer(1, MAX_THREADS),
        "budget_points": Number(real=True, low=0, high=100), "accuracy": Text(400, cut=False),  # whether top-1 was judged decides the budget
        "rows": ListOf(_row_shape(), MAX_ROWS, cut=False),
    }, keep_others=True)


def load_matrix(path: Path, data: dict) -> dict:
    """A matrix result held to its shape, each row then judged again; BadInput otherwise."""
    from partialnet.bench.protocols import get_protocol

    raw_rows = data.get("rows")
    data = conform(data, _matrix_shape(), str(path))
    check_machine(data["machine"], str(path))
    check_threads_on_machine(data["threads"], data["machine"], f"{path}: threads")
    least = get_protocol(data["protocol"]).min_iters  # fewer samples than that were not timed by this protocol
    seen = {}
    for i, (row, raw) in enumerate(zip(data["rows"], raw_rows)):
        _judge_row(row, raw, f"{path}: rows[{i}]", least, data)
        cell = (row["format"], row["precision"])
        if cell in seen:
            raise BadInput(f"{path}: row {i} is {' '.join(cell)} again (row {seen[cell]}): a matrix measures each cell once")
        seen[cell] = i
    return data


def _judge_row(row: dict, raw: dict, where: str, least: int, data: dict) -> None:
    """What one row's fields say together, and its figures derived again from its samples."""
    from partialnet.bench.matrix import takes
    from partialnet.bench.stability import judgement
    from partialnet.bench.stats import median_ms
    from partialnet.exporters.formats import FORMATS

    made = row["status"] == "ok" and row["format"] in FORMATS
    if made and not takes(FORMATS[row["format"]], row["precision"]):
        raise BadInput(f"{where}: {row['format']} {row['precision']} is no artifact partialnet makes, so it was not measured")
    if made and not row["bytes"]:
        raise BadInput(f"{where}: an artifact that was made has its size in bytes")
    if row["top1"] is not None and row["top5"] is not None and row["top5"] < row["top1"]:
        raise BadInput(f"{where}: top-5 {row['top5']} below top-1 {row['top1']}: the top five hold the first")
    row["no_such_artifact"] = row["no_such_artifact"] and row["status"] == "skipped"
    samples = row.pop("samples_s")
    if row["status"] != "ok" and samples is not None:
        raise BadInput(f"{where} is {row['status']} and holds raw samples: {UNMEASURED}")
    if row["status"] == "ok" and samples is not None:
        enough_samples(samples, least, data["protocol"], where)
        row["samples_s"] = samples
        row["p50_ms"] = median_ms(samples)  # the p50 matrix, bench and compare print
        load = conform(raw.get("machine_load"), MACHINE_LOAD, f"{where}.machine_load")
        if load:  # held to the machine the file records, as a bench result's rows are
            check_load(load, data["machine"], f"{where}.machine_load")
        row.update(judgement(samples, load))


def one_question(loaded: list[tuple[Path, dict]]) -> tuple:
    """The model, size, thread count and protocol every matrix answers for; BadInput where they differ."""
    question = {(d["source"]["variant"], tuple(d["imgsz"]), d["threads"], d["protocol"]) for _, d in loaded}
    if len(question) > 1:
        raise BadInput("matrices of different models, sizes, thread counts or protocols are not merged: "
                       + "; ".join(f"{v} {s[0]}x{s[1]}, {t} thread(s), {p}" for v, s, t, p in sorted(question)))
    weights = {d["source"].get("sha256") for _, d in loaded}
    if len(weights) > 1:  # two checkpoints of one variant: their accuracy columns answer two questions
        raise BadInput("matrices of one variant but different weights are not merged (their sha256 differ: "
                       + ", ".join(sorted(str(w)[:12] for w in weights)) + "); report each checkpoint's matrices on their own")
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
        judge_rows(rows, data["budget_points"], data["accuracy"])
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
