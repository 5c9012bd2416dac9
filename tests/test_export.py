"""ONNX export as a user runs it: folded, simplified, verified in ONNX Runtime, atomic, self-describing."""

import json
import re

import numpy as np
import onnx
import pytest
import torch

from helpers import golden, never_loaded_checkpoint
from partialnet.exporters.onnx import read_io
from partialnet.runtimes.onnxruntime import OnnxRuntimeRunner

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def t0_export(tmp_path_factory):
    """The T0 fixture exported once through the CLI at 224 (what the golden logits were made at)."""
    from partialnet import api

    out = tmp_path_factory.mktemp("export") / "t0.onnx"
    result = api.export(str(golden("t0")[0]), output=out)
    return out, result


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["t0", "t1"])
def test_fixture_onnx_reproduces_reference_logits(variant, cli, tmp_path):
    ckpt, x, expected = golden(variant)
    out = tmp_path / f"{variant}.onnx"
    result = cli("export", ckpt, "-o", out)
    assert result.code == 0, result.err
    runner = OnnxRuntimeRunner(out, threads=1)
    runner.prepare()
    logits = np.concatenate([runner.infer(x[i : i + 1].numpy()) for i in range(len(x))])
    assert np.abs(logits - expected.numpy()).max() <= TOLERANCE
    counts = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert not counts & {"BatchNormalization", "ScatterND", "ScatterElements"}


def test_metadata_and_manifest(t0_export):
    out, result = t0_export
    meta = read_io(out)["metadata"]
    for key in ("variant", "source_sha256", "imgsz", "layout", "mean", "std", "num_classes", "partialnet_version", "fold"):
        assert meta.get(key), key
    assert meta["variant"] == "partialnet_t0" and meta["imgsz"] == "224,224" and meta["layout"] == "NCHW"
    assert meta["input"] == "images: float32 RGB, normalised" and meta["preprocess"].startswith("bicubic resize short side to ")
    assert json.loads(meta["mean"]) == [0.485, 0.456, 0.406]
    manifest = json.loads(out.with_name(out.name + ".json").read_text())
    assert manifest["parity"]["passed"] and manifest["fold"]["batchnorms_after"] == 0
    assert manifest["sha256"] and manifest["seconds"]["verify"] >= 0 and manifest["graph"]["simplify"] == "ok"
    assert manifest["source"]["sha256"] == meta["source_sha256"]


@pytest.mark.slow
def test_dynamic_batch_is_verified_at_two_batch_sizes(cli, tmp_path):
    out = tmp_path / "dyn.onnx"
    result = cli("export", "partialnet_t1", "-o", out, "--dynamic", "--imgsz", "64")
    assert result.code == 0, result.err
    assert "RANDOM" in result.out
    io = read_io(out)
    assert io["dynamic"] and io["imgsz"] == (64, 64)
    cases = json.loads(out.with_name("dyn.onnx.json").read_text())["parity"]["cases"]
    assert [c["batch"] for c in cases] == [1, 4]
    runner = OnnxRuntimeRunner(out)
    runner.prepare()
    assert runner.infer(np.zeros((3, 3, 64, 64), np.float32)).shape == (3, 1000)


def test_static_batch_and_no_simplify(cli, tmp_path):
    out = tmp_path / "b2.onnx"
    result = cli("export", "fasternet_t0", "-o", out, "--batch", "2", "--imgsz", "64", "--no-simplify", "--opset", "18")
    assert result.code == 0, result.err
    io = read_io(out)
    assert io["batch"] == 2 and not io["dynamic"]
    manifest = json.loads(out.with_name("b2.onnx.json").read_text())
    assert manifest["graph"]["simplify"] == "skipped" and manifest["options"]["opset"] == 18


@pytest.mark.slow
def test_half_is_judged_by_cosine_and_top1(cli, tmp_path):
    out = tmp_path / "half.onnx"
    result = cli("export", golden("t0")[0], "-o", out, "--half", "--imgsz", "64")
    assert result.code == 0, result.err
    parity = json.loads(out.with_name("half.onnx.json").read_text())["parity"]
    assert parity["precision"] == "fp16" and parity["tolerances"]["max_abs"] is None
    assert read_io(out)["metadata"]["input"] == "images: float16 RGB, normalised"  # the graph's input is float16: it said "float RGB"
    assert parity["tightest_passing"]["min_cosine"] >= 0.999
    # what ONNX Runtime's CPU provider computes: on an x86 CPU without AVX512-FP16 it casts around every convolution
    # and runs it in fp32, so a bench row says fp32 (it said fp16)
    import platform

    from partialnet.runtimes.onnxruntime import OnnxRuntimeRunner, computes_fp16_on_cpu

    runner = OnnxRuntimeRunner(str(out), threads=1)
    runner.prepare()
    native = computes_fp16_on_cpu(out)
    assert runner.precision == ("fp16" if native else "fp32") and parity["computed"] == runner.precision
    flags = open("/proc/cpuinfo").read() if platform.system() == "Linux" else ""
    if platform.machine() in ("x86_64", "AMD64") and "avx512_fp16" not in flags:
        assert not native


