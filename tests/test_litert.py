"""LiteRT (.tflite): converted with litert-torch, verified and benched in the LiteRT interpreter here."""

from __future__ import annotations

import re
import json
import shutil

import pytest

pytest.importorskip("litert_torch", reason="LiteRT export needs pip install 'partialnet[litert]'")
pytest.importorskip("ai_edge_litert", reason="the LiteRT interpreter needs pip install 'partialnet[litert]'")


@pytest.mark.slow
def test_tflite_fp32_and_fp16_are_verified_in_the_interpreter(digits_ckpt, digits_all, digits_tflite, tmp_path, cli):
    """fp32 is the session's shared conversion (`export --format all`'s; copied here: this test rewrites its
    manifest), fp16 the command's."""
    for path in (digits_tflite, digits_tflite.with_name(digits_tflite.name + ".json")):
        shutil.copyfile(path, tmp_path / path.name.replace(digits_tflite.stem, "fp32"))
    fp16 = tmp_path / "fp16.tflite"
    result = cli("export", digits_ckpt, "-f", "tflite", "--imgsz", "64", "-o", fp16, "--samples", "2", "--half")
    assert result.code == 0, result.err
    for name in ("fp32", "fp16"):
        manifest = json.loads((tmp_path / f"{name}.tflite.json").read_text())
        assert manifest["parity"]["candidate"] == "litert" and manifest["parity"]["passed"]
        assert manifest["metadata"]["input"] == "images: float32 RGB, normalised"  # fp16 weights, float32 input and output
        assert manifest["metadata"]["precision"] == name and manifest["parity"]["accuracy"]["delta_points"] >= -0.5
    fp32 = json.loads((tmp_path / "fp32.tflite.json").read_text())
    assert fp32["parity"]["cases"][0]["max_abs"] < 1e-4
    delegation = fp32["graph"]["delegation"]
    assert delegation["subgraphs"] == 1 and delegation["portable_ops"] == {} and delegation["node_share"] == 1.0
    assert (tmp_path / "fp16.tflite").stat().st_size < 0.6 * (tmp_path / "fp32.tflite").stat().st_size  # fp16 weights
    assert cli("verify", tmp_path / "fp32.tflite", "--ref", digits_all.ckpt).code == 0
    result_path = tmp_path / "r.json"
    bench = cli("bench", tmp_path / "fp32.tflite", "--runtime", "litert", "--protocol", "quick", "--threads", "1", "--json", result_path)
    assert bench.code == 0, bench.err
    row = json.loads(result_path.read_text())["rows"][0]
    assert row["status"] == "ok" and row["runtime"] == "litert" and row["threads"] == 1 and row["format"] == "litert"
    # the precision judged is the file's own: a manifest that says fp16 beside fp32 weights is caught, not obeyed
    sidecar = tmp_path / "fp32.tflite.json"
    manifest = json.loads(sidecar.read_text())
    manifest["metadata"]["precision"] = "fp16"
    sidecar.write_text(json.dumps(manifest))
    lie = cli("verify", tmp_path / "fp32.tflite", "--ref", digits_all.ckpt)
    assert lie.code == 1 and "its metadata says fp16, but what it holds is fp32" in lie.err
    sidecar.write_text(json.dumps({**manifest, "sha256": "0" * 64}))  # another artifact's manifest: it would vouch for this file's source
    swapped = cli("verify", tmp_path / "fp32.tflite", "--ref", digits_all.ckpt)
    assert swapped.code == 1 and "fp32.tflite.json: records sha256 0000000000000000…, but fp32.tflite hashes to another" in swapped.err
    sidecar.write_text("[]")  # a manifest that says nothing is not read as no manifest: it was verified as a plain fp32 file
    emptied = cli("verify", tmp_path / "fp32.tflite", "--ref", digits_all.ckpt)
    assert emptied.code == 2 and "fp32.tflite.json: not an export manifest" in emptied.err, emptied.err


