"""OpenVINO IR export (`--format openvino`): the .xml/.bin pair, its metadata, and its verification."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("openvino", reason="OpenVINO IR needs pip install 'partialnet[openvino]'")


@pytest.fixture(scope="module")
def ir(tmp_path_factory, request):
    from partialnet import api

    out = tmp_path_factory.mktemp("ir") / "t0.xml"
    api.export("partialnet_t0", "ov", api.ExportOptions(imgsz=(64, 64)), output=out, checks=api.VerifyOptions(samples=2))
    return out


def test_ir_pair_and_manifest_are_published_together(ir):
    assert ir.is_file() and ir.with_suffix(".bin").is_file()
    manifest = json.loads(ir.with_name("t0.xml.json").read_text())
    assert manifest["format"] == "openvino" and manifest["parity"]["passed"]
    assert manifest["graph"]["weights"] == "fp32" and "verify_path" not in manifest["graph"]
    assert sorted(p.name for p in ir.parent.iterdir()) == ["t0.bin", "t0.xml", "t0.xml.json"]


def test_ir_carries_its_metadata_in_rt_info(ir):
    from partialnet.exporters.openvino import read_io

    io = read_io(ir)
    assert io["imgsz"] == (64, 64) and io["batch"] == 1 and io["precision"] == "fp32"
    assert io["metadata"]["variant"] == "partialnet_t0" and io["metadata"]["producer"] == "partialnet"


def test_verify_runs_ir_in_openvino(cli, ir):
    result = cli("verify", ir, "--ref", "partialnet_t0", "--samples", "2", "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert report["candidate"] == "openvino" and report["cases"][0]["max_abs"] < 1e-4


def test_verify_says_when_openvino_computes_another_precision_by_default(cli, ir):
    """On a bf16 CPU a plain compile_model computes bf16; the check pins f32 and passed with no word that the user's own
    load would not reproduce its numbers (max |Δ| 4e-2 against the 1e-4 gate it printed as passed)."""
    from partialnet.runtimes.openvino import _precision_name, core

    default = _precision_name(core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
    result = cli("verify", ir, "--ref", "partialnet_t0", "--samples", "2", "--json")
    assert result.code == 0, result.err
    said = result.json().get("default_differs")
    shown = cli("verify", ir, "--ref", "partialnet_t0", "--samples", "2")
    if default == "fp32":  # an AVX2 machine: nothing to say
        assert said is None and "unless told otherwise" not in shown.err
        return
    assert said.startswith(f"OpenVINO on this CPU computes {default} unless told otherwise; these figures are at fp32, pinned"), said
    assert "{'INFERENCE_PRECISION_HINT': 'f32'}" in said and f"note: {said}" in " ".join(shown.err.split()), shown.err


def test_verify_computes_the_fp32_ir_in_bf16_where_the_cpu_can(cli, ir):
    """The matrix's bf16 row, as a user re-checks it: the fp32 file, OpenVINO asked for bf16, judged by bf16's gates."""
    result = cli("verify", ir, "--ref", "partialnet_t0", "--samples", "2", "--compute", "BF16", "--json")  # any case
    from partialnet.runtimes.openvino import cpu_capabilities

    if "BF16" not in cpu_capabilities():
        assert result.code == 3 and "no native bf16" in result.err, result.err
        return
    assert result.code == 0, result.err
    report = result.json()
    assert report["precision"] == "bf16" and report["tolerances"]["min_cosine"] == 0.995
    assert 0 < report["cases"][0]["max_abs"] < 0.05  # bf16 round-off: not fp32's exactness, well within the gates


@pytest.mark.parametrize("args, message", [
    (["--compute", "fp8"], "--compute 'fp8': expected bf16"),
    (["--compute", "fp8", "--target", "ssh://nowhere.invalid"], "--compute 'fp8': expected bf16"),  # refused before ssh runs
])
def test_verify_refuses_a_compute_it_cannot_honour(cli, ir, args, message):
    result = cli("verify", ir, "--ref", "partialnet_t0", *args)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_verify_refuses_bf16_for_a_runtime_without_that_mode(cli, digits_onnx, digits_ckpt):
    result = cli("verify", digits_onnx, "--ref", digits_ckpt, "--compute", "Bf16")
    assert result.code == 2 and "onnxruntime does not compute bf16 from the file (runtimes that do: openvino)" in result.err


def test_half_ir_is_judged_as_fp16(cli, tmp_path):
    out = tmp_path / "half.xml"
    result = cli("export", "partialnet_t0", "--format", "ir", "--imgsz", "64", "--half", "-o", out, "--samples", "2")
    assert result.code == 0, result.err
    manifest = json.loads((tmp_path / "half.xml.json").read_text())
    assert manifest["graph"]["weights"] == "fp16-compressed" and manifest["parity"]["precision"] == "fp16"
    assert out.with_suffix(".bin").stat().st_size < 8_000_000  # half of the ~13.9 MB fp32 weights
    # judged as bench times it: f16 where the CPU has fp16 units, else f32 from the fp16 weights, and said so
    from partialnet.runtimes.openvino import cpu_capabilities

    native = "FP16" in cpu_capabilities()
    assert manifest["parity"]["computed"] == ("fp16" if native else "fp32")
    assert ("fp16 gates:" if native else "fp16 (computed in fp32 here) gates:") in result.out


def test_ir_outputs_are_checked_and_failures_leave_nothing(cli, tmp_path):
    (tmp_path / "m.bin").write_bytes(b"someone else's weights")
    taken = cli("export", "partialnet_t0", "--format", "openvino", "--imgsz", "64", "-o", tmp_path / "m.xml")
    assert taken.code == 2 and "m.bin already exists" in taken.err
    failed = cli("export", "partialnet_t0", "--format", "openvino", "--imgsz", "64", "-o", tmp_path / "f.xml", "--atol", "1e-12", "--samples", "2")
    assert failed.code == 1 and "max |Δ|" in failed.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin"]


def test_missing_backend_is_exit_3_before_any_load(cli, tmp_path, monkeypatch):
    import importlib.util

    from partialnet import checkpoint

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    monkeypatch.setattr(checkpoint, "read_file", lambda *a: pytest.fail("loaded before the backend was checked"))
    result = cli("export", "partialnet_t0", "--format", "openvino", "-o", tmp_path / "m.xml")
    assert result.code == 3 and "pip install 'partialnet[openvino]'" in result.err


def test_bench_times_ir_in_openvino_at_its_own_size(cli, ir, tmp_path):
    result = cli("bench", ir, "--protocol", "quick", "--threads", "1", "--json", tmp_path / "r.json")
    assert result.code == 0, result.err
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    by_runtime = {r["runtime"]: r for r in rows}
    assert by_runtime["openvino"]["status"] == "ok" and by_runtime["openvino"]["imgsz"] == [64, 64]
    assert by_runtime["openvino"]["parity_max_abs"] < 1e-4  # exported from a variant name: seeded weights
    assert by_runtime["onnxruntime"]["status"] == "skipped" and "does not run openvino artifacts" in by_runtime["onnxruntime"]["reason"]


@pytest.mark.parametrize("how, what", [("/dev/zero", "is a symbolic link"), ("outside", "is a symbolic link"), ("fifo", "is a FIFO (named pipe)")])
def test_an_ir_whose_weights_are_not_its_own_regular_file_is_refused(ir, tmp_path, cli, how, what):
    """The .bin beside an IR is part of the artifact: a link (even to a real IR's weights elsewhere) or a FIFO is refused."""
    import os
    import shutil

    copy = tmp_path / "t0.xml"
    shutil.copy(ir, copy)
    if how == "fifo":
        os.mkfifo(tmp_path / "t0.bin")
    else:
        os.symlink(ir.with_suffix(".bin") if how == "outside" else how, tmp_path / "t0.bin")
    for command in (["verify", copy, "--ref", "partialnet_t0", "--samples", "2"], ["bench", copy, "--protocol", "quick"]):
        result = cli(*command)
        assert result.code == 2, (command, result.err)
        assert f"t0.bin: {what}" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("edit, code, fragment", [
    (lambda xml: xml.replace('<precision value="fp32" />', '<precision value="fp16" />'), 1, "its metadata says fp16, but what it holds is fp32"),
    (lambda xml: __import__("re").sub(r"<partialnet>.*?</partialnet>", '<partialnet value="plain" />', xml, flags=__import__("re").S), 2,
     "its rt_info 'partialnet' section is not a map of strings"),
])
def test_an_ir_whose_metadata_is_wrong_is_caught(ir, tmp_path, cli, edit, code, fragment):
    import shutil

    copy = tmp_path / "t0.xml"
    copy.write_text(edit(ir.read_text()))
    shutil.copy(ir.with_suffix(".bin"), tmp_path / "t0.bin")
    result = cli("verify", copy, "--ref", "partialnet_t0", "--samples", "2")
    assert result.code == code and fragment in result.err and "Traceback" not in result.err


def test_a_file_that_is_not_ir_is_refused_without_library_noise(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "r.xml").write_bytes(os.urandom(3000))
    (tmp_path / "r.bin").write_bytes(os.urandom(3000))
    done = subprocess.run([sys.executable, "-m", "partialnet", "verify", str(tmp_path / "r.xml"), "--ref", "partialnet_t0"],
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.strip().splitlines() if not line.lstrip().startswith("- ")]
    assert done.returncode == 2 and lines == [f"error: {tmp_path / 'r.xml'}: not a readable OpenVINO IR"], done.stderr


def test_a_padded_ir_is_refused_before_it_is_parsed(ir, tmp_path, cli):
    """An .xml padded to 1.9 GB (sparse: no disk used) is refused by its size, not parsed into gigabytes."""
    import shutil

    copy = tmp_path / "t0.xml"
    shutil.copy(ir, copy)
    shutil.copy(ir.with_suffix(".bin"), tmp_path / "t0.bin")
    with copy.open("r+b") as f:
        f.truncate(1_900_000_000)
    result = cli("verify", copy, "--ref", "partialnet_t0")
    assert result.code == 2 and "more than the 67,108,864-byte limit for an OpenVINO IR (.xml)" in result.err


def test_the_manifest_vouches_for_the_weights_beside_the_xml_too(ir, tmp_path, cli):
    """The .bin holds the IR's weights: a change to it (one low mantissa byte, which no parity gate would see)
    fails verify and bench where the manifest records each companion's sha256; a manifest naming a path, or
    a file that is not there, is refused."""
    import shutil

    copy = tmp_path / "t0.xml"
    for suffix in (".xml", ".bin", ".xml.json"):
        shutil.copy(ir.with_name("t0" + suffix), tmp_path / ("t0" + suffix))
    manifest = json.loads((tmp_path / "t0.xml.json").read_text())
    assert manifest["companion_sha256"] == {".bin": __import__("hashlib").sha256((tmp_path / "t0.bin").read_bytes()).hexdigest()}
    weights = bytearray((tmp_path / "t0.bin").read_bytes())
    weights[len(weights) // 2 & ~3] ^= 1
    (tmp_path / "t0.bin").write_bytes(bytes(weights))
    for command in (["verify", copy, "--ref", "partialnet_t0", "--samples", "2"], ["bench", copy, "--protocol", "quick"]):
        result = cli(*command)
        assert result.code == 1 and "t0.xml.json: records sha256" in result.err and "but t0.bin hashes to another" in result.err, result.err
    for hashes, code, fragment in (({"/../t0.bin": "0" * 64}, 2, "companion_sha256 names '/../t0.bin', not a file suffix"),
                                   ({".bin": "nope"}, 2, "companion_sha256 of '.bin' is not a sha256 digest"),
                                   ({".weights": "0" * 64}, 1, "records t0.weights beside t0.xml, but there is none")):
        (tmp_path / "t0.xml.json").write_text(json.dumps({**manifest, "companion_sha256": hashes}))
        result = cli("verify", copy, "--ref", "partialnet_t0", "--samples", "2")
        assert result.code == code and fragment in result.err and "Traceback" not in result.err, result.err
