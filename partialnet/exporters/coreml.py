"""Core ML ML-program packages (.mlpackage) with coremltools, verified statically where Core ML cannot run.

Core ML predicts only on macOS. Elsewhere the package is checked without predicting: it loads back as
a spec, its input and output have the right names, shapes and types, the program's ops are counted,
and in fp32 every weight of the deploy model is found, bit for bit, among the program's constants. The
verdict then says "prediction not verifiable on Linux" and never "ok". On macOS the package is
verified by prediction like every other format.

fp16 is the default, as in Core ML itself: the Neural Engine computes in fp16 only, so an fp32 package
would run on the GPU or CPU instead. `--fp32` keeps fp32 compute.
"""

from __future__ import annotations

import collections
import copy
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partialnet.errors import BadInput, missing_extra
from partialnet.exporters.quiet import library_quiet
from partialnet.exporters.options import ExportOptions
from partialnet.outputs import Output
from partialnet.preprocess import IMAGENET_MEAN, IMAGENET_STD

INPUT_NAME, OUTPUT_NAME = "images", "logits"
TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
DEFAULT_TARGET = "iOS16"  # the first with fp16 image inputs and the ML program ops PartialNet needs


def _quiet():
    """coremltools logs its untested-torch warning and missing macOS-only proxies; not the user's concern."""
    return library_quiet("coremltools")


def _coremltools():
    with _quiet():
        try:
            import coremltools
        except ImportError:
            raise missing_extra("coremltools", "coreml") from None
    return coremltools


def check_target(target: str | None) -> str:
    target = target or DEFAULT_TARGET
    if target not in TARGETS:
        raise BadInput(f"--min-target {target!r}: expected one of {', '.join(TARGETS)}")
    return target


def artifact_paths(out: Path) -> list[Output]:
    return [Output(out, "-o", kind="dir")]


class _Normalise(nn.Module):
    """Divide by the ImageNet std per channel: Core ML's image preprocessing takes one scale only."""

    def __init__(self):
        super().__init__()
        self.register_buffer("inv_std", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return x * self.inv_std


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    ct = _coremltools()
    model = copy.deepcopy(model).eval()
    if options.image_input:
        model = nn.Sequential(_Normalise(), model).eval()
    shape = (options.batch, 3, *options.imgsz)
    with _quiet(), torch.no_grad():
        program = torch.export.export(model, (torch.randn(shape),)).run_decompositions({})
        if options.image_input:
            inputs = [
                ct.ImageType(
                    name=INPUT_NAME, shape=shape, scale=1 / 255.0, bias=[-m for m in IMAGENET_MEAN], color_layout=ct.colorlayout.RGB
                )
            ]
        else:
            inputs = [ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)]  # fresh objects: convert mutates them
        converted = ct.convert(
            program,
            inputs=inputs,
            outputs=[ct.TensorType(name=OUTPUT_NAME, dtype=np.float32)],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if options.half else ct.precision.FLOAT32,
            minimum_deployment_target=getattr(ct.target, check_target(options.min_target)),
        )
    converted.author = "partialnet"
    converted.short_description = f"{metadata.get('variant')} classifier exported by partialnet ({options.precision})"
    converted.version = metadata.get("partialnet_version", "")
    for key, value in {**metadata, "precision": options.precision, "input_kind": "image" if options.image_input else "tensor"}.items():
        converted.user_defined_metadata[key] = str(value)
    converted.input_description[INPUT_NAME] = (
        "RGB image, resized and centre-cropped; /255 and ImageNet mean/std applied inside"
        if options.image_input
        else "float32 NCHW, RGB, /255 then ImageNet mean/std"
    )
    converted.output_description[OUTPUT_NAME] = f"{metadata.get('num_classes')} class logits"
    with _quiet():
        converted.save(str(staged[0].path))
    census = op_census(staged[0].path)
    return {
        "nodes": sum(census.values()),
        "op_counts": dict(sorted(census.items())),
        "simplify": "n/a (coremltools)",
        "compute_precision": options.precision,
        "minimum_deployment_target": check_target(options.min_target),
        "input": "image (RGB, normalisation inside)" if options.image_input else "tensor",
        "coremltools": ct.__version__,
    }


def _spec(path: Path):
    ct = _coremltools()
    path = Path(path)
    if not (path.is_dir() and (path / "Manifest.json").is_file()):
        raise BadInput(f"{path}: not a Core ML package (a directory with Manifest.json)")
    with _quiet():
        try:
            model = ct.models.MLModel(str(path), skip_model_load=True)
        except Exception as exc:  # protobuf and coremltools raise several types for a damaged package
            raise BadInput(f"{path}: not a readable Core ML package ({str(exc).splitlines()[0][:160]})") from None
    return model, model.get_spec()


