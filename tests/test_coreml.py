"""Core ML (.mlpackage): converted here; off macOS checked statically and executed by partialnet's reference
interpreter (a verdict that says so), by Core ML's own prediction on macOS. Hostile packages are refused."""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from helpers import never_loaded_checkpoint

pytest.importorskip("coremltools", reason="Core ML export needs pip install 'partialnet[coreml]'")

ON_MAC = sys.platform == "darwin"


WEIGHTS = "Data/com.apple.CoreML/weights/weight.bin"
SPEC = "Data/com.apple.CoreML/model.mlmodel"


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    """fp32 and fp16 (the default) tensor-input packages and an fp16 image-input one, of the seeded T0 at 64x64;
    then what the exports left in the temporary directory."""
    from partialnet import api

    folder = tmp_path_factory.mktemp("coreml")
    made = {}
    before = _converters_packages()
    for name, kwargs in (("fp32", {"fp32": True}), ("fp16", {}), ("fp16_image", {"image_input": True, "min_target": "macos13"})):  # any case, as typed
        made[name] = api.export("partialnet_t0", "coreml", api.ExportOptions(imgsz=(64, 64), **kwargs), output=folder / f"{name}.mlpackage",
                                checks=api.VerifyOptions(samples=2))
    return folder, made, _converters_packages() - before


def _converters_packages() -> set:
    """coremltools' own converted packages (tmpXXXX.mlpackage) in the temporary directory."""
    return set(Path(tempfile.gettempdir()).glob("tmp*.mlpackage"))


def test_an_export_leaves_no_package_of_the_converters_behind(packages):
    """By default coremltools converts into a /tmp package that only an exit hook removes, and the CLI leaves
    by os._exit: each export left a copy of the model there (7 MB for T0 at 64x64)."""
    *_, left_in_tmp = packages
    assert left_in_tmp == set()


def test_package_and_manifest_are_published_together(packages):
    folder, made, _ = packages
    assert sorted(p.name for p in folder.iterdir()) == [
        "fp16.mlpackage", "fp16.mlpackage.json", "fp16_image.mlpackage", "fp16_image.mlpackage.json", "fp32.mlpackage", "fp32.mlpackage.json"]
    package = folder / "fp32.mlpackage"
    assert (package / "Manifest.json").is_file() and (package / "Data/com.apple.CoreML/model.mlmodel").is_file()
    manifest = json.loads((folder / "fp32.mlpackage.json").read_text())
    assert manifest["format"] == "coreml" and manifest["bytes"] > 1_000_000 and len(manifest["sha256"]) == 64
    assert manifest["graph"]["compute_precision"] == "fp32" and manifest["graph"]["minimum_deployment_target"] == "iOS16"
    image = json.loads((folder / "fp16_image.mlpackage.json").read_text())
    assert image["graph"]["minimum_deployment_target"] == image["options"]["min_target"] == "macOS13"  # asked as macos13: recorded as Core ML names it


@pytest.mark.skipif(ON_MAC, reason="on macOS packages are verified by prediction instead")
@pytest.mark.parametrize("name, precision", [("fp32", "fp32"), ("fp16", "fp16"), ("fp16_image", "fp16")])
def test_off_macos_the_program_is_executed_by_the_reference_interpreter(packages, name, precision):
    _, made, _ = packages
    parity = made[name]["parity"]
    assert parity["executed"] and parity["passed"] and "reference interpreter: ok" in parity["verdict"]
    assert parity["why"] == "Core ML predicts on macOS only" and parity["precision"] == precision
    checks = {c["check"]: c for c in parity["checks"]}
    assert all(c["passed"] for c in checks.values())
    assert checks[f"{precision} weights equal the deploy model's"]["detail"].startswith("all 95 deploy tensors found bit-exact")
    assert "conv" in checks["op census"]["detail"] and "images" in checks["input"]["detail"]
    (case,) = parity["cases"]
    if precision == "fp32":
        assert case["max_abs"] <= 1e-5  # the program's fp32 arithmetic, as PyTorch's
    else:
        assert case["min_cosine"] >= 0.9999 and case["top1_agreement"] == 1.0 and case["max_abs"] <= 5e-3


