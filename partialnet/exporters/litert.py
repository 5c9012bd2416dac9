"""LiteRT (.tflite) with Google's PyTorch converter (litert-torch), run by the LiteRT interpreter.

The converter keeps the NCHW input and transposes once inside (the convolutions run NHWC). `--half`
stores fp16 weights (litert-torch's fp16 recipe); compute stays fp32 in XNNPACK on CPUs. A .tflite
carries no partialnet metadata slot here, so the manifest beside it does (like .pte files).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import torch
from torch import nn

from partialnet.errors import BadInput, missing_extra
from partialnet.exporters.quiet import library_quiet, native_quiet
from partialnet.exporters.options import ExportOptions
from partialnet.inputs import check_regular

MAX_TFLITE_BYTES = 2 << 30


def companion_suffixes() -> tuple[str, ...]:
    return ()


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    import importlib.util

    if importlib.util.find_spec("litert_torch") is None:
        raise missing_extra("litert-torch", "litert")
    model = copy.deepcopy(model).eval()
    example = torch.randn(options.batch, 3, *options.imgsz)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with library_quiet(), native_quiet(), torch.no_grad():
        import litert_torch

        kwargs = {}
        if options.half:
            from litert_torch.generative.quantize import quant_recipes

            kwargs["quant_config"] = quant_recipes.full_fp16_recipe()
        content = bytes(litert_torch.convert(model, (example,), **kwargs).model_content())
    staged[0].write_bytes(content)
    scratch = workdir / "model.tflite"  # verified with a sidecar before the real manifest exists
    scratch.write_bytes(content)
    (workdir / "model.tflite.json").write_text(json.dumps({"metadata": {**metadata, "precision": options.precision}}))
    ops = _op_counts(scratch)
    return {
        "nodes": sum(ops.values()),
        "op_counts": ops,
        "simplify": "n/a (litert-torch)",
        "weights": "fp16" if options.half else "fp32",
        "litert_torch": getattr(litert_torch, "__version__", "unknown"),
        "verify_path": str(scratch),
    }


def _interpreter(path: Path, threads: int | None = None):
    import importlib.util

    if importlib.util.find_spec("ai_edge_litert") is None:
        raise missing_extra("ai-edge-litert", "litert")
    from ai_edge_litert.interpreter import Interpreter

    try:
        with native_quiet():
            return Interpreter(model_path=str(path), num_threads=threads)
    except (ValueError, RuntimeError) as exc:
        raise BadInput(f"{path}: not a loadable .tflite ({str(exc).splitlines()[0][:160]})") from None


def _op_counts(path: Path) -> dict:
    counts: dict[str, int] = {}
    interpreter = _interpreter(path)
    with native_quiet():
        details = interpreter._get_ops_details()
    for op in details:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return dict(sorted(counts.items()))


def read_io(path: Path) -> dict:
    from partialnet.inputs import read_json

    path = Path(path)
    check_regular(path, "LiteRT model (.tflite)", max_bytes=MAX_TFLITE_BYTES)
    interpreter = _interpreter(path)
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise BadInput(f"{path}: expected one input, found {len(inputs)}")
    dims = [int(d) for d in inputs[0]["shape"]]
    if len(dims) != 4 or dims[1] != 3:
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    manifest = path.with_name(path.name + ".json")
    metadata = {}
    if manifest.is_file():
        record = read_json(manifest, "export manifest")
        metadata = record.get("metadata", {}) if isinstance(record, dict) else {}
    precision = str(metadata.get("precision", "fp32")) if isinstance(metadata, dict) else "fp32"
    return {
        "batch": dims[0],
        "dynamic": False,
        "imgsz": (dims[2], dims[3]),
        "precision": precision,
        "metadata": {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {},
    }
