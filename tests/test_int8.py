"""INT8 for ONNX (ONNX Runtime's static QDQ) and OpenVINO IR (NNCF), judged on real digits, not on max |Δ|."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from helpers import DIGITS_INT8_CALIB, never_loaded_checkpoint
from partialnet.errors import BadInput

pytest.importorskip("sklearn", reason="INT8 is calibrated and judged on the digits yardstick (pip install 'partialnet[digits]')")

CALIB = "64"  # calibration images for this file's own INT8 exports: enough for T0 at 64x64 to stay within the gate


@pytest.mark.slow
def test_onnx_int8_is_qdq_and_keeps_digits_accuracy(digits_int8_onnx):
    out, result = digits_int8_onnx
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "BatchNormalization" not in ops
    manifest = json.loads(out.with_name("q.onnx.json").read_text())
    assert manifest["metadata"]["precision"] == "int8" and manifest["metadata"]["calibration_data"] == "digits"
    assert manifest["options"]["calibration_images"] == DIGITS_INT8_CALIB
    parity = manifest["parity"]
    assert parity["precision"] == "int8" and parity["tolerances"]["max_accuracy_drop"] == 1.5
    assert [c["name"] for c in parity["cases"]] == ["digits held-out (540)"]  # real images only, no random inputs
    assert parity["cases"][0]["top1_agreement"] >= 0.95
    assert parity["accuracy"]["artifact_top1"] >= 0.95 and parity["accuracy"]["delta_points"] >= -1.5
    assert result["graph"]["quantization"]["quantizer"].startswith("onnxruntime.quantization")
    assert result["graph"]["quantization"]["activations"].startswith("uint8")  # ORT's fast x86 path


@pytest.mark.slow
def test_verify_int8_onnx_uses_the_recorded_calibration_source(digits_int8_onnx, digits_ckpt, cli):
    out, _ = digits_int8_onnx
    result = cli("verify", out, "--ref", digits_ckpt, "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["precision"] == "int8" and report["accuracy"]["dataset"] == "digits"


@pytest.mark.slow
def test_openvino_int8_through_nncf(digits_ckpt, tmp_path, cli):
    pytest.importorskip("nncf", reason="OpenVINO INT8 needs NNCF (pip install 'partialnet[openvino]')")
    from partialnet.runtimes.openvino import core

    out = tmp_path / "q.xml"
    result = cli("export", digits_ckpt, "-f", "ov", "--imgsz", "64", "--int8", "--data", "digits", "--calib-size", CALIB, "-o", out, "--samples", "2")
    assert result.code == 0, result.err
    model = core().read_model(str(out))
    assert sum(op.get_type_name() == "FakeQuantize" for op in model.get_ordered_ops()) > 50
    assert model.get_rt_info(["partialnet", "precision"]).astype(str) == "int8"
    manifest = json.loads(out.with_name("q.xml.json").read_text())
    assert manifest["graph"]["quantization"]["quantizer"].startswith("NNCF")
    assert manifest["parity"]["accuracy"]["delta_points"] >= -1.5


@pytest.mark.slow
def test_a_bad_calibration_fails_naming_the_metric_and_writes_nothing(digits_ckpt, tmp_path, cli):
    """One blank image as calibration data: the ranges are wrong, accuracy collapses, exit 1."""
    from PIL import Image

    folder = tmp_path / "blank"
    folder.mkdir()
    Image.new("RGB", (64, 64), (255, 255, 255)).save(folder / "white.png")
    out = tmp_path / "bad.onnx"
    result = cli("export", digits_ckpt, "--imgsz", "64", "--int8", "--data", folder, "--calib-size", "1", "-o", out, "--dataset", "digits", "--samples", "2")
    assert result.code == 1, (result.code, result.err)
    assert "top-1" in result.err.splitlines()[-1] and "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--int8"], "--int8 needs calibration data: --data digits"),
        (["--data", "digits"], "--data is calibration data for --int8"),
        (["--int8", "--half", "--data", "digits"], "--half, --int8 and --fp32 exclude each other"),
        (["-f", "openvino", "--opset", "18"], "--opset does not apply to --format openvino (formats that take it: onnx, trt)"),
        (["--dynamic", "--batch", "1"], "--batch with --dynamic: a dynamic onnx artifact takes any batch"),  # typed at its default: asked for too
        (["--workspace", "2"], "--workspace does not apply to --format onnx (formats that take it: trt)"),
        (["-f", "ir", "--no-simplify"], "--no-simplify does not apply to --format openvino"),
        (["-f", "trt", "--max-batch", "8"], "--max-batch sets the largest batch of a --dynamic engine"),
        (["--int8", "--data", "/nonexistent/folder"], "--data /nonexistent/folder: no such folder"),
    ],
)
def test_option_errors_come_before_any_loading(args, message, cli, tmp_path):
    """The checkpoint cannot be loaded: if the option error is what is reported, options were checked first."""
    ckpt = never_loaded_checkpoint(tmp_path / "stub.pth")
    result = cli("export", ckpt, *args)
    assert result.code == 2, result.err
    assert message in result.err and "stub.pth" not in result.err
    assert list(tmp_path.iterdir()) == [ckpt]


@pytest.mark.slow
def test_int8_artifact_calibrated_on_a_folder_needs_real_images_to_verify(digits_ckpt, tmp_path, cli):
    from PIL import Image

    from partialnet import digits

    folder = tmp_path / "imgs"
    folder.mkdir()
    X_train, _, _, _ = digits.split()
    for i, row in enumerate(X_train[:16]):
        Image.fromarray((np.asarray(row).reshape(8, 8) * 15).astype(np.uint8)).convert("RGB").save(folder / f"{i:02d}.png")
    out = tmp_path / "folder.onnx"
    result = cli("export", digits_ckpt, "--imgsz", "64", "--int8", "--data", folder, "-o", out, "--samples", "2", "--min-top1", "0.5")
    assert result.code == 0, result.err
    manifest = json.loads(out.with_name("folder.onnx.json").read_text())
    assert manifest["metadata"]["calibration_data"] == "images:imgs"
    assert "calibration images (16, seen by the quantizer)" in [c["name"] for c in manifest["parity"]["cases"]]
    assert "judged only on the" not in result.err  # a digits checkpoint is judged on held-out digits too
    from partialnet.render import own_calibration_note

    alone = {**manifest["parity"], "accuracy": None}  # what a checkpoint of no dataset of its own is judged on
    assert own_calibration_note(alone).startswith("note: INT8 was judged only on the 16 image(s) it was calibrated on")
    from partialnet.api import _int8_judged
    from partialnet.verify_options import VerifyOptions

    io = {"precision": "int8", "imgsz": [64, 64], "metadata": manifest["metadata"]}
    with pytest.raises(BadInput, match="is INT8 \\(calibrated on imgs\\): judge it on real images with --images DIR or --dataset digits"):
        _int8_judged(out, io, VerifyOptions(), None)  # a --ref of no dataset of its own, and no --images
    assert _int8_judged(out, io, VerifyOptions(dataset="digits"), None) == ("digits", (64, 64))
    digits_ref = cli("verify", out, "--ref", digits_ckpt)  # a digits --ref judges it on held-out digits, as export did
    assert digits_ref.code == 0 and "digits held-out" in digits_ref.out, digits_ref.err
