"""Bench results on disk: JSON (complete, with raw samples), CSV and Markdown (one line per row)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from partialnet.bench.load import MACHINE_LOAD, check_load
from partialnet.bench.marks import mark, marked_notes
from partialnet.bench.options import DEVICES, PRECISIONS
from partialnet.bench.protocols import described_as_run
from partialnet.errors import BadInput
from partialnet.inputs import finite_number, inert, json_refusal, md_row, md_text, unique_keys
from partialnet.limits import MAX_BATCH, MAX_SIDE, MAX_THREADS
from partialnet.machine import check_machine, check_threads_on_machine
from partialnet.shapes import Flag, Integer, ListOf, Maybe, Misshapen, Number, OneOf, Record, Text, conform

SCHEMA = "partialnet.bench/1"
KEY_FIELDS = ("model", "runtime", "precision", "batch", "threads")
ROW_STATUSES = ("ok", "failed", "skipped")
FLAT_COLUMNS = (
    "model", "weights", "runtime", "device", "precision", "batch", "threads", "imgsz", "protocol", "mode", "status", "samples",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "cov", "images_per_s", "parity_max_abs", "parity_top1", "gmacs",
    "load_s", "first_infer_ms", "peak_rss_above_baseline_mb", "gpu_peak_allocated_mb", "gpu_peak_reserved_mb", "gpu_timed_peak_allocated_mb",
    "random_weights", "unstable", "disturbed", "others_cores", "why", "reason",
)


def row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def flat(row: dict) -> dict:
    stats = row.get("stats") or {}
    out = {k: row.get(k) for k in FLAT_COLUMNS}
    out.update({k: stats.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "cov")})
    size = row.get("imgsz")  # a 64x64 row must not read as a 224 one once two runs' CSVs are concatenated
    out["imgsz"] = f"{size[0]}x{size[1]}" if isinstance(size, list) and len(size) == 2 else None
    out["samples"] = stats.get("n")
    cold, memory = row.get("cold") or {}, row.get("memory") or {}
    out["load_s"] = cold.get("load_s")
    out["first_infer_ms"] = round(1e3 * cold["first_infer_s"], 3) if "first_infer_s" in cold else None
    out["peak_rss_above_baseline_mb"] = memory.get("peak_above_baseline_mb")
    out["gpu_peak_allocated_mb"] = memory.get("gpu_peak_allocated_mb")
    out["gpu_peak_reserved_mb"] = memory.get("gpu_peak_reserved_mb")
    out["gpu_timed_peak_allocated_mb"] = memory.get("gpu_timed_peak_allocated_mb")
    out["others_cores"] = (row.get("machine_load") or {}).get("others_cores")
    return out


def copy_named(row: dict) -> str:
    """Which copy of a checkpoint of several a row timed, as the JSON records it: two results of one file may have
    timed its weights and its EMA, and a table that drops the name reads them as one model."""
    return f" (--weights {row['weights']})" if row.get("weights") else ""


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FLAT_COLUMNS)
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow({**flat(row), "protocol": result["protocol"]["name"]})
    return buf.getvalue()


def _cell(value, fmt: str = "") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def _md_parity(row: dict) -> str:
    if row.get("parity_top1") is not None:
        return f"top-1 {row['parity_top1']:.1%} ({row.get('parity_on')})"
    return f"max abs {_cell(row.get('parity_max_abs'), '.2e')}"


def to_markdown(result: dict) -> str:
    machine = result["machine"]
    gpu = result["settings"]["device"] == "cuda"
    gpus = ", ".join(str(g.get("name", "?")) for g in machine.get("gpus") or [] if isinstance(g, dict))
    lines = [  # the machine's words are a target's or a stranger's: escaped, as report escapes them
        f"Protocol {md_text(result['protocol']['name'])}: {md_text(described_as_run(result))}. "
        f"Machine: {md_text(machine['cpu']['model'])} ({machine['cpu']['logical_cores']} logical cores), {md_text(machine['os'])}"
        + (f"; GPU: {md_text(gpus or '?')}" if gpu else "") + ".",
        "",
        "| model | runtime | precision | batch | threads | size | p50 ms | p90 ms | p99 ms | mean ms | CoV | images/s | parity | load s | 1st ms | +RSS MB |"
        + (" GPU MB timed alloc / peak reserved |" if gpu else ""),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else ""),
    ]
    for row in result["rows"]:
        model = row["model"] + (" (random weights)" if row.get("random_weights") else copy_named(row))
        if row["status"] != "ok":
            lines.append(md_row(model, row["runtime"], "-", row["batch"], "-", "-", f"{row['status']}: {row['reason']}", *[""] * (9 + gpu)))
            continue
        s, f = row["stats"], flat(row)
        model += mark(row)
        gpu_cells = [f"{_cell(f['gpu_timed_peak_allocated_mb'] or f['gpu_peak_allocated_mb'], '.0f')} / {_cell(f['gpu_peak_reserved_mb'], '.0f')}"] * gpu
        lines.append(md_row(
            model, row["runtime"], row["precision"], row["batch"], row["threads"], _cell(f["imgsz"]),
            *(_cell(s.get(k), ".3f") for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "cov")),
            f"{row['images_per_s']:.1f}", _md_parity(row), _cell(f["load_s"], ".2f"), _cell(f["first_infer_ms"], ".1f"),
            _cell(f["peak_rss_above_baseline_mb"], ".0f"), *gpu_cells,
        ))
    lines += [f"\n{md_text(note)}" for note in marked_notes(result["rows"])]
    from partialnet.render import aa_lines, ab_lines

    ab = [f"- {md_text(line.strip())}" for line in ab_lines(result) + aa_lines(result)]  # the ratio and verdict the run was for
    lines += ["", "A/B, each runtime's two models in one process (the rows above are its two sides):", "", *ab] if ab else []
    return "\n".join(lines) + "\n"



def result_outputs(json_path, csv_path=None, md_path=None, plot_path=None) -> list:
    """The files a bench run will write, named by their options (checked before the run starts)."""
    from partialnet.outputs import Output

    named = (("--json", json_path), ("--csv", csv_path), ("--md", md_path), ("--plot", plot_path))
    return [Output(Path(path), option) for option, path in named if path]


def per_target_outputs(json_path, csv_path, md_path, plot_path, labels: list[str | None]) -> dict:
    """The files of each target's result: as named for one place; for several targets each name gets the
    target inserted before its suffix (`bench.json` -> `bench.pi-board-2222.json` for ssh://pi@board:2222), so no result
    overwrites another. Entries are Outputs or None, in the order json, csv, md, plot."""
    from partialnet.outputs import Output

    named = (("--json", json_path), ("--csv", csv_path), ("--md", md_path), ("--plot", plot_path))
    per, used = {}, set()
    for label in labels:
        bare = (label or "").removeprefix("ssh://")
        tag = None if len(labels) == 1 or label is None else "".join(c if c.isalnum() or c in "-_." else "-" for c in bare).strip("-.")
        if tag is not None:  # two targets whose names read alike (root@loop, root-loop): the second numbered, as no one
            base, n = tag, 2  # command could give each its own path (the refusal had asked for that)
            while tag in used:
                tag, n = f"{base}-{n}", n + 1
            used.add(tag)
        per[label] = [(Output(Path(p).with_name(f"{Path(p).stem}.{tag}{Path(p).suffix}"), f"{o} of {label}") if tag else Output(Path(p), o))
                      if p else None for o, p in named]
    return {label: [o for o in outs] for label, outs in per.items()}


def write_outputs(
    result: dict,
    json_path: Path | None,
    csv_path: Path | None = None,
    md_path: Path | None = None,
    plot_path: Path | None = None,
    force: bool = False,
    inputs=(),
) -> list[str]:
    """Every requested file of one run, published together through the output module."""
    from partialnet.outputs import atomic_outputs, dumps_strict

    writers = {
        "--json": lambda staged: staged.write_text(dumps_strict(result, indent=1)),
        "--csv": lambda staged: staged.write_text(to_csv(result)),
        "--md": lambda staged: staged.write_text(to_markdown(result)),
        "--plot": lambda staged: _plot(result, staged),
    }
    outputs = result_outputs(json_path, csv_path, md_path, plot_path)
    if not outputs:
        return []
    with atomic_outputs(outputs, force, inputs) as staged:
        for item in staged:
            writers[item.output.option](item)
    return [str(o.path) for o in outputs]


def _plot(result: dict, staged) -> None:
    from partialnet.bench.plot import plot

    plot(result, staged.file)


MAX_RESULT_BYTES = 256 << 20  # a full matrix of 100,000-sample rows is tens of MB
MAX_SAMPLES_PER_ROW = 200_000  # twice the longest protocol's cap
# compare bootstraps every row (about 20 s of CPU per 200,000-sample row): a file is capped in total, so a
# stranger's 256 MiB of rows cannot hold a CI job for an hour; a 24-cell matrix at 6,000 samples a row is 144,000
MAX_SAMPLES_PER_FILE = 2_000_000


def all_samples(value) -> list:
    """Every raw sample list a result holds, in order: what makes it one measurement and not another."""
    if isinstance(value, dict):
        own = [value["samples_s"]] if isinstance(value.get("samples_s"), list) else []
        return own + [s for k, v in value.items() if k != "samples_s" and isinstance(v, (dict, list)) for s in all_samples(v)]
    if isinstance(value, list):
        return [s for v in value if isinstance(v, (dict, list)) for s in all_samples(v)]
    return []


def total_samples(value) -> int:
    """Every raw sample a result holds, wherever its rows keep them (bench rows, claims cells, matrix rows)."""
    if isinstance(value, dict):
        own = len(value["samples_s"]) if isinstance(value.get("samples_s"), list) else 0
        return own + sum(total_samples(v) for k, v in value.items() if k != "samples_s" and isinstance(v, (dict, list)))
    if isinstance(value, list):
        return sum(total_samples(v) for v in value if isinstance(v, (dict, list)))
    return 0


def check_total_samples(data, path) -> None:
    found = total_samples(data)
    if found > MAX_SAMPLES_PER_FILE:
        raise BadInput(f"{path} holds {found:,} raw samples, over the {MAX_SAMPLES_PER_FILE:,} limit for one result file")
# What one timed call can take: a nanosecond to a day. Beyond these, medians and their ratios stop being
# numbers (a subnormal median divides to infinity) and no real measurement lands there.
MIN_SAMPLE_S, MAX_SAMPLE_S = 1e-9, 86_400.0


def _strict_json(text: str, path: Path):
    """A result file's JSON, strict, with every string made inert: a CPU name or row label holding a newline
    or an escape sequence would otherwise forge lines ("error: ...") or rewrite the terminal that shows it."""
    def refuse_constant(name: str):
        raise BadInput(f"{path}: holds {name}, which is not JSON (a result never contains it)")

    try:
        data = json.loads(text, parse_constant=refuse_constant, object_pairs_hook=unique_keys)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    except RecursionError:
        raise BadInput(f"{path}: nested too deeply to be a bench result") from None
    except ValueError as exc:  # a key given twice, an integer of thousands of digits
        raise BadInput(f"{path}: not a result file ({json_refusal(exc)})") from None
    try:
        return _inert_strings(data)
    except RecursionError:
        raise BadInput(f"{path}: nested too deeply to be a bench result") from None


def _inert_strings(value):
    """Newlines too: no line of a stranger's file is printed as a line of ours."""
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, list):
        return [_inert_strings(v) for v in value]
    if isinstance(value, dict):
        return {_inert_strings(k): _inert_strings(v) for k, v in value.items()}
    return value



