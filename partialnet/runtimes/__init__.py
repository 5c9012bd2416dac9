"""Runners: one small interface per runtime, so verification and benchmarks never know which one runs.

A runner is built from an artifact (or a module), `prepare()`s once, `infer()`s NCHW float batches to
float32 logits, and `close()`s. It reports the precision and the threads it really uses.
"""

from __future__ import annotations

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
