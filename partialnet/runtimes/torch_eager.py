"""PyTorch eager: the reference every artifact is compared with, and a benchmark baseline."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class TorchRunner:
    name = "pytorch"

    def __init__(self, model: nn.Module, threads: int | None = None, channels_last: bool = False):
        self.model = model
        self.threads = threads
        self.channels_last = channels_last
        self.precision = str(next(model.parameters()).dtype).removeprefix("torch.").replace("float", "fp")

    def prepare(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.model.eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return self.model(x).float().numpy()

    def close(self) -> None:
        pass
