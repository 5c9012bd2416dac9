"""`partialnet report`: merge `claims` and `bench` results from several machines into one view.

A CI matrix of devices is how users measure more than one machine; each job uploads its JSON and one
job merges them. Result files come from strangers, so nothing derived is trusted: medians, ratios,
intervals and verdicts are recomputed from the raw samples and this project's claim table. Rows whose
protocols differ are never mixed: their numbers mean different things.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from partialnet.bench.claims import DEFAULT_TOLERANCE, SIZES
from partialnet.bench.claims_run import CLAIMS_SCHEMA, UNFOLDED, judge, off_papers
from partialnet.bench.marks import mark, marked_notes
from partialnet.bench.stability import judgement
from partialnet.machine import check_machine, check_threads_on_machine, describe
from partialnet.bench.load import MACHINE_LOAD, check_load
from partialnet.bench.results import IMGSZ, UNMEASURED, Samples, all_samples, check_result, enough_samples, read_result_file, total_samples
from partialnet.bench.matrix import SCHEMA as MATRIX_SCHEMA
from partialnet.bench.protocols import get_protocol, protocol_difference
from partialnet.bench.results import SCHEMA as BENCH_SCHEMA
from partialnet.bench.stats import median_ms, ratio_of_medians
from partialnet.errors import BadInput
from partialnet.inputs import Markdown, md_row, md_text
from partialnet.limits import MAX_BATCH, MAX_THREADS
from partialnet.runtimes.table import RUNTIMES
from partialnet.shapes import Integer, ListOf, Maybe, Number, OneOf, Record, Text, conform

REPORT_SCHEMA = "partialnet.report/1"
MAX_INPUTS = 64
MAX_REPORT_SAMPLES = 8_000_000  # about 300 MB as Python floats, and a minute of bootstraps


CLAIMS_PRECISIONS = ("fp32", "fp16", "bf16")


MAX_CELLS = 200  # sizes x runtimes of one run is at most a few dozen: a stranger's 100,000 failed cells took minutes
SIDE = Record({"samples_s": Samples()}, keep_others=True)  # one family's timings of a cell
CELL = Record({
    "size": OneOf(SIZES), "runtime": OneOf((*RUNTIMES, UNFOLDED)), "status": OneOf(("ok", "failed", "skipped")),
    "batch": Integer(1, MAX_BATCH), "threads": Integer(1, MAX_THREADS), "reason": Maybe(Text(600), null_as="not measured"),
    "fasternet": Maybe(SIDE), "partialnet": Maybe(SIDE), "machine_load": MACHINE_LOAD,
}, keep_others=True)
CLAIMS = Record({  # what the merge reads of a claims result; nothing it derives is read from the file
    "machine": Record({}, keep_others=True), "protocol": Record({"name": Text(40)}, keep_others=True), "device": OneOf(("cpu", "cuda")),
    "imgsz": IMGSZ, "precision": OneOf(CLAIMS_PRECISIONS), "batch": Maybe(Integer(1, MAX_BATCH)), "threads": Maybe(Integer(1, MAX_THREADS)),
    "measurements": ListOf(CELL, MAX_CELLS, least=1, cut=False), "costs": ListOf(Record({"gmacs": Number()}, keep_others=True), 64, cut=False),
    "tolerance": Maybe(Number(low=0, high=0.5), null_as=DEFAULT_TOLERANCE),  # an older file without one was judged at the default
}, keep_others=True)


def load_claims(path: Path, data: dict) -> dict:
    """A claims result held to its shape, then to what one run is: one machine, its own batch and threads in
    every cell, each claim and runtime once, and enough samples for the protocol it names; BadInput otherwise."""
    data = conform(data, CLAIMS, str(path))
    check_machine(data["machine"], str(path))
    check_threads_on_machine(data["threads"], data["machine"], f"{path}: threads")
    if data["device"] == "cuda" and not data["machine"].get("gpus"):
        raise BadInput(f"{path}: a cuda result from a machine that records no GPU")
    least = get_protocol(data["protocol"]["name"], data["device"]).min_iters  # BadInput for a protocol this version does not know
    seen: dict[tuple, int] = {}
    for i, cell in enumerate(data["measurements"]):
        _check_cell(cell, f"{path}: measurements[{i}]", data, least)
        key = (cell["size"], cell["runtime"])
        if key in seen:  # one machine, one claim, one runtime, two verdicts
            raise BadInput(f"{path}: measurements {seen[key]} and {i} are both {' / '.join(key)}; a result measures each once")
        seen[key] = i
    return data


def _check_cell(cell: dict, where: str, data: dict, least: int) -> None:
    """A cell of the run's own batch and threads, its load readings possible on the run's machine, with both families
    timed where it says ok."""
    check_threads_on_machine(cell["threads"], data["machine"], f"{where}: threads")
    if cell["machine_load"]:
        check_load(cell["machine_load"], data["machine"], f"{where}.machine_load")
    for key in ("batch", "threads"):
        if data[key] is not None and cell[key] != data[key]:
            raise BadInput(f"{where}: {key} {cell[key]}, but the run was at {key} {data[key]}")
    if cell["status"] != "ok":
        if cell["fasternet"] is not None or cell["partialnet"] is not None:
            raise BadInput(f"{where} is {cell['status']} and holds a side's raw samples: {UNMEASURED}")
        return
    for family in ("fasternet", "partialnet"):
        if cell[family] is None:
            raise BadInput(f"{where} is ok and lacks its {family} side")
        enough_samples(cell[family]["samples_s"], least, data["protocol"]["name"], f"{where} ({family})")


def load_any(path: str | Path) -> dict:
    path = Path(path)
    data = read_result_file(path, "result file")
    schema = data.get("schema") if isinstance(data, dict) else None
    if schema == BENCH_SCHEMA:
        data = check_result(data, path)
        if not data["rows"]:  # merged, it left no trace; alone, the report was empty and exit 0
            raise BadInput(f"{path}: a bench result with no rows: nothing was measured to report")
        return data
    if schema == CLAIMS_SCHEMA:
        return load_claims(path, data)
    if schema == MATRIX_SCHEMA:
        from partialnet.bench.matrix_report import load_matrix

        return load_matrix(path, data)
    raise BadInput(f"{path}: not a partialnet bench, claims or matrix result (schema {str(schema)[:40]!r})")


def _protocol_key(data: dict) -> str:
    """What must match for two results' numbers to mean the same thing: the protocol, and whether CUDA graphs
    removed the host's launches (a claims result says so at its top level, a bench result in its settings)."""
    settings = data.get("settings") if isinstance(data.get("settings"), dict) else data
    graphs = settings.get("cuda_graphs") is True
    timed = {k: v for k, v in data["protocol"].items() if k != "description"}  # prose, reworded between versions: it times nothing
    return json.dumps({**timed, **({"name": f"{data['protocol']['name']} with CUDA graphs", "cuda_graphs": True} if graphs else {})},
                      sort_keys=True)


