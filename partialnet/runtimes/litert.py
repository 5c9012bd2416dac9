"""The LiteRT interpreter with its default XNNPACK delegate and an explicit thread count.

The interpreter cannot report its thread count, so the runner reports the count it set (counting the
process's threads confirmed one worker per extra thread when this was written). A fully-integer model
(INT8) takes and returns int8: the runner quantizes the float input and dequantizes the logits with the
scales stored in the model, inside the timed call, as an application on a phone would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partialnet.backends import require
from partialnet.errors import BadInput
from partialnet.exporters.quiet import native_quiet
from partialnet.runtimes import BaseRunner


def make_interpreter(path: Path, threads: int | None = None, every_tensor: bool = False):
    """A LiteRT interpreter over `path`; an unloadable file is bad input, not a traceback.

    `every_tensor`: built-in kernels only (a delegate keeps its partitions' tensors to itself) and every
    intermediate tensor kept readable after `invoke`, for the per-layer INT8 report.
    """
    module = require("ai_edge_litert.interpreter", "litert", "ai-edge-litert")
    extra = {}
    if every_tensor:
        extra = {"experimental_op_resolver_type": module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                 "experimental_preserve_all_tensors": True}
    try:
        with native_quiet():
            return module.Interpreter(model_path=str(path), num_threads=threads, **extra)
    except (ValueError, RuntimeError) as exc:
        raise BadInput(f"{path}: not a loadable .tflite ({str(exc).splitlines()[0][:160]})") from None


class LiteRTRunner(BaseRunner):
    name = "litert"
    interpreter = None

    def prepare(self) -> None:
        from partialnet.exporters.formats import read_io

        io = read_io(self.path)
        self.precision = io["precision"]
        self.interpreter = make_interpreter(self.path, self.threads or 1)
        self.threads = self.threads or 1
        with native_quiet():  # XNNPACK announces itself on stderr when the tensors are allocated
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], _to_model(batch, self.input))
        self.interpreter.invoke()
        return _from_model(self.interpreter.get_tensor(self.output["index"]), self.output)

    def close(self) -> None:
        self.interpreter = None


def _to_model(batch: np.ndarray, detail: dict) -> np.ndarray:
    dtype = np.dtype(detail["dtype"])
    if dtype.kind != "i":
        return np.ascontiguousarray(batch, dtype=dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.rint(batch / scale) + zero, info.min, info.max).astype(dtype)


def _from_model(values: np.ndarray, detail: dict) -> np.ndarray:
    if np.dtype(detail["dtype"]).kind != "i":
        return np.array(values, dtype=np.float32)
    scale, zero = detail["quantization"]
    return ((values.astype(np.float32) - zero) * np.float32(scale)).astype(np.float32)
