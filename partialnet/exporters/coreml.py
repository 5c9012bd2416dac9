"""Core ML ML-program packages (.mlpackage) with coremltools, verified by their numbers where Core ML cannot run.

Core ML predicts only on macOS. Elsewhere the package is read strictly (mlpackage: its tree, spec and
weights, never through a link) and checked: its input and output have the right names, shapes and types,
the program's op census is what the export recorded, every weight of the deploy model is in the program
bit for bit at the package's precision (fp16 weights are the fp32 ones rounded, a deterministic rounding),
and then the program itself is executed by partialnet's reference interpreter (runtimes.mil_reference)
and its logits judged against PyTorch with the precision's gates. The verdict names which of these ran;
an op the interpreter does not know leaves it "static only". On macOS the package is verified by Core ML's
own prediction like every other format.

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
from partialnet.exporters import mlpackage
from partialnet.exporters.quiet import library_quiet
from partialnet.exporters.options import ExportOptions
from partialnet.exporters.sidecar import sidecar
from partialnet.preprocess import IMAGENET_MEAN, IMAGENET_STD

INPUT_NAME, OUTPUT_NAME = "images", "logits"
TARGETS = ("iOS15", "iOS16", "iOS17", "iOS18", "macOS12", "macOS13", "macOS14", "macOS15")
DEFAULT_TARGET = "iOS16"  # the first with fp16 image inputs and the ML program ops PartialNet needs


def _quiet():
    """coremltools logs its untested-torch warning and missing macOS-only proxies; not the user's concern."""
    return library_quiet("coremltools")


def load_coremltools():
    with _quiet():
        try:
            import coremltools
        except ImportError:
            raise missing_extra("coremltools", "coreml") from None
    return coremltools


def check_target(target: str | None) -> str:
    from partialnet.options import choice

    return choice(target or DEFAULT_TARGET, TARGETS, "--min-target")


def preflight(options: ExportOptions) -> None:
    if options.min_target is not None:
        options.min_target = check_target(options.min_target)  # recorded as Core ML spells it (ios17 is iOS17)


class _Normalise(nn.Module):
    """Divide by the ImageNet std per channel: Core ML's image preprocessing takes one scale only."""

    def __init__(self):
        super().__init__()
        self.register_buffer("inv_std", 1.0 / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x):
        return x * self.inv_std


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    ct = load_coremltools()
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
            # into the command's scratch: by default the converted package goes under /tmp and is removed only by
            # an exit hook, which the CLI skips (cli.entry leaves by os._exit): each export left a copy of the model
            package_dir=str(workdir / "converted.mlpackage"),
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


def _package(path: Path):
    """The package read strictly (its tree, manifest and spec; see mlpackage), never through coremltools' loader."""
    return mlpackage.open_package(path)


def op_census(path: Path) -> collections.Counter:
    return _census(_package(path))


def _census(package) -> collections.Counter:
    _, block = mlpackage.main_block(package)
    counts: collections.Counter = collections.Counter()

    def walk(operations):
        for op in operations:
            counts[op.type] += 1
            for nested in op.blocks:
                walk(nested.operations)

    walk(block.operations)
    return counts


def _float_constants(package) -> dict[str, tuple[np.ndarray, bool]]:
    """Every float constant of the program with more than one value, by name: (value, stored in a weights file)."""
    _, block = mlpackage.main_block(package)
    found = {}
    for op in block.operations:
        if op.type != "const":
            continue
        value = mlpackage.const_value(package, op)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and value.size > 1:
            found[op.outputs[0].name] = (value, op.attributes["val"].WhichOneof("value") == "blobFileValue")
    return found


def constants(path: Path) -> list[np.ndarray]:
    """Every float constant tensor of the program as a numpy array (fp16 ones as fp16)."""
    package = _package(path)
    try:
        return [value for value, _ in _float_constants(package).values()]
    finally:
        package.close()


def weight_precision(package) -> str:
    """What the program's weights are, from the types it declares for them (checked against the blobs when read)."""
    _, block = mlpackage.main_block(package)
    kinds = set()
    for op in block.operations:
        if op.type == "const" and op.attributes["val"].WhichOneof("value") == "blobFileValue":
            kinds.add(mlpackage.MIL_NAMES.get(op.attributes["val"].type.tensorType.dataType, "other"))
    return kinds.pop() if len(kinds) == 1 else "mixed" if kinds else "none"


