"""OpenVINO IR (.xml + .bin) through OpenVINO's own PyTorch converter, with metadata in rt_info.

OpenVINO writes the pair itself, by path, so it writes into a private scratch directory; the pair is
verified there and then copied into the files the output module staged, so a published .xml always
sits beside the .bin it was verified with.
"""

from __future__ import annotations

import copy
import importlib.util
import shutil
from pathlib import Path

import torch
from torch import nn

from partialnet.errors import BadInput, missing_extra
from partialnet.exporters.onnx import calibration_feeds, quiet
from partialnet.exporters.options import ExportOptions, keep_float
from partialnet.exporters.quiet import native_quiet
from partialnet.inputs import check_regular
from partialnet.limits import check_input_shape
from partialnet.runtimes.openvino import core, load_openvino

RT_SECTION = "partialnet"
MAX_IR_BYTES = 2 << 30  # the .bin: the weights
MAX_IR_XML_BYTES = 64 << 20  # the .xml describes the graph (about 0.3 MB for T2); OpenVINO's parser holds several times it


def preflight(options: ExportOptions) -> None:
    """INT8 needs NNCF, which the extra brings but an older install may lack: said before the load."""
    if options.int8 and importlib.util.find_spec("nncf") is None:
        raise missing_extra("nncf (OpenVINO INT8)", "openvino")


# --int8-keep-float's op kinds in OpenVINO op types; --calib-method in NNCF's range estimators
KIND_OPS = {"conv": ("Convolution", "GroupConvolution"), "linear": ("MatMul",), "add": ("Add",), "mul": ("Multiply",), "concat": ("Concat",),
            "pool": ("AvgPool", "ReduceMean")}
ESTIMATORS = {"mean-minmax": "MEAN_MINMAX", "minmax": "MINMAX", "percentile": "MEAN_QUANTILE", "histogram": "HISTOGRAM"}


def layer_of(op_name: str) -> str | None:
    """The deploy model's module path in an op's name as OpenVINO's PyTorch frontend writes it (`__module.head/aten::linear/MatMul`)."""
    if op_name.startswith("__module.") and "/" in op_name:
        return op_name[len("__module."):op_name.index("/")]
    return None


def ignored_scope(nncf, converted, keep: tuple[list[str], list[str]]):
    """NNCF's ignored scope for --int8-keep-float: the ops of the named layers (by name) and of the named kinds (by type)."""
    layers, kinds = keep
    names = [op.get_friendly_name() for op in converted.get_ordered_ops()
             if (layer := layer_of(op.get_friendly_name())) and any(layer == n or layer.startswith(n + ".") for n in layers)]
    types = [t for k in kinds for t in KIND_OPS[k]]
    return nncf.IgnoredScope(names=names, types=types, validate=False), len(names)


