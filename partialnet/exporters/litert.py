"""LiteRT (.tflite) with Google's PyTorch converter (litert-torch), run by the LiteRT interpreter.

The converter keeps the NCHW input and transposes once inside (the convolutions run NHWC). `--half`
stores fp16 weights (litert-torch's fp16 recipe); compute stays fp32 in XNNPACK on CPUs. `--int8` is
static full-integer quantization with litert-torch's PT2E quantizer (symmetric, per-channel weights),
calibrated on the same images as every INT8 format; such a model takes and returns int8 tensors with a
scale and zero point, which the runner applies, so callers still pass and get float32. A .tflite
carries no partialnet metadata slot here, so the manifest beside it does (like .pte files).
"""

from __future__ import annotations

import collections
import copy
import os
from pathlib import Path

import torch
from torch import nn

from partialnet.errors import BadInput, missing_extra
from partialnet.exporters.quiet import library_quiet, native_quiet
from partialnet.exporters.options import ExportOptions
from partialnet.exporters.pt2e import before_lowering, pt2e_record
from partialnet.exporters.sidecar import read_metadata, write_scratch
from partialnet.runtimes.litert import make_interpreter
from partialnet.inputs import check_regular

MAX_TFLITE_BYTES = 2 << 30


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    import importlib.util

    if importlib.util.find_spec("litert_torch") is None:
        raise missing_extra("litert-torch", "litert")
    model = copy.deepcopy(model).eval()
    example = torch.randn(options.batch, 3, *options.imgsz)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with library_quiet(), native_quiet(), torch.no_grad():
        import litert_torch

        kwargs = {}
        if options.half:
            from litert_torch.generative.quantize import quant_recipes

            kwargs["quant_config"] = quant_recipes.full_fp16_recipe()
        if options.int8:
            model, kwargs["quant_config"] = _quantize(model, example, options.calibration, options.batch, options)
    if options.int8:
        before_lowering(model, "litert-torch's converter")  # judged before conversion (outside the quiet block: its stage is shown)
    with library_quiet(), native_quiet(), torch.no_grad():
        content = bytes(litert_torch.convert(model, (example,), **kwargs).model_content())
    staged[0].write_bytes(content)
    scratch = write_scratch(workdir, "model.tflite", content, metadata, options.precision)
    ops = _op_counts(scratch)
    stats = {
        "nodes": sum(ops.values()),
        "op_counts": ops,
        "delegation": delegation(scratch),
        "simplify": "n/a (litert-torch)",
        "weights": options.precision,
        "litert_torch": getattr(litert_torch, "__version__", "unknown"),
        "verify_path": str(scratch),
    }
    if options.int8:
        stats["quantization"] = {
            "quantizer": "litert-torch PT2EQuantizer, symmetric, per channel (int8 input and output)",
            **pt2e_record(options),
            "calibration": f"{len(options.calibration)} images",
            **io_quantization(scratch),  # what a caller needs to feed it floats and read its logits
        }
    return stats


def _quantize(model: nn.Module, example: torch.Tensor, calibration, batch: int, options):
    """The PT2E-quantized module and the converter's config naming the same quantizer."""
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from partialnet.exporters.pt2e import calibrated, configure

    quantizer = configure(pt2e_quantizer.PT2EQuantizer(), pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True), options)
    quantized = convert_pt2e(calibrated(model, example, calibration, quantizer), fold_quantize=False)
    move_exported_model_to_eval(quantized)
    quantized.training = False  # an exported module refuses .eval(); the converter reads this flag
    return quantized, QuantConfig(pt2e_quantizer=quantizer)


def _op_counts(path: Path) -> dict:
    counts: dict[str, int] = {}
    interpreter = make_interpreter(path)
    with native_quiet():
        details = interpreter._get_ops_details()
    for op in details:
        counts[op["op_name"]] = counts.get(op["op_name"], 0) + 1
    return dict(sorted(counts.items()))


def delegation(path: Path) -> dict:
    """What the interpreter's default XNNPACK delegate took, found by walking back from the output.

    After allocation the node list holds the original ops and one DELEGATE node per partition; the ops
    that still run are those some delegate or the output needs and no delegate produces.
    """
    interpreter = make_interpreter(path)
    with native_quiet():
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()
    partitions = [op for op in ops if op["op_name"] == "DELEGATE"]
    original = [op for op in ops if op["op_name"] != "DELEGATE"]
    producer = {int(t): op for op in original for t in op["outputs"]}
    producer.update({int(t): op for op in partitions for t in op["outputs"]})
    wanted = [int(d["index"]) for d in interpreter.get_output_details()]
    seen_tensors, ran, outside = set(), set(), collections.Counter()
    while wanted:
        tensor = wanted.pop()
        op = producer.get(tensor)
        if tensor in seen_tensors or op is None:
            continue
        seen_tensors.add(tensor)
        if op["index"] in ran:
            continue
        ran.add(op["index"])
        if op["op_name"] != "DELEGATE":
            outside[op["op_name"]] += 1
        wanted.extend(int(t) for t in op["inputs"] if int(t) >= 0)
    left = sum(outside.values())
    return {
        "delegate": "XNNPACK",
        "subgraphs": len(partitions),
        "nodes_delegated": len(original) - left,
        "nodes_portable": left,
        "node_share": round((len(original) - left) / max(len(original), 1), 4),
        "portable_ops": dict(sorted(outside.items())),
        "portable_kernels": "LiteRT built-in kernels",
    }


