"""Which runtimes exist, what they run, and whether this machine can run them: one table, no guessing.

`availability(runtime, device)` answers with a reason when the answer is no, so a benchmark can list
what it skipped and why instead of failing or silently leaving rows out.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from partialnet.errors import BadInput

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    runs: str  # "deploy" (a folded torch model) or "onnx" (an exported artifact)
    extra: str | None
    precisions: tuple[str, ...]
    formats: tuple[str, ...] = ()  # artifact formats (partialnet.exporters.formats) it can run as given


RUNTIMES: dict[str, RuntimeSpec] = {
    r.name: r
    for r in (
        RuntimeSpec("pytorch", "deploy", None, ("fp32", "bf16")),
        RuntimeSpec("onnxruntime", "onnx", None, ("fp32",), formats=("onnx",)),
        RuntimeSpec("openvino", "onnx", "openvino", ("fp32", "bf16", "fp16"), formats=("onnx", "openvino")),
    )
}
ALIASES = {"torch": "pytorch", "eager": "pytorch", "ort": "onnxruntime", "ov": "openvino"}


def get_runtime(name: str) -> RuntimeSpec:
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key not in RUNTIMES:
        raise BadInput(f"unknown runtime {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[key]


def availability(name: str, device: str, precision: str = "fp32") -> str | None:
    """None when `name` can run on `device` at `precision` here, else the reason it cannot."""
    spec = RUNTIMES[name]
    if precision not in spec.precisions:
        return f"{name} runs {', '.join(spec.precisions)} here, not {precision}"
    if spec.extra and importlib.util.find_spec(spec.extra) is None:
        return f"not installed (pip install 'partialnet[{spec.extra}]')"
    if device == "cpu":
        return None
    if name == "pytorch":
        import torch

        return None if torch.cuda.is_available() else "no CUDA device visible to torch"
    if name == "onnxruntime":
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return None
        return "onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu on a CUDA machine)"
    if name == "openvino":
        return "OpenVINO's GPU plugin targets Intel GPUs, not CUDA"
    return f"{name} does not support {device}"
