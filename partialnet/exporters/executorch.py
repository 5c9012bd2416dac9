"""ExecuTorch programs (.pte) lowered to the XNNPACK delegate: the kernels a phone's CPU runs.

The deploy model is exported with torch.export and rewritten into ops XNNPACK takes (channel splits as
slices, LayerNorm as means, hardsigmoid with float constants; see `xnnpack_decompositions`): each op
XNNPACK refuses stays on the portable kernels and cuts the delegate in two, with layout copies at every
cut. Measured on T0 at 224, batch 1, one thread: 22 subgraphs ran 19.3 ms, one subgraph 3.9 ms. Then it
is optionally quantized with the XNNPACK quantizer (PT2E, calibrated on the same data as every INT8
format), lowered, and serialised. The manifest reports what the delegate took: subgraphs, nodes, the
share of multiply-adds, and every operator left on the portable kernels. A .pte has a fixed batch.
"""

from __future__ import annotations

import collections
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from partialnet.errors import BadInput, missing_extra
from partialnet.exporters.quiet import library_quiet as quiet
from partialnet.exporters.options import ExportOptions
from partialnet.exporters.provenance import forget_provenance
from partialnet.exporters.pt2e import before_lowering, pt2e_record
from partialnet.exporters.sidecar import read_metadata, write_scratch

MAX_PTE_BYTES = 2 << 30
MAC_OPS = ("convolution", "addmm", "mm", "bmm", "linear")


def _require():
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise missing_extra("executorch", "executorch")


def _split_as_slices(x, split_sizes, dim=0):
    parts, start = [], 0
    for size in split_sizes:
        parts.append(torch.ops.aten.slice.Tensor(x, dim, start, start + size))
        start += size
    return parts


def _layer_norm_as_means(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=False):
    """A last-axis LayerNorm as spatial means of a (B, N, C, 1) view: XNNPACK has no LayerNorm, but its
    global average pool, subtract, multiply and rsqrt keep the whole attention block in one delegate."""
    if x.dim() != 4 or len(normalized_shape) != 1:
        return torch.ops.aten.layer_norm.default.decompose(x, normalized_shape, weight, bias, eps, cudnn_enable)
    b, h, w, c = x.shape
    tokens = x.reshape(b, h * w, c, 1)
    mean = tokens.mean(dim=(2, 3), keepdim=True)
    centred = tokens - mean
    rstd = torch.rsqrt((centred * centred).mean(dim=(2, 3), keepdim=True) + eps)
    out = (centred * rstd).reshape(b, h, w, c)
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def _hardsigmoid_in_floats(x):
    """hardsigmoid with float constants: the edge dialect's own decomposition uses int64 scalars, whose
    casts XNNPACK refuses, leaving two portable copies beside every channel gate."""
    return torch.clamp(x + 3.0, 0.0, 6.0) / 6.0


def xnnpack_decompositions() -> dict:
    """Rewrites into ops XNNPACK takes, each exact to fp32 round-off (ExecuTorch's own table otherwise)."""
    ops = torch.ops.aten
    return {
        ops.split_with_sizes.default: _split_as_slices,
        ops.layer_norm.default: _layer_norm_as_means,
        ops.hardsigmoid.default: _hardsigmoid_in_floats,
    }


def _quantize(model: nn.Module, example: torch.Tensor, calibration: np.ndarray, batch: int, options) -> nn.Module:
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from partialnet.exporters.pt2e import calibrated, configure

    quantizer = configure(XNNPACKQuantizer(), get_symmetric_quantization_config(is_per_channel=True), options)
    return convert_pt2e(calibrated(model, example, calibration, quantizer, xnnpack_decompositions()))


def _macs(node) -> int:
    """Multiply-adds of a convolution or matmul node, from the shapes torch.export recorded."""
    name = str(node.target)
    out = node.meta.get("val")
    if out is None or not any(f"aten.{op}" in name for op in MAC_OPS):
        return 0
    out = out[0] if isinstance(out, (tuple, list)) else out
    if "convolution" in name:
        weight = node.args[1].meta["val"]
        return int(out.numel() * weight.shape[1] * int(np.prod(weight.shape[2:])))
    a = node.args[0].meta["val"] if "addmm" not in name else node.args[1].meta["val"]
    return int(out.numel() * a.shape[-1])


