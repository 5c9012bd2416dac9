"""TensorRT engines on a CUDA GPU: device buffers through torch, timed with a stream synchronise per call.

An engine is refused, with the reason, when the manifest beside it says it was built for another
TensorRT version or GPU: deserialising it would fail with an opaque error or, worse, run a plan
tuned for different hardware.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from partialnet.errors import BadInput
from partialnet.runtimes import BaseRunner


def device_reason(device: str) -> str | None:
    """The runtime table asks this for devices other than the CPU."""
    import torch

    return None if device == "cuda" and torch.cuda.is_available() else "no CUDA GPU visible (the TensorRT runner needs one)"


class TensorRTRunner(BaseRunner):
    """Host threads do not apply to an engine; `threads` is kept for the runner interface."""

    name = "tensorrt"
    context = None

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cuda"):
        super().__init__(path, threads, precision, device)

    def prepare(self) -> None:
        import torch

        from partialnet.exporters.formats import read_io
        from partialnet.exporters.tensorrt import check_built_for, load_tensorrt

        io = read_io(self.path)
        check_built_for(io["built_for"])
        trt = load_tensorrt()
        self.torch = torch
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise BadInput(f"{self.path}: TensorRT could not deserialise the engine")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise BadInput(f"{self.path}: expected one input and a logits output, found {len(inputs)} inputs")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.input_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.input_name)))
        self.output_dtype = getattr(torch, np.dtype(trt.nptype(self.engine.get_tensor_dtype(self.output_name))).name)
        self.stream = torch.cuda.Stream()
        self.precision = io["precision"]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=self.input_dtype)).cuda(non_blocking=False)
        self.context.set_input_shape(self.input_name, tuple(x.shape))
        out = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype, device="cuda")
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, out.data_ptr())
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BadInput(f"{self.path}: TensorRT failed to run the engine")
        self.stream.synchronize()
        return out.float().cpu().numpy()

    def close(self) -> None:
        self.context = None
        self.engine = None
