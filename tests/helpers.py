"""Paths and loaders shared by the tests (imported by name: tests/ is on sys.path, not a package)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("PARTIALNET_FIXTURES", ROOT / "tests" / "fixtures"))  # see tests/fixtures/README.md
SPEC = FIXTURES / "spec"
DIGITS_INT8_CALIB = 32  # calibration images for the session's shared INT8 export (conftest): enough for T0 at 64x64 to stay within the gates


def never_loaded_checkpoint(path: Path) -> Path:
    """A file that passes the commands' first look at a checkpoint (it begins as a torch.save zip does) and fails any
    load: a test that sees an option or output refused with it knows that was checked before the load."""
    path.write_bytes(b"PK\3\4" + b"\0" * 60)
    return path


def fixture_path(name: str) -> Path:
    path = FIXTURES / name
    if not path.exists():  # a failure, not a skip: the fixtures are part of the repository
        raise FileNotFoundError(f"test fixture {path} is missing (tests/fixtures/README.md lists what belongs there)")
    return path


def golden(variant: str) -> tuple[Path, torch.Tensor, torch.Tensor]:
    """(checkpoint path, input, reference logits) for a fixture variant such as 't0'."""
    ckpt = fixture_path(f"partialnet_{variant}_random.pth")
    io = np.load(fixture_path(f"partialnet_{variant}_io.npz"))
    return ckpt, reference_input(json.loads(str(io["meta"]))), torch.from_numpy(io["logits"])


def reference_input(meta: dict) -> torch.Tensor:
    """The reference run's input, drawn again as it was drawn (tests/fixtures/README.md) and checked byte for byte."""
    x = torch.randn(*meta["input_shape"], generator=torch.Generator().manual_seed(meta["input_seed"]))
    if hashlib.sha256(x.numpy().tobytes()).hexdigest() != meta["input_sha256"]:
        raise AssertionError(f"this torch ({torch.__version__}) no longer draws the reference input ({meta['input']}): "
                             "the golden logits are for that input; rebuild the fixtures (scripts/fixtures_from_shared.py)")
    return x


def to_dpconv(sd: dict[str, torch.Tensor], widths: dict[tuple[int, int], int], seed: int = 0) -> dict[str, torch.Tensor]:
    """A PartialNet state_dict rewritten as a DPConv (`auto_div`) checkpoint with the given widths.

    Every mixer's keys are replaced by the DPConv layout of the spec: a full square 3×3 weight, the gate,
    the Kronecker buffers and the learned width `one_channel` (`widths[(stage, block)]`, default C//4).
    """
    import math
    import re

    gen = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    blocks: dict[str, int] = {}
    for key, value in sd.items():
        m = re.match(r"^(stages\.(\d)\.blocks\.(\d+)\.spatial_mixing\.)", key)
        if not m:
            out[key] = value
            continue
        prefix = m.group(1)
        if prefix not in blocks:
            dim = sd[f"stages.{m.group(2)}.blocks.{m.group(3)}.mlp.0.weight"].shape[1]
            blocks[prefix] = dim
            stage, block = int(m.group(2)) // 2, int(m.group(3))
            out[prefix + "conv.weight"] = torch.randn(dim, dim, 3, 3, generator=gen) * 0.1
            out[prefix + "gate"] = torch.randn(int(math.log2(dim)), generator=gen)
            out[prefix + "I"] = torch.eye(2)
            out[prefix + "one"] = torch.ones(2, 2)
            out[prefix + "c_div"] = torch.tensor(4, dtype=torch.int32)
            out[prefix + "one_channel"] = torch.tensor(widths.get((stage, block), dim // 4), dtype=torch.int32)
    return out


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every norm, bias and bias table non-trivial values (as the fixtures do), so folds are tested."""
    gen = torch.Generator().manual_seed(seed)

    def rand(t, lo, hi):
        return torch.rand(t.shape, generator=gen) * (hi - lo) + lo

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(rand(m.running_var, 0.5, 2.0))
                m.weight.copy_(rand(m.weight, 0.5, 1.5))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.LayerNorm) and m.weight is not None:
                m.weight.copy_(rand(m.weight, 0.5, 1.5))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            elif isinstance(m, torch.nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.02)
            elif hasattr(m, "lookup_table_bias"):
                m.lookup_table_bias.copy_(torch.randn(m.lookup_table_bias.shape, generator=gen) * 0.5)
    return model.eval()


def t0_quick(variants) -> list:
    """Every variant for the full suite; only the T0s in the quick tier (`pytest -m "not slow"`)."""
    import pytest

    return [name if name.endswith("_t0") else pytest.param(name, marks=pytest.mark.slow) for name in variants]


def interruptible_popen(argv: list[str], **kwargs):
    """A child that Ctrl-C reaches as it reaches an interactive command, however the suite was started.

    A shell starts background jobs with SIGINT ignored, and a process that inherits SIG_IGN keeps it (as
    Python and nohup'd tools do): under `pytest &` a SIGINT test saw nothing happen (a 60 s timeout). A
    handler, unlike SIG_IGN, is reset to the default in a child, so Python's own handler is held while
    spawning (a preexec_fn would force fork() in a process that already runs library threads).
    """
    import signal
    import subprocess

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(argv, **kwargs)
    finally:
        signal.signal(signal.SIGINT, previous)


class CliResult:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    def json(self):
        return json.loads(self.out)


def exit_code(exc: SystemExit) -> int:
    return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)


def run_cli(*args) -> CliResult:
    """The real entry point in-process with its output captured, for session fixtures (capsys is per test)."""
    from partialnet.cli import run

    out, err, argv, code = io.StringIO(), io.StringIO(), sys.argv, 0
    sys.argv = ["partialnet", *map(str, args)]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run()
    except SystemExit as exc:
        code = exit_code(exc)
    finally:
        sys.argv = argv
    return CliResult(code, out.getvalue(), err.getvalue())


def two_copies(ckpt: Path, out: Path) -> Path:
    """`ckpt` rewritten with its trained weights as `state_dict_ema` beside an untrained `state_dict` (picked by --weights)."""
    from partialnet import create_model

    payload = torch.load(ckpt, weights_only=True)
    payload["state_dict_ema"], payload["state_dict"] = payload["state_dict"], create_model("partialnet_t0", num_classes=10).state_dict()
    torch.save(payload, out)
    return out
