"""The timing loop. The timed region is one `runner.infer(x)` call on a pre-allocated input.

Garbage collection is paused while timing so that Python's collector does not land inside a sample.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

from partialnet.bench.protocols import Protocol

TIMED_REGION = (
    "one runner.infer(x) call on a pre-allocated input: input hand-over to the runtime, inference, and the "
    "logits back as a host float32 array; no preprocessing, no model loading, GC paused"
)
TIMED_REGION_GPU = (
    "one runner.infer(x) call on a pre-allocated input: PyTorch keeps it resident on the GPU (copied once, as the "
    "papers' GPU loop feeds model(images)), inference, and the logits back as a host float32 array (which waits "
    "for the GPU); no preprocessing, no model loading, GC paused"
)


def timed_region(device: str) -> str:
    return TIMED_REGION_GPU if device == "cuda" else TIMED_REGION


def warm_up(step: Callable[[], object], protocol: Protocol) -> dict:
    start, count = time.perf_counter(), 0
    while count < protocol.warmup_iters or time.perf_counter() - start < protocol.warmup_seconds:
        step()
        count += 1
    return {"iters": count, "seconds": round(time.perf_counter() - start, 4)}


def timed(step: Callable[[], object], protocol: Protocol) -> list[float]:
    """Seconds per call: at least min_iters AND at least min_seconds, never more than max_iters."""
    samples: list[float] = []
    clock = time.perf_counter_ns
    start = time.perf_counter()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            t0 = clock()
            step()
            samples.append((clock() - t0) / 1e9)
            enough_iters = len(samples) >= protocol.min_iters
            enough_time = time.perf_counter() - start >= protocol.min_seconds
            if (enough_iters and enough_time) or (protocol.max_iters and len(samples) >= protocol.max_iters):
                return samples
    finally:
        if gc_was_enabled:
            gc.enable()


SWITCH_WARMUP = 3  # untimed calls at the start of each block of an alternation (see alternating)


def alternating(steps: dict[str, Callable[[], object]], protocol: Protocol, block: int = 10, seed: int = 0) -> dict[str, list[float]]:
    """Interleave blocks of iterations of each step until each has enough samples and time has passed.

    Drift in the machine (clock, thermal, neighbours) then lands on every side alike, which is what makes
    a ratio measured this way trustworthy on a noisy machine. Each round takes the steps in a fresh random
    order (seeded, so a run can be repeated): a fixed pattern (A B B A) let whatever follows a block, a
    cache refill or a frequency step, land more on one side, and A/A controls showed 2-5 % offsets.

    Each block starts with SWITCH_WARMUP untimed calls. The first calls after a switch run on caches the other
    model took: for T0 at 64x64 in ONNX Runtime, the first three positions of a block were the slow ones. Timed,
    they were 3 of every 10 samples, which marked A/B rows unstable (p90/p50 above 1.3) on a quiet machine, and
    both samples of the quick protocol's blocks of 2, which pulled a B/A ratio towards 1 (docs/ci-gating.md).
    """
    import random

    samples: dict[str, list[float]] = {name: [] for name in steps}
    start = time.perf_counter()
    clock = time.perf_counter_ns
    shuffle = random.Random(seed).shuffle
    order = list(steps)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while True:
            shuffle(order)
            for name in order:
                step, out = steps[name], samples[name]
                for _ in range(SWITCH_WARMUP if len(steps) > 1 else 0):
                    step()  # untimed: the first calls after a switch run on caches the other model took
                for _ in range(block):
                    t0 = clock()
                    step()
                    out.append((clock() - t0) / 1e9)
            fewest = min(len(s) for s in samples.values())
            if fewest >= protocol.min_iters and time.perf_counter() - start >= protocol.min_seconds:
                return samples
            if protocol.max_iters and fewest >= protocol.max_iters:
                return samples
    finally:
        if gc_was_enabled:
            gc.enable()
