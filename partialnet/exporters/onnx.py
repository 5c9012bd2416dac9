"""ONNX through torch's dynamo exporter, optionally simplified by onnxsim, with metadata embedded.

The graph must hold no BatchNormalization (folding removed them all) and no Scatter* node (those come
from in-place slicing and break TensorRT and mobile converters); either one here is a bug, not a warning.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import warnings
import weakref
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partialnet.errors import BadInput, CheckFailed
from partialnet.exporters.options import ExportOptions, OnnxOptions, check_opset, keep_float
from partialnet.inputs import check_regular
from partialnet.limits import check_input_shape

FORBIDDEN_OPS = ("BatchNormalization", "ScatterND", "ScatterElements")
QUANT_OPS = ("QuantizeLinear", "DequantizeLinear")
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit for a single-file model
INPUT_NAME, OUTPUT_NAME = "images", "logits"


@contextlib.contextmanager
def quiet():
    """The exporter prints progress and warns about torchvision ops; none of it is the user's business."""
    # The root logger too: ONNX Runtime's quantizer warns through logging.warning().
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript", "nncf")] + [logging.getLogger()]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def op_counts(proto) -> Counter:
    return Counter(node.op_type for node in proto.graph.node)


def to_onnx(model: nn.Module, options: OnnxOptions):
    """The ModelProto of `model` (unsimplified)."""
    check_opset(options.opset)
    model = copy.deepcopy(model).eval()
    # A dynamic batch traced at batch 1 would be specialised to 1, so trace at 2 when dynamic.
    example_batch = max(options.batch, 2) if options.dynamic else options.batch
    x = torch.randn(example_batch, 3, *options.imgsz)
    if options.half:
        model, x = model.half(), x.half()
    kwargs = dict(
        dynamo=True,
        opset_version=options.opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        verbose=False,
        optimize=True,
    )
    if options.dynamic:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=1, max=4096)},)
    from partialnet.signals import deferred

    # torch.export traces through C++ hooks that call back into Python: an exception raised in there by a
    # signal handler crashed the process (SIGSEGV, temporaries left behind) about one time in ten.
    with quiet(), deferred():
        program = torch.onnx.export(model, (x,), **kwargs)
    return program.model_proto


def simplify(proto):
    """onnxsim's result, or the input with the reason when onnxsim fails or rejects its own output."""
    import onnxsim

    from partialnet.signals import deferred

    try:
        with quiet(), deferred():  # onnxsim calls back into Python: never raise a stop request in there
            simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from its C++ core
        return proto, f"onnxsim failed ({str(exc).splitlines()[0][:160]}); kept the unsimplified graph"
    if not ok:
        return proto, "onnxsim's own check failed; kept the unsimplified graph"
    return simplified, None


def calibration_feeds(calibration: np.ndarray, batch: int | None) -> list[np.ndarray]:
    """The calibration images in the batches the graph takes (a static batch pads its last chunk)."""
    size = batch or 8
    chunks = []
    for start in range(0, len(calibration), size):
        chunk = calibration[start : start + size]
        if batch and len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - len(chunk), axis=0)])
        chunks.append(np.ascontiguousarray(chunk, dtype=np.float32))
    return chunks


# --int8-keep-float's op kinds in ONNX op types
KIND_OPS = {"conv": ("Conv",), "linear": ("Gemm", "MatMul"), "add": ("Add",), "mul": ("Mul",), "concat": ("Concat",),
            "pool": ("GlobalAveragePool", "AveragePool", "ReduceMean")}
CALIBRATORS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
LAYERS_FILE = "layers.json"


def node_layers(proto) -> dict[str, str]:
    """Node name -> the deploy model's module path that made it, from the exporter's name scopes.

    Read before onnxsim (which drops node metadata but keeps the names of the nodes it leaves), so a
    layer named to `--int8-keep-float` and the divergence report speak of the same modules.
    """
    import ast

    layers = {}
    for node in proto.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes:
            try:
                path = [s for s in ast.literal_eval(scopes) if s]
            except (ValueError, SyntaxError):
                continue
            if len(path) >= 2:  # the last scope is the op itself
                layers[node.name] = path[-2]
    return layers


