"""Throughput as a server gets it: several requests in flight at once (`bench --streams N|auto`).

The synchronous protocols time one request at a time, so "throughput" there is batch / median latency
of a single request: what one client sees, not what a loaded server delivers. Here the runtime keeps
N requests in flight, the way OpenVINO's benchmark_app does in its throughput mode:

- OpenVINO: the CPU plugin's own streams (NUM_STREAMS=N, or PERFORMANCE_HINT=THROUGHPUT for `auto`,
  which lets the plugin choose) fed by an AsyncInferQueue holding as many requests as the compiled
  model reports optimal;
- ONNX Runtime: N sessions with threads/N intra-op threads each, driven by N Python threads (ORT
  releases the GIL while it runs); `auto` is one stream per usable core.

Each runtime's way of doing it lives in its runtime module (`streams()`), named by its row's `streams`
flag in the runtime table; this module holds the rule for when a run is done.

After a warm-up under the protocol's own rule (at least `warmup_iters` requests AND `warmup_seconds`, with
every stream kept busy, as the synchronous protocols warm one request at a time), requests are submitted
until at least `min_iters` have completed AND `min_seconds` have passed; images/s = images completed / wall
time from the first submit to the last completion. Each request's own latency is kept as a sample, so the
row still has a median and its interval.
"""

from __future__ import annotations

import importlib
import time

import numpy as np

from partialnet.bench.protocols import Protocol
from partialnet.errors import BadInput

MAX_STREAMS = 256


def parse_streams(value: str | None) -> int | str | None:
    """`auto` or a positive count; None keeps the synchronous protocol."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "auto":
        return "auto"
    if not (text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_STREAMS):
        raise BadInput(f"--streams {value!r}: expected auto or a count from 1 to {MAX_STREAMS}")
    return int(text)


def finished_rule(protocol: Protocol):
    """When a streams run stops: max_iters reached, or min_iters done AND min_seconds passed."""

    def finished(done: int, started: float) -> bool:
        if protocol.max_iters and done >= protocol.max_iters:
            return True
        return done >= protocol.min_iters and time.perf_counter() - started >= protocol.min_seconds

    return finished


def warmed_rule(protocol: Protocol):
    """When a streams warm-up stops: the protocol's warm-up iterations (or the runtime's own floor, such as every
    request of its queue twice, if higher) AND its warm-up seconds. (It used to be the iterations alone, split
    among the streams: the latency protocol's one second of warm-up was skipped.)"""

    def warmed(done: int, started: float, at_least: int = 0) -> bool:
        return done >= max(protocol.warmup_iters, at_least) and time.perf_counter() - started >= protocol.warmup_seconds

    return warmed


def run_streams(spec: dict, x: np.ndarray, protocol: Protocol) -> dict:
    """The worker's streams row: the runtime's own multi-stream driver, under the protocol's warm-up and stopping rules."""
    from partialnet.runtimes.table import RUNTIMES

    module = importlib.import_module(f"partialnet.runtimes.{RUNTIMES[spec['runtime']].module}")
    return module.streams(spec["artifact"], x, spec["streams"], spec.get("threads"), spec.get("precision", "fp32"),
                          warmed_rule(protocol), finished_rule(protocol))


def unsupported_reason(runtime: str, device: str = "cpu") -> str | None:
    from partialnet.runtimes.table import RUNTIMES

    takers = [r.name for r in RUNTIMES.values() if r.streams]
    if not RUNTIMES[runtime].streams:
        return f"no multi-stream mode (--streams runs {', '.join(takers)})"
    if device != "cpu":
        return "the multi-stream mode runs on the CPU here"
    return None
