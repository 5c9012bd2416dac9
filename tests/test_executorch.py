"""ExecuTorch (.pte) lowered to XNNPACK: exported, verified in ExecuTorch's own runtime, benchable here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("executorch", reason="ExecuTorch export needs pip install 'partialnet[executorch]'")


@pytest.mark.slow
def test_pte_is_verified_in_executorch_and_reports_delegation(digits_pte):
    out, result = digits_pte  # lowered in `export --format all`'s second process (conftest's digits_all)
    assert out.is_file() and out.with_name(out.name + ".json").is_file()
    parity = result["parity"]
    assert parity["candidate"] == "executorch" and parity["passed"]
    assert parity["cases"][0]["max_abs"] < 1e-4
    assert parity["accuracy"]["delta_points"] == 0
    delegation = result["graph"]["delegation"]
    assert delegation["nodes_delegated"] + delegation["nodes_portable"] == result["graph"]["nodes"]
    # splits as slices, LayerNorm as means, hardsigmoid in floats, proj with a static weight: XNNPACK takes all
    assert delegation["delegate"] == "XNNPACK" and delegation["portable_ops"] == {} and delegation["subgraphs"] == 1
    assert delegation["mac_share"] == 1.0 and delegation["node_share"] == 1.0
    assert result["options"]["batch"] == 1


@pytest.mark.slow
def test_verify_and_bench_run_the_pte_here(digits_pte, digits_all, cli, tmp_path):
    out, _ = digits_pte
    assert cli("verify", out, "--ref", digits_all.ckpt).code == 0
    result_path = tmp_path / "r.json"
    # no --runtime: a given .pte brings its runtime into the default set (which leaves ExecuTorch out for its export's cost)
    result = cli("bench", out, "--protocol", "quick", "--threads", "1", "--json", result_path)
    assert result.code == 0, result.err
    rows = {r["runtime"]: r for r in json.loads(result_path.read_text())["rows"]}
    assert rows["executorch"]["status"] == "ok" and rows["executorch"]["threads"] == 1 and rows["executorch"]["format"] == "executorch"
    assert rows["onnxruntime"]["status"] == "skipped" and "does not run executorch artifacts" in rows["onnxruntime"]["reason"]


def test_the_runtime_runs_a_program_without_importing_the_compiler(digits_pte):
    """A worker or probe process loads ExecuTorch's runtime without exir's package (the compiler, 4-5 s of its
    cold start); an export later in the same process still gets the real exir."""
    import subprocess
    import sys

    code = """
