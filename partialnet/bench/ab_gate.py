"""The A/B gate: `bench --ab A B --max-slowdown F` judges B against A by compare's rules, within one run.

Two separate runs on a shared CI machine are often marked (a neighbour reached into a row's cores), and
compare gives a marked row no verdict. In an A/B run the two models alternate in blocks inside one worker,
so a neighbour's load falls on both: the verdict is given whatever the machine's load, and that load still
shows where it matters, in the rank test's p-value and the ratio's interval, which turn a verdict the
samples cannot carry into "noisy". (compare's median-against-floor check is left out: it tells two runs
apart by when the machine moved, and interleaved sides share every move.)
"""

from __future__ import annotations

import math

from partialnet.bench.compare import judge, side_marks

PASSING = ("ok", "improvement")


def gate_ab(result: dict, alpha: float, max_slowdown: float) -> list[tuple[str, str]]:
    """Each runtime's verdict, recorded in its A/B cell (`gate`, written with the result); the failing ones as
    (runtime, why), so a caller can say where the runtime ran before why it failed."""
    failures = []
    for cell in result["ab"]:
        if cell["status"] != "ok":
            cell["gate"] = {"verdict": cell["status"], "why": f"{cell['status']}: not measured ({cell.get('reason')})"}
        else:
            sides = ab_sides(result, cell["runtime"])
            v = within_control(judge(sides["a"]["samples_s"], sides["b"]["samples_s"], alpha, max_slowdown, interleaved=True), cell.get("aa"))
            marks = [f"{name.upper()} {m}" for name in ("a", "b") for m in side_marks(sides[name])]
            why = v["why"] + (f" (judged although rows are marked: {'; '.join(marks)}; A and B shared that load)" if marks else "")
            cell["gate"] = {"verdict": v["verdict"], "why": why, "noise_reasons": v["noise_reasons"], "marks": marks, "alpha": alpha,
                            "max_slowdown": max_slowdown}
        if cell["gate"]["verdict"] not in PASSING:
            failures.append((cell["runtime"], cell["gate"]["why"]))
    return failures


def within_control(v: dict, aa: dict | None) -> dict:
    """With --aa, a B/A no farther from 1 than this run's A/A control (A against itself) reads is no resolved
    difference, as the A/A line says: a regression there is noisy (rerun), an improvement ok. Two sessions of one
    file can read a few per cent apart in an A/B; the gate had called that a verdict."""
    if not aa or v["verdict"] not in ("regression", "improvement"):
        return v
    spread = max(abs(math.log(x)) for x in (aa["ratio"], *aa["ci"]))
    if abs(math.log(v["ratio"])) > spread:
        return v
    control = f"A/A {aa['ratio']:.3f} (95% CI {aa['ci'][0]:.3f}-{aa['ci'][1]:.3f})"
    if v["verdict"] == "improvement":
        return {**v, "verdict": "ok", "why": f"ok: median ratio {v['ratio']:.2f} lies within this run's A/A spread ({control}): no resolved difference"}
    return {**v, "verdict": "noisy", "noise_reasons": [*v["noise_reasons"], "within_control"],
            "why": f"noisy: median ratio {v['ratio']:.2f} lies within this run's A/A spread ({control}): the run cannot tell B from A "
                   "by that much; rerun on a quieter machine or with a longer --protocol"}


def ab_sides(result: dict, runtime: str) -> dict[str, dict]:
    """A's and B's rows of one runtime in an A/B result: model, precision, stats and raw samples."""
    rows = [r for r in result["rows"] if r["runtime"] == runtime and r["status"] == "ok"]
    return {name: {k: row.get(k) for k in ("model", "precision", "stats", "samples_s", "machine_load")} for name, row in zip(("a", "b"), rows)}