def test_metadata_precision_and_image_input_read_back(packages):
    from partialnet.exporters.coreml import constants, read_io

    folder, *_ = packages
    fp32 = read_io(folder / "fp32.mlpackage")
    assert fp32["precision"] == "fp32" and fp32["input_kind"] == "tensor" and fp32["imgsz"] == (64, 64)
    assert fp32["metadata"]["variant"] == "partialnet_t0" and fp32["metadata"]["source_sha256"].startswith("random weights")
    image = read_io(folder / "fp16_image.mlpackage")
    assert image["precision"] == "fp16" and image["input_kind"] == "image"  # fp16 is the format's default
    assert any(c.dtype == np.float16 for c in constants(folder / "fp16_image.mlpackage"))


@pytest.mark.skipif(ON_MAC, reason="on macOS verify predicts")
def test_verify_off_macos_runs_the_program_and_says_how(packages, cli):
    folder, *_ = packages
    result = cli("verify", folder / "fp16.mlpackage", "--ref", "partialnet_t0")
    assert result.code == 0, result.err
    assert "ok: the artifact matches PyTorch (ML program executed by partialnet's reference interpreter: ok;" in result.out
    assert "fp16 weights equal the deploy model's" in result.out and "cosine" in result.out
    assert "- verify coreml checks without its runtime: " in result.err  # the stage that ran instead of the runtime


@pytest.mark.skipif(ON_MAC, reason="on macOS packages are verified by prediction instead")
def test_a_relu_variants_program_is_executed_too(tmp_path):
    """T2, S, M and L of both families use ReLU, which T0's tests never reach: their packages were only
    statically checked until the interpreter knew the op."""
    from partialnet import api

    made = api.export("partialnet_t2", "coreml", api.ExportOptions(imgsz=(64, 64)), output=tmp_path / "t2.mlpackage",
                      checks=api.VerifyOptions(samples=2))
    census = made["graph"]["op_counts"]
    assert census.get("relu", 0) > 0 and "gelu" not in census
    assert made["parity"]["executed"] and made["parity"]["passed"] and made["parity"]["cases"]


@pytest.mark.skipif(ON_MAC, reason="on macOS packages are verified by prediction instead")
def test_a_program_the_interpreter_cannot_run_is_written_and_export_exits_3(tmp_path, cli, monkeypatch):
    """Where the numbers cannot be computed here, export says so as verify does (exit 3), after publishing
    the package that passed every static check (a Mac can run it)."""
    from partialnet.runtimes import mil_reference

    monkeypatch.setattr(mil_reference, "KNOWN_OPS", mil_reference.KNOWN_OPS - {"gelu"})
    out = tmp_path / "t0.mlpackage"
    result = cli("export", "partialnet_t0", "-f", "coreml", "--imgsz", "64", "--samples", "2", "-o", out)
    assert result.code == 3, result.err
    assert (out / "Manifest.json").is_file() and (tmp_path / "t0.mlpackage.json").is_file()
    last = result.err.strip().splitlines()[-1]
    assert "static only: partialnet's reference interpreter does not know the op(s) gelu" in last
    assert "numbers were not computed here" in last and f"partialnet verify {out} --ref" in last
    assert "fp16 weights equal the deploy model's" in result.err  # the static checks it passed, shown above the line


def _copy(packages, tmp_path, name: str = "fp16", manifest: bool = True):
    folder, *_ = packages
    copy = tmp_path / f"{name}.mlpackage"
    shutil.copytree(folder / f"{name}.mlpackage", copy)
    if manifest:  # without its record of the package's sha256 (rewritten with it): the checks below must see a change on their own
        record = json.loads((folder / f"{name}.mlpackage.json").read_text())
        (tmp_path / f"{name}.mlpackage.json").write_text(json.dumps({k: v for k, v in record.items() if k != "sha256"}))
    return copy


def _edit_blob(copy, edit) -> None:
    blob = copy / WEIGHTS
    data = bytearray(blob.read_bytes())
    edit(data)
    blob.write_bytes(bytes(data))


def _first_data_offset(data: bytearray) -> tuple[int, int]:
    """(data offset, size in bytes) of the first tensor in a blob file (its record follows the 64-byte header)."""
    _, _, size, offset, *_ = struct.unpack("<IIQQ5Q", bytes(data[64:128]))
    return offset, size