def merge(paths: list[str | Path]) -> dict:
    """One report from many result files, refusing to mix protocols; every figure recomputed."""
    if not paths:
        raise BadInput("give at least one result file (from partialnet claims --json or partialnet bench --json)")
    if len(paths) > MAX_INPUTS:
        raise BadInput(f"{len(paths)} result files; at most {MAX_INPUTS}")
    loaded, total = [], 0
    for p in paths:
        loaded.append((Path(p), load_any(p)))
        total += total_samples(loaded[-1][1])  # every file is within its own limit; together they are too
        if total > MAX_REPORT_SAMPLES:
            raise BadInput(f"the result files hold over {MAX_REPORT_SAMPLES:,} raw samples together; merge fewer at a time")
    check_mixable(loaded)  # different protocols, sizes or tolerances are said first: they say more than a copy does
    _check_each_measurement_once(loaded)  # and a copy before any row is bootstrapped
    return merge_loaded(loaded)


def check_mixable(loaded: list[tuple]) -> None:
    """The results answer one question under one protocol: matrices of one model, size and protocol only with each
    other; bench and claims results under one protocol, claims at one input size, precision and tolerance."""
    if any(d["schema"] == MATRIX_SCHEMA for _, d in loaded):
        from partialnet.bench.matrix_report import one_question

        if not all(d["schema"] == MATRIX_SCHEMA for _, d in loaded):
            raise BadInput("matrices are merged with matrices only (a bench or claims result answers another question): give them apart")
        one_question(loaded)
        return
    protocols = {}
    for path, data in loaded:
        protocols.setdefault(_protocol_key(data), []).append(path)
    if len(protocols) > 1:
        (first, first_paths), *others = protocols.items()
        described = "; ".join(f"{protocol_difference(json.loads(first), json.loads(k))} in {first_paths[0]} and {ps[0]}" for k, ps in others)
        raise BadInput(f"results were measured under different protocols and are not mixed: {described}")
    _check_same_claims_inputs(loaded)


