"""Bench results on disk: JSON (complete, with raw samples), CSV and Markdown (one line per row)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from partialnet.bench.run import SCHEMA
from partialnet.errors import BadInput

KEY_FIELDS = ("model", "runtime", "precision", "batch", "threads")
FLAT_COLUMNS = (
    "model", "runtime", "device", "precision", "batch", "threads", "status",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "cov", "images_per_s", "parity_max_abs", "gmacs", "reason",
)


def row_key(row: dict) -> tuple:
    return tuple(row.get(k) for k in KEY_FIELDS)


def flat(row: dict) -> dict:
    stats = row.get("stats") or {}
    out = {k: row.get(k) for k in FLAT_COLUMNS}
    out.update({k: stats.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "cov")})
    return out


def to_csv(result: dict) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FLAT_COLUMNS)
    writer.writeheader()
    for row in result["rows"]:
        writer.writerow(flat(row))
    return buf.getvalue()


def _cell(value, fmt: str = "") -> str:
    if value is None:
        return "-"
    return format(value, fmt) if fmt else str(value)


def to_markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"Protocol `{result['protocol']['name']}`: {result['protocol']['description']}. "
        f"Machine: {machine['cpu']['model']} ({machine['cpu']['logical_cores']} logical cores), {machine['os']}.",
        "",
        "| model | runtime | precision | batch | threads | p50 ms | p90 ms | p99 ms | mean ms | CoV | images/s | parity max abs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(f"| {row['model']} | {row['runtime']} | - | {row['batch']} | - | {row['status']}: {row['reason']} |||||||")
            continue
        s = row["stats"]
        lines.append(
            f"| {row['model']} | {row['runtime']} | {row['precision']} | {row['batch']} | {row['threads']} | "
            f"{s['p50_ms']:.3f} | {s['p90_ms']:.3f} | {s['p99_ms']:.3f} | {s['mean_ms']:.3f} | {s['cov']:.3f} | "
            f"{row['images_per_s']:.1f} | {_cell(row.get('parity_max_abs'), '.2e')} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(result: dict, json_path: Path | None, csv_path: Path | None, md_path: Path | None) -> list[str]:
    from partialnet.outputs import atomic_outputs

    written = []
    for path, text in (
        (json_path, lambda: json.dumps(result, indent=1) + "\n"),
        (csv_path, lambda: to_csv(result)),
        (md_path, lambda: to_markdown(result)),
    ):
        if path:
            with atomic_outputs([Path(path)], force=True) as (temp,):
                temp.write_text(text())
            written.append(str(path))
    return written


def load_result(path: str | Path) -> dict:
    """A bench result JSON, checked enough that compare can trust it; BadInput otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        found = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise BadInput(f"{path}: not a partialnet bench result (schema {found!r}, expected {SCHEMA!r})")
    for field in ("machine", "rows", "protocol"):
        if field not in data:
            raise BadInput(f"{path}: bench result lacks {field!r}")
    for i, row in enumerate(data["rows"]):
        missing = [k for k in (*KEY_FIELDS, "status") if k not in row]
        if missing:
            raise BadInput(f"{path}: row {i} lacks {', '.join(missing)}")
        if row["status"] == "ok" and not row.get("samples_s"):
            raise BadInput(f"{path}: row {i} ({row['model']}, {row['runtime']}) has no raw samples")
    return data
