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
