"""PyTorch eager: the reference every artifact is compared with, and a benchmark baseline.

Options mirror what users try first for speed: channels_last memory format, torch.compile, bf16/fp16,
and on a GPU, CUDA graphs (one replay per call instead of one launch per kernel).

On a GPU the input stays resident on the device while the caller passes the same array, as in the
papers' GPU loop (`model(images)` on a batch already on the GPU): a host-to-device copy of a batch-64
input costs about as much as a small model's forward and would flatten every ratio measured with it.
fp32 there means fp32: TF32 is switched off, so a GPU row is as exact as a CPU row.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from partialnet.errors import BadInput
from partialnet.runtimes import BaseRunner

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # fp16: the reference code's --half
CAPTURE_WARMUP = 3  # forwards on a side stream before capture: cudnn.benchmark picks its kernels here


def gpu_memory() -> dict | None:
    """Peak GPU memory of this process since the last reset (allocated: tensors; reserved: the caching allocator)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return {
        "peak_allocated_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "peak_reserved_mb": round(torch.cuda.max_memory_reserved() / 2**20, 1),
    }


def device_reason(device: str) -> str | None:
    """The runtime table asks this for devices other than the CPU."""
    if device == "cuda":
        return None if torch.cuda.is_available() else "no CUDA device visible to torch"
    return f"pytorch does not support {device} here"


class TorchRunner(BaseRunner):
    """Runs a module, not an artifact: built from the model itself, or in a worker from a deploy file."""

    name = "pytorch"

    def __init__(
        self,
        model: nn.Module,
        threads: int | None = None,
        channels_last: bool = False,
        compile: bool = False,
        device: str = "cpu",
        precision: str = "fp32",
        cuda_graph: bool = False,
    ):
        if cuda_graph and device != "cuda":
            raise BadInput("CUDA graphs need --device cuda")
        if cuda_graph and compile:
            raise BadInput("--cuda-graphs and --compile exclude each other (torch.compile brings its own graphs: pick one)")
        self.model = model
        self.threads = threads
        self.channels_last = channels_last
        self.compile = compile
        self.cuda_graph = cuda_graph
        self.device = torch.device(device)
        self.dtype = TORCH_DTYPES[precision]
        self.precision = precision
        self.bound: tuple[np.ndarray, tuple] | None = None  # the caller's array whose copy is on the device
        self.x: torch.Tensor | None = None
        self.graph = None
        self.graph_out: torch.Tensor | None = None

    @classmethod
    def from_spec(cls, spec: dict) -> "TorchRunner":
        """A bench worker's model: the deploy file, or the training form itself for `--unfolded` rows."""
        if spec.get("threads"):
            torch.set_num_threads(spec["threads"])
        if spec.get("unfolded_source"):
            from partialnet.checkpoint import resolve

            model, _ = resolve(spec["unfolded_source"])
        else:
            from partialnet.folding import load_deploy

            model, _ = load_deploy(spec["deploy"])
        if spec.get("device") == "cuda":
            torch.backends.cudnn.benchmark = True
        return cls(model, threads=spec.get("threads"), channels_last=spec.get("channels_last", False), compile=spec.get("compile", False),
                   device=spec.get("device", "cpu"), precision=spec.get("precision", "fp32"), cuda_graph=spec.get("cuda_graphs", False))

    def prepare(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.threads = torch.get_num_threads() if self.device.type == "cpu" else self.threads
        if self.device.type == "cuda":
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        model = self.model.eval()
        first = next(model.parameters(), None)
        if first is not None and (first.device != self.device or first.dtype != self.dtype or self.channels_last):
            model = copy.deepcopy(model)  # Module.to converts in place: the caller's model keeps its fp32 CPU weights
        model = model.to(self.device, self.dtype)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(model) if self.compile else model
        dtype = next(model.parameters()).dtype
        self.precision = next(name for name, d in TORCH_DTYPES.items() if d == dtype)

    def _to_device(self, batch: np.ndarray) -> torch.Tensor:
        array = np.ascontiguousarray(batch, dtype=np.float32)
        if not array.flags.writeable:  # torch warns on a read-only view (np.load(mmap_mode="r"), a frozen buffer): a copy, for those only
            array = array.copy()
        x = torch.from_numpy(array).to(self.device, self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _input(self, batch: np.ndarray) -> torch.Tensor:
        """The device tensor for `batch`: copied on CPU every call (a view, in fact), on a GPU once per array."""
        if self.device.type == "cpu":
            return self._to_device(batch)
        if self.bound is not None and self.bound[0] is batch and self.bound[1] == (batch.shape, batch.dtype):
            return self.x
        fresh = self._to_device(batch)
        if self.graph is not None and fresh.shape == self.x.shape:
            self.x.copy_(fresh)  # the graph reads its captured input buffer
        else:
            self.x, self.graph = fresh, None  # a new shape needs a new capture
        self.bound = (batch, (batch.shape, batch.dtype))
        return self.x

    def _capture(self, x: torch.Tensor) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(CAPTURE_WARMUP):
                self.forward(x)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.graph_out = self.forward(x).float()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = self._input(batch)
        if self.cuda_graph:
            if self.graph is None:
                self._capture(x)
            self.graph.replay()
            return self.graph_out.cpu().numpy()  # .cpu() waits for the replay
        with torch.inference_mode():
            out = self.forward(x).float()
        return out.cpu().numpy()  # .cpu() synchronises a CUDA stream, so the timing covers the work

    def close(self) -> None:
        self.forward = self.graph = self.graph_out = self.x = self.bound = None
