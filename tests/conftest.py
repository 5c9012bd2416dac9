"""Fixtures shared by the tests: the T0 golden weights and an in-process CLI runner."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from helpers import DIGITS_INT8_CALIB, fixture_path


DIGITS_EPOCHS = 4  # the test schedule: T0 is past 98 % here; the bar is 95 %


@pytest.fixture(scope="session")
def digits_ckpt(tmp_path_factory):
    """One T0 digits model per test run, trained through the API the `digits` command uses."""
    pytest.importorskip("sklearn", reason="the digits yardstick needs scikit-learn (pip install 'partialnet[digits]')")
    from partialnet import api

    path = tmp_path_factory.mktemp("digits") / "digits_t0.pt"
    result = api.train_digits(path, "partialnet_t0", epochs=DIGITS_EPOCHS, seed=0)
    assert result["top1"] >= 0.95, result
    return path


@pytest.fixture(scope="session")
def digits_onnx(digits_ckpt):
    """The digits T0 model exported to ONNX at 64x64 once per run (verify tests share it)."""
    from partialnet import api

    out = digits_ckpt.with_name("digits_t0.onnx")
    api.export(str(digits_ckpt), "onnx", api.ExportOptions(imgsz=(64, 64)), output=out, checks=api.VerifyOptions(samples=2))
    return out


@pytest.fixture(scope="session")
def t0_onnx(tmp_path_factory):
    """The random-weight PartialNet-T0 as ONNX at 64x64, static batch 1, once per run: read (never rewritten)
    by the tests that bench or run an exported artifact."""
    from partialnet import api

    out = tmp_path_factory.mktemp("t0_onnx") / "t0.onnx"
    api.export("partialnet_t0", "onnx", api.ExportOptions(imgsz=(64, 64)), output=out, checks=api.VerifyOptions(samples=2))
    return out


@pytest.fixture(scope="session")
def digits_int8_onnx(digits_ckpt, tmp_path_factory):
    """The digits T0 as INT8 ONNX at 64x64 (32 calibration images) once per run: (path, export result), read
    (never rewritten) by the INT8 tests, the INT8 tools' tests and the bench of a given INT8 artifact."""
    from partialnet import api

    out = tmp_path_factory.mktemp("int8") / "q.onnx"
    options = api.ExportOptions(imgsz=(64, 64), int8=True, data="digits", calib_size=DIGITS_INT8_CALIB)
    return out, api.export(str(digits_ckpt), "onnx", options, output=out, checks=api.VerifyOptions(samples=2))


@pytest.fixture(scope="session")
def digits_pte(digits_ckpt, tmp_path_factory):
    """The digits T0 lowered to ExecuTorch at 64x64 once per run (ExecuTorch's lowering is the slowest export
    here): (path, export result), shared by the ExecuTorch tests and the runner tests."""
    pytest.importorskip("executorch", reason="ExecuTorch export needs pip install 'partialnet[executorch]'")
    from partialnet import api

    out = tmp_path_factory.mktemp("pte") / "t0.pte"
    return out, api.export(str(digits_ckpt), "pte", api.ExportOptions(imgsz=(64, 64)), output=out, checks=api.VerifyOptions(samples=2))


@pytest.fixture(scope="session")
def digits_tflite(digits_ckpt, tmp_path_factory):
    """The digits T0 converted to LiteRT at 64x64 once per run, shared by the LiteRT and runner tests."""
    pytest.importorskip("litert_torch", reason="LiteRT export needs pip install 'partialnet[litert]'")
    from partialnet import api

    out = tmp_path_factory.mktemp("tflite") / "digits_t0.tflite"
    api.export(str(digits_ckpt), "litert", api.ExportOptions(imgsz=(64, 64)), output=out, checks=api.VerifyOptions(samples=2))
    return out


@pytest.fixture(scope="session")
def t0_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(fixture_path("partialnet_t0_random.pth"), weights_only=True)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the real entry point in-process: exit code, stdout and stderr, as a user would see them."""
    from partialnet.cli import run

    def invoke(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["partialnet", *map(str, args)])
        code = 0
        try:
            run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return invoke
