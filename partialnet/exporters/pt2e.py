"""The INT8 choices shared by the formats quantized through PyTorch 2 export (ExecuTorch's XNNPACK
quantizer, litert-torch's PT2E quantizer): which observer sets activation ranges, what stays in float.

Neither quantizer accepts "no config" for a module name, so `--int8-keep-float` is applied after their
own annotation: the annotations of the nodes that a kept layer (or a kept module type) produced are
removed, and those nodes run in float between dequantize and quantize.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

import numpy as np
import torch
from torch import nn

from partialnet.exporters.options import ExportOptions, keep_float
from partialnet.exporters.provenance import forget_provenance

KIND_MODULES = {"conv": nn.Conv2d, "linear": nn.Linear}  # --int8-keep-float's op kinds as module types
ANNOTATION = "quantization_annotation"


def configure(quantizer, config, options: ExportOptions):
    """`quantizer` with `config` globally (its activation observer per --calib-method), --int8-keep-float applied after annotation."""
    if (options.calib_method or "histogram").strip().lower() == "minmax":
        from torchao.quantization.pt2e.observer import MinMaxObserver

        observer = MinMaxObserver.with_args(eps=2**-12)
        config = dataclasses.replace(
            config,
            input_activation=dataclasses.replace(config.input_activation, observer_or_fake_quant_ctr=observer),
            output_activation=dataclasses.replace(config.output_activation, observer_or_fake_quant_ctr=observer),
        )
    quantizer.set_global(config)
    layers, kinds = keep_float(options.int8_keep_float)
    if layers or kinds:
        annotate = quantizer.annotate
        types = tuple(KIND_MODULES[k] for k in kinds)

        def annotate_then_keep_float(model):
            model = annotate(model)
            _strip(model.graph, {n for n in model.graph.nodes if ANNOTATION in n.meta and _kept(n, layers, types)})
            return model

        quantizer.annotate = annotate_then_keep_float  # the instance's own method: the converter still sees its quantizer
    return quantizer


def _strip(graph, nodes: set) -> None:
    """Remove the nodes' annotations, then those of every node whose quantization was shared with a removed one."""
    removed = set()
    while nodes:
        for node in nodes:
            node.meta.pop(ANNOTATION, None)
        removed |= nodes
        nodes = {n for n in graph.nodes if ANNOTATION in n.meta and _shares_with(n.meta[ANNOTATION], removed)}


def _shares_with(annotation, removed: set) -> bool:
    specs = [annotation.output_qspec, *(annotation.input_qspec_map or {}).values()]
    for spec in specs:
        target = getattr(spec, "edge_or_node", None)
        if target is not None and any(t in removed for t in (target if isinstance(target, tuple) else (target,))):
            return True
    return False


def _kept(node, layers: list[str], types: tuple[type, ...]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    for path, kind in stack.values():
        path = _fqn(path)
        if any(path == n or path.startswith(n + ".") for n in layers):
            return True
    if types and stack:  # the innermost module made this node: is it of a kept type?
        kind = list(stack.values())[-1][1]
        name = kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}"
        return any(name == f"{t.__module__}.{t.__qualname__}" for t in types)
    return False


def _fqn(path: str) -> str:
    """`L['self'].stages[0].blocks[1]` or `stages.0.blocks.1` as the plain dotted module path."""
    import re

    path = re.sub(r"^L\['self'\]\.?", "", path)
    return re.sub(r"\[(\d+)\]", r".\1", path).strip(".")


def pt2e_record(options: ExportOptions) -> dict:
    layers, kinds = keep_float(options.int8_keep_float)
    return {"activation_observer": (options.calib_method or "histogram").strip().lower(), "kept_float": [*layers, *kinds]}


CALIB_BATCH = 25  # images per calibration pass: observers cost per call, so 12 passes instead of 300


def calibrated(model: nn.Module, example: torch.Tensor, calibration, quantizer, decompositions=None):
    """The model prepared by `quantizer`, run over the calibration images, converted (q/dq in the graph).

    Traced with a dynamic batch so calibration runs in batches whatever batch the artifact has (the
    histogram observers cost per call: 300 calls at batch 1 took 14 s for T0 at 224, 12 calls 5 s);
    the caller's export traces the converted module again at the artifact's own batch.
    """
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    batch = torch.export.Dim("batch", min=1, max=1024)
    wide = example.expand(max(2, example.shape[0]), *example.shape[1:]).contiguous()
    program = torch.export.export(model, (wide,), dynamic_shapes=({0: batch},))
    if decompositions is not None:
        program = program.run_decompositions(decompositions)
    prepared = prepare_pt2e(forget_provenance(program.module()), quantizer)
    with torch.no_grad():
        for start in range(0, len(calibration), CALIB_BATCH):
            prepared(torch.from_numpy(calibration[start : start + CALIB_BATCH]).contiguous())
    return prepared


