"""When a row's samples are too dispersed to stand for one number: the documented limits.

Three readings of one row's per-call latencies, each catching a different failure:
- CoV (std / mean): spread overall, which a few huge outliers inflate;
- p90 / p50: a fat tail, one call in ten far slower than the median;
- drift: the median of the second half of the samples against the first half's, which catches a
  machine that changed under the run (a neighbour starting, a clock stepping down) even when each half
  alone looks tight.

A row past any limit is marked unstable, with the reading that fired; `compare`, `claims` and `report`
give no verdict from it. The limits come from a quiet and a deliberately loaded run of the same bench
on one machine (docs/benchmarking.md, "Busy machines: disturbed and unstable rows").
"""

from __future__ import annotations

import numpy as np

# From 21 quiet rows (T0, PyTorch/ONNX Runtime/OpenVINO, 1 and 2 threads, latency and quick protocols) and
# 21 rows of the same runs beside a busy loop, on one 2-core Xeon VM (docs/benchmarking.md): quiet rows read
# CoV 0.02-0.27 (the highest from a few OpenVINO spikes), p90/p50 1.02-1.17, drift within ±5 %; the rows a
# busy neighbour broke read CoV 0.36-1.21, p90/p50 up to 1.82, drift up to -35 %. CoV moves with a few spikes
# (3 % of calls 1.5-3x slower, common on a quiet VM, read about 0.3), so its limit leaves room above the quiet
# rows and still catches every collapse (0.48-1.28); the robust p90/p50 and drift take the finer cases.
COV_LIMIT = 0.50
P90_P50_LIMIT = 1.30
DRIFT_LIMIT = 0.10
MIN_SAMPLES = 10  # below this the halves say nothing: no drift reading


def readings(samples) -> dict:
    x = np.asarray(samples, dtype=np.float64)
    if len(x) < 2 or not np.all(np.isfinite(x)) or float(x.mean()) <= 0:
        return {"cov": None, "p90_p50": None, "drift": None}
    p50 = float(np.median(x))
    half = len(x) // 2
    drift = None
    if len(x) >= MIN_SAMPLES:
        drift = float(np.median(x[half:]) / np.median(x[:half]) - 1)
    return {"cov": float(x.std(ddof=1) / x.mean()), "p90_p50": float(np.percentile(x, 90) / p50) if p50 > 0 else None, "drift": drift}


def instability(samples) -> str | None:
    """Why these samples are too dispersed to stand for one number, or None."""
    x = np.asarray(samples, dtype=np.float64)
    if len(x) and not np.all(np.isfinite(x)):
        return "non-finite samples (NaN or Inf): nothing to judge"
    r = readings(samples)
    why = []
    if r["cov"] is not None and r["cov"] > COV_LIMIT:
        why.append(f"CoV {past(r['cov'], COV_LIMIT, 2)} > {COV_LIMIT:g}")
    if r["p90_p50"] is not None and r["p90_p50"] > P90_P50_LIMIT:
        why.append(f"p90/p50 {past(r['p90_p50'], P90_P50_LIMIT, 2)} > {P90_P50_LIMIT:g}")
    if r["drift"] is not None and abs(r["drift"]) > DRIFT_LIMIT:
        shown = past(100 * abs(r["drift"]), 100 * DRIFT_LIMIT, 0)
        why.append(f"second half {'+' if r['drift'] > 0 else '-'}{shown} % vs first (limit ±{100 * DRIFT_LIMIT:g} %)")
    return "; ".join(why) or None


def past(value: float, limit: float, digits: int) -> str:
    """`value` with as many decimals as it takes to read as beyond `limit` (1.3004 is "1.3004", not "1.30 > 1.3")."""
    for places in range(digits, digits + 6):
        text = f"{value:.{places}f}"
        if float(text) != limit:
            return text
    return f"{value:.{digits + 6}f}"


def cell_marks(sides: dict[str, list], machine_load) -> list[str]:
    """Why an A/B cell (one worker, both sides alternating) cannot carry a verdict: each side's dispersion,
    recomputed from its samples, and the load its worker recorded."""
    from partialnet.bench.load import disturbance

    marks = [f"{name} unstable ({why})" for name, samples in sides.items() if (why := instability(samples))]
    disturbed = disturbance(machine_load)
    return marks + ([f"disturbed ({disturbed})"] if disturbed else [])


def judgement(samples, machine_load: dict | None) -> dict:
    """The row's marks: {"unstable", "disturbed", "why"} (why: every reason, or None)."""
    from partialnet.bench.load import disturbance

    unstable, disturbed = instability(samples), disturbance(machine_load)
    reasons = [f"unstable: {unstable}"] if unstable else []
    reasons += [f"disturbed: {disturbed}"] if disturbed else []
    return {"unstable": bool(unstable), "disturbed": bool(disturbed), "why": "; ".join(reasons) or None}
