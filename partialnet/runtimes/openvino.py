"""OpenVINO running the ONNX artifact, with precision and threads pinned and read back.

On CPUs with bf16 support OpenVINO silently computes in bf16 unless told otherwise; this runner pins
the requested precision (fp32 by default) and reports what the compiled model says it runs.

`InferRequest.infer({0: x})` copies the input into the request and every output out of it and builds a
dict each call: side by side on T0 at 224, one thread, that runner ran 1.04x a bare loop on a bound
request (5-6 % in the issue that found it). The runner instead hands the caller's array to the request
as a shared-memory tensor (no copy; bound once while the caller keeps passing the same array, as bench
does) and copies only the logits out: 1.003x the bare loop (scripts/harness_overhead.py measures it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partialnet.errors import BadInput, Unavailable, missing_extra
from partialnet.runtimes import InputBinding

OV_PRECISION = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}  # int8: quantized layers int8, the rest f32
OV_DEVICE = {"cpu": "CPU"}


def _openvino():
    try:
        import openvino
    except ImportError:
        raise missing_extra("openvino", "openvino") from None
    return openvino


class OpenVinoRunner:
    name = "openvino"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        self.path = Path(path)
        self.threads = threads
        self.requested_precision = precision
        self.precision = "unknown"
        self.device = device

    def prepare(self) -> None:
        ov = _openvino()
        if self.device not in OV_DEVICE:
            raise Unavailable(f"openvino runs here on {', '.join(OV_DEVICE)} only, not {self.device}")
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": OV_PRECISION[self.requested_precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, OV_DEVICE[self.device], config)
        except RuntimeError as exc:
            raise BadInput(f"{self.path}: OpenVINO cannot compile it ({str(exc).splitlines()[0][:200]})") from None
        ran = str(self.compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.precision = {"float32": "fp32", "f32": "fp32", "bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "f16": "fp16"}.get(
            ran.split("'")[1] if "'" in ran else ran, ran
        )
        if any(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()):
            self.precision = "int8"  # quantized layers run in int8 whatever the hint; the rest as pinned
        self.threads = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
        self.request = self.compiled.create_infer_request()
        self.input_dtype = np.float16 if self.compiled.input(0).get_element_type().get_type_name() == "f16" else np.float32
        self.tensor_type = ov.Tensor
        self.binding = InputBinding(self.input_dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if self.binding.stale(batch):  # a shared-memory tensor over the caller's array (or its converted copy)
            self.request.set_input_tensor(0, self.tensor_type(self.binding.source(batch), shared_memory=True))
        self.request.infer()
        # The output tensor is the request's own memory, overwritten by the next call: the logits are
        # batch x classes floats, so copying them out is cheap and makes each result the caller's own.
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)

    def close(self) -> None:
        self.request = None
        self.compiled = None
        self.binding = None
