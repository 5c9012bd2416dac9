"""`partialnet models`: each variant's params and GMACs measured here, beside the published numbers.

Each variant's module tree is built on the meta device (no weights allocated) and its cost read from
the layers' shapes (`layer_macs`, equal to the FLOP counter's count), so the whole table costs a small
fraction of torch's own import.
"""

from __future__ import annotations

import torch

from partialnet.models.flops import layer_macs
from partialnet.models.partialnet import PartialNet
from partialnet.models.registry import VARIANTS, Variant


def variant_row(variant: Variant, imgsz: tuple[int, int] = (224, 224)) -> dict:
    """One measured row of `partialnet models`, beside the published numbers."""
    with torch.device("meta"):
        model = PartialNet(variant.arch()).eval()
    cost = layer_macs(model, imgsz)
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