@dataclass(frozen=True)
class Samples:
    """Raw timing samples: every figure a reader shows is computed from them, so each must be a real call's time
    (a subnormal median divides to infinity), and a row holds no more than the longest protocol takes."""

    def conform(self, value, path: str) -> list[float]:
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_SAMPLES_PER_ROW \
                or not all(finite_number(x) and MIN_SAMPLE_S <= x <= MAX_SAMPLE_S for x in value):
            raise Misshapen(path, f"a list of 1 to {MAX_SAMPLES_PER_ROW:,} timings, each a finite number of seconds from {MIN_SAMPLE_S:g} to {MAX_SAMPLE_S:g}")
        return [float(x) for x in value]


UNMEASURED = "a row that was not measured has none (its figures would be read from timings its status disowns)"


def _least_samples(data: dict) -> int:
    """The fewest samples a row of this result can hold: its protocol's (by name, from this version's table, never
    from the file's own record of it); BadInput for a protocol this version does not know."""
    from partialnet.bench.protocols import get_protocol

    settings = data.get("settings") or {}
    return get_protocol(data["protocol"]["name"], settings.get("device") or "cpu").min_iters


def _check_row_fits_run(row: dict, data: dict, where: str) -> None:
    """A row of the run its file records: on its device, on no more threads than its machine has cores, with load
    readings possible there (64 threads on a 2-core machine, or a cuda row in a cpu run, were judged)."""
    device = (data.get("settings") or {}).get("device")
    if device is not None and row.get("device") is not None and row["device"] != device:
        raise BadInput(f"{where}: device {row['device']}, but the run was on {device}")
    check_threads_on_machine(row["threads"], data["machine"], f"{where}: threads")
    if row.get("machine_load"):
        check_load(row["machine_load"], data["machine"], f"{where}.machine_load")