def excluded_nodes(proto, layers: dict[str, str], keep: tuple[list[str], list[str]], traced=None) -> list[str]:
    """The nodes --int8-keep-float keeps in float: every node of a named layer (or below it), every node of a named kind."""
    names, kinds = keep
    types = {t for k in kinds for t in KIND_OPS[k]}
    found = layers_of(proto, layers, traced or proto)
    return [node.name for node in proto.graph.node
            if node.op_type in types or any(found[node.name] == n or found[node.name].startswith(n + ".") for n in names)]


def layers_of(proto, layers: dict[str, str], traced) -> dict[str, str]:
    """The layer of every node of `proto`, which may be `traced` (whose nodes `layers` names) rewritten: the
    quantizer's pre-processing fuses MatMul + Add into a new Gemm under new names, and onnxsim adds Splits.
    A node is its own traced name's layer, else that of the traced node whose output or weight it took
    over, so no node of a kept layer slips through under a new name. A node with none of these (a Split
    onnxsim put at a block's start) belongs where its outputs are used (the deepest module holding every
    user), not to the layer that produced its input, the previous block; failing that, its producer's."""
    weights = {i.name for i in traced.graph.initializer}
    by_output = {o: layers.get(n.name, "") for n in traced.graph.node for o in n.output}
    by_weight = {i: layers.get(n.name, "") for n in traced.graph.node for i in n.input if i in weights}
    nodes = list(proto.graph.node)
    found = {node.name: (layers.get(node.name) or next((by_output[o] for o in node.output if by_output.get(o)), "")
                         or next((by_weight[i] for i in node.input if by_weight.get(i)), "")) for node in nodes}
    users: dict[str, list[str]] = {}
    for node in nodes:
        for name in node.input:
            users.setdefault(name, []).append(node.name)
    for node in reversed(nodes):  # graph order is topological: a node's users are settled before it
        if not found[node.name]:
            found[node.name] = _common_module([found[u] for o in node.output for u in users.get(o, ())])
    produced: dict[str, str] = {}
    for node in nodes:
        found[node.name] = found[node.name] or next((produced[i] for i in node.input if produced.get(i)), "")
        produced.update(dict.fromkeys(node.output, found[node.name]))
    return found


def _common_module(paths: list[str]) -> str:
    """The deepest module path holding every one of `paths` ("" where they share none, or there are none)."""
    parts = [p.split(".") for p in paths if p]
    if not parts:
        return ""
    common = []
    for names in zip(*parts):
        if len(set(names)) > 1:
            break
        common.append(names[0])
    return ".".join(common)


