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



def layer_macs(model: nn.Module, imgsz: tuple[int, int] = (224, 224)) -> Cost:
    """The same count as `measure_cost` for the registry's variants, from the layers' own shapes and no
    forward pass at all: any pass (meta device or FLOP counter) first imports torch's meta kernels and
    torch._dynamo, about 1.3 s, and `partialnet models` must answer in little more than torch's import.

    Each layer is charged from its weights' shapes and the (channels, height, width) it receives, walked
    in module order; the fvcore per-element terms are the same. A DPConv model (a conv used at a learned
    width) is refused: checkpoints go through `measure_cost`. tests/test_models.py holds the two equal.
    """
    macs, _ = _walk(model, (3, *imgsz))
    return Cost(params=count_params(model), macs=macs)


def model_cost(model: nn.Module, imgsz: tuple[int, int] = (224, 224)) -> Cost:
    """`measure_cost`'s figure, from the layers' shapes wherever they are all known (every released variant
    and its deploy form): `fold` reports the cost before and after, and a counting pass would make every
    fold, and every PyTorch-only bench or claims run, import torch._dynamo first (1.2 s on a 2-core Xeon)."""
    try:
        return layer_macs(model, imgsz)
    except ValueError:
        return measure_cost(model, imgsz)


def _walk(module: nn.Module, shape: tuple[int, int, int]) -> tuple[int, tuple[int, int, int]]:
    from partialnet.folding import deploy_modules as dm
    from partialnet.models import partialnet as pn

    c, h, w = shape
    if isinstance(module, nn.Conv2d):
        (kh, kw), (sh, sw), (ph, pw) = module.kernel_size, module.stride, module.padding
        oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
        return oh * ow * module.out_channels * (module.in_channels // module.groups) * kh * kw, (module.out_channels, oh, ow)
    if isinstance(module, nn.BatchNorm2d):
        return 2 * module.num_features * h * w, shape
    if isinstance(module, nn.LayerNorm):
        return 5 * module.normalized_shape[0] * h * w, shape
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return c * h * w, (c, 1, 1)
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features, (module.out_features, 1, 1)
    if isinstance(module, pn.GaussianChannelGate):  # a (1, 2) conv over each channel's mean and std, then its BN
        return module.cfc1.out_channels * module.cfc1.in_channels * 2 + 2 * module.bn.num_features, shape
    if isinstance(module, dm.DeployChannelGate):  # the same conv, its BN inside
        return _walk(module.cfc1, (c, 1, 2))[0], shape
    if isinstance(module, (pn.RelativeSelfAttention, dm.DeploySelfAttention)):  # qkv, proj over h*w tokens; q @ k^T, scores @ v
        tokens, dim = h * w, module.qkv.in_features
        return tokens * dim * 4 * dim + 2 * tokens * tokens * dim, shape
    if isinstance(module, pn.DynamicPartialConv):
        raise ValueError("a DPConv layer computes through a slice of its weight: count it with measure_cost")
    total, inner = 0, shape
    for child in module.children():
        macs, inner = _walk(child, inner)
        total += macs
    keeps_shape = (pn.MLPBlock, pn.PartialConv, pn.PartialChannelAttention, pn.PartialSelfAttention, pn.PartialSpatialAttention,
                   dm.DeploySpatialGate)
    return total, shape if isinstance(module, keeps_shape) else inner