def _zero_weights(data):  # 200 kB of weight values, records left intact
    records = [i for i in range(64, len(data) - 64, 64) if data[i : i + 4] == b"\xef\xbe\xad\xde"]
    for i in range(len(data) // 3, len(data) // 3 + 200_000):
        if not any(r <= i < r + 64 for r in records):
            data[i] = 0


def _every_7th(data):
    offset, size = _first_data_offset(data)
    for i in range(offset, len(data), 7):
        data[i] ^= 0x5A


def _headers(data):  # the blob file's own header: coremltools' reader chokes on it
    for i in range(64):
        data[i] ^= 0x40


def _one_value(data):
    offset, _ = _first_data_offset(data)
    data[offset + 10 : offset + 12] = b"\x00\x3c"  # one fp16 value := 1.0


@pytest.mark.parametrize("name", ["fp16", "fp32"])
@pytest.mark.parametrize("edit, expected", [(_zero_weights, "fails its static checks"), (_every_7th, "fails its static checks"),
                                            (_headers, "blob storage version"),
                                            (_one_value, "first tensor that differs: patch_embed.proj.weight")])
def test_tampered_weights_fail_at_any_precision(packages, tmp_path, cli, name, edit, expected):
    """fp16 weights are the deploy model's rounded to fp16, deterministically: checked bit for bit like fp32 ones."""
    copy = _copy(packages, tmp_path, name)
    if edit is _one_value and name == "fp32":
        _edit_blob(copy, lambda d: d.__setitem__(slice(_first_data_offset(d)[0] + 8, _first_data_offset(d)[0] + 12), b"\x00\x00\x80\x3f"))
    else:
        _edit_blob(copy, edit)
    result = cli("verify", copy, "--ref", "partialnet_t0")
    assert result.code == 1, result.err
    assert expected in result.err and "Traceback" not in result.err
    if edit is _zero_weights:  # with the manifest as export wrote it, the change is named at once
        folder, *_ = packages
        shutil.copy(folder / f"{name}.mlpackage.json", tmp_path / f"{name}.mlpackage.json")
        result = cli("verify", copy, "--ref", "partialnet_t0")
        assert result.code == 1 and f"{name}.mlpackage.json: records sha256" in result.err, result.err


def _program(copy):
    from coremltools.proto import Model_pb2

    model = Model_pb2.Model()
    model.ParseFromString((copy / SPEC).read_bytes())
    return model, model.mlProgram.functions["main"].block_specializations["CoreML6"]


def _save(copy, model) -> None:
    (copy / SPEC).write_bytes(model.SerializeToString())


@pytest.mark.skipif(ON_MAC, reason="on macOS Core ML itself predicts")
def test_a_changed_program_is_caught_by_the_census_or_by_its_numbers(packages, tmp_path, cli):
    for sub in "abc":
        (tmp_path / sub).mkdir()
    renamed = _copy(packages, tmp_path / "a", "fp16")
    model, block = _program(renamed)
    next(op for op in block.operations if op.type == "gelu").type = "silu"
    _save(renamed, model)
    census = cli("verify", renamed, "--ref", "partialnet_t0")
    assert census.code == 1 and "op census: 'gelu': 13 in the program, 14 when it was exported" in census.err

    (renamed.parent / "fp16.mlpackage.json").unlink()  # a stranger's package with no manifest: the op is unknown
    unknown = cli("verify", renamed, "--ref", "partialnet_t0")
    assert unknown.code == 3 and "static only: partialnet's reference interpreter does not know the op(s) silu" in unknown.err

    axis = _copy(packages, tmp_path / "b", "fp32")
    model, block = _program(axis)
    softmax = next(op for op in block.operations if op.type == "softmax")
    axis_const = softmax.inputs["axis"].arguments[0].name
    next(op for op in block.operations if op.outputs and op.outputs[0].name == axis_const).attributes["val"].immediateValue.tensor.ints.values[:] = [2]
    _save(axis, model)
    numbers = cli("verify", axis, "--ref", "partialnet_t0")
    assert numbers.code == 1 and "does not match PyTorch in partialnet's reference interpreter" in numbers.err and "max |Δ|" in numbers.err

    shape = _copy(packages, tmp_path / "c", "fp32")
    model, block = _program(shape)
    transpose = [op for op in block.operations if op.type == "transpose"][1]  # (1, 4, 12, 48) -> (1, 12, 4, 48) in T0 at 64
    perm_const = transpose.inputs["perm"].arguments[0].name
    perm = next(op for op in block.operations if op.outputs and op.outputs[0].name == perm_const)
    perm.attributes["val"].immediateValue.tensor.ints.values[:] = [0, 1, 2, 3]
    _save(shape, model)
    result = cli("verify", shape, "--ref", "partialnet_t0")
    assert result.code == 2 and "the program declares" in result.err and "Traceback" not in result.err


@pytest.mark.skipif(ON_MAC, reason="on macOS Core ML itself predicts")
def test_metadata_that_lies_about_the_precision_fails(packages, tmp_path, cli):
    copy = _copy(packages, tmp_path, "fp16")
    model, _ = _program(copy)
    model.description.metadata.userDefined["precision"] = "fp32"
    _save(copy, model)
    result = cli("verify", copy, "--ref", "partialnet_t0")
    assert result.code == 1 and "its metadata says fp32, but what it holds is fp16" in result.err


def _replace(copy, rel: str, how: str) -> None:
    target = copy / rel
    target.unlink()
    if how == "fifo":
        os.mkfifo(target)
    else:
        os.symlink(how, target)


@pytest.mark.parametrize("rel", [WEIGHTS, SPEC, "Manifest.json"])
@pytest.mark.parametrize("how, what", [("/dev/zero", "is a symbolic link"), ("/etc/passwd", "is a symbolic link"),
                                       ("fifo", "is a FIFO (named pipe)")])
def test_links_fifos_and_devices_inside_a_package_are_refused(packages, tmp_path, cli, rel, how, what):
    copy = _copy(packages, tmp_path, "fp16")
    _replace(copy, rel, how)
    for command in (["verify", copy, "--ref", "partialnet_t0"], ["bench", copy, "--protocol", "quick"]):
        result = cli(*command)
        assert result.code == 2, (command, result.err)
        assert f"{rel} {what}; a package holds folders and regular files only" in result.err and "Traceback" not in result.err


def test_a_package_that_is_a_link_or_names_a_model_outside_is_refused(packages, tmp_path, cli):
    folder, *_ = packages
    link = tmp_path / "link.mlpackage"
    link.symlink_to(folder / "fp16.mlpackage")
    result = cli("verify", link, "--ref", "partialnet_t0")
    assert result.code == 2 and "is a symbolic link; give the package folder itself" in result.err
    copy = _copy(packages, tmp_path, "fp16")
    manifest = json.loads((copy / "Manifest.json").read_text())
    manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]["path"] = "../../../etc/passwd"
    (copy / "Manifest.json").write_text(json.dumps(manifest))
    result = cli("verify", copy, "--ref", "partialnet_t0")
    assert result.code == 2 and "leaves the package" in result.err