def enough_samples(samples: list, least: int, protocol: str, where: str) -> None:
    """A verdict from three samples is none: fewer than the protocol the file names were not timed by it."""
    if len(samples) < least:
        raise BadInput(f"{where} holds {len(samples)} samples; the {protocol} protocol times at least {least}")


IMGSZ = ListOf(Integer(32, MAX_SIDE), 2, least=2, cut=False)  # any size a result of any version was timed at
MAX_ROWS = 10_000  # models x runtimes x batches x precisions of one run is at most a few hundred
def _named(table: str) -> tuple[str, ...]:
    """The names a row's runtime or format may hold: a stranger's "ONNXRuntime" would be a row of its own in compare."""
    if table == "runtimes":
        from partialnet.runtimes.table import RUNTIMES

        return tuple(RUNTIMES)
    from partialnet.exporters.formats import FORMATS

    return (*FORMATS, "deploy")  # deploy: a PyTorch row's folded model


BENCH_ROW = Record({  # what compare and report read of a row; its other fields travel on, unread
    "model": Text(1000, cut=False), "runtime": OneOf(_named("runtimes")), "precision": Text(64, cut=False), "status": OneOf(ROW_STATUSES),
    "device": Maybe(OneOf(DEVICES)), "format": Maybe(OneOf(_named("formats"))),
    "batch": Integer(1, MAX_BATCH), "threads": Integer(1, MAX_THREADS),
    "samples_s": Maybe(Samples()), "reason": Maybe(Text(600)), "imgsz": Maybe(IMGSZ), "gmacs": Maybe(Number(low=0)),
    "machine_load": MACHINE_LOAD,  # read to mark a row disturbed: a mistyped reading is refused, not taken as quiet
}, omit_null=True, keep_others=True)