def _check_each_measurement_once(loaded: list[tuple]) -> None:
    """One file named twice, a copy of it with its labels edited, or a file holding another's rows among its own:
    those rows would count twice. A measurement is known by its raw samples, which no two runs share."""
    owner: dict[bytes, int] = {}
    for i, (path, data) in enumerate(loaded):
        for samples in all_samples(data) or [data]:
            # reordered, they are still the same timings; ordered by their JSON text, whatever a stranger's list holds
            ordered = sorted(json.dumps(v, sort_keys=True) for v in samples) if isinstance(samples, list) else samples
            digest = hashlib.blake2b(json.dumps(ordered, sort_keys=True).encode(), digest_size=16).digest()
            if owner.setdefault(digest, i) != i:
                raise BadInput(f"{path} holds a measurement also in {loaded[owner[digest]][0]} (the same raw samples): give each measurement once")


def _check_same_claims_inputs(loaded: list[tuple]) -> None:
    """Claims rows name a size and a runtime, not the input size or precision they ran at: results that differ
    in either would sit in one table as if they measured the same thing."""
    ran = {}
    for path, data in loaded:
        if data["schema"] == CLAIMS_SCHEMA:
            ran.setdefault(claims_conditions(data), []).append(str(path))
    if len(ran) > 1:
        described = "; ".join(f"{key} in {', '.join(paths)}" for key, paths in ran.items())
        raise BadInput(f"claims measured at different input sizes or precisions, or judged at different tolerances, are not merged: {described}")


def claims_conditions(data: dict) -> str:
    """What a claims verdict was reached under, beside the protocol: two files judged at 5 % and at 50 % would
    give one measurement two verdicts side by side."""
    return f"{data['imgsz'][0]}x{data['imgsz'][1]} {data['precision']}, judged at ±{data.get('tolerance', DEFAULT_TOLERANCE):g} tolerance"


def merge_loaded(loaded: list[tuple]) -> dict:
    """The merge of results already read and checked (files, or one command's own results per target)."""
    check_mixable(loaded)
    if any(d["schema"] == MATRIX_SCHEMA for _, d in loaded):
        return _merge_matrices(loaded)
    machines, claims, measurements, bench = {}, [], [], []
    for path, data in loaded:
        machine = data["machine"]
        mark = {"machine_id": machine["id"], "cpu": machine["cpu"]["model"], "file": str(path), "target": machine.get("target")}
        machines[machine["id"]] = one_record(machines, machine, path)
        if data["schema"] == CLAIMS_SCHEMA:
            cells, verdicts = judged_claims(data)
            measurements.extend({**_summary(cell), **mark, "device": data["device"], "batch": cell["batch"], "threads": cell["threads"]}
                                for cell in cells)
            claims.extend({**row, **mark} for row in verdicts)
        else:
            for row in data["rows"]:
                if row["status"] == "ok":
                    p50 = median_ms(row["samples_s"])
                    marks = judgement(row["samples_s"], row.get("machine_load"))  # recomputed, not read from the file
                    bench.append({k: row.get(k) for k in ("model", "runtime", "precision", "batch", "threads", "imgsz", "gmacs")}
                                 | {"p50_ms": p50, **mark, **marks})
    _name_runs([*claims, *measurements, *bench])
    return {
        "schema": REPORT_SCHEMA,
        "protocol": {**loaded[0][1]["protocol"], **json.loads(_protocol_key(loaded[0][1]))},  # the first file's description kept
        "machines": machines,
        "claims": claims,
        "claims_conditions": next((claims_conditions(d) for _, d in loaded if d["schema"] == CLAIMS_SCHEMA), None),
        "measurements": measurements,
        "bench": bench,
        "inputs": [str(p) for p, _ in loaded],
    }


