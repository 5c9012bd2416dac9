"""ONNX through torch's dynamo exporter, optionally simplified by onnxsim, with metadata embedded.

The graph must hold no BatchNormalization (folding removed them all) and no Scatter* node (those come
from in-place slicing and break TensorRT and mobile converters); either one here is a bug, not a warning.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from partialnet.errors import BadInput, CheckFailed
from partialnet.inputs import check_regular
from partialnet.limits import check_input_shape

FORBIDDEN_OPS = ("BatchNormalization", "ScatterND", "ScatterElements")
DEFAULT_OPSET = 20
MIN_OPSET = 18  # the dynamo exporter's floor
MAX_OPSET = 26  # the newest opset exported and run through ONNX Runtime in this project's tests
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit for a single-file model
INPUT_NAME, OUTPUT_NAME = "images", "logits"


@dataclass
class OnnxOptions:
    imgsz: tuple[int, int] = (224, 224)
    batch: int = 1
    dynamic: bool = False
    opset: int = DEFAULT_OPSET
    simplify: bool = True
    half: bool = False


@contextlib.contextmanager
def quiet():
    """The exporter prints progress and warns about torchvision ops; none of it is the user's business."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
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


def check_opset(opset: int) -> None:
    """Checked with the other options, before any checkpoint is loaded."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise BadInput(f"--opset {opset} unsupported: expected {MIN_OPSET} to {MAX_OPSET} (torch's exporter needs >= {MIN_OPSET})")


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
    with quiet():
        program = torch.onnx.export(model, (x,), **kwargs)
    return program.model_proto


def simplify(proto):
    """onnxsim's result, or the input with the reason when onnxsim fails or rejects its own output."""
    import onnxsim

    try:
        with quiet():
            simplified, ok = onnxsim.simplify(proto)
    except Exception as exc:  # onnxsim raises plain RuntimeErrors from its C++ core
        return proto, f"onnxsim failed ({str(exc).splitlines()[0][:160]}); kept the unsimplified graph"
    if not ok:
        return proto, "onnxsim's own check failed; kept the unsimplified graph"
    return simplified, None


def companion_suffixes() -> tuple[str, ...]:
    """An ONNX artifact is one file (weights inline; protobuf's 2 GB limit is far above any variant)."""
    return ()


def export(model: nn.Module, staged, options: OnnxOptions, metadata: dict[str, str], workdir: Path | None = None) -> dict:
    """Write the ONNX file for `model` into `staged[0]` (see partialnet.outputs), or at a new path; returns op counts etc."""
    import onnx

    proto = to_onnx(model, options)
    raw_nodes = len(proto.graph.node)
    note = None
    if options.simplify:
        proto, note = simplify(proto)
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
    if isinstance(staged, (str, Path)):  # called from Python with a plain path: still through the output module
        from partialnet.outputs import write_file

        write_file(staged, proto.SerializeToString())
    else:
        staged[0].write_bytes(proto.SerializeToString())
    return {
        "nodes": len(proto.graph.node),
        "nodes_before_simplify": raw_nodes,
        "op_counts": dict(sorted(counts.items())),
        "simplify": "skipped" if not options.simplify else (note or "ok"),
        "opset": options.opset,
    }


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
    return {
        "batch": dims[0],
        "dynamic": dims[0] is None,
        "imgsz": (dims[2], dims[3]),
        "precision": precision,
        "metadata": {p.key: p.value for p in proto.metadata_props},
    }
