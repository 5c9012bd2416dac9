"""Is the candidate slower than the baseline? A verdict that does not cry wolf on shared CI runners.

A row regresses only if BOTH hold: the slowdown is statistically significant on the raw samples
(one-sided Mann-Whitney U, p < alpha) AND the median got slower by more than `max_slowdown`.
Significance alone flags 1 % shifts on quiet machines; a threshold alone flags noise on busy ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from partialnet.bench.results import row_key
from partialnet.bench.stats import mann_whitney_greater, ratio_of_medians
from partialnet.errors import BadInput

DEFAULT_ALPHA = 0.01
DEFAULT_MAX_SLOWDOWN = 0.10


@dataclass
class RowVerdict:
    key: tuple
    baseline_p50_ms: float
    candidate_p50_ms: float
    ratio: float
    ratio_ci95: tuple[float, float]
    p_slower: float
    p_faster: float
    verdict: str  # "regression" | "improvement" | "ok"

    def to_dict(self) -> dict:
        return {
            "model": self.key[0], "runtime": self.key[1], "precision": self.key[2], "batch": self.key[3], "threads": self.key[4],
            "baseline_p50_ms": self.baseline_p50_ms, "candidate_p50_ms": self.candidate_p50_ms,
            "ratio": self.ratio, "ratio_ci95": list(self.ratio_ci95),
            "p_slower": self.p_slower, "p_faster": self.p_faster, "verdict": self.verdict,
        }


def median_ms(samples) -> float:
    """From the raw samples, never from a file's own summary, which a stranger could have edited."""
    return float(np.median(np.asarray(samples, dtype=np.float64))) * 1e3


def judge(baseline, candidate, alpha: float = DEFAULT_ALPHA, max_slowdown: float = DEFAULT_MAX_SLOWDOWN) -> dict:
    """The verdict for one pair of raw sample sets (seconds)."""
    ratio, low, high = ratio_of_medians(candidate, baseline)
    p_slower = mann_whitney_greater(candidate, baseline)
    p_faster = mann_whitney_greater(baseline, candidate)
    if p_slower < alpha and ratio > 1 + max_slowdown:
        verdict = "regression"
    elif p_faster < alpha and ratio < 1 / (1 + max_slowdown):
        verdict = "improvement"
    else:
        verdict = "ok"
    return {"ratio": ratio, "ratio_ci95": (low, high), "p_slower": p_slower, "p_faster": p_faster, "verdict": verdict}


def check_gate(alpha: float, max_slowdown: float) -> None:
    """The gate's two numbers, checked before any result file is read."""
    if not (math.isfinite(alpha) and 0 < alpha < 1):
        raise BadInput(f"--alpha {alpha}: expected a number strictly between 0 and 1")
    if not (math.isfinite(max_slowdown) and 0 <= max_slowdown <= 100):
        raise BadInput(f"--max-slowdown {max_slowdown}: expected a finite fraction >= 0 (0.10 = 10 %)")


def compare_results(
    baseline: dict,
    candidate: dict,
    alpha: float = DEFAULT_ALPHA,
    max_slowdown: float = DEFAULT_MAX_SLOWDOWN,
    allow_different_machines: bool = False,
) -> dict:
    check_gate(alpha, max_slowdown)
    machines = (baseline["machine"].get("id"), candidate["machine"].get("id"))
    if machines[0] != machines[1] and not allow_different_machines:
        raise BadInput(
            f"results come from different machines ({baseline['machine']['cpu']['model']} vs "
            f"{candidate['machine']['cpu']['model']}, fingerprints {machines[0]} vs {machines[1]}); "
            "pass --allow-different-machines to compare anyway"
        )
    base_rows = {row_key(r): r for r in baseline["rows"] if r["status"] == "ok"}
    cand_rows = {row_key(r): r for r in candidate["rows"] if r["status"] == "ok"}
    verdicts = []
    for key in [k for k in cand_rows if k in base_rows]:
        b, c = base_rows[key], cand_rows[key]
        v = judge(b["samples_s"], c["samples_s"], alpha, max_slowdown)
        verdicts.append(RowVerdict(key, median_ms(b["samples_s"]), median_ms(c["samples_s"]), **v))
    if not verdicts:
        raise BadInput("no rows in common (matched by model, runtime, precision, batch, threads)")
    return {
        "alpha": alpha,
        "max_slowdown": max_slowdown,
        "same_machine": machines[0] == machines[1],
        "rows": [v.to_dict() for v in verdicts],
        "only_in_baseline": [list(k) for k in base_rows if k not in cand_rows],
        "only_in_candidate": [list(k) for k in cand_rows if k not in base_rows],
        "regressions": sum(v.verdict == "regression" for v in verdicts),
    }
