"""Which runtimes exist, what they run, and whether this machine can run them: one table, no guessing.

`availability(runtime, device)` answers with a reason when the answer is no, so a benchmark can list
what it skipped and why instead of failing or silently leaving rows out.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from partialnet.errors import BadInput

DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class RuntimeSpec:
    name: str
    runs: str  # "deploy" (a folded torch model), "onnx" (an artifact built here from a checkpoint), "artifact" (given only)
    extra: str | None
    precisions: tuple[str, ...]
    formats: tuple[str, ...] = ()  # artifact formats it runs; the first is what bench builds from a checkpoint
    devices: tuple[str, ...] = ("cpu", "cuda")
    runner: str = ""  # "module:Class" of the artifact runner, built as Class(path, threads, precision, device)
    default: bool = True  # in bench's default set; mobile runtimes are asked for by name (their exports are slow)


RUNTIMES: dict[str, RuntimeSpec] = {
    r.name: r
    for r in (
        RuntimeSpec("pytorch", "deploy", None, ("fp32", "bf16", "fp16")),
        RuntimeSpec("onnxruntime", "onnx", None, ("fp32", "fp16", "int8"), formats=("onnx",), runner="onnxruntime:OnnxRuntimeRunner"),
        RuntimeSpec(
            "openvino", "onnx", "openvino", ("fp32", "bf16", "fp16", "int8"), formats=("openvino", "onnx"), runner="openvino:OpenVinoRunner"
        ),
        RuntimeSpec(
            "executorch", "onnx", "executorch", ("fp32", "int8"), formats=("executorch",), devices=("cpu",), runner="executorch:ExecuTorchRunner",
            default=False,
        ),
        RuntimeSpec(
            "litert", "onnx", "litert", ("fp32", "fp16", "int8"), formats=("litert",), devices=("cpu",), runner="litert:LiteRTRunner", default=False
        ),
        RuntimeSpec("coreml", "artifact", "coreml", ("fp32", "fp16"), formats=("coreml",), devices=("cpu",), runner="coreml:CoreMLRunner"),
        RuntimeSpec(
            # Built here from a checkpoint like the other exported runtimes (where TensorRT and a GPU are present)
            "tensorrt", "onnx", "tensorrt", ("fp32", "fp16", "int8"), formats=("trt",), devices=("cuda",), runner="tensorrt:TensorRTRunner"
        ),
    )
}
MODULES = {"coreml": "coremltools", "litert": "ai_edge_litert"}  # the importable module where it differs from the extra's name
ALIASES = {"pte": "executorch", "tflite": "litert", "torch": "pytorch", "eager": "pytorch", "ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}


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
    if device not in spec.devices:
        return f"runs on {', '.join(spec.devices)} only, not {device}"
    if spec.extra and importlib.util.find_spec(MODULES.get(name, spec.extra)) is None:
        return f"not installed (pip install 'partialnet[{spec.extra}]')"
    if name == "coreml" and sys.platform != "darwin":
        return "Core ML predicts on macOS only"
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
    if name == "tensorrt":
        import torch

        return None if torch.cuda.is_available() else "no CUDA GPU visible (the TensorRT runner needs one)"
    return f"{name} does not support {device}"


def artifact_runner(name: str, path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
    """The runner of runtime `name` for an exported artifact; every artifact runner takes the same arguments."""
    import importlib
    from pathlib import Path

    module, cls = RUNTIMES[name].runner.split(":")
    return getattr(importlib.import_module(f"partialnet.runtimes.{module}"), cls)(Path(path), threads=threads, precision=precision, device=device)