def delegation(graph_module, total_macs: int) -> dict:
    """What the XNNPACK delegate took, and what it left on the portable kernels."""
    from executorch.devtools.backend_debug import get_delegation_info

    info = get_delegation_info(graph_module)
    leftovers = collections.Counter()
    left_macs = 0
    for node in graph_module.graph.nodes:
        if node.op != "call_function" or str(node.target) in ("executorch_call_delegate", "<built-in function getitem>"):
            continue
        op = str(getattr(node.target, "__name__", node.target)).split(":")[0].replace("<EdgeOpOverload: ", "")
        leftovers[op] += 1
        left_macs += _macs(node)
    # ExecuTorch counts the getitems that unpack a delegate's outputs as non-delegated: they run nothing.
    delegated, rest = info.num_delegated_nodes, sum(leftovers.values())
    return {
        "delegate": "XNNPACK",
        "subgraphs": info.num_delegated_subgraphs,
        "nodes_delegated": delegated,
        "nodes_portable": rest,
        "node_share": round(delegated / max(delegated + rest, 1), 4),
        "mac_share": round(1 - left_macs / max(total_macs, 1), 4),
        "portable_ops": dict(sorted(leftovers.items())),
        "portable_kernels": "ExecuTorch portable kernels",
    }


def export(model: nn.Module, staged: list, options: ExportOptions, metadata: dict[str, str], workdir: Path) -> dict:
    _require()
    from partialnet.models.flops import measure_cost

    with quiet():
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

    model = copy.deepcopy(model).eval()
    example = torch.randn(options.batch, 3, *options.imgsz)
    total_macs = int(round(measure_cost(model, options.imgsz).gmacs * 1e9)) * options.batch
    if options.int8:
        with quiet(), torch.no_grad():
            model = _quantize(model, example, options.calibration, options.batch, options)
        # judged before the slow part, and before this program's own trace and save (4 s that a refused calibration
        # does not need); outside the quiet block, so its stage is shown
        before_lowering(model, "XNNPACK's lowering")
    with quiet(), torch.no_grad():
        program = torch.export.export(forget_provenance(model), (example,))
        if options.int8:  # the q/dq graph before lowering: the INT8 report's quantized side
            torch.export.save(program, str(workdir / QUANTIZED_PROGRAM))
        if not options.int8:  # a quantized graph was decomposed before its quantize/dequantize pairs went in
            program = program.run_decompositions(xnnpack_decompositions())
        forget_provenance(program.graph_module)
        edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        coverage = delegation(edge.exported_program().graph_module, total_macs)
        buffer = edge.to_executorch().buffer
    staged[0].write_bytes(buffer)
    vouch_for(buffer, {"inputs": 1, "sizes": list(example.shape)})
    # A .pte has no metadata slot: the manifest beside it carries it. Verification reads a scratch copy
    # with its own sidecar, before the real manifest exists.
    scratch = write_scratch(workdir, "model.pte", buffer, metadata, options.precision)
    with quiet():
        import executorch

    stats = {
        "nodes": coverage["nodes_delegated"] + coverage["nodes_portable"],
        "op_counts": coverage["portable_ops"],
        "simplify": "n/a (ExecuTorch)",
        "delegation": coverage,
        "executorch": getattr(executorch, "__version__", "unknown"),
        "verify_path": str(scratch),
    }
    if options.int8:
        stats["quantization"] = {
            "quantizer": "XNNPACKQuantizer (PT2E), symmetric, per channel",
            **pt2e_record(options),
            "calibration": f"{len(options.calibration)} images",
        }
    return stats


# Loading a damaged program can abort the whole process: the runtime's error text carries the file's bytes,
# and when they are not UTF-8 pybind11 throws inside its own error handling (std::terminate, exit -6). So a
# program is first loaded in a child process, from the very bytes this process then loads.
PROBE = """
import json, sys
from partialnet.errors import BadInput
from partialnet.exporters.executorch import describe_program
try:
    print(json.dumps(describe_program(sys.stdin.buffer.read())))
except BadInput as exc:
    sys.stderr.write(str(exc) + "\\n")
    sys.exit(2)
"""
PROBE_TIMEOUT_S = 120
ISOLATED = "PARTIALNET_ISOLATED_WORKER"  # set by a bench worker: a crash there fails its row, not the command
_probed: dict[str, dict] = {}  # sha256 of program bytes -> what loading them found (each probe costs a few seconds)


def checked_program(path: Path) -> tuple[bytes, dict]:
    """The program's bytes, read once, and what a child process that loaded them found (inputs, input sizes)."""
    import hashlib
    import os

    from partialnet.inputs import open_regular

    _require()
    with open_regular(path, "ExecuTorch program (.pte)", MAX_PTE_BYTES, min_bytes=8) as f:
        data = f.read(MAX_PTE_BYTES + 1)
    if data[4:6] != b"ET":  # the flatbuffer's file identifier (ET12 today)
        raise BadInput(f"{path}: not an ExecuTorch program (no ET file identifier at byte 4)")
    digest = hashlib.sha256(data).hexdigest()
    if digest not in _probed:
        _probed[digest] = describe_program(data, path) if os.environ.get(ISOLATED) else _probe(data, path)
    return data, _probed[digest]


