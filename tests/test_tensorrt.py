"""TensorRT: without TensorRT and a GPU (here, CI) everything but the engine, exit 3; with them, a real engine."""

from __future__ import annotations

import importlib.util
import json
import shlex
import subprocess
from pathlib import Path

import pytest

from partialnet.exporters.tensorrt import unavailable_reason

REASON = unavailable_reason()


def _trtexec_line(script: str) -> list[str]:
    line = next(row for row in script.splitlines() if row.startswith("trtexec "))
    return shlex.split(line.replace('"${typed[@]}"', ""))


@pytest.mark.gpu
@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_without_tensorrt_the_engine_is_prepared_not_claimed(tmp_path, cli):
    out = tmp_path / "t0.engine"
    result = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out, "--samples", "2")
    assert result.code == 3, result.err
    assert "no TensorRT engine built" in result.err and "bash " in result.err and "Traceback" not in result.err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["t0.build_engine.sh", "t0.trt.onnx", "t0.trt.onnx.json"]
    assert not any(n.endswith((".engine", ".plan")) for n in names)
    script = (tmp_path / "t0.build_engine.sh").read_text()
    assert (tmp_path / "t0.build_engine.sh").stat().st_mode & 0o100  # the user runs it
    argv = _trtexec_line(script)
    flags = dict(a.split("=", 1) for a in argv[1:] if "=" in a)
    assert flags["--onnx"] == "t0.trt.onnx" and flags["--saveEngine"] == "t0.engine"
    assert flags["--memPoolSize"] == "workspace:4096M" and flags["--timingCacheFile"] == "t0.timing.cache"
    assert "--minShapes" not in flags  # static shapes need no profile
    assert "polygraphy run t0.engine --model-type engine --trt" in script
    manifest = json.loads((tmp_path / "t0.trt.onnx.json").read_text())
    assert manifest["parity"]["passed"] and manifest["graph"]["engine"] == "not built"
    assert manifest["metadata"]["precision"] == "fp32"
    _an_engine_built_on_a_target_gets_a_manifest_of_its_own(manifest, tmp_path)


def _an_engine_built_on_a_target_gets_a_manifest_of_its_own(prepared: dict, tmp_path) -> None:
    """`export --target` builds the engine there from the ONNX prepared here: the engine's manifest keeps the
    prepared one's record of the source and parity but the engine's own sha256, or verify would refuse it."""
    from partialnet.errors import CheckFailed
    from partialnet.exporters.formats import check_manifest
    from partialnet.remote.engine import _engine_files

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"stand-in engine")
    sidecar = tmp_path / "model.engine.json"
    sidecar.write_text(json.dumps(prepared))
    with pytest.raises(CheckFailed, match="model.engine hashes to another"):
        check_manifest(engine)
    sidecar.write_text(json.dumps({**prepared, **_engine_files(engine, "t0.engine")}))
    record = check_manifest(engine)
    assert record["artifact"] == "t0.engine" and record["bytes"] == 15 and record["source"] == prepared["source"]


@pytest.mark.slow
@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_dynamic_fp16_ready_onnx_carries_its_precision_and_profile(tmp_path, cli):
    import onnx

    out = tmp_path / "d.engine"
    args = ["export", "partialnet_t0", "-f", "tensorrt", "--imgsz", "64", "--dynamic", "--batch", "4", "--max-batch", "8"]
    result = cli(*args, "--half", "--workspace", "1.5", "-o", out, "--samples", "2")
    assert result.code == 3, result.err
    flags = dict(a.split("=", 1) for a in _trtexec_line((tmp_path / "d.build_engine.sh").read_text())[1:] if "=" in a)
    assert flags["--minShapes"] == "images:1x3x64x64"
    assert flags["--optShapes"] == "images:4x3x64x64" and flags["--maxShapes"] == "images:8x3x64x64"
    assert flags["--memPoolSize"] == "workspace:1536M"
    proto = onnx.load(str(tmp_path / "d.trt.onnx"))
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # strongly typed: fp16 in the graph