def read_io(path: Path) -> dict:
    package = _package(path)
    spec = package.spec
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
    if len(dims) != 4 or dims[1] != 3 or not all(0 < d <= 1 << 16 for d in dims):
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    metadata = {str(k)[:200]: str(v)[:2000] for k, v in list(spec.description.metadata.userDefined.items())[:256]}
    precision = weight_precision(package)
    return {
        "batch": int(dims[0]),
        "dynamic": False,
        "imgsz": (int(dims[2]), int(dims[3])),
        "precision": precision,  # the weights' own type; metadata["precision"] is what the exporter said, checked apart
        "metadata": metadata,
        "input_name": inputs[0].name,
        "input_kind": "image" if kind == "imageType" else "tensor",
        "output_name": outputs[0].name,
    }


ARRAY_FLOAT32 = 65568  # Model_pb2.ArrayFeatureType.FLOAT32
INTERPRETED = "ML program executed by partialnet's reference interpreter: ok; Core ML runtime not available on this system"


def _io_checks(package, io_info: dict, deploy: nn.Module, check) -> None:
    spec = package.spec
    function, block = mlpackage.main_block(package)
    b, (h, w) = io_info["batch"], io_info["imgsz"]
    program_inputs = [(item.name, *mlpackage.value_type(item.type)) for item in function.inputs]
    want_input = [(INPUT_NAME, mlpackage.MIL_FP32, (b, 3, h, w))]  # fp32 tensor (pixels for an image input)
    check("input", io_info["input_name"] == INPUT_NAME and program_inputs == want_input,
          f"{io_info['input_name']}: {io_info['input_kind']} {b}x3x{h}x{w}; the program takes "
          + ", ".join(f"{n} {mlpackage.MIL_NAMES.get(c, c)} {list(s) if s else '?'}" for n, c, s in program_inputs))
    out = spec.description.output[0]
    out_kind = out.type.WhichOneof("Type")
    classes = deploy.head.out_features if hasattr(deploy, "head") and hasattr(deploy.head, "out_features") else None
    shape = list(out.type.multiArrayType.shape) if out_kind == "multiArrayType" else []
    ok = (io_info["output_name"] == OUTPUT_NAME and out_kind == "multiArrayType" and out.type.multiArrayType.dataType == ARRAY_FLOAT32
          and list(block.outputs) == [OUTPUT_NAME] and (not shape or shape == [b, classes]))
    check("output", ok, f"{io_info['output_name']}: {out_kind} {shape or '(shape from the program)'}, "
          f"fp32 expected {[b, classes]}; the program returns {list(block.outputs)}")


def _census_check(path: Path, package, check) -> list[str]:
    """Every op type known to the reference interpreter, and the census the export recorded, where its manifest is beside it."""
    from partialnet.inputs import read_beside
    from partialnet.runtimes.mil_reference import KNOWN_OPS

    census = _census(package)
    unknown = sorted(op for op in census if op not in KNOWN_OPS)
    detail = ", ".join(f"{k} {v}" for k, v in sorted(census.items()))
    manifest = read_beside(sidecar(path), "export manifest")
    graph = manifest.get("graph") if isinstance(manifest, dict) else None
    recorded = graph.get("op_counts") if isinstance(graph, dict) else None
    if isinstance(recorded, dict) and recorded:
        differ = sorted((op for op in set(recorded) | set(census) if recorded.get(op) != census.get(op)), key=str)
        if differ:
            first = differ[0]
            check("op census", False, f"{ascii(first)}: {census.get(first, 0)} in the program, {ascii(recorded.get(first, 0))} "
                  f"when it was exported ({detail})")
            return unknown
        detail += " (as recorded at export)"
    check("op census", "conv" in census and census.get("const", 0) > 0, detail)
    return unknown