def vouch_for(data: bytes, info: dict) -> None:
    """Skip the child-process probe for a program this process just lowered: the probe guards against
    strangers' files, and this one's inputs are known because they were traced (about 5 s per program)."""
    import hashlib

    _probed[hashlib.sha256(data).hexdigest()] = info


def describe_program(data: bytes, path: Path | str = "program") -> dict:
    """Load the program's forward method from `data` and say what it takes: in the probe's child process, or
    where it will run in a disposable bench worker."""
    from partialnet.runtimes.executorch import load_runtime

    with quiet():
        Runtime, _ = load_runtime()
        try:
            meta = Runtime.get().load_program(data).load_method("forward").metadata
        except Exception as exc:  # RuntimeError/ValueError for damaged programs
            raise BadInput(f"{path}: not a loadable ExecuTorch program ({ascii(str(exc) or type(exc).__name__)[1:-1][:160]})") from None
    return {"inputs": meta.num_inputs(), "sizes": [int(s) for s in meta.input_tensor_meta(0).sizes()] if meta.num_inputs() else []}


def _probe(data: bytes, path: Path) -> dict:
    import json
    import os
    import signal
    import subprocess
    import sys

    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        done = subprocess.run([sys.executable, "-c", PROBE], input=data, capture_output=True, timeout=PROBE_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        raise BadInput(f"{path}: the ExecuTorch runtime did not finish loading it in {PROBE_TIMEOUT_S} s") from None
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else str(-done.returncode)
        raise BadInput(f"{path}: the ExecuTorch runtime aborts loading it ({name}); not a loadable program")
    if done.returncode != 0:
        last = (done.stderr.decode("ascii", "replace").strip().splitlines() or ["no reason given"])[-1]
        raise BadInput(f"{path}: {last.removeprefix('program: ')[:240]}")  # the child's own one-line reason
    try:
        return json.loads(done.stdout.decode("ascii").strip().splitlines()[-1])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise BadInput(f"{path}: the ExecuTorch runtime gave no description of it") from None


def read_io(path: Path, info: dict | None = None) -> dict:
    """Shapes from the program's own method metadata (`info`, from checked_program); partialnet metadata from the
    manifest beside it."""
    path = Path(path)
    if info is None:
        _, info = checked_program(path)
    if info.get("inputs") != 1:
        raise BadInput(f"{path}: expected one input, found {info.get('inputs')}")
    sizes = info.get("sizes")
    if not isinstance(sizes, list) or len(sizes) != 4 or sizes[1] != 3 or not all(isinstance(d, int) and 0 < d <= 1 << 16 for d in sizes):
        raise BadInput(f"{path}: input shape {sizes} is not (batch, 3, H, W)")
    metadata, claimed = read_metadata(path)
    return {"batch": sizes[0], "dynamic": False, "imgsz": (sizes[2], sizes[3]), "precision": _precision(path, claimed, metadata),
            "metadata": metadata}


def _precision(path: Path, claimed: str, metadata: dict) -> str:
    """The program's precision: partialnet writes fp32 and INT8 programs, told apart by the bytes per weight
    (4 or 1; the manifest's word is taken only where the model's size is unknown)."""
    from partialnet.models.registry import VARIANTS

    if claimed not in ("fp32", "int8"):
        raise BadInput(f"{path}: its manifest says {ascii(claimed)[:40]}; ExecuTorch programs from partialnet are fp32 or int8")
    variant = VARIANTS.get(metadata.get("variant", ""))
    if variant is None:
        return claimed
    from partialnet.models.table import variant_row

    params = variant_row(variant, (224, 224))["params"]
    size = path.stat().st_size
    return "fp32" if size > 2.5 * params else "int8"


QUANTIZED_PROGRAM = "quantized.pt2"


def layer_activations(workdir: Path, artifact: Path, images, deploy: nn.Module):
    """The PT2E q/dq program that was lowered, layer by layer (a .pte does not expose its tensors)."""
    from partialnet.exporters.pt2e import program_activations

    graph_module = torch.export.load(str(workdir / QUANTIZED_PROGRAM)).module()
    return program_activations(graph_module, images, deploy, "the PT2E q/dq program that XNNPACK lowers, run in PyTorch, beside the deploy model")