def test_a_weights_record_that_lies_about_its_size_is_refused_before_reading(packages, tmp_path, cli):
    copy = _copy(packages, tmp_path, "fp16")
    _edit_blob(copy, lambda d: d.__setitem__(slice(72, 80), struct.pack("<Q", 1 << 40)))  # first record: 1 TB of data
    result = cli("verify", copy, "--ref", "partialnet_t0")
    assert result.code == 1 and "holds 1,099,511,627,776 bytes" in result.err


def test_format_all_refuses_a_folder_name_with_control_characters(tmp_path, cli):
    result = cli("export", "partialnet_t0", "--format", "all", "--imgsz", "64", "-o", tmp_path / "a\nb")
    assert result.code == 2 and "control characters (\\n)" in result.err
    assert list(tmp_path.iterdir()) == []


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
    ckpt = never_loaded_checkpoint(tmp_path / "stub.pth")
    result = cli("export", ckpt, "-f", "coreml", *args)
    assert result.code == 2 and message in result.err, result.err
    assert list(tmp_path.iterdir()) == [ckpt]


@pytest.mark.skipif(not ON_MAC, reason="Core ML predicts on macOS only")
def test_on_macos_packages_are_verified_by_prediction(packages):
    _, made, _ = packages
    assert made["fp32"]["parity"]["cases"] and made["fp32"]["parity"]["passed"]


@pytest.mark.skipif(ON_MAC, reason="on macOS packages are verified by prediction, which judges the digits as every runtime does")
def test_the_digits_check_asked_for_runs_in_the_reference_interpreter(digits_all):
    """Off macOS, `verify --dataset digits` of a package printed parity only and exit 0: the check asked for was
    dropped without a word, where Core ML's fp16 is exactly where an accuracy cost would show."""
    rows = {row["format"]: row for row in json.loads(digits_all.result.out)["rows"]}
    assert rows["coreml"]["digits_top1"] >= 0.9, rows["coreml"]  # export --format all judges it as it does every format
    package = next(digits_all.folder.glob("*.mlpackage"))  # verify reaches the same check (pipeline.static_verification)
    accuracy = json.loads(package.with_name(package.name + ".json").read_text())["parity"]["accuracy"]
    assert accuracy["dataset"] == "digits" and accuracy["samples"] == 540 and accuracy["failures"] == [], accuracy
    assert accuracy["artifact_top1"] >= 0.9 and abs(accuracy["delta_points"]) <= 0.5