@pytest.mark.slow
def test_tflite_int8_is_full_integer_calibrated_and_judged_on_digits(digits_ckpt, tmp_path, cli):
    out = tmp_path / "int8.tflite"
    result = cli("export", digits_ckpt, "-f", "litert", "--int8", "--data", "digits", "--calib-size", "64", "--imgsz", "64", "-o", out)
    assert result.code == 0, result.err
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    parity = manifest["parity"]
    assert manifest["metadata"]["precision"] == "int8" and "PT2E" in manifest["graph"]["quantization"]["quantizer"]
    assert parity["passed"] and parity["cases"][0]["top1_agreement"] >= 0.95 and parity["accuracy"]["delta_points"] >= -1.5
    delegation = manifest["graph"]["delegation"]  # XNNPACK has no int8 GELU: those stay on LiteRT's kernels
    assert delegation["nodes_portable"] == sum(delegation["portable_ops"].values()) and delegation["subgraphs"] >= 1
    assert "delegate: XNNPACK took" in result.out
    assert re.search(r"input int8, scale [0-9.e-]+, zero point -?\d+", result.out), result.out  # it printed a Python dict
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out))
    detail = interpreter.get_input_details()[0]
    assert detail["dtype"].__name__ == "int8"  # the runner quantizes for the caller
    # and the manifest says so, with the numbers a caller quantizes with (it said "float RGB")
    assert manifest["metadata"]["input"].startswith("images: int8, quantized from the normalised float RGB"), manifest["metadata"]
    assert manifest["graph"]["quantization"]["input"] == {"dtype": "int8", "scale": float(detail["quantization"][0]),
                                                          "zero_point": int(detail["quantization"][1])}
    assert manifest["metadata"]["preprocess"].startswith("digits: 8x8 pixel values /16; bilinear resize")  # how it was trained
    result_path = tmp_path / "q.json"
    bench = cli("bench", out, "--runtime", "litert", "--protocol", "quick", "--threads", "1", "--json", result_path)
    assert bench.code == 0, bench.err
    row = json.loads(result_path.read_text())["rows"][0]
    assert row["status"] == "ok" and row["precision"] == "int8" and row["parity_top1"] >= 0.95


@pytest.mark.parametrize("args, message", [(["--fp32"], "--fp32 does not apply to --format litert"), (["--dynamic"], "--dynamic does not apply")])
def test_bad_tflite_options_exit_2(args, message, cli, tmp_path):
    result = cli("export", tmp_path / "missing.pth", "-f", "tflite", *args)
    assert result.code == 2 and message in result.err


@pytest.mark.slow
def test_one_bench_shows_every_cpu_runtime_side_by_side(tmp_path, cli, digits_all):
    """The checkpoint holds an untrained copy beside the trained one, picked by --weights: every row, the
    second process's ExecuTorch one too, times (and matches) that copy."""
    pytest.importorskip("executorch", reason="ExecuTorch rows need pip install 'partialnet[executorch]'")
    pytest.importorskip("openvino", reason="OpenVINO rows need pip install 'partialnet[openvino]'")
    result_path = tmp_path / "all.json"
    runtimes = ["pytorch", "onnxruntime", "openvino", "executorch", "litert"]
    bench = cli(
        "bench", digits_all.ckpt, "--weights", "state_dict_ema", "--runtime", ",".join(runtimes), "--imgsz", "64", "--batch", "1",
        "--protocol", "quick", "--threads", "1", "--json", result_path,
    )
    assert bench.code == 0, bench.err
    from partialnet.runtimes import usable_cores

    if usable_cores() > 1:  # ExecuTorch's lowering on a core of its own while the other formats export
        assert f"preparing {digits_all.ckpt}: fold, export, verify (executorch in a second process, beside the others)" in bench.err
    assert "timed dict['state_dict_ema'] (--weights state_dict_ema)" in bench.out, bench.out
    rows = {row["runtime"]: row for row in json.loads(result_path.read_text())["rows"]}
    assert sorted(rows) == sorted(runtimes)
    for name, row in rows.items():  # parity against the trained copy: an artifact of the other copy would be far off
        assert row["status"] == "ok" and row["threads"] == 1 and row["parity_max_abs"] < 1e-4 and row["weights"] == "state_dict_ema", (name, row)
    assert rows["executorch"]["format"] == "executorch" and rows["litert"]["format"] == "litert"
