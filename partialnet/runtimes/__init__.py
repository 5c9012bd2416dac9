"""Runners: one small interface per runtime, so verification and benchmarks never know which one runs.

A runner is built from an artifact (or a module), `prepare()`s once, `infer()`s NCHW float batches to
float32 logits, and `close()`s. It reports the precision and the threads it really uses. Runners of
artifacts derive from `BaseRunner`; which runner runs what is the runtime table's business.
"""

from __future__ import annotations

import contextlib
import gc
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Runner(Protocol):
    name: str
    precision: str
    threads: int | None

    def prepare(self) -> None: ...

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def close(self) -> None: ...


class BaseRunner:
    """The contract every runtime's runner keeps, in the style of Polygraphy's BaseRunner.

    Built cheaply from an artifact (nothing loads in the constructor, so a list of runners can be
    planned before any backend is imported); `prepare()` loads and compiles, `infer()` maps an NCHW
    float batch to float32 logits, `close()` frees the runtime. `with runner:` prepares and closes.
    `precision` and `threads` hold what the runtime reports once prepared, not what was asked for.
    A bench worker builds its runner with `from_spec`, from the same JSON spec for every runtime.
    """

    name = "runner"

    def __init__(self, path: Path, threads: int | None = None, precision: str = "fp32", device: str = "cpu"):
        self.path = Path(path)
        self.threads = threads
        self.requested_precision = precision
        self.precision = "unknown"
        self.device = device

    @classmethod
    def from_spec(cls, spec: dict) -> "BaseRunner":
        """The runner for a bench worker's spec (`artifact`, `threads`, `precision`, `device`)."""
        return cls(Path(spec["artifact"]), threads=spec.get("threads"), precision=spec.get("precision", "fp32"), device=spec.get("device", "cpu"))

    def prepare(self) -> None:
        raise NotImplementedError

    def infer(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        """Idempotent: called after a failure as well as after a run."""

    def default_differs(self) -> str | None:
        """Where the runtime, loaded the plain way (its defaults), computes another precision than this runner pinned:
        what the user's own code would get, said beside figures that hold only when it is pinned too."""
        return None

    def __enter__(self) -> "BaseRunner":
        self.prepare()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InputBinding:
    """Which caller array a runtime reads in place, so the same array is not wrapped again every call.

    OpenVINO and ExecuTorch can read a numpy array without copying it. While the caller passes the same
    object (refilled in place, as bench does), the runtime's input can stay bound to it. An array that
    must be converted (another dtype, non-contiguous, read-only) is copied afresh every call, since the
    caller may have changed the array it came from.
    """

    def __init__(self, dtype) -> None:
        self.dtype = np.dtype(dtype)
        self.array = None  # the caller's array the runtime reads, when it is read as is
        self.shape = None
        self.data = None  # what the runtime borrows: it must outlive the next inference

    def stale(self, batch: np.ndarray) -> bool:
        # numpy lets an array's shape and dtype be reassigned in place, so identity alone is not enough.
        return batch is not self.array or batch.shape != self.shape or batch.dtype != self.dtype

    def source(self, batch: np.ndarray) -> np.ndarray:
        """The array to hand the runtime for `batch`: `batch` itself when it can be read as is, else a copy."""
        ready = batch.dtype == self.dtype and batch.flags.c_contiguous and batch.flags.writeable
        self.data = batch if ready else np.array(batch, dtype=self.dtype, order="C")
        self.array, self.shape = (batch if ready else None), batch.shape
        return self.data

    def clear(self) -> None:
        self.array = self.data = None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask), which on a shared machine is not cpu_count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def gc_paused():
    """No garbage collection inside a timed loop: a collection is a pause the runtime did not cause."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


SPIN_ENV = "OMP_WAIT_POLICY"  # read by GNU/LLVM OpenMP at start; the runners' own pools (ONNX Runtime) follow it too


def spinning_allowed() -> bool | None:
    """What this process's environment asks of thread pools: True spin, False wait passively, None unsaid
    (a bench worker always says: partialnet.bench.threads)."""
    value = os.environ.get(SPIN_ENV, "").strip().upper()
    return {"ACTIVE": True, "PASSIVE": False}.get(value)
