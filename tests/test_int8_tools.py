"""INT8 that can be repaired: a calibration method, layers and op kinds kept in float, and the per-layer
report that names them when an INT8 artifact fails its gate."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from helpers import DIGITS_INT8_CALIB
from partialnet.errors import BadInput
from partialnet.exporters.formats import FORMATS
from partialnet.exporters.options import ExportOptions, check_combination, check_int8_tools, keep_float

pytest.importorskip("sklearn", reason="INT8 is calibrated and judged on the digits yardstick (pip install 'partialnet[digits]')")
Image = pytest.importorskip("PIL.Image")


def test_keep_float_reads_layers_and_kinds():
    assert keep_float("head, stages.2.blocks.0.mlp.0,conv,Concat") == (["head", "stages.2.blocks.0.mlp.0"], ["conv", "concat"])
    for bad in ("stages..0", "a/b", "$(touch x)", " , "):
        with pytest.raises(BadInput, match="--int8-keep-float"):
            keep_float(bad)
    with pytest.raises(BadInput, match="--int8-keep-float '': an empty list"):  # was "--int8-keep-float : expected a layer"
        keep_float("")
    with pytest.raises(BadInput, match="an empty item between commas"):
        keep_float("head,,conv")


@pytest.mark.parametrize("fmt, options, fragment", [
    ("openvino", {"calib_method": "entropy"}, "openvino calibrates with mean-minmax, minmax, percentile, histogram"),
    ("executorch", {"calib_method": "percentile"}, "executorch calibrates with histogram, minmax"),
    ("onnx", {"calib_method": "kl"}, "(methods: minmax, mean-minmax, entropy, percentile, histogram)"),
    ("litert", {"int8_keep_float": "concat"}, "litert keeps op kinds conv, linear in float; name the layers instead"),
])
def test_a_method_or_kind_the_quantizer_lacks_is_refused_by_name(fmt, options, fragment):
    with pytest.raises(BadInput) as caught:
        check_int8_tools(FORMATS[fmt], ExportOptions(int8=True, data="digits", **options))
    assert fragment in str(caught.value)


def test_the_int8_tools_need_int8():
    with pytest.raises(BadInput, match="--calib-method shapes an INT8 export; add --int8"):
        check_combination(ExportOptions(calib_method="minmax"))


def test_an_unknown_layer_exits_2_before_the_export(cli, tmp_path):
    result = cli("export", "partialnet_t0", "--imgsz", "64", "--int8", "--data", "digits", "--int8-keep-float", "stages.9", "-o", tmp_path / "q.onnx")
    assert result.code == 2 and "--int8-keep-float stages.9: no such layer" in result.err, result.err
    result = cli("export", "partialnet_t0", "-f", "coreml", "--int8-keep-float", "head", "-o", tmp_path / "q.mlpackage")
    assert result.code == 2 and "--int8-keep-float does not apply to --format coreml" in result.err, result.err


def _qdq_nodes(path) -> int:
    return sum(1 for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear")


def test_keep_float_and_the_method_change_the_onnx_graph(cli, digits_ckpt, digits_int8_onnx, tmp_path):
    common = ("--imgsz", "64", "--int8", "--data", "digits", "--calib-size", str(DIGITS_INT8_CALIB), "--samples", "2")
    (plain, _), kept = digits_int8_onnx, tmp_path / "kept.onnx"  # the same options without the INT8 tools
    result = cli("export", digits_ckpt, *common, "--int8-keep-float", "head,stages.6,concat", "--calib-method", "percentile", "-o", kept)
    assert result.code == 0, result.err
    assert _qdq_nodes(kept) < _qdq_nodes(plain)
    graph = onnx.load(str(kept)).graph
    feeds = {n.output[0]: n.op_type for n in graph.node}
    gemm = [n for n in graph.node if n.op_type in ("Gemm", "MatMul")][-1]  # the head: fed by float, not by a DequantizeLinear
    assert feeds.get(gemm.input[0]) != "DequantizeLinear"
    quantization = json.loads(kept.with_name("kept.onnx.json").read_text())["graph"]["quantization"]
    assert quantization["calibration"].startswith("Percentile") and quantization["kept_float_nodes"] > 0
    # every layer kept: no weight is int8, also in the Gemm nodes the quantizer's pre-processing fuses and renames
    everything = tmp_path / "float.onnx"
    done = cli("export", digits_ckpt, *common, "--int8-keep-float", "patch_embed,stages,avgpool_pre_head,head", "-o", everything)
    graph = onnx.load(str(everything)).graph
    weights = {i.name for i in graph.initializer}
    assert done.code == 0 and not [n.name for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in weights], done.err


def test_a_node_the_simplifier_added_belongs_to_the_block_that_uses_it():
    """onnxsim puts a Split (the partial convolution's) at a block's start, fed by the previous block's Add:
    it counted as that previous block, so --int8-keep-float stages.0.blocks.1 left it out."""
    from onnx import TensorProto, helper

    from partialnet.exporters.onnx import excluded_nodes, layers_of

    def graph(*nodes):
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        return helper.make_model(helper.make_graph(list(nodes), "g", [x], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])]))

    traced = graph(helper.make_node("Relu", ["x"], ["a"], name="add_0"),
                   helper.make_node("Relu", ["a"], ["b"], name="conv_1"), helper.make_node("Concat", ["b", "a"], ["y"], name="cat_1", axis=1))
    simplified = graph(helper.make_node("Relu", ["x"], ["a"], name="add_0"),
                       helper.make_node("Split", ["a"], ["s0", "s1"], name="node_Split_9", axis=1),
                       helper.make_node("Relu", ["s0"], ["b"], name="conv_1"), helper.make_node("Concat", ["b", "s1"], ["y"], name="cat_1", axis=1),
                       helper.make_node("Identity", ["y"], ["z"], name="unused_tail"))
    layers = {"add_0": "stages.0.blocks.0.add", "conv_1": "stages.0.blocks.1.spatial_mixing.conv", "cat_1": "stages.0.blocks.1.spatial_mixing"}
    found = layers_of(simplified, layers, traced)
    assert found["node_Split_9"] == "stages.0.blocks.1.spatial_mixing"  # its users' deepest common module, not its producer's
    assert found["unused_tail"] == "stages.0.blocks.1.spatial_mixing"  # no user: its producer's
    assert excluded_nodes(simplified, layers, (["stages.0.blocks.1"], []), traced) == ["node_Split_9", "conv_1", "cat_1", "unused_tail"]
    assert excluded_nodes(simplified, layers, (["stages.0.blocks.0"], []), traced) == ["add_0"]


def test_keep_float_reaches_the_pt2e_quantizers():
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    from partialnet.api import _fold
    from partialnet.checkpoint import resolve
    from partialnet.exporters.pt2e import configure

    deploy = _fold(resolve("partialnet_t0", None)[0], (64, 64))[0]
    program = torch.export.export(deploy, (torch.randn(1, 3, 64, 64),))  # traced once; each prepare gets a fresh module of it

    def observers(keep):
        quantizer = configure(XNNPACKQuantizer(), get_symmetric_quantization_config(is_per_channel=True), ExportOptions(int8=True, int8_keep_float=keep))
        prepared = prepare_pt2e(program.module(), quantizer)
        return sum(1 for n in prepared.graph.nodes if "activation_post_process" in str(n.target))

    everything = observers(None)
    assert observers("stages.6") < everything and observers("conv") < observers("stages.6")


@pytest.fixture(scope="module")
def blank_folder(tmp_path_factory):
    """A deliberately bad calibration set: flat grey images, nothing like a digit."""
    folder = tmp_path_factory.mktemp("blank")
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 120 + i, dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("openvino", ".xml"), ("litert", ".tflite"), ("executorch", ".pte")])
def test_a_bad_calibration_fails_with_a_per_layer_report(cli, digits_ckpt, blank_folder, tmp_path, fmt, suffix):
    if fmt == "openvino":
        pytest.importorskip("nncf", reason="OpenVINO INT8 needs NNCF (pip install 'partialnet[openvino]')")
    if fmt == "litert":
        pytest.importorskip("litert_torch", reason="LiteRT export needs litert-torch (pip install 'partialnet[litert]')")
    if fmt == "executorch":
        pytest.importorskip("executorch", reason="ExecuTorch export needs executorch (pip install 'partialnet[executorch]')")
    out = tmp_path / f"bad{suffix}"
    result = cli("export", digits_ckpt, "-f", fmt, "--imgsz", "64", "--int8", "--data", blank_folder, "--dataset", "digits",
                 "--calib-method", "minmax", "-o", out)
    assert result.code == 1, result.err
    assert "per-layer report: drift starts at" in result.err and "the calibration ranges do not fit these images" in result.err
    assert "INT8 drift from fp32, per layer" in result.err and not out.exists()
    assert f"up to 300 images from {blank_folder.name}/" in result.err  # the folder holds 4: the stage says "up to"
    if fmt in ("executorch", "litert"):  # refused as its q/dq program, before XNNPACK's minute of lowering or the conversion
        assert f"the quantized {fmt} program (checked before lowering; nothing written)" in result.err
        assert "judge before lowering" in result.err and "delegate: XNNPACK" not in result.err
        assert "the PT2E q/dq program that" in result.err  # the report's INT8 side: the program, as no artifact exists



def test_a_quantized_program_is_judged_before_lowering_only_where_the_pipeline_asks():
    from partialnet.exporters import pt2e

    seen = []
    pt2e.before_lowering("program", "a lowering")  # no judge set: an exporter's call is a no-op
    with pt2e.judged_before_lowering(lambda program, lowered_by: seen.append((program, lowered_by))):
        pt2e.before_lowering("program", "a lowering")
        with pt2e.judged_before_lowering(None):  # bench's unenforced INT8 builds: nothing judged early
            pt2e.before_lowering("inner", "a lowering")
    pt2e.before_lowering("after", "a lowering")
    assert seen == [("program", "a lowering")]


def test_the_failure_carries_the_whole_report(digits_ckpt, blank_folder, tmp_path):
    from partialnet import api
    from partialnet.errors import CheckFailed

    options = api.ExportOptions(imgsz=(64, 64), int8=True, data=str(blank_folder), calib_size=4)
    with pytest.raises(CheckFailed) as caught:
        api.export(str(digits_ckpt), "onnx", options, output=tmp_path / "q.onnx", checks=api.VerifyOptions(dataset="digits"))
    found = caught.value.details["divergence"]
    rows = {row["layer"]: row for row in found["layers"]}
    assert "patch_embed.proj" in rows and found["first_drift"] and found["images"] == 16
    assert found["lossy_inputs"] > 0.25 * found["judged_inputs"]  # a calibration this far off is named as such
    assert json.dumps(found, allow_nan=False)


def test_the_report_names_the_few_layers_whose_input_quantizes_badly():
    from partialnet.divergence import report, summary

    rng = np.random.default_rng(0)
    order = [f"stages.0.blocks.{i}" for i in range(8)]
    fp32 = {k: rng.standard_normal((4, 8)) for k in order}
    int8 = {k: v + (0.5 if k == "stages.0.blocks.5" else 0.001) * rng.standard_normal(v.shape) for k, v in fp32.items()}
    isolated = {k: 45.0 for k in order} | {"stages.0.blocks.5": 6.0}
    found = report(order, fp32, int8, isolated, 4, "test")
    assert found["first_drift"] == "stages.0.blocks.5" and found["keep_float"] == ["stages.0.blocks.5"]
    assert "try --int8-keep-float stages.0.blocks.5" in summary(found)
    widespread = report(order, fp32, int8, dict.fromkeys(order, 3.0), 4, "test")
    assert "8 of 8 layers lose over 20 dB" in summary(widespread)
    assert json.loads(json.dumps(found, allow_nan=False))  # nothing non-finite in what reaches JSON


def test_matrix_passes_the_int8_tools_to_every_int8_cell_and_fails_on_a_cell_that_fails(cli, digits_ckpt, blank_folder, tmp_path):
    """One matrix: OpenVINO's quantizer lacks entropy (a skipped row saying so); ONNX calibrated on grey images fails its
    check, and the command exits 1 after writing the rest, as `export --format all` does (it exited 0)."""
    out = tmp_path / "m.json"
    result = cli("matrix", digits_ckpt, "--imgsz", "64", "--formats", "onnx,openvino", "--precisions", "int8", "--calib-method", "entropy",
                 "--data", blank_folder, "--protocol", "quick", "-o", tmp_path / "m", "--json", out)
    data = json.loads(out.read_text())
    rows = {(r["format"], r["precision"]): r for r in data["rows"]}
    assert rows[("openvino", "int8")]["status"] == "skipped" and "openvino calibrates with" in rows[("openvino", "int8")]["why"]
    assert rows[("onnx", "int8")]["status"] == "failed" and rows[("pytorch", "fp32")]["status"] == "ok"
    assert data["calibration"]["calib_method"] == "entropy" and (tmp_path / "m" / "matrix.json").is_file()
    assert result.code == 1 and "1 cell(s) failed (everything else was written): onnx int8: " in result.err, result.err
    bad = cli("matrix", digits_ckpt, "--imgsz", "64", "--int8-keep-float", "stages.42", "-o", tmp_path / "n")
    assert bad.code == 2 and "no such layer" in bad.err and not (tmp_path / "n").exists()
