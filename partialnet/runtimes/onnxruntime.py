"""ONNX Runtime on the CPU provider (or CUDA where present), threads set explicitly.

`session.run` already reads a float32 C-contiguous numpy input in place and returns fresh output
arrays, so the runner adds only two no-op dtype checks to a bare `run` loop. The alternatives measured
no faster on the CPU (near-identity model and T0 at 224, one thread, side by side): an IOBinding rebound
per call cost about 1 us more, and `run_with_ort_values` with an `OrtValue.ortvalue_from_numpy` input
per call cost 33 us more on the near-identity model and 1.035x on T0.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np

from partialnet.errors import BadInput
from partialnet.runtimes import BaseRunner, gc_paused, spinning_allowed, usable_cores

ORT_PRECISIONS = {"tensor(float)": "fp32", "tensor(float16)": "fp16"}
CUDA_PROVIDER = "CUDAExecutionProvider"


def _has_qdq(path) -> bool:
    """Whether the graph itself quantizes (never its metadata, which anyone can edit); onnx alone, no torch:
    a bench worker for this runtime imports neither torch nor the exporters."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)


HEAVY_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm", "FusedConv", "FusedMatMul")


def computes_fp16_on_cpu(path) -> bool:
    """Whether the CPU provider runs an fp16 graph's convolutions and matmuls in fp16, read from the graph it
    optimizes: where it has no fp16 kernel it inserts casts (`InsertedPrecisionFreeCast_*`) and runs the op in
    fp32, and its NCHWc convolutions are fp32 only. On x86 CPUs that is every convolution (2026's MLAS): an fp16
    row there would be an fp32 computation with casts around it, labelled as fp16."""
    import onnx
    import onnxruntime as ort

    from partialnet.outputs import scratch_folder

    with scratch_folder("partialnet-ort-") as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # its warning that the saved graph is tied to this machine: it is read once, here
        options.intra_op_num_threads = 1
        options.optimized_model_filepath = str(Path(folder) / "optimized.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    cast = {out for node in graph.node if node.name.startswith("InsertedPrecisionFreeCast") for out in node.output}
    heavy = [node for node in graph.node if node.op_type in HEAVY_OPS]
    return bool(heavy) and not any(node.domain == "com.microsoft.nchwc" or cast.intersection(node.input) for node in heavy)


def device_reason(device: str) -> str | None:
    """Why ONNX Runtime cannot run on `device` here (the runtime table asks for devices other than the CPU)."""
    import onnxruntime

    if device == "cuda" and CUDA_PROVIDER in onnxruntime.get_available_providers():
        return None
    return f"onnxruntime has no {CUDA_PROVIDER} here (install onnxruntime-gpu on a CUDA machine)"


def session(path: str | Path, threads: int | None, device: str = "cpu"):
    """One session with its threads pinned: intra-op as asked, inter-op 1, sequential, quiet."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = spinning_allowed()
    if spin is not None:  # a bench worker's wait policy (partialnet.bench.threads): ORT's pool follows OpenMP's
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    providers = [CUDA_PROVIDER, "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    return ort.InferenceSession(str(path), options, providers=providers)


def input_feed(sess, x: np.ndarray) -> dict:
    first = sess.get_inputs()[0]
    return {first.name: x.astype(np.float16 if first.type == "tensor(float16)" else np.float32, copy=False)}


class OnnxRuntimeRunner(BaseRunner):
    name = "onnxruntime"
    session = None
    _precision = "unknown"
    _fp16_graph = False

    def prepare(self) -> None:
        try:
            self.session = session(self.path, self.threads, self.device)
        except Exception as exc:  # ORT raises its own exception types for unreadable or invalid models
            raise BadInput(f"{self.path}: ONNX Runtime cannot load it ({str(exc).splitlines()[0][:200]})") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_dtype = np.float16 if first.type == "tensor(float16)" else np.float32
        self.precision = ORT_PRECISIONS.get(first.type, first.type)
        if self.precision == "fp32" and _has_qdq(self.path):
            self.precision = "int8"  # a QDQ graph: fp32 input, int8 inside
        self._fp16_graph = self.precision == "fp16" and self.device != "cuda"

    @property
    def precision(self) -> str:
        """What ran: an fp16 graph on the CPU provider is fp32 where it computes fp32 with casts around each op.
        Probed at the first read, after a bench row's timing (0.1-0.8 s that its load_s must not hold)."""
        if self._fp16_graph:
            self._fp16_graph = False
            if not computes_fp16_on_cpu(self.path):
                self._precision = "fp32"
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = value

    def infer(self, batch: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self.input_name: batch.astype(self.input_dtype, copy=False)})[0]
        return out.astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None


def _drive(sessions: list, feed: dict, finished) -> tuple[list[float], float]:
    """Every session kept busy by its own thread until `finished(completed, started)`: (latencies, seconds)."""
    latencies: list[float] = []
    failures: list[BaseException] = []
    stop, lock = threading.Event(), threading.Lock()

    def serve(sess) -> None:
        clock = time.perf_counter
        try:
            while not stop.is_set():
                t0 = clock()
                sess.run(None, feed)
                with lock:
                    latencies.append(clock() - t0)
        except Exception as exc:  # a session that fails ends the run (its thread would die, and the wait never end)
            failures.append(exc)
            stop.set()

    workers = [threading.Thread(target=serve, args=(s,), daemon=True) for s in sessions]
    started = time.perf_counter()
    for w in workers:
        w.start()
    while not stop.is_set() and not finished(len(latencies), started):
        time.sleep(0.005)
    stop.set()
    for w in workers:
        w.join()
    if failures:
        raise failures[0]
    return latencies[:], time.perf_counter() - started


def streams(artifact: str, x: np.ndarray, count: int | str, threads: int | None, precision: str, warmed, finished) -> dict:
    """N sessions with threads/N intra-op threads each, driven by N Python threads (ORT releases the GIL
    while it runs); `auto` is one stream per usable core. `warmed(completed, started)` ends the warm-up (each
    session's cold run, then all of them busy, as in the run), `finished(completed, started)` the run."""
    count = min(usable_cores(), threads or usable_cores()) if count == "auto" else int(count)  # never more threads than --threads
    per_stream = max(1, (threads or usable_cores()) // count)
    sessions = [session(artifact, per_stream) for _ in range(count)]
    feed = input_feed(sessions[0], x)
    began = time.perf_counter()
    for sess in sessions:  # each session's first (cold) run, before they share the cores
        sess.run(None, feed)
    warm, _ = _drive(sessions, feed, lambda done, started: warmed(done + count, began))
    warm_s = time.perf_counter() - began
    with gc_paused():
        latencies, elapsed = _drive(sessions, feed, finished)
    return {
        "warmup": {"iters": count + len(warm), "seconds": round(warm_s, 4)},
        "samples_s": latencies,
        "images_per_s": len(latencies) * x.shape[0] / elapsed,
        "streams": count,
        "requests": count,
        "threads": count * per_stream,
        "completed": len(latencies),
        "seconds": round(elapsed, 4),
    }