def node_layer(node) -> str | None:
    """The innermost module path that made an exported graph's node (None for graph-level nodes)."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    return _fqn(list(stack.values())[-1][0]) or None


# The export's judge of a quantized program, set by the pipeline around one export (none: nothing is judged early)
_JUDGE: ContextVar[Callable[[nn.Module, str], None] | None] = ContextVar("partialnet_pt2e_judge", default=None)


@contextmanager
def judged_before_lowering(judge: Callable[[nn.Module, str], None] | None):
    """Within this block an exporter that calls `before_lowering` hands its q/dq program to `judge` first."""
    token = _JUDGE.set(judge)
    try:
        yield
    finally:
        _JUDGE.reset(token)


def before_lowering(program: nn.Module, lowered_by: str) -> None:
    """Lowering a q/dq program takes ExecuTorch about a minute for T0 (much more for L), converting it takes
    litert-torch several seconds; a calibration that already fails the INT8 gates as this program is refused
    here (the judge raises), before that. `lowered_by` names what would have taken the program next."""
    judge = _JUDGE.get()
    if judge is not None:
        judge(program, lowered_by)


PROGRAM_BATCH = 32  # the q/dq program keeps calibration's dynamic batch; its cost is per call (~1,000 Python-level ops)


class ProgramRunner:
    """A quantized PT2E program as a runner: its q/dq ops run in PyTorch, as the int8 kernels will compute them."""

    precision = "int8"

    def __init__(self, program: nn.Module, name: str) -> None:
        self.program, self.name = program, name

    def infer(self, batch: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.program(torch.from_numpy(np.array(batch, dtype=np.float32))).float().numpy()


class ProgramLayers:
    """A q/dq program as the INT8 side of the per-layer report (`partialnet.divergence`), before it was
    lowered: the report a failed early judgement carries, whatever format would have been made of it."""

    def __init__(self, program: nn.Module, lowered_by: str) -> None:
        self.program, self.lowered_by = program, lowered_by

    def layer_activations(self, workdir, artifact, images, deploy: nn.Module):
        return program_activations(self.program, images, deploy, f"the PT2E q/dq program that {self.lowered_by} takes, run in PyTorch, beside the deploy model")


def program_activations(graph_module: nn.Module, images, deploy: nn.Module, how: str):
    """Each layer's output in a PT2E q/dq program (what the int8 kernels implement) beside the deploy model's
    module outputs in PyTorch, and the isolated loss of each quantized activation (for partialnet.divergence)."""
    from partialnet.divergence import fake_quantize, last_per_layer, module_outputs, sqnr_db, worst_per_layer

    nodes = [n for n in graph_module.graph.nodes if n.op == "call_function"]
    last = last_per_layer((node_layer(node), node) for node in nodes)
    captured = {layer: [] for layer in last}
    wanted = {node: layer for layer, node in last.items()}

    class Capture(torch.fx.Interpreter):
        def run_node(self, n):
            out = super().run_node(n)
            if n in wanted and isinstance(out, torch.Tensor):
                captured[wanted[n]].append(out.detach().float().numpy())
            return out

    with torch.no_grad():
        for image in images:
            Capture(graph_module).run(torch.from_numpy(np.ascontiguousarray(image[None])))
    reference = module_outputs(deploy, images, list(last))
    order = [k for k in last if k in reference and captured[k] and np.concatenate(captured[k]).shape == reference[k].shape]
    losses = []
    for node in nodes:
        if "quantize_per_tensor" not in str(node.target) or "dequantize" in str(node.target):
            continue
        source = wanted.get(node.args[0]) if isinstance(node.args[0], torch.fx.Node) else None
        if source in order:
            scale, zero, qmin, qmax = (float(a) for a in node.args[1:5])
            readers = {node_layer(u) for dq in node.users for u in dq.users} - {None}
            quantized = fake_quantize(reference[source], (qmin - zero) * scale, (qmax - zero) * scale, int(qmax - qmin + 1))
            losses += [(layer, sqnr_db(reference[source], quantized)) for layer in readers]
    return order, {k: reference[k] for k in order}, {k: np.concatenate(captured[k]) for k in order}, worst_per_layer(losses), how