import sys
from partialnet.runtimes.executorch import load_runtime
Runtime, lib = load_runtime()
data = open(sys.argv[1], "rb").read()  # the program reads these bytes in place: kept, with the program
program = Runtime.get().load_program(data)
method = program.load_method("forward")
import torch
logits = method.execute([torch.zeros(1, 3, 64, 64)])[0]
print(tuple(logits.shape), lib._threadpool_get_thread_count() > 0, "executorch.exir" in sys.modules, "torch._dynamo" in sys.modules)
from executorch.exir import to_edge_transform_and_lower
import executorch.exir
print(executorch.exir.__file__.endswith("__init__.py"), callable(to_edge_transform_and_lower))
"""
    done = subprocess.run([sys.executable, "-c", code, str(digits_pte[0])], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[:2] == ["(1, 10) True False False", "True True"], done.stdout


# The INT8 program (XNNPACK's quantizer, judged on digits, wholly delegated) is the matrix's INT8 ExecuTorch cell:
# test_matrix.py::test_matrix_on_a_digits_checkpoint_with_three_formats (its lowering costs a minute).


@pytest.mark.parametrize("args, message", [(["--half"], "--half does not apply to --format executorch"), (["--dynamic"], "--dynamic does not apply")])
def test_bad_pte_options_exit_2(args, message, cli, tmp_path):
    result = cli("export", tmp_path / "missing.pth", "-f", "pte", *args)
    assert result.code == 2 and message in result.err


@pytest.mark.slow
def test_format_all_exports_every_format_here_with_one_status_table(digits_all, digits_ckpt, cli):
    """One load, one fold, every format; verdicts are verified / not verifiable here (why) / failed (exit 1).
    The trained weights sit beside an untrained copy, picked by --weights: the second process (the
    Python-bound formats) must load that copy too. (The run is conftest's `digits_all`, shared as the
    session's ExecuTorch and LiteRT files.)"""
    from partialnet.exporters.sidecar import sidecar

    two, out, result = digits_all.ckpt, digits_all.folder, digits_all.result
    table = json.loads(result.out)
    rows = {r["format"]: r for r in table["rows"]}
    for row in rows.values():
        if row["status"] == "verified":  # each artifact, from either process, holds the trained copy and says so
            manifest = sidecar(Path(row["file"]))
            assert json.loads(manifest.read_text())["metadata"]["source_weights"] == "state_dict_ema", row
    assert rows["onnx"]["digits_top1"] >= 0.9 and rows["executorch"]["digits_top1"] >= 0.9  # untrained: about 0.1
    assert rows["onnx"]["status"] == "verified" and rows["executorch"]["status"] == "verified"
    assert rows["onnx"]["digits_top1"] == rows["onnx"]["reference_top1"] and rows["onnx"]["max_abs"] < 1e-4
    if "openvino" in rows and rows["openvino"]["status"] != "skipped":
        assert rows["openvino"]["status"] == "verified"
    from partialnet.exporters.tensorrt import unavailable_reason

    if unavailable_reason():
        assert rows["trt"]["verdict"] == "exported, not verifiable here" and "no engine built here" in rows["trt"]["why"]
        assert rows["trt"]["file"].endswith(".trt.onnx") and rows["trt"]["max_abs"] < 1e-4  # its ONNX was verified
        script = out / f"{two.stem}.build_engine.sh"  # the hint names it where it is, a command to paste
        assert rows["trt"]["why"].endswith(f"finish with bash {script}") and script.is_file()
    if "coreml" in rows and rows["coreml"]["status"] != "skipped":  # off macOS: its program run by the reference interpreter
        import sys

        coreml = rows["coreml"]
        assert coreml["status"] == "verified" and coreml["top1_agreement"] == 1.0
        if sys.platform != "darwin":
            assert coreml["verdict"] == "verified (reference interpreter)" and "reference interpreter: ok" in coreml["why"]
    assert all(r["why"] is None for r in rows.values() if r["verdict"] == "verified")
    assert table["failed"] == []
    from partialnet.runtimes import usable_cores

    if usable_cores() > 1:  # the second process's stages are logged and timed apart from this one's shares
        assert table["second_process"] == ["executorch"]
        assert table["timing"]["beside_s"]["second process: executorch"]["export"] > 0
        assert "- export (second process: executorch): " in result.err and "- wait for the second process: " in result.err
    assert not any(p.name.endswith(".engine") for p in out.iterdir())
    again = cli("export", two, "--format", "all", "--imgsz", "64", "-o", out)
    assert again.code == 2 and "already exists" in again.err  # checked before any load, nothing replaced
    mixed = cli("export", digits_ckpt, "--format", "all", "--opset", "18")
    assert mixed.code == 2 and "--opset is not one of them" in mixed.err


@pytest.mark.parametrize("how, what, commands", [("link", "is a symbolic link", ("verify", "bench")), ("fifo", "is a FIFO (named pipe)", ("verify",)),
                                                ("huge", "digits", ("verify",))])
@pytest.mark.slow
def test_a_sidecar_that_is_not_a_plain_json_file_is_refused(digits_pte, digits_all, tmp_path, cli, how, what, commands):
    """The manifest beside a .pte carries its metadata: a link, FIFO or absurd number there is refused, naming it."""
    import os
    import shutil

    out, _ = digits_pte
    copy = tmp_path / out.name
    shutil.copy(out, copy)
    sidecar = tmp_path / f"{out.name}.json"
    if how == "link":
        os.symlink(out.with_name(sidecar.name), sidecar)
    elif how == "fifo":
        os.mkfifo(sidecar)
    else:
        sidecar.write_text('{"metadata": {"imgsz": ' + "9" * 5000 + "}}")
    every = {"verify": ["verify", copy, "--ref", digits_all.ckpt], "bench": ["bench", copy, "--protocol", "quick"]}
    for command in (every[name] for name in commands):  # both read the sidecar through read_io: one suffices for most cases
        result = cli(*command)
        assert result.code == 2, (command, result.err)
        assert sidecar.name in result.err and what in result.err and "Traceback" not in result.err


@pytest.mark.slow
@pytest.mark.parametrize("header", [None, b"ET\xf1\xf2"])
def test_a_damaged_program_never_takes_the_process_down(header, tmp_path):
    """Random bytes (with our file identifier, or one that makes the runtime's error text invalid UTF-8 and
    aborted the process): one error line, exit 2, in verify and bench."""
    import os
    import subprocess
    import sys

    data = bytearray(os.urandom(1000))
    if header:
        data[4:8] = header
    path = tmp_path / "r.pte"
    path.write_bytes(bytes(data))
    for command in (["verify", str(path), "--ref", "partialnet_t0"], ["bench", str(path), "--protocol", "quick"]):
        done = subprocess.run([sys.executable, "-m", "partialnet", *command], capture_output=True, text=True, timeout=300)
        lines = [line for line in done.stderr.strip().splitlines() if not line.lstrip().startswith(("- ", "preparing "))]
        assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {path}: "), (command, done.stderr)


@pytest.mark.slow
def test_a_pte_manifest_cannot_make_it_fp16(digits_pte, digits_all, tmp_path, cli):
    import shutil

    out, manifest = digits_pte
    copy, sidecar = tmp_path / out.name, tmp_path / f"{out.name}.json"
    shutil.copy(out, copy)
    manifest = json.loads(json.dumps(manifest))  # the session's, changed only in this copy
    manifest["metadata"]["precision"] = "fp16"
    sidecar.write_text(json.dumps(manifest))
    result = cli("verify", copy, "--ref", digits_all.ckpt)
    assert result.code == 2 and "ExecuTorch programs from partialnet are fp32 or int8" in result.err
    manifest["metadata"]["precision"] = "int8"  # looser gates for an fp32 program: judged by its bytes per weight
    sidecar.write_text(json.dumps(manifest))
    result = cli("verify", copy, "--ref", digits_all.ckpt)
    assert result.code == 1 and "its metadata says int8, but what it holds is fp32" in result.err
