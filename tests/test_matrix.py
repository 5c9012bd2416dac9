"""`partialnet matrix`: every format x precision here, judged, timed, and the one to ship."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from partialnet.bench import matrix as mx


@pytest.mark.parametrize("args, fragment", [
    (["--formats", "onnx,nope"], "unknown format 'nope'"),
    (["--precisions", "fp8"], "--precisions 'fp8'"),
    (["--budget", "-1"], "--budget -1"),
    (["--protocol", "throughput"], "matrix times batch 1 under latency or quick"),
    (["--protocol", "paper"], "matrix times batch 1 under latency or quick"),
    (["--protocol", "slow"], "--protocol slow: matrix times batch 1 under latency or quick"),  # it listed paper and throughput as known
    (["--calib-method", "bogus"], "--calib-method bogus: methods are minmax"),
    (["--precisions", "fp32", "--calib-method", "entropy"], "--calib-method shapes INT8 cells, and --precisions asks for none"),
    (["--precisions", "int8"], "--precisions int8 needs calibration data"),  # a variant name: no dataset to default to
    (["--formats", "onnx,"], "--formats 'onnx,': an empty item between commas"),  # the slip was dropped without a word
    (["--formats", "all,onnx"], "all stands alone"),
    (["--precisions", ",fp32"], "--precisions ',fp32': an empty item"),
    (["--precisions", "fp32", "--data", "digits"], "--data calibrates the INT8 cells, and --precisions asks for none"),  # was ignored
    (["--precisions", "fp32", "--calib-size", "300"], "--calib-size calibrates the INT8 cells, and --precisions asks for none"),  # at its default too
    (["--formats", "coreml", "--calib-size", "300"], "--calib-size calibrates the INT8 cells, and no format asked has an INT8 export (coreml)"),  # was exit 3
    # cells no machine can make, when they are all that was asked: exit 0 on an fp32 cell added for them, or exit 3
    (["--formats", "onnx", "--precisions", "bf16"], "no cell asked for exists on any machine (onnx bf16: onnxruntime does not compute bf16"),
    (["--formats", "coreml", "--precisions", "int8", "--data", "digits"], "no cell asked for exists on any machine (coreml int8: coreml has no int8"),
])
def test_bad_options_exit_2_before_any_work(cli, tmp_path, args, fragment):
    result = cli("matrix", "partialnet_t0", "--imgsz", "64", "-o", tmp_path / "m", *args)
    assert result.code == 2 and fragment in result.err, result.err
    assert not (tmp_path / "m").exists()


def test_a_copy_the_checkpoint_lacks_is_bad_input_before_not_possible_here(cli, tmp_path):
    """`--formats coreml --weights nope` off macOS said only "no cell can be made here" (exit 3): the name was never checked."""
    from helpers import golden

    result = cli("matrix", golden("t0")[0], "--imgsz", "64", "--formats", "coreml", "--weights", "nope", "-o", tmp_path / "m")
    assert result.code == 2 and "--weights nope: no model copy by that name" in result.err, result.err


def test_a_matrix_with_no_cell_this_machine_can_make_is_not_possible_here(cli, tmp_path):
    """`--formats trt` without a GPU exited 0 with an empty matrix: a CI job asking for it went green with nothing made."""
    from partialnet.bench.where import HERE

    if HERE.availability("tensorrt", "cuda") is None:
        pytest.skip("TensorRT can build here")
    result = cli("matrix", "partialnet_t0", "--imgsz", "64", "--formats", "trt", "--protocol", "quick", "-o", tmp_path / "m")
    assert result.code == 3 and "no cell of this matrix can be made here (trt fp32: " in result.err, result.err
    assert not (tmp_path / "m").exists()


def test_the_plan_says_why_a_cell_cannot_be_made_here():
    cells = {(c.fmt.name, c.precision): c.why for c in mx.plan_cells(["onnx", "executorch", "trt", "coreml"], list(mx.PRECISIONS))}
    assert cells[("onnx", "fp32")] is None and cells[("onnx", "int8")] is None
    assert cells[("executorch", "fp16")] == "executorch has no fp16 export"
    assert cells[("onnx", "bf16")] == "onnxruntime does not compute bf16 from the fp32 file"
    assert mx.with_fp32(["bf16"]) == ["fp32", "bf16"] and mx.with_fp32(["int8"]) == ["int8"]  # bf16 runs the fp32 file
    from partialnet.exporters.tensorrt import unavailable_reason

    if unavailable_reason():  # no TensorRT here: why it cannot be made, and how to get it (not files the matrix never writes)
        assert "can be finished here" in cells[("trt", "fp32")] and "partialnet export -f trt" in cells[("trt", "fp32")]
        assert "build_engine.sh" not in cells[("trt", "fp32")]
    assert "cannot be timed here" in cells[("coreml", "fp16")] or cells[("coreml", "fp16")] is None  # Core ML times on macOS only


def test_bf16_is_the_fp32_openvino_file_computed_in_bf16():
    from partialnet.exporters.formats import get_format

    assert mx.computed(get_format("openvino"), "bf16") and not mx.computed(get_format("openvino"), "int8")
    assert not mx.computed(get_format("onnx"), "bf16") and not mx.takes(get_format("litert"), "bf16")


def test_judging_marks_the_front_and_recommends_within_budget():
    rows = [
        {"format": "pytorch", "precision": "fp32", "p50_ms": 9.0, "top1": 99.0, "bytes": None},
        {"format": "onnx", "precision": "fp32", "p50_ms": 4.0, "top1": 99.0, "bytes": 9_000_000, "file": "a.onnx"},
        {"format": "onnx", "precision": "int8", "p50_ms": 2.0, "top1": 96.0, "bytes": 2_500_000, "file": "b.onnx"},  # 3 points lost
        {"format": "openvino", "precision": "int8", "p50_ms": 2.5, "top1": 98.5, "bytes": 2_900_000, "file": "c.xml"},
        {"format": "litert", "precision": "int8", "p50_ms": 1.0, "top1": 99.0, "bytes": 2_000_000, "file": "d.tflite", "disturbed": True},
    ]
    mx.judge_rows(rows, budget=1.0, accuracy="held-out digits")
    by = {(r["format"], r["precision"]): r for r in rows}
    assert by[("openvino", "int8")]["recommended"] and "fastest" in by[("openvino", "int8")]["recommended_why"]
    assert "loses 0.50 points of top-1 vs PyTorch fp32 (budget 1)" in by[("openvino", "int8")]["recommended_why"]  # a loss, in words
    assert not by[("litert", "int8")]["recommended"]  # disturbed: never the choice, however fast
    # every row holds both reasons (null where it is not the one), as docs/export.md lists them
    assert all({"recommended_why", "smallest_why"} <= set(r) for r in rows)
    assert by[("onnx", "fp32")]["recommended_why"] is None and by[("onnx", "fp32")]["smallest_why"] is None
    assert not by[("onnx", "int8")]["recommended"] and by[("onnx", "int8")]["drop"] == 3.0
    assert by[("onnx", "int8")]["pareto"] and by[("onnx", "fp32")]["pareto"] and not by[("pytorch", "fp32")]["pareto"]
    assert not by[("litert", "int8")]["pareto"]  # a marked row is on no front
    # the smallest within budget, however its timing went: a file's size does not hang on it (its latency is not shown)
    assert by[("litert", "int8")]["smallest"] and not by[("openvino", "int8")]["smallest"]
    assert "d.tflite" not in by[("litert", "int8")]["smallest_why"] and "timing disturbed, 2,000,000 bytes" in by[("litert", "int8")]["smallest_why"]
    assert "1.000 ms" not in by[("litert", "int8")]["smallest_why"]
    # every artifact's timing marked or failed: nothing recommended, yet the smallest is named in the text as in the JSON
    alone = [dict(rows[0]), {**rows[4]}, {"format": "onnx", "precision": "fp32", "p50_ms": None, "top1": 99.0, "bytes": 1_000_000, "file": "e.onnx"}]
    mx.judge_rows(alone, budget=1.0, accuracy="held-out digits")
    lines = mx.recommendation_lines({"rows": alone})
    assert "nothing recommended" in lines[0] and lines[1].startswith("smallest: e.onnx (") and "not timed, 1,000,000 bytes" in lines[1], lines
    # judged on accuracy, a row without its top-1 (a hand edit to null) is never within the budget; the reference gone, no row is
    by[("openvino", "int8")]["top1"] = None
    mx.judge_rows(rows, budget=1.0, accuracy="held-out digits")
    assert not by[("openvino", "int8")]["recommended"] and by[("onnx", "fp32")]["recommended"]
    mx.judge_rows(rows[1:], budget=1.0, accuracy="held-out digits")
    assert not any(r["recommended"] for r in rows[1:])
    mx.judge_rows(rows[1:], budget=1.0, accuracy=f"{mx.NOT_JUDGED}: agreement only")  # not judged: an artifact written passed its gates
    assert by[("onnx", "int8")]["recommended"]


@pytest.mark.slow
def test_matrix_on_a_digits_checkpoint_with_three_formats(cli, digits_ckpt, tmp_path, monkeypatch):
    """The trained weights sit beside an untrained copy and are picked by --weights: every top-1 below is theirs.

    ExecuTorch's cells are Python-bound: its INT8 cell is lowered in a second process beside the other exports
    (its fp32 one here, after them), and their files land in the group like any other. Its INT8 cell is also the suite's INT8 ExecuTorch export
    (XNNPACK's lowering of a q/dq program is its slowest export, a minute for T0), judged on held-out digits
    and wholly delegated. (One matrix for both: the INT8 lowering leaves the other core to the other exports.)"""
    import os
    import tempfile

    from helpers import two_copies

    pytest.importorskip("executorch", reason="ExecuTorch export needs executorch (pip install 'partialnet[executorch]')")
    cores = os.sched_getaffinity(0)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the second process's folder is made
    ckpt = two_copies(digits_ckpt, tmp_path / "digits_ema.pt")
    folder, out, md, png = tmp_path / "m", tmp_path / "m.json", tmp_path / "m.md", tmp_path / "m.png"
    args = ("matrix", ckpt, "--imgsz", "64", "--formats", "onnx,openvino,executorch", "--protocol", "quick", "-o", folder, "--json", out,
            "--md", md, "--plot", png, "--weights", "state_dict_ema", "--calib-size", "32")  # the default 300 cost NNCF 3 s more
    result = cli(*args)
    assert result.code == 0, result.err
    assert "note: loaded dict['state_dict_ema'] (--weights state_dict_ema)" in result.out
    assert "(beside the others)" in result.err
    if len(cores) > 1:  # the INT8 lowering (the longest) alone beside; the fp32 one here, after the other formats
        assert "] export executorch int8 (beside the others)\n" in result.err and "] export executorch fp32\n" in result.err, result.err
    assert not list(scratch.glob("partialnet-matrix-*"))  # the second process's folder is gone
    data = json.loads(out.read_text())
    # the rows were timed on every core: OpenVINO, first run while this process was pinned, once pinned it again
    assert os.sched_getaffinity(0) == cores and data["machine"]["cpu"]["usable_cores"] == len(cores)
    assert data["schema"] == "partialnet.matrix/1" and data["machine"]["cpu"]["model"]
    assert data["calibration"]["data"] == "digits" and data["calibration"]["images"] == 32  # the checkpoint's own dataset
    rows = {(r["format"], r["precision"]): r for r in data["rows"]}
    assert set(rows) == {("pytorch", "fp32"), *((f, p) for f in ("onnx", "openvino", "executorch") for p in ("fp32", "bf16", "fp16", "int8"))}
    for key in (("onnx", "bf16"), ("executorch", "bf16"), ("executorch", "fp16")):
        assert rows.pop(key)["no_such_artifact"]  # in the JSON, named once below the tables
    assert "| onnx | bf16 |" not in md.read_text() and "no such artifact (the format has no such export or mode): onnx bf16" in md.read_text()
    bf16 = rows.pop(("openvino", "bf16"))  # the fp32 IR computed in bf16, where this CPU computes bf16 natively
    assert bf16["file"] == rows[("openvino", "fp32")]["file"] and bf16["bytes"] == rows[("openvino", "fp32")]["bytes"]
    if native_bf16():
        assert bf16["status"] == "ok" and bf16["precision_ran"] == "bf16" and "INFERENCE_PRECISION_HINT=bf16" in bf16["runs_as"], bf16
        assert bf16["top1"] > 90 and bf16["p50_ms"] > 0
    else:
        assert bf16["status"] == "skipped" and "no native bf16" in bf16["why"], bf16
    for key, row in rows.items():
        assert row["status"] == "ok", (key, row.get("why"))
        assert {"file", "bytes", "top1", "drop", "agreement", "p50_ms", "samples_s", "pareto", "recommended"} <= set(row)
        assert row["top1"] > 90 and row["top5"] >= row["top1"] and row["drop"] is not None and row["p50_ms"] > 0
    files = (("onnx", ".onnx"), ("openvino", ".xml"), ("executorch", ".pte"))
    assert all((folder / f"{ckpt.stem}_{f}_{p}{s}").exists() for f, s in files for p in ("fp32", "int8"))
    assert (folder / "matrix.json").is_file() and "| format | precision |" in md.read_text()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and data["accuracy"] == "held-out digits"
    # a busy CI machine marks rows; the front is drawn among the timed rows it left unmarked
    judged = [r for r in data["rows"] if r.get("p50_ms") is not None and not (r.get("unstable") or r.get("disturbed"))]
    assert sum(r["recommended"] for r in data["rows"]) <= 1 and (any(r["pareto"] for r in judged) or not judged)
    assert not any(r["pareto"] or r["recommended"] for r in data["rows"] if r not in judged)
    _the_int8_program_is_judged_and_wholly_delegated(rows[("executorch", "int8")], folder, ckpt)
    again = cli(*args)
    assert again.code == 2 and "exists" in again.err  # a rerun into the same folder refuses without --force
    _report_merges_matrices_from_several_machines_and_judges_them_again(cli, out, folder, tmp_path)


def _the_int8_program_is_judged_and_wholly_delegated(row: dict, folder, ckpt) -> None:
    name = f"{ckpt.stem}_executorch_int8.pte"
    manifest = json.loads((folder / f"{name}.json").read_text())
    assert row["file"] == str(folder / name) and manifest["artifact"] == name and manifest["parity"]["passed"]
    assert manifest["metadata"]["precision"] == "int8" and manifest["parity"]["precision"] == "int8"
    assert manifest["parity"]["accuracy"]["delta_points"] >= -1.5
    assert manifest["graph"]["quantization"]["quantizer"].startswith("XNNPACKQuantizer")
    assert manifest["graph"]["quantization"]["calibration"] == "32 images"
    assert manifest["graph"]["delegation"]["portable_ops"] == {}  # decomposed before quantizing: all in XNNPACK


def native_bf16() -> bool:
    """What OpenVINO's CPU plugin says it computes when asked for bf16 (f32 on a CPU without bf16 units)."""
    from partialnet.runtimes.openvino import cpu_capabilities

    return "BF16" in cpu_capabilities()


def _result(rows):
    return {"rows": rows, "threads": 1, "imgsz": [64, 64], "protocol": "quick", "source": {"variant": "partialnet_t0"},
            "machine": {"cpu": {"model": "a CPU"}}}


def test_the_plot_is_latency_against_accuracy_with_the_front():
    pytest.importorskip("matplotlib")
    from partialnet.bench.plot import matrix_figure

    rows = [
        {"format": "onnx", "precision": "fp32", "p50_ms": 4.0, "top1": 99.0, "bytes": 9e6, "pareto": True},
        {"format": "onnx", "precision": "int8", "p50_ms": 2.0, "top1": 97.0, "bytes": 2.5e6, "pareto": True, "recommended": True},
        {"format": "openvino", "precision": "fp16", "p50_ms": 5.0, "top1": 98.0, "bytes": 4.5e6, "pareto": False, "disturbed": True},
    ]
    (ax,) = matrix_figure(_result(rows)).axes
    assert ax.get_xscale() == "log" and "top-1" in ax.get_ylabel() and "a CPU" in ax.get_title()
    assert {t.get_text() for t in ax.texts} == {"onnx/fp32", "onnx/int8 (ship)", "openvino/fp16"}
    (front,) = ax.get_lines()
    assert list(front.get_xdata()) == [2.0, 4.0]


def test_a_checkpoint_says_the_size_it_was_trained_at(tmp_path, digits_ckpt):
    import torch

    from partialnet import load_checkpoint

    assert load_checkpoint(digits_ckpt)[1].trained_imgsz == [64, 64]
    payload = torch.load(digits_ckpt, weights_only=True)
    for hostile in ([64], [64, "x"], [10**9, 64], "64x64", None):
        payload["digits"]["imgsz"] = hostile
        path = tmp_path / "h.pt"
        torch.save(payload, path)
        assert load_checkpoint(path)[1].trained_imgsz is None


def _onnx_matrix(cli, ckpt, tmp_path, imgsz: str, precisions: str):
    """A small real matrix (ONNX only, quick protocol) into tmp_path/m, its JSON at tmp_path/m.json."""
    out = tmp_path / "m.json"
    result = cli("matrix", ckpt, "--imgsz", imgsz, "--formats", "onnx", "--precisions", precisions, "--protocol", "quick",
                 "-o", tmp_path / "m", "--json", out)
    assert result.code == 0, result.err
    return result, out


@pytest.mark.slow
def test_accuracy_is_not_judged_at_a_size_the_model_was_not_trained_for(cli, digits_ckpt, tmp_path):
    result, out = _onnx_matrix(cli, digits_ckpt, tmp_path, "96", "fp32")
    data = json.loads(out.read_text())
    assert data["accuracy"].startswith("not judged: the checkpoint was trained at 64x64") and "digits --imgsz 96" in data["accuracy"]
    assert all(r["top1"] is None for r in data["rows"]) and "accuracy: not judged" in result.out


# `digits --imgsz 96` records the size it trained at: test_digits.py::test_digits_command (one training for both).


def test_a_cells_options_pass_the_checks_an_export_makes_of_them():
    """A second process's `api.export` checks a cell's options as if typed: `matrix --calib-size 32` once failed
    every fp32 ExecuTorch cell ("--calib-size is the number of calibration images for --int8")."""
    from partialnet.bench.matrix import cell_options
    from partialnet.exporters.formats import FORMATS
    from partialnet.exporters.options import check_combination

    for fmt in FORMATS.values():
        for precision in ("fp32", "fp16", "int8"):
            options = cell_options(fmt, precision, (64, 64), "digits" if precision == "int8" else None, 32)
            check_combination(options)  # raises BadInput on a calibration option outside --int8
            assert options.calib_size == (32 if precision == "int8" else 300) and (options.data is not None) == (precision == "int8")


def test_topk_counts_a_label_among_the_k_largest_logits():
    import numpy as np

    from partialnet.digits import topk

    logits = np.array([[0.1, 0.9, 0.0, 0.2, 0.3, 0.4, 0.5], [0.9, 0.1, 0.0, 0.2, 0.3, 0.4, 0.5]], np.float32)
    assert topk(lambda x: x, logits, np.array([1, 6]), None, ks=(1, 2, 5)) == {1: 0.5, 2: 1.0, 5: 1.0}
    assert topk(lambda x: x, logits, np.array([1, 6]), 4)[1] == 0.5  # a static batch of 4: padded, the padding dropped


def _report_merges_matrices_from_several_machines_and_judges_them_again(cli, first, folder, tmp_path):
    """(On the three-format matrix's files: a matrix of its own cost this test 15 s.)"""
    data = json.loads(first.read_text())
    other = json.loads(first.read_text())
    other["machine"]["id"] = "another-machine"
    other["machine"]["cpu"]["model"] = "Another CPU"
    for row in other["rows"]:
        row.update(recommended=True, pareto=True, drop=-50.0)  # lies a merge must not believe
        if row.get("samples_s"):
            row["samples_s"] = [s * 2 for s in row["samples_s"]]
    second = tmp_path / "b.json"
    second.write_text(json.dumps(other))
    md, png = tmp_path / "r.md", tmp_path / "r.png"
    merged = cli("report", first, second, "-o", md, "--plot", png, "--json", tmp_path / "r.json")
    assert merged.code == 0, merged.err
    report = json.loads((tmp_path / "r.json").read_text())["matrices"]
    assert [p["cpu"] for p in report["panels"]] == [data["machine"]["cpu"]["model"], "Another CPU"]
    mine, theirs = ({(r["format"], r["precision"]): r for r in p["rows"]} for p in report["panels"])
    assert theirs[("onnx", "fp32")]["p50_ms"] > mine[("onnx", "fp32")]["p50_ms"]  # recomputed from the samples
    from partialnet.bench.stats import median_ms

    timed = {(r["format"], r["precision"]): r for r in data["rows"] if r.get("samples_s")}
    assert all(mine[key]["p50_ms"] == median_ms(row["samples_s"]) for key, row in timed.items())  # the p50 matrix printed
    assert all(r["drop"] is None or r["drop"] >= -5 for r in theirs.values())  # the file's drop of -50 was not read
    assert sum(r["recommended"] for r in theirs.values()) <= 1
    assert "### Another CPU" in md.read_text() and png.read_bytes()[:4] == b"\x89PNG"
    other["imgsz"] = [96, 96]
    second.write_text(json.dumps(other))
    refused = cli("report", first, second)
    assert refused.code == 2 and "not merged" in refused.err
    other["imgsz"] = [-64, 0]
    second.write_text(json.dumps(other))
    assert cli("report", second).code == 2
    assert cli("report", folder / "matrix.json").code == 0  # the manifest in the folder is a matrix result too
    twice = cli("report", first, folder / "matrix.json")
    assert twice.code == 2 and "holds a measurement also in" in twice.err  # ... the same one: its panel would show twice


@pytest.mark.slow
def test_a_stop_mid_export_ends_the_second_process_and_publishes_nothing(digits_ckpt, tmp_path):
    """A SIGTERM while ExecuTorch's lowering runs in the second process leaves neither that process, nor its
    folder, nor a partial file. (What that process makes when left alone: the three-format matrix above.)"""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("executorch", reason="ExecuTorch export needs executorch (pip install 'partialnet[executorch]')")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    args = [sys.executable, "-m", "partialnet", "matrix", str(digits_ckpt), "--imgsz", "64", "--formats", "onnx,executorch", "--protocol", "quick",
            "--precisions", "fp32", "-o", str(tmp_path / "n")]
    stopped = subprocess.Popen(args, env={**os.environ, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and stopped.poll() is None:  # stop it once the second process is exporting
        if subprocess.run(["pgrep", "-f", f"export_beside.*{scratch}"], capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    time.sleep(2)
    stopped.send_signal(signal.SIGTERM)
    _, err = stopped.communicate(timeout=300)
    assert stopped.returncode == 143, err
    assert not list(scratch.glob("partialnet-matrix-*"))
    assert not (tmp_path / "n").exists() or not list((tmp_path / "n").iterdir())  # no partial file, nothing published
    beside = subprocess.run(["pgrep", "-f", f"export_beside.*{scratch}"], capture_output=True, text=True)
    assert beside.stdout.strip() == ""


def test_the_caption_says_what_the_front_was_drawn_against():
    from partialnet import render

    rows = [{"format": "onnx", "precision": "fp32", "status": "ok", "p50_ms": 1.0, "top1": None, "agreement": 1.0, "bytes": 9e6, "pareto": True}]
    judged = render.matrix_table({**_result(rows), "accuracy": "held-out digits"}).caption
    assert judged.startswith("top-1: held-out digits;") and "(latency vs accuracy)" in judged
    agreement = render.matrix_table({**_result(rows), "accuracy": "not judged: not a digits checkpoint and no labelled --images"}).caption
    assert "top-1 not judged" in agreement and "(latency vs agreement)" in agreement and "held-out digits" not in agreement


def test_a_strangers_matrix_is_held_to_what_a_matrix_can_hold(tmp_path):
    """Review findings: a timed row without its size was exit 4, a cell given twice or an artifact partialnet
    never makes (onnx bf16) was judged and even recommended, and so was a row of one sample."""
    import copy

    from partialnet.bench.matrix import SCHEMA
    from partialnet.bench.matrix_report import load_matrix
    from partialnet.errors import BadInput

    rng = np.random.default_rng(0)
    row = {"format": "onnx", "precision": "fp32", "status": "ok", "bytes": 9_000_000, "agreement": 1.0,
           "samples_s": [float(x) for x in 0.004 * rng.lognormal(0, 0.02, 40)]}
    good = {"schema": SCHEMA, "machine": {"id": "x", "cpu": {"model": "cpu", "logical_cores": 2}}, "source": {"variant": "partialnet_t0"},
            "protocol": "quick", "imgsz": [64, 64], "threads": 1, "budget_points": 1.0, "accuracy": "held-out digits", "rows": [row]}
    assert load_matrix(tmp_path / "m.json", copy.deepcopy(good))["rows"][0]["p50_ms"] > 0
    for change, said in (
        (lambda d: d["rows"][0].update(bytes=None), "an artifact that was made has its size in bytes"),
        (lambda d: d["rows"].append(copy.deepcopy(row)), "row 1 is onnx fp32 again (row 0)"),
        (lambda d: d["rows"][0].update(precision="bf16"), "onnx bf16 is no artifact partialnet makes"),
        (lambda d: d["rows"][0].update(samples_s=row["samples_s"][:1]), "holds 1 samples; the quick protocol times at least 10"),
        (lambda d: d.update(protocol="paper"), "protocol is not one of latency, quick"),
        (lambda d: d.update(threads=5000), "threads is not an integer in 1..1024"),
        (lambda d: d["rows"][0].update(bytes=9e6), "rows[0].bytes is not an integer in 0..1099511627776"),
        (lambda d: d["rows"][0].update(top1=101), "rows[0].top1 is not a finite number from 0 to 100"),
        (lambda d: d.pop("budget_points"), "budget_points is missing"),
        (lambda d: d.pop("accuracy"), "accuracy is missing"),  # whether top-1 was judged decides which rows fit the budget
        (lambda d: d.update(batch="x"), "batch is not an integer in 1..1"),
        (lambda d: d["rows"][0].update(bytes=0), "an artifact that was made has its size in bytes"),
        (lambda d: d["rows"][0].update(top1=90.0, top5=80.0), "top-5 80.0 below top-1 90.0"),
        (lambda d: d["rows"][0].update(status="skipped"), "rows[0] is skipped and holds raw samples"),  # were dropped without a word
        (lambda d: d["rows"][0].update(machine_load={"cores": 64, "threads": 1, "others_cores": 1.5}),  # 63 "free" cores: read as quiet
         "rows[0].machine_load.cores 64: more than the 2 logical cores"),
        (lambda d: d.update(threads=64), "threads 64, more than the 2 logical cores of the machine the file records"),
    ):
        hostile = copy.deepcopy(good)
        change(hostile)
        with pytest.raises(BadInput, match=re.escape(said)):
            load_matrix(tmp_path / "m.json", hostile)