def quantize_qdq(proto, calibration: np.ndarray, batch: int | None, workdir: Path, for_tensorrt: bool = False,
                 method: str = "minmax", keep: tuple[list[str], list[str]] = ([], []), layers: dict[str, str] | None = None):
    """Static INT8 in QDQ form with ONNX Runtime's quantizer; returns (proto, what was done).

    Weights are int8, symmetric, per output channel. Activations are uint8 with a zero point for ONNX
    Runtime on x86 (its u8s8 kernels; s8s8 measured 1.5x slower here), or int8 symmetric for TensorRT,
    whose explicit quantization accepts only zero points of 0.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Feeds(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calibration_feeds(calibration, batch))

        def get_next(self):
            chunk = next(self.batches, None)
            return None if chunk is None else {INPUT_NAME: chunk}

    fp32_path, prepared_path, int8_path = workdir / "fp32.onnx", workdir / "prepared.onnx", workdir / "int8.onnx"
    fp32_path.write_bytes(proto.SerializeToString())
    activations = QuantType.QInt8 if for_tensorrt else QuantType.QUInt8
    with quiet():
        quant_pre_process(str(fp32_path), str(prepared_path), skip_symbolic_shape=True)
        exclude = excluded_nodes(onnx.load(str(prepared_path)), layers or {}, keep, traced=proto)
        quantize_static(
            str(prepared_path),
            str(int8_path),
            Feeds(),
            quant_format=QuantFormat.QDQ,
            activation_type=activations,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=getattr(CalibrationMethod, CALIBRATORS[method]),
            nodes_to_exclude=list(exclude),
            extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True},
        )
    quantized = onnx.load(str(int8_path))
    record = {
        "quantizer": "onnxruntime.quantization.quantize_static (QDQ)",
        "activations": "int8 symmetric (TensorRT explicit quantization)" if for_tensorrt else "uint8 with zero point (ONNX Runtime x86 kernels)",
        "weights": "int8 symmetric, per output channel",
        "calibration": f"{CALIBRATORS[method]} over {len(calibration)} images",
        "kept_float_nodes": len(exclude),
        "quantized_nodes": sum(1 for n in quantized.graph.node if n.op_type == "QuantizeLinear"),
    }
    return quantized, record


# The exported (and simplified) float graph per model and shape: the matrix and `--format all` export one
# folded model as fp32, INT8 and TensorRT-ready ONNX, and the trace + onnxsim is the slow half of each.
_GRAPHS: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def _float_graph(model: nn.Module, options: ExportOptions):
    """(proto, nodes before simplify, node -> layer, simplify note), traced once per model and graph options."""
    import onnx

    from partialnet.progress import stage

    key = (tuple(options.imgsz), options.batch, options.dynamic, options.opset, options.simplify, options.half)
    memo = _GRAPHS.setdefault(model, {})
    if key not in memo:
        with stage("torch.onnx.export", f"opset {options.opset}"):
            proto = to_onnx(model, options)
        raw_nodes, layers, note = len(proto.graph.node), node_layers(proto), None
        if options.simplify:
            with stage("simplify", "onnxsim"):
                proto, note = simplify(proto)
        memo[key] = (proto.SerializeToString(), raw_nodes, layers, note)
    data, raw_nodes, layers, note = memo[key]
    return onnx.load_from_string(data), raw_nodes, dict(layers), note


def build(model: nn.Module, options: ExportOptions, metadata: dict[str, str], workdir: Path, for_tensorrt: bool = False):
    """The final, checked ModelProto for `model` and the stats the manifest records."""
    import onnx

    from partialnet.progress import stage

    proto, raw_nodes, layers, note = _float_graph(model, options)
    quantization = None
    if options.int8:
        if options.calibration is None:
            raise BadInput("--int8 needs calibration images (--data)")
        with stage("quantize", f"QDQ, {len(options.calibration)} calibration images"):
            (workdir / LAYERS_FILE).write_text(json.dumps(layers))  # for the divergence report, beside fp32.onnx
            proto, quantization = quantize_qdq(proto, options.calibration, None if options.dynamic else options.batch, workdir, for_tensorrt,
                                               (options.calib_method or "minmax").strip().lower(), keep_float(options.int8_keep_float), layers)
    counts = op_counts(proto)
    bad = {op: counts[op] for op in FORBIDDEN_OPS if counts[op]}
    if bad:
        raise CheckFailed(f"the exported graph still holds {bad}; folding missed them (a partialnet bug)")
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)
    proto.producer_name = "partialnet"
    onnx.checker.check_model(proto)
    stats = {
        "nodes": len(proto.graph.node),
        "nodes_before_simplify": raw_nodes,
        "op_counts": dict(sorted(counts.items())),
        "simplify": "skipped" if not options.simplify else (note or "ok"),
        "opset": options.opset,
    }
    if quantization:
        stats["quantization"] = quantization
    return proto, stats


def export(model: nn.Module, staged, options: ExportOptions, metadata: dict[str, str], workdir: Path | None = None) -> dict:
    """Write the ONNX file for `model` into `staged[0]` (see partialnet.outputs), or at a new path; returns op counts etc."""
    from partialnet.outputs import scratch_folder

    with scratch_folder("partialnet-onnx-") as scratch:
        proto, stats = build(model, options, metadata, Path(workdir or scratch))
    if isinstance(staged, (str, Path)):  # called from Python with a plain path: still through the output module
        from partialnet.outputs import write_file

        write_file(staged, proto.SerializeToString())
    else:
        staged[0].write_bytes(proto.SerializeToString())
    return stats


def read_io(path: Path) -> dict:
    """Input shape, dynamic batch and precision of an ONNX artifact, from the graph itself."""
    import onnx

    check_regular(path, "ONNX model", max_bytes=MAX_ONNX_BYTES)
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends
        raise BadInput(f"{path}: not a readable ONNX file ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})") from None
    if len(proto.graph.input) != 1 or len(proto.graph.output) < 1:
        raise BadInput(f"{path}: expected one image input and a logits output, found {len(proto.graph.input)} inputs")
    tensor = proto.graph.input[0].type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[3] is None or any(d is not None and d < 1 for d in dims):
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    check_input_shape(dims[0], dims[2], dims[3], f"{path}: declared input")
    precision = {onnx.TensorProto.FLOAT: "fp32", onnx.TensorProto.FLOAT16: "fp16"}.get(tensor.elem_type, "other")
    if precision == "fp32" and any(node.op_type in QUANT_OPS for node in proto.graph.node):
        precision = "int8"
    return {
        "batch": dims[0],
        "dynamic": dims[0] is None,
        "imgsz": (dims[2], dims[3]),
        "precision": precision,
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }


def _last_tensor_per_layer(proto, layers: dict[str, str]) -> dict[str, str]:
    """Each layer's output: the first output of the last node (graph order) the layer made."""
    from partialnet.divergence import last_per_layer

    return last_per_layer((layers.get(node.name), node.output[0]) for node in proto.graph.node if node.output)


