"""Core ML (.mlpackage): converted here, verified statically off macOS (never called "ok"), by prediction on macOS."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="Core ML export needs pip install 'partialnet[coreml]'")

ON_MAC = sys.platform == "darwin"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """fp32 tensor-input and fp16 image-input packages of the seeded T0 at 64x64."""
    from partialnet import api

    folder = tmp_path_factory.mktemp("coreml")
    made = {}
    for name, kwargs in (("fp32", {"fp32": True}), ("fp16_image", {"image_input": True, "min_target": "macOS13"})):
        made[name] = api.export("partialnet_t0", format="coreml", output=folder / f"{name}.mlpackage", imgsz=(64, 64), samples=2, **kwargs)
    return folder, made


def test_package_and_manifest_are_published_together(packages):
    folder, made = packages
    assert sorted(p.name for p in folder.iterdir()) == ["fp16_image.mlpackage", "fp16_image.mlpackage.json", "fp32.mlpackage", "fp32.mlpackage.json"]
    package = folder / "fp32.mlpackage"
    assert (package / "Manifest.json").is_file() and (package / "Data/com.apple.CoreML/model.mlmodel").is_file()
    manifest = json.loads((folder / "fp32.mlpackage.json").read_text())
    assert manifest["format"] == "coreml" and manifest["bytes"] > 1_000_000 and len(manifest["sha256"]) == 64
    assert manifest["graph"]["compute_precision"] == "fp32" and manifest["graph"]["minimum_deployment_target"] == "iOS16"


@pytest.mark.skipif(ON_MAC, reason="on macOS packages are verified by prediction instead")
def test_off_macos_the_verdict_is_static_and_never_ok(packages):
    _, made = packages
    parity = made["fp32"]["parity"]
    assert parity["verdict"] == "prediction not verifiable on Linux" and parity["passed"]
    checks = {c["check"]: c for c in parity["checks"]}
    assert checks["fp32 weights equal the deploy model's"]["passed"]
    assert checks["fp32 weights equal the deploy model's"]["detail"].startswith("all ")
    assert "conv" in checks["op census"]["detail"] and "images: tensor 1x3x64x64" in checks["input"]["detail"]
    assert made["fp16_image"]["parity"]["verdict"] == "prediction not verifiable on Linux"


def test_metadata_precision_and_image_input_read_back(packages):
    from partialnet.exporters.coreml import constants, read_io

    folder, _ = packages
    fp32 = read_io(folder / "fp32.mlpackage")
    assert fp32["precision"] == "fp32" and fp32["input_kind"] == "tensor" and fp32["imgsz"] == (64, 64)
    assert fp32["metadata"]["variant"] == "partialnet_t0" and fp32["metadata"]["source_sha256"].startswith("random weights")
    image = read_io(folder / "fp16_image.mlpackage")
    assert image["precision"] == "fp16" and image["input_kind"] == "image"  # fp16 is the format's default
    assert any(c.dtype == np.float16 for c in constants(folder / "fp16_image.mlpackage"))


@pytest.mark.skipif(ON_MAC, reason="on macOS verify predicts")
def test_verify_off_macos_exits_3_after_the_static_checks(packages, cli):
    folder, _ = packages
    result = cli("verify", folder / "fp32.mlpackage", "--ref", "partialnet_t0")
    assert result.code == 3
    assert "prediction not verifiable on Linux" in result.err and "static checks passed" in result.err


@pytest.mark.parametrize("region", ["tail", "header"])
def test_a_tampered_package_fails_its_static_checks(region, packages, tmp_path, cli):
    """Flip bytes in the weights blob (values, or the blob headers coremltools' reader chokes on): exit 1."""
    import shutil

    folder, _ = packages
    copy = tmp_path / "fp32.mlpackage"
    shutil.copytree(folder / "fp32.mlpackage", copy)
    shutil.copy(folder / "fp32.mlpackage.json", tmp_path / "fp32.mlpackage.json")
    blob = copy / "Data/com.apple.CoreML/weights/weight.bin"
    data = bytearray(blob.read_bytes())
    for i in range(len(data) - 4096, len(data) - 64, 8) if region == "tail" else range(64):
        data[i] ^= 0x40
    blob.write_bytes(bytes(data))
    result = cli("verify", copy, "--ref", "partialnet_t0")
    if ON_MAC:
        assert result.code == 1
    else:
        assert result.code == 1 and "fails its static checks" in result.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--min-target", "iOS9"], "--min-target 'iOS9': expected one of"),
        (["--fp32", "--half"], "exclude each other"),
        (["--dynamic"], "--dynamic does not apply to --format coreml"),
        (["--int8", "--data", "digits"], "--int8 does not apply to --format coreml"),
    ],
)
def test_bad_coreml_options_exit_2_before_loading(args, message, cli, tmp_path):
    result = cli("export", tmp_path / "missing.pth", "-f", "coreml", *args)
    assert result.code == 2 and message in result.err, result.err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not ON_MAC, reason="Core ML predicts on macOS only")
def test_on_macos_packages_are_verified_by_prediction(packages):
    _, made = packages
    assert made["fp32"]["parity"]["cases"] and made["fp32"]["parity"]["passed"]