def one_record(machines: dict, machine: dict, path: Path) -> dict:
    """The record a report lists for `machine`'s fingerprint: files of one fingerprint must agree on the hardware
    (a forged record with the same CPU name and other ISA flags would otherwise replace the real one)."""
    from partialnet.machine import different_hardware

    known = machines.get(machine["id"])
    differs = different_hardware({**known, "id": machine["id"]}, machine, ("files before it", "file")) if known is not None else None
    if differs:
        raise BadInput(f"{path}: its machine has another file's fingerprint, with {differs}")
    return known or {k: machine.get(k) for k in ("cpu", "gpus", "os", "versions")}


def _name_runs(rows: list[dict]) -> None:
    """`run`: the file a row came from, set where one machine (and target) gave several files, whose rows
    would otherwise read as the same machine's twice."""
    files: dict[tuple, set] = {}
    for row in rows:
        files.setdefault((row["machine_id"], row.get("target")), set()).add(row["file"])
    for row in rows:
        row["run"] = Path(row["file"]).name if len(files[(row["machine_id"], row.get("target"))]) > 1 else None


def origin(row: dict) -> str:
    """The machine a merged row came from, as the Markdown names it (and its file, where that machine gave several)."""
    return Markdown(f"{md_text(row['cpu'])} `{row['machine_id'][:8]}`" + (f" {md_text(row['run'][:60])}" if row.get("run") else ""))


def judged_claims(data: dict) -> tuple[list[dict], list[dict]]:
    """A (checked) claims result's cells with their ratios recomputed from the raw samples, and its verdicts
    judged again by today's rules: nothing derived in a stranger's file is trusted."""
    cells = []
    for cell in data["measurements"]:
        if cell["status"] == "ok":
            ratio, low, high = ratio_of_medians(cell["partialnet"]["samples_s"], cell["fasternet"]["samples_s"])
            cell = {**cell, "latency_ratio": ratio, "latency_ci": [low, high]}
        cells.append(cell)
    sizes = list(dict.fromkeys(c["size"] for c in cells))
    return cells, judge(cells, sizes, data["device"], data["tolerance"], off_papers(data))


def _merge_matrices(loaded: list) -> dict:
    """Matrices merge with matrices only: a bench or claims result answers another question."""
    from partialnet.bench.matrix_report import merge_matrices

    merged = merge_matrices(loaded)
    return {"schema": REPORT_SCHEMA, "protocol": {"name": merged["protocol"]}, "machines": merged["machines"], "claims": [],
            "measurements": [], "bench": [], "matrices": merged, "inputs": [str(p) for p, _ in loaded]}


def _summary(cell: dict) -> dict:
    row = {"size": cell["size"], "runtime": cell["runtime"], "status": cell["status"]}
    if cell["status"] == "ok":
        row.update(
            fasternet_p50_ms=median_ms(cell["fasternet"]["samples_s"]),
            partialnet_p50_ms=median_ms(cell["partialnet"]["samples_s"]),
            latency_ratio=cell["latency_ratio"],
            latency_ci=cell["latency_ci"],
        )
    else:
        row["reason"] = cell.get("reason")
    return row


