"""PyTorch eager: the reference every artifact is compared with, and a benchmark baseline.

Options mirror what users try first for speed: channels_last memory format, torch.compile, bf16.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # fp16: the papers' GPU --half


class TorchRunner:
    name = "pytorch"

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        device: str = "cpu",
        precision: str = "fp32",
    ):
        self.model = model
        self.threads = threads
        self.channels_last = channels_last
        self.compile = compile
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[precision]
        self.precision = precision

    def prepare(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.threads = torch.get_num_threads() if self.device.type == "cpu" else self.threads
        model = self.model.eval().to(self.device, self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(model) if self.compile else model
        dtype = next(model.parameters()).dtype
        self.precision = next(name for name, d in TORCH_DTYPES.items() if d == dtype)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device, self.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out = self.forward(x).float()
        return out.cpu().numpy()  # .cpu() synchronises a CUDA stream, so the timing covers the work

    def close(self) -> None:
        self.forward = None
