"""Fixtures shared by the tests: the T0 golden weights and an in-process CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import DIGITS_INT8_CALIB, CliResult, fixture_path, run_cli, two_copies


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
def t0_onnx_export(tmp_path_factory) -> tuple[Path, CliResult]:
    """`export partialnet_t0 --imgsz 64` (random weights, static batch 1) once per run: the file, and what the
    command said (its stage lines are a test's subject)."""
    out = tmp_path_factory.mktemp("t0_onnx") / "t0.onnx"
    result = run_cli("export", "partialnet_t0", "--imgsz", "64", "--samples", "2", "-o", out)
    assert result.code == 0, result.err
    return out, result


@pytest.fixture(scope="session")
def t0_onnx(t0_onnx_export) -> Path:
    """The session's T0 ONNX, read (never rewritten) by the tests that bench or run an exported artifact."""
    return t0_onnx_export[0]


@pytest.fixture(scope="session")
def digits_int8_onnx(digits_ckpt, tmp_path_factory):
    """The digits T0 as INT8 ONNX at 64x64 (32 calibration images) once per run: (path, export result), read
    (never rewritten) by the INT8 tests, the INT8 tools' tests and the bench of a given INT8 artifact."""
    from partialnet import api

    out = tmp_path_factory.mktemp("int8") / "q.onnx"
    options = api.ExportOptions(imgsz=(64, 64), int8=True, data="digits", calib_size=DIGITS_INT8_CALIB)
    return out, api.export(str(digits_ckpt), "onnx", options, output=out, checks=api.VerifyOptions(samples=2))


@pytest.fixture(scope="session")
def digits_all(digits_ckpt, tmp_path_factory) -> DigitsAll:
    """`export --format all` of the digits T0 at 64x64 once per run (one load, one fold, every format), from a
    checkpoint holding the trained weights beside an untrained copy, picked by --weights. Its ExecuTorch and
    LiteRT files are the session's (`digits_pte`, `digits_tflite`): their lowerings are the slowest exports here."""
    folder = tmp_path_factory.mktemp("all")
    ckpt = two_copies(digits_ckpt, folder / "two_copies.pt")
    out = folder / "all"
    result = run_cli("export", ckpt, "--format", "all", "--imgsz", "64", "-o", out, "--samples", "2", "--json", "--weights", "state_dict_ema")
    assert result.code == 0, result.err
    return DigitsAll(ckpt, out, result)


def _shared_file(all_formats: DigitsAll, suffix: str) -> tuple[Path, dict]:
    path = all_formats.folder / f"{all_formats.ckpt.stem}{suffix}"
    return path, json.loads(path.with_name(path.name + ".json").read_text())


@pytest.fixture(scope="session")
def digits_pte(request) -> tuple[Path, dict]:
    """The ExecuTorch program of `digits_all` (verify it with `--ref digits_all.ckpt`): (path, its manifest)."""
    pytest.importorskip("executorch", reason="ExecuTorch export needs pip install 'partialnet[executorch]'")
    return _shared_file(request.getfixturevalue("digits_all"), ".pte")


@pytest.fixture(scope="session")
def digits_tflite(request) -> Path:
    """The LiteRT file of `digits_all` (verify it with `--ref digits_all.ckpt`)."""
    pytest.importorskip("litert_torch", reason="LiteRT export needs pip install 'partialnet[litert]'")
    return _shared_file(request.getfixturevalue("digits_all"), ".tflite")[0]


@pytest.fixture(scope="session")
def t0_state_dict() -> dict[str, torch.Tensor]:
    return torch.load(fixture_path("partialnet_t0_random.pth"), weights_only=True)


@dataclass(frozen=True)
class DigitsAll:
    ckpt: Path  # the two-copies checkpoint every file was exported from (the --ref that verifies them)
    folder: Path  # the group of files, one (or a pair) per format, each with its manifest
    result: CliResult  # the command's exit code, its JSON status table and its stage log


@pytest.fixture
def cli():
    """Run the real entry point in-process: exit code, stdout and stderr, as a user would see them."""
    return run_cli
