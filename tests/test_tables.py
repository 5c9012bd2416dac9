"""The two tables own every backend: a row says all a command needs, and nothing else names a backend."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from partialnet.exporters import contract
from partialnet.exporters.formats import FORMATS, exporter_of
from partialnet.runtimes import BaseRunner
from partialnet.runtimes.table import RUNTIMES, availability, get_runtime, runner_class, runtime_module

PACKAGE = Path(__file__).resolve().parents[1] / "partialnet"
TABLES = {PACKAGE / "runtimes" / "table.py", PACKAGE / "exporters" / "formats.py"}
NAMES = {n for r in RUNTIMES.values() for n in (r.name, *r.aliases)} | {n for f in FORMATS.values() for n in (f.name, *f.aliases)}
# A backend's own modules may name themselves (a version record, a log message): they are the row's module.
OWN = {PACKAGE / "runtimes" / f"{r.module}.py" for r in RUNTIMES.values()} | {PACKAGE / "exporters" / f"{f.exporter}.py" for f in FORMATS.values()}


def _names_a_backend(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lower() in NAMES


def _is_sys_modules(node) -> bool:
    """`"torch" in sys.modules` asks whether a module was imported, not which backend runs."""
    return isinstance(node, ast.Attribute) and node.attr == "modules" and isinstance(node.value, ast.Name) and node.value.id == "sys"


def test_no_module_outside_the_tables_branches_on_a_backend_name():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in TABLES:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                if any(_names_a_backend(s) for s in sides) and not any(_is_sys_modules(s) for s in sides):
                    offenders.append(f"{where} compares with a backend name")
            elif isinstance(node, ast.Dict) and path not in OWN and any(_names_a_backend(k) for k in node.keys if k is not None):
                offenders.append(f"{where} maps backend names")
            elif isinstance(node, ast.arguments) and path not in OWN:
                if any(_names_a_backend(d) for d in [*node.defaults, *node.kw_defaults] if d is not None):
                    offenders.append(f"{where} defaults to a backend")
    assert offenders == [], offenders


def test_private_names_do_not_cross_subpackages():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("partialnet."):
                there = node.module.split(".")[1]
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private and there != here:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)} imports {', '.join(private)} from {node.module}")
    assert offenders == [], offenders


def test_every_runtime_row_is_complete():
    for name, row in RUNTIMES.items():
        runner = runner_class(name)
        assert issubclass(runner, BaseRunner) and runner.name == name, name
        assert callable(getattr(runner, "from_spec")), name
        assert get_runtime(name) is row and all(get_runtime(a) is row for a in row.aliases)
        assert all(f in FORMATS for f in row.formats), name
        assert not row.streams or callable(getattr(runtime_module(name), "streams", None)), name
        if any(d != "cpu" for d in row.devices):
            assert callable(getattr(runtime_module(name), "device_reason", None)), f"{name} runs beyond the CPU but cannot say why not"
        assert row.worker_import and row.runs in ("deploy", "built", "artifact")
        for device in row.devices:
            reason = availability(name, device)
            assert reason is None or (isinstance(reason, str) and reason), (name, device)


def test_every_format_module_keeps_the_exporter_contract():
    for name, fmt in FORMATS.items():
        assert contract.missing(exporter_of(fmt), fmt.fallback) == [], name
        assert fmt.runtime in RUNTIMES, name
        assert importlib.import_module(f"partialnet.exporters.{fmt.exporter}") is exporter_of(fmt)


def test_runners_are_context_managers(tmp_path):
    """`with runner:` prepares and closes, for every artifact runner alike (ONNX Runtime here: core)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])],
    )
    path = tmp_path / "identity.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), path)
    with runner_class("onnxruntime").from_spec({"artifact": str(path), "threads": 1}) as runner:
        out = runner.infer(np.ones((1, 3), np.float32))
        assert runner.precision == "fp32" and runner.threads == 1
    assert runner.session is None and out.tolist() == [[1.0, 1.0, 1.0]]


def test_cuda_is_ruled_out_without_importing_a_runtime_where_no_gpu_driver_is_loaded(monkeypatch):
    """A target's probe asks every runtime about CUDA: torch's import alone was 1.4 s of it on a CPU machine."""
    import subprocess
    import sys

    from partialnet import machine

    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(machine.os.path, "exists", lambda p: False)
    assert "no GPU driver" in machine.no_cuda_reason() and "no GPU driver" in availability("pytorch", "cuda")
    monkeypatch.setattr(machine.os.path, "exists", lambda p: p == "/dev/nvidiactl")
    assert machine.no_cuda_reason() is None  # a driver: the runtime itself says whether it sees the GPU
    monkeypatch.setattr(sys, "platform", "darwin")
    assert machine.no_cuda_reason() == "no CUDA on macOS"
    monkeypatch.undo()
    if machine.no_cuda_reason():  # this machine: the probe answers without torch
        probe = "import sys; from partialnet.remote import agent; agent.probe(); print('torch' in sys.modules)"
        assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "False"