def test_an_existing_default_output_is_named_as_the_default_not_as_an_o_never_passed(cli, tmp_path):
    """The README tour's `export -f openvino --half` then `export -f all`: both write model.xml beside the checkpoint."""
    ckpt = never_loaded_checkpoint(tmp_path / "model.pth")  # the outputs are checked before it is loaded
    (tmp_path / "model.xml").write_bytes(b"precious")
    for fmt in ("openvino", "all"):
        result = cli("export", ckpt, "-f", fmt)
        assert result.code == 2 and f"the default output (no -o given): {tmp_path / 'model.xml'} already exists" in result.err, result.err
    assert (tmp_path / "model.xml").read_bytes() == b"precious"


@pytest.mark.slow
def test_existing_output_is_not_overwritten_without_force(cli, tmp_path):
    out = tmp_path / "x.onnx"
    out.write_bytes(b"precious")
    result = cli("export", "partialnet_t0", "-o", out, "--imgsz", "64")
    assert result.code == 2 and "already exists" in result.err
    assert out.read_bytes() == b"precious"
    result = cli("export", "partialnet_t0", "-o", out, "--imgsz", "64", "--force")
    assert result.code == 0 and out.read_bytes() != b"precious"


@pytest.mark.slow
def test_failed_verification_leaves_nothing_behind(cli, tmp_path):
    out = tmp_path / "strict.onnx"
    result = cli("export", golden("t0")[0], "-o", out, "--imgsz", "64", "--atol", "1e-12")
    assert result.code == 1 and "does not match PyTorch" in result.err and "max |Δ|" in result.err
    assert list(tmp_path.iterdir()) == []


def corrupt_weights(src, dst):
    """Flip the sign of the largest initializer: a plausible-looking file with wrong numbers."""
    model = onnx.load(str(src))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    array = onnx.numpy_helper.to_array(biggest)
    biggest.CopyFrom(onnx.numpy_helper.from_array(-array, biggest.name))
    onnx.save(model, str(dst))


def test_corrupted_artifact_fails_verify_with_exit_1(cli, t0_export, tmp_path):
    out, _ = t0_export
    bad = tmp_path / "bad.onnx"
    corrupt_weights(out, bad)
    result = cli("verify", bad, "--ref", golden("t0")[0])
    assert result.code == 1 and "does not match PyTorch" in result.err and "FAIL" in result.err
    as_json = cli("verify", bad, "--ref", golden("t0")[0], "--json")  # a script still gets the report, not an empty stdout
    report = json.loads(as_json.out)
    assert as_json.code == 1 and report["passed"] is False and "does not match PyTorch" in report["error"] and report["cases"]


def test_verify_passes_on_the_good_artifact(cli, t0_export):
    out, _ = t0_export
    result = cli("verify", out, "--ref", golden("t0")[0], "--json")
    assert result.code == 0, result.err
    assert result.json()["passed"] and result.json()["tightest_passing"]["max_abs"] <= TOLERANCE
    shown = cli("verify", out, "--ref", golden("t0")[0], "--samples", "2")
    atol, cosine = re.search(r"tightest\s+that\s+would\s+pass:\s+max\s+\|Δ\|\s+≤\s+(\S+),\s+cosine\s+≥\s+(\S+),", shown.out).groups()
    again = cli("verify", out, "--ref", golden("t0")[0], "--samples", "2", "--atol", atol, "--min-cosine", cosine)
    assert again.code == 0, (atol, cosine, again.err)  # the tightest shown passes when given back
    again = cli("verify", out, "--ref", golden("t0")[0], "--samples", "2", "--atol", atol, "--min-cosine", cosine, "--min-top1", "0.996")
    gates = re.search(r"fp32 gates: (.*?) ·", again.out.replace("\n", " ")).group(1)
    assert "top-1 ≥ 99.6%" in gates, gates  # it read "≥ 100%"
    assert f"cosine ≥ {float(cosine)!r}" in gates and f"max |Δ| ≤ {float(atol)!r}" in gates, gates  # as given: 'g' rounded 0.99999999 to 1