@pytest.mark.slow
@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_trt_int8_ready_onnx_is_symmetric_qdq(digits_ckpt, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from partialnet import api
    from partialnet.errors import Unavailable

    out = tmp_path / "q.engine"
    with pytest.raises(Unavailable) as info:
        api.export(str(digits_ckpt), "trt", api.ExportOptions(imgsz=(64, 64), int8=True, data="digits", calib_size=64), output=out,
                   checks=api.VerifyOptions(samples=2))
    assert info.value.details["parity"]["accuracy"]["delta_points"] >= -1.5
    proto = onnx.load(str(tmp_path / "q.trt.onnx"))
    inits = {i.name: i for i in proto.graph.initializer}
    zero_points = [numpy_helper.to_array(inits[n.input[2]]) for n in proto.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # TensorRT: int8, zero point 0


FAKE_TOOL = """#!/usr/bin/env bash
# Records its argv, one argument per line, and fakes what the build script needs of the real tool.
{ printf '%s\\n' "$(basename "$0")"; printf '[%s]\\n' "$@"; } >> "$CALLS"
if [ "${1:-}" = "--help" ]; then echo "TensorRT v110000"; fi
"""


def _run_build_script(tmp_path, script: Path) -> list[str]:
    """Run a generated build script as a user would, with fake trtexec/polygraphy that record their argv."""
    tools = tmp_path / "fake-tools"
    tools.mkdir(exist_ok=True)
    for name in ("trtexec", "polygraphy"):
        (tools / name).write_text(FAKE_TOOL)
        (tools / name).chmod(0o755)
    calls = tmp_path / "calls.txt"
    env = {"PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls), "HOME": str(tmp_path)}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return calls.read_text().splitlines()


@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_a_name_with_a_newline_is_refused_before_any_work(tmp_path, cli):
    out = tmp_path / "n\ntouch PWNED\nx.engine"
    result = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out)
    assert result.code == 2 and "control characters (\\n)" in result.err and "Traceback" not in result.err
    assert "fold" not in result.err and "\ntouch" not in result.err  # refused before folding; the name printed escaped
    assert list(tmp_path.iterdir()) == []


HOSTILE_ENGINE_NAMES = ["o ;touch PWNED; x.engine", "a$(touch PWNED)`touch PWNED`'q\"x.engine", "--plugins=x.engine"]


@pytest.mark.slow
@pytest.mark.skipif(REASON is None, reason="TensorRT and a GPU are here: the engine path runs instead")
def test_names_never_become_code_or_options(tmp_path, cli):
    """A real export under the first name (its hint is one word to paste); every name's script, that one's and
    the writer's for the others (what a name becomes is decided in build_script alone), run with fake tools."""
    from partialnet.exporters.options import ExportOptions
    from partialnet.exporters.tensorrt import build_script, script_path

    for i, name in enumerate(HOSTILE_ENGINE_NAMES):
        folder = tmp_path / f"n{i}"
        folder.mkdir()
        stem = name[: -len(".engine")]
        script = folder / f"{stem}.build_engine.sh"
        if i == 0:
            result = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", folder / name, "--samples", "2")
            assert result.code == 3, result.err
            printed = result.err.strip().splitlines()[-1].split("on the GPU machine run: ", 1)[1]
            assert shlex.split(printed) == ["bash", str(script)]  # one word, pasted
        else:
            assert script_path(folder / name) == script
            script.write_text(build_script(folder / name, ExportOptions(imgsz=(64, 64)), {"partialnet_version": "0.1.0", "variant": "partialnet_t0"}))
        calls = _run_build_script(folder, script)
        assert not (folder / "PWNED").exists()
        word = f"./{stem}" if stem.startswith("-") else stem
        assert f"[--onnx={word}.trt.onnx]" in calls and f"[--saveEngine={word}.engine]" in calls
        polygraphy = calls.index("polygraphy")
        assert calls[polygraphy + 1 : polygraphy + 3] == ["[run]", f"[{word}.trt.onnx]"]  # positional, never an option
        comments = [line for line in script.read_text().splitlines() if line.startswith("# Builds")]
        assert comments == [f"# Builds {shlex.quote(word + '.engine')} from {shlex.quote(word + '.trt.onnx')} "
                            "(the precision is in the graph: strongly typed), then checks the"]


def test_formats_lists_every_format_with_what_it_can_do_here(cli):
    result = cli("formats", "--json")
    assert result.code == 0
    rows = {r["format"]: r for r in json.loads(result.out)}
    assert set(rows) >= {"onnx", "openvino", "trt"}
    assert rows["onnx"]["export"] == "yes" and rows["onnx"]["extra"] is None
    assert "--workspace" in rows["trt"]["options"] and "--workspace" not in rows["onnx"]["options"]
    assert "--[no-]simplify" in rows["onnx"]["options"] and not any("simplify" in o for o in rows["openvino"]["options"])  # a pair is listed whole
    if REASON:
        assert rows["trt"]["export"] == "prepares" and REASON in rows["trt"]["export_reason"]
    table = cli("formats")
    assert table.code == 0 and "trt" in table.out and "tensorrt, engine" in table.out


GPU = REASON is None and importlib.util.find_spec("tensorrt") is not None


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason=f"needs TensorRT and a CUDA GPU: {REASON}")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_is_built_verified_and_benchable_on_a_gpu(precision, tmp_path, cli):
    out = tmp_path / f"{precision}.engine"
    extra = ["--half"] if precision == "fp16" else []
    result = cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out, *extra)
    assert result.code == 0, result.err
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    assert manifest["graph"]["built_for"]["precision"] == precision and manifest["parity"]["passed"]
    assert cli("verify", out, "--ref", "partialnet_t0").code == 0
    bench = cli("bench", out, "--device", "cuda", "--runtime", "tensorrt", "--protocol", "quick")
    assert bench.code == 0 and "tensorrt" in bench.out


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason=f"needs TensorRT and a CUDA GPU: {REASON}")
def test_engine_for_another_gpu_is_refused_with_the_reason(tmp_path, cli):
    out = tmp_path / "t.engine"
    assert cli("export", "partialnet_t0", "-f", "trt", "--imgsz", "64", "-o", out).code == 0
    manifest_path = out.with_name(out.name + ".json")
    manifest = json.loads(manifest_path.read_text())
    manifest["graph"]["built_for"]["gpu"] = "Some Other GPU"
    manifest_path.write_text(json.dumps(manifest))
    result = cli("verify", out, "--ref", "partialnet_t0")
    assert result.code == 3 and "engine built for gpu Some Other GPU" in result.err