def read_io(path: Path) -> dict:
    path = Path(path)
    check_regular(path, "LiteRT model (.tflite)", max_bytes=MAX_TFLITE_BYTES)
    interpreter = make_interpreter(path)
    inputs = interpreter.get_input_details()
    if len(inputs) != 1:
        raise BadInput(f"{path}: expected one input, found {len(inputs)}")
    dims = [int(d) for d in inputs[0]["shape"]]
    if len(dims) != 4 or dims[1] != 3:
        raise BadInput(f"{path}: input shape {dims} is not (batch, 3, H, W)")
    metadata, _ = read_metadata(path)
    return {
        "batch": dims[0],
        "dynamic": False,
        "imgsz": (dims[2], dims[3]),
        "precision": tensor_precision(interpreter),  # the model's own tensors, not the manifest's word
        "metadata": metadata,
    }


def io_quantization(path: Path) -> dict:
    """The input's and output's int8 scale and zero point, as the model's tensors hold them."""
    interpreter = make_interpreter(path)
    with native_quiet():
        sides = (("input", interpreter.get_input_details()[0]), ("output", interpreter.get_output_details()[0]))
    return {side: {"dtype": str(detail["dtype"].__name__), "scale": float(detail["quantization"][0]), "zero_point": int(detail["quantization"][1])}
            for side, detail in sides}


def tensor_precision(interpreter) -> str:
    """int8 where weights are quantized int8 tensors, fp16 where they are stored as float16 (dequantized
    at load), fp32 otherwise: what the file holds, whatever its manifest says."""
    import numpy as np

    with native_quiet():
        kinds = {np.dtype(t["dtype"]) for t in interpreter.get_tensor_details() if len(t.get("shape", ())) >= 2}
    if np.dtype(np.int8) in kinds:
        return "int8"
    if np.dtype(np.float16) in kinds:
        return "fp16"
    return "fp32"


def layer_of(tensor_name: str) -> str | None:
    """The deploy model's module path in a tensor name as litert-torch writes it
    (`pkg.PartialNet/pkg.PatchEmbed_patch_embed/torch.nn.modules.conv.Conv2d_proj;3` -> `patch_embed.proj`)."""
    parts = tensor_name.split(";")[0].split("/")[1:]
    names = [part.rpartition(".")[2].partition("_")[2] for part in parts]
    return ".".join(names) if parts and all(names) else None


def layer_activations(workdir: Path, artifact: Path, images, deploy: nn.Module):
    """Every layer's output in the INT8 .tflite (built-in kernels, every tensor kept) beside the deploy model's
    own module outputs in PyTorch, and the isolated loss of each int8 tensor a layer reads (for partialnet.divergence)."""
    import numpy as np

    from partialnet.divergence import fake_quantize, last_per_layer, module_outputs, sqnr_db, worst_per_layer

    interpreter = make_interpreter(artifact, 2, every_tensor=True)
    with native_quiet():
        interpreter.allocate_tensors()
        ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    made = [(next((layer_of(tensors[o]["name"]) for o in op["outputs"] if layer_of(tensors[o]["name"])), None), op) for op in ops]
    last = last_per_layer((layer, op["outputs"][0]) for layer, op in made)
    readers = {}
    for layer, op in made:
        for i in op["inputs"] if layer else ():
            if i >= 0 and tensors[i]["dtype"] == np.int8:
                readers.setdefault(i, set()).add(layer)
    reference = module_outputs(deploy, images, list(last))
    quantized = {layer: [] for layer in last}
    feed = interpreter.get_input_details()[0]
    for image in images:
        interpreter.set_tensor(feed["index"], _quantized_input(image[None], feed))
        with native_quiet():
            interpreter.invoke()
        for layer, index in last.items():
            quantized[layer].append(_float_nchw(interpreter.get_tensor(index), tensors[index]))
    order = [k for k in last if k in reference and reference[k].shape == np.concatenate(quantized[k]).shape]
    int8 = {k: np.concatenate(quantized[k]) for k in order}
    producer = {index: layer for layer, index in last.items()}
    losses = []
    for index, layers in readers.items():
        source = producer.get(index)
        scale, zero = tensors[index]["quantization"]
        if source in order and scale:
            low, high = (-128 - zero) * scale, (127 - zero) * scale
            losses += [(layer, sqnr_db(reference[source], fake_quantize(reference[source], low, high, 256))) for layer in layers]
    return (order, {k: reference[k] for k in order}, int8, worst_per_layer(losses),
            "LiteRT's built-in int8 kernels (XNNPACK off to expose every tensor) beside the deploy model in PyTorch")


def _quantized_input(x, detail):
    import numpy as np

    scale, zero = detail["quantization"]
    if detail["dtype"] == np.int8 and scale:
        return np.clip(np.round(x / scale + zero), -128, 127).astype(np.int8)
    return x.astype(detail["dtype"])


def _float_nchw(value, detail):
    """A tensor dequantized with its own scale and moved back to NCHW (the converter runs NHWC inside)."""
    import numpy as np

    scale, zero = detail["quantization"]
    out = (value.astype(np.float32) - zero) * scale if scale else value.astype(np.float32)
    return out.transpose(0, 3, 1, 2) if out.ndim == 4 else out