def test_verify_on_images(cli, t0_export, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for i, size in enumerate([(300, 260), (224, 224), (640, 480)]):
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).save(tmp_path / f"img{i}.png")
    out, _ = t0_export
    result = cli("verify", out, "--ref", golden("t0")[0], "--images", tmp_path, "--json")
    assert result.code == 0, result.err
    cases = {c["name"]: c for c in result.json()["cases"]}
    assert cases["images (3)"]["samples"] == 3


def test_the_padding_of_a_static_batch_is_not_judged_as_samples():
    """4 images through a static batch of 3: the last batch is padded with the first image. That padding was
    counted (samples 6) and weighed the first image three times in the top-1 agreement."""
    from partialnet.verify import Tolerances, compare, image_batches

    images = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)

    class Logits:
        def __init__(self, name, flip_first):
            self.name, self.flip_first = name, flip_first

        def infer(self, batch):
            out = batch.reshape(len(batch), -1)[:, :10].copy()
            if self.flip_first:  # disagrees on the first image only
                out[np.all(batch == images[0], axis=(1, 2, 3))] *= -1
            return out

    batches = image_batches(images, 3)
    assert [len(b) for b in batches] == [3, 3]
    report = compare(Logits("artifact", True), Logits("pytorch", False), [("images (4)", batches)], Tolerances(), "fp32")
    (case,) = report.cases
    assert case.samples == 4 and case.top1_agreement == 0.75


@pytest.mark.parametrize(
    "args, code, fragment",
    [
        (["verify", "nope.onnx", "--ref", "partialnet_t0"], 2, "no such file"),
        (["verify", "GARBAGE", "--ref", "partialnet_t0"], 2, "not a readable ONNX file"),
        (["verify", "T0ONNX", "--ref", "partialnet_t0"], 2, "was exported from partialnet_t0 weights with sha256"),
        (["verify", "T0ONNX", "--ref", "T1CKPT"], 2, "but --ref"),
        (["export", "partialnet_t0", "--format", "tensorflow"], 2, "unknown format"),
        (["export", "partialnet_t0", "--opset", "11", "-o", "OUT"], 2, "opset 11 unsupported"),
        (["export", "partialnet_t0", "-o", "model.pt"], 2, "must end in .onnx"),
        (["export", "partialnet_t0", "--images", "nope_dir", "-o", "OUT"], 2, "--images nope_dir: no such folder"),
    ],
)
def test_export_and_verify_bad_inputs(cli, t0_export, tmp_path, args, code, fragment):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not onnx at all")
    subst = {"GARBAGE": garbage, "T0ONNX": t0_export[0], "T1CKPT": golden("t1")[0], "OUT": tmp_path / "o.onnx"}
    result = cli(*[str(subst.get(a, a)) for a in args])
    assert result.code == code and fragment in result.err, result.err
    assert "Traceback" not in result.err
    assert not (tmp_path / "o.onnx").exists()


def test_fold_command_writes_deploy_and_report(cli, tmp_path):
    out = tmp_path / "t1.deploy.pt"
    result = cli("fold", golden("t1")[0], "-o", out, "--imgsz", "64")
    assert result.code == 0, result.err
    report = json.loads((tmp_path / "t1.deploy.pt.fold.json").read_text())["report"]
    assert report["batchnorms_after"] == 0 and report["max_abs_diff"] <= TOLERANCE
    assert "pat-sp" in result.out and "65 → 0" in result.out
    again = cli("fold", golden("t1")[0], "-o", out)
    assert again.code == 2 and "already exists" in again.err


def test_export_options_read_imgsz_as_the_command_line_does():
    from partialnet import BadInput, ExportOptions

    assert ExportOptions(imgsz=64).imgsz == (64, 64) and ExportOptions(imgsz="224,320").imgsz == (224, 320)
    with pytest.raises(BadInput, match="--imgsz: image size 63x63 unsupported"):
        ExportOptions(imgsz=63)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's own, from inside run_decompositions
def test_provenance_is_forgotten_between_stages_and_the_program_still_runs():
    """fx's `from_node` history grew and was deep-copied by every pass (a sixth of an ExecuTorch lowering)."""
    from partialnet.exporters.provenance import forget_provenance

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.GELU()).eval()
    x = torch.randn(1, 3, 8, 8)
    program = torch.export.export(model, (x,)).run_decompositions()
    nodes = [n for n in program.graph_module.graph.nodes if n.op == "call_function"]
    assert any("from_node" in n.meta for n in nodes)  # what torch records (if it stops, this function has nothing to do)
    forget_provenance(program.graph_module)
    assert not any("from_node" in n.meta for n in program.graph_module.graph.nodes)
    assert all("nn_module_stack" in n.meta for n in nodes)  # what --int8-keep-float and the per-layer report read stays
    with torch.no_grad():
        assert torch.equal(program.module()(x), model(x))
