"""Where an INT8 artifact drifts from fp32, layer by layer, and which layers to keep in float.

When an INT8 artifact fails its gate, a verdict alone leaves the user guessing. Like ONNX Runtime's
qdq_loss_debug, this runs the float graph and the quantized one on the same real images with every
layer's output exposed, and measures each layer's output against its float twin: the signal-to-
quantization-noise ratio (SQNR, dB; higher is closer) and the cosine. The error a layer *adds* is the
SQNR it loses relative to the layer before it; the layers that add the most are the ones to name to
`--int8-keep-float`. Layers are the deploy model's module paths, the names that option takes.

A format provides `layer_activations(workdir, artifact, images) -> (order, fp32, int8)` in its module
(the float graph it quantized is in the export's workdir); formats without it get no report.
"""

from __future__ import annotations

import math

import numpy as np

FIRST_DRIFT_DB = 20.0  # below this the layer's output is no longer a close copy (noise at 10 % of the signal)
SUGGEST = 3  # layers suggested to keep in float
MAX_IMAGES = 16


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """10 log10(signal / noise); None where the two are identical (infinite), so nothing non-finite reaches JSON."""
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    noise = float(np.sum((candidate - reference) ** 2))
    signal = float(np.sum(reference**2))
    if not math.isfinite(noise) or not math.isfinite(signal):
        return -math.inf
    if noise == 0.0:
        return None
    return 10 * math.log10(max(signal, 1e-30) / noise)


def _cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    values = np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)
    return float(np.min(values)) if np.isfinite(values).all() else -1.0


def report(order: list[str], fp32: dict[str, np.ndarray], int8: dict[str, np.ndarray], images: int, how: str) -> dict:
    """Per-layer SQNR/cosine in graph order, the first layer that drifts, and the layers that add the most error."""
    rows, previous = [], None
    for layer in order:
        db = sqnr_db(fp32[layer], int8[layer])
        if db is not None and not math.isfinite(db):
            db = -999.0  # non-finite output: as far from float as it gets, and still valid JSON
        level = 999.0 if db is None else db
        added = 0.0 if previous is None else max(0.0, previous - level)
        rows.append({"layer": layer, "sqnr_db": None if db is None else round(db, 2), "added_db": round(added, 2),
                     "cosine": round(_cosine(fp32[layer], int8[layer]), 6)})
        previous = level
    first = next((r["layer"] for r in rows if r["sqnr_db"] is not None and r["sqnr_db"] < FIRST_DRIFT_DB), None)
    worst = sorted((r for r in rows if r["added_db"] > 0), key=lambda r: -r["added_db"])[:SUGGEST]
    suggest = [r["layer"] for r in sorted(worst, key=lambda r: order.index(r["layer"]))]
    return {"how": how, "images": images, "threshold_db": FIRST_DRIFT_DB, "layers": rows, "first_drift": first,
            "keep_float": suggest, "command": f"--int8-keep-float {','.join(suggest)}" if suggest else None}


def summary(found: dict) -> str:
    """One clause for the error line: where drift starts and what to try."""
    where = f"drift starts at {found['first_drift']}" if found["first_drift"] else f"no layer falls below {FIRST_DRIFT_DB:g} dB SQNR"
    worst = max(found["layers"], key=lambda r: r["added_db"], default=None)
    adds = f"; {worst['layer']} adds the most error ({worst['added_db']:.1f} dB)" if worst and worst["added_db"] > 0 else ""
    tip = f"; try {found['command']}" if found["command"] else ""
    return f"per-layer report: {where}{adds}{tip}"


def layer_divergence(exporter, workdir, artifact, images: np.ndarray) -> dict | None:
    """The report for an INT8 artifact of a format that can expose its layers, or None."""
    collect = getattr(exporter, "layer_activations", None)
    if collect is None or images is None or not len(images):
        return None
    images = images[:MAX_IMAGES]
    order, fp32, int8, how = collect(workdir, artifact, images)
    return report(order, fp32, int8, len(images), how)
