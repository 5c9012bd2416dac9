"""Where an INT8 artifact drifts from fp32, layer by layer, and which layers to keep in float.

When an INT8 artifact fails its gate, a verdict alone leaves the user guessing. Like ONNX Runtime's
qdq_loss_debug, this runs the float graph and the quantized artifact on the same real images and
measures two things per layer (the deploy model's module paths, the names `--int8-keep-float` takes):

- **cumulative**: the layer's output in the artifact against its float twin (SQNR, dB; higher is
  closer): where the drift has got to by that layer;
- **isolated**: the float activations a layer reads, quantized and dequantized with the artifact's own
  scales, against themselves: what quantizing that layer's input costs on its own. A badly calibrated
  range shows here, at the layer it hurts, not smeared over everything after it.

The layers whose isolated loss is worst are the ones to keep in float. A format provides
`layer_activations(workdir, artifact, images, deploy) -> (order, fp32, int8, isolated, how)` in its module
(the float graph it quantized is in the export's workdir, or the deploy model itself is the float
side); formats without it get no report.
"""

from __future__ import annotations

import math

import numpy as np

FIRST_DRIFT_DB = 20.0  # below this a tensor is no longer a close copy (noise at 10 % of the signal)
SUGGEST = 3  # layers suggested to keep in float
MAX_IMAGES = 16


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float | None:
    """10 log10(signal / noise); None where the two are identical (infinite); -999 where either is not finite."""
    reference, candidate = reference.astype(np.float64), candidate.astype(np.float64)
    noise = float(np.sum((candidate - reference) ** 2))
    signal = float(np.sum(reference**2))
    if not math.isfinite(noise) or not math.isfinite(signal):
        return -999.0
    if noise == 0.0:
        return None
    return round(10 * math.log10(max(signal, 1e-30) / noise), 2)


def _cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    a = reference.reshape(len(reference), -1).astype(np.float64)
    b = candidate.reshape(len(candidate), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    values = np.sum(a * b, axis=1) / np.maximum(norms, 1e-30)
    return round(float(np.min(values)), 6) if np.isfinite(values).all() else -1.0


def fake_quantize(x: np.ndarray, low: np.ndarray, high: np.ndarray, levels: int) -> np.ndarray:
    """x clipped to [low, high] and rounded to `levels` steps: what an INT8 tensor can hold of it."""
    step = (high - low) / (levels - 1)
    step = np.where(step > 0, step, 1e-30)
    return np.round((np.clip(x, low, high) - low) / step) * step + low


def report(order: list[str], fp32: dict, int8: dict, isolated: dict[str, float | None], images: int, how: str) -> dict:
    """Per layer in graph order: cumulative SQNR/cosine, the isolated loss of its quantized input, and the layers to keep in float."""
    rows = []
    for layer in order:
        rows.append({"layer": layer, "sqnr_db": sqnr_db(fp32[layer], int8[layer]), "cosine": _cosine(fp32[layer], int8[layer]),
                     "input_sqnr_db": isolated.get(layer)})
    first = next((r["layer"] for r in rows if r["sqnr_db"] is not None and r["sqnr_db"] < FIRST_DRIFT_DB), None)
    lossy = sorted((r for r in rows if r["input_sqnr_db"] is not None and r["input_sqnr_db"] < FIRST_DRIFT_DB), key=lambda r: r["input_sqnr_db"])
    suggest = [r["layer"] for r in sorted(lossy[:SUGGEST], key=lambda r: order.index(r["layer"]))]
    judged = sum(1 for r in rows if r["input_sqnr_db"] is not None)
    return {"how": how, "images": images, "threshold_db": FIRST_DRIFT_DB, "layers": rows, "first_drift": first, "lossy_inputs": len(lossy),
            "judged_inputs": judged, "keep_float": suggest, "command": f"--int8-keep-float {','.join(suggest)}" if suggest else None}


WIDESPREAD = 0.25  # above this share of lossy inputs, no short list of float layers will save the model


def summary(found: dict) -> str:
    """One clause for the error line: where drift starts, which quantized inputs lose most, what to try."""
    where = f"drift starts at {found['first_drift']}" if found["first_drift"] else f"no layer falls below {FIRST_DRIFT_DB:g} dB SQNR"
    if found["judged_inputs"] and found["lossy_inputs"] > WIDESPREAD * found["judged_inputs"]:
        return (f"per-layer report: {where}; {found['lossy_inputs']} of {found['judged_inputs']} layers lose over {FIRST_DRIFT_DB:g} dB "
                "just quantizing their input: the calibration ranges do not fit these images (check --data, --calib-size, --calib-method)")
    if found["command"]:
        return f"per-layer report: {where}; worst-quantized inputs: {', '.join(found['keep_float'])}; try {found['command']}"
    return f"per-layer report: {where}; no quantized input loses more than {FIRST_DRIFT_DB:g} dB on its own (calibration data or method?)"


def layer_divergence(exporter, workdir, artifact, images: np.ndarray, deploy=None) -> dict | None:
    """The report for an INT8 artifact of a format that can expose its layers, or None."""
    collect = getattr(exporter, "layer_activations", None)
    if collect is None or images is None or not len(images):
        return None
    images = images[:MAX_IMAGES]
    order, fp32, int8, isolated, how = collect(workdir, artifact, images, deploy)
    return report(order, fp32, int8, isolated, len(images), how)


def worst_per_layer(losses: list[tuple[str, float | None]]) -> dict[str, float | None]:
    """The lowest isolated SQNR among each layer's quantized inputs (None: exact)."""
    out: dict[str, float | None] = {}
    for layer, db in losses:
        if layer not in out or (db is not None and (out[layer] is None or db < out[layer])):
            out[layer] = db
    return out


def last_per_layer(pairs) -> dict:
    """layer -> the last item (in graph order) it produced: the layer's output; dict order is the order layers finish in.
    `pairs` yields (layer or None, item)."""
    last: dict = {}
    for layer, item in pairs:
        if layer:
            last.pop(layer, None)
            last[layer] = item
    return last


def module_outputs(deploy, images: np.ndarray, layers: list[str]) -> dict[str, np.ndarray]:
    """The deploy model's own output of each named module on `images` (one at a time), in PyTorch: the float side
    for formats whose float graph is the model itself."""
    import torch

    modules = dict(deploy.named_modules())
    seen: dict[str, list] = {name: [] for name in layers if name in modules}
    hooks = [modules[name].register_forward_hook(lambda m, i, o, name=name: seen[name].append(o.detach().float().numpy()))
             for name in seen]
    try:
        with torch.no_grad():
            for image in images:
                deploy(torch.from_numpy(np.ascontiguousarray(image[None])))
    finally:
        for hook in hooks:
            hook.remove()
    return {name: np.concatenate(values) for name, values in seen.items() if values and all(v.ndim == values[0].ndim for v in values)}
