"""Params and multiply-adds, measured with torch's own FLOP counter.

Both papers quote fvcore multiply-adds at 224×224. torch's counter reports FLOPs (2 per multiply-add)
for convolutions and matrix products only; fvcore also charges per element for the normalisations and
the global pool (eval BatchNorm with affine: 2, LayerNorm with affine: 5, adaptive average pool: 1).
Those terms are added here so the numbers are comparable with the published tables (within 0.6 % on
all 12 variants; the FasterNet table is rounded to two decimals).
The model runs on the meta device: shapes only, no arithmetic, so counting L costs milliseconds.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class Cost:
    params: int
    macs: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# fvcore's per-element charge for the ops torch's counter ignores.
FVCORE_ELEMENTWISE = ((nn.BatchNorm2d, 2), (nn.LayerNorm, 5), (nn.AdaptiveAvgPool2d, 1))


def _elementwise_hooks(model: nn.Module, tally: list[int]) -> list:
    """Forward hooks adding fvcore's per-element charges into tally[0] during the counting pass."""

    def hook_for(weight):
        def hook(_module, inputs, _output):
            tally[0] += weight * inputs[0].numel()

        return hook

    return [
        m.register_forward_hook(hook_for(weight))
        for m in model.modules()
        for kind, weight in FVCORE_ELEMENTWISE
        if isinstance(m, kind)
    ]


def measure_cost(model: nn.Module, imgsz: tuple[int, int] = (224, 224), fvcore_convention: bool = True) -> Cost:
    """Params and multiply-adds of one image at `imgsz`, from ONE shapes-only pass on the meta device."""
    params = count_params(model)
    meta = model if _on_meta(model) else copy.deepcopy(model).to("meta")
    was_training = meta.training
    meta.eval()
    x = torch.empty(1, 3, *imgsz, device="meta")
    counter = FlopCounterMode(display=False)
    tally = [0]
    handles = _elementwise_hooks(meta, tally) if fvcore_convention else []
    try:
        with torch.no_grad(), counter:
            meta(x)
    finally:
        for h in handles:
            h.remove()
        meta.train(was_training)
    return Cost(params=params, macs=int(counter.get_total_flops() // 2 + tally[0]))


def _on_meta(model: nn.Module) -> bool:
    """A skeleton already on the meta device is measured as is: copying it would cost more than the pass."""
    tensors = [*model.parameters(), *model.buffers()]
    return bool(tensors) and all(t.is_meta for t in tensors)
