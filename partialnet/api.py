"""What the CLI does, as plain functions returning plain data, so a Python user misses nothing.

The CLI only parses arguments and renders what these return.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from partialnet.checkpoint import resolve
from partialnet.errors import BadInput
from partialnet.models.flops import measure_cost
from partialnet.models.partialnet import PartialNet
from partialnet.models.registry import VARIANTS, Variant

MIN_IMGSZ = 64
STRIDE = 32


def parse_imgsz(values: Sequence[int] | int | None, default: int = 224) -> tuple[int, int]:
    """`224` or `(H, W)`: multiples of 32, at least 64 (the last stage must be at least 2×2)."""
    if values is None:
        values = [default]
    if isinstance(values, int):
        values = [values]
    values = list(values)
    if len(values) not in (1, 2):
        raise BadInput(f"--imgsz takes one size or H W, got {len(values)} values")
    h, w = (values * 2)[:2]
    for side in (h, w):
        if side < MIN_IMGSZ or side % STRIDE:
            raise BadInput(f"image size {h}x{w} unsupported: each side must be a multiple of {STRIDE} and >= {MIN_IMGSZ}")
    return int(h), int(w)


def variant_row(variant: Variant, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """One measured row of `partialnet models`, beside the published numbers."""
    with torch.device("meta"):
        model = PartialNet(variant.arch())
    cost = measure_cost(model, imgsz)
    at_224 = imgsz == (224, 224)
    return {
        "name": variant.name,
        "family": variant.family,
        "embed_dim": variant.embed_dim,
        "depths": list(variant.depths),
        "act": variant.act,
        "pat_sp": variant.pat_sp,
        "imgsz": list(imgsz),
        "params": cost.params,
        "gmacs": round(cost.gmacs, 4),
        "published_params": variant.published_params,
        "published_gmacs": variant.published_gmacs,
        "params_match": cost.params == variant.published_params,
        "gmacs_rel_diff": round(cost.gmacs / variant.published_gmacs - 1, 5) if at_224 else None,
        "published_top1": variant.published_top1,
        "source": variant.source,
    }


def model_table(imgsz: tuple[int, int] = (224, 224)) -> list[dict]:
    return [variant_row(v, imgsz) for v in VARIANTS.values()]


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def inspect(source: str, variant: str | None = None, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """Everything `partialnet info` shows about a checkpoint or a variant name."""
    model, info = resolve(source, variant)
    cost = measure_cost(model, imgsz)
    row = info.to_dict()
    row.update(
        params=cost.params,
        gmacs=round(cost.gmacs, 4),
        imgsz=list(imgsz),
        batchnorm_layers=count_batchnorms(model),
    )
    return row
