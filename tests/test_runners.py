"""Every runner against a bare call of its own runtime: same numbers, results that stay the caller's own.

The runners skip per-call copies for speed (OpenVINO and ExecuTorch keep the caller's array bound while
it is passed again, and read the logits out of memory the next call overwrites), so these tests pin
what that must not break: equality with the runtime used plainly, a first result that survives a second
call, the same array refilled in place between calls (what bench does), and inputs that must be
converted first (float64, non-contiguous, read-only). Speed is measured by scripts/harness_overhead.py,
never here.
"""

from __future__ import annotations

import numpy as np
import pytest

from partialnet.errors import Unavailable
from partialnet.runtimes.table import availability

IMGSZ = 64
RUNTIMES = ("pytorch", "onnxruntime", "openvino", "executorch", "litert")
SUFFIXES = {"pytorch": ".deploy.pt", "onnxruntime": ".onnx", "openvino": ".xml", "executorch": ".pte", "litert": ".tflite"}


SHARED = {"onnxruntime": "digits_onnx", "executorch": "digits_pte", "litert": "digits_tflite"}  # the session's exports (conftest), made once per run


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory, request):
    """T0 at 64x64 in each format, exported on first use (or taken from the session's) and shared by the module."""
    folder, built = tmp_path_factory.mktemp("runners"), {}

    def get(runtime: str):
        if runtime not in built and runtime in SHARED and not availability(runtime, "cpu"):
            shared = request.getfixturevalue(SHARED[runtime])
            built[runtime] = shared[0] if isinstance(shared, tuple) else shared
        if runtime not in built:
            built[runtime] = _export(runtime, folder / f"t0{SUFFIXES[runtime]}")
        if isinstance(built[runtime], str):
            pytest.skip(built[runtime])
        return built[runtime]

    return get


def _export(runtime: str, path):
    """The artifact's path, or why this machine cannot make or run it (remembered, so asked once)."""
    from partialnet import api

    reason = availability(runtime, "cpu")
    if reason:
        return f"{runtime}: {reason}"
    try:
        if runtime == "pytorch":
            api.fold_checkpoint("partialnet_t0", output=path, imgsz=(IMGSZ, IMGSZ))
        else:
            api.export("partialnet_t0", runtime, api.ExportOptions(imgsz=(IMGSZ, IMGSZ)), output=path, checks=api.VerifyOptions(samples=1))
    except Unavailable as exc:  # the runtime is here but its exporter's extra is not
        return f"{runtime}: {exc}"
    return path


@pytest.fixture(params=RUNTIMES)
def pair(request, artifacts):
    """(prepared runner, bare inference) for one runtime on the same artifact; the runner closed after."""
    runtime = request.param
    path = artifacts(runtime)
    runner = _runner(runtime, path)
    runner.prepare()
    yield runner, BARE[runtime](path)
    runner.close()


def _runner(runtime: str, path):
    # Default threads: a thread count would be set process-wide for torch and ExecuTorch (whose pool must
    # not be reset once another test has loaded a method).
    if runtime == "pytorch":
        from partialnet.folding import load_deploy
        from partialnet.runtimes.torch_eager import TorchRunner

        return TorchRunner(load_deploy(path)[0])
    from partialnet.runtimes.table import artifact_runner

    return artifact_runner(runtime, path)


def _bare_pytorch(path):
    import torch

    from partialnet.folding import load_deploy

    model = load_deploy(path)[0].eval()

    def infer(x):
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return infer


def _bare_onnxruntime(path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def _bare_openvino(path):
    from partialnet.runtimes.openvino import core

    # The runner's settings: without the f32 pin a bf16-capable CPU computes in bf16.
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}
    compiled = core().compile_model(str(path), "CPU", config)
    return lambda x: compiled(x)[0]


def _bare_executorch(path):
    import torch
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return lambda x: method.execute([torch.from_numpy(x)])[0].numpy()


def _bare_litert(path):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    into, out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def infer(x):
        interpreter.set_tensor(into, x)
        interpreter.invoke()
        return interpreter.get_tensor(out)

    return infer


BARE = {"pytorch": _bare_pytorch, "onnxruntime": _bare_onnxruntime, "openvino": _bare_openvino,
        "executorch": _bare_executorch, "litert": _bare_litert}


def images(seed: int, n: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, IMGSZ, IMGSZ), dtype=np.float32)


def same(result: np.ndarray, expected: np.ndarray) -> None:
    """The runner's logits are the bare runtime's, bit for bit: same engine, same settings, same input."""
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_array_equal(result, expected)


def test_runner_equals_its_bare_runtime(pair):
    runner, bare = pair
    x = images(0)
    same(runner.infer(x), bare(x))
    assert runner.precision == "fp32"


def test_a_result_survives_the_next_call(pair):
    runner, bare = pair
    x1, x2 = images(1), images(2)
    first = runner.infer(x1)
    kept = first.copy()
    second = runner.infer(x2)
    np.testing.assert_array_equal(first, kept)  # not a view of a buffer the second call wrote into
    assert not np.allclose(first, second)
    same(second, bare(x2))


def test_the_same_array_refilled_in_place_is_read_afresh(pair):
    runner, bare = pair
    x = images(3)
    first = runner.infer(x)
    x[...] = images(4)  # what a capture loop does with one pre-allocated buffer
    second = runner.infer(x)
    assert not np.allclose(first, second)
    same(second, bare(images(4)))
    same(runner.infer(images(3)), first)  # a new array after the refilled one


@pytest.mark.parametrize("form", ["float64", "non-contiguous", "read-only", "float64 non-contiguous"])
def test_inputs_needing_conversion_give_the_float32_result(pair, form):
    runner, bare = pair
    x = images(5)
    given = x
    if "non-contiguous" in form:  # an NHWC buffer seen as NCHW: the values of x, other strides
        given = np.ascontiguousarray(given.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
        assert not given.flags.c_contiguous
    if "float64" in form:
        given = given.astype(np.float64)
    if form == "read-only":
        given = x.copy()
        given.flags.writeable = False
    expected = bare(x)
    same(runner.infer(given), expected)
    same(runner.infer(given), expected)  # and again: whatever the runner bound or converted is still right
    same(runner.infer(x), expected)


def test_the_pytorch_runner_never_hands_torch_a_read_only_array(monkeypatch):
    """torch warns on a read-only view ("The given NumPy array is not writable", once per process, so a
    warnings check would depend on test order): the runner copies that form, and only that one."""
    import torch

    from partialnet.runtimes.torch_eager import TorchRunner

    seen = []
    real = torch.from_numpy
    monkeypatch.setattr(torch, "from_numpy", lambda array: seen.append(array.flags.writeable) or real(array))
    model = torch.nn.Conv2d(3, 4, 1)
    frozen = images(2, n=2)
    frozen.flags.writeable = False
    with TorchRunner(model, threads=1) as runner:
        runner.infer(frozen)
        runner.infer(images(3, n=2))
    assert seen == [True, True]