@dataclass(frozen=True)
class Streams:
    """`--streams`: auto or a count (None: one request at a time)."""

    def conform(self, value, path: str):
        from partialnet.bench.streams import MAX_STREAMS

        if value == "auto" or (type(value) is int and 1 <= value <= MAX_STREAMS):
            return value
        raise Misshapen(path, f"auto or a count from 1 to {MAX_STREAMS}")


SETTINGS = Record({  # what compare holds two results' settings to (and prints where they differ); the rest travels on
    "device": Maybe(OneOf(("cpu", "cuda"))), "imgsz": Maybe(IMGSZ), "threads": Maybe(Integer(1, MAX_THREADS)),
    "precision": Maybe(OneOf(PRECISIONS)),
    "channels_last": Maybe(Flag()), "compile": Maybe(Flag()), "cuda_graphs": Maybe(Flag()), "streams": Maybe(Streams()),
    "wait": Maybe(Text(40, cut=False)),
}, keep_others=True)
BENCH = Record({
    "schema": Text(40), "machine": Record({}, keep_others=True), "protocol": Record({"name": Text(40)}, keep_others=True),
    "settings": Maybe(SETTINGS), "rows": ListOf(BENCH_ROW, MAX_ROWS, cut=False),
}, omit_null=True, keep_others=True)


def read_result_file(path: str | Path, what: str = "bench result"):
    """A stranger's result file parsed once, strictly, within the size and sample caps (its schema unchecked)."""
    from partialnet.inputs import read_limited

    path = Path(path)
    data = _strict_json(read_limited(path, what, MAX_RESULT_BYTES).decode("utf-8", "replace"), path)
    check_total_samples(data, path)
    return data


def load_result(path: str | Path) -> dict:
    """A bench result JSON, checked enough that compare can trust every field it reads; BadInput otherwise."""
    return check_result(read_result_file(path), Path(path))


def check_result(data, path: Path) -> dict:
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInput(f"{path}: not a partialnet bench result (schema {str(found)[:40]!r}, expected {SCHEMA!r})")
    data = conform(data, BENCH, str(path))
    check_machine(data["machine"], str(path))
    seen: dict[tuple, int] = {}
    least = _least_samples(data)
    for i, row in enumerate(data["rows"]):
        _check_row_fits_run(row, data, f"{path}: rows[{i}]")
        if row["status"] == "ok" and "samples_s" not in row:
            raise BadInput(f"{path}: rows[{i}] is ok and holds no raw samples (samples_s): every figure is computed from them")
        if row["status"] == "ok":  # two samples' "95 % interval" is their range: a cut or forged row cleared the gate
            enough_samples(row["samples_s"], least, data["protocol"]["name"], f"{path}: rows[{i}]")
        if row["status"] != "ok":
            if "samples_s" in row:
                raise BadInput(f"{path}: rows[{i}] is {row['status']} and holds raw samples: {UNMEASURED}")
            row.setdefault("reason", "not measured")  # a row's Markdown says why it has no figures
        key = row_key(row)
        if key in seen:  # whatever the statuses: which one would compare judge, and is an ok beside a failure a pass?
            raise BadInput(f"{path}: rows {seen[key]} and {i} are both {' / '.join(map(str, key))}; a result measures each row once")
        seen[key] = i
    return data
