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


def _elementwise_macs(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def hook_for(weight):
        def hook(_module, inputs, _output):
            nonlocal total
            total += weight * inputs[0].numel()

        return hook

    handles = [
        m.register_forward_hook(hook_for(weight))
        for m in model.modules()
        for kind, weight in FVCORE_ELEMENTWISE
        if isinstance(m, kind)
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def measure_cost(model: nn.Module, imgsz: tuple[int, int] = (224, 224), fvcore_convention: bool = True) -> Cost:
    """Params and multiply-adds of one image at `imgsz`."""
    params = count_params(model)
    meta = copy.deepcopy(model).to("meta").eval()
    x = torch.empty(1, 3, *imgsz, device="meta")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        meta(x)
    macs = counter.get_total_flops() // 2
    if fvcore_convention:
        macs += _elementwise_macs(meta, x)
    return Cost(params=params, macs=int(macs))