def test_the_build_script_writes_the_manifest_verify_and_bench_read(tmp_path):
    """An engine built by the script had no manifest beside it, so partialnet's own verify and bench refused it."""
    import ast
    import sys

    from partialnet.exporters.options import ExportOptions
    from partialnet.exporters.tensorrt import build_script, read_io, script_record

    options, metadata = ExportOptions(imgsz=(64, 96), half=True), {"partialnet_version": "0.1.0", "variant": "partialnet_t0", "imgsz": "64,96"}
    script = tmp_path / "d.build_engine.sh"
    script.write_text(build_script(tmp_path / "d.engine", options, metadata))
    embedded = next(line for line in script.read_text().splitlines() if line.startswith("record = json.loads("))
    record = json.loads(ast.literal_eval(embedded.removeprefix("record = json.loads(").removesuffix(")")))
    assert record == script_record(options, metadata) and record["built_for"]["tensorrt"] is None  # filled on the GPU machine
    record["built_for"].update(tensorrt="11.0.0", gpu="NVIDIA H200", compute_capability="9.0")  # as the script's Python part fills it
    (tmp_path / "d.engine").write_bytes(b"engine")
    (tmp_path / "d.engine.json").write_text(json.dumps(record))
    io = read_io(tmp_path / "d.engine")
    assert (io["imgsz"], io["batch"], io["precision"], io["built_for"]["gpu"]) == ((64, 96), 1, "fp16", "NVIDIA H200")
    # run here (fake trtexec, this Python with a stand-in tensorrt module: TensorRT cannot be installed here): torch sees no GPU,
    # so the script says why it wrote no manifest and goes on to its checks
    (tmp_path / "d.engine.json").unlink()
    tools, stubs = tmp_path / "fake-tools", tmp_path / "stubs"
    for folder in (tools, stubs):
        folder.mkdir()
    for name in ("trtexec", "polygraphy"):
        (tools / name).write_text(FAKE_TOOL)
        (tools / name).chmod(0o755)
    (tools / "python3").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')  # this environment's, with torch
    (tools / "python3").chmod(0o755)
    (stubs / "tensorrt.py").write_text("__version__ = '11.0.0'\n")
    env = {"PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(tmp_path / "calls.txt"), "HOME": str(tmp_path), "PYTHONPATH": str(stubs)}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "torch sees no CUDA GPU" in done.stderr and "no manifest written beside the engine" in done.stderr, done.stderr
    assert not (tmp_path / "d.engine.json").exists() and "polygraphy" in (tmp_path / "calls.txt").read_text()