def _run_with_outputs(proto, names: list[str], images: np.ndarray) -> dict[str, np.ndarray]:
    import onnx
    import onnxruntime as ort

    model = copy.deepcopy(proto)
    del model.graph.output[:]
    for name in names:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    batch = dim.dim_value or None
    outs = [session.run(names, {INPUT_NAME: chunk}) for chunk in calibration_feeds(images, batch)]
    return {name: np.concatenate([o[i] for o in outs])[: len(images)] for i, name in enumerate(names)}


def _activation_ranges(int8, fp32) -> list[tuple[str, float, float]]:
    """(tensor, low, high) of every activation the QDQ artifact quantizes that the float graph also has."""
    from onnx import numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in int8.graph.initializer}
    in_float = {o for n in fp32.graph.node for o in n.output} | {i.name for i in fp32.graph.input}
    ranges = []
    for node in int8.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants or node.input[0] not in in_float:
            continue
        scale = float(np.asarray(constants[node.input[1]]).reshape(-1)[0])
        zero = constants.get(node.input[2]) if len(node.input) > 2 else np.zeros((), np.uint8)
        info = np.iinfo(zero.dtype)
        point = float(np.asarray(zero).reshape(-1)[0])
        ranges.append((node.input[0], (info.min - point) * scale, (info.max - point) * scale))
    return ranges


def layer_activations(workdir: Path, artifact: Path, images: np.ndarray, deploy=None):
    """Every layer's output in the float graph that was quantized and in the QDQ artifact, and the isolated
    loss of each quantized activation at the layers that read it (for partialnet.divergence)."""
    import onnx

    from partialnet.divergence import fake_quantize, sqnr_db, worst_per_layer

    layers = json.loads((workdir / LAYERS_FILE).read_text())
    fp32, int8 = onnx.load(str(workdir / "fp32.onnx")), onnx.load(str(artifact))
    present = {o for n in int8.graph.node for o in n.output}
    wanted = {layer: t for layer, t in _last_tensor_per_layer(fp32, layers).items() if t in present}
    ranges = _activation_ranges(int8, fp32)
    names = list(dict.fromkeys([*wanted.values(), *(t for t, _, _ in ranges)]))
    reference, quantized = _run_with_outputs(fp32, names, images), _run_with_outputs(int8, list(wanted.values()), images)
    readers = {}
    for node in fp32.graph.node:
        for name in node.input:
            if node.name in layers:
                readers.setdefault(name, set()).add(layers[node.name])
    losses = [(layer, sqnr_db(reference[t], fake_quantize(reference[t], low, high, 256))) for t, low, high in ranges for layer in readers.get(t, ())]
    order = list(wanted)
    return (order, {k: reference[wanted[k]] for k in order}, {k: quantized[wanted[k]] for k in order}, worst_per_layer(losses),
            "ONNX Runtime: the float graph and the QDQ artifact, layer outputs exposed")
