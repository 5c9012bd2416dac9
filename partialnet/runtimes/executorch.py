"""ExecuTorch programs through its Python runtime, XNNPACK's thread pool set before the program loads.

Resetting the pool after a method is loaded crashes the process, so the pool is sized first and the
method loaded afterwards; the runner reports the pool size it reads back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class ExecuTorchRunner:
    name = "executorch"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        self.path = Path(path)
        self.threads = threads
        self.precision = "unknown"
        self.method = None

    def prepare(self) -> None:
        import torch

        from partialnet.exporters.executorch import quiet, read_io

        io = read_io(self.path)
        self.precision = io["precision"]
        with quiet():
            from executorch.extension.pybindings import portable_lib
            from executorch.runtime import Runtime

            if self.threads:
                portable_lib._unsafe_reset_threadpool(int(self.threads))
            self.threads = int(portable_lib._threadpool_get_thread_count())
            self.method = Runtime.get().load_program(str(self.path)).load_method("forward")
        self.torch = torch

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.method.execute([self.torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))])[0]
        return out.detach().numpy().astype(np.float32, copy=False)

    def close(self) -> None:
        self.method = None