def to_markdown(report: dict) -> str:
    lines = [f"# partialnet report: {len(report['machines'])} machine(s), protocol {report['protocol']['name']}", ""]
    for machine_id, machine in report["machines"].items():
        lines.append(f"- `{machine_id}`: {md_text(describe(machine))}")
    if report["claims"]:
        lines += ["", f"Claims measured at {report['claims_conditions']}.", "",
                  "| machine | claim | size | runtime | published | measured | 95% CI | verdict |", "|---|---|---|---|---|---|---|---|"]
        for r in report["claims"]:
            ci = "-" if r["ci"] is None else f"{r['ci'][0]:.3f}-{r['ci'][1]:.3f}"
            measured = "-" if r["ratio"] is None else f"{r['ratio']:.3f}"
            lines.append(md_row(origin(r), r["id"], r["size"], r["runtime"] or "-", f"{r['published']:.3f}", measured, ci, r["verdict"]))
        lines += ["", *(f"- {md_text(line)}" for line in claim_reasons(report))] if claim_reasons(report) else []
    if report["measurements"]:
        lines += ["", "| machine | size | runtime | batch | threads | FasterNet p50 ms | PartialNet p50 ms | ratio | 95% CI |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in report["measurements"]:
            figures = ([f"{r['fasternet_p50_ms']:.3f}", f"{r['partialnet_p50_ms']:.3f}", f"{r['latency_ratio']:.3f}",
                        f"{r['latency_ci'][0]:.3f}-{r['latency_ci'][1]:.3f}"] if r["status"] == "ok" else ["-", "-", "-", r["status"]])
            lines.append(md_row(origin(r), r["size"], r["runtime"], r["batch"], r["threads"], *figures))
    if report.get("matrices"):
        from partialnet.bench.matrix_report import to_markdown as matrices_markdown

        lines += ["", *matrices_markdown(report["matrices"])]
    if report["bench"]:
        lines += ["", "| machine | model | runtime | precision | size | batch | threads | p50 ms |", "|---|---|---|---|---|---|---|---|"]
        for r in report["bench"]:
            lines.append(md_row(origin(r), r["model"] + mark(r), r["runtime"], r["precision"], shown_size(r), r["batch"], r["threads"],
                                f"{r['p50_ms']:.3f}"))
        notes = marked_notes([{**r, "status": "ok"} for r in report["bench"]])
        lines += ["", *(f"- {md_text(note)}" for note in notes)] if notes else []
    return "\n".join(lines) + "\n"


def shown_size(row: dict) -> str:
    """A bench row's input size as a table shows it (rows at two sizes are two different rows)."""
    size = row.get("imgsz")
    return f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else "-"


def claim_reasons(report: dict) -> list[str]:
    """Why each claim that is not plainly supported got its verdict, and which verdicts were reached off the papers'
    conditions (a "reproduced" too): the word alone does not say what to do, or what it is worth."""
    return [f"{r['id']} ({r['size']}, {r['runtime'] or '-'}) on {r['cpu']}: {r['why']}" for r in report["claims"] if r.get("why")]


def model_gmacs(report: dict) -> dict:
    """GMACs at 224x224 of every (size, family) in the report, measured here (never read from a file)."""
    from partialnet.bench.claims_run import family_costs

    sizes = list(dict.fromkeys(r["size"] for r in report["measurements"]))
    return {(c["size"], c["family"]): c["gmacs"] for c in family_costs(sizes, (224, 224))}


def check_plottable(report: dict) -> None:
    """Before anything is printed or written: a --plot the report cannot draw is a usage error, not a late failure."""
    if not report.get("matrices") and not any(r["status"] == "ok" for r in report["measurements"]):
        raise BadInput("--plot draws the claims' PartialNet/FasterNet pairs (or matrices), and these results hold none "
                       "(bench rows are tabled, not plotted): leave out --plot")


def report_outputs(md_path=None, plot_path=None, json_path=None) -> list:
    """The files a report writes, named by their options (`-o` is the Markdown report)."""
    from partialnet.outputs import Output

    named = (("-o", md_path), ("--plot", plot_path), ("--json", json_path))
    return [Output(Path(path), option, written_as="Markdown" if option == "-o" else None) for option, path in named if path]


def write_report_outputs(report: dict, md_path=None, plot_path=None, json_path=None, force: bool = False, inputs=()) -> list[str]:
    from partialnet.bench import plot
    from partialnet.outputs import atomic_outputs, dumps_strict

    outputs = report_outputs(md_path, plot_path, json_path)
    if not outputs:
        return []
    writers = {
        "-o": lambda staged: staged.write_text(to_markdown(report)),
        "--plot": lambda staged: plot.save(plot.matrices_figure(report["matrices"]) if report.get("matrices")
                                           else plot.report_figure(report, model_gmacs(report)), staged.file),
        "--json": lambda staged: staged.write_text(dumps_strict(report, indent=1)),
    }
    with atomic_outputs(outputs, force, inputs) as staged:
        for item in staged:
            writers[item.output.option](item)
    return [str(o.path) for o in outputs]
