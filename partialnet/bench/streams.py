"""Throughput as a server gets it: several requests in flight at once (`bench --streams N|auto`).

The synchronous protocols time one request at a time, so "throughput" there is batch / median latency
of a single request: what one client sees, not what a loaded server delivers. Here the runtime keeps
N requests in flight, the way OpenVINO's benchmark_app does in its throughput mode:

- OpenVINO: the CPU plugin's own streams (NUM_STREAMS=N, or PERFORMANCE_HINT=THROUGHPUT for `auto`,
  which lets the plugin choose) fed by an AsyncInferQueue holding as many requests as the compiled
  model reports optimal;
- ONNX Runtime: N sessions with threads/N intra-op threads each, driven by N Python threads (ORT
  releases the GIL while it runs); `auto` is one stream per usable core.

After a warm-up, requests are submitted until at least `min_iters` have completed AND `min_seconds`
have passed; images/s = images completed / wall time from the first submit to the last completion.
Each request's own latency is kept as a sample, so the row still has a median and its interval.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Callable

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


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _until_done(protocol: Protocol, completed: Callable[[], int], started: float) -> bool:
    done = completed()
    if protocol.max_iters and done >= protocol.max_iters:
        return True
    return done >= protocol.min_iters and time.perf_counter() - started >= protocol.min_seconds


def openvino_streams(artifact: str, x: np.ndarray, streams: int | str, threads: int | None, precision: str, protocol: Protocol) -> dict:
    import openvino as ov

    from partialnet.runtimes.openvino import OV_PRECISION

    config = {"INFERENCE_PRECISION_HINT": OV_PRECISION[precision], "PERFORMANCE_HINT": "THROUGHPUT"}
    if streams != "auto":
        config["NUM_STREAMS"] = int(streams)
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(artifact, "CPU", config)
    requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    queue = ov.AsyncInferQueue(compiled, requests)
    latencies: list[float] = []
    queue.set_callback(lambda request, _: latencies.append(request.latency / 1e3))
    feed = {0: x.astype(np.float16 if compiled.input(0).get_element_type().get_type_name() == "f16" else np.float32, copy=False)}
    for _ in range(max(protocol.warmup_iters, 2 * requests)):
        queue.start_async(feed, share_inputs=True)
    queue.wait_all()
    latencies.clear()
    submitted = 0
    gc.disable()
    try:
        started = time.perf_counter()
        while not _until_done(protocol, lambda: submitted, started):
            queue.start_async(feed, share_inputs=True)  # blocks until one of the requests is free
            submitted += 1
        queue.wait_all()
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return {
        "samples_s": latencies[:],
        "images_per_s": submitted * x.shape[0] / elapsed,
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "requests": requests,
        "threads": int(compiled.get_property("INFERENCE_NUM_THREADS")),
        "completed": submitted,
        "seconds": round(elapsed, 4),
    }


def onnxruntime_streams(artifact: str, x: np.ndarray, streams: int | str, threads: int | None, precision: str, protocol: Protocol) -> dict:
    import onnxruntime as ort

    count = usable_cores() if streams == "auto" else int(streams)
    per_stream = max(1, (threads or usable_cores()) // count)
    sessions = []
    for _ in range(count):
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = per_stream
        options.inter_op_num_threads = 1
        sessions.append(ort.InferenceSession(artifact, options, providers=["CPUExecutionProvider"]))
    first = sessions[0].get_inputs()[0]
    feed = {first.name: x.astype(np.float16 if first.type == "tensor(float16)" else np.float32, copy=False)}
    for session in sessions:
        for _ in range(max(1, protocol.warmup_iters // count)):
            session.run(None, feed)
    latencies: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def serve(session) -> None:
        clock = time.perf_counter
        while not stop.is_set():
            t0 = clock()
            session.run(None, feed)
            with lock:
                latencies.append(clock() - t0)

    workers = [threading.Thread(target=serve, args=(s,), daemon=True) for s in sessions]
    gc.disable()
    try:
        started = time.perf_counter()
        for w in workers:
            w.start()
        while not _until_done(protocol, lambda: len(latencies), started):
            time.sleep(0.005)
        stop.set()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - started
    finally:
        gc.enable()
    return {
        "samples_s": latencies[:],
        "images_per_s": len(latencies) * x.shape[0] / elapsed,
        "streams": count,
        "requests": count,
        "threads": count * per_stream,
        "completed": len(latencies),
        "seconds": round(elapsed, 4),
    }


STREAM_RUNNERS: dict[str, Callable[..., dict]] = {"openvino": openvino_streams, "onnxruntime": onnxruntime_streams}


def unsupported_reason(runtime: str, device: str = "cpu") -> str | None:
    if runtime not in STREAM_RUNNERS:
        return f"no multi-stream mode (--streams runs {', '.join(STREAM_RUNNERS)})"
    if device != "cpu":
        return "the multi-stream mode runs on the CPU here"
    return None