def quantize(converted, calibration, batch: int | None, method: str = "mean-minmax", keep=((), ())):
    """NNCF post-training INT8 of an ov.Model; returns (model, what was done)."""
    try:
        import nncf
    except ImportError:
        from partialnet.errors import missing_extra

        raise missing_extra("nncf (OpenVINO INT8)", "openvino") from None
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
    from nncf.quantization.range_estimator import RangeEstimatorParametersSet

    feeds = calibration_feeds(calibration, batch)
    scope, kept = ignored_scope(nncf, converted, keep)
    advanced = AdvancedQuantizationParameters(activations_range_estimator_params=getattr(RangeEstimatorParametersSet, ESTIMATORS[method]))
    with quiet():
        quantized = nncf.quantize(
            converted,
            nncf.Dataset(feeds),
            preset=nncf.QuantizationPreset.PERFORMANCE,
            subset_size=len(feeds),
            fast_bias_correction=True,
            ignored_scope=scope,
            advanced_parameters=advanced if method != "mean-minmax" else None,  # NNCF's own default for per-tensor activations
        )
    fake_quantize = sum(1 for op in quantized.get_ordered_ops() if op.get_type_name() == "FakeQuantize")
    record = {
        "quantizer": f"NNCF {nncf.__version__} post-training quantization",
        "preset": "performance (symmetric activations and weights)",
        "calibration": f"{len(calibration)} images in {len(feeds)} batches, activation ranges by {method}",
        "kept_float_ops": kept,
        "kept_float_types": list(scope.types),
        "fake_quantize_ops": fake_quantize,
    }
    return quantized, record


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    """Convert `model`, save the IR in `workdir`, copy it into `staged` (xml, bin); returns stats."""
    ov = load_openvino()
    model = copy.deepcopy(model).eval()
    batch = -1 if options.dynamic else options.batch
    shape = [batch, 3, *options.imgsz]
    example = torch.randn(max(options.batch, 2) if options.dynamic else options.batch, 3, *options.imgsz)
    with quiet(), torch.no_grad():
        converted = ov.convert_model(model, example_input=example, input=[ov.PartialShape(shape)])
    quantization = None
    if options.int8:
        ov.save_model(converted, str(workdir / "fp32.xml"), compress_to_fp16=False)  # the float graph, for the divergence report
        method = (options.calib_method or "mean-minmax").strip().lower()
        converted, quantization = quantize(converted, options.calibration, None if options.dynamic else options.batch, method,
                                           keep_float(options.int8_keep_float))
    precision = options.precision
    for key, value in {**metadata, "precision": precision}.items():
        converted.set_rt_info(str(value), [RT_SECTION, key])
    xml = workdir / "model.xml"
    ov.save_model(converted, str(xml), compress_to_fp16=options.half)
    for item, source in zip(staged, (xml, xml.with_suffix(".bin"))):
        with source.open("rb") as f:
            shutil.copyfileobj(f, item.file)
    ops = {}
    for op in converted.get_ordered_ops():
        ops[op.get_type_name()] = ops.get(op.get_type_name(), 0) + 1
    stats = {
        "nodes": len(converted.get_ordered_ops()),
        "op_counts": dict(sorted(ops.items())),
        "simplify": "n/a (OpenVINO's converter)",
        "weights": "fp16-compressed" if options.half else "int8 (FakeQuantize)" if options.int8 else "fp32",
        "verify_path": str(xml),
    }
    if quantization:
        stats["quantization"] = quantization
    return stats


def read_io(path: Path) -> dict:
    """Input shape, dynamic batch, precision and metadata of an IR, from the IR itself."""
    load_openvino()  # the missing extra is named before any file is read
    path = Path(path)
    check_regular(path, "OpenVINO IR (.xml)", max_bytes=MAX_IR_XML_BYTES)
    check_regular(path.with_suffix(".bin"), "weights file of an OpenVINO IR (.bin)", max_bytes=MAX_IR_BYTES, nofollow=True)  # its own file, not a link
    try:
        with native_quiet():  # on a file that is not IR, OpenVINO tries its other frontends, which log through absl
            model = core().read_model(str(path))
    except RuntimeError:
        raise BadInput(f"{path}: not a readable OpenVINO IR") from None
    if len(model.inputs) != 1:
        raise BadInput(f"{path}: expected one image input, found {len(model.inputs)}")
    dims = [d.get_length() if d.is_static else None for d in model.inputs[0].get_partial_shape()]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[3] is None or any(d is not None and d < 1 for d in dims):
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    check_input_shape(dims[0], dims[2], dims[3], f"{path}: declared input")
    metadata = _rt_metadata(model, path)
    return {"batch": dims[0], "dynamic": dims[0] is None, "imgsz": (dims[2], dims[3]), "precision": weight_precision(model),
            "metadata": metadata}


def _rt_metadata(model, path: Path) -> dict[str, str]:
    """partialnet's section of the IR's rt_info as strings; a section that is not a map is refused."""
    try:
        if RT_SECTION not in model.get_rt_info():
            return {}
        section = model.get_rt_info([RT_SECTION]).astype(dict)
        return {str(k)[:200]: str(v.astype(str) if hasattr(v, "astype") else v)[:2000] for k, v in list(section.items())[:256]}
    except (RuntimeError, TypeError, ValueError, AttributeError):
        raise BadInput(f"{path}: its rt_info '{RT_SECTION}' section is not a map of strings") from None


