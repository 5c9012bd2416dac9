"""The GPU half: PyTorch on CUDA (fp32 exact, fp16/bf16 close, channels_last, CUDA graphs) and GPU bench rows.

These run where a CUDA GPU is (`pytest -m gpu`, which scripts/gpu_check.py runs on a lent H200); the
refusals at the bottom run everywhere.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from partialnet.errors import BadInput
from partialnet.runtimes.torch_eager import TorchRunner

CUDA = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (scripts/gpu_check.py runs these on a lent one)")


def _deploy(variant: str = "partialnet_t0", imgsz: int = 64):
    from partialnet.checkpoint import resolve
    from partialnet.folding import fold

    model, _ = resolve(variant)
    deploy, _ = fold(model, (imgsz, imgsz))
    return deploy


def _input(batch: int = 4, imgsz: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, imgsz, imgsz), dtype=np.float32)


def _logits(runner: TorchRunner, x: np.ndarray) -> np.ndarray:
    runner.prepare()
    try:
        return runner.infer(x)
    finally:
        runner.close()


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="module")
def t0_deploy_and_cpu_logits():
    deploy = _deploy()
    x = _input()
    return deploy, x, _logits(TorchRunner(deploy, threads=1), x)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_fp32_on_the_gpu_is_the_cpu_result(t0_deploy_and_cpu_logits, channels_last):
    deploy, x, cpu = t0_deploy_and_cpu_logits
    gpu = _logits(TorchRunner(deploy, device="cuda", channels_last=channels_last), x)
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    assert np.abs(gpu - cpu).max() <= 1e-4 * max(1.0, np.abs(cpu).max())  # TF32 is off: fp32 round-off only
    assert not torch.backends.cudnn.allow_tf32


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_stay_close_to_fp32(t0_deploy_and_cpu_logits, precision):
    deploy, x, cpu = t0_deploy_and_cpu_logits
    runner = TorchRunner(deploy, device="cuda", precision=precision, channels_last=True)
    low = _logits(runner, x)
    assert runner.precision == precision and np.isfinite(low).all()
    assert _cosine(low, cpu) >= (0.999 if precision == "fp16" else 0.99)


@pytest.mark.gpu
@needs_gpu
def test_cuda_graph_replays_the_eager_result_and_follows_a_new_input(t0_deploy_and_cpu_logits):
    deploy, x, cpu = t0_deploy_and_cpu_logits
    runner = TorchRunner(deploy, device="cuda", cuda_graph=True)
    runner.prepare()
    try:
        first = runner.infer(x)
        again = runner.infer(x)  # replayed on the resident input
        other = _input(seed=1)
        moved = runner.infer(other)  # a new array is copied into the captured input buffer
    finally:
        runner.close()
    assert np.abs(first - cpu).max() <= 1e-4 * max(1.0, np.abs(cpu).max())
    assert np.array_equal(first, again)
    reference = _logits(TorchRunner(deploy, threads=1), other)
    assert np.abs(moved - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())


@pytest.mark.gpu
def test_the_runner_leaves_the_callers_model_as_it_was(t0_deploy_and_cpu_logits):
    """Module.to converts in place: a bf16 run once left bf16-rounded weights behind for the next fp32 one."""
    deploy, x, cpu = t0_deploy_and_cpu_logits
    _logits(TorchRunner(deploy, device="cuda" if CUDA else "cpu", precision="bf16", channels_last=True), x)
    weight = next(deploy.parameters())
    assert weight.device.type == "cpu" and weight.dtype == torch.float32
    assert np.array_equal(_logits(TorchRunner(deploy, threads=1), x), cpu)


@pytest.mark.gpu
@needs_gpu
def test_a_gpu_bench_row_records_gpu_memory_and_fp16_parity(tmp_path, cli):
    """One worker (each costs seconds of CUDA start-up): fp16, channels_last, CUDA graphs together."""
    out = tmp_path / "gpu.json"
    result = cli("bench", "partialnet_t0", "--device", "cuda", "--runtime", "pytorch", "--protocol", "quick", "--imgsz", "64",
                 "--batch", "8", "--precision", "fp16", "--channels-last", "--cuda-graphs", "--json", out)
    assert result.code == 0, result.err
    assert "GPU MB" in result.out
    data = json.loads(out.read_text())
    assert data["machine"]["gpus"] and "resident on the GPU" in data["timed_region"] and data["settings"]["cuda_graphs"]
    (row,) = data["rows"]
    assert row["status"] == "ok" and row["device"] == "cuda" and row["precision"] == "fp16"
    memory = row["memory"]
    assert 0 < memory["gpu_timed_peak_allocated_mb"] <= memory["gpu_peak_allocated_mb"] <= memory["gpu_peak_reserved_mb"]
    assert row["parity_max_abs"] <= 0.02  # random T0 logits are ~0.2 at most; fp16 is about 1e-3 off (CPU fp16 measured)


@pytest.mark.gpu
@needs_gpu
def test_claims_with_cuda_graphs_time_the_gpus_own_work(tmp_path, cli):
    """One A/B worker: both sides replayed as CUDA graphs, and the result says it is not the papers' eager protocol."""
    out = tmp_path / "claims.json"
    result = cli("claims", "--device", "cuda", "--sizes", "t0", "--runtime", "pytorch", "--protocol", "quick", "--imgsz", "64",
                 "--cuda-graphs", "--json", out, "--md", tmp_path / "claims.md")
    assert result.code == 0, result.err
    data = json.loads(out.read_text())
    assert data["cuda_graphs"] is True and "CUDA graph" in data["timed_model"]
    assert "replay each forward as one CUDA graph" in (tmp_path / "claims.md").read_text()
    (cell,) = data["measurements"]
    assert cell["status"] == "ok" and cell["latency_ratio"] > 0


# Everywhere: GPU-only options are refused up front, in one line, with exit 2.


def test_cuda_graphs_on_the_cpu_are_refused(cli):
    result = cli("bench", "--cuda-graphs", "--protocol", "quick")
    assert result.code == 2 and "--cuda-graphs needs --device cuda" in result.err and "Traceback" not in result.err


def test_claims_with_cuda_graphs_on_the_cpu_are_refused(cli):
    result = cli("claims", "--cuda-graphs", "--protocol", "quick", "--sizes", "t0")
    assert result.code == 2 and "--cuda-graphs needs --device cuda" in result.err and "Traceback" not in result.err


@pytest.mark.skipif(CUDA, reason="this machine has a GPU: the claims run there")
def test_gpu_claims_without_a_gpu_say_why_each_runtime_cannot(cli):
    result = cli("claims", "--device", "cuda", "--sizes", "t0", "--protocol", "quick")
    assert result.code == 3 and "no runtime can run on cuda here (onnxruntime: " in result.err and "; pytorch: " in result.err, result.err


def test_cuda_graphs_with_compile_are_refused(cli):
    result = cli("bench", "--device", "cuda", "--cuda-graphs", "--compile", "--protocol", "quick")
    assert result.code == 2 and "exclude each other" in result.err


def test_the_runner_refuses_cuda_graphs_off_the_gpu():
    with pytest.raises(BadInput, match="CUDA graphs need --device cuda"):
        TorchRunner(torch.nn.Identity(), cuda_graph=True)