def op_census(path: Path) -> collections.Counter:
    _, spec = _spec(path)
    function = spec.mlProgram.functions["main"]
    counts: collections.Counter = collections.Counter()

    def walk(operations):
        for op in operations:
            counts[op.type] += 1
            for block in op.blocks:
                walk(block.operations)

    walk(function.block_specializations[function.opset].operations)
    return counts


def constants(path: Path) -> list[np.ndarray]:
    """Every constant tensor of the program as a numpy array (fp16 ones as fp16)."""
    from coremltools.converters.mil.frontend.milproto.load import load

    model, spec = _spec(path)
    with _quiet():
        program = load(spec, spec.specificationVersion, model.weights_dir)
    values = []
    for op in program.functions["main"].operations:
        if op.op_type == "const":
            value = op.val.val
            if isinstance(value, np.ndarray) and value.size > 1:
                values.append(value)
    return values


def read_io(path: Path) -> dict:
    model, spec = _spec(path)
    inputs, outputs = spec.description.input, spec.description.output
    if len(inputs) != 1 or len(outputs) != 1:
        raise BadInput(f"{path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
    feature = inputs[0].type
    kind = feature.WhichOneof("Type")
    if kind == "multiArrayType":
        dims = list(feature.multiArrayType.shape)
    elif kind == "imageType":
        dims = [1, 3, feature.imageType.height, feature.imageType.width]
    else:
        raise BadInput(f"{path}: input of kind {kind}, expected a tensor or an image")
    if len(dims) != 4 or dims[1] != 3:
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    metadata = dict(spec.description.metadata.userDefined)
    return {
        "batch": int(dims[0]),
        "dynamic": False,
        "imgsz": (int(dims[2]), int(dims[3])),
        "precision": metadata.get("precision", "fp16"),
        "metadata": metadata,
        "input_name": inputs[0].name,
        "input_kind": "image" if kind == "imageType" else "tensor",
        "output_name": outputs[0].name,
    }


def verify_static(path: Path, deploy: nn.Module, io_info: dict) -> dict:
    """What can be proven without Core ML: structure, I/O, op census, and (fp32) the weights themselves."""
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})

    _, spec = _spec(path)
    check("loads as a spec", True, f"ML program, specification version {spec.specificationVersion}")
    check("input", io_info["input_name"] == INPUT_NAME, f"{io_info['input_name']}: {io_info['input_kind']} {io_info['batch']}x3x{io_info['imgsz'][0]}x{io_info['imgsz'][1]}")
    out_type = spec.description.output[0].type
    out_kind = out_type.WhichOneof("Type")
    check("output", io_info["output_name"] == OUTPUT_NAME and out_kind == "multiArrayType", f"{io_info['output_name']}: {out_kind}")
    census = op_census(path)
    check("op census", "conv" in census and census.get("const", 0) > 0, ", ".join(f"{k} {v}" for k, v in sorted(census.items())))
    if io_info["precision"] == "fp32":
        try:
            found = constants(path)
        except (RuntimeError, ValueError, OSError) as exc:  # a damaged weights blob, as coremltools' reader finds it
            check("fp32 weights equal the deploy model's", False, f"weights unreadable: {str(exc).splitlines()[0][:120]}")
            return _static_report(checks)
        pool = collections.defaultdict(list)  # by size: a Linear may become a 1x1 conv (out, in, 1, 1)
        for value in found:
            pool[value.size].append(value.astype(np.float32).ravel())
        missing, total = [], 0
        for name, tensor in deploy.state_dict().items():
            if tensor.numel() <= 1 or not tensor.is_floating_point():
                continue
            total += 1
            want = tensor.detach().float().numpy().ravel()
            if not any(np.array_equal(c, want) for c in pool.get(want.size, [])):
                missing.append(name)
        detail = f"all {total} deploy tensors found bit-exact among {len(found)} program constants"
        if missing:
            detail = f"{len(missing)} of {total} deploy tensors not found bit-exact: {', '.join(missing[:4])}"
        check("fp32 weights equal the deploy model's", not missing, detail)
    return _static_report(checks)


def _static_report(checks: list[dict]) -> dict:
    passed = all(c["passed"] for c in checks)
    return {"verdict": "prediction not verifiable on Linux" if passed else "static checks failed", "passed": passed, "checks": checks, "platform": sys.platform}