def _weights_check(package, deploy: nn.Module, precision: str, check) -> None:
    """Every deploy tensor, at the package's precision, bit for bit in the program: by its converted name, else by value."""
    dtype = {"fp16": np.float16, "fp32": np.float32}.get(precision)
    if dtype is None:
        check("weights equal the deploy model's", False, f"the program's weights are {precision}, expected fp16 or fp32")
        return
    try:
        found = _float_constants(package)
    except BadInput as exc:
        check(f"{precision} weights equal the deploy model's", False, f"weights unreadable: {exc}")
        return
    by_name = {name.removesuffix("_to_fp16"): value for name, (value, _) in found.items()}
    pool = collections.defaultdict(list)  # by byte string: a tensor deduplicated or renamed by the converter
    for value, _ in found.values():
        pool[value.size].append(value.tobytes() if value.dtype == dtype else None)
    total, zeros = 0, 0
    for key, tensor in deploy.state_dict().items():
        if tensor.numel() <= 1 or not tensor.is_floating_point():
            continue
        total += 1
        want = tensor.detach().float().numpy().astype(dtype)
        stem = key.replace(".", "_")
        named = next((by_name[n] for n in (f"p_{stem}", f"p_1_{stem}") if n in by_name), None)
        if named is not None and named.dtype == dtype and named.size == want.size and named.tobytes() == want.tobytes():
            continue
        if named is None and want.tobytes() in pool.get(want.size, []):
            continue
        if named is None and not want.any():  # an add of zeros the converter removed (random-weight biases are zero)
            zeros += 1
            continue
        if named is not None:
            got = named.astype(np.float32).ravel() if named.size == want.size else None
            if got is None:
                why = f"shape {list(named.shape)} in the program, {list(want.shape)} in the model"
            else:
                differ = got != want.astype(np.float32).ravel()
                why = f"{int(differ.sum())} of {want.size} values differ, max |Δ| {float(np.abs(got - want.astype(np.float32).ravel()).max()):.3g}"
            check(f"{precision} weights equal the deploy model's", False, f"first tensor that differs: {key} ({why})")
        else:
            check(f"{precision} weights equal the deploy model's", False, f"first tensor that differs: {key} (not found in the program)")
        return
    removed = f" ({zeros} all-zero ones folded away by the converter)" if zeros else ""
    check(f"{precision} weights equal the deploy model's", True,
          f"all {total} deploy tensors found bit-exact at {precision} among {len(found)} program constants{removed}")


def verify_static(path: Path, deploy: nn.Module, io_info: dict, reference: nn.Module | None = None, cases=None, tolerances=None,
                  judge=None) -> dict:
    """What can be proven without Core ML: structure, I/O, op census, every weight bit for bit at the package's
    precision, and then the numbers, by running the program in partialnet's reference interpreter.

    The verdict says which: executed by the interpreter (passed or failed with its parity table), or
    "static only" with the reason (an op the interpreter does not know), never a silent pass.
    """
    checks = []

    def check(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})

    package = _package(path)
    try:
        function, _ = mlpackage.main_block(package)
        check("package", True, f"{len(package.files)} regular files inside it; ML program, specification version "
              f"{package.spec.specificationVersion}, opset {function.opset}")
        _io_checks(package, io_info, deploy, check)
        unknown = _census_check(path, package, check)
        _weights_check(package, deploy, io_info["precision"], check)
    finally:
        package.close()
    report = _static_report(checks)
    if not report["passed"] or reference is None or cases is None:
        return report
    if unknown:
        report["verdict"] = f"static only: partialnet's reference interpreter does not know the op(s) {', '.join(unknown)}"
        return report
    return _interpret(path, reference, cases, tolerances, io_info["precision"], report, judge)


def _interpret(path: Path, reference: nn.Module, cases, tolerances, precision: str, report: dict, judge=None) -> dict:
    """The program run by the reference interpreter beside PyTorch: parity on the cases, then, where asked, `judge`
    (top-1 on labelled images, with the same two runners): Core ML's fp16 is where an accuracy cost shows."""
    import time

    from partialnet.runtimes.mil_reference import MilReferenceRunner
    from partialnet.runtimes.torch_eager import TorchRunner
    from partialnet.verify import compare

    runner, reference_runner = MilReferenceRunner(path), TorchRunner(reference)
    started = time.perf_counter()
    runner.prepare()
    reference_runner.prepare()
    try:
        parity = compare(runner, reference_runner, cases, tolerances, precision)
        accuracy = judge(runner, reference_runner) if judge is not None else None
    finally:
        runner.close()
        reference_runner.close()
    report.update(parity.to_dict())
    dropped = bool(accuracy and accuracy["failures"])
    verdict = INTERPRETED.replace("this system", sys.platform)
    if not parity.passed:
        verdict = "the ML program's logits (reference interpreter) do not match PyTorch"
    elif dropped:
        verdict = f"the ML program's top-1 (reference interpreter) drops below PyTorch's: {'; '.join(accuracy['failures'])}"
    report.update(executed=True, interpreter_seconds=round(time.perf_counter() - started, 3), passed=parity.passed and not dropped, verdict=verdict,
                  **({"accuracy": accuracy} if accuracy else {}))
    return report


def _static_report(checks: list[dict]) -> dict:
    passed = all(c["passed"] for c in checks)
    return {
        "verdict": "static checks passed; prediction not verifiable here" if passed else "static checks failed",
        "passed": passed, "executed": False, "checks": checks, "platform": sys.platform,
    }
