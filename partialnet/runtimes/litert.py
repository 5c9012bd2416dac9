"""The LiteRT interpreter with its default XNNPACK delegate and an explicit thread count.

The interpreter cannot report its thread count, so the runner reports the count it set (counting the
process's threads confirmed one worker per extra thread when this was written).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class LiteRTRunner:
    name = "litert"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        self.path = Path(path)
        self.threads = threads
        self.precision = "unknown"
        self.interpreter = None

    def prepare(self) -> None:
        from partialnet.exporters.litert import _interpreter, read_io
        from partialnet.exporters.quiet import native_quiet

        io = read_io(self.path)
        self.precision = io["precision"]
        self.interpreter = _interpreter(self.path, self.threads or 1)
        self.threads = self.threads or 1
        with native_quiet():  # XNNPACK announces itself on stderr when the tensors are allocated
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self.interpreter.set_tensor(self.input["index"], np.ascontiguousarray(batch, dtype=self.input["dtype"]))
        self.interpreter.invoke()
        return np.array(self.interpreter.get_tensor(self.output["index"]), dtype=np.float32)

    def close(self) -> None:
        self.interpreter = None
