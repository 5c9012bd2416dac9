"""Rich tables for the reports the API returns. Rendering only: no decisions are made here."""

from __future__ import annotations

from rich.table import Table


def fold_table(report: dict) -> Table:
    size = "x".join(map(str, report["imgsz"]))
    table = Table(title=f"fold report ({size})")
    columns = ("pass", "sites", "max |Δ logits|", "params", "GMACs", "not folded")  # descriptions: in the JSON
    for col in columns:
        table.add_column(col, justify="left" if col in ("pass", "not folded") else "right")
    params, gmacs = report["params_before"], report["gmacs_before"]
    for p in report["passes"]:
        skipped = "; ".join(f"{s['site']}: {s['reason']}" for s in p["not_folded"]) or "-"
        table.add_row(
            p["name"],
            str(p["sites"]),
            f"{p['max_abs_diff']:.2e}",
            f"{params:,} → {p['params_after']:,}" if p["params_after"] != params else f"{params:,}",
            f"{gmacs:.4f} → {p['gmacs_after']:.4f}" if p["gmacs_after"] != gmacs else f"{gmacs:.4f}",
            skipped,
        )
        params, gmacs = p["params_after"], p["gmacs_after"]
    table.caption = (
        f"params {report['params_before']:,} → {report['params_after']:,} · "
        f"GMACs {report['gmacs_before']:.4f} → {report['gmacs_after']:.4f} · "
        f"BatchNorms {report['batchnorms_before']} → {report['batchnorms_after']}"
    )
    return table


def _fmt(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def parity_table(parity: dict, title: str) -> Table:
    table = Table(title=title)
    for col in ("inputs", "batch", "samples", "max |Δ|", "max rel", "min cosine", "top-1 agree", "verdict"):
        table.add_column(col, justify="left" if col in ("inputs", "verdict") else "right")
    for case in parity["cases"]:
        failed = [f.split(" ")[0] if not f.startswith("max") else "max |Δ|" for f in case["failures"]]
        verdict = "ok" if case["passed"] else f"FAIL ({', '.join(failed)})"
        table.add_row(
            case["name"],
            str(case["batch"]),
            str(case["samples"]),
            f"{case['max_abs']:.2e}",
            f"{case['max_rel']:.2e}",
            f"{case['min_cosine']:.8f}",
            f"{case['top1_agreement']:.0%}",
            verdict,
        )
    tol, tight = parity["tolerances"], parity.get("tightest_passing") or {}
    gates = [
        f"{label} {op} {format(tol[key], fmt)}"
        for key, label, op, fmt in (("max_abs", "max |Δ|", "≤", "g"), ("min_cosine", "cosine", "≥", "g"), ("min_top1", "top-1", "≥", ".0%"))
        if tol[key] is not None
    ]
    table.caption = (
        f"{parity['precision']} gates: {', '.join(gates)} · tightest that would pass: "
        f"max |Δ| ≤ {_fmt(tight.get('max_abs'), '.2e')}, cosine ≥ {_fmt(tight.get('min_cosine'), '.8f')}, "
        f"top-1 ≥ {_fmt(tight.get('min_top1'), '.0%')}"
    )
    return table