def weight_precision(model) -> str:
    """What the IR computes in, read from its own graph rather than from what its metadata claims:
    FakeQuantize ops make it int8, f16 weight constants (decompressed by Convert) make it fp16."""
    kinds = {op.get_type_name() for op in model.get_ordered_ops()}
    if "FakeQuantize" in kinds:
        return "int8"
    weights = [op.get_output_element_type(0).get_type_name() for op in model.get_ordered_ops()
               if op.get_type_name() == "Constant" and len(op.get_output_partial_shape(0)) >= 2]
    return "fp16" if weights and all(w == "f16" for w in weights) else "fp32"


def _fake_quantizers(int8) -> list[tuple[str, list, int, list[str]]]:
    """(producer op name, [in_low, in_high] arrays, levels, reader layers) of every FakeQuantize on an activation."""
    found = []
    for op in int8.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        producer = op.input_value(0).get_node()
        if producer.get_type_name() == "Constant":
            continue  # a weight
        bounds = [op.input_value(i).get_node() for i in (1, 2)]
        if any(b.get_type_name() != "Constant" for b in bounds):
            continue
        readers = [layer_of(t.get_node().get_friendly_name()) for t in op.output(0).get_target_inputs()]
        found.append((producer.get_friendly_name(), [b.get_data() for b in bounds], int(op.get_levels()), [r for r in readers if r]))
    return found


def _outputs_of(core, model, names: list[str], images):
    import numpy as np

    by_name = {op.get_friendly_name(): op for op in model.get_ordered_ops()}
    model.add_outputs([by_name[name].output(0) for name in names])  # one output per port, however often it is asked for
    where = {}
    for j, result in enumerate(model.outputs):
        where.setdefault(result.get_node().input_value(0).get_node().get_friendly_name(), j)
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2})
    batch = model.inputs[0].get_partial_shape()[0]
    runs = [compiled(chunk) for chunk in calibration_feeds(images, batch.get_length() if batch.is_static else None)]
    return {name: np.concatenate([r[compiled.outputs[where[name]]] for r in runs])[: len(images)] for name in names}


def layer_activations(workdir: Path, artifact: Path, images, deploy=None):
    """Every layer's output in the float IR that was quantized and in the INT8 IR (NNCF keeps op names), and the
    isolated loss of each FakeQuantize on the float activations, at the layers that read it."""
    from partialnet.divergence import fake_quantize, last_per_layer, sqnr_db, worst_per_layer

    ov_core = core()
    fp32, int8 = ov_core.read_model(str(workdir / "fp32.xml")), ov_core.read_model(str(artifact))
    last = last_per_layer((layer_of(op.get_friendly_name()), op.get_friendly_name()) for op in fp32.get_ordered_ops()
                          if op.get_output_size() and op.get_type_name() != "Constant")
    in_int8 = {op.get_friendly_name() for op in int8.get_ordered_ops()}
    in_fp32 = {op.get_friendly_name() for op in fp32.get_ordered_ops()}
    wanted = {layer: name for layer, name in last.items() if name in in_int8}
    quantizers = [q for q in _fake_quantizers(int8) if q[0] in in_fp32]
    reference = _outputs_of(ov_core, fp32, list(dict.fromkeys([*wanted.values(), *(q[0] for q in quantizers)])), images)
    quantized = _outputs_of(ov_core, int8, list(wanted.values()), images)
    losses = [(layer, sqnr_db(reference[name], fake_quantize(reference[name], low, high, levels)))
              for name, (low, high), levels, readers in quantizers for layer in readers]
    order = list(wanted)
    return (order, {k: reference[wanted[k]] for k in order}, {k: quantized[wanted[k]] for k in order}, worst_per_layer(losses),
            "OpenVINO: the float IR and the INT8 IR, layer outputs exposed")
